"""deploy/kubernetes against the Kubernetes schemas (offline), and the pieces that must fit together."""

from __future__ import annotations

import copy
import os
import re
import stat
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
# The oldest Kubernetes still widely run that has every field used here, and the newest schemas shipped.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> dict[str, list[dict]]:
    return {path.name: _documents(path) for path in sorted(KUBE.glob("*.yaml")) if path.name != "kustomization.yaml"}


def _resource(kind: str, name: str | None = None) -> dict:
    found = [
        doc for docs in _manifests().values() for doc in docs if doc["kind"] == kind and name in (None, doc["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _statefulset_pod() -> dict:
    return _resource("StatefulSet")["spec"]["template"]["spec"]


def _container() -> dict:
    return _statefulset_pod()["containers"][0]


def _env(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container["env"]}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("filename", sorted(_manifests()))
def test_manifest_matches_the_kubernetes_schema(filename: str, version: str):
    for document in _manifests()[filename]:
        kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_rejects_a_broken_manifest():
    broken = copy.deepcopy(_resource("StatefulSet"))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    unknown = copy.deepcopy(_resource("PodDisruptionBudget"))
    unknown["spec"]["maxUnavialable"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_secret():
    listed = yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(name for name in _manifests() if name != "secret.yaml")


def test_service_name_is_the_headless_service_that_lists_unready_pods():
    statefulset = _resource("StatefulSet")
    headless = _resource("Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= pod_labels.items()
    service_name = _env(_container())["SERVICE_NAME"]["value"]
    assert service_name.split(".")[0] == headless["metadata"]["name"]
    assert service_name == f"{headless['metadata']['name']}.$(POD_NAMESPACE).svc.cluster.local"
    assert _env(_container())["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_jwt_secret_comes_from_the_secret_and_is_never_a_default():
    ref = _env(_container())["JWT_SECRET"]["valueFrom"]["secretKeyRef"]
    secret = _resource("Secret", ref["name"])
    assert ref["key"] in secret["stringData"]
    assert secret["stringData"][ref["key"]] == "", "no default key may ship: a node refuses to start without one"


def test_probes_security_and_storage():
    pod, container = _statefulset_pod(), _container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == int(_env(container)["PORT"]["value"]) == 3000
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = [t["metadata"]["name"] for t in _resource("StatefulSet")["spec"]["volumeClaimTemplates"]]
    assert mounts == {"data": "/data"} and claims == ["data"]
    assert _env(container)["DATA_DIR"]["value"] == "/data"


def test_pod_user_is_the_image_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    uid, gid = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M).groups()
    security = _statefulset_pod()["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (int(uid), int(gid), int(gid))


def test_disruption_budget_keeps_a_majority():
    pdb = _resource("PodDisruptionBudget")
    statefulset = _resource("StatefulSet")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    replicas = statefulset["spec"]["replicas"]
    assert replicas - pdb["spec"]["maxUnavailable"] > replicas // 2


def _run_wrapper(args: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a deploy wrapper script with a stand-in `talentnest` that prints what the node would get."""
    stub = tmp_path / "talentnest"
    stub.write_text('#!/bin/sh\necho "NODE_ID=$NODE_ID JWT_SECRET=$JWT_SECRET ARGS=$*"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    full_env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", **env}
    return subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("hostname", "node_id"), [("talentnest-0", 10000), ("talentnest-1", 9999), ("talentnest-12", 9988)])
def test_statefulset_wrapper_counts_node_ids_down_from_the_ordinal(tmp_path: Path, hostname: str, node_id: int):
    result = _run_wrapper(_container()["args"], tmp_path, {"HOSTNAME": hostname})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == f"NODE_ID={node_id}"
    assert result.stdout.strip().endswith("ARGS=node")


@pytest.mark.parametrize("hostname", ["web", "talentnest-", "talentnest-x1"])
def test_statefulset_wrapper_refuses_a_hostname_without_ordinal(tmp_path: Path, hostname: str):
    result = _run_wrapper(_container()["args"], tmp_path, {"HOSTNAME": hostname})
    assert result.returncode == 2
    assert "cannot read the StatefulSet ordinal" in result.stderr
    assert "NODE_ID" not in result.stdout


def test_swarm_stack_wrapper_counts_node_ids_down_from_the_slot():
    stack = yaml.safe_load((REPO / "deploy" / "swarm" / "stack.yaml").read_text())
    backend = stack["services"]["backend"]
    assert backend["environment"]["SERVICE_NAME"] == "tasks.backend"
    assert backend["environment"]["TASK_SLOT"] == "{{.Task.Slot}}"
    assert backend["deploy"]["update_config"] == {**backend["deploy"]["update_config"], "parallelism": 1, "order": "stop-first"}
    # Compose writes a literal $ as $$; what the shell receives has single ones.
    script = [part.replace("$$", "$") for part in backend["command"]]
    assert "$((10000 - TASK_SLOT))" in script[-1] and "/run/secrets/jwt_secret" in script[-1]
