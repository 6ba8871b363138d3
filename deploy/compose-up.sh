#!/usr/bin/env bash
# Build the GridChain image (offline when no registry is reachable) and start the
# four-validator consortium with docker compose; wait until every node is ready.
#
# Base image, first that applies: $GRIDCHAIN_BASE_IMAGE; python:3.11-slim if local;
# gridchain-base:local if local; python:3.11-slim if it can be pulled; else
# gridchain-base:local built by deploy/build-base.sh (debootstrap; needs root). Python packages always come from
# deploy/wheelhouse (deploy/build-wheelhouse.sh), never from an index during the build.
#
# Env: GRIDCHAIN_IMAGE (gridchain:local), GRIDCHAIN_BASE_IMAGE, GRIDCHAIN_PROFILES
# (e.g. "monitoring" to also start Prometheus and Grafana), READY_TIMEOUT_S (180),
# plus the port variables documented in docker-compose.yml.
set -euo pipefail
# shellcheck source=deploy/compose-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/compose-lib.sh"

export GRIDCHAIN_IMAGE="${GRIDCHAIN_IMAGE:-gridchain:local}"
# Files the init service writes to the host belong to whoever runs this script.
export GRIDCHAIN_HOST_UID="${GRIDCHAIN_HOST_UID:-${SUDO_UID:-$(id -u)}}"
export GRIDCHAIN_HOST_GID="${GRIDCHAIN_HOST_GID:-${SUDO_GID:-$(id -g)}}"
READY_TIMEOUT_S="${READY_TIMEOUT_S:-180}"

docker info >/dev/null 2>&1 || { log "the Docker engine is not reachable (is dockerd running?)"; exit 1; }

pick_base() {
    if [[ -n "${GRIDCHAIN_BASE_IMAGE:-}" ]]; then
        echo "$GRIDCHAIN_BASE_IMAGE"
    elif docker image inspect python:3.11-slim >/dev/null 2>&1; then
        echo python:3.11-slim
    elif docker image inspect gridchain-base:local >/dev/null 2>&1; then
        bash "$ROOT/deploy/build-base.sh" gridchain-base:local \
            || log "could not refresh gridchain-base:local (needs root); using the existing image"
        echo gridchain-base:local
    elif timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
        echo python:3.11-slim
    else
        log "no registry reachable: building the base image with debootstrap"
        bash "$ROOT/deploy/build-base.sh" gridchain-base:local
        echo gridchain-base:local
    fi
}

base="$(pick_base)"
bash "$ROOT/deploy/build-wheelhouse.sh"
log "building $GRIDCHAIN_IMAGE on $base (offline: --no-index wheelhouse)"
docker build --network none -q -f "$ROOT/deploy/Dockerfile" --build-arg "BASE_IMAGE=$base" -t "$GRIDCHAIN_IMAGE" "$ROOT/deploy" >/dev/null

mkdir -p "$GRIDCHAIN_GENESIS_DIR"
profiles=()
for p in ${GRIDCHAIN_PROFILES:-}; do profiles+=(--profile "$p"); done
compose "${profiles[@]}" up -d

log "waiting up to ${READY_TIMEOUT_S}s for the validators to be ready"
declare -A api=(
    [generator]="${GRIDCHAIN_GENERATOR_API_PORT:-8081}" [grid]="${GRIDCHAIN_GRID_API_PORT:-8082}"
    [retailer]="${GRIDCHAIN_RETAILER_API_PORT:-8083}" [user]="${GRIDCHAIN_USER_API_PORT:-8084}")
declare -A metrics=(
    [generator]="${GRIDCHAIN_GENERATOR_METRICS_PORT:-9101}" [grid]="${GRIDCHAIN_GRID_METRICS_PORT:-9102}"
    [retailer]="${GRIDCHAIN_RETAILER_METRICS_PORT:-9103}" [user]="${GRIDCHAIN_USER_METRICS_PORT:-9104}")
host="${GRIDCHAIN_BIND:-127.0.0.1}"
[[ "$host" == "0.0.0.0" ]] && host=127.0.0.1
deadline=$((SECONDS + READY_TIMEOUT_S))
for name in generator grid retailer user; do
    until python3 -c "import urllib.request,sys; urllib.request.urlopen('http://$host:${api[$name]}/readyz', timeout=3)" 2>/dev/null; do
        if ((SECONDS > deadline)); then
            log "$name is not ready after ${READY_TIMEOUT_S}s; its last log lines:"
            compose logs --tail=30 "$name" >&2 || true
            exit 1
        fi
        sleep 2
    done
done

printf '\nGridChain consortium is up (project %s)\n' "$COMPOSE_PROJECT_NAME"
printf '  %-10s %-28s %s\n' node "REST API" metrics
for name in generator grid retailer user; do
    printf '  %-10s %-28s %s\n' "$name" "http://$host:${api[$name]}" "http://$host:${metrics[$name]}/metrics"
done
printf '  demo accounts and their keys: %s/accounts.json\n' "$GRIDCHAIN_GENESIS_DIR"
printf '  stop: make compose-down   (data volumes are kept; PURGE=1 deletes them and the genesis)\n'
