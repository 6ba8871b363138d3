"""``gridchain sim`` as operators and CI use it."""

from __future__ import annotations

import json

import pytest

from node.cli import main


def test_sim_json_reports_the_required_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--nodes", "4", "--seed", "1", "--rounds", "200", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["violations"] == []
    assert report["rounds"] >= 200
    assert report["committed_height"] > 100
    assert report["committed_fraction"] == round(report["min_committed_height"] / report["rounds"], 4)
    assert 0.6 <= report["committed_fraction"] <= 1
    assert report["timeouts"] >= 0
    assert len(report["leader_share"]) == 4 and abs(sum(report["leader_share"]) - 1) < 0.01
    assert len(report["credit"]) == 4 and all(c > 0 for c in report["credit"])
    shares = report["leader_share"]
    fairness = report["fairness"]
    assert fairness["leader_share_max_deviation"] == pytest.approx(
        max(abs(s - sum(shares) / 4) for s in shares), abs=1e-4)
    assert 0 <= fairness["proposer_reward_gini"] < 0.2
    assert 0 < report["messages_per_block"] < 40
    assert report["reproduce"].startswith("gridchain sim --nodes 4 --seed 1 --rounds 200")


def test_sim_with_faults_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sim", "--nodes", "7", "--seed", "3", "--rounds", "60", "--byzantine", "2",
                 "--behaviour", "double-vote", "--crash", "2", "--partition", "--loss", "10"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "OK" in out and "leader share" in out and "fairness: leader share max deviation" in out


def test_sim_refuses_a_bad_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--nodes", "4", "--byzantine", "5"]) == 2
    assert "--byzantine" in capsys.readouterr().err


@pytest.mark.parametrize("behaviour", ["forge-tc", "inflate-round", "withhold-sync", "garbage-sync", "false-blame"])
def test_sim_selects_each_new_behaviour(behaviour: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--nodes", "4", "--seed", "2", "--rounds", "80", "--byzantine", "1",
                 "--behaviour", behaviour, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["violations"] == [] and report["committed_fraction"] >= 0.6
    assert f"--behaviour {behaviour}" in report["reproduce"]
