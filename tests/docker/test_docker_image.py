"""The image itself: non-root, /data volume, read-only root, healthcheck, fast graceful stop, the deploy wrappers."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import _engine
import pytest
import yaml
from _engine import REPO, get_ok, host_port, http, inspect, poll, sh
from packaging.utils import canonicalize_name
from tests._lock import RUNTIME_LOCK, read_lock

import talentnest

pytestmark = pytest.mark.docker

PREFIX = "tn-image-test-"
SEED_ENV = "--env SERVICE_NAME=backend-service --env JWT_SECRET=secret_key --env PORT=3000"
STARTUP = 60


@pytest.fixture
def run_node(image):
    """docker run -d a node under a test-owned name, published on a random loopback port; removed (with volumes) after."""
    started: list[str] = []

    def run(suffix: str, options: str = SEED_ENV, command: str = "") -> tuple[str, int]:
        name = PREFIX + suffix
        _engine.remove_containers([name])
        sh(f"docker run -d --name {name} -p 127.0.0.1::3000 {options} {image} {command}")
        started.append(name)
        return name, host_port(name)

    yield run
    _engine.remove_containers(started)


def _wait_ready(name: str, port: int) -> None:
    poll(
        lambda: get_ok(f"http://127.0.0.1:{port}/readyz"),
        timeout=STARTUP,
        what=f"{name} to be ready",
        diagnostics=lambda: _engine.dump_logs([name]),
    )


def _signup(port: int, username: str) -> dict:
    status, body = http(
        "POST",
        f"http://127.0.0.1:{port}/api/auth/signup",
        {"name": "Docker Test", "username": username, "email": f"{username}@example.com", "password": "password123"},
    )
    assert status == 201, body
    return body


def _process_env(name: str, variable: str) -> set[str]:
    """Values of one environment variable across the container's processes (the node's own, not docker exec's)."""
    script = "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f 2>/dev/null; echo; done"
    lines = sh(f"docker exec {name} sh -c {shlex.quote(script)}").stdout.splitlines()
    return {line.split("=", 1)[1] for line in lines if line.startswith(variable + "=")}


