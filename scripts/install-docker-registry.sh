#!/usr/bin/env bash
# Unpack Debian's docker-registry (the CNCF distribution registry) into a
# private tools dir: the registry that receives `make push` on loopback and in
# the tests. Nothing is installed system-wide. Prints the binary's path.
set -euo pipefail

DEST=${1:-.tools/docker-registry}
BIN="$DEST/usr/bin/docker-registry"

if [ ! -x "$BIN" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-docker-registry: no apt-get here; install a Docker registry yourself" >&2
    exit 1
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # apt-get download runs as _apt where it can; the temporary dir must be readable by it.
  chmod 0755 "$work"
  if ! (cd "$work" && apt-get download docker-registry >/dev/null 2>&1); then
    [ "$(id -u)" = 0 ] && apt-get update -qq
    (cd "$work" && apt-get download docker-registry >/dev/null)
  fi
  mkdir -p "$DEST"
  dpkg -x "$work"/docker-registry_*.deb "$DEST"
fi
echo "$BIN"
