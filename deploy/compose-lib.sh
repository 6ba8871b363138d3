# shellcheck shell=bash
# Shared helpers for compose-up.sh / compose-down.sh (sourced, not executed).
# Picks `docker compose` (v2) when present, else Debian's `docker-compose` (1.29).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-gridchain}"
export COMPOSE_FILE="${COMPOSE_FILE:-$ROOT/docker-compose.yml}"
export GRIDCHAIN_GENESIS_DIR="${GRIDCHAIN_GENESIS_DIR:-$ROOT/.compose/genesis}"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose "$@"
    else
        log "neither 'docker compose' nor 'docker-compose' is installed (apt-get install docker-compose)"
        return 127
    fi
}
