"""The operator CLI's verdict on what the nodes said (launcher/remote.py), without sockets: each rule and its exit code."""

from __future__ import annotations

import pytest

from talentnest.launcher import remote
from talentnest.launcher.remote import EXIT_DEGRADED, EXIT_HEALTHY, EXIT_NO_LEADER, Member, RemoteError, Survey


def node_status(node_id: int, *, leader: int | None, ids=(1, 2, 3), healthy=(), ready=True, lag_seconds=None) -> dict:
    """A /cluster/status as node ``node_id`` would answer it; ``healthy`` lists the peers it hears from (default all)."""
    hears = set(healthy or ids)
    nodes = [
        {"id": i, "address": f"http://10.0.0.{i}:3000", "healthy": i == node_id or i in hears, "self": i == node_id} for i in ids
    ]
    status = {
        "current_node_id": node_id,
        "current_role": "leader" if leader == node_id else "follower",
        "leader_id": leader,
        "nodes": nodes,
        "ready": ready,
        "ready_reason": "leader" if ready else "not in sync",
    }
    if leader == node_id:
        status["replication"] = {"followers": {f"10.0.0.{i}": {"lag_seconds": lag_seconds or 0.0} for i in ids if i != node_id}}
    return status


def survey_of(*statuses: dict, silent=(), departed: dict[int, float] | None = None) -> Survey:
    members: dict[int, Member] = {}
    for status in statuses:
        remote._absorb(members, status, f"http://10.0.0.{status['current_node_id']}:3000")
    for node_id, seconds in (departed or {}).items():
        members.setdefault(node_id, Member(node_id)).departed_seconds = seconds
    return Survey(members=members, silent=list(silent), urls=["http://localhost:3001"])


def healthy_cluster(**leader_options) -> list[dict]:
    return [node_status(1, leader=3), node_status(2, leader=3), node_status(3, leader=3, **leader_options)]


def test_three_nodes_that_agree_are_healthy():
    result = remote.verdict(survey_of(*healthy_cluster()))
    assert result.code == EXIT_HEALTHY and result.leader_id == 3 and not result.problems


def test_nothing_answering_and_no_leader_are_exit_2():
    assert remote.verdict(survey_of(silent=["http://localhost:3001"])).code == EXIT_NO_LEADER
    lonely = remote.verdict(survey_of(node_status(1, leader=None, healthy=[1])))
    assert lonely.code == EXIT_NO_LEADER and "no leader" in lonely.summary


@pytest.mark.parametrize(
    ("statuses", "departed", "says"),
    [
        ([node_status(1, leader=3, healthy=[3]), node_status(3, leader=3, healthy=[1])], None, "node-2 does not answer"),
        (
            [node_status(1, leader=3), node_status(2, leader=3, ready=False), node_status(3, leader=3)],
            None,
            "node-2 is not ready",
        ),
        (healthy_cluster(lag_seconds=12.5), None, "lags 12.5 s behind"),
        ([node_status(1, leader=None), node_status(2, leader=3), node_status(3, leader=3)], None, "node-1 sees no leader"),
        ([node_status(1, leader=1), node_status(3, leader=3)], None, "more than one node says it leads"),
        ([node_status(1, leader=3, ids=(1, 3)), node_status(3, leader=3, ids=(1, 3))], {2: 4.0}, "node-2 left 4 s ago"),
    ],
    ids=["hung", "not ready", "lagging", "cut off", "two leaders", "just left"],
)
def test_each_kind_of_trouble_is_degraded_and_named(statuses, departed, says):
    result = remote.verdict(survey_of(*statuses, departed=departed))
    assert result.code == EXIT_DEGRADED
    assert any(says in problem for problem in result.problems), result.problems


def test_a_member_unreachable_from_here_but_heard_by_its_peers_is_only_a_note():
    result = remote.verdict(survey_of(node_status(1, leader=3), node_status(3, leader=3)))
    assert result.code == EXIT_HEALTHY
    assert any("node-2 is not reachable from here" in note for note in result.notes)


def test_a_silent_given_url_is_degraded():
    result = remote.verdict(survey_of(*healthy_cluster(), silent=["http://localhost:3004"]))
    assert result.code == EXIT_DEGRADED and "http://localhost:3004 does not answer" in result.problems


@pytest.mark.parametrize("text", ["ftp://host:1", "http://", "localhost:99999", "http://host:3000/path?x=1"])
def test_a_bad_url_is_refused_with_its_value(text):
    with pytest.raises(RemoteError, match="--url"):
        remote.normalise_url(text)


def test_a_bare_host_and_port_is_an_http_url():
    assert remote.normalise_url("localhost:3001/") == "http://localhost:3001"
