"""Typed errors of the GridChain state machine, each with a stable ``code``.

A failed receipt carries ``code``; clients, the REST API and tests rely on these
strings, so a code is never renamed once published. ``TxError`` covers everything
a transaction (or a peer, or a user) can cause; programming errors are ``assert``.
"""

from __future__ import annotations


class TxError(Exception):
    """A transaction (or its envelope) is rejected; nothing was changed."""

    code = "rejected"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


def fail(code: str, message: str) -> TxError:
    """Build a ``TxError`` with ``code``; ``raise fail("slot_closed", "...")``."""
    return TxError(message, code=code)


class GenesisError(ValueError):
    """A genesis document that cannot start a chain."""

    code = "bad_genesis"


# Envelope / admission codes (check_tx and apply_block).
MALFORMED = "malformed"
TOO_LARGE = "too_large"
BAD_SIGNATURE = "bad_signature"
WRONG_CHAIN = "wrong_chain"
EXPIRED = "expired"
STALE_NONCE = "stale_nonce"
NOT_REGISTERED = "not_registered"
WRONG_SIGNER = "wrong_signer"
UNAUTHORIZED = "unauthorized"
INTERNAL_ERROR = "internal_error"
"""An unexpected exception in a handler: the transaction failed and was rolled back (a bug)."""

# Contract codes.
ALREADY_REGISTERED = "already_registered"
BAD_ROLE = "bad_role"
NOT_PENDING = "not_pending"
UNKNOWN_ACCOUNT = "unknown_account"
INSUFFICIENT_BALANCE = "insufficient_balance"
BAD_AMOUNT = "bad_amount"
ROLE_NOT_ALLOWED = "role_not_allowed"
SLOT_CLOSED = "slot_closed"
BEYOND_HORIZON = "beyond_horizon"
PRICE_OUT_OF_RANGE = "price_out_of_range"
BAD_QUANTITY = "bad_quantity"
SELF_TRADE = "self_trade"
HAS_DEBT = "has_debt"
NOT_OWNER = "not_owner"
UNKNOWN_ORDER = "unknown_order"
READING_WINDOW_CLOSED = "reading_window_closed"
DUPLICATE_READING = "duplicate_reading"
UNKNOWN_DISPATCH = "unknown_dispatch"
ALREADY_ACKNOWLEDGED = "already_acknowledged"
DEADLINE_PASSED = "deadline_passed"
BAD_DEADLINE = "bad_deadline"
DUPLICATE_DOCUMENT = "duplicate_document"
BAD_PARTIES = "bad_parties"
BAD_COSIGNATURE = "bad_cosignature"
LIMIT_REACHED = "limit_reached"
KEY_IN_USE = "key_in_use"
UNKNOWN_CHANNEL = "unknown_channel"
NOT_CHANNEL_PARTY = "not_channel_party"
"""Only a party of the channel may fund or close it."""
CHANNEL_NOT_OPEN = "channel_not_open"
"""Funding and closing need an open channel (not one closing or settled)."""
CHANNEL_NOT_CLOSING = "channel_not_closing"
"""A challenge or a settlement needs a channel in its challenge period (closing)."""
ALREADY_FUNDED = "already_funded"
BAD_CHANNEL_STATE = "bad_channel_state"
"""A channel state whose balances, seq, slots or final flag do not fit the channel."""
STALE_STATE = "stale_state"
"""A channel state not newer (higher seq) than the one already posted."""
CHALLENGE_PERIOD_OVER = "challenge_period_over"
CHALLENGE_PERIOD_RUNNING = "challenge_period_running"
