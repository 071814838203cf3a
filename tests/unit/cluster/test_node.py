"""The node as the owner of role, term and leader: what each cycle does, the lease, stickiness, the write gate."""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.cluster.fakes import info, make_rig, reply, started

from talentnest.cluster import votes
from talentnest.cluster.types import Action, Role
from talentnest.cluster.wire import VoteRequest
from talentnest.cluster.work import Job
from talentnest.errors import NotLeader

A, B, C = "10.0.2.1", "10.0.2.2", "10.0.2.3"


def peers_answer(rig, *, grant: bool = True, term_of=lambda: 1):
    """Members A and B answer heartbeats (as followers) and grant or refuse votes."""

    def handler(call):
        address = call.url[7:].split(":")[0]
        node_id = 512 + int(address.split(".")[-1])
        if call.target == "/cluster/vote":
            return reply({"term": rig.node.term, "granted": grant, "reason": "granted" if grant else "no"})
        return reply(info(node_id, address, term=rig.node.term, leader_id=rig.node.leader_id))

    rig.transport.handler = handler


async def leader_rig(tmp_path):
    rig = await started(make_rig(tmp_path, address=C, peers=[A, B]))
    peers_answer(rig)
    await rig.node.membership.probe_all()
    assert await votes.campaign(rig.node, handover_from=None)
    return rig


async def test_a_node_alone_leads_from_its_start(tmp_path):
    rig = await started(make_rig(tmp_path, address=C))
    assert rig.node.role == Role.LEADER and rig.node.term == 1
    rig.node.gate.guard_write()


async def _settle(rig) -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.parametrize("then", ["DNS answers", "FAILURE_TIMEOUT passes"])
async def test_a_node_whose_dns_never_answered_does_not_lead_alone(tmp_path, then):
    """Swarm's DNS times out while its tasks start: three new nodes that each took the empty list for
    "alone" led term 1 together. A lookup that fails says nothing; an answer (here, this node alone) or
    FAILURE_TIMEOUT without one does."""
    rig = make_rig(tmp_path, address=C)
    rig.resolver.answer, rig.resolver._last = None, []  # every lookup fails
    await started(rig)
    assert rig.node.role == Role.FOLLOWER and rig.node.term == 0
    for _ in range(3):
        rig.clock.advance(rig.node.heartbeat)
        cycle = await rig.node.run_cycle()
        assert cycle.action == Action.NONE and "discovery has not answered" in cycle.text
    if then == "DNS answers":
        rig.resolver.answer = [C]
    else:
        rig.clock.advance(rig.node.settings.failure_timeout)
    assert (await rig.node.run_cycle()).action == Action.CAMPAIGN
    await _settle(rig)
    assert rig.node.role == Role.LEADER and rig.node.term == 1


async def test_a_peer_that_does_not_vote_yet_is_a_learner_a_lone_leader_keeps_leading_beside(tmp_path):
    rig = await started(make_rig(tmp_path, address=C))  # 515 leads alone (it holds state)
    rig.resolver.answer = [C, A]
    await rig.node.membership.refresh()
    rig.transport.handler = lambda call: reply(info(513, A, term=1, leader_id=515, votes=False))  # a joiner, new
    await rig.node.membership.probe_all()
    assert rig.node.voters() == 1, "a node that does not vote counts for no majority"
    rig.clock.advance(10)
    await rig.node.membership.probe_all()
    assert rig.node.lease_valid() and (await rig.node.run_cycle()).action == Action.NONE and rig.node.is_leader()
    # Reached and synced, it votes: from then on the lease needs it.
    rig.transport.handler = lambda call: reply(info(513, A, term=1, leader_id=515))
    await rig.node.membership.probe_all()
    assert rig.node.voters() == 2


async def test_the_highest_id_campaigns_and_the_cycle_says_so(tmp_path):
    rig = await started(make_rig(tmp_path, address=C, peers=[A, B]))
    peers_answer(rig)
    first = await rig.node.run_cycle()
    assert first.action == Action.NONE and "discovering" in first.text
    second = await rig.node.run_cycle()
    assert second.action == Action.CAMPAIGN
    for _ in range(20):
        await asyncio.sleep(0)
    assert rig.node.role == Role.LEADER
    assert "elected with 2 of 3 votes" in rig.node.events[-1]["text"], "votes stop at a majority"


