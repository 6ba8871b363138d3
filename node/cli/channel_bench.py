"""``gridchain channel bench``: off-chain updates per second for one pair of parties, and the
on-chain transactions a channel saves (docs/CHANNELS.md "Measurements").

Opens a channel between the two keys (``--key`` on ``--node``, ``--peer-key`` on
``--peer-node``), runs ``--updates`` updates through both nodes exactly as two parties
would (propose at the payee's node, countersign there, store at the payer's node: three
requests, two fsyncs each), then closes cooperatively. It also times the signatures and
verifications one update needs in this process alone, the ceiling without network or disk.
Not a command itself: ``node.cli.channel`` registers ``bench``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from consensus import crypto
from contracts import transactions as txs
from node.channel_client import ChannelParty, cooperative_close_body, exchange
from node.client import ApiClientError, AsyncClient

SIGNATURES_PER_UPDATE = 2
"""The payer's and the payee's signature of the new state."""
VERIFICATIONS_PER_UPDATE = 4
"""The payee's node (proposal, countersignature) and the payer's node (both signatures)."""


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def crypto_ceiling(signer: crypto.Signer, *, chain_id: str, rounds: int = 200) -> float:
    """Updates/s if an update cost only its signatures and verifications (one core)."""
    state = txs.ChannelState(channel_id="00" * 32, seq=1, balance_a_u=1, balance_b_u=1, energy_wh=0)
    started = time.perf_counter()
    for i in range(rounds):
        state = txs.ChannelState(channel_id="00" * 32, seq=i + 1, balance_a_u=i, balance_b_u=1, energy_wh=0)
        signatures = [txs.sign_channel_state(state, signer, chain_id=chain_id) for _ in range(SIGNATURES_PER_UPDATE)]
        for k in range(VERIFICATIONS_PER_UPDATE):
            assert txs.verify_channel_state(signer.public_key, signatures[k % 2], state, chain_id=chain_id)
    return rounds / (time.perf_counter() - started)


async def bench(*, own: AsyncClient, peer: AsyncClient, signer: crypto.Signer, peer_signer: crypto.Signer,
                updates: int, deposit_u: int) -> dict[str, Any]:
    opened = await own.send(signer, txs.OpenChannel(counterparty=crypto.address(peer_signer.public_key),
                                                    deposit_u=deposit_u, challenge_slots=10), wait=True)
    channel_id = opened["tx_hash"]
    a = await ChannelParty.load(signer=signer, channel_id=channel_id, own=own)
    deadline = time.monotonic() + 30.0
    while True:  # the peer's node may execute the opening block a moment later
        try:
            b = await ChannelParty.load(signer=peer_signer, channel_id=channel_id, own=peer)
            break
        except ApiClientError as exc:
            if exc.code != "not_found" or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    latencies_ms: list[float] = []
    started = time.perf_counter()
    for i in range(updates):
        t = time.perf_counter()
        payer, payee = (a, b) if i % 4 != 3 else (b, a)
        await exchange(payer, payee, 1 + i % 1_000 if payer is a else 1, energy_wh=1)
        latencies_ms.append((time.perf_counter() - t) * 1_000)
    elapsed_s = time.perf_counter() - started
    final = await exchange(b, a, 0, final=True)
    closed = await peer.send(peer_signer, cooperative_close_body(final), wait=True)
    onchain = 2  # open_channel and close_channel
    return {
        "channel_id": channel_id,
        "updates": updates,
        "seconds": round(elapsed_s, 3),
        "updates_per_s": round(updates / elapsed_s, 1),
        "latency_ms": {"p50": round(_percentile(latencies_ms, 0.5), 2),
                       "p99": round(_percentile(latencies_ms, 0.99), 2)},
        "crypto_only_updates_per_s": round(crypto_ceiling(signer, chain_id=a.chain_id), 1),
        "onchain_txs": onchain,
        "onchain_txs_one_tx_per_update": updates,
        "onchain_txs_one_trade_per_update": 2 * updates,
        "txs_saved_vs_one_trade_per_update": 2 * updates - onchain,
        "final_balances_u": [final["state"]["balance_a_u"], final["state"]["balance_b_u"]],
        "close_height": closed["height"],
    }
