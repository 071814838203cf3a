"""One notion of eligible to lead: a node that cannot commit, cannot apply, has damaged data or shares
its ID does not lead (and says why); it comes back by itself when the cause is gone."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.cluster.fakes import info, make_rig, reply, started
from tests.unit.cluster.test_election import make_view, peer

from talentnest.cluster import votes
from talentnest.cluster.election import Refusal, elect, grant_vote
from talentnest.cluster.health import Problem
from talentnest.cluster.types import Action, Role
from talentnest.cluster.wire import NodeInfo
from talentnest.errors import StorageFailure

A, B, C = "10.0.2.1", "10.0.2.2", "10.0.2.3"


def test_an_ineligible_leader_hands_over_to_a_caught_up_peer_or_steps_down():
    base = dict(role=Role.LEADER, leader_id=515, lease_valid=True, eligible=False, not_eligible_because="cannot commit")
    handover = elect(make_view(515, peers=[peer(513), peer(514)], **base))
    assert handover.action == Action.HANDOVER and handover.target == 514, "any caught-up eligible peer, not only higher IDs"
    alone = elect(make_view(515, term=2, peers=[peer(513, term=1), peer(514, ready=False)], **base))
    assert alone.action == Action.STEP_DOWN and "cannot commit" in alone.reason


def test_an_ineligible_node_never_stands_and_an_ineligible_peer_does_not_hold_the_others_back():
    assert elect(make_view(515, peers=[peer(513)], eligible=False, not_eligible_because="damaged")).action == Action.NONE
    from dataclasses import replace

    view = make_view(514, peers=[peer(513), replace(peer(515), eligible=False)])
    assert elect(view).action == Action.CAMPAIGN, "the highest eligible ID stands"


async def leader(tmp_path):
    rig = await started(make_rig(tmp_path, address=C, peers=[A, B]))

    def answer(call):  # followers not ready yet: nobody to hand over to
        address = call.url[7:].split(":")[0]
        if call.target == "/cluster/vote":
            return reply({"term": rig.node.term, "granted": True, "reason": "granted"})
        return reply(info(512 + int(address.split(".")[-1]), address, term=rig.node.term, ready=False))

    rig.transport.handler = answer
    await rig.node.membership.probe_all()
    assert await votes.campaign(rig.node, handover_from=None)
    return rig


async def test_a_leader_that_cannot_commit_steps_down_and_leads_again_only_once_it_can(tmp_path):
    rig = await leader(tmp_path)
    rig.node.care.failed(StorageFailure("the disk is full (database or disk is full)"))
    assert not rig.node.health.eligible and rig.node.health.has(Problem.COMMIT)
    cycle = await rig.node.run_cycle()
    assert cycle.action == Action.STEP_DOWN, cycle.text
    assert rig.node.role == Role.FOLLOWER
    assert rig.node.self_info().eligible is False, "peers are told"
    cycle = await rig.node.run_cycle()
    assert rig.node.health.eligible, "a test write committed, so the problem is gone"


async def test_a_follower_that_cannot_apply_is_not_ready_until_it_applies_again(tmp_path):
    rig = await started(make_rig(tmp_path, address=A, peers=[B, C]))
    rig.node.heard_from_leader(515, f"http://{C}:3000")
    rig.replication.follower.in_sync = True
    assert rig.node.readiness()[0]
    rig.node.care.failed(StorageFailure("the disk is full (database or disk is full)"))
    ready, reason = rig.node.readiness()
    assert not ready and reason.startswith("cannot apply: the disk is full")
    assert rig.node.gate.unhealthy(), "writes sent through it are refused"
    rig.node.health.committed(7)
    assert rig.node.readiness()[0]


async def test_a_damaged_database_met_at_run_time_is_set_aside_and_the_node_waits_for_a_snapshot(tmp_path):
    rig = await started(make_rig(tmp_path, address=A, peers=[B, C]))
    rig.node.care.failed(StorageFailure("the database file is damaged (malformed)", damaged=True))
    for _ in range(3):
        await asyncio.sleep(0)
    assert list((tmp_path / "damaged").glob("*"))
    assert (tmp_path / "needs-sync").exists()
    assert not rig.node.health.eligible and "waits for a peer's snapshot" in rig.node.readiness()[1]
    rig.node.snapshot_installed()
    assert rig.node.health.eligible and not (tmp_path / "needs-sync").exists()


async def test_of_two_processes_with_one_id_the_later_refuses_to_serve(tmp_path):
    rig = await started(make_rig(tmp_path, address=A, peers=[B, C], node_id=600))
    twin = NodeInfo(600, f"http://{B}:3000", 0, "follower", None, 0, 0, True, False, True, "0" * 16, 1, 0)
    rig.node.membership.heard(None, twin)
    assert rig.node.health.refusal() and f"http://{B}:3000" in rig.node.health.refusal()
    assert (await rig.node.run_cycle()).text.startswith("refusing to serve")
    assert rig.node.readiness()[0] is False


async def test_of_two_processes_with_one_id_the_earlier_goes_on(tmp_path, caplog):
    rig = await started(make_rig(tmp_path, address=A, peers=[B, C], node_id=600))
    later = NodeInfo(600, f"http://{B}:3000", 0, "follower", None, 0, 0, True, False, True, "f" * 16, 2**62, 0)
    rig.node.membership.heard(None, later)
    assert rig.node.health.refusal() is None
    assert "must refuse to serve" in caplog.text


@pytest.mark.parametrize(("their_time_offset", "why"), [(45, "clocks differ"), (2, "cluster key differs")])
async def test_a_peer_refusing_our_signature_says_whether_our_clock_or_our_key_is_wrong(tmp_path, their_time_offset, why):
    rig = await started(make_rig(tmp_path, address=A, peers=[B]))
    from talentnest.cluster.transport import Reply

    def refuse(call):
        return Reply(401, {"X-Node-Time": str(int(rig.clock.wall() + their_time_offset))}, b'{"error":{}}')

    rig.transport.handler = refuse
    await rig.node.membership.probe_all()
    refuses = rig.node.membership.peers[B].refuses
    assert refuses and (("differ by 45 s" in refuses) if why == "clocks differ" else ("key differs" in refuses))
    assert rig.node.status()["nodes"][1]["refuses_us"] == refuses
    assert "refuses its signature" in rig.node.gate.no_leader_error().message


async def test_a_drained_leader_hands_over_only_to_a_caught_up_peer_and_never_just_steps_down(tmp_path):
    rig = await leader(tmp_path)  # its followers are not ready: nobody to hand over to
    assert rig.node.care.drain(True)
    assert (tmp_path / "drained").exists(), "kept across a restart"
    cycle = await rig.node.run_cycle()
    assert cycle.action == Action.NONE and "drained" in cycle.text and rig.node.role == Role.LEADER
    assert rig.node.readiness()[0], "a drained node still serves"
    view = elect(
        make_view(515, role=Role.LEADER, leader_id=515, lease_valid=True, eligible=False, drained=True, peers=[peer(514)])
    )
    assert view.action == Action.HANDOVER and view.target == 514
    assert rig.node.care.drain(False) and not (tmp_path / "drained").exists()
    assert rig.node.health.eligible


def test_a_node_without_state_votes_only_where_no_data_exists_yet():
    from tests.unit.cluster.test_votes import ask, voter

    new = voter(may_vote=False, last_lsn=0, last_term=0, term=0)
    assert grant_vote(ask(term=1, lsn=0, last_term=0), new).granted, "a cluster being created elects"
    refused = grant_vote(ask(term=5, lsn=18, last_term=2), voter(may_vote=False, last_lsn=18, last_term=2, term=2))
    assert not refused.granted and refused.refusal == Refusal.NOT_A_VOTER, "a wiped node that caught up from a peer"
    # Wiped, it heard of term 3 from its peers: it may have voted in term 3, or led it (seed 11153).
    heard = voter(may_vote=False, last_lsn=0, last_term=0, term=3)
    refused = grant_vote(ask(term=3, lsn=0, last_term=0), heard)
    assert not refused.granted and refused.refusal == Refusal.NOT_A_VOTER, "a term it may have voted in before"
    assert grant_vote(ask(term=4, lsn=0, last_term=0), heard).granted, "a term nobody had reached: a cluster being created"


async def test_a_node_that_lost_its_disk_neither_stands_nor_votes_until_a_leader_reaches_it(tmp_path):
    rig = await started(make_rig(tmp_path, address=C, peers=[A, B]))
    assert rig.node.health.has(Problem.NEW) and not rig.node.health.may_vote
    rig.db.apply([_entry(1)])  # it caught up from some peer: it has data now
    view = rig.node.view()
    assert not view.eligible, "new, and data exists: it may not lead"
    rig.node.reached_by_leader()
    assert rig.node.health.may_vote and rig.node.health.eligible


async def test_a_restarted_node_counts_the_members_it_knew_whatever_dns_says_first(tmp_path):
    first = await started(make_rig(tmp_path, address=C, peers=[A, B]))
    assert sorted(first.node.state.current.members) == [A, B]
    first.db.close()
    again = make_rig(tmp_path, address=C, peers=[])  # DNS lists only itself after the restart
    again.resolver.answer = [C]
    await started(again)
    assert again.node.role != Role.LEADER, "it did not lead alone"
    assert again.node.voters() == 3 and sorted(again.node.membership.peers) == [A, B]


def _entry(lsn):
    import json

    from talentnest.store import LogEntry

    row = {"key": "k", "value": "v"}
    return LogEntry(lsn, 1, "t", 1, json.dumps([{"operation": "INSERT", "table": "_tn_meta_shadow", "data": row}][:0]))
