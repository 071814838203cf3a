"""The seed's Docker commands, pasted verbatim, against a real engine (seed sections 1-9, scenarios 2 and 3).

The tests run in the order of the seed and share one cluster (the module's fixture removes any
leftover of an earlier run first, and everything it made at the end). Where the seed waits with
`sleep`, these tests poll for the promised state with a deadline instead.
"""

from __future__ import annotations

import json
import subprocess
import sys

import _engine
import pytest
from _engine import REPO, cluster_status, container_ip, dump_logs, get_ok, logs, node_id, poll, sh

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NODES = ("backend-1", "backend-2", "backend-3")
ALL_NODES = (*NODES, "backend-4")
PORTS = {"backend-1": 3001, "backend-2": 3002, "backend-3": 3003, "backend-4": 3004}

# Seed, "Comandos Docker", sections 1-3 and 9, and "Escenario 3", character for character.
SECTION_1 = "docker network create --driver bridge talentnet"
SECTION_2 = "docker build -t backend-tn:latest ."
SECTION_3 = {
    name: f"""docker run -d \\
  --name {name} \\
  --network talentnet \\
  --network-alias backend-service \\
  -p 300{name[-1]}:3000 \\
  --env SERVICE_NAME=backend-service \\
  --env JWT_SECRET=secret_key \\
  --env PORT=3000 \\
  backend-tn:latest"""
    for name in NODES
}
SECTION_8_SIGNUP = """curl -X POST http://localhost:3002/api/auth/signup \\
  -H "Content-Type: application/json" \\
  -d '{
    "name": "Test User",
    "username": "testuser",
    "email": "test@example.com",
    "password": "password123"
  }'"""
SECTION_8_POST = """curl -X POST http://localhost:3001/api/posts \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer <token>" \\
  -d '{
    "content": "This should be redirected to the leader"
  }'"""
SCENARIO_2_SIGNUP = """curl -X POST http://localhost:3001/api/auth/signup \\
  -H "Content-Type: application/json" \\
  -d '{"name": "Test", "username": "test1", "email": "test1@test.com", "password": "pass123"}'"""
SCENARIO_3_RUN = (
    "docker run -d --name backend-4 --network talentnet --network-alias backend-service -p 3004:3000 "
    "--env SERVICE_NAME=backend-service --env JWT_SECRET=secret_key --env PORT=3000 backend-tn:latest"
)
SECTION_9 = [
    "docker stop backend-1 backend-2 backend-3",
    "docker rm backend-1 backend-2 backend-3",
    "docker network rm talentnet",
]

# Generous: the machine is small and shared; the seed itself allows 10 s per election.
STARTUP, ELECTION, SYNC = 60, 90, 120


def _clean() -> None:
    _engine.sh(f"docker compose -p {_engine.COMPOSE_PROJECT} down -v", check=False, env={"JWT_SECRET": "cleanup"})
    _engine.remove_containers(ALL_NODES)
    _engine.remove_network()


@pytest.fixture(scope="module")
def seed() -> dict:
    """Shared state of the scenario; leftovers of an earlier, failed run are removed before and after."""
    _clean()
    state: dict = {"volumes": []}
    yield state
    volumes = state["volumes"] + _engine.volumes_of(ALL_NODES)
    _clean()
    _engine.remove_volumes(volumes)


def _diagnostics(names=ALL_NODES) -> str:
    present = _engine.existing_containers(names)
    statuses = []
    for name in present:
        try:
            statuses.append(
                f"{name}: {json.dumps(_engine.http('GET', f'http://localhost:{PORTS[name]}/cluster/status', timeout=3))}"
            )
        except OSError as exc:
            statuses.append(f"{name}: {exc!r}")
    return "\n".join(statuses) + "\n" + dump_logs(present)


def _ids(names) -> dict[str, int]:
    return {name: node_id(container_ip(name)) for name in names}


def _agreed_leader(names, expected_total: int | None = None) -> int | None:
    """The leader ID every named node reports, when they all report the highest ID among them as leader."""
    ids = _ids(names)
    highest = max(ids.values())
    for name in names:
        status = cluster_status(PORTS[name])
        if status["current_node_id"] != ids[name] or status["leader_id"] != highest:
            return None
        if expected_total is not None and status["total_nodes"] != expected_total:
            return None
    return highest


def _search(port: int, username: str) -> list[str]:
    body = get_ok(f"http://localhost:{port}/api/users/search?query={username}")
    return [user["username"] for user in body["items"]]


def _curl_json(command: str) -> dict:
    result = sh(command)
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise AssertionError(f"not JSON:\n{result.describe()}") from None


def test_section_1_create_the_network(seed):
    result = sh(SECTION_1)
    assert len(result.stdout.strip()) == 64, result.describe()  # prints the new network's ID
    assert sh("docker network inspect -f '{{.Driver}}' talentnet").stdout.strip() == "bridge"


