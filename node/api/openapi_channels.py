"""The payment-channel part of the OpenAPI document: the routes of
``node.api.routes_channels`` and the schemas of their bodies and answers."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from contracts import state as st
from contracts import transactions as txs
from node.api.openapi_paths import _400_PARAMS, _405, _err, _get, _json_content, _p, ref

Signature = Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


class CoSignedState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A channel state signed by both parties (the body of ``POST .../states`` too)."""

    state: txs.ChannelState
    signature_a: Signature
    """The opener's signature in the ``<chain_id>/CHANNEL/v1`` domain."""
    signature_b: Signature
    """The counterparty's."""


class ProposeBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A state signed by the proposing party."""

    state: txs.ChannelState
    signature: Signature


class CountersignBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The other party's signature of the pending proposal ``seq``."""

    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    signature: Signature


class ChannelProposal(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    state: txs.ChannelState
    proposer: str
    signature: Signature


class ChannelInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The channel on chain (null if this node knows only states of it) and what this node holds."""

    channel_id: str
    channel: st.Channel | None
    latest: CoSignedState | None
    """The newest co-signed state stored on this node."""
    proposal: ChannelProposal | None
    """The proposal waiting for a countersignature here."""


class ChannelTrace(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    channel_id: str
    lineage: list[Any]
    """``LineageEntry`` per record: opened, funded, close_started, challenged, settled, readings."""


SCHEMA_TYPES: tuple[Any, ...] = (CoSignedState, ProposeBody, CountersignBody, ChannelProposal, ChannelInfo,
                                 ChannelTrace)
OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("ChannelTrace", "lineage"): {"type": "array", "items": ref("LineageEntry")},
}

_CHANNEL_ID = _p("channel_id", "path", "64 hex chars: the opening transaction's hash",
                 {"type": "string", "pattern": "^[0-9a-f]{64}$"})


def _post(summary: str, body: str, answer: str, *, op_id: str, conflict: str) -> dict[str, Any]:
    return {"post": {
        "operationId": op_id, "summary": summary, "parameters": [_CHANNEL_ID],
        "requestBody": {"required": True, "content": _json_content(ref(body))},
        "responses": {
            "200": {"description": "stored on disk (fsync) before this answer", "content": _json_content(ref(answer))},
            "400": _err(_400_PARAMS + "; malformed: the body is not the documented object"),
            "404": _err("unknown_channel, not_found: no such channel (or proposal) on chain or on this node"),
            "405": _405,
            "409": _err(conflict),
            "413": _err("body_too_large"),
            "422": _err("bad_channel_state, bad_cosignature, channel_not_open, limit_reached"),
            "503": _err("channels_unavailable: this node keeps no channel states"),
        },
    }}


def channel_paths() -> dict[str, Any]:
    return {
        "/v1/channels/{channel_id}": _get(
            "A payment channel: its record on chain and the newest co-signed state and pending proposal "
            "this node holds", ref("ChannelInfo"), [_CHANNEL_ID], op_id="getChannel",
            not_found="not_found: unknown channel"),
        "/v1/channels/{channel_id}/proposals": _post(
            "Propose an update signed by one party; the other party countersigns it here",
            "ProposeBody", "ChannelProposal", op_id="proposeChannelState",
            conflict="stale_state: not newer than the co-signed state stored here"),
        "/v1/channels/{channel_id}/countersign": _post(
            "Countersign the pending proposal; the co-signed state is stored and returned",
            "CountersignBody", "CoSignedState", op_id="countersignChannelState",
            conflict="stale_state: a newer state is stored here"),
        "/v1/channels/{channel_id}/states": _post(
            "Store a co-signed state on this node (its watchtower then answers stale closes with it)",
            "CoSignedState", "CoSignedState", op_id="storeChannelState",
            conflict="stale_state: not newer than the state stored here"),
        "/v1/trace/channels/{channel_id}": _get(
            "Lineage of a channel (opened, funded, close, challenge, settlement with its energy, and the "
            "meter readings it names) with Merkle inclusion proofs", ref("ChannelTrace"), [_CHANNEL_ID],
            op_id="getChannelTrace", not_found="not_found: unknown channel"),
    }
