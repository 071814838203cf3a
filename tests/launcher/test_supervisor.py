"""LocalCluster with fake nodes: Docker-like DNS membership, stop/kill/pause/start, add, errors."""

from __future__ import annotations

import asyncio
import os
import re
import stat

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest

from talentnest.launcher import probe
from talentnest.launcher.errors import AddressUnavailable, LaunchError, PortInUse, UnknownNode
from talentnest.launcher.supervisor import DnsFault, LocalCluster, check_bindable, load_secret, parse_subnet
from tests.cluster.harness import TEST_PUBLISH_BASE, TEST_SUBNET
from tests.launcher.conftest import eventually, holding, needs_published_ports, resolve

pytestmark = pytest.mark.cluster


def addresses(*indexes: int) -> list[str]:
    return [f"{TEST_SUBNET}.{index}" for index in indexes]


async def lookup(cluster: LocalCluster, name: str) -> list[str]:
    return await asyncio.to_thread(resolve, cluster.dns_address, name)


async def wait_leader(cluster: LocalCluster) -> int:
    urls = {node.name: f"http://{node.address}:{node.port}" for node in cluster.nodes if node.is_running and not node.is_paused}

    async def agreed():
        return probe.agreed_leader(await probe.fetch_all(urls))

    return await eventually(agreed, what=f"agreement among {sorted(urls)}")


@pytest.fixture
async def cluster(fake_config):
    events: list[str] = []
    local = LocalCluster(fake_config(), on_event=events.append)
    local.events = events
    local.preflight(3)
    await local.start(3)
    yield local
    await local.shutdown()


async def test_dns_lists_live_nodes_and_each_name(cluster):
    assert [node.name for node in cluster.nodes] == ["backend-1", "backend-2", "backend-3"]
    assert await lookup(cluster, "backend-service") == addresses(1, 2, 3)
    assert await lookup(cluster, "backend-2") == addresses(2)
    assert await wait_leader(cluster) == cluster.node("backend-3").node_id


async def test_a_stopped_node_leaves_dns_at_once_and_comes_back_on_start(cluster):
    await wait_leader(cluster)  # every node up, so SIGTERM finds its handler installed
    node = await cluster.stop_node("backend-3")
    assert node.exit_code == 0 and node.state == "stopped"
    assert await lookup(cluster, "backend-service") == addresses(1, 2)
    with pytest.raises(dns.resolver.NXDOMAIN):
        await lookup(cluster, "backend-3")
    assert await wait_leader(cluster) == cluster.node("backend-2").node_id
    await cluster.start_node("backend-3")
    assert await lookup(cluster, "backend-service") == addresses(1, 2, 3)
    assert await wait_leader(cluster) == cluster.node("backend-3").node_id
    assert "backend-3 stopped (exit code 0)" in cluster.events


async def test_a_killed_node_leaves_dns_at_once(cluster):
    node = await cluster.kill_node("backend-2")
    assert node.exit_code == -9
    assert await lookup(cluster, "backend-service") == addresses(1, 3)
    assert "backend-2 killed (signal SIGKILL)" in cluster.events


async def test_a_paused_node_stays_in_dns_but_does_not_answer(cluster):
    await wait_leader(cluster)
    node = await cluster.pause_node("backend-3")
    assert node.state == "paused"
    assert await lookup(cluster, "backend-service") == addresses(1, 2, 3)
    status = await probe.fetch_all({"backend-3": f"http://{node.address}:3000"}, timeout=0.5)
    assert status == {"backend-3": None}
    await cluster.resume_node("backend-3")
    assert await wait_leader(cluster) == node.node_id


async def test_a_paused_node_can_be_stopped(cluster):
    await wait_leader(cluster)
    await cluster.pause_node("backend-1")
    node = await cluster.stop_node("backend-1", timeout=5)
    assert node.exit_code == 0


async def test_add_takes_the_next_address_and_publishes_it(cluster):
    node = await cluster.add_node()
    assert (node.name, node.address) == ("backend-4", f"{TEST_SUBNET}.4")
    assert node.publish_port == (TEST_PUBLISH_BASE + 4 if TEST_PUBLISH_BASE else None)
    assert await lookup(cluster, "backend-service") == addresses(1, 2, 3, 4)
    assert await wait_leader(cluster) == node.node_id
    named = await cluster.add_node("backend-7")
    assert named.address == f"{TEST_SUBNET}.7"
    with pytest.raises(LaunchError, match="already exists"):
        await cluster.add_node("backend-7")
    with pytest.raises(LaunchError, match="DNS label"):
        await cluster.add_node("Bad_Name")


async def test_published_port_reaches_the_node(cluster):
    needs_published_ports()
    await wait_leader(cluster)
    statuses = await probe.fetch_all({"published": f"http://127.0.0.1:{TEST_PUBLISH_BASE + 2}"})
    assert statuses["published"]["current_node_id"] == cluster.node("backend-2").node_id


async def test_control_requests_and_errors(cluster):
    reply = await cluster.handle({"op": "stop", "name": "backend-9"})
    assert reply == {"ok": False, "error": "no node named 'backend-9' in this cluster (nodes: backend-1, backend-2, backend-3)"}
    reply = await cluster.handle({"op": "kill", "name": "backend-1"})
    assert reply["ok"] and reply["node"]["state"] == "stopped" and reply["node"]["pid"] is None
    info = await cluster.handle({"op": "info"})
    assert [node["state"] for node in info["nodes"]] == ["stopped", "running", "running"]
    assert info["supervisor_pid"] == os.getpid()
    reply = await cluster.handle({"op": "pause", "name": "backend-1"})
    assert reply == {"ok": False, "error": "backend-1 is not running (start it with `talentnest cluster start backend-1`)"}