def test_section_2_build_the_image(seed):
    sh(SECTION_2, timeout=900)
    config = _engine.inspect("backend-tn:latest")["Config"]
    assert config["Cmd"] == ["talentnest", "node"]


def test_section_3_run_three_nodes_that_find_each_other(seed):
    for name in NODES:
        result = sh(SECTION_3[name])
        assert len(result.stdout.strip()) == 64, result.describe()  # prints the container's ID
    for name in NODES:
        poll(
            lambda name=name: get_ok(f"http://localhost:{PORTS[name]}/healthz"),
            timeout=STARTUP,
            what=f"{name} to answer /healthz",
            diagnostics=_diagnostics,
        )
    addresses = sorted(container_ip(name) for name in NODES)

    # Docker's embedded DNS answers the alias with every running node: the cluster's discovery.
    assert poll(
        lambda: _engine.resolve_from("backend-1") == addresses,
        timeout=STARTUP,
        what="backend-service to resolve to the three nodes",
    )


def test_section_4_highest_id_leads_on_every_node(seed):
    ids = _ids(NODES)
    leader = poll(
        lambda: _agreed_leader(NODES, expected_total=3),
        timeout=ELECTION,
        what="all three nodes to agree on the leader",
        diagnostics=_diagnostics,
    )
    assert leader == max(ids.values()) == ids["backend-3"], f"the seed promises backend-3 leads; IDs {ids}"
    for name in NODES:
        status = _curl_json(f"curl http://localhost:{PORTS[name]}/cluster/status")
        assert status["current_role"] == ("leader" if name == "backend-3" else "follower")
        assert status["leader_address"] == f"http://{container_ip('backend-3')}:3000"
        assert sorted(n["id"] for n in status["nodes"]) == sorted(ids.values())
        assert [n["id"] for n in status["nodes"] if n["is_leader"]] == [leader]
    assert "election" in logs("backend-1")


def talentnest_status(*ports: int) -> subprocess.CompletedProcess:
    """The operator's `talentnest cluster status --url` from the host, as the README shows it."""
    urls = [part for port in ports for part in ("--url", f"http://localhost:{port}")]
    return subprocess.run(
        [sys.executable, "-m", "talentnest", "cluster", "status", *urls],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")},
    )


def _status_exits(code: int, *ports: int, says: str = "") -> str:
    def reached():
        result = talentnest_status(*ports)
        assert result.returncode == code and says in result.stdout, f"exit {result.returncode}: {result.stdout}"
        return result.stdout

    return poll(reached, timeout=ELECTION, what=f"cluster status --url to exit {code} {says!r}", diagnostics=_diagnostics)


def test_operator_status_of_the_seed_cluster_is_healthy(seed):
    # One published port is enough: the nodes' internal addresses answer from the host.
    out = _status_exits(0, 3001, says="healthy")
    ids = _ids(NODES)
    for name in NODES:
        assert f"node-{ids[name]}" in out
    assert f"leader node-{ids['backend-3']}" in out


def test_section_5_logs_show_the_node(seed):
    result = sh("docker logs --tail 50 backend-1")
    # The node logs to stdout, so the seed's `docker logs ... | grep` pipelines filter its lines.
    assert "store: opened /data/talentnest.db" in result.stdout, result.describe()


def test_section_8_signup_through_a_follower_is_visible_on_all_three(seed):
    poll(lambda: _agreed_leader(NODES), timeout=ELECTION, what="a leader", diagnostics=_diagnostics)
    body = _curl_json(SECTION_8_SIGNUP)
    assert body.get("user", {}).get("username") == "testuser", body
    seed["token"] = body["token"]
    for name in NODES:
        poll(
            lambda name=name: _search(PORTS[name], "testuser") == ["testuser"],
            timeout=SYNC,
            what=f"testuser on {name}",
            diagnostics=_diagnostics,
        )
    for name in NODES:  # and the seed's own commands show it
        assert "testuser" in sh(f"curl http://localhost:{PORTS[name]}/api/users/search?query=testuser").stdout


def test_section_8_post_with_a_token_through_a_follower(seed):
    token = seed.get("token")
    assert token, "needs the signup of the previous test"
    post = _curl_json(SECTION_8_POST.replace("<token>", token))
    assert post.get("content") == "This should be redirected to the leader", post
    assert post["author"]["username"] == "testuser"
    for name in NODES:
        poll(
            lambda name=name: (
                [p["id"] for p in get_ok(f"http://localhost:{PORTS[name]}/api/posts?author=testuser")["items"]] == [post["id"]]
            ),
            timeout=SYNC,
            what=f"the post on {name}",
            diagnostics=_diagnostics,
        )


