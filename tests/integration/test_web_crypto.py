"""The browser's encoder, signer and proof checker agree with the spec: in Debian's chromium,
the page's own modules (node/api/web/codec.js, signing.js, merkle.js) re-derive every vector
of docs/test-vectors/transactions.json — tx_bytes, signing domain, Ed25519 signature, raw
and tx_hash, the notary statement; the decoder reads tx_bytes back — and accept exactly the Merkle proofs that
contracts.traceability makes (a changed leaf, sibling or root is refused)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import traceability as tr
from tests.integration.browser_util import browser, new_page, serve_web_files

pytestmark = [pytest.mark.xdist_group("browser"), pytest.mark.timeout(120)]

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "docs" / "test-vectors" / "transactions.json")
                     .read_text())

CHECK_VECTOR = """async (v) => {
  const codec = await import("/web/codec.js");
  const signing = await import("/web/signing.js");
  const key = await signing.keyFromSeed(codec.hexToBytes(v.seed), codec.hexToBytes(v.public_key));
  const signed = await signing.signTx(key, v.request.tx);
  const out = {
    tx_bytes: codec.bytesToHex(signed.txBytes), signature: codec.bytesToHex(signed.signature),
    raw: codec.bytesToHex(signed.raw), tx_hash: signed.txHash, address: key.address,
    signing_domain: codec.bytesToHex(signing.txDomain(v.request.tx.chain_id)),
    reencoded: codec.bytesToHex(codec.encodeTx(codec.decode(codec.hexToBytes(v.tx_bytes)))),
  };
  if (v.notary_statement) {
    out.notary_statement = codec.bytesToHex(codec.encodeNotaryStatement({
      chain_id: v.request.tx.chain_id, doc_hash: v.request.tx.body.doc_hash, parties: v.request.tx.body.parties}));
    out.notary_domain = codec.bytesToHex(signing.notaryDomain(v.request.tx.chain_id));
  }
  return out;
}"""


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with serve_web_files() as url, browser() as b:
        p = new_page(b)
        p.goto(url + "/web/codec.js")
        yield p
        assert p.errors == []


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_browser_encoder_and_signer_reproduce_vector(page: Any, vector: dict[str, Any]) -> None:
    got = page.evaluate(CHECK_VECTOR, vector)
    for field in ("tx_bytes", "signing_domain", "signature", "raw", "tx_hash"):
        assert got[field] == vector[field], field
    assert got["reencoded"] == vector["tx_bytes"]  # the page's decoder reads back what it encodes
    assert got["address"] == vector["request"]["tx"]["sender"] or vector["kind"] == "submit_reading"
    assert vector["request"]["signature"] == vector["signature"]
    if "notary_statement" in vector:
        assert got["notary_statement"] == vector["notary_statement"]
        assert got["notary_domain"] == vector["notary_domain"]


def test_browser_encoder_refuses_unknown_fields_and_inexact_integers(page: Any) -> None:
    tx = VECTORS["vectors"][0]["request"]["tx"]
    errors = page.evaluate("""async (tx) => {
      const codec = await import("/web/codec.js");
      const tries = [{...tx, extra: 1}, {...tx, nonce: 2 ** 60}, {...tx, nonce: -1},
                     {...tx, body: {...tx.body, kind: "nope"}}, {...tx, public_key: "AB"}];
      return tries.map((t) => { try { codec.encodeTx(t); return null; } catch (e) { return String(e); } });
    }""", tx)
    assert all(e is not None for e in errors), errors


def test_browser_merkle_check_accepts_exactly_the_python_proofs(page: Any) -> None:
    cases = []
    for count in range(1, 10):
        leaves = [bytes([count, i]) * 5 for i in range(count)]
        root = tr.merkle_root(leaves).hex()
        for index in range(count):
            proof = tr.prove(leaves, index)
            cases.append({"leaf": leaves[index].hex(), "root": root, "proof": {
                "index": index, "leaf_count": count, "siblings": [s.hex() for s in proof.siblings]}})
    verdicts = page.evaluate("""async (cases) => {
      const m = await import("/web/merkle.js");
      const flip = (hex) => (hex[0] === "0" ? "1" : "0") + hex.slice(1);
      const out = [];
      for (const c of cases) {
        const tampered = [await m.verifyProof(flip(c.leaf), c.proof, c.root),
                          await m.verifyProof(c.leaf, c.proof, flip(c.root))];
        if (c.proof.siblings.length) {
          tampered.push(await m.verifyProof(c.leaf, {...c.proof, siblings: [flip(c.proof.siblings[0]),
            ...c.proof.siblings.slice(1)]}, c.root));
          tampered.push(await m.verifyProof(c.leaf, {...c.proof, siblings: c.proof.siblings.slice(1)}, c.root));
        }
        out.push({ok: await m.verifyProof(c.leaf, c.proof, c.root), tampered});
      }
      return out;
    }""", cases)
    assert len(verdicts) == 45
    assert all(v["ok"] for v in verdicts)
    assert not any(any(v["tampered"]) for v in verdicts)


def _doc_schema() -> dict[str, list[list[str]]]:
    """TRANSACTIONS.md's `gridchain-tx-schema` block: name -> [[field, type], ...]."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "TRANSACTIONS.md").read_text()
    block = text.split("```gridchain-tx-schema\n", 1)[1].split("```", 1)[0]
    return {name: [f.split(":", 1) for f in fields]
            for name, *fields in (line.split() for line in block.splitlines() if line.strip())}


def test_browser_encoder_knows_every_kind_of_the_signing_spec(page: Any) -> None:
    """Every body kind and nested struct of TRANSACTIONS.md's schema block, field for field and
    type for type, is in the page's encoder (a kind added to the chain must reach the page)."""
    got = page.evaluate("""async () => {
      const codec = await import("/web/codec.js");
      const strip = (fields) => fields.map(([name, type]) => [name, type]);
      const bodies = Object.fromEntries(Object.entries(codec.BODY_FIELDS).map(([k, f]) => [k, strip(f)]));
      return {bodies, ChannelState: strip(codec.CHANNEL_STATE_FIELDS), NotaryStatement: strip(codec.NOTARY_FIELDS),
              Tx: strip(codec.TX_FIELDS)};
    }""")
    doc = _doc_schema()
    kinds = {name: fields for name, fields in doc.items() if fields and fields[0] == ["kind", "str"]}
    assert set(got["bodies"]) == set(kinds)
    for kind, fields in kinds.items():
        assert got["bodies"][kind] == fields[1:], kind
    for struct in ("Tx", "NotaryStatement", "ChannelState"):
        assert got[struct] == doc[struct], struct
