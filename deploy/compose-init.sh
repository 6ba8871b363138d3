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
# `gridchain genesis`), GRIDCHAIN_UID (10001), GRIDCHAIN_HOST_UID/GID (owner of /genesis).
set -eu

NODES="${GRIDCHAIN_NODES:-generator:generator,grid:grid,retailer:retailer,user:user}"
NODE_UID="${GRIDCHAIN_UID:-10001}"
HOST_UID="${GRIDCHAIN_HOST_UID:-0}"
HOST_GID="${GRIDCHAIN_HOST_GID:-0}"
names="$(printf '%s' "$NODES" | tr ',' '\n' | cut -d: -f1)"

log() { echo "[gridchain-init] $*"; }

DONE=/genesis/.gridchain-init-done
if [ -f "$DONE" ]; then
    missing=""
    for name in $names; do
        [ -n "$(ls -A "/homes/$name" 2>/dev/null)" ] || missing="$missing $name"
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

if [ -n "$(ls -A /genesis 2>/dev/null)" ]; then
    log "ERROR: /genesis is not empty but holds no completed init (an earlier init failed?)."
    log "Remove the genesis directory and the data volumes (down -v) to start a new chain."
    exit 1
fi
for name in $names; do
    if [ -n "$(ls -A "/homes/$name" 2>/dev/null)" ]; then
        log "ERROR: /homes/$name is not empty but there is no genesis; refusing to overwrite it"
        exit 1
    fi
done

log "generating keys and genesis for $NODES"
# shellcheck disable=SC2086  # GRIDCHAIN_GENESIS_ARGS is a list of flags on purpose
gridchain genesis --out /genesis --nodes "$NODES" --host-mode compose ${GRIDCHAIN_GENESIS_ARGS:-}

for name in $names; do
    [ -d "/genesis/$name" ] || { log "ERROR: gridchain genesis did not create /genesis/$name"; exit 1; }
    cp -a "/genesis/$name/." "/homes/$name/"
    rm -rf "/genesis/${name:?}"
    chown -R "$NODE_UID:$NODE_UID" "/homes/$name"
    chmod 0700 "/homes/$name"
done
chown -R "$HOST_UID:$HOST_GID" /genesis
date -u +%Y-%m-%dT%H:%M:%SZ >"$DONE"
log "done: validator homes are in their volumes; public files in /genesis"
