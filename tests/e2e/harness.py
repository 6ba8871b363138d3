"""Plumbing for the docker compose end-to-end test: host packages, the Docker
engine, the offline image build, the compose stack, a host Prometheus.

Everything here is bounded in time and cleans up what it started. The test
module (test_compose.py) holds the scenario; this module only knows how to run
things. Nothing here is imported by the node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NODE_NAMES: tuple[str, ...] = ("generator", "grid", "retailer", "user")
APT_PACKAGES: dict[str, str] = {
    # command -> Debian package that provides it
    "dockerd": "docker.io",
    "docker-compose": "docker-compose",
    "debootstrap": "debootstrap",
    "prometheus": "prometheus",
    "promtool": "prometheus",
}

T = TypeVar("T")


class E2EError(AssertionError):
    """A step of the end-to-end run failed; the message says which and why."""


# --- small utilities ---------------------------------------------------------------------


def run(cmd: Sequence[str], *, timeout_s: float, env: dict[str, str] | None = None,
        check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a command with a hard time limit; on failure raise with its output tail."""
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise E2EError(f"timed out after {timeout_s:.0f}s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]).strip()
        raise E2EError(f"exit {proc.returncode}: {' '.join(cmd)}\n{tail}")
    return proc


def wait_for(what: str, probe: Callable[[], T | None], *, timeout_s: float,
             interval_s: float = 1.0) -> T:
    """Call ``probe`` until it returns something not None; raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while True:
        try:
            result = probe()
        except (OSError, ValueError, KeyError, E2EError) as exc:
            result, last_error = None, f"{type(exc).__name__}: {exc}"
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise E2EError(f"gave up after {timeout_s:.0f}s waiting for {what}"
                           + (f" (last error: {last_error})" if last_error else ""))
        time.sleep(interval_s)


def http_json(url: str, *, timeout_s: float = 5.0) -> Any:
    """GET ``url`` and decode JSON; raise ``E2EError`` on a non-2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise E2EError(f"GET {url}: HTTP {exc.code} {exc.read()[:300]!r}") from exc


def http_ok(url: str, *, timeout_s: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# --- host setup -----------------------------------------------------------------------------


def is_root() -> bool:
    return os.geteuid() == 0


def docker_usable() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0


def install_missing_packages() -> list[str]:
    """apt-get install whatever of docker.io, docker-compose, debootstrap, prometheus is missing."""
    missing = sorted({pkg for cmd, pkg in APT_PACKAGES.items() if shutil.which(cmd) is None})
    if not missing:
        return []
    if not is_root():
        raise E2EError(f"missing {missing} and not root: apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], timeout_s=300, env=env)
    run(["apt-get", "install", "-y", "-q", *missing], timeout_s=600, env=env)
    return missing


@dataclass
class Dockerd:
    """A dockerd this test started (None when one was already running)."""

    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def ensure_dockerd(log_dir: Path) -> Dockerd:
    """Use the running Docker engine, or start dockerd (root only) and wait for it."""
    if docker_usable():
        return Dockerd()
    if not is_root():
        raise E2EError("the Docker engine is not running and only root can start it")
    log_path = log_dir / "dockerd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    engine = Dockerd(process=process, log_path=log_path)
    try:
        wait_for("dockerd to answer", lambda: True if docker_usable() else None, timeout_s=60)
    except E2EError as exc:
        engine.stop()
        raise E2EError(f"{exc}; dockerd log:\n{log_path.read_text()[-2000:]}") from exc
    return engine


# --- image ----------------------------------------------------------------------------------


def build_image(*, tag: str, base_image: str) -> dict[str, float]:
    """Base image (debootstrap), wheelhouse and the node image with no network in the build."""
    timings: dict[str, float] = {}
    start = time.monotonic()
    if base_image == "gridchain-base:local":
        run(["bash", str(DEPLOY / "build-base.sh"), base_image], timeout_s=600)
    timings["base_s"] = time.monotonic() - start
    start = time.monotonic()
    run(["bash", str(DEPLOY / "build-wheelhouse.sh")], timeout_s=600,
        env={**os.environ, "PYTHON": os.environ.get("E2E_PYTHON", str(ROOT / ".venv/bin/python"))})
    timings["wheelhouse_s"] = time.monotonic() - start
    start = time.monotonic()
    # --network none: the build cannot reach a registry or an index even if it tried.
    run(["docker", "build", "--network", "none", "-q", "-f", str(DEPLOY / "Dockerfile"),
         "--build-arg", f"BASE_IMAGE={base_image}", "-t", tag, str(DEPLOY)], timeout_s=600)
    timings["image_s"] = time.monotonic() - start
    return timings


# --- compose --------------------------------------------------------------------------------


def compose_command() -> list[str]:
    """``docker compose`` (v2) when present, else Debian's ``docker-compose``."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30,
                      check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise E2EError("neither 'docker compose' nor 'docker-compose' is installed")


@dataclass
class Node:
    name: str
    api_port: int
    metrics_port: int

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"


@dataclass
class Stack:
    """One compose project of the repository's docker-compose.yml."""

    project: str
    image: str
    genesis_dir: Path
    genesis_args: str
    nodes: dict[str, Node] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.project,
            "COMPOSE_FILE": str(ROOT / "docker-compose.yml"),
            "GRIDCHAIN_IMAGE": self.image,
            "GRIDCHAIN_GENESIS_DIR": str(self.genesis_dir),
            "GRIDCHAIN_GENESIS_ARGS": self.genesis_args,
            "GRIDCHAIN_HOST_UID": str(os.getuid()),
            "GRIDCHAIN_HOST_GID": str(os.getgid()),
        }
        for node in self.nodes.values():
            env[f"GRIDCHAIN_{node.name.upper()}_API_PORT"] = str(node.api_port)
            env[f"GRIDCHAIN_{node.name.upper()}_METRICS_PORT"] = str(node.metrics_port)
        return env

    def compose(self, *args: str, timeout_s: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*compose_command(), *args], timeout_s=timeout_s, env=self.env(), check=check)

    def logs(self, service: str = "", tail: int = 40) -> str:
        proc = self.compose("logs", "--no-color", f"--tail={tail}", *([service] if service else []),
                            check=False, timeout_s=60)
        return proc.stdout[-6000:]

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False, timeout_s=180)

    def status(self, name: str) -> dict[str, Any]:
        return dict(http_json(f"{self.nodes[name].api}/v1/status"))

    def height(self, name: str) -> int:
        return int(self.status(name)["height"])

    def block(self, name: str, height: int) -> dict[str, Any]:
        return dict(http_json(f"{self.nodes[name].api}/v1/blocks/{height}"))

    def host_path(self, container_path: str) -> Path:
        """Map a path the init container wrote (/genesis/...) to the host directory."""
        prefix = "/genesis/"
        if not container_path.startswith(prefix):
            raise E2EError(f"unexpected path outside /genesis: {container_path}")
        return self.genesis_dir / container_path[len(prefix):]


