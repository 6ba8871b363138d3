"""node.net.transport on 127.0.0.1: authenticated handshake, refusal of strangers, bad frames dropped."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
from aiohttp import web

from consensus import codec
from node.net.transport import FRAME_TXS, Challenge, Transport
from node.ops import keys
from node.ops.config import NodeConfig, PeerConfig

CHAIN = "test-chain"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, me: int, ports: list[int], signers: list[Any], validator_keys: list[bytes]) -> None:
        peers = tuple(PeerConfig(node_id=j, name=f"n{j}", url=f"ws://127.0.0.1:{p}/p2p")
                      for j, p in enumerate(ports) if j != me)
        self.config = NodeConfig(name=f"n{me}", role="grid", node_id=me, p2p_port=ports[me], peers=peers,
                                 reconnect_min_ms=20, reconnect_max_ms=100)
        self.txs: list[tuple[int, Any]] = []
        self.dropped: list[str] = []
        self.transport = Transport(
            config=self.config, chain_id=CHAIN, signer=signers[me], validator_keys=validator_keys,
            validate=lambda msg, sender: None,
            on_consensus=lambda p, m: None, on_txs=lambda p, v: self.txs.append((p, v)),
            on_sync_request=lambda p, v: None, on_sync_response=lambda p, v: None,
            drop_counter=self.dropped.append, max_bad_frames=3,
        )

    async def start(self) -> None:
        app = web.Application()
        self.transport.mount(app)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.config.p2p_port).start()
        await self.transport.start()

    async def stop(self) -> None:
        await self.transport.stop()
        await self.runner.cleanup()


async def _until(cond: Any, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_validators_link_up_and_exchange_tx_batches() -> None:
    signers = [keys.new_signer() for _ in range(3)]
    ports = [_free_port() for _ in range(3)]
    nodes = [Node(i, ports, signers, [s.public_key for s in signers]) for i in range(3)]
    for node in nodes:
        await node.start()
    try:
        await _until(lambda: all(len(n.transport.connected()) == 2 for n in nodes))
        nodes[2].transport.broadcast(FRAME_TXS, codec.encode((b"t1", b"t2")))
        await _until(lambda: len(nodes[0].txs) == 1 and len(nodes[1].txs) == 1)
        assert nodes[0].txs[0] == (2, (b"t1", b"t2"))
        # Partition node 1, then heal it: the links come back.
        await nodes[1].transport.set_partitioned(True)
        await _until(lambda: nodes[0].transport.connected() == [2])
        await nodes[1].transport.set_partitioned(False)
        await _until(lambda: all(len(n.transport.connected()) == 2 for n in nodes))
    finally:
        for node in nodes:
            await node.stop()


async def test_stranger_is_refused_and_garbage_disconnects_the_peer() -> None:
    signers = [keys.new_signer() for _ in range(2)]
    ports = [_free_port() for _ in range(2)]
    validator_keys = [s.public_key for s in signers]
    acceptor = Node(1, ports, signers, validator_keys)
    await acceptor.start()
    try:
        # A stranger (key not in genesis) pretending to be validator 0 is refused.
        stranger = Node(0, ports, [keys.new_signer(), signers[1]], validator_keys)
        await stranger.transport.start()
        await _until(lambda: "handshake" in acceptor.dropped)
        assert acceptor.transport.connected() == []
        await stranger.transport.stop()
        # The real validator 0 connects, then sends garbage frames: dropped, counted, disconnected.
        real = Node(0, ports, signers, validator_keys)
        await real.transport.start()
        await _until(lambda: acceptor.transport.connected() == [0])
        link = real.transport.links[1]
        for frame in (b"", b"\x63junk", b"\x02\xc1", b"\x01notamessage"):
            await link.ws.send_bytes(frame)
        await _until(lambda: acceptor.dropped.count("malformed") >= 2 and "unknown_frame" in acceptor.dropped)
        await _until(lambda: link.ws.closed)  # three bad frames: the acceptor hung up
        assert acceptor.txs == []
        await real.transport.stop()
        # A raw client that never answers the challenge is refused after the timeout window.
        async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://127.0.0.1:{ports[1]}/p2p") as ws:
            msg = await ws.receive()
            assert codec.decode(msg.data, Challenge).chain_id == CHAIN
            await ws.send_bytes(b"\x00garbage")
            closing = await ws.receive()
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    finally:
        await acceptor.stop()


def _self_signed(tmp: Any) -> tuple[str, str]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gridchain-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def test_links_work_over_tls(tmp_path: Any) -> None:
    import msgspec

    cert, key = _self_signed(tmp_path)
    signers = [keys.new_signer() for _ in range(2)]
    ports = [_free_port() for _ in range(2)]
    nodes = [Node(i, ports, signers, [s.public_key for s in signers]) for i in range(2)]
    # Node 1 serves wss:// with the certificate; node 0 dials it trusting that certificate.
    nodes[1].config = msgspec.structs.replace(nodes[1].config, tls_cert=cert, tls_key=key)
    nodes[1].transport.config = nodes[1].config
    peer = PeerConfig(node_id=1, name="n1", url=f"wss://127.0.0.1:{ports[1]}/p2p")
    nodes[0].config = msgspec.structs.replace(nodes[0].config, tls_ca=cert, peers=(peer,))
    nodes[0].transport = Transport(
        config=nodes[0].config, chain_id=CHAIN, signer=signers[0], validator_keys=[s.public_key for s in signers],
        validate=lambda msg, sender: None, on_consensus=lambda p, m: None, on_txs=lambda p, v: None,
        on_sync_request=lambda p, v: None, on_sync_response=lambda p, v: None)
    app = web.Application()
    nodes[1].transport.mount(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", ports[1], ssl_context=nodes[1].transport.server_ssl()).start()
    await nodes[0].transport.start()
    try:
        await _until(lambda: nodes[1].transport.connected() == [0])
        nodes[0].transport.broadcast(FRAME_TXS, codec.encode((b"secret",)))
        await _until(lambda: nodes[1].txs == [(0, (b"secret",))])
    finally:
        await nodes[0].transport.stop()
        await nodes[1].transport.stop()
        await runner.cleanup()