def test_scenario_2_leader_failover_and_rejoin_with_sync(seed):
    # 1. Identify the leader (seed: the highest ID, backend-3).
    old_leader = poll(lambda: _agreed_leader(NODES), timeout=ELECTION, what="a leader", diagnostics=_diagnostics)
    assert old_leader == _ids(["backend-3"])["backend-3"]
    assert cluster_status(3001)["leader_id"] == old_leader
    # 2. Stop it: a graceful stop, well within docker's 10 s before SIGKILL.
    sh("docker stop backend-3")
    assert _engine.inspect("backend-3")["State"]["ExitCode"] == 0, "docker stop had to kill backend-3"
    # 3. A new leader, the highest ID left, on both survivors (instead of the seed's sleep 10).
    survivors = ("backend-1", "backend-2")
    new_leader = poll(
        lambda: _agreed_leader(survivors),
        timeout=ELECTION,
        what="a new leader among backend-1 and backend-2",
        diagnostics=_diagnostics,
    )
    assert new_leader == max(_ids(survivors).values()) != old_leader
    # 4. A signup, which reaches the new leader.
    body = _curl_json(SCENARIO_2_SIGNUP)
    assert body.get("user", {}).get("username") == "test1", body
    sync_lines_before = sh('docker logs backend-3 | grep "sync"', check=False).stdout.count("\n")
    # 5. Restart the old leader.
    sh("docker start backend-3")
    # 6. Its logs show the sync (instead of sleep 5), and it holds the user created while it was down.
    poll(
        lambda: sh('docker logs backend-3 | grep "sync"', check=False).stdout.count("\n") > sync_lines_before,
        timeout=SYNC,
        what="a new `sync` line in backend-3's logs",
        diagnostics=_diagnostics,
    )
    poll(lambda: _search(3003, "test1") == ["test1"], timeout=SYNC, what="test1 on backend-3", diagnostics=_diagnostics)
    # The highest ID leads again once it has caught up (planned handover).
    poll(
        lambda: _agreed_leader(NODES, expected_total=3),
        timeout=ELECTION,
        what="backend-3 leading again",
        diagnostics=_diagnostics,
    )


def test_operator_status_exit_codes_for_a_hung_a_stopped_and_a_leaderless_cluster(seed):
    poll(lambda: _agreed_leader(NODES, expected_total=3), timeout=ELECTION, what="three nodes", diagnostics=_diagnostics)
    ids = _ids(NODES)
    # docker pause: the node hangs, stays in Docker's DNS, its peers stop hearing from it.
    sh("docker pause backend-1")
    try:
        _status_exits(1, 3002, says=f"node-{ids['backend-1']} does not answer")
    finally:
        sh("docker unpause backend-1")
    _status_exits(0, 3002)
    # docker stop: it leaves Docker's DNS at once; the others remember it until FAILURE_TIMEOUT.
    sh("docker stop backend-1")
    try:
        _status_exits(1, 3002, says=f"node-{ids['backend-1']} left")
    finally:
        sh("docker start backend-1")
    _status_exits(0, 3001, 3002, 3003)
    # Two paused: the survivor still has them in DNS, reaches one of three, and cannot lead.
    sh("docker pause backend-2 backend-3")
    try:
        _status_exits(2, 3001, says="no leader")
    finally:
        sh("docker unpause backend-2 backend-3")
    _status_exits(0, 3001, 3002, 3003)


def test_scenario_3_a_fourth_node_joins_and_syncs(seed):
    result = sh(SCENARIO_3_RUN)
    assert len(result.stdout.strip()) == 64, result.describe()
    seed["volumes"] += _engine.volumes_of(["backend-4"])
    poll(lambda: cluster_status(3004), timeout=STARTUP, what="backend-4 to answer /cluster/status", diagnostics=_diagnostics)
    poll(
        lambda: "sync" in sh("docker logs backend-4").stdout,
        timeout=SYNC,
        what="backend-4 to log its sync",
        diagnostics=_diagnostics,
    )
    expected = [name for name in ("testuser", "test1") if _search(3003, name)]
    assert expected, "no user to look for: the earlier signups did not happen"
    for username in expected:
        poll(
            lambda username=username: _search(3004, username) == [username],
            timeout=SYNC,
            what=f"{username} on backend-4",
            diagnostics=_diagnostics,
        )
    leader = poll(
        lambda: _agreed_leader(ALL_NODES, expected_total=4),
        timeout=ELECTION,
        what="four nodes agreeing on the leader",
        diagnostics=_diagnostics,
    )
    assert leader == max(_ids(ALL_NODES).values())


def test_section_9_cleanup_removes_everything(seed):
    seed["volumes"] += _engine.volumes_of(ALL_NODES)
    # backend-4 comes from scenario 3, which section 9 predates: remove it the same way first,
    # or the network could not be removed.
    if _engine.existing_containers(["backend-4"]):
        sh("docker stop backend-4")
        sh("docker rm backend-4")
    for command in SECTION_9:
        sh(command)
    assert _engine.existing_containers(ALL_NODES) == []
    assert sh("docker network inspect talentnet", check=False).returncode != 0
