"""``gridchain channel open|fund|pay|close|status|watch``: payment channels (docs/CHANNELS.md).

``--node`` is always this party's own node (it stores the party's co-signed states and
its watchtower answers stale closes); ``--peer-node`` is the other party's node, where
proposals are left. Keys stay on this machine.

* ``open``: lock ``--deposit-u`` in a channel with ``--counterparty``; prints ``channel_id``.
* ``fund``: the counterparty adds its deposit (once).
* ``pay``: propose the next state paying ``--amount-u`` at the peer's node, wait until the
  peer (its ``watch``) countersigns, store the co-signed state at the own node.
* ``watch``: countersign, at the own node, every proposal that pays this party; runs
  until interrupted (or ``--count`` updates).
* ``close``: cooperative with ``--peer-node`` (a final state both sign, paid at once),
  ``--unilateral`` with the latest co-signed state (starts the challenge period), or
  ``--settle`` once the period is over.
* ``status``: the channel on chain and the states this node holds.
* ``bench``: with both parties' keys, open a channel, run ``--updates`` off-chain updates
  through the two nodes, close it cooperatively, and print updates/s, latency and the
  on-chain transactions the channel saved.

Example::

    gridchain channel pay --node http://127.0.0.1:7200 --peer-node http://127.0.0.1:7201 \\
        --key keys/prosumer-1.json --channel <id> --amount-u 1500 --energy-wh 10
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from contracts import transactions as txs
from node.channel_client import ChannelParty, cooperative_close_body
from node.cli import apiutil as common
from node.client import ApiClientError, AsyncClient, TxFailed
from node.ops import keys


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("channel", help="payment channels: open, pay, close, status, watch",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="channel_command", metavar="ACTION", required=True)

    def action(name: str, help_: str, *, key: bool = True, channel: bool = True) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
        common.add_node_arg(p)
        if key:
            p.add_argument("--key", required=True, help="this party's key file (never leaves this machine)")
        if channel:
            p.add_argument("--channel", required=True, type=common.hash_arg, help="channel id (64 hex)")
        p.set_defaults(func=run)
        return p

    p = action("open", "Open a channel with a counterparty, locking a deposit", channel=False)
    p.add_argument("--counterparty", required=True, type=common.address_arg)
    p.add_argument("--deposit-u", required=True, type=common.positive_int)
    p.add_argument("--challenge-slots", type=common.positive_int, default=10)
    p = action("fund", "The counterparty adds its own deposit (once)")
    p.add_argument("--deposit-u", required=True, type=common.positive_int)
    p = action("pay", "Pay the other party off chain")
    p.add_argument("--peer-node", required=True, help="the other party's node API URL")
    p.add_argument("--amount-u", required=True, type=common.uint_arg)
    p.add_argument("--energy-wh", type=common.uint_arg, default=0, help="energy this payment is for")
    p.add_argument("--timeout-s", type=float, default=30.0, help="how long to wait for the countersignature")
    p = action("watch", "Countersign every proposal that pays this party")
    p.add_argument("--interval-s", type=float, default=0.2)
    p.add_argument("--count", type=common.positive_int, default=None, help="stop after this many updates")
    p = action("close", "Close cooperatively (--peer-node), unilaterally (--unilateral), or --settle")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--peer-node", help="the other party's node: cooperative close")
    g.add_argument("--unilateral", action="store_true", help="close with the latest co-signed state")
    g.add_argument("--settle", action="store_true", help="pay out after the challenge period")
    p.add_argument("--timeout-s", type=float, default=30.0)
    action("status", "The channel on chain and the states this node holds", key=False)
    p = action("bench", "Measure off-chain updates/s for one pair (opens and closes a channel)", channel=False)
    p.add_argument("--peer-node", required=True, help="the counterparty's node API URL")
    p.add_argument("--peer-key", required=True, help="the counterparty's key file")
    p.add_argument("--updates", type=common.positive_int, default=1_000)
    p.add_argument("--deposit-u", type=common.positive_int, default=10_000_000)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace) -> int:
    async with AsyncClient(args.node) as own:
        try:
            out = await _ACTIONS[args.channel_command](args, own)
        except TxFailed as exc:
            common.print_json(exc.body)
            return 1
        except ApiClientError as exc:
            return common.fail(exc.code, exc.message, status=1)
        except keys.KeyFileError as exc:
            return common.fail(exc.code, str(exc), status=2)
        except ValueError as exc:
            return common.fail("refused", str(exc), status=1)
    common.print_json(out)
    return 0


async def _send(own: AsyncClient, args: argparse.Namespace, body: Any) -> dict[str, Any]:
    return await own.send(keys.load_signer(args.key), body, wait=True)


async def _party(args: argparse.Namespace, own: AsyncClient) -> ChannelParty:
    return await ChannelParty.load(signer=keys.load_signer(args.key), channel_id=args.channel, own=own)


async def _open(args: argparse.Namespace, own: AsyncClient) -> dict[str, Any]:
    out = await _send(own, args, txs.OpenChannel(counterparty=args.counterparty, deposit_u=args.deposit_u,
                                                 challenge_slots=args.challenge_slots))
    return {"channel_id": out["tx_hash"], **out}


async def _fund(args: argparse.Namespace, own: AsyncClient) -> dict[str, Any]:
    return await _send(own, args, txs.FundChannel(channel_id=args.channel, deposit_u=args.deposit_u))


async def _pay(args: argparse.Namespace, own: AsyncClient) -> dict[str, Any]:
    party = await _party(args, own)
    state = party.next_state(args.amount_u, energy_wh=args.energy_wh)
    async with AsyncClient(args.peer_node) as peer:
        await party.propose(peer, state)
        co_signed = await party.wait_cosigned(peer, state.seq, timeout_s=args.timeout_s)
    await party.keep(co_signed)
    return co_signed


async def _watch(args: argparse.Namespace, own: AsyncClient) -> dict[str, Any]:
    party = await _party(args, own)
    signed = 0
    refused: str | None = None
    while args.count is None or signed < args.count:
        try:
            done = await party.countersign()
        except ValueError as exc:  # a proposal that does not pay this party: leave it unsigned
            if str(exc) != refused:
                print(f"refused: {exc}", file=sys.stderr, flush=True)
                refused = str(exc)
            done = None
        if done is not None:
            signed += 1
            print(f"countersigned seq {party.latest.seq}: balance {party.balance_u} µ", file=sys.stderr, flush=True)
            continue
        await asyncio.sleep(args.interval_s)
    return {"countersigned": signed, "seq": party.latest.seq, "balance_u": party.balance_u}


async def _close(args: argparse.Namespace, own: AsyncClient) -> dict[str, Any]:
    if args.settle:
        return await _send(own, args, txs.SettleChannel(channel_id=args.channel))
    party = await _party(args, own)
    if args.unilateral:
        return await _send(own, args, party.close_body())
    final = party.next_state(0, final=True)
    async with AsyncClient(args.peer_node) as peer:
        await party.propose(peer, final)
        co_signed = await party.wait_cosigned(peer, final.seq, timeout_s=args.timeout_s)
    await party.keep(co_signed)
    return await _send(own, args, cooperative_close_body(co_signed))


async def _status(args: argparse.Namespace, own: AsyncClient) -> dict[str, Any]:
    return await own.request("GET", f"/v1/channels/{args.channel}")  # type: ignore[no-any-return]


async def _bench(args: argparse.Namespace, own: AsyncClient) -> dict[str, Any]:
    from node.cli.channel_bench import bench

    async with AsyncClient(args.peer_node) as peer:
        return await bench(own=own, peer=peer, signer=keys.load_signer(args.key),
                           peer_signer=keys.load_signer(args.peer_key), updates=args.updates,
                           deposit_u=args.deposit_u)


_ACTIONS = {"bench": _bench, "open": _open, "fund": _fund, "pay": _pay, "watch": _watch, "close": _close, "status": _status}
