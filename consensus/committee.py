"""The validator set of one epoch: who may sign, and how many signatures make a quorum.

Validators are identified by their index in ``public_keys`` (the genesis order).
With ``n`` validators the protocol tolerates ``f = (n - 1) // 3`` Byzantine ones and
a quorum is ``n - f`` signatures (``2f + 1`` when ``n = 3f + 1``). Every validator
has exactly one vote: credit never changes quorum weight.

The committee also holds a small, bounded cache of certificates whose signatures
were already checked, so a QC carried on many messages is verified once per node.
Give every node its own ``Committee`` object (the cache is per node, like the
real process).
"""

from __future__ import annotations

from collections import OrderedDict

from consensus.types import NodeId

VERIFIED_CACHE_SIZE = 4_096
"""Most certificate digests remembered as verified (oldest forgotten first)."""


class Committee:
    """Validators of ``epoch`` on ``chain_id``, indexed like ``public_keys``."""

    __slots__ = ("_index", "_verified", "chain_id", "epoch", "f", "n", "public_keys", "quorum")

    def __init__(self, chain_id: str, epoch: int, public_keys: tuple[bytes, ...] | list[bytes]) -> None:
        keys = tuple(public_keys)
        if not keys:
            raise ValueError("a committee needs at least one validator")
        if len(set(keys)) != len(keys):
            raise ValueError("validator public keys must be distinct")
        self.chain_id = chain_id
        self.epoch = epoch
        self.public_keys: tuple[bytes, ...] = keys
        self.n = len(keys)
        self.f = (self.n - 1) // 3
        self.quorum = self.n - self.f
        self._index = {key: i for i, key in enumerate(keys)}
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    def contains(self, node: NodeId) -> bool:
        return isinstance(node, int) and 0 <= node < self.n

    def public_key(self, node: NodeId) -> bytes:
        return self.public_keys[node]

    def index_of(self, public_key: bytes) -> NodeId | None:
        """The validator index of ``public_key``, or None for a key outside the committee."""
        return self._index.get(public_key)

    # --- verified-certificate cache (bounded LRU by digest) ---------------------------

    def is_verified(self, cert_digest: bytes) -> bool:
        if cert_digest in self._verified:
            self._verified.move_to_end(cert_digest)
            return True
        return False

    def remember_verified(self, cert_digest: bytes) -> None:
        self._verified[cert_digest] = None
        self._verified.move_to_end(cert_digest)
        while len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)

    def __repr__(self) -> str:
        return f"Committee(chain_id={self.chain_id!r}, epoch={self.epoch}, n={self.n}, f={self.f})"