def test_image_declares_user_volume_port_healthcheck_and_init(image):
    config = inspect(image)["Config"]
    assert config["User"] == "10001:10001"
    assert "/data" in config["Volumes"]
    assert "DATA_DIR=/data" in config["Env"]
    assert "3000/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"][0] == "tini"
    assert config["Cmd"] == ["talentnest", "node"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    assert "curl" not in " ".join(config["Healthcheck"]["Test"])


def test_node_runs_as_non_root_with_a_read_only_root_and_only_data_writable(run_node):
    name, port = run_node("readonly", f"--read-only --tmpfs /data:uid=10001,gid=10001,mode=0750 {SEED_ENV}")
    _wait_ready(name, port)
    assert _signup(port, "readonly")["user"]["username"] == "readonly"
    assert sh(f"docker exec {name} id -u").stdout.strip() == "10001"
    assert "talentnest.db" in sh(f"docker exec {name} ls /data").stdout.split()
    assert sh(f"docker exec {name} touch /usr/local/probe", check=False).returncode != 0  # the root really is read-only


def test_data_volume_keeps_the_database_across_a_restart(run_node):
    name, port = run_node("volume")
    _wait_ready(name, port)
    _signup(port, "persisted")
    sh(f"docker stop {name}")
    sh(f"docker start {name}")
    port = host_port(name)  # a restarted container may be published on another random port
    _wait_ready(name, port)
    users = get_ok(f"http://127.0.0.1:{port}/api/users/search?query=persisted")["items"]
    assert [user["username"] for user in users] == ["persisted"]


def test_docker_stop_is_graceful_and_does_not_wait_for_the_kill(run_node):
    name, port = run_node("stop")
    _wait_ready(name, port)
    started = time.monotonic()
    sh(f"docker stop {name}")
    elapsed = time.monotonic() - started
    state = inspect(name)["State"]
    # Docker sends SIGKILL after 10 s, which would show as exit code 137; tini maps the node's
    # graceful exit on SIGTERM (143) to 0.
    assert state["ExitCode"] == 0, f"exit code {state['ExitCode']} after {elapsed:.1f} s"
    assert "store: closed /data/talentnest.db" in _engine.logs(name)
    print(f"docker stop took {elapsed:.2f} s")


def test_healthcheck_reports_healthy_and_can_fail(run_node):
    name, _port = run_node("health", f"--health-interval 1s --health-start-period 0s {SEED_ENV}")
    poll(
        lambda: inspect(name)["State"]["Health"]["Status"] == "healthy",
        timeout=STARTUP,
        what=f"{name} to be healthy",
        diagnostics=lambda: str(inspect(name)["State"].get("Health")),
    )
    test = inspect(name)["Config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD-SHELL"
    # The same check against a port where nothing listens fails, so "healthy" means something.
    assert sh(f"docker exec -e PORT=3999 {name} sh -c {shlex.quote(test[1])}", check=False).returncode != 0


def test_node_without_jwt_secret_stops_with_one_clear_line(image):
    result = sh(f"docker run --rm --env SERVICE_NAME=backend-service --env PORT=3000 {image}", check=False)
    assert result.returncode == 2, result.describe()
    assert "JWT_SECRET is required" in result.stderr


def _statefulset_script() -> list[str]:
    manifest = yaml.safe_load((REPO / "deploy/kubernetes/statefulset.yaml").read_text())
    return manifest["spec"]["template"]["spec"]["containers"][0]["args"]


def test_statefulset_wrapper_sets_node_id_from_the_ordinal(run_node):
    args = " ".join(shlex.quote(arg) for arg in _statefulset_script())
    name, port = run_node("ordinal", f"--hostname talentnest-2 {SEED_ENV}", args)
    _wait_ready(name, port)
    assert _process_env(name, "NODE_ID") == {"9998"}


def test_statefulset_wrapper_refuses_a_name_without_ordinal(image):
    args = " ".join(shlex.quote(arg) for arg in _statefulset_script())
    result = sh(f"docker run --rm --hostname web {SEED_ENV} {image} {args}", check=False)
    assert result.returncode == 2, result.describe()
    assert "cannot read the StatefulSet ordinal" in result.stderr


def test_swarm_wrapper_reads_the_secret_file_and_sets_node_id_from_the_slot(run_node, tmp_path: Path):
    stack = yaml.safe_load((REPO / "deploy/swarm/stack.yaml").read_text())
    command = " ".join(shlex.quote(arg.replace("$$", "$")) for arg in stack["services"]["backend"]["command"])
    secret = tmp_path / "jwt_secret"
    secret.write_text("a-swarm-secret-of-more-than-thirty-two-bytes")
    secret.chmod(0o644)
    options = f"--env TASK_SLOT=2 --env PORT=3000 -v {secret}:/run/secrets/jwt_secret:ro"
    name, port = run_node("slot", options, command)
    _wait_ready(name, port)
    assert _process_env(name, "NODE_ID") == {"9998"}
    assert _process_env(name, "JWT_SECRET") == {"a-swarm-secret-of-more-than-thirty-two-bytes"}


BASE_IMAGE = "python:3.11-slim"  # the Dockerfile's FROM
_LIST_DISTRIBUTIONS = (
    "import json, importlib.metadata as m; "
    "print(json.dumps(sorted({(d.metadata['Name'].lower().replace('_', '-'), d.version) for d in m.distributions()})))"
)


def _distributions(image: str) -> set[tuple[str, str]]:
    out = sh(f"docker run --rm --entrypoint python {image} -c {shlex.quote(_LIST_DISTRIBUTIONS)}").stdout
    return {(canonicalize_name(name), version) for name, version in json.loads(out)}


def test_image_installs_exactly_the_locked_runtime_versions(image):
    """What ships is what CI tested: every distribution the Dockerfile added is a pin of requirements-runtime.lock
    (same version), every pin that applies on Linux is there, and nothing else but the package itself."""
    assert f"FROM {BASE_IMAGE}" in (REPO / "Dockerfile").read_text()
    added = _distributions(image) - _distributions(BASE_IMAGE)
    locked = {(name, pin.version) for name, pin in read_lock(RUNTIME_LOCK).items() if pin.applies_here}
    assert ("talentnest", talentnest.__version__) in added
    added.discard(("talentnest", talentnest.__version__))
    assert added == locked, (
        f"image {image} (on {BASE_IMAGE}) differs from requirements-runtime.lock: "
        f"not locked {sorted(added - locked)}, locked but missing {sorted(locked - added)}"
    )
