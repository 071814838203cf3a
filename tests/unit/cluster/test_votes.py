"""Vote granting and tallying, pure; and answering a vote on a node, persisted before the answer leaves."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tests.unit.cluster.fakes import make_rig, started

from talentnest.cluster.election import Refusal, Voter, grant_vote, tally
from talentnest.cluster.state import DurableState
from talentnest.cluster.types import Role
from talentnest.cluster.votes import answer_vote
from talentnest.cluster.wire import VoteReply, VoteRequest


def voter(**kw) -> Voter:
    values = dict(
        node_id=513, term=3, voted_for=None, role=Role.FOLLOWER, lease_valid=False, leader_id=None,
        leader_alive=False, stopping=False, last_term=3, last_lsn=10,
    )  # fmt: skip
    values.update(kw)
    return Voter(**values)


def ask(term: int = 4, candidate: int = 515, lsn: int = 10, last_term: int = 3, **kw) -> VoteRequest:
    return VoteRequest(term, candidate, f"http://10.0.2.{candidate - 512}:3000", lsn, last_term, **kw)


def test_a_fresh_candidate_gets_the_vote():
    assert grant_vote(ask(), voter()).granted


@pytest.mark.parametrize(
    ("request_", "voter_", "refusal"),
    [
        (ask(term=3), voter(role=Role.LEADER), Refusal.STALE_TERM),
        (ask(term=2), voter(), Refusal.STALE_TERM),
        (ask(lsn=9), voter(), Refusal.BEHIND),
        (ask(lsn=99, last_term=2), voter(), Refusal.BEHIND),  # a newer term beats a longer log
        (ask(term=3), voter(voted_for=514), Refusal.VOTED),
        (ask(), voter(role=Role.LEADER, lease_valid=True, term=3), Refusal.LEADING),
        (ask(), voter(leader_alive=True, leader_id=514), Refusal.LEADER_ALIVE),
    ],
)
def test_each_rule_refuses_saying_which(request_, voter_, refusal):
    verdict = grant_vote(request_, voter_)
    assert not verdict.granted and verdict.refusal == refusal and verdict.reason


def test_one_vote_per_term():
    assert not grant_vote(ask(term=3, candidate=515), voter(term=3, voted_for=514)).granted
    assert grant_vote(ask(term=3, candidate=514), voter(term=3, voted_for=514)).granted, "the same candidate again"


def test_a_handover_from_the_leader_is_granted_while_the_leader_is_alive():
    assert grant_vote(ask(handover_from=514), voter(leader_alive=True, leader_id=514)).granted
    assert not grant_vote(ask(handover_from=600), voter(leader_alive=True, leader_id=514)).granted


def test_a_tally_needs_a_majority_with_the_candidates_own_vote_and_yields_to_a_later_term():
    yes, no = VoteReply(4, True, "granted"), VoteReply(4, False, "behind")
    assert tally([(514, yes), (513, None)], voters=3, term=4).won
    assert not tally([(514, no), (513, None)], voters=3, term=4).won
    assert not tally([(514, yes), (513, None), (512, None), (511, None)], voters=5, term=4).won
    later = tally([(514, yes), (513, VoteReply(9, False, "stale"))], voters=3, term=4)
    assert not later.won and later.higher_term == 9
    assert tally([(514, no)], voters=3, term=4).refusals == ("514: behind",)


async def test_a_granted_vote_is_on_disk_before_the_answer_leaves(tmp_path):
    rig = await started(make_rig(tmp_path, address="10.0.2.1", peers=["10.0.2.3"]))
    answer = await answer_vote(rig.node, ask(term=1, candidate=515, lsn=0, last_term=0))
    assert answer.granted
    on_disk = DurableState(tmp_path).current  # what a restarted process would read
    assert (on_disk.term, on_disk.voted_for) == (1, 515)
    # After a crash the node remembers: another candidate in the same term is refused.
    again = await answer_vote(rig.node, replace(ask(term=1, candidate=514, lsn=0, last_term=0)))
    assert not again.granted


async def test_no_answer_at_all_when_the_vote_cannot_be_persisted(tmp_path, monkeypatch):
    rig = await started(make_rig(tmp_path, address="10.0.2.1", peers=["10.0.2.3"]))

    def full_disk(term, voted_for):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rig.node.state, "save", full_disk)
    with pytest.raises(OSError):
        await answer_vote(rig.node, ask(term=1, candidate=515, lsn=0, last_term=0))


async def test_a_pre_vote_changes_nothing(tmp_path):
    rig = await started(make_rig(tmp_path, address="10.0.2.1", peers=["10.0.2.3"]))
    before = rig.node.state.current
    answer = await answer_vote(rig.node, ask(term=7, candidate=515, lsn=0, last_term=0, pre_vote=True))
    assert answer.granted and answer.reason == "would vote"
    assert rig.node.state.current == before and rig.node.term == before.term
