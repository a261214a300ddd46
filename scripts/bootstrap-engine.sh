#!/usr/bin/env bash
# Make a working Docker engine with the buildx and compose v2 CLI plugins
# available on a Debian host. Does nothing when they already work.
#
# Bookworm ships docker.io (engine 20.10) but neither plugin; trixie's
# docker-buildx and docker-compose packages are fetched into a private apt
# state dir (the system's apt configuration is left alone) and unpacked into
# the CLI plugin dir. Needs root on Debian; elsewhere install Docker yourself.
#
# SageMaker Python SDK v2 local mode runs `docker compose` only when
# `docker compose version` prints "v2"; Debian's plugin prints "Docker Compose
# version 2.26.1-4", so the SDK falls back to a `docker-compose` command. The
# compose v2 binary also runs standalone under that name: where the SDK would
# find neither, a `docker-compose` link to the plugin is made (COMPOSE_LINK).
set -euo pipefail

PLUGIN_DIR=${DOCKER_CLI_PLUGIN_DIR:-/usr/local/lib/docker/cli-plugins}
STATE_DIR=${BOOTSTRAP_STATE_DIR:-/var/cache/byoc-bootstrap}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
COMPOSE_LINK=${COMPOSE_LINK:-/usr/local/bin/docker-compose}

log() { printf 'bootstrap-engine: %s\n' "$*" >&2; }

engine_ok() { docker info >/dev/null 2>&1; }
buildx_ok() { docker buildx version >/dev/null 2>&1; }
compose_ok() { docker compose version >/dev/null 2>&1; }
# What SageMaker SDK v2 local mode accepts (sagemaker/local/image.py, _get_compose_cmd_prefix).
sdk_compose_ok() {
  docker compose version 2>/dev/null | grep -q v2 \
    || { command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; }
}

if engine_ok && buildx_ok && compose_ok && sdk_compose_ok; then
  log "engine, buildx and compose already work; nothing to do"
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || [ ! -f /etc/debian_version ]; then
  log "no working Docker engine with buildx and compose, and this is not root on Debian:"
  log "install Docker Engine with the buildx and compose plugins, then run this again"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing Debian's docker.io"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io iptables >/dev/null
fi

install_plugins() {
  # trixie's packages, fetched through a private apt state: nothing is
  # installed system-wide and the host's sources stay as they are.
  local sources="$STATE_DIR/trixie.list" debs="$STATE_DIR/debs"
  local apt_opts=(-o "Dir::Etc::SourceList=$sources" -o Dir::Etc::SourceParts=/dev/null
                  -o "Dir::State::Lists=$STATE_DIR/lists" -o "Dir::Cache::archives=$debs")
  mkdir -p "$STATE_DIR/lists/partial" "$debs/partial" "$PLUGIN_DIR"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_MIRROR trixie main" >"$sources"
  log "fetching docker-buildx and docker-compose from trixie"
  apt_opts+=(-o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -qq
  (cd "$debs" && apt-get "${apt_opts[@]}" download docker-buildx docker-compose >/dev/null)
  local unpacked="$STATE_DIR/unpacked"
  rm -rf "$unpacked"
  for deb in "$debs"/docker-buildx_*.deb "$debs"/docker-compose_*.deb; do
    dpkg -x "$deb" "$unpacked"
  done
  install -m 0755 "$unpacked"/usr/libexec/docker/cli-plugins/docker-buildx "$PLUGIN_DIR/"
  install -m 0755 "$unpacked"/usr/libexec/docker/cli-plugins/docker-compose "$PLUGIN_DIR/"
}

if ! buildx_ok || ! compose_ok; then
  install_plugins
fi

link_compose_cli() {
  local plugin
  for plugin in "$PLUGIN_DIR" /usr/local/libexec/docker/cli-plugins /usr/libexec/docker/cli-plugins \
                /usr/lib/docker/cli-plugins "${HOME:-/root}/.docker/cli-plugins"; do
    plugin="$plugin/docker-compose"
    [ -x "$plugin" ] && break
  done
  [ -x "$plugin" ] || { log "no docker compose plugin found to link as docker-compose"; exit 1; }
  log "linking $COMPOSE_LINK -> $plugin (for SageMaker SDK v2 local mode)"
  mkdir -p "$(dirname "$COMPOSE_LINK")"
  ln -sfn "$plugin" "$COMPOSE_LINK"
}

if ! sdk_compose_ok; then
  link_compose_cli
fi

if ! engine_ok; then
  log "starting dockerd (log: $DOCKERD_LOG)"
  nohup dockerd >"$DOCKERD_LOG" 2>&1 &
  for _ in $(seq 1 60); do
    engine_ok && break
    sleep 1
  done
fi

engine_ok || { log "dockerd did not answer within 60 s; see $DOCKERD_LOG"; exit 1; }
buildx_ok || { log "docker buildx does not work"; exit 1; }
compose_ok || { log "docker compose does not work"; exit 1; }
sdk_compose_ok || { log "docker-compose ($COMPOSE_LINK) does not work, nor prints docker compose version v2"; exit 1; }
log "ready: $(docker version --format 'engine {{.Server.Version}}'), $(docker compose version)"
