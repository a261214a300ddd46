#!/usr/bin/env bash
# make build: both images from containers/Dockerfile, labelled with what their torch is built for.
#   1. the `facts` target: the venv's torch version, CUDA version and kernel architectures, and
#      the image's CUDA forward-compatibility libraries, exported to build/image-facts/facts.json;
#   2. the `training` and `serving` targets, with those facts as labels (read by `byoc-cloud check`)
#      and as the build arguments behind BYOC_CUDA_VERSION and NVIDIA_REQUIRE_CUDA.
# usage: build-images.sh BASE_IMAGE TRAINING_TAG SERVING_TAG [docker buildx build flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: build-images.sh BASE_IMAGE TRAINING_TAG SERVING_TAG [flags...]}
training=${2:?} serving=${3:?}
shift 3
build=(docker buildx build --build-arg "BASE_IMAGE=$base" "$@" -f containers/Dockerfile)

"${build[@]}" --target facts --output type=local,dest=build/image-facts .
mapfile -t facts < <(PYTHONPATH=code python3 -m byoc.cuda build-flags build/image-facts/facts.json)
echo "image facts: $(cat build/image-facts/facts.json)"
"${build[@]}" "${facts[@]}" --target training -t "$training" .
"${build[@]}" "${facts[@]}" --target serving -t "$serving" .
