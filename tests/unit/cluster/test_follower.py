"""The follower's side: duplicates skipped, gaps reported, older terms refused, divergence archived."""

from __future__ import annotations

import json

import pytest
from tests.unit.cluster.fakes import make_rig, started

from talentnest.cluster.logwire import ReplicateRequest
from talentnest.cluster.work import Job
from talentnest.store import LogEntry

LEADER = "http://10.0.2.3:3000"


def user(lsn: int, term: int, epoch: int = 0) -> LogEntry:
    row = {
        "id": lsn, "username": f"u{lsn}", "email": f"u{lsn}@x", "name": "n", "headline": "", "bio": "", "location": "",
        "skills": "[]", "password_hash": "x", "created_at": "t", "updated_at": "t",
    }  # fmt: skip
    return LogEntry(lsn, term, "t", 1, json.dumps([{"operation": "INSERT", "table": "users", "data": row}]), epoch)


def batch(entries, *, term=2, prev=None, prev_term=None, last=None, history=((2, 1),), first=1) -> ReplicateRequest:
    prev = entries[0].lsn - 1 if prev is None else prev
    return ReplicateRequest(
        leader_id=515,
        term=term,
        leader_url=LEADER,
        prev_lsn=prev,
        prev_term=(term if prev else 0) if prev_term is None else prev_term,
        prev_epoch=None,
        leader_last_lsn=max([e.lsn for e in entries], default=prev) if last is None else last,
        leader_last_term=term,
        leader_first_lsn=first,
        history=tuple(history) if history is not None else None,
        entries=tuple(entries),
    )


@pytest.fixture
async def follower(tmp_path):
    rig = await started(make_rig(tmp_path, address="10.0.2.1", peers=["10.0.2.3"]))
    yield rig
    rig.db.close()


def seeded(rig):
    """A follower that already holds LSN 1 (an empty one would ask for a snapshot instead)."""
    rig.db.apply([user(1, 2)])
    return rig.replication.follower


async def test_a_batch_is_applied_in_order_and_a_duplicate_is_skipped(follower):
    side = seeded(follower)
    first = await side.on_replicate(batch([user(n, 2) for n in range(2, 6)]), syncing=False)
    assert (first.success, first.applied_lsn, first.reason) == (True, 5, "applied")
    again = await side.on_replicate(batch([user(n, 2) for n in range(3, 8)], prev=2), syncing=False)
    assert (again.success, again.applied_lsn) == (True, 7)
    assert follower.db.conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 7
    assert follower.replication.stats.entries_applied == 6
    assert follower.node.leader_id == 515 and side.in_sync


async def test_a_batch_past_what_this_node_holds_is_a_gap(follower):
    side = seeded(follower)
    answer = await side.on_replicate(batch([user(9, 2)], prev=8, last=9), syncing=False)
    assert (answer.success, answer.reason, answer.applied_lsn) == (False, "gap", 1)


async def test_a_batch_from_an_older_term_is_refused_and_changes_nothing(follower):
    side = follower.replication.follower
    follower.node.adopt_term(5, "test")
    answer = await side.on_replicate(batch([user(1, 2)]), syncing=False)
    assert (answer.success, answer.reason, answer.term) == (False, "stale_term", 5)
    assert follower.db.last_lsn == 0


async def test_a_history_that_differs_is_archived_then_resynced(follower):
    side = follower.replication.follower
    follower.db.apply([user(1, 1), user(2, 1), user(3, 1)])  # written under a leader of term 1 that was deposed
    answer = await side.on_replicate(batch([user(2, 2)], prev=1, prev_term=1, history=((1, 1), (2, 2)), last=2), syncing=False)
    assert (answer.success, answer.reason) == (False, "syncing")
    archives = list((follower.db.data_dir / "archive").glob("divergent-*.jsonl"))
    assert len(archives) == 1 and "lsn2-3" in archives[0].name
    assert follower.node.worker.current == Job.SYNC
    assert follower.replication.stats.divergences == 1
    await follower.node.worker.stop()


async def test_a_resent_last_entry_with_another_term_sends_the_follower_back_to_the_histories(follower):
    side = seeded(follower)
    await side.on_replicate(batch([user(2, 2)]), syncing=False)
    # Same term, but the leader's copy of LSN 2 says term 3: LogDiverged, caught as its contract says.
    answer = await side.on_replicate(batch([user(2, 3)], term=2, prev=1, history=None), syncing=False)
    assert (answer.success, answer.reason) == (False, "history_needed")
    assert side.confirmed is None


async def test_an_empty_follower_of_a_busy_leader_asks_for_a_snapshot(follower):
    side = follower.replication.follower
    answer = await side.on_replicate(batch([], prev=100, last=100, first=50), syncing=False)
    assert answer.reason == "syncing"
    assert follower.node.worker.current == Job.SYNC
    await follower.node.worker.stop()


async def test_while_syncing_every_batch_is_answered_syncing(follower):
    side = follower.replication.follower
    answer = await side.on_replicate(batch([user(1, 2)]), syncing=True)
    assert answer.reason == "syncing" and follower.db.last_lsn == 0


async def test_two_leaders_in_one_term_leave_histories_that_differ_and_the_follower_repairs(follower):
    """A duplicated node ID can make two leaders of one term: their epochs differ, so the follower sees it."""
    side = follower.replication.follower
    follower.db.apply([user(1, 2, epoch=111), user(2, 2, epoch=111), user(3, 2, epoch=111)])
    other = batch([user(2, 2, epoch=222)], prev=1, prev_term=2, history=((2, 1, 222),), last=2)
    answer = await side.on_replicate(other, syncing=False)
    assert (answer.success, answer.reason) == (False, "syncing")
    archives = list((follower.db.data_dir / "archive").glob("divergent-*.jsonl"))
    assert len(archives) == 1 and "lsn1-3" in archives[0].name, "everything of the other leader's stretch"
    await follower.node.worker.stop()


async def test_the_previous_entry_must_be_the_leaders_own_not_just_of_its_term(follower):
    side = follower.replication.follower
    follower.db.apply([user(1, 2, epoch=111)])
    side.confirmed = (2, 515)
    request = batch([user(2, 2, epoch=222)], prev=1, prev_term=2, history=None)
    request = type(request)(**{**request.__dict__, "prev_epoch": 222})
    answer = await side.on_replicate(request, syncing=False)
    assert (answer.success, answer.reason) == (False, "history_needed")
    assert follower.db.last_lsn == 1
