"""Peer links over TLS with self-signed certificates bound to the validator keys
(node/ops/tls.py, the channel binding in node.net.transport's handshake), on 127.0.0.1."""

from __future__ import annotations

import ssl
from pathlib import Path

import msgspec
from aiohttp import web

from consensus import codec
from node.net.transport import FRAME_TXS, PeerProof
from node.ops import keys, tls
from node.ops.config import PeerConfig
from tests.unit.test_node_transport import Node, _free_port, _until


async def _pair(tmp_path: Path, *, served: str, claimed: str) -> tuple[list[Node], web.AppRunner]:
    """Node 1 serves wss:// with certificate ``served`` but its config names ``claimed``
    (the same for an honest node); node 0 dials it with no CA."""
    for name in {served, claimed}:
        tls.make_self_signed(tmp_path / f"{name}.pem", tmp_path / f"{name}.key", name=name, hosts=["127.0.0.1"])
    signers = [keys.new_signer() for _ in range(2)]
    ports = [_free_port() for _ in range(2)]
    nodes = [Node(i, ports, signers, [s.public_key for s in signers]) for i in range(2)]
    nodes[1].transport.config = msgspec.structs.replace(
        nodes[1].config, tls_cert=str(tmp_path / f"{claimed}.pem"), tls_key=str(tmp_path / f"{claimed}.key"))
    peer = PeerConfig(node_id=1, name="n1", url=f"wss://127.0.0.1:{ports[1]}/p2p")
    nodes[0].transport.config = msgspec.structs.replace(nodes[0].config, peers=(peer,))
    ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ssl_context.load_cert_chain(tmp_path / f"{served}.pem", tmp_path / f"{served}.key")
    app = web.Application()
    nodes[1].transport.mount(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", ports[1], ssl_context=ssl_context).start()
    await nodes[0].transport.start()
    return nodes, runner


async def test_self_signed_certificates_need_no_ca(tmp_path: Path) -> None:
    nodes, runner = await _pair(tmp_path, served="n1", claimed="n1")
    try:
        await _until(lambda: nodes[1].transport.connected() == [0])
        nodes[0].transport.broadcast(FRAME_TXS, codec.encode((b"over-tls",)))
        await _until(lambda: nodes[1].txs == [(0, (b"over-tls",))])
    finally:
        await nodes[0].transport.stop()
        await nodes[1].transport.stop()
        await runner.cleanup()


async def test_a_certificate_the_validator_does_not_sign_for_is_refused(tmp_path: Path) -> None:
    """What a man in the middle looks like to the dialer: the TLS certificate it is served
    is not the one the validator's key signs for, so the handshake fails and no link forms."""
    nodes, runner = await _pair(tmp_path, served="mitm", claimed="n1")
    try:
        await _until(lambda: nodes[0].dropped.count("handshake") + nodes[1].dropped.count("handshake") >= 2)
        assert nodes[0].transport.connected() == [] and nodes[1].transport.connected() == []
    finally:
        await nodes[0].transport.stop()
        await nodes[1].transport.stop()
        await runner.cleanup()


def test_plain_links_sign_the_same_bytes_as_before_the_channel_field() -> None:
    """Nodes on ws:// (empty channel) stay compatible with nodes that predate it."""

    class OldProof(msgspec.Struct, frozen=True):
        chain_id: str
        signer: int
        peer: int
        nonce: bytes

    nonce = b"\x01" * 32
    assert codec.encode(PeerProof(chain_id="c", signer=0, peer=1, nonce=nonce)) == codec.encode(
        OldProof(chain_id="c", signer=0, peer=1, nonce=nonce))
    assert codec.encode(PeerProof(chain_id="c", signer=0, peer=1, nonce=nonce, channel=b"x")) != codec.encode(
        OldProof(chain_id="c", signer=0, peer=1, nonce=nonce))
