"""The invariants as pure checks over observations: each one fails on the history it forbids."""

from __future__ import annotations

from collections import Counter

from talentnest.sim.invariants import (
    AckedWrite,
    Checker,
    Commit,
    Read,
    acked_writes_kept,
    commits_in_term_order,
    nothing_applied_twice,
    one_leader_per_term,
    reads_not_stale,
)


def acked(content: str, *, at: float = 1.0, leader: int = 515, sent: float | None = None) -> AckedWrite:
    return AckedWrite(content, f"key-{content}", at, via=513, leader=leader, lsn=7, post_id=3, sent=sent)


def test_two_nodes_leading_one_term_is_a_violation_and_one_node_leading_it_twice_is_not():
    assert one_leader_per_term([(1.0, 2, 515), (2.0, 2, 515), (3.0, 3, 514)]) == []
    (violation,) = one_leader_per_term([(1.0, 2, 515), (4.0, 2, 514)])
    assert violation.invariant == "one_leader_per_term" and violation.at == 4.0


def test_a_write_in_an_older_term_after_a_newer_one_is_a_lease_overlap():
    fine = [Commit(1.0, 515, 2, 5), Commit(2.0, 514, 3, 6), Commit(2.5, 514, 3, 7)]
    assert commits_in_term_order(fine) == []
    (violation,) = commits_in_term_order([*fine, Commit(3.0, 515, 2, 6)])
    assert violation.invariant == "lease_overlap"
    assert "node 515 committed LSN 6 in term 2 after node 514" in violation.detail


def test_quorum_mode_loses_no_acknowledged_write_archived_or_not():
    final = Counter({"c1-1": 1})
    (violation,) = acked_writes_kept([acked("c1-1"), acked("c1-2")], final, archived={"c1-2"}, quorum=True)
    assert violation.invariant == "acked_write_lost" and "c1-2" in violation.detail


def test_async_mode_may_lose_an_acknowledged_write_only_into_an_archive():
    final = Counter()
    assert acked_writes_kept([acked("c1-1")], final, archived={"c1-1"}, quorum=False) == []
    (violation,) = acked_writes_kept([acked("c1-1")], final, archived=set(), quorum=False)
    assert violation.invariant == "acked_write_lost_unarchived"


def test_a_lost_disk_excuses_only_what_no_disk_could_keep():
    write = acked("c1-1", at=2.0, sent=1.5, leader=515)
    # Async: the leader's own disk lost after the write was sent; quorum: a majority of disks.
    assert acked_writes_kept([write], Counter(), set(), quorum=False, wiped=[(1.8, 515)]) == []
    assert acked_writes_kept([write], Counter(), set(), quorum=False, wiped=[(1.8, 514)]) != []
    assert acked_writes_kept([write], Counter(), set(), quorum=True, nodes=3, wiped=[(1.8, 515)]) != []
    assert acked_writes_kept([write], Counter(), set(), quorum=True, nodes=3, wiped=[(1.8, 515), (1.9, 514)]) == []


def test_a_content_twice_in_the_data_was_applied_twice():
    assert nothing_applied_twice(Counter({"c1-1": 1, "c1-2": 1})) == []
    (violation,) = nothing_applied_twice(Counter({"c1-1": 2}))
    assert violation.invariant == "applied_twice"


def test_a_read_with_min_lsn_must_not_answer_older_data():
    final = Counter({"c1-1": 1})
    good = Read("c1-1", 3.0, 514, min_lsn=7, status=200, answered_lsn=7, got="c1-1")
    waited_out = Read("c1-1", 3.0, 514, min_lsn=7, status=503, answered_lsn=5, got=None)
    assert reads_not_stale([good, waited_out], final) == []
    behind = Read("c1-1", 3.0, 514, min_lsn=7, status=200, answered_lsn=5, got="c1-1")
    other = Read("c1-1", 3.0, 514, min_lsn=7, status=200, answered_lsn=9, got="c3-2")
    assert [v.invariant for v in reads_not_stale([behind, other], final)] == ["min_lsn_read_stale"] * 2


def test_a_write_acknowledged_through_a_node_is_read_back_there():
    final = Counter({"c1-1": 1})
    missing = Read("c1-1", 3.0, 514, min_lsn=None, status=404, answered_lsn=5, got=None, after_write_via_same_node=True)
    (violation,) = reads_not_stale([missing], final)
    assert violation.invariant == "read_your_writes"
    # A write that was lost (async mode) is judged by acked_writes_kept, not here.
    assert reads_not_stale([missing], Counter()) == []


def test_the_checker_hands_each_violation_to_its_reporter_as_it_happens():
    seen = []
    checker = Checker(quorum=True, report=seen.append)
    checker.leader(1.0, 2, 515)
    checker.leader(2.0, 2, 514)
    checker.commit(Commit(1.0, 515, 2, 1))
    checker.commit(Commit(3.0, 514, 3, 2))
    checker.commit(Commit(4.0, 515, 2, 2))

    assert [v.invariant for v in seen] == ["one_leader_per_term", "lease_overlap"]
