"""Wiring of observer links into a node (both roles), and the home ``gridchain join`` makes.

Every node serves observers on ``/p2p/observer`` of its p2p listener
(``node.net.observer_links``): it lets in node keys that active accounts named on
chain (``set_node_key``) and validator keys, answers their block requests from
storage and their state-sync requests as it answers validators' (``node.net.statesync``,
same bounds), takes the transactions they forward as if submitted to its API (admitted,
then gossiped on), and tells them its committed height after every commit. An
observer also dials its ``observer_peers`` and follows them (``node.chain.follower``);
with ``state_sync`` on, it first restores a certified snapshot they offer.

``create_observer_home`` writes an observer's home: ``node.toml`` with
``node_role = "observer"`` and its peers, the chain's ``genesis.json`` and a new
``node_key.json`` (0600) whose public key its member registers with ``set_node_key``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from consensus import codec, crypto
from contracts.registry import node_key_account
from node.chain.follower import Follower
from node.net.observer_links import ObserverLink, ObserverLinks, observer_url
from node.net.transport import FRAME_SYNC_RESPONSE, SyncRequest
from node.ops import keys
from node.ops.config import CONFIG_FILE, GENESIS_FILE, NODE_KEY_FILE, NodeConfig, dump_config

if TYPE_CHECKING:
    from node.chain.backend import Backend
    from node.chain.driver import Driver
    from node.ops.metrics import NodeMetrics


def make_links(*, config: NodeConfig, signer: crypto.Signer, driver: Driver, backend: Backend,
               metrics: NodeMetrics) -> tuple[ObserverLinks, Follower | None]:
    """The node's observer links and, on an observer, the follower that uses them."""
    observer = config.node_role == "observer"

    def allowed(public_key: bytes) -> bool:
        if driver.committee.index_of(public_key) is not None:
            return True
        return driver.exec is not None and node_key_account(driver.exec.state, public_key) is not None

    def answer(peer: int, request: SyncRequest) -> None:
        links.send(peer, FRAME_SYNC_RESPONSE, codec.encode(driver.sync_response(request)))

    async def relay(peer: int, raws: tuple[bytes, ...]) -> None:
        # Like an API submission (then gossiped on), minus rate limits and the journal.
        fresh = [raw for raw in raws if codec.digest(raw) not in backend.mempool]
        if fresh:
            await backend._admit(fresh, journal=False, gossip=True, source="relay")

    follower: Follower | None = None

    def link_change(link: ObserverLink, up: bool) -> None:
        for direction, ids in (("upstream", links.upstream()), ("downstream", links.downstream())):
            metrics.observer_links.labels(direction=direction).set(len(ids))
        if follower is not None and link.upstream:
            follower.on_link_change(link.link_id, up)
            if up:
                backend.send_pending_to(link.link_id)

    def on_head(peer: int, head: Any) -> None:
        if follower is not None:
            follower.on_head(peer, head)

    def on_sync_response(peer: int, response: Any) -> Any:
        if driver._sync_waiter is not None:  # a state-sync restore fetching its proof blocks
            driver.on_sync_response(peer, response)
            return None
        return None if follower is None else follower.on_sync_response(peer, response)

    def on_statesync_request(peer: int, request: Any) -> Any:
        return driver.on_statesync_request(peer, request, send=links.send)

    links = ObserverLinks(
        config=config, chain_id=driver.genesis.chain_id, signer=signer, allowed=allowed, on_txs=relay,
        on_sync_request=answer, on_sync_response=on_sync_response, on_head=on_head,
        on_statesync_request=on_statesync_request, on_statesync_response=driver.on_statesync_response,
        on_link_change=link_change, drop_counter=lambda reason: metrics.dropped.labels(reason=reason).inc(),
        upstream_urls=config.observer_peers if observer else (),
    )
    if observer:
        follower = Follower(driver=driver, links=links)
    driver.listeners.append(lambda block: links.announce_head(block.block.height))
    return links, follower


def create_observer_home(home: Path, *, genesis_json: bytes, name: str, peers: list[str],
                         listen_host: str = "127.0.0.1", p2p_port: int = 26656, api_port: int = 8080,
                         metrics_port: int = 9100, force: bool = False) -> dict[str, Any]:
    """Write an observer's home; returns its name, node key and peer URLs."""
    home = Path(home)
    if (home / CONFIG_FILE).exists() and not force:
        raise FileExistsError(f"{home / CONFIG_FILE} exists (use --force to overwrite)")
    home.mkdir(parents=True, exist_ok=True)
    urls = tuple(observer_url(p) for p in peers)
    config = NodeConfig(name=name, role="member", node_id=-1, node_role="observer", observer_peers=urls,
                        listen_host=listen_host, p2p_port=p2p_port, api_port=api_port, metrics_port=metrics_port)
    (home / CONFIG_FILE).write_text(dump_config(config))
    (home / GENESIS_FILE).write_bytes(genesis_json)
    key_path = home / NODE_KEY_FILE
    if key_path.exists():  # a node keeps its key; rotating is a new home (docs/OBSERVERS.md)
        signer = keys.load_key_file(key_path).signer
    else:
        signer = keys.new_signer()
        keys.write_key_file(key_path, signer)
    return {"name": name, "home": str(home.resolve()), "node_key": signer.public_key.hex(),
            "peers": list(urls)}
