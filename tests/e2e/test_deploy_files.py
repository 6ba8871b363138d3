"""Fast checks of the deployment files that need no Docker engine (they run in the
normal suite): the compose init script's first-start and restart behaviour with the
real `gridchain genesis`, the Grafana dashboard and the alert rules against the
node's metric names, and promtool / docker-compose validation where installed.
The docker compose end-to-end run is test_compose.py (marker e2e).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import harness as h

DASHBOARD = h.DEPLOY / "grafana" / "dashboards" / "gridchain.json"
ALERTS = h.DEPLOY / "prometheus" / "alerts.yml"
INIT = h.DEPLOY / "compose-init.sh"
NODES = "generator:generator,grid:grid,retailer:retailer,user:user"

def _node_metric_names() -> list[str]:
    """Every gridchain_* metric family a node registers (node/ops/metrics.py), as exported."""
    from node.ops.metrics import NodeMetrics

    return sorted(family.name + ("_total" if family.type == "counter" else "")
                  for family in NodeMetrics().registry.collect() if family.name.startswith("gridchain_"))


NODE_METRICS = _node_metric_names()


def _run_init(genesis: Path, homes: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "INIT_GENESIS_DIR": str(genesis),
        "INIT_HOMES_DIR": str(homes),
        "GRIDCHAIN_NODES": NODES,
        "GRIDCHAIN_GENESIS_ARGS": "--slot-ms 10000",
        "GRIDCHAIN_UID": str(os.getuid()),
        "GRIDCHAIN_HOST_UID": str(os.getuid()),
        "GRIDCHAIN_HOST_GID": str(os.getgid()),
    }
    return subprocess.run(["sh", str(INIT)], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def init_dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    genesis, homes, bin_dir = tmp_path / "genesis", tmp_path / "homes", tmp_path / "bin"
    for d in (genesis, bin_dir, *(homes / n.split(":")[0] for n in NODES.split(","))):
        d.mkdir(parents=True)
    gridchain = Path(sys.executable).parent / "gridchain"
    if not gridchain.exists():
        pytest.skip("the gridchain console script is not installed in this environment")
    (bin_dir / "gridchain").symlink_to(gridchain)
    return genesis, homes, bin_dir


def test_compose_init_moves_each_validator_home_into_its_volume(init_dirs: tuple[Path, Path, Path]) -> None:
    """First start: every validator's home (config, genesis, key) lands in its own volume
    with mode 0700, and no validator key stays in the shared genesis directory."""
    genesis, homes, bin_dir = init_dirs
    proc = _run_init(genesis, homes, bin_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("generator", "grid", "retailer", "user"):
        home = homes / name
        assert {"node.toml", "genesis.json", "validator_key.json"} <= {p.name for p in home.iterdir()}
        assert home.stat().st_mode & 0o777 == 0o700
        assert not (genesis / name).exists()
    assert not list(genesis.rglob("validator_key.json"))
    assert (genesis / "genesis.json").exists() and (genesis / "accounts.json").exists()
    assert (genesis / ".gridchain-init-done").exists()
    config = (homes / "grid" / "node.toml").read_text()
    assert 'url = "ws://generator:26656/p2p"' in config and 'listen_host = "0.0.0.0"' in config


def test_compose_init_on_restart_changes_nothing(init_dirs: tuple[Path, Path, Path]) -> None:
    """Second start: the init is a no-op; keys and genesis stay byte-identical."""
    genesis, homes, bin_dir = init_dirs
    assert _run_init(genesis, homes, bin_dir).returncode == 0
    before = {p: p.read_bytes() for p in [*genesis.rglob("*"), *homes.rglob("*")] if p.is_file()}
    proc = _run_init(genesis, homes, bin_dir)
    assert proc.returncode == 0 and "nothing to do" in proc.stdout
    after = {p: p.read_bytes() for p in [*genesis.rglob("*"), *homes.rglob("*")] if p.is_file()}
    assert after == before


def test_compose_init_refuses_to_regenerate_a_lost_validator_volume(init_dirs: tuple[Path, Path, Path]) -> None:
    """A data volume emptied after genesis is an error (keys cannot be regenerated
    for a running chain), and a half-written genesis directory is never overwritten."""
    genesis, homes, bin_dir = init_dirs
    assert _run_init(genesis, homes, bin_dir).returncode == 0
    shutil.rmtree(homes / "user")
    (homes / "user").mkdir()
    proc = _run_init(genesis, homes, bin_dir)
    assert proc.returncode == 1 and "data volume of: user is empty" in proc.stdout
    assert not list((homes / "user").iterdir())

    (genesis / ".gridchain-init-done").unlink()
    proc = _run_init(genesis, homes, bin_dir)
    assert proc.returncode == 1 and "holds no completed init" in proc.stdout


def test_dashboard_shows_every_node_metric_on_the_provisioned_datasource() -> None:
    """Every metric the node exposes is used by a panel; every target uses the
    datasource uid that Grafana provisioning defines; panel ids are unique."""
    doc = json.loads(DASHBOARD.read_text())
    datasource = (h.DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "uid: prometheus" in datasource
    exprs = " ".join(expr for _, expr in h.dashboard_queries(DASHBOARD))
    missing = [m for m in NODE_METRICS if m not in exprs]
    assert not missing, f"metrics not on the dashboard: {missing}"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "prometheus", panel["title"]


def test_alert_rules_cover_the_required_conditions() -> None:
    """Node down, no commit for 60 s, timeout rate, credit below threshold, mempool
    near full, execution halted or lagging: each has a rule on the node's metrics."""
    rules = dict(h.alert_expressions(ALERTS))
    assert "gridchain_execution_halted" in rules["GridChainExecutionHalted"]
    assert "gridchain_execution_lag_blocks" in rules["GridChainExecutionLagging"]
    assert "up{" in rules["GridChainNodeDown"]
    assert "gridchain_blocks_committed_total" in rules["GridChainNoCommit"] and "[1m]" in rules["GridChainNoCommit"]
    assert "gridchain_timeouts_total" in rules["GridChainHighTimeoutRate"]
    assert "gridchain_credit_leader_threshold" in rules["GridChainValidatorCreditLow"]
    assert "gridchain_mempool_capacity" in rules["GridChainMempoolNearFull"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_accepts_alert_rules_and_every_dashboard_expression(tmp_path: Path) -> None:
    """promtool parses the alert rules, and each dashboard query as a recording rule."""
    subprocess.run(["promtool", "check", "rules", str(ALERTS)], check=True, capture_output=True, timeout=60)
    lines = ["groups:", "- name: dashboard", "  rules:"]
    for i, (_, expr) in enumerate(h.dashboard_queries(DASHBOARD)):
        lines += [f"  - record: dashboard:query_{i}", f"    expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_is_valid_for_debian_docker_compose() -> None:
    """Debian's docker-compose 1.29 accepts docker-compose.yml with every profile."""
    proc = subprocess.run(["docker-compose", "-f", str(h.ROOT / "docker-compose.yml"), "-p", "gridchain",
                           "--profile", "monitoring", "--profile", "participants", "config", "--services"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"init", "generator", "grid", "retailer", "user", "observer",
                                        "prometheus", "grafana"}


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_deploy_scripts_pass_shellcheck() -> None:
    """The build, init and compose scripts have no shellcheck findings."""
    scripts = sorted(str(p) for p in h.DEPLOY.glob("*.sh"))
    proc = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True, timeout=60,
                          check=False, cwd=h.ROOT)
    assert proc.returncode == 0, proc.stdout
