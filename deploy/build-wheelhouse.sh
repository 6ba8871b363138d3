#!/usr/bin/env bash
# Fill deploy/wheelhouse/ with the gridchain wheel and every dependency as
# CPython 3.11 manylinux x86_64 wheels, so `pip install --no-index --find-links`
# inside the image build needs no package index.
#
# The base image is Debian bookworm's python3 (3.11, glibc 2.36) or
# python:3.11-slim; the dependencies are therefore downloaded for the target
# (cp311 / manylinux), not for whatever Python runs this script.
#
# The dependency versions are exactly requirements/runtime.txt (the runtime subset
# of the lock uv.lock, with hashes; `make lock` regenerates both); pip checks
# every wheel's hash on download here and again on install in the image, which
# installs the same file (copied into the wheelhouse as requirements.txt).
#
# Idempotent and cache-friendly: the dependency wheels are kept while
# requirements/runtime.txt is unchanged; the gridchain wheel is rebuilt only when a source
# file changed (stamps in the wheelhouse record the hashes).
#
# Usage: deploy/build-wheelhouse.sh            Env: PYTHON (default .venv/bin/python or python3)
# Air-gapped: run this where PyPI is reachable and copy deploy/wheelhouse/ over.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
WHEELS="$HERE/wheelhouse"
PY_TARGET="${PY_TARGET:-311}"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

log() { printf '[build-wheelhouse] %s\n' "$*" >&2; }

mkdir -p "$WHEELS"
RUNTIME_REQS="$ROOT/requirements/runtime.txt"
deps_stamp="$( { cat "$RUNTIME_REQS"; echo "cp$PY_TARGET"; } | sha256sum | cut -c1-16)"
src_stamp="$(cd "$ROOT" && find pyproject.toml consensus contracts node -type f \
    \( -name '*.py' -o -name '*.toml' -o -path 'node/api/web/*' \) ! -path '*/__pycache__/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"

if [[ "$(cat "$WHEELS/.src-stamp" 2>/dev/null)" != "$src_stamp" ]] || ! compgen -G "$WHEELS/gridchain-*.whl" >/dev/null; then
    log "building the gridchain wheel (sources $src_stamp)"
    rm -f "$WHEELS"/gridchain-*.whl
    build="$(mktemp -d "${TMPDIR:-/tmp}/gridchain-wheel.XXXXXX")"
    # Build from a copy so setuptools' build/ and egg-info never touch the work tree.
    items=(pyproject.toml consensus contracts node)
    [[ -f "$ROOT/README.md" ]] && items+=(README.md)
    (cd "$ROOT" && tar -c --exclude=__pycache__ --exclude='*.egg-info' "${items[@]}") | tar -x -C "$build"
    [[ -f "$build/README.md" ]] || echo "GridChain" >"$build/README.md"
    # Without build isolation when the local setuptools can build wheels (works offline),
    # otherwise with it (fetches setuptools from the index).
    if ! "$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$WHEELS" "$build" >"$build.log" 2>&1 \
        && ! "$PYTHON" -m pip wheel --quiet --no-deps -w "$WHEELS" "$build" >"$build.log" 2>&1; then
        cat "$build.log" >&2; rm -rf "$build" "$build.log"; exit 1
    fi
    rm -rf "$build" "$build.log"
    echo "$src_stamp" >"$WHEELS/.src-stamp"
fi

if [[ "$(cat "$WHEELS/.deps-stamp" 2>/dev/null)" != "$deps_stamp" ]]; then
    log "downloading the locked dependency wheels (requirements/runtime.txt) for cp$PY_TARGET manylinux x86_64"
    # Wheels of versions no longer locked are dropped, so the image gets exactly the lock.
    find "$WHEELS" -maxdepth 1 -name '*.whl' ! -name 'gridchain-*.whl' -delete
    "$PYTHON" -m pip download --quiet --dest "$WHEELS" --only-binary=:all: --require-hashes --no-deps \
        --implementation cp --python-version "$PY_TARGET" --abi "cp$PY_TARGET" --abi abi3 --abi none \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any \
        -r "$RUNTIME_REQS" 2>&1 | { grep -v -E "^WARNING: Location .* is ignored" || true; } >&2
    [[ "${PIPESTATUS[0]}" == "0" ]] || { log "pip download failed"; exit 1; }
    cp "$RUNTIME_REQS" "$WHEELS/requirements.txt"
    echo "$deps_stamp" >"$WHEELS/.deps-stamp"
else
    log "dependency wheels are current ($deps_stamp)"
fi
all=("$WHEELS"/*.whl)
log "wheelhouse ready: ${#all[@]} wheels in $WHEELS"
