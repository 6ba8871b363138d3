"""``gridchain verify-proof``: check a trade's lineage proofs.

Input is what ``gridchain query trace TRADE_ID`` (or ``GET
/v1/trace/trades/{id}``) printed: per lineage record the leaf bytes, a Merkle
inclusion proof and the block it belongs to. Each proof is checked against the
block's ``receipts_root``: by default the root carried in the file, or, to
trust nothing the serving node said, against roots from block headers you
fetched yourself: ``--node URL`` fetches the header of every height the lineage
spans (a lineage spans several: orders, clearing, readings, settlement) from that
node, or ``--header FILE`` (repeatable: the JSON of ``gridchain query block H``)
for offline use. Give the same height from several nodes (``--node`` repeated, or
headers saved from each) to cross-check them: headers that disagree are an error.
With ``--receipts-root HEX`` a single-record file is checked against that root.

It also checks that each displayed ``record`` is exactly the decoded leaf, so
the human-readable part cannot differ from what was proven. Exit status 0 if
every proof verifies, 1 if any fails, 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from contracts import traceability as tr
from node.api.views import decode_leaf
from node.cli import apiutil as common


class ProofFormatError(ValueError):
    code = "bad_proof_file"


class NodeUnreachable(ProofFormatError):
    code = "node_unreachable"


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ProofFormatError(f"{what} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ProofFormatError(f"{what} is not hex") from None


def proof_from_json(obj: Any) -> tr.Proof:
    """The ``Proof`` of its JSON form (siblings as hex)."""
    if not isinstance(obj, dict) or set(obj) != {"index", "leaf_count", "siblings"}:
        raise ProofFormatError("a proof is {index, leaf_count, siblings}")
    index, count, siblings = obj["index"], obj["leaf_count"], obj["siblings"]
    if type(index) is not int or type(count) is not int or not isinstance(siblings, list):
        raise ProofFormatError("proof index/leaf_count must be integers and siblings a list")
    return tr.Proof(index=index, leaf_count=count,
                    siblings=tuple(_hex(s, "proof sibling") for s in siblings))


def verify_entry(entry: dict[str, Any], roots: dict[int, bytes] | None,
                 override_root: bytes | None = None) -> tuple[bool, str]:
    """Verify one lineage entry; returns (ok, reason)."""
    if entry.get("proof") is None or entry.get("leaf") is None:
        return False, "no proof (the node has no leaves for that height)"
    leaf = _hex(entry["leaf"], "leaf")
    proof = proof_from_json(entry["proof"])
    height = entry.get("location", {}).get("height")
    if override_root is not None:
        root = override_root
    elif roots is not None:
        if height not in roots:
            return False, f"no trusted header for height {height}"
        root = roots[height]
    else:
        root = _hex(entry.get("block", {}).get("receipts_root"), "block.receipts_root")
    if entry.get("location", {}).get("index") != proof.index:
        return False, "proof index differs from the record's location"
    if not tr.verify_proof(leaf, proof, root):
        return False, "inclusion proof does not verify against the receipts root"
    if "record" in entry and entry["record"] != decode_leaf(leaf):
        return False, "displayed record differs from the proven leaf"
    return True, "ok"


def verify_trace(doc: Any, *, roots: dict[int, bytes] | None = None,
                 override_root: bytes | None = None) -> list[dict[str, Any]]:
    """Results per lineage entry of a trace document."""
    if isinstance(doc, dict) and "lineage" in doc:
        entries = doc["lineage"]
    elif isinstance(doc, dict) and "proof" in doc:
        entries = [doc]
    else:
        raise ProofFormatError("expected a trace ({lineage: [...]}) or one entry with a proof")
    if not isinstance(entries, list) or not entries:
        raise ProofFormatError("lineage must be a non-empty list")
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ProofFormatError("each lineage entry must be an object")
        ok, reason = verify_entry(entry, roots, override_root)
        out.append({"role": entry.get("role"), "location": entry.get("location"), "ok": ok, "reason": reason})
    return out


def lineage_heights(doc: Any) -> list[int]:
    """The block heights a trace document's entries belong to (sorted, distinct)."""
    entries = doc.get("lineage", [doc]) if isinstance(doc, dict) else []
    heights = {e.get("location", {}).get("height") for e in entries if isinstance(e, dict)}
    return sorted(h for h in heights if type(h) is int)


def _add_root(roots: dict[int, bytes], header: Any, source: str) -> None:
    if not isinstance(header, dict) or type(header.get("height")) is not int:
        raise ProofFormatError(f"{source}: not a block (gridchain query block H)")
    root = _hex(header.get("receipts_root"), f"{source}: receipts_root")
    if roots.setdefault(header["height"], root) != root:
        raise ProofFormatError(f"headers disagree on the receipts root of height {header['height']}")


def _fetch_headers(roots: dict[int, bytes], node: str, heights: list[int]) -> None:
    """The header of each height from ``node``'s ``GET /v1/blocks/{h}``, into ``roots``."""
    from node.client import ApiClientError, Client

    try:
        with Client(node) as client:
            for height in heights:
                block = client.block(height)
                if block is None:
                    raise ProofFormatError(f"{node} has no block at height {height}")
                _add_root(roots, block, f"{node} block {height}")
    except ApiClientError as exc:
        raise NodeUnreachable(f"{node}: {exc}") from None



def _load(path: str) -> Any:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        return orjson.loads(data)
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ProofFormatError(f"cannot read {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    try:
        doc = _load(args.file)
        roots: dict[int, bytes] | None = None
        if args.header or args.node:
            roots = {}
            for header_file in args.header:
                _add_root(roots, _load(header_file), header_file)
            for node in args.node:
                _fetch_headers(roots, node, lineage_heights(doc))
        override = _hex(args.receipts_root, "--receipts-root") if args.receipts_root else None
        results = verify_trace(doc, roots=roots, override_root=override)
    except ProofFormatError as exc:
        return common.fail(exc.code, str(exc), status=2)
    ok = all(r["ok"] for r in results)
    common.print_json({"ok": ok, "results": results})
    return 0 if ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("verify-proof", help="verify a trade lineage's inclusion proofs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="trace JSON (from `gridchain query trace`), or - for stdin")
    p.add_argument("--node", action="append", default=[], metavar="URL",
                   help="fetch the header of every height the lineage spans from this node's API; "
                        "repeat to cross-check nodes")
    p.add_argument("--header", action="append", default=[],
                   help="trusted block JSON (`gridchain query block H`), for offline use; repeat per height")
    p.add_argument("--receipts-root", default=None, help="check every entry against this root (hex)")
    p.set_defaults(func=run)
