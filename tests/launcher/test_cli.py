"""`talentnest cluster ...` as a user runs it (separate processes), with fake nodes on the test subnet."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys

import pytest

from talentnest.launcher import _control
from talentnest.launcher.cli import NODE_COMMAND_VARIABLE
from talentnest.launcher.supervisor import is_alive
from tests.cluster.harness import FAKE_NODE_COMMAND, ROOT, TEST_PUBLISH_BASE, TEST_SUBNET, wait_until
from tests.launcher.conftest import holding, needs_published_ports, resolve

pytestmark = pytest.mark.cluster

LAYOUT = ["--subnet", TEST_SUBNET, "--publish-base", str(TEST_PUBLISH_BASE)]


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "TALENTNEST_CLUSTER_DIR"}
    env["PYTHONPATH"] = str(ROOT / "src")
    env[NODE_COMMAND_VARIABLE] = shlex.join(FAKE_NODE_COMMAND)
    return env


def talentnest(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "talentnest", "cluster", *arguments], env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def _rows(table: str) -> dict[str, list[str]]:
    """The status table's rows by node name (the cells split on whitespace)."""
    return {line.split()[0]: line.split() for line in table.splitlines() if line.strip().startswith("backend-")}


@pytest.fixture
def state_dir(tmp_path):
    directory = tmp_path / "cluster"
    yield directory
    # Whatever the test did, no supervisor (and so no node) outlives it.
    try:
        info = _control.request(directory, "info", timeout=5)
    except Exception:
        return
    talentnest("down", "--dir", str(directory))
    wait_until(lambda: not is_alive(info["supervisor_pid"]), timeout=30, what="the supervisor to exit")


def test_up_detached_then_status_stop_start_add_logs_down(state_dir):
    where = ["--dir", str(state_dir)]
    out = _ok(talentnest("up", "--detach", "--nodes", "3", *where, *LAYOUT))
    assert f"leader: backend-3 ({int(TEST_SUBNET.split('.')[2]) * 256 + 3})" in out
    rows = _rows(out)
    assert [rows[name][4] for name in ("backend-1", "backend-2", "backend-3")] == ["follower", "follower", "leader"]
    assert rows["backend-1"][1:3] == [f"http://localhost:{TEST_PUBLISH_BASE + 1}", f"{TEST_SUBNET}.1:3000"]
    assert f"{state_dir.resolve()}/<name>/node.log" in out and "jwt_secret" not in out
    secret = (state_dir / "jwt_secret").read_text()
    assert secret not in out

    info = _control.request(state_dir, "info")
    dns_host, dns_port = info["dns"].split(":")
    assert resolve((dns_host, int(dns_port)), "backend-service") == [f"{TEST_SUBNET}.{i}" for i in (1, 2, 3)]

    stopped = _ok(talentnest("stop", "backend-3", *where))
    assert "backend-3" in stopped and "stopped (exit code 0)" in stopped
    assert resolve((dns_host, int(dns_port)), "backend-service") == [f"{TEST_SUBNET}.{i}" for i in (1, 2)]
    rows = wait_until(
        lambda: (rows := _rows(_ok(talentnest("status", *where))))["backend-1"][5] == "backend-2" and rows,
        timeout=30,
        what="backend-2 to lead after backend-3 stopped",
    )
    assert rows["backend-3"][4:6] == ["down", "(stopped)"]

    assert "backend-3" in _ok(talentnest("start", "backend-3", *where))
    added = _ok(talentnest("add", *where))
    assert f"backend-4 ({int(TEST_SUBNET.split('.')[2]) * 256 + 4}): running" in added
    wait_until(
        lambda: all(row[5] == "backend-4" for row in _rows(_ok(talentnest("status", *where))).values()),
        timeout=30,
        what="every node to follow backend-4",
    )

    status = json.loads(_ok(talentnest("status", "--json", *where)))
    assert [node["status"]["current_role"] for node in status["nodes"]] == ["follower"] * 3 + ["leader"]

    log = _ok(talentnest("logs", "backend-1", "--tail", "2", *where))
    assert len(log.splitlines()) == 2 and "election" in log
    assert "listening" in _ok(talentnest("logs", "backend-1", *where)).splitlines()[0]

    pids = [node["pid"] for node in _control.request(state_dir, "info")["nodes"]]
    down = _ok(talentnest("down", *where))
    assert "stopped 4 node(s)" in down and "--purge" in down
    assert not any(is_alive(pid) for pid in pids)
    assert (state_dir / "backend-1" / "data").is_dir() and (state_dir / "backend-1" / "node.log").exists()
    gone = talentnest("status", *where)
    assert gone.returncode == 1 and "no cluster is running" in gone.stderr


