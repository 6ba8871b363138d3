"""The member deployment files (deploy/member/): the one-node compose file and the
Kustomize base. The base is rendered with `kubectl kustomize` from a real member home
(made by the ceremony code) and every object is validated offline: the built-in kinds
with kubernetes-validate (strict: unknown fields are errors), the PodMonitor against
the Prometheus Operator's CRD schema vendored in tests/e2e/crds/. Runs in the normal
suite; deploy/install-tools.sh installs kubectl where it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from node.ops import keys, member
from node.ops.genesis import ExtraAccount
from tests.e2e import harness as h

MEMBER = h.DEPLOY / "member"
K8S_VERSION = "1.30.0"
"""The oldest Kubernetes the base is checked against (still in wide use)."""
PODMONITOR_CRD = Path(__file__).parent / "crds" / "monitoring.coreos.com_podmonitors.yaml"
HOME_FILES = ("validator_key.json", "tls_key.pem", "genesis.json", "node.toml", "tls_cert.pem", "member.json")


def _member_home(home: Path) -> dict[str, bytes]:
    """A real home of member 'grid' in a two-member consortium, as the ceremony makes it."""
    cards = []
    for name in ("grid", "generator"):
        signer = keys.new_signer()
        if name == "grid":
            keys.write_key_file(home / "validator_key.json", signer)
        cards.append(member.new_member(name=name, role=name, public_key=signer.public_key,
                                       p2p_url=f"wss://{name}.example.org:26656/p2p"))
    member.write_member_file(home / "member.json", cards[0])
    op = keys.new_signer().public_key
    genesis = member.build_genesis(cards, accounts=(ExtraAccount("op", "grid", 1, op, None),),
                                   chain_id="gridchain", genesis_time_ms=1_700_000_000_000)
    member.write_genesis(home / "genesis.json", genesis)
    member.configure_home(home, cards)
    return {f: (home / f).read_bytes() for f in HOME_FILES}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (deploy/install-tools.sh installs it)")
    base = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(MEMBER / "k8s", base)
    home_files = _member_home(base / "home")
    proc = subprocess.run(["kubectl", "kustomize", str(base)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d], home_files


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_every_built_in_object_validates_against_the_kubernetes_schemas(
        rendered: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    docs, _ = rendered
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "ConfigMap", "PodMonitor", "Secret", "Service", "Service", "Service", "Service",
                     "StatefulSet"]
    for doc in docs:
        if doc["kind"] != "PodMonitor":
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_broken_object_is_refused_by_the_validator() -> None:
    """The check can fail: a misspelt field and a wrong type are errors."""
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"ports": [{"port": "not-a-number"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(svc, K8S_VERSION, strict=True)
    svc["spec"] = {"prots": [{"port": 1}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(svc, K8S_VERSION, strict=True)


def _podmonitor_schema() -> dict[str, Any]:
    crd = next(d for d in yaml.safe_load_all(PODMONITOR_CRD.read_text()) if d)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_podmonitor_validates_against_the_operator_crd(
        rendered: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    docs, _ = rendered
    (monitor,) = _by_kind(docs, "PodMonitor")
    schema = _podmonitor_schema()
    jsonschema.validate(monitor, schema)
    # The CRD schema allows unknown fields nowhere it names properties; check ours are all named.
    endpoint_fields = schema["properties"]["spec"]["properties"]["podMetricsEndpoints"]["items"]["properties"]
    assert set(monitor["spec"]["podMetricsEndpoints"][0]) <= set(endpoint_fields)
    assert set(monitor["spec"]) <= set(schema["properties"]["spec"]["properties"])
    bad = {**monitor, "spec": {**monitor["spec"], "podMetricsEndpoints": [{"port": 9100}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    # It scrapes the pods of the StatefulSet, on the container port named metrics.
    (sts,) = _by_kind(docs, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert monitor["spec"]["jobLabel"] in pod_labels and pod_labels[monitor["spec"]["jobLabel"]] == "gridchain"
    ports = {p["name"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports


def test_statefulset_runs_one_non_root_validator_from_its_secret_and_configmap(
        rendered: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    docs, home = rendered
    (sts,) = _by_kind(docs, "StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == 1 and spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    (node,) = pod["containers"]
    assert node["securityContext"]["allowPrivilegeEscalation"] is False
    assert node["securityContext"]["readOnlyRootFilesystem"] is True
    assert node["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert node["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert node["resources"]["requests"]["cpu"] and node["resources"]["limits"]["memory"]
    # Same image as the consortium's docker-compose.yml.
    compose = yaml.safe_load((h.ROOT / "docker-compose.yml").read_text())
    assert compose["x-node"]["image"].endswith(":-gridchain:local}")
    assert node["image"] == "gridchain:local" and pod["initContainers"][0]["image"] == "gridchain:local"
    # The generated objects carry the home's files, and the pod mounts exactly those names.
    (secret,) = _by_kind(docs, "Secret")
    configmaps = {c["metadata"]["name"].rsplit("-", 1)[0]: c for c in _by_kind(docs, "ConfigMap")}
    assert set(secret["data"]) == {"validator_key.json", "tls_key.pem"}
    assert set(configmaps["gridchain-home"]["data"]) == {"genesis.json", "node.toml", "tls_cert.pem", "member.json"}
    assert configmaps["gridchain-home"]["data"]["genesis.json"].encode() == home["genesis.json"]
    sources = pod["volumes"][0]["projected"]["sources"]
    names = {s["secret"]["name"] if "secret" in s else s["configMap"]["name"] for s in sources}
    assert names == {secret["metadata"]["name"], configmaps["gridchain-home"]["metadata"]["name"]}
    # Services for p2p, API and metrics select the pod by a label it has.
    labels = spec["template"]["metadata"]["labels"]
    ports = {}
    for svc in _by_kind(docs, "Service"):
        assert svc["spec"]["selector"].items() <= labels.items()
        ports.update({p["name"]: p["port"] for p in svc["spec"]["ports"]})
    assert ports == {"p2p": 26656, "api": 8080, "metrics": 9100}


def test_member_compose_runs_the_same_image_from_one_home_directory() -> None:
    doc = yaml.safe_load((MEMBER / "docker-compose.yml").read_text())
    node = doc["services"]["node"]
    compose = yaml.safe_load((h.ROOT / "docker-compose.yml").read_text())
    assert node["image"] == compose["x-node"]["image"]
    assert node["command"] == ["node", "--home", "/data"]
    assert node["volumes"] == ["${GRIDCHAIN_MEMBER_HOME:-./home}:/data"]
    assert doc["services"]["prometheus"]["profiles"] == ["monitoring"]
    assert "../prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in doc["services"]["prometheus"]["volumes"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_member_compose_file_is_valid_for_debian_docker_compose() -> None:
    proc = subprocess.run(["docker-compose", "-f", str(MEMBER / "docker-compose.yml"), "-p", "gridchain-member",
                           "--profile", "monitoring", "config", "--services"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"node", "prometheus"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_member_prometheus_config_loads_the_alert_rules(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text((MEMBER / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml",
                                                                      str(h.DEPLOY / "prometheus" / "alerts.yml")))
    proc = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_rule_has_a_runbook_in_the_operations_guide() -> None:
    """docs/OPERATIONS.md has a section per alert, with what it means, what to check, what to do."""
    guide = (h.ROOT / "docs" / "OPERATIONS.md").read_text()
    alerts = [name for name, _ in h.alert_expressions(h.DEPLOY / "prometheus" / "alerts.yml")]
    assert len(alerts) >= 7
    for name in alerts:
        assert f"\n### {name}\n" in guide, f"no runbook for {name}"
        section = guide.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
        assert all(part in section for part in ("**Means**", "**Check**", "**Do**")), name