async def test_node_environment(cluster):
    node = cluster.node("backend-2")
    env = cluster.node_env(node)
    assert env["HOST"] == node.address and env["PORT"] == "3000" and env["SERVICE_NAME"] == "backend-service"
    assert env["DNS_SERVER"] == "{}:{}".format(*cluster.dns_address)
    assert env["DATA_DIR"] == str(node.data_dir) and env["JWT_SECRET"] == cluster.jwt_secret


async def test_supervisor_variables_do_not_leak_but_env_does(fake_config, monkeypatch):
    monkeypatch.setenv("NODE_ID", "7")
    monkeypatch.setenv("HARMLESS", "kept")
    local = LocalCluster(fake_config(env={"HEARTBEAT_INTERVAL": "0.5"}))
    await local.start(0)
    try:
        node = await local.add_node(start=False)
        env = local.node_env(node)
        assert "NODE_ID" not in env and env["HARMLESS"] == "kept" and env["HEARTBEAT_INTERVAL"] == "0.5"
    finally:
        await local.shutdown()


async def test_a_node_that_exits_on_its_own_is_reported_and_leaves_dns(fake_config):
    events: list[str] = []
    local = LocalCluster(fake_config(env={"FAKE_EXIT_CODE": "3"}), on_event=events.append)
    await local.start(1)
    try:
        node = local.node("backend-1")
        await asyncio.wait_for(node.watcher, 30)
        assert node.state == "exited" and node.exit_code == 3
        assert local.lookup("backend-service") == []
        assert any("backend-1 exited on its own (exit code 3)" in event for event in events)
        assert "told to fail at start" in node.log_path.read_text()
    finally:
        await local.shutdown()


async def test_secret_is_generated_once_owner_only_and_reused(tmp_path):
    first = load_secret(tmp_path)
    assert len(first) == 64 and stat.S_IMODE((tmp_path / "jwt_secret").stat().st_mode) == 0o600
    assert load_secret(tmp_path) == first


def test_unknown_node_names_the_known_ones(fake_config):
    with pytest.raises(UnknownNode, match=r"no node named 'x' in this cluster \(nodes: none\)"):
        LocalCluster(fake_config()).node("x")


def test_preflight_names_a_taken_published_port_and_the_option(fake_config):
    needs_published_ports()
    taken = rf"port {TEST_PUBLISH_BASE + 2} on 127.0.0.1 is in use .*--publish-base (\d+)"
    with holding("127.0.0.1", TEST_PUBLISH_BASE + 2), pytest.raises(PortInUse, match=taken) as refused:
        LocalCluster(fake_config()).preflight(3)
    suggested = int(re.search(taken, str(refused.value)).group(1))
    assert suggested != fake_config().publish_base, "the way out names other ports than the taken ones"


def test_preflight_names_a_taken_node_address_and_the_option(fake_config):
    taken = r"port 3000 .* is in use \(backend-1's address\).*--subnet \(e\.g\. ([\d.]+)\)"
    with holding(f"{TEST_SUBNET}.1", 3000), pytest.raises(PortInUse, match=taken) as refused:
        LocalCluster(fake_config()).preflight(3)
    assert re.search(taken, str(refused.value)).group(1) != TEST_SUBNET, "the way out names another subnet than the taken one"


def test_an_address_this_machine_does_not_have_is_explained():
    with pytest.raises(AddressUnavailable, match=r"192\.0\.2\.1 .*not available on this machine"):
        check_bindable("192.0.2.1", 3000, what="a test")


@pytest.mark.parametrize("subnet", ["10.0.2", "127.0", "127.0.300", "a.b.c"])
def test_bad_subnets_are_refused(subnet):
    with pytest.raises(LaunchError, match="--subnet"):
        parse_subnet(subnet)


async def test_a_dns_fault_misanswers_the_service_name_until_cleared_and_node_names_still_answer(cluster):
    host, port = cluster.dns_address
    service = cluster.config.service_name

    async def ask(name: str) -> dns.message.Message | None:
        query = dns.message.make_query(name, "A")
        try:
            return await asyncio.to_thread(dns.query.udp, query, host, port=port, timeout=0.5)
        except dns.exception.Timeout:
            return None

    cluster.dns_fault = DnsFault("nxdomain")
    assert (await ask(service)).rcode() == dns.rcode.NXDOMAIN
    cluster.dns_fault = DnsFault("empty")
    empty = await ask(service)
    assert empty.rcode() == dns.rcode.NOERROR and empty.answer == []
    cluster.dns_fault = DnsFault("servfail")
    assert (await ask(service)).rcode() == dns.rcode.SERVFAIL
    cluster.dns_fault = DnsFault("silent")
    assert await ask(service) is None
    cluster.dns_fault = DnsFault("only", ("127.0.9.200",))
    assert await lookup(cluster, service) == ["127.0.9.200"]
    assert await lookup(cluster, "backend-2") == addresses(2), "node names are not affected"
    cluster.dns_fault = None
    assert await lookup(cluster, service) == addresses(1, 2, 3)
    with pytest.raises(LaunchError, match="DNS fault must be one of"):
        DnsFault("garbage")
    with pytest.raises(LaunchError, match="takes no addresses"):
        DnsFault("empty", ("127.0.9.1",))
