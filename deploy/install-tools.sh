#!/usr/bin/env bash
# Install the command-line tools the deployment-file checks need
# (tests/e2e/test_deploy_files.py, test_member_deploy.py, test_member_hosts.py):
# the linter shellcheck, docker-compose, promtool (Debian package prometheus), curl,
# kubectl (Debian's kubernetes-client; its built-in kustomize renders deploy/member/k8s), and
# ip/tc/iptables for the member hosts as network namespaces. `make test` and
# `make test-fast` run this first, so those checks never skip.
#
# Idempotent: only what is missing is installed; when everything is present it
# does nothing and needs no root. Installing needs root (apt-get, no sudo).
#
# Usage: deploy/install-tools.sh
set -euo pipefail

log() { printf '[install-tools] %s\n' "$*" >&2; }

# command -> Debian package that provides it
declare -A PACKAGE_OF=(
    [shellcheck]=shellcheck
    [docker-compose]=docker-compose
    [promtool]=prometheus
    [curl]=curl
    [kubectl]=kubernetes-client
    [ip]=iproute2
    [tc]=iproute2
    [iptables]=iptables
)
TOOLS=(shellcheck docker-compose promtool curl kubectl ip tc iptables)

missing=()
for cmd in "${TOOLS[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1 && [[ " ${missing[*]} " != *" ${PACKAGE_OF[$cmd]} "* ]]; then
        missing+=("${PACKAGE_OF[$cmd]}")
    fi
done

if [[ "${#missing[@]}" -eq 0 ]]; then
    log "${TOOLS[*]} are installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${missing[*]} and there is no apt-get: install them with this system's package manager"
    exit 1
fi
if [[ "$(id -u)" != "0" ]]; then
    log "missing ${missing[*]}; run as root: apt-get install ${missing[*]}"
    exit 1
fi

log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null

for cmd in "${TOOLS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || { log "$cmd is still missing after apt-get install"; exit 1; }
done
log "installed ${missing[*]}"
