"""Token-bucket limits on transaction submission at the REST API.

Theory of operation
-------------------
Two limits, each a set of token buckets keyed by who is asking:

* **per client address** (``rate_limit_client_per_min``, burst ``rate_limit_client_burst``):
  every ``POST /v1/transactions`` costs its client address one token, and every
  transaction in it from an unregistered sender one more — a batch of signed
  transactions from members costs one, a batch of fresh-key registrations costs
  one per key, so a mempool flood from throw-away keys is bounded per address;
* **per unregistered sender** (``rate_limit_sender_per_min``, burst
  ``rate_limit_sender_burst``): each transaction whose sender has no account yet
  (only ``register_request`` passes admission for those) costs that sender one
  token, taken after its signature verified, so nobody can spend a newcomer's
  bucket with forged submissions.

Before that, admission refuses every other kind from a sender with no account
(``not_registered``) and charges the client address for each registration request,
both before any signature is checked, so throw-away keys buy no signature work.

A refused submission is answered ``429 rate_limited`` with ``Retry-After`` (whole
seconds until a token is back). A bucket refills at ``per_min / 60`` tokens per
second up to ``burst``. Memory is bounded: at most ``max_buckets`` buckets per
limit, the least recently used evicted first (an evicted bucket comes back full,
which is what an idle client would have anyway after ``burst / rate``).

Transactions gossiped by validators are not limited here: they were limited
where they entered the network. The API layer passes the client address to the
backend through ``CLIENT`` (a context variable set by the API middleware).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

RATE_LIMITED = "rate_limited"
"""Stable error code of a refused submission (HTTP 429)."""


class TokenBuckets:
    """Token buckets by key: ``rate_per_s`` refill, ``burst`` capacity, at most ``max_buckets`` kept."""

    def __init__(self, *, per_min: int, burst: int, max_buckets: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_min <= 0 or burst <= 0 or max_buckets <= 0:
            raise ValueError("per_min, burst and max_buckets must be positive")
        self.rate_per_s = per_min / 60.0
        self.burst = float(burst)
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets: OrderedDict[Any, tuple[float, float]] = OrderedDict()
        """key -> (tokens, time of that count), least recently used first."""

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Any, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens of ``key``'s bucket: 0.0 if it had them, otherwise the seconds
        until it will (nothing is spent then)."""
        now = self.clock()
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate_per_s)
        if tokens >= cost:
            tokens -= cost
            wait_s = 0.0
        else:
            wait_s = (min(cost, self.burst) - tokens) / self.rate_per_s
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return wait_s


@dataclass(slots=True)
class ClientRequest:
    """What the API middleware knows about the request being served."""

    address: str
    """The client's address (the peer IP of the HTTP connection)."""
    retry_after_s: float = 0.0
    """Largest wait of any limit refused in this request (0: none)."""
    refused: list[str] = field(default_factory=list)


CLIENT: ContextVar[ClientRequest | None] = ContextVar("gridchain_api_client", default=None)
"""The request being served (set by the API middleware for the handler's task)."""


def retry_after_header(wait_s: float) -> str:
    """``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))


class RateLimiter:
    """Both submission limits of one node; either may be off (None)."""

    def __init__(self, *, client: TokenBuckets | None, sender: TokenBuckets | None,
                 on_refused: Callable[[str], None] = lambda limit: None) -> None:
        self.client = client
        self.sender = sender
        self.on_refused = on_refused

    @classmethod
    def from_config(cls, config: Any, *, on_refused: Callable[[str], None] = lambda limit: None,
                    clock: Callable[[], float] = time.monotonic) -> RateLimiter:
        """Limits from a ``node.ops.config.NodeConfig`` (a rate of 0 turns that limit off)."""
        client = sender = None
        if config.rate_limit_client_per_min > 0:
            client = TokenBuckets(per_min=config.rate_limit_client_per_min, burst=config.rate_limit_client_burst,
                                  max_buckets=config.rate_limit_buckets, clock=clock)
        if config.rate_limit_sender_per_min > 0:
            sender = TokenBuckets(per_min=config.rate_limit_sender_per_min, burst=config.rate_limit_sender_burst,
                                  max_buckets=config.rate_limit_buckets, clock=clock)
        return cls(client=client, sender=sender, on_refused=on_refused)

    def request(self, request: ClientRequest) -> float:
        """One submission request from ``request.address``: 0.0 or the seconds to wait."""
        if self.client is None:
            return 0.0
        return self._refuse(request, "client", self.client.take(request.address))

    def client_tx(self) -> float:
        """One transaction from an unregistered sender in the current request, before its
        signature is checked: costs the client address a token; 0.0 or the seconds to wait."""
        request = CLIENT.get()
        if self.client is None or request is None:
            return 0.0
        return self._refuse(request, "client", self.client.take(request.address))

    def sender_tx(self, sender: str) -> float:
        """One admissible transaction from the unregistered ``sender`` (signature checked):
        costs the sender's bucket; 0.0 or the seconds to wait."""
        if self.sender is None:
            return 0.0
        return self._refuse(CLIENT.get(), "sender", self.sender.take(sender))

    def _refuse(self, request: ClientRequest | None, limit: str, wait_s: float) -> float:
        if wait_s > 0:
            self.on_refused(limit)
            if request is not None:
                request.retry_after_s = max(request.retry_after_s, wait_s)
                request.refused.append(limit)
        return wait_s