def pick_ports(preferred_api: int, preferred_metrics: int) -> dict[str, Node]:
    """Host ports for the four nodes: the preferred block if free, else random free ports."""
    nodes = {}
    for i, name in enumerate(NODE_NAMES):
        api, metrics = preferred_api + i, preferred_metrics + i
        if not port_is_free(api):
            api = free_port()
        if not port_is_free(metrics):
            metrics = free_port()
        nodes[name] = Node(name=name, api_port=api, metrics_port=metrics)
    return nodes


# --- host Prometheus ------------------------------------------------------------------------


@dataclass
class HostPrometheus:
    """Debian's prometheus on the host, with the repository's config and rules."""

    workdir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, nodes: dict[str, Node]) -> Path:
        """The repository's prometheus.yml and alerts.yml, unchanged except for the
        directory they live in, plus a targets file listing the published host ports."""
        conf_dir = self.workdir / "etc"
        (conf_dir / "targets").mkdir(parents=True, exist_ok=True)
        source = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
        if "/etc/prometheus/" not in source:
            raise E2EError("prometheus.yml no longer refers to /etc/prometheus/")
        (conf_dir / "prometheus.yml").write_text(source.replace("/etc/prometheus/", f"{conf_dir}/"))
        shutil.copy(DEPLOY / "prometheus" / "alerts.yml", conf_dir / "alerts.yml")
        compose_targets = json.loads((DEPLOY / "prometheus" / "targets" / "gridchain.json").read_text())
        host_targets = []
        for group in compose_targets:
            name = group["labels"]["node"]
            host_targets.append({"targets": [f"127.0.0.1:{nodes[name].metrics_port}"], "labels": group["labels"]})
        (conf_dir / "targets" / "gridchain.json").write_text(json.dumps(host_targets, indent=2))
        return conf_dir / "prometheus.yml"

    def start(self, config: Path) -> None:
        log = open(self.workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_for("prometheus /-/ready", lambda: True if http_ok(f"{self.url}/-/ready") else None,
                 timeout_s=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        doc = http_json(f"{self.url}/api/v1/{path}" + (f"?{query}" if query else ""), timeout_s=10)
        if doc.get("status") != "success":
            raise E2EError(f"prometheus {path} {params}: {doc}")
        return doc["data"]

    def query(self, expr: str) -> list[Any]:
        """Evaluate an instant query; raise on a parse or evaluation error."""
        query = urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=10) as response:
                doc = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            doc = json.loads(exc.read() or b"{}")
        if doc.get("status") != "success":
            raise E2EError(f"query {expr!r} failed: {doc.get('errorType')}: {doc.get('error')}")
        result = doc["data"]["result"]
        return result if isinstance(result, list) else [result]


@contextlib.contextmanager
def host_prometheus(workdir: Path, nodes: dict[str, Node]) -> Iterator[HostPrometheus]:
    prom = HostPrometheus(workdir=workdir, port=free_port())
    config = prom.write_config(nodes)
    run(["promtool", "check", "config", str(config)], timeout_s=60)
    prom.start(config)
    try:
        yield prom
    finally:
        prom.stop()


# --- dashboard ------------------------------------------------------------------------------

GRAFANA_VARIABLES: dict[str, str] = {
    # What Grafana substitutes before a query reaches Prometheus ("All" for $node).
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$node": ".*",
}


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana variables substituted) for every panel target."""
    doc = json.loads(path.read_text())
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            out.append((panel["title"], expr))
    return out


def alert_expressions(path: Path) -> list[tuple[str, str]]:
    """(alert name, expr) from alerts.yml; the file keeps each expr on one `expr:` line."""
    names: list[str] = []
    exprs: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("- alert:"):
            names.append(stripped.split(":", 1)[1].strip())
        elif stripped.startswith("expr:"):
            exprs.append(stripped.split(":", 1)[1].strip())
    if len(names) != len(exprs):
        raise E2EError(f"alerts.yml: {len(names)} alerts but {len(exprs)} one-line expressions")
    return list(zip(names, exprs, strict=True))