def test_logs_follow_prints_new_lines(state_dir):
    where = ["--dir", str(state_dir)]
    _ok(talentnest("up", "--detach", "--nodes", "2", *where, *LAYOUT))
    follower = subprocess.Popen(
        [sys.executable, "-m", "talentnest", "cluster", "logs", "backend-1", "-f", *where],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in follower.stdout.readline()
        _ok(talentnest("stop", "backend-2", *where))
        # backend-1 logs its new leader; -f must show it.
        lines = iter(follower.stdout.readline, "")
        assert any("election" in line and "leader" in line and f"{TEST_SUBNET}.1" in line for line in lines)
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0


def test_errors_are_clear(state_dir):
    where = ["--dir", str(state_dir)]
    none = talentnest("stop", "backend-3", *where)
    assert none.returncode == 1 and "no cluster is running" in none.stderr and "talentnest cluster up" in none.stderr
    _ok(talentnest("up", "--detach", "--nodes", "1", *where, *LAYOUT))
    unknown = talentnest("stop", "backend-9", *where)
    assert unknown.returncode == 1 and "no node named 'backend-9' in this cluster (nodes: backend-1)" in unknown.stderr
    unknown_log = talentnest("logs", "backend-9", *where)
    assert unknown_log.returncode == 1 and "no node named 'backend-9'" in unknown_log.stderr
    again = talentnest("up", "--detach", "--nodes", "1", *where, *LAYOUT)
    assert again.returncode == 1 and "already running" in again.stderr
    bad = talentnest("up", "--subnet", "10.1.2", *where)
    assert bad.returncode == 1 and "loopback" in bad.stderr
    reserved = talentnest("up", "--env", "PORT=4000", *where)
    assert reserved.returncode == 1 and "--env PORT is set by the launcher for each node; use --port" in reserved.stderr


def test_nodes_do_not_outlive_a_killed_supervisor(state_dir):
    where = ["--dir", str(state_dir)]
    _ok(talentnest("up", "--detach", "--nodes", "2", *where, *LAYOUT))
    info = _control.request(state_dir, "info")
    os.kill(info["supervisor_pid"], signal.SIGKILL)
    for node in info["nodes"]:
        wait_until(lambda pid=node["pid"]: not is_alive(pid), timeout=30, what=f"{node['name']} to exit with its supervisor")
    # The stale control socket does not block the next `up`.
    _ok(talentnest("up", "--detach", "--nodes", "2", *where, *LAYOUT))


def test_a_taken_port_is_named_with_the_way_out(state_dir):
    needs_published_ports()
    with holding("127.0.0.1", TEST_PUBLISH_BASE + 1):
        result = talentnest("up", "--detach", "--dir", str(state_dir), *LAYOUT)
    assert result.returncode == 1
    assert f"port {TEST_PUBLISH_BASE + 1} on 127.0.0.1 is in use (publishing backend-1)" in result.stderr
    assert "--publish-base" in result.stderr
    assert not (state_dir / "jwt_secret").exists(), "nothing is started when a port is taken"


def test_foreground_up_streams_changes_and_stops_cleanly_on_ctrl_c(state_dir):
    where = ["--dir", str(state_dir)]
    up = subprocess.Popen(
        [sys.executable, "-m", "talentnest", "cluster", "up", "--nodes", "3", *where, *LAYOUT],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        for line in up.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        assert any("leader: backend-3" in line for line in lines), "".join(lines)
        pids = [node["pid"] for node in _control.request(state_dir, "info")["nodes"]]
        _ok(talentnest("kill", "backend-3", *where))
        for line in up.stdout:
            lines.append(line)
            if "backend-2" in line and "is leader" in line:
                break
        up.send_signal(signal.SIGINT)
        rest = up.communicate(timeout=30)[0]
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, "".join(lines) + rest
    assert "backend-3 killed" in "".join(lines)
    assert "cluster stopped" in rest
    assert not any(is_alive(pid) for pid in pids)


def test_purge_refuses_a_directory_that_is_not_a_cluster(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = talentnest("down", "--purge", "--dir", str(tmp_path))
    assert result.returncode == 1 and "does not look like a cluster's state directory" in result.stderr
    assert (tmp_path / "precious.txt").exists()


def test_secret_survives_down_and_up_and_purge_removes_everything(state_dir):
    where = ["--dir", str(state_dir)]
    _ok(talentnest("up", "--detach", "--nodes", "1", *where, *LAYOUT))
    secret = (state_dir / "jwt_secret").read_text()
    _ok(talentnest("down", *where))
    _ok(talentnest("up", "--detach", "--nodes", "1", *where, *LAYOUT))
    assert (state_dir / "jwt_secret").read_text() == secret
    _ok(talentnest("down", "--purge", *where))
    assert not state_dir.exists()


def test_up_with_data_from_gives_every_node_a_copy_and_refuses_nodes_that_have_data(state_dir, tmp_path):
    source = tmp_path / "network"
    generated = subprocess.run(
        [sys.executable, "-m", "talentnest", "generate", str(source), "--members", "50"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stderr
    assert "wrote 50 members" in generated.stdout and f"cluster up --data-from {source}" in generated.stdout
    where = ["--dir", str(state_dir)]

    _ok(talentnest("up", "--detach", "--nodes", "2", "--data-from", str(source), *where, *LAYOUT))

    original = hashlib.sha256((source / "talentnest.db").read_bytes()).hexdigest()
    for name in ("backend-1", "backend-2"):
        assert hashlib.sha256((state_dir / name / "data" / "talentnest.db").read_bytes()).hexdigest() == original
    _ok(talentnest("down", *where))
    again = talentnest("up", "--detach", "--nodes", "2", "--data-from", str(source), *where, *LAYOUT)
    assert again.returncode == 1 and "already has a database" in again.stderr and "--purge" in again.stderr
    missing = talentnest("up", "--detach", "--data-from", str(tmp_path / "nothing"), "--dir", str(tmp_path / "other"), *LAYOUT)
    assert missing.returncode == 1 and "no talentnest.db there" in missing.stderr and "talentnest generate" in missing.stderr
