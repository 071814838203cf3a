"""Self-tests of the cluster harness with fake nodes: signals, DNS, partitions, waits and their failures."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.cluster.harness import FAKE_NODE_COMMAND, ROOT, TEST_PUBLISH_BASE, TEST_SUBNET, Firewall
from tests.launcher.conftest import resolve

pytestmark = pytest.mark.cluster

needs_firewall = pytest.mark.usefixtures("firewall_available")


@pytest.fixture
def fake_cluster(make_cluster):
    return make_cluster(3, node_command=FAKE_NODE_COMMAND, stop_timeout=5.0)


def service_addresses(cluster) -> list[str]:
    return resolve(cluster.dns_address, "backend-service")


def connects(source: str, destination: str, port: int = 3000, timeout: float = 1.0) -> bool:
    """A real TCP connect from a socket bound to ``source``; False when it is refused or times out."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        try:
            sock.connect((destination, port))
        except (TimeoutError, ConnectionRefusedError):
            return False
        except OSError as exc:
            if exc.errno in (errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ECONNREFUSED):
                return False
            raise
        return True


def test_leader_is_the_highest_id_and_failover_follows_dns(fake_cluster):
    one, two, three = fake_cluster.nodes
    assert fake_cluster.wait_for_leader() is three
    assert three.status()["current_role"] == "leader"
    assert three.stop(graceful=False) == -9
    assert service_addresses(fake_cluster) == [one.address, two.address]
    assert fake_cluster.wait_for_leader(exclude=[three]) is two
    three.start()
    assert fake_cluster.wait_for_leader() is three
    assert three.pid is not None and "listening" in three.logs()


def test_graceful_stop_exits_cleanly_and_leaves_dns(fake_cluster):
    three = fake_cluster.node("backend-3")
    assert three.stop() == 0
    assert three.state == "stopped" and not three.is_running
    assert fake_cluster.node(three.node_id) is three
    assert three.address not in service_addresses(fake_cluster)
    assert "shutting down" in three.logs(tail=1)


def test_paused_node_stays_in_dns_and_a_failed_wait_reports_every_log(fake_cluster):
    three = fake_cluster.node("backend-3")
    three.pause()
    assert three.is_paused and three.address in service_addresses(fake_cluster)
    assert three.try_status(timeout=0.5) is None
    # The fakes still follow DNS, which lists the paused node: no live node leads, so the wait fails.
    with pytest.raises(pytest.fail.Exception) as failure:
        fake_cluster.wait_for_leader(timeout=1.5)
    message = str(failure.value)
    assert "timed out after 1.5 s waiting for one leader agreed by backend-1, backend-2" in message
    assert f"backend-1: follower, leader {three.node_id}" in message
    for node in fake_cluster.nodes:
        assert f"fake node {node.node_id} listening on {node.address}:3000" in message
    assert "paused" in message
    three.resume()
    assert fake_cluster.wait_for_leader() is three


def test_signup_post_applied_and_checksums(fake_cluster):
    one, two, _ = fake_cluster.nodes
    signup = fake_cluster.signup(one, username="ada")
    assert signup.body["user"]["username"] == "ada" and signup.lsn == 1
    post = fake_cluster.post(signup.body["token"], "hello", node=one)
    assert post.body["content"] == "hello" and post.lsn == 2
    fake_cluster.wait_for_applied(2, nodes=[one])
    checksums = fake_cluster.checksums()
    assert checksums["backend-2"] == checksums["backend-3"] != checksums["backend-1"]
    # Fakes replicate nothing: waiting for LSN 2 everywhere must fail, naming who lags.
    with pytest.raises(pytest.fail.Exception, match=r"(?s)LSN 2 applied on backend-1, backend-2, backend-3.*backend-2: 0"):
        fake_cluster.wait_for_applied(2, timeout=1.0)
    unsigned = two.request("GET", "/cluster/checksum")
    assert unsigned.status == 401


def test_published_ports_and_add(fake_cluster):
    four = fake_cluster.add_node()
    assert (four.name, four.address) == ("backend-4", f"{TEST_SUBNET}.4")
    assert fake_cluster.wait_for_leader() is four
    if TEST_PUBLISH_BASE:
        assert four.published_url == f"http://localhost:{TEST_PUBLISH_BASE + 4}"
        assert fake_cluster.http.get(f"{four.published_url}/cluster/status").json()["current_node_id"] == four.node_id


