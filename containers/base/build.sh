#!/usr/bin/env bash
# Build a CUDA-ready base image from Debian packages, for hosts that cannot
# pull from a registry. It carries what the official nvidia/cuda "base"
# images carry that matters here: an OS, python3, and the environment the
# NVIDIA container toolkit reads to inject the driver. The CUDA user-space
# libraries come with the torch wheels, as they do on the official base.
#
# Nothing of the build host goes into the layer: debootstrap copies the host's
# /etc/resolv.conf, /etc/hostname and /etc/hosts into the target to reach the
# mirror (Docker provides all three to every container), and credentials in
# DEBIAN_MIRROR (http://user:password@host/debian) are for the download only:
# the image's sources.list names the mirror without them.
#
# usage: build.sh IMAGE_TAG
set -euo pipefail

TAG=${1:?usage: build.sh IMAGE_TAG}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CUDA_REQUIREMENT=${CUDA_REQUIREMENT:-cuda>=12.8 driver>=525}

if ! command -v debootstrap >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || { echo "base-image: debootstrap is missing; install it (apt-get install debootstrap)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

rootfs=$(mktemp -d /tmp/byoc-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$rootfs" "$MIRROR" >/dev/null
# The build host's network identity stays on the host.
rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
# The image's own apt sources, without the mirror's credentials; no apt lists, caches or logs.
public_mirror=$(printf '%s' "$MIRROR" | sed -E 's#^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@#\1#')
echo "deb $public_mirror $SUITE main" >"$rootfs/etc/apt/sources.list"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/var/log/apt "$rootfs"/var/log/bootstrap.log "$rootfs"/debootstrap

tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/nvidia/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64' \
  --change 'ENV NVIDIA_VISIBLE_DEVICES=all' \
  --change 'ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility' \
  --change "ENV NVIDIA_REQUIRE_CUDA=$CUDA_REQUIREMENT" \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "debootstrap $SUITE minbase + python3, NVIDIA toolkit env" \
  - "$TAG" >/dev/null
echo "base-image: built $TAG"
