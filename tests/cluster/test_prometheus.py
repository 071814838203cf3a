"""A real Prometheus (Debian's package) scrapes a local 3-node cluster with the shipped configuration and
alert rules, and an alert fires when a node is stopped.

The configuration is deploy/prometheus/prometheus.yaml with the test cluster's targets and a 1 s scrape
and evaluation interval; the rules are deploy/prometheus/talentnest-rules.yaml with each ``for:``
shortened to 3 s, so that the test waits seconds, not the minute TalentNestNodeDown waits in
production. Expressions, labels and annotations are the shipped ones.
"""

from __future__ import annotations

import signal
import subprocess

import httpx
import pytest
import yaml

from tests import _prometheus as prom
from tests._node import free_port
from tests._tools import require
from tests.cluster.harness import TEST_SUBNET, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SHIPPED_CONFIG = prom.ROOT / "deploy" / "prometheus" / "prometheus.yaml"


@pytest.fixture
def prometheus(tmp_path):
    """Factory: ``start(targets)`` runs Prometheus on a loopback address of the test subnet; stopped after."""
    binary = require("prometheus", "prometheus")
    started: list[subprocess.Popen] = []

    def start(targets: list[str]) -> str:
        config = yaml.safe_load(SHIPPED_CONFIG.read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
        (job,) = config["scrape_configs"]
        job["static_configs"] = [{"targets": targets}]
        rules = yaml.safe_load(prom.RULES.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "3s"
        (tmp_path / "talentnest-rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
        config["rule_files"] = [str(tmp_path / "talentnest-rules.yaml")]
        (tmp_path / "prometheus.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        address = f"{TEST_SUBNET}.252:{free_port(f'{TEST_SUBNET}.252')}"
        log = (tmp_path / "prometheus.log").open("wb")
        command = [
            binary,
            f"--config.file={tmp_path / 'prometheus.yaml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={address}",
        ]
        started.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path))
        return f"http://{address}"

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _api(base: str, path: str, **params: str) -> dict:
    response = httpx.get(f"{base}/api/v1/{path}", params=params, timeout=5, trust_env=False)
    response.raise_for_status()
    return response.json()["data"]


def _firing(base: str) -> list[dict]:
    return [alert for alert in _api(base, "alerts")["alerts"] if alert["state"] == "firing"]


def test_prometheus_with_the_shipped_rules_fires_an_alert_when_a_node_is_stopped(make_cluster, prometheus, tmp_path):
    cluster = make_cluster(3)
    targets = [f"{node.address}:3000" for node in cluster.nodes]
    base = prometheus(targets)
    log = lambda: (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:]  # noqa: E731

    def all_up() -> bool:
        try:
            active = _api(base, "targets")["activeTargets"]
            rules = _api(base, "rules")["groups"]
        except httpx.HTTPError:
            return False
        return len(active) == 3 and all(t["health"] == "up" for t in active) and rules and rules[0]["rules"]

    wait_until(all_up, timeout=60, interval=0.5, what="Prometheus to scrape all three nodes", report=log)
    loaded = {rule["name"] for group in _api(base, "rules")["groups"] for rule in group["rules"]}
    assert loaded == set(prom.alert_names())
    # A healthy cluster fires nothing, not even pending, after more scrapes than any shortened `for:` needs.
    wait_until(
        lambda: _api(base, "query", query='min(count_over_time(up{job="talentnest"}[20s])) >= 6')["result"],
        timeout=30,
        interval=0.5,
        what="six scrapes of every node",
        report=log,
    )
    assert _api(base, "query", query="sum(talentnest_is_leader)")["result"][0]["value"][1] == "1"
    assert _api(base, "alerts")["alerts"] == []

    stopped = cluster.nodes[0]
    stopped.stop()
    instance = f"{stopped.address}:3000"

    def node_down_fires() -> dict | None:
        for alert in _firing(base):
            if alert["labels"]["alertname"] == "TalentNestNodeDown" and alert["labels"]["instance"] == instance:
                return alert
        return None

    alert = wait_until(node_down_fires, timeout=30, interval=0.5, what=f"TalentNestNodeDown for {instance}", report=log)
    assert alert["labels"]["severity"] == "warning"
    assert instance in alert["annotations"]["summary"]
    # The cluster itself is fine: one leader among the two left, so nothing else fires.
    others = {a["labels"]["alertname"] for a in _firing(base)} - {"TalentNestNodeDown"}
    assert not others, f"unexpected alerts after stopping one follower: {others}"
