#!/usr/bin/env bash
# Print the base image to build on: $BASE_IMAGE if given, else the official
# CUDA image if it is here or can be pulled, else the offline Debian base
# (built now if missing). Progress goes to stderr; only the name to stdout.
set -euo pipefail
CUDA_IMAGE=${CUDA_IMAGE:-nvidia/cuda:12.8.1-base-ubuntu24.04}
LOCAL_BASE_IMAGE=${LOCAL_BASE_IMAGE:-byoc-base:bookworm}

if [ -n "${BASE_IMAGE:-}" ]; then
  echo "$BASE_IMAGE"
elif docker image inspect "$CUDA_IMAGE" >/dev/null 2>&1 || docker pull -q "$CUDA_IMAGE" >/dev/null 2>&1; then
  echo "$CUDA_IMAGE"
else
  echo "base-image: $CUDA_IMAGE cannot be pulled here; using the offline base $LOCAL_BASE_IMAGE" >&2
  if ! docker image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
    "$(dirname "$0")/../containers/base/build.sh" "$LOCAL_BASE_IMAGE" >&2
  fi
  echo "$LOCAL_BASE_IMAGE"
fi
