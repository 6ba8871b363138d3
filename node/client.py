"""A small Python client for the GridChain REST API (what the CLI and the demo use).

``AsyncClient`` is the real implementation (aiohttp); ``Client`` is a thin
synchronous wrapper that runs it on a private event loop, for scripts and the
CLI. Both build, sign and submit transactions with a participant's key (the
node never sees it), wait for receipts and run every query of ``/v1``.

Nonces: a sender's nonces must strictly increase, gaps are allowed (see
``contracts.transactions``). ``AsyncClient.send`` picks
``max(committed nonce + 1, last nonce this client used + 1, unix time in ms)``
so separate CLI invocations that submit without waiting never collide, and a
restarted client never reuses a nonce. Pass ``nonce=`` to choose one yourself.

Resubmission: a 202 means the node journaled the transaction. If the node dies
before the transaction commits and does not come back, resubmitting the same
raw bytes to any node is safe: a node that already has it (pending or
committed) answers 202 with the same hash, and a transaction can never apply
twice (its nonce). A *different* transaction reusing a committed nonce is
``409 stale_nonce``.

Errors: every non-2xx answer raises ``ApiClientError`` with the server's stable
``code``; ``mempool_full`` is retried with back-off by ``submit`` when
``retry_overloaded_s`` > 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from consensus import crypto
from contracts import transactions as txs
from node.ops import keys

DEFAULT_TTL_MS = 300_000
"""Default validity of a transaction: its block must be within 5 minutes of signing."""
DEFAULT_TIMEOUT_S = 30.0
"""Per-request timeout."""


class ApiClientError(Exception):
    """A non-2xx answer (or a transport failure, code ``unavailable``)."""

    def __init__(self, code: str, message: str, *, status: int = 0, body: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.body = body


class TxFailed(ApiClientError):
    """The transaction was committed with a failed receipt."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class AsyncClient:
    """Async client of one node's API (``base_url`` like ``http://127.0.0.1:7101``)."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._own_session = session is None
        self._last_nonce: dict[tuple[str, bool], int] = {}
        self._chain_id: str | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    # --- HTTP -------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      json_body: Any = None, data: bytes | None = None,
                      content_type: str | None = None) -> Any:
        """One API call; returns the decoded JSON body or raises ``ApiClientError``."""
        headers = {"Content-Type": content_type} if content_type else None
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        body = msgspec.json.encode(json_body) if json_body is not None else data
        if json_body is not None:
            headers = {"Content-Type": "application/json"}
        try:
            async with self._sess().request(method, self.base_url + path, params=query,
                                            data=body, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ApiClientError("unavailable", f"{method} {path}: {exc or type(exc).__name__}") from exc
        try:
            decoded = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            decoded = None
        if status >= 400:
            err = decoded.get("error", {}) if isinstance(decoded, dict) else {}
            raise ApiClientError(str(err.get("code", f"http_{status}")), str(err.get("message", raw[:200])),
                                 status=status, body=decoded)
        return decoded

    async def _get_or_none(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return await self.request("GET", path, params=params)
        except ApiClientError as exc:
            if exc.code == "not_found":
                return None
            raise

    # --- queries ----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        return await self.request("GET", "/v1/status")  # type: ignore[no-any-return]

    async def ready(self) -> bool:
        try:
            await self.request("GET", "/readyz")
        except ApiClientError:
            return False
        return True

    async def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str((await self.status())["chain_id"])
        return self._chain_id

    async def block(self, height: int | str = "latest", *, full_txs: bool = False) -> dict[str, Any] | None:
        return await self._get_or_none(f"/v1/blocks/{height}", {"txs": "full" if full_txs else None})  # type: ignore[no-any-return]

    async def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        return await self._get_or_none(f"/v1/transactions/{tx_hash}")  # type: ignore[no-any-return]

    async def account(self, address: str, *, settlements_limit: int | None = None,
                      settlements_before_slot: int | None = None) -> dict[str, Any] | None:
        """The account with one page of its settlement lines (newest first)."""
        params = {"settlements_limit": settlements_limit, "settlements_before_slot": settlements_before_slot}
        return await self._get_or_none(f"/v1/accounts/{address}", params)  # type: ignore[no-any-return]

    async def slot(self, slot: int, *, settlements_limit: int | None = None,
                   settlements_after_account: str | None = None) -> dict[str, Any] | None:
        """The slot with its trades and one page of its settlement lines (by account)."""
        params = {"settlements_limit": settlements_limit, "settlements_after_account": settlements_after_account}
        return await self._get_or_none(f"/v1/market/slots/{slot}", params)  # type: ignore[no-any-return]

    async def order(self, order_id: str) -> dict[str, Any] | None:
        return await self._get_or_none(f"/v1/orders/{order_id}")  # type: ignore[no-any-return]

    async def trades(self, *, account: str | None = None, slot: int | None = None) -> list[dict[str, Any]]:
        out = await self.request("GET", "/v1/trades", params={"account": account, "slot": slot})
        return out["trades"]  # type: ignore[no-any-return]

    async def trace(self, trade_id: str) -> dict[str, Any] | None:
        return await self._get_or_none(f"/v1/trace/trades/{trade_id}")  # type: ignore[no-any-return]

    async def validators(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/v1/validators"))["validators"]  # type: ignore[no-any-return]

    async def dispatch(self, *, account: str | None = None) -> list[dict[str, Any]]:
        return (await self.request("GET", "/v1/dispatch", params={"account": account}))["dispatch"]  # type: ignore[no-any-return]

    # --- submitting ---------------------------------------------------------------------

    async def submit(self, raw: bytes, *, retry_overloaded_s: float = 0.0) -> str:
        """Submit one signed tx; return its hash (hex). Retries 503 for up to ``retry_overloaded_s``."""
        deadline = time.monotonic() + retry_overloaded_s
        delay_s = 0.05
        while True:
            try:
                out = await self.request("POST", "/v1/transactions", json_body={"raw": raw.hex()})
                return str(out["tx_hash"])
            except ApiClientError as exc:
                if exc.code != "mempool_full" or time.monotonic() + delay_s > deadline:
                    raise
            await asyncio.sleep(delay_s)
            delay_s = min(1.0, delay_s * 2)

    async def submit_batch(self, raws: Sequence[bytes]) -> dict[str, Any]:
        """Submit many signed txs in one request (MessagePack body); per-tx results."""
        body = msgspec.msgpack.encode(list(raws))
        return await self.request("POST", "/v1/transactions", data=body,  # type: ignore[no-any-return]
                                  content_type="application/msgpack")

    async def wait_for_receipt(self, tx_hash: str, *, timeout_s: float = 60.0,
                               poll_s: float = 0.1) -> dict[str, Any]:
        """Poll until the tx is committed or failed; return the lookup (status, height, receipt).

        A node that is briefly unreachable (restarting) is polled again until ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                found = await self.transaction(tx_hash)
            except ApiClientError as exc:
                if exc.code != "unavailable":  # a restarting node: keep polling until the deadline
                    raise
                found = None
            if found is not None and found["status"] in ("committed", "failed"):
                return found
            if time.monotonic() >= deadline:
                state = found["status"] if found else "unknown"
                raise ApiClientError("timeout", f"tx {tx_hash} still {state} after {timeout_s}s")
            await asyncio.sleep(poll_s)
            poll_s = min(1.0, poll_s * 1.5)

    async def next_nonce(self, sender: str, *, reading: bool = False) -> int:
        acc = await self.account(sender)
        committed = 0 if acc is None else int(acc["meter_nonce" if reading else "nonce"])
        key = (sender, reading)
        nonce = max(committed + 1, self._last_nonce.get(key, 0) + 1, now_ms())
        self._last_nonce[key] = nonce
        return nonce

    async def build(self, signer: crypto.Signer | str | Path, body: Any, *, sender: str | None = None,
                    nonce: int | None = None, ttl_ms: int = DEFAULT_TTL_MS, chain_id: str | None = None,
                    expires_at_ms: int | None = None) -> bytes:
        """Sign ``body`` as a tx of ``sender`` (default: the signer's address) and return raw bytes.

        ``signer`` is a ``crypto.Signer`` or the path of a key file (``node.ops.keys``). The node
        is asked only for what is not given: ``chain_id`` and ``nonce``; ``expires_at_ms``
        defaults to now + ``ttl_ms``."""
        if not isinstance(signer, crypto.Signer):
            signer = keys.load_signer(signer)
        sender = sender or crypto.address(signer.public_key)
        reading = isinstance(body, txs.SubmitReading)
        if nonce is None:
            nonce = await self.next_nonce(sender, reading=reading)
        if expires_at_ms is None:
            expires_at_ms = now_ms() + ttl_ms
        tx = txs.Tx(chain_id=chain_id if chain_id is not None else await self.chain_id(), sender=sender,
                    public_key=signer.public_key, nonce=nonce, expires_at_ms=expires_at_ms, body=body)
        return txs.sign_tx(tx, signer)

    async def send(self, signer: crypto.Signer | str | Path, body: Any, *, sender: str | None = None,
                   nonce: int | None = None, ttl_ms: int = DEFAULT_TTL_MS, wait: bool = False,
                   wait_timeout_s: float = 60.0, retry_overloaded_s: float = 10.0,
                   chain_id: str | None = None, expires_at_ms: int | None = None) -> dict[str, Any]:
        """Build, sign, submit; with ``wait`` also wait for the receipt.

        Returns ``{"tx_hash": ...}`` plus ``status``/``height``/``receipt`` when waiting;
        raises ``TxFailed`` when the receipt is a failure (``exc.body`` has the lookup).
        """
        raw = await self.build(signer, body, sender=sender, nonce=nonce, ttl_ms=ttl_ms, chain_id=chain_id,
                               expires_at_ms=expires_at_ms)
        tx_hash = await self.submit(raw, retry_overloaded_s=retry_overloaded_s)
        out: dict[str, Any] = {"tx_hash": tx_hash}
        if not wait:
            return out
        found = await self.wait_for_receipt(tx_hash, timeout_s=wait_timeout_s)
        out.update(status=found["status"], height=found["height"], receipt=found["receipt"])
        if found["status"] == "failed":
            receipt = found.get("receipt") or {}
            code = str(receipt.get("code") or "failed")
            raise TxFailed(code, str(receipt.get("message") or f"tx {tx_hash} failed"), body=out)
        return out


def notarize_body(*, chain_id: str, doc_hash: bytes, signers: Iterable[crypto.Signer],
                  title: str = "") -> txs.Notarize:
    """A notarize body co-signed by every signer (parties sorted by address)."""
    by_address = {crypto.address(s.public_key): s for s in signers}
    parties = tuple(sorted(by_address))
    statement = txs.notary_statement_bytes(chain_id=chain_id, doc_hash=doc_hash, parties=parties)
    signatures = tuple(
        by_address[p].sign(chain_id=chain_id, kind=txs.KIND_NOTARY, message=statement) for p in parties
    )
    return txs.Notarize(doc_hash=doc_hash, parties=parties, signatures=signatures, title=title)


class Client:
    """Synchronous convenience wrapper: every ``AsyncClient`` coroutine method, blocking.

    >>> with Client("http://127.0.0.1:7101") as c:
    ...     c.status()["height"]
    """

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = AsyncClient(base_url, timeout_s=timeout_s)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._async.close())
            self._loop.close()

    @property
    def aio(self) -> AsyncClient:
        return self._async

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._async, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attr(*args, **kwargs))

        return call
