"""Notary: anchor a document hash co-signed by every named party.

One ``notarize`` transaction carries all co-signatures: ``parties`` sorted and
unique (1..16 addresses, the sender among them) and ``signatures[i]`` by
``parties[i]``'s account key over ``NotaryStatement{chain_id, doc_hash, parties}``
in the ``NOTARY`` domain. A document hash is anchored once [``duplicate_document``].
"""

from __future__ import annotations

from consensus import crypto
from contracts import errors
from contracts.context import BlockContext
from contracts.records import Notarized
from contracts.state import NotaryRecord
from contracts.transactions import KIND_NOTARY, MAX_PARTIES, Notarize, Tx, notary_statement_bytes


def apply_notarize(ctx: BlockContext, tx: Tx, body: Notarize, tx_hash: bytes) -> None:
    state = ctx.state
    key = body.doc_hash.hex()
    if key in state.notary:
        raise errors.fail(errors.DUPLICATE_DOCUMENT, f"document {key} is already notarised")
    parties = body.parties
    if not 1 <= len(parties) <= MAX_PARTIES or list(parties) != sorted(set(parties)):
        raise errors.fail(errors.BAD_PARTIES, f"parties must be 1..{MAX_PARTIES} sorted unique addresses")
    if tx.sender not in parties:
        raise errors.fail(errors.BAD_PARTIES, "the sender must be one of the parties")
    if len(body.signatures) != len(parties):
        raise errors.fail(errors.BAD_PARTIES, "one co-signature per party is required")
    message = notary_statement_bytes(chain_id=tx.chain_id, doc_hash=body.doc_hash, parties=parties)
    for party, signature in zip(parties, body.signatures, strict=True):
        account = state.accounts.get(party)
        if account is None or account.status != "active":
            raise errors.fail(errors.NOT_REGISTERED, f"party {party} is not an active account")
        if not crypto.verify(account.public_key, signature, chain_id=tx.chain_id, kind=KIND_NOTARY,
                             message=message):
            raise errors.fail(errors.BAD_COSIGNATURE, f"co-signature of {party} does not verify")
    location = ctx.emit(Notarized(doc_hash=body.doc_hash, parties=parties, title=body.title))
    state.put("notary", key, NotaryRecord(
        doc_hash=body.doc_hash, parties=parties, title=body.title, submitted_by=tx.sender,
        tx_hash=tx_hash, location=location))