async def test_a_decision_skipped_because_a_job_runs_is_reported_as_nothing_done(tmp_path):
    rig = await started(make_rig(tmp_path, address=C, peers=[A, B]))
    peers_answer(rig)
    await rig.node.run_cycle()
    blocked = asyncio.Event()
    rig.node.run_job(Job.HANDOVER, blocked.wait())
    cycle = await rig.node.run_cycle()
    assert cycle.action == Action.NONE and "not yet: handover is running" in cycle.text
    await rig.node.worker.stop()


async def test_a_leader_whose_majority_stops_answering_steps_down_when_its_lease_ends(tmp_path):
    rig = await leader_rig(tmp_path)
    assert rig.node.lease_valid()
    rig.transport.handler = None  # nobody answers any more (refused)
    rig.clock.advance(2.4)
    assert rig.node.gate.accepting_writes(), "the lease of the vote round still holds"
    rig.clock.advance(0.2)
    with pytest.raises(NotLeader, match="lost its majority"):
        rig.node.gate.guard_write()
    cycle = await rig.node.run_cycle()
    assert cycle.action == Action.STEP_DOWN and "lease lapsed" in cycle.text
    assert rig.node.role == Role.FOLLOWER


async def test_heartbeat_answers_renew_the_lease_only_for_probes_sent_as_leader(tmp_path):
    rig = await started(make_rig(tmp_path, address=C, peers=[A, B]))
    peers_answer(rig)
    await rig.node.membership.probe_all()  # sent as a follower
    assert not rig.node.lease._acks, "a follower's probe answered in its term is no lease"
    assert await votes.campaign(rig.node, handover_from=None)
    rig.clock.advance(2.0)
    await rig.node.membership.probe_all()  # sent as leader
    rig.clock.advance(2.0)
    assert rig.node.lease_valid(), "renewed by the answers to the leader's probes"


async def test_adopting_a_later_term_does_not_free_this_nodes_vote_while_its_leader_was_just_heard(tmp_path):
    rig = await started(make_rig(tmp_path, address=A, peers=[B, C]))
    peers_answer(rig)
    rig.node.heard_from_leader(515, f"http://{C}:3000")
    rig.node.adopt_term(7, "a restarted node is in term 7")
    assert rig.node.leader_id is None and rig.node.leader_alive()
    answer = await votes.answer_vote(rig.node, VoteRequest(8, 514, f"http://{B}:3000", 0, 0))
    assert not answer.granted and "alive" in answer.reason
    rig.clock.advance(3.1)
    answer = await votes.answer_vote(rig.node, VoteRequest(8, 514, f"http://{B}:3000", 0, 0))
    assert answer.granted, "after three heartbeats without the leader the vote is free"


async def test_the_gate_says_why_a_write_is_refused(tmp_path):
    rig = await started(make_rig(tmp_path, address=A, peers=[B, C]))
    with pytest.raises(NotLeader, match="is not the leader"):
        rig.node.gate.guard_write()
    assert rig.node.readiness() == (False, "no leader known")
    rig.node.heard_from_leader(515, f"http://{C}:3000")
    assert rig.node.current_leader_url() == f"http://{C}:3000"
    assert rig.node.readiness() == (False, "catching up with the leader")
    rig.replication.follower.in_sync = True
    assert rig.node.readiness() == (True, "following leader 515")


async def test_a_leader_hands_over_nothing_while_stopping_and_refuses_writes(tmp_path):
    rig = await leader_rig(tmp_path)
    rig.node.stopping = True
    with pytest.raises(NotLeader, match="handing over"):
        rig.node.gate.guard_write()


async def test_a_forward_to_a_leader_that_becomes_suspected_ends_at_once(tmp_path):
    rig = await started(make_rig(tmp_path, address=A, peers=[B, C]))
    never = asyncio.get_running_loop().create_future()
    call = asyncio.ensure_future(never)
    lost = rig.node.gate.watch_leader(f"http://{C}:3000", call)
    other = asyncio.ensure_future(asyncio.get_running_loop().create_future())
    rig.node.gate.watch_leader(f"http://{B}:3000", other)
    rig.node.gate.leader_suspected(f"http://{C}:3000")
    with pytest.raises(asyncio.CancelledError):
        await call
    assert lost() and not other.done(), "only the forwards to the suspected leader end"
    other.cancel()


