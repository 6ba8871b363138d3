#!/bin/sh
# One-shot init service of docker-compose.yml: create the consortium's keys and
# genesis with the project's own CLI on first start, and do nothing afterwards.
#
# Mounts (see docker-compose.yml):
#   /genesis         public network files (genesis, network.json, accounts.json and
#                    the demo accounts' key files for participants), a host directory
#   /homes/<name>    the data volume of validator <name> (its keys + database)
#
# Each validator's home is generated under /genesis/<name>, then moved into its own
# volume, so a validator key exists in exactly one place: that node's volume.
# Env: GRIDCHAIN_NODES (name:role,...), GRIDCHAIN_GENESIS_ARGS (extra flags for
# `gridchain genesis`), GRIDCHAIN_UID (10001), GRIDCHAIN_HOST_UID/GID (owner of /genesis),
# INIT_GENESIS_DIR / INIT_HOMES_DIR (the two mount points; tests point them elsewhere).
set -eu

G="${INIT_GENESIS_DIR:-/genesis}"
H="${INIT_HOMES_DIR:-/homes}"

NODES="${GRIDCHAIN_NODES:-generator:generator,grid:grid,retailer:retailer,user:user}"
NODE_UID="${GRIDCHAIN_UID:-10001}"
HOST_UID="${GRIDCHAIN_HOST_UID:-0}"
HOST_GID="${GRIDCHAIN_HOST_GID:-0}"
names="$(printf '%s' "$NODES" | tr ',' '\n' | cut -d: -f1)"

log() { echo "[gridchain-init] $*"; }

DONE="$G/.gridchain-init-done"
if [ -f "$DONE" ]; then
    missing=""
    for name in $names; do
        [ -n "$(ls -A "$H/$name" 2>/dev/null)" ] || missing="$missing $name"
    done
    if [ -n "$missing" ]; then
        log "ERROR: genesis exists but the data volume of:$missing is empty."
        log "A validator's keys cannot be regenerated for an existing chain: restore the volume"
        log "from a backup, or start a new chain (down -v and remove the genesis directory)."
        exit 1
    fi
    log "genesis already present; nothing to do"
    exit 0
fi

if [ -n "$(ls -A "$G" 2>/dev/null)" ]; then
    log "ERROR: $G is not empty but holds no completed init (an earlier init failed?)."
    log "Remove the genesis directory and the data volumes (down -v) to start a new chain."
    exit 1
fi
for name in $names; do
    if [ -n "$(ls -A "$H/$name" 2>/dev/null)" ]; then
        log "ERROR: $H/$name is not empty but there is no genesis; refusing to overwrite it"
        exit 1
    fi
done

log "generating keys and genesis for $NODES"
# shellcheck disable=SC2086  # GRIDCHAIN_GENESIS_ARGS is a list of flags on purpose
gridchain genesis --out "$G" --nodes "$NODES" --host-mode compose ${GRIDCHAIN_GENESIS_ARGS:-} >/dev/null

for name in $names; do
    [ -d "$G/$name" ] || { log "ERROR: gridchain genesis did not create $G/$name"; exit 1; }
    cp -a "$G/$name/." "$H/$name/"
    rm -rf "$G/${name:?}"
    chown -R "$NODE_UID:$NODE_UID" "$H/$name"
    chmod 0700 "$H/$name"
done
chown -R "$HOST_UID:$HOST_GID" "$G"
date -u +%Y-%m-%dT%H:%M:%SZ >"$DONE"
log "done: validator homes are in their volumes; public files in $G"
