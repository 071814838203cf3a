"""Real scrapes of real nodes turned into `promtool test rules` cases, to fire the shipped alert rules.

A ``Frame`` is one scrape of every target (each sample labelled with ``job`` and ``instance`` as
Prometheus labels it, plus ``up``: 1 if the target answered, 0 if not). ``promtool_case`` lays frames
out one minute apart, each held for some minutes, as a unit-test case of ``promtool test rules``: the
values are what the nodes really served; only the time between scrapes is compressed, so that an
alert's ``for:`` of minutes needs seconds of real time.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "talentnest-rules.yaml"
JOB = "talentnest"
CLUSTER_PREFIX = "talentnest_"

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Frame:
    """One scrape: series key -> value."""

    samples: Mapping[SeriesKey, float]
    label: str

    def values(self, name: str, **labels: str) -> dict[str, float]:
        """instance -> value of metric ``name`` whose labels include ``labels``."""
        found = {}
        for (metric, pairs), value in self.samples.items():
            given = dict(pairs)
            if metric == name and all(given.get(k) == v for k, v in labels.items()):
                found[given.get("instance", "")] = value
        return found


def scrape(targets: Iterable[str], *, label: str, timeout: float = 3.0) -> Frame:
    """GET /metrics of every ``host:port`` target, as Prometheus would (a silent target gets up 0)."""
    samples: dict[SeriesKey, float] = {}
    with httpx.Client(trust_env=False, timeout=timeout) as client:
        for target in targets:
            base = {"job": JOB, "instance": target}
            try:
                response = client.get(f"http://{target}/metrics")
                text = response.text if response.status_code == 200 else None
            except httpx.HTTPError:
                text = None
            samples[("up", tuple(sorted(base.items())))] = 0.0 if text is None else 1.0
            if text is None:
                continue
            for family in text_string_to_metric_families(text):
                if not family.name.startswith(CLUSTER_PREFIX) or family.name.startswith("talentnest_http_"):
                    continue  # HTTP and process series: many, and no rule reads them
                for sample in family.samples:
                    labels = {**sample.labels, **base}
                    samples[(sample.name, tuple(sorted(labels.items())))] = float(sample.value)
    return Frame(samples, label)


def _series_name(key: SeriesKey) -> str:
    name, pairs = key
    inside = ",".join(f'{k}="{_escaped(v)}"' for k, v in pairs)
    return f"{name}{{{inside}}}"


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(int(value)) if value.is_integer() else repr(value)


def promtool_case(timeline: Sequence[tuple[Frame, int]], expected: Mapping[str, list[dict[str, str]]], name: str) -> dict:
    """A test case: the frames in order, each held ``minutes`` samples (one a minute); at the end each
    alert of ``expected`` must be firing with exactly those label sets (an empty list: not firing)."""
    keys = sorted({key for frame, _ in timeline for key in frame.samples})
    series = []
    for key in keys:
        parts = []
        for frame, minutes in timeline:
            value = frame.samples.get(key)
            parts.append(f"{'_' if value is None else _number(value)}x{minutes - 1}")
        series.append({"series": _series_name(key), "values": " ".join(parts)})
    end = sum(minutes for _, minutes in timeline) - 1
    tests = [
        {"eval_time": f"{end}m", "alertname": alert, "exp_alerts": [{"exp_labels": labels} for labels in label_sets]}
        for alert, label_sets in expected.items()
    ]
    return {"name": name, "interval": "1m", "input_series": series, "alert_rule_test": tests}


def rules_without_annotations(directory: Path) -> Path:
    """The shipped rules minus their annotations: promtool compares annotations exactly, and they hold
    rendered values; the expressions, durations and labels (what decides firing) are unchanged."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path = directory / "rules-under-test.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def alert_names() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def alert_labels(alert: str) -> dict[str, str]:
    """The labels the rule itself adds (severity)."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                return dict(rule.get("labels") or {})
    raise KeyError(alert)


def run_promtool_tests(promtool: str, directory: Path, cases: list[dict]) -> subprocess.CompletedProcess:
    """Write the cases beside the rules under test and run ``promtool test rules`` on them."""
    rules = rules_without_annotations(directory)
    tests = directory / "alert-tests.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": cases}, sort_keys=False))
    return subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=120)
