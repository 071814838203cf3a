"""The monitoring shipped beside the manifests: alert rules, the Prometheus example, the Grafana dashboard,
the ServiceMonitor, the PrometheusRule and the NetworkPolicy; offline, with promtool where PromQL is parsed.

Every metric a rule or a panel reads must be one a node really exports (its /metrics, in process).
The Prometheus Operator's kinds have no schema in kubernetes-validate; they are checked for the
fields they need and for fitting the Services and pods they select. (That the rules fire on real
metrics is tests/cluster/test_alert_rules.py; a real Prometheus, tests/cluster/test_prometheus.py.)
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from tests._prometheus import RULES
from tests._tools import require
from tests.api._helpers import fast_settings

from talentnest.app import create_app

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
MONITORING = KUBE / "monitoring"
DASHBOARD = REPO / "deploy" / "grafana" / "talentnest-dashboard.json"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yaml"
_METRIC = re.compile(r"\b((?:talentnest|process)_[a-z0-9_]+)\b")
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
}


def _yaml(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(path: Path) -> dict:
    (document,) = _yaml(path)
    return document


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """Every series name a node's /metrics can hold (families without samples yet count too), the
    archive's included (a node with ARCHIVE_DIR)."""
    directory = tmp_path_factory.mktemp("metrics")
    app = create_app(fast_settings(directory / "data", archive_dir=str(directory / "archive")))
    with TestClient(app) as client:
        text = client.get("/metrics").text
    names = {"up"}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names


def _rule_expressions() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def _promtool(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([require("promtool", "prometheus"), *arguments], capture_output=True, text=True, timeout=60)


def test_the_rules_pass_promtool_check():
    result = _promtool("check", "rules", str(RULES))
    expected = f"SUCCESS: {len(_rule_expressions())} rules found"
    assert result.returncode == 0 and expected in result.stdout, result.stdout + result.stderr


def test_the_prometheus_example_is_a_valid_configuration_that_loads_the_rules():
    result = _promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    assert [job["job_name"] for job in config["scrape_configs"]] == ["talentnest"]


def test_promtool_rejects_a_broken_rule(tmp_path):
    rules = yaml.safe_load(RULES.read_text())
    rules["groups"][0]["rules"][0]["expr"] = "max by (job (talentnest_is_leader)"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(rules))
    assert _promtool("check", "rules", str(broken)).returncode != 0


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_read_is_one_a_node_exports(exported: set[str], source: str):
    expressions = _rule_expressions() if source == "rules" else _dashboard_expressions()
    read = {name for expr in expressions for name in _METRIC.findall(expr)}
    assert read, f"no metric found in the {source}"
    assert read <= exported, f"the {source} read metrics no node exports: {sorted(read - exported)}"


def test_the_prometheus_rule_holds_the_same_rules():
    rule = _one(MONITORING / "prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text()), "regenerate prometheusrule.yaml from talentnest-rules.yaml"


def test_every_dashboard_query_is_valid_promql(tmp_path):
    recording = [
        {"record": f"dashboard:panel_{i}", "expr": expr.replace("$__rate_interval", "1m").replace("$job", "talentnest")}
        for i, expr in enumerate(_dashboard_expressions())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_a_grafana_dashboard_with_a_datasource_and_job_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["current"]["value"] == "talentnest"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 10
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        covered = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not covered & cells, f"panel {panel['title']!r} overlaps another"
        cells |= covered
        for target in panel["targets"]:
            assert 'job="$job"' in target["expr"], f"{panel['title']}: {target['expr']} ignores the job variable"


def _headless_service() -> dict:
    services = [doc for doc in _yaml(KUBE / "service.yaml") if doc["kind"] == "Service"]
    (headless,) = [s for s in services if s["spec"].get("clusterIP") == "None"]
    return headless


def test_the_service_monitor_scrapes_every_node_through_the_headless_service():
    monitor = _one(MONITORING / "servicemonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    service = _headless_service()
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    selected = [doc for doc in _yaml(KUBE / "service.yaml") if wanted <= doc["metadata"]["labels"].items()]
    assert selected == [service], "the ServiceMonitor must select the headless Service alone (it lists unready pods)"
    assert service["spec"]["publishNotReadyAddresses"] is True
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # The Operator names the job after the Service: the name the rules' `up{job="talentnest"}` expects.
    assert service["metadata"]["name"] == "talentnest" and 'up{job="talentnest"}' in RULES.read_text()
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    manifests = sorted(p.name for p in MONITORING.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == manifests


def test_the_network_policy_admits_peers_clients_and_prometheus_only():
    policy = _one(KUBE / "networkpolicy.yaml")
    statefulset = _one(KUBE / "statefulset.yaml")
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    container_port = statefulset["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    sources = []
    for rule in spec["ingress"]:
        assert [p["port"] for p in rule["ports"]] == [container_port]
        (peer,) = rule["from"]
        sources.append(peer["podSelector"]["matchLabels"])
    assert pod_labels.items() >= sources[0].items(), "the first ingress rule admits the other nodes"
    assert {"talentnest.io/client": "true"} in sources and {"app.kubernetes.io/name": "prometheus"} in sources
    egress_ports = {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}
    assert egress_ports == {("TCP", container_port), ("UDP", 53), ("TCP", 53)}, "nodes reach each other and DNS only"
