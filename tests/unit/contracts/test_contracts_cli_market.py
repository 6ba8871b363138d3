"""``gridchain market clear|settle``: results, exit status 2 on bad input, and the
clear digest equals the on-chain slot's trades digest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from contracts.transactions import PlaceOrder, decode_signed_tx
from node.cli import market as market_cli

from .helpers import Chain, market_params


def main(argv: list[str]) -> int:
    """``gridchain market ...`` through its own parser (independent of other commands)."""
    parser = argparse.ArgumentParser(prog="gridchain")
    market_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


E1 = {"params": {"p_min": 0, "p_max": 100, "grid_fee": 0}, "orders": [
    {"id": "B1", "account": "b1", "side": "buy", "price": 30, "quantity_wh": 3, "seq": [1, 0]},
    {"id": "B2", "account": "b2", "side": "buy", "price": 25, "quantity_wh": 2, "seq": [1, 1]},
    {"id": "B3", "account": "b3", "side": "buy", "price": 10, "quantity_wh": 4, "seq": [1, 2]},
    {"id": "S1", "account": "s1", "side": "sell", "price": 5, "quantity_wh": 2, "seq": [1, 3]},
    {"id": "S2", "account": "s2", "side": "sell", "price": 20, "quantity_wh": 4, "seq": [1, 4]},
    {"id": "S3", "account": "s3", "side": "sell", "price": 28, "quantity_wh": 3, "seq": [1, 5]},
]}
E7 = {"params": {"p_short": 30, "p_long": 8}, "trades": [{"buyer": "B", "seller": "S", "quantity_wh": 10}],
      "readings": {"S": {"import_wh": 0, "export_wh": 7}, "B": {"import_wh": 12, "export_wh": 0}}}


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, data: object) -> tuple[int, str, str]:
    path = tmp_path / "input.json"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    code = main(["market", command, "--input", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_clear_e1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(tmp_path, capsys, "clear", E1)
    assert code == 0
    result = json.loads(out)
    assert result["price"] == 20
    assert result["volume_wh"] == 5
    assert [(t["buy_order"], t["sell_order"], t["quantity_wh"], t["price"], t["fee"])
            for t in result["trades"]] == [("B1", "S1", 2, 20, 0), ("B1", "S2", 1, 20, 0),
                                           ("B2", "S2", 2, 20, 0)]
    assert len(result["digest"]) == 64


def test_clear_with_nothing_crossing_has_null_price(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = {"params": {"p_min": 0, "p_max": 100, "grid_fee": 0}, "orders": [
        {"id": 1, "account": "b", "side": "buy", "price": 10, "quantity_wh": 3, "seq": [1, 0]},
        {"id": 2, "account": "s", "side": "sell", "price": 11, "quantity_wh": 3, "seq": [1, 1]}]}
    code, out, _ = run(tmp_path, capsys, "clear", data)
    assert code == 0
    assert json.loads(out)["price"] is None
    assert json.loads(out)["trades"] == []


def test_settle_e7(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(tmp_path, capsys, "settle", E7)
    assert code == 0
    assert json.loads(out) == {
        "accounts": {
            "B": {"contracted_wh": -10, "metered_wh": -12, "delta_wh": -2, "imbalance_u": -60},
            "S": {"contracted_wh": 10, "metered_wh": 7, "delta_wh": -3, "imbalance_u": -90},
        },
        "grid_u": 150,
    }


def test_settle_e8_missing_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = {**E7, "readings": {"B": {"import_wh": 12, "export_wh": 0}}}
    code, out, _ = run(tmp_path, capsys, "settle", data)
    assert code == 0
    assert json.loads(out)["accounts"]["S"] == {"contracted_wh": 10, "metered_wh": 0, "delta_wh": -10,
                                                "imbalance_u": -300}


def _with(order_change: dict[str, object]) -> dict[str, object]:
    orders = [dict(o) for o in E1["orders"]]  # type: ignore[union-attr]
    orders[0].update(order_change)
    return {"params": E1["params"], "orders": orders}


@pytest.mark.parametrize(("command", "data", "needle"), [
    ("clear", _with({"price": 30.0}), "float"),
    ("clear", _with({"price": 30.5}), "float"),
    ("clear", _with({"quantity_wh": -3}), ">= 1"),
    ("clear", _with({"quantity_wh": 0}), ">= 1"),
    ("clear", _with({"side": "hold"}), "side"),
    ("clear", _with({"price": 101}), "outside"),
    ("clear", _with({"id": "B2"}), "duplicate id"),
    ("clear", {"params": {"p_min": 0, "p_max": 100}, "orders": []}, "grid_fee"),
    ("clear", {"orders": []}, "params"),
    ("clear", "{not json", "malformed"),
    ("clear", b'{"params": {"p_min": 0, "p_max": 1, "grid_fee": 0}, "orders": [{"id": "\x80"}]}', "malformed"),
    ("settle", {**E7, "trades": [{"buyer": "B", "seller": "S", "quantity_wh": -10}]}, ">= 1"),
    ("settle", {**E7, "readings": {"S": {"import_wh": 0.5, "export_wh": 7}}}, "float"),
    ("settle", {**E7, "readings": {"S": {"import_wh": 0}}}, "export_wh"),
    ("settle", {"params": {"p_short": 30}, "trades": []}, "p_long"),
    ("settle", {**E7, "trades": [{"buyer": "B", "quantity_wh": 1}]}, "seller"),
])
def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          command: str, data: object, needle: str) -> None:
    code, out, err = run(tmp_path, capsys, command, data)
    assert code == 2
    assert out == ""
    assert needle.lower() in err.lower()


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["market", "clear", "--input", "/nonexistent/x.json"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_clear_digest_equals_the_on_chain_slot_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chain = Chain(market=market_params(grid_fee=2))
    specs = [("con", "buy", 40, 5), ("con2", "buy", 30, 7), ("gen", "sell", 10, 6), ("gen2", "sell", 25, 9)]
    raws = [chain.tx(who, PlaceOrder(slot=1, side=side, price_u_per_wh=p, quantity_wh=q))  # type: ignore[arg-type]
            for who, side, p, q in specs]
    chain.ok(*raws, at_ms=10)
    chain.ok(at_ms=1_000)
    slot = chain.state.slots["0000000000000001"]
    orders = [{"id": decode_signed_tx(raw).tx_hash.hex(), "account": who, "side": side, "price": p,
               "quantity_wh": q, "seq": [1, i]} for i, (raw, (who, side, p, q)) in enumerate(zip(raws, specs, strict=True))]
    code, out, _ = run(tmp_path, capsys, "clear", {"params": {"p_min": 0, "p_max": 100, "grid_fee": 2},
                                                   "orders": orders})
    assert code == 0
    result = json.loads(out)
    assert result["price"] == slot.price_u_per_wh
    assert result["volume_wh"] == slot.volume_wh
    assert result["digest"] == slot.trades_digest.hex()


def test_bench_runs_and_reports_its_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["market", "bench", "--orders", "300", "--accounts", "20", "--block-txs", "100",
                 "--slot-orders", "200"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("orders/s") == 2
    assert "clear one slot of 200 orders" in out