@needs_firewall
def test_partition_drops_traffic_between_two_addresses_both_ways_until_healed(fake_cluster):
    one, two, three = fake_cluster.nodes
    assert connects(one.address, two.address)
    one.partition(two)
    assert not connects(one.address, two.address)
    assert not connects(two.address, one.address)
    assert connects(three.address, two.address) and connects(three.address, one.address)
    assert connects("127.0.0.1", two.address), "the test's own client (127.0.0.1) must not be cut off"
    one.heal()
    assert connects(one.address, two.address) and connects(two.address, one.address)


@needs_firewall
def test_partition_from_all_peers_and_close_removes_every_rule(fake_cluster):
    one, two, three = fake_cluster.nodes
    three.partition()
    assert not connects(three.address, one.address) and not connects(three.address, two.address)
    chain = fake_cluster.firewall.chain
    assert chain in subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    fake_cluster.close()
    rules = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    assert chain not in rules
    assert all(node.pid is None for node in fake_cluster.nodes)


@needs_firewall
def test_firewall_removes_chains_left_by_dead_test_processes():
    stale = Firewall()
    stale.chain = "TN-TEST-999999999"  # no such pid
    stale._iptables("-N", stale.chain)
    stale._iptables("-I", "INPUT", "1", "-j", stale.chain)
    firewall = Firewall()
    try:
        firewall.cut(f"{TEST_SUBNET}.1", f"{TEST_SUBNET}.2")
        assert stale.chain not in stale._iptables("-S").stdout
    finally:
        firewall.close()
        stale._remove_chain(stale.chain)


INNER_TEST = """
import json, os, subprocess
import pytest
from tests.cluster.conftest import make_cluster  # noqa: F401
from tests.cluster.harness import FAKE_NODE_COMMAND, firewall_unavailable

seen = {}

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

@pytest.fixture
def check_after_teardown():
    yield  # make_cluster, requested after this fixture, is torn down before this line runs
    rules = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout if seen["firewall"] else ""
    report = {"alive": [pid for pid in seen["pids"] if alive(pid)], "chain_left": seen["chain"] in rules, **seen}
    with open(os.environ["INNER_REPORT"], "w") as out:
        json.dump(report, out)

def test_fails(check_after_teardown, make_cluster):
    cluster = make_cluster(3, node_command=FAKE_NODE_COMMAND, stop_timeout=5.0)
    seen["firewall"] = firewall_unavailable() is None
    if seen["firewall"]:
        cluster.node("backend-1").partition()
    seen["chain"] = cluster.firewall.chain
    seen["pids"] = [node.pid for node in cluster.nodes]
    raise AssertionError("deliberate failure")
"""


def test_fixture_tears_everything_down_when_a_test_fails(tmp_path):
    """A failing test still leaves no node process and no iptables rule behind (checked before pytest exits)."""
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    report_path = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}", "INNER_REPORT": str(report_path)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "deliberate failure" in result.stdout, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert len(report["pids"]) == 3 and all(report["pids"])
    assert report["alive"] == []
    assert report["chain_left"] is False


def test_a_tmpfs_disk_fills_to_enospc_and_frees_and_is_unmounted(tmp_path):
    from tests.cluster.hazards import Tmpfs

    disk = Tmpfs(tmp_path / "disk", 4 << 20).mount()
    try:
        assert disk.fill() > 3 << 20
        with pytest.raises(OSError, match="No space left"):
            (disk.path / "one-more").write_bytes(b"x" * 65536)
        disk.free()
        (disk.path / "one-more").write_bytes(b"x" * 65536)
    finally:
        disk.unmount()
    assert not os.path.ismount(disk.path)


def test_libfaketime_moves_a_running_processs_wall_clock_and_leaves_its_monotonic_clock_alone(tmp_path):
    from tests.cluster.hazards import fake_clock_env, set_clock_offset

    rc = tmp_path / "faketime.rc"
    env = {**os.environ, **fake_clock_env(rc, 25)}
    script = (
        "import time, sys\n"
        "first = time.time() - float(sys.argv[1]); m = time.monotonic()\n"
        "print(round(first), flush=True); sys.stdin.readline()\n"  # the offset moves meanwhile
        "waited = time.monotonic()\n"
        "while time.monotonic() - waited < 2.0: pass\n"  # no time.sleep: see hazards.py; the file is read every second
        "print(round(time.time() - float(sys.argv[1])), round(time.monotonic() - m), flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, "0"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    started = time.time()
    assert abs(int(child.stdout.readline()) - started - 25) <= 2
    set_clock_offset(rc, -10)
    child.stdin.write("\n")
    child.stdin.flush()
    wall, monotonic = map(int, child.stdout.readline().split())
    child.wait(10)
    assert abs(wall - time.time() + 10) <= 2, "the new offset was not picked up"
    assert monotonic <= 5, "the monotonic clock jumped with the wall clock"
