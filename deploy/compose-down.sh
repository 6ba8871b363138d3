#!/usr/bin/env bash
# Stop the GridChain consortium started by compose-up.sh. Data volumes and the
# genesis directory are kept, so the next compose-up resumes the same chain.
# PURGE=1 also deletes the volumes and the genesis directory: a new chain next time.
set -euo pipefail
# shellcheck source=deploy/compose-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/compose-lib.sh"

if [[ "${PURGE:-0}" == "1" ]]; then
    compose --profile monitoring down --volumes --remove-orphans
    rm -rf "${GRIDCHAIN_GENESIS_DIR:?}"
    log "stopped; volumes and $GRIDCHAIN_GENESIS_DIR deleted"
else
    compose --profile monitoring down --remove-orphans
    log "stopped; data volumes kept (PURGE=1 make compose-down deletes them)"
fi
