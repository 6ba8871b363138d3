"""The ``/v1/events`` WebSocket stream: ``EventHub`` turns each executed block into events
once and fans them out to bounded per-subscriber queues; ``EventRoutes`` serves the stream.

A subscriber whose queue is full is dropped (closed with code 1008 "slow consumer"),
never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from node.api import views
from node.api.http_util import ApiError, dumps, parse_address, query_params
from node.api.protocol import CommittedBlock

log = logging.getLogger("gridchain.api")


class Subscription:
    """One /v1/events subscriber: its filters and its bounded queue."""

    __slots__ = ("account", "dropped", "queue", "topics")

    def __init__(self, *, topics: frozenset[str], account: str | None, queue_size: int) -> None:
        self.topics = topics
        self.account = account
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=queue_size)
        self.dropped = False

    def wants(self, event: views.Event) -> bool:
        if event.topic not in self.topics:
            return False
        return self.account is None or event.accounts is None or self.account in event.accounts


class EventHub:
    """Fans each executed block's events out to bounded subscriber queues."""

    def __init__(self, *, queue_size: int, max_subscribers: int,
                 state: Callable[[], Any] = lambda: None) -> None:
        self._state = state
        self._queue_size = queue_size
        self._max_subscribers = max_subscribers
        self._subs: set[Subscription] = set()
        self.dropped_total = 0

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(self, *, topics: frozenset[str], account: str | None) -> Subscription:
        if len(self._subs) >= self._max_subscribers:
            raise ApiError("too_many_subscribers", f"at most {self._max_subscribers} event subscribers")
        sub = Subscription(topics=topics, account=account, queue_size=self._queue_size)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def on_block(self, committed: CommittedBlock) -> None:
        """Backend listener: runs on the loop, never blocks, never raises."""
        if not self._subs:
            return
        try:
            topics = frozenset().union(*(sub.topics for sub in self._subs))
            events = views.block_events(committed, self._state(), topics)
        except Exception:
            log.exception("cannot build events for height %d", committed.block.height)
            return
        encoded = [(event, dumps(event.data)) for event in events]
        for sub in list(self._subs):
            for event, payload in encoded:
                if not sub.wants(event):
                    continue
                try:
                    sub.queue.put_nowait(payload)
                except asyncio.QueueFull:
                    self._drop(sub)
                    break

    def _drop(self, sub: Subscription) -> None:
        sub.dropped = True
        self._subs.discard(sub)
        self.dropped_total += 1
        with contextlib.suppress(asyncio.QueueEmpty):
            sub.queue.get_nowait()  # make room for the end-of-stream marker
        sub.queue.put_nowait(None)


EVENT_HUB_KEY: web.AppKey[EventHub] = web.AppKey("gridchain.event_hub", EventHub)
"""Where the app keeps its ``EventHub`` (tests and metrics read subscriber counts)."""




class EventRoutes:
    """The ``/v1/events`` handler."""

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub

    async def events(self, request: web.Request) -> web.StreamResponse:
        query = query_params(request, "topics", "account")
        names = query.get("topics", ",".join(views.TOPICS)).split(",")
        topics = frozenset(names)
        if not topics <= set(views.TOPICS):
            raise ApiError("bad_request", f"topics must be a comma list of {','.join(views.TOPICS)}")
        account = query.get("account")
        address = parse_address(account, what="account") if account is not None else None
        sub = self.hub.subscribe(topics=topics, account=address)
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
        if not ws.can_prepare(request).ok:
            self.hub.unsubscribe(sub)
            raise ApiError("bad_request", "/v1/events is a WebSocket stream: send an Upgrade request")
        reader: asyncio.Task[None] | None = None
        try:
            await ws.prepare(request)
            reader = asyncio.create_task(self._drain_incoming(ws))
            await self._pump(sub, ws, reader)
        except ConnectionResetError:
            pass
        finally:
            self.hub.unsubscribe(sub)
            if reader is not None:
                reader.cancel()
        return ws

    @staticmethod
    async def _pump(sub: Subscription, ws: web.WebSocketResponse, reader: asyncio.Task[None]) -> None:
        """Send queued events until the client goes away or the subscriber is dropped."""
        while True:
            getter = asyncio.ensure_future(sub.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:  # the client closed the connection
                getter.cancel()
                return
            batch = [getter.result()]
            while not sub.queue.empty() and batch[-1] is not None:
                batch.append(sub.queue.get_nowait())
            for payload in batch:
                if payload is None:
                    await ws.close(code=1008, message=b"slow consumer dropped")
                    return
                if ws.closed:
                    return
                await ws.send_str(payload.decode())

    @staticmethod
    async def _drain_incoming(ws: web.WebSocketResponse) -> None:
        # The stream is one-way; reading keeps pings/close frames flowing.
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
        with contextlib.suppress(Exception):
            await ws.close()
