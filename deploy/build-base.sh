#!/usr/bin/env bash
# Build a local Debian bookworm base image with python3 + venv, with no registry.
#
# Why: air-gapped sites have a Docker engine but cannot pull python:3.11-slim.
# debootstrap fetches Debian packages from the mirror that this machine's apt is
# already configured with (override with DEBIAN_MIRROR=...), and `docker import`
# turns the root file system into an image.
#
# Idempotent: the image carries a label with the hash of this script, the suite
# and the mirror; when an image with that label exists, nothing is done.
#
# Usage: deploy/build-base.sh [IMAGE]        (default gridchain-base:local)
# Env:   DEBIAN_MIRROR, DEBIAN_SUITE (bookworm), FORCE=1 to rebuild.
set -euo pipefail

IMAGE="${1:-${BASE_IMAGE:-gridchain-base:local}}"
SUITE="${DEBIAN_SUITE:-bookworm}"

log() { printf '[build-base] %s\n' "$*" >&2; }

apt_mirror() {
    # The first Debian "URIs:" (deb822) or "deb" line apt uses, without any path
    # suffix such as /debian-security.
    local uri=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        uri="$(grep -h -A3 -E '^Types:.*deb' /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | awk '/^URIs:/ {print $2}' | grep -E '/debian/?$' | head -n1 || true)"
    fi
    if [[ -z "$uri" ]] && [[ -f /etc/apt/sources.list ]]; then
        uri="$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
            /etc/apt/sources.list | grep -E '/debian/?$' | head -n1 || true)"
    fi
    printf '%s' "${uri:-http://deb.debian.org/debian}"
}

MIRROR="${DEBIAN_MIRROR:-$(apt_mirror)}"
PACKAGES="python3,python3-venv,ca-certificates"
STAMP="$( { cat "${BASH_SOURCE[0]}"; echo "$SUITE $MIRROR $PACKAGES"; } | sha256sum | cut -c1-16)"

current="$(docker image inspect "$IMAGE" --format '{{ index .Config.Labels "org.gridchain.base-stamp" }}' 2>/dev/null || true)"
if [[ "$current" == "$STAMP" && "${FORCE:-0}" != "1" ]]; then
    log "$IMAGE is current (stamp $STAMP); nothing to do"
    exit 0
fi

command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
[[ "$(id -u)" == "0" ]] || { log "debootstrap needs root"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gridchain-base.XXXXXX")"
cleanup() { rm -rf --one-file-system "$WORK"; }
trap cleanup EXIT
ROOTFS="$WORK/rootfs"

log "debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }

# Make the image small and reproducible-ish: no apt lists, caches, docs or logs.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/*
# Same python3 path as the official image puts on PATH.
"$ROOTFS"/usr/bin/python3 --version >/dev/null 2>&1 || chroot "$ROOTFS" python3 --version >/dev/null

log "docker import -> $IMAGE"
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change "LABEL org.gridchain.base-stamp=$STAMP" \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE + python3 (debootstrap, GridChain base)\"" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
log "built $IMAGE (stamp $STAMP): $(docker run --rm "$IMAGE" python3 --version)"