async def test_a_node_cut_off_from_a_majority_expects_no_leader(tmp_path):
    rig = await started(make_rig(tmp_path, address=A, peers=[B, C]))
    assert not rig.node.gate.leader_expected(), "it reaches 1 of 3"
    peers_answer(rig)
    await rig.node.membership.probe_all()
    assert rig.node.gate.leader_expected()


async def test_an_lsn_held_in_another_history_does_not_satisfy_a_min_lsn_read(tmp_path):
    """A deposed leader holds LSNs the new leader wrote again: until its history is confirmed it waits."""
    rig = await started(make_rig(tmp_path, address=A, peers=[B, C]))
    rig.node.heard_from_leader(515, f"http://{C}:3000")
    rig.db.apply([_entry(1)])
    assert await rig.node.gate.wait_applied(1, 0.05) is False, "held, but not known to be the leader's"
    rig.replication.follower.confirmed = (rig.node.term, 515)
    assert await rig.node.gate.wait_applied(1, 0.05) is True


async def test_an_lsn_lost_while_the_history_is_confirmed_is_waited_for_again(tmp_path):
    """Simulator seed 21890: a follower held LSN 5 of a deposed leader's history; while it waited for that
    history to be confirmed it installed the leader's snapshot at LSN 3, and the wait then returned as
    if it held LSN 4 (a relayed write it did not hold, read back as 404)."""
    rig = await started(make_rig(tmp_path, address=A, peers=[B, C]))
    rig.node.heard_from_leader(515, f"http://{C}:3000")
    rig.db.apply([_entry(1), _entry(2)])
    sleep = rig.clock.sleep

    async def snapshot_installed_meanwhile(seconds: float) -> None:
        rig.db._last_lsn = 1  # what a snapshot install at LSN 1 leaves
        rig.replication.follower.confirmed = (rig.node.term, 515)
        await sleep(seconds)

    rig.clock.sleep = snapshot_installed_meanwhile
    assert await rig.node.gate.wait_applied(2, 0.1) is False, "it holds LSN 1 now"


def _entry(lsn):
    from talentnest.store import LogEntry

    return LogEntry(lsn, 1, "t", 1, "[]")


async def test_a_leader_removed_as_gone_frees_this_node_at_once(tmp_path):
    # SIGKILL on the launcher: the leader's address refuses (known gone) and DNS drops it, so it is no
    # longer a member; that must free this node at once, not after three heartbeats of silence
    # (benchmarks/failover.py: 0.5 s, not 3.5).
    from talentnest.cluster.transport import PeerRefused

    rig = await started(make_rig(tmp_path, address=B, peers=[A, C]))
    peers_answer(rig)
    await rig.node.membership.probe_all()
    rig.node.heard_from_leader(515, f"http://{C}:3000")
    assert rig.node.leader_alive()
    previous = rig.transport.handler
    rig.transport.handler = lambda call: PeerRefused("refused") if C in call.url else previous(call)
    rig.resolver.answer = [A, B]
    await rig.node.membership.probe_all()
    await rig.node.membership.refresh()
    assert C not in rig.node.membership.peers
    assert not rig.node.leader_alive(), "a leader known gone holds nothing back"


async def test_a_heartbeat_answer_renews_the_lease_only_from_a_follower_that_counts_this_node_its_leader(tmp_path):
    # A follower that does not count this node as a member ignores its heartbeats (they do not hold its
    # vote back), yet answers them in the same term: such an answer must not renew the lease.
    rig = await started(make_rig(tmp_path, address=C, peers=[A, B]))
    peers_answer(rig)
    assert await votes.campaign(rig.node, handover_from=None)

    def following_nobody(call):
        address = call.url[7:].split(":")[0]
        return reply(info(512 + int(address.split(".")[-1]), address, term=rig.node.term))

    rig.transport.handler = following_nobody
    rig.clock.advance(2.0)
    await rig.node.membership.probe_all()  # answered in our term, but following nobody
    rig.clock.advance(0.6)
    assert not rig.node.lease_valid(), "answers from followers of nobody renewed the lease"
