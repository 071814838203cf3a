"""Apply on a follower: in LSN order, idempotent, refusing what it cannot apply whole; and retention."""

from __future__ import annotations

import dataclasses
import json

import pytest

from talentnest.errors import InvalidInput, LogDiverged, LogTruncated, StaleTerm
from talentnest.store import LogEntry, Retention
from talentnest.store.schema import MIGRATIONS


@pytest.fixture
def pair(nodes):
    """A leader with a few product writes, and an empty follower."""
    leader, follower = nodes("leader"), nodes("follower")
    ada, bob = leader.signup("ada"), leader.signup("bob")
    post = leader.post(ada, "first")
    leader.post_service.like(bob, post)
    leader.post_service.comment(bob, post, "hi")
    leader.user_service.follow(bob, "ada")
    return leader, follower


def test_applying_the_whole_log_reproduces_the_data(pair):
    leader, follower = pair
    result = follower.db.apply(leader.all_entries())
    assert (result.applied_lsn, result.applied, result.gap) == (6, 6, False)
    assert follower.db.checksum() == leader.db.checksum()
    assert follower.db.last_lsn == leader.db.last_lsn


def test_duplicates_and_redeliveries_are_skipped(pair):
    leader, follower = pair
    entries = leader.all_entries()
    follower.db.apply(entries[:3])
    result = follower.db.apply(entries[1:4] + entries[2:4])
    assert (result.applied_lsn, result.applied) == (4, 1)
    assert follower.db.apply(entries).applied == 2
    assert follower.db.apply(entries).applied == 0
    assert follower.db.checksum() == leader.db.checksum()


def test_out_of_order_batch_is_applied_in_lsn_order(pair):
    leader, follower = pair
    result = follower.db.apply(list(reversed(leader.all_entries())))
    assert result.applied_lsn == 6
    assert follower.db.checksum() == leader.db.checksum()


def test_a_gap_stops_application_and_is_reported(pair):
    leader, follower = pair
    entries = leader.all_entries()
    result = follower.db.apply(entries[:2] + entries[3:])
    assert (result.applied_lsn, result.applied, result.gap) == (2, 2, True)
    result = follower.db.apply(entries[4:])
    assert (result.applied_lsn, result.applied, result.gap) == (2, 0, True)
    result = follower.db.apply(follower_needs := leader.db.entries_after(result.applied_lsn))
    assert follower_needs[0].lsn == 3
    assert (result.applied_lsn, result.gap) == (6, False)
    assert follower.db.checksum() == leader.db.checksum()


def test_a_batch_from_an_older_term_is_refused(pair):
    leader, follower = pair
    with pytest.raises(StaleTerm):
        follower.db.apply(leader.all_entries(), sender_term=2, current_term=3)
    assert follower.db.last_lsn == 0


def test_an_entry_going_back_in_term_is_refused_and_nothing_applies(nodes):
    follower = nodes("follower")
    leader = nodes("leader")
    leader.db.term = 4
    leader.signup("ada")
    leader.signup("bob")
    first, second = leader.all_entries()
    with pytest.raises(StaleTerm):
        follower.db.apply([first, dataclasses.replace(second, term=3)])
    assert follower.db.last_lsn == 0
    assert follower.db.conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0


def test_a_resent_last_entry_with_another_term_reveals_divergence(pair):
    leader, follower = pair
    entries = leader.all_entries()
    follower.db.apply(entries)
    with pytest.raises(LogDiverged):
        follower.db.apply([dataclasses.replace(entries[-1], term=9)])


def test_an_entry_of_a_newer_schema_is_refused(pair):
    leader, follower = pair
    entries = leader.all_entries()
    newer = dataclasses.replace(entries[1], schema_version=len(MIGRATIONS) + 1)
    with pytest.raises(InvalidInput, match="schema version"):
        follower.db.apply([entries[0], newer])
    assert follower.db.last_lsn == 0, "the batch applies whole or not at all"


def test_a_change_for_an_unknown_table_or_column_is_refused(pair):
    leader, follower = pair
    entries = leader.all_entries()
    empty = follower.db.checksum()
    unknown_table = LogEntry(1, 0, "t", 1, json.dumps([{"operation": "INSERT", "table": "badges", "data": {"id": 1}}]))
    with pytest.raises(InvalidInput, match="badges"):
        follower.db.apply([unknown_table])
    row = json.loads(entries[0].changes)
    row[0]["data"]["karma"] = 3
    extra_column = dataclasses.replace(entries[0], changes=json.dumps(row))
    with pytest.raises(InvalidInput, match="columns"):
        follower.db.apply([extra_column])
    assert follower.db.last_lsn == 0
    assert follower.db.checksum() == empty


def test_apply_never_captures(pair):
    leader, follower = pair
    follower.db.apply(leader.all_entries())
    assert [e.to_json() for e in follower.all_entries()] == [e.to_json() for e in leader.all_entries()]
    temp_triggers = [r[0] for r in follower.db.conn.execute("SELECT name FROM temp.sqlite_master WHERE type = 'trigger'")]
    # Only the derived search index's triggers: they keep it right while applying, and capture nothing.
    assert temp_triggers and all(name.startswith("tn_search_") for name in temp_triggers)

    # The follower becomes the writer: its first entry holds only its own change.
    follower.db.term = 1
    follower.post(1, "from the new leader")
    (entry,) = follower.db.entries_after(6)
    assert [c["table"] for c in json.loads(entry.changes)] == ["posts"]


def test_a_former_writer_applies_without_capturing(pair):
    leader, follower = pair
    follower.db.apply(leader.all_entries())
    follower.db.term = 2
    follower.post(1, "written by the new leader")
    follower.user_service.update_profile(2, {"bio": "moved"})

    leader.db.apply(follower.db.entries_after(leader.db.last_lsn), sender_term=2, current_term=2)
    assert [e.to_json() for e in leader.all_entries()] == [e.to_json() for e in follower.all_entries()]
    assert leader.db.checksum() == follower.db.checksum()


def test_applied_state_survives_a_restart(pair):
    leader, follower = pair
    entries = leader.all_entries()
    follower.db.apply(entries[:4])
    follower.db.reopen()
    assert follower.db.last_lsn == 4
    follower.db.apply(entries)
    assert follower.db.checksum() == leader.db.checksum()


def test_autoincrement_ids_continue_on_a_promoted_follower(pair):
    leader, follower = pair
    ada = 1
    last_post = leader.post(ada, "to be deleted")
    leader.post_service.delete(ada, last_post)
    follower.db.apply(leader.all_entries())

    follower.db.term = leader.db.term + 1
    new_post = follower.post(ada, "after failover")
    assert new_post == last_post + 1, "an id the old leader used is never handed out again"
    assert follower.signup("cyd") == 3


def test_wire_form_round_trips_and_is_validated(pair):
    leader, _ = pair
    for entry in leader.all_entries():
        assert LogEntry.from_dict(json.loads(entry.to_json())) == dataclasses.replace(
            entry, changes=json.dumps(json.loads(entry.changes), separators=(",", ":"), ensure_ascii=False)
        )
    for bad in (
        {"lsn": "1", "term": 0, "changes": []},
        {"lsn": 0, "term": 0, "changes": []},
        {"lsn": 1, "term": True, "changes": []},
        {"lsn": 1, "term": 0, "changes": {}},
        {"lsn": 1, "term": 0, "changes": [{"operation": "MERGE", "table": "users", "data": {}}]},
        {"lsn": 1, "term": 0},
        [],
    ):
        with pytest.raises(InvalidInput):
            LogEntry.from_dict(bad)


# --- retention -----------------------------------------------------------------------------------


def test_retention_by_count_keeps_the_newest_entries(nodes):
    leader = nodes("leader", retention=Retention(max_entries=10, max_bytes=10**9))
    user = leader.signup("ada")
    for n in range(29):
        leader.post(user, f"post {n}")
    leader.db.trim_log()
    assert (leader.db.first_lsn, leader.db.last_lsn) == (21, 30)
    assert [e.lsn for e in leader.db.entries_after(20)] == list(range(21, 31))
    with pytest.raises(LogTruncated):
        leader.db.entries_after(19)
    leader.db.reopen()
    assert leader.db.first_lsn == 21


def test_retention_by_bytes(nodes):
    leader = nodes("leader", retention=Retention(max_entries=10**6, max_bytes=2000))
    user = leader.signup("ada")
    for n in range(20):
        leader.post(user, f"{n:03d}" + "x" * 200)
    sizes = {e.lsn: len(e.changes) for e in leader.all_entries()}
    leader.db.trim_log()
    kept = leader.all_entries()
    size = sum(len(e.changes) for e in kept)
    assert size <= 2000
    assert size + sizes[kept[0].lsn - 1] > 2000, "no more than needed was dropped"
    assert kept[-1].lsn == leader.db.last_lsn and kept[0].lsn == leader.db.first_lsn
    with pytest.raises(LogTruncated):
        leader.db.entries_after(leader.db.first_lsn - 2)


def test_the_last_entry_is_always_kept(nodes):
    leader = nodes("leader", retention=Retention(max_entries=1, max_bytes=1))
    leader.signup("ada")
    leader.signup("bob")
    leader.db.trim_log()
    assert [e.lsn for e in leader.all_entries()] == [2]
    assert leader.db.entries_after(1)[0].lsn == 2


def test_the_log_is_trimmed_as_writes_go_on(nodes):
    leader = nodes("leader", retention=Retention(max_entries=16, max_bytes=10**9))
    user = leader.signup("ada")
    for n in range(200):
        leader.post(user, f"post {n}")
    assert leader.db.last_lsn - leader.db.first_lsn + 1 < 16 + 64


def test_entries_after_respects_its_bounds(pair):
    leader, _ = pair
    assert [e.lsn for e in leader.db.entries_after(0, max_entries=2)] == [1, 2]
    assert [e.lsn for e in leader.db.entries_after(0, max_bytes=1)] == [1], "at least one entry"
    assert leader.db.entries_after(6) == []
    assert leader.db.entries_after(60) == []


# --- schema versions -----------------------------------------------------------------------------

BADGES = [
    *MIGRATIONS,
    (len(MIGRATIONS) + 1, "CREATE TABLE badges (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, name TEXT NOT NULL)"),
]


def test_a_follower_gets_changes_of_a_new_table_only_once_it_has_migrated(nodes, tmp_path):
    leader = nodes("leader", migrations=BADGES)
    old = nodes("follower")
    user = leader.signup("ada")
    with leader.db.write() as conn:
        conn.execute("INSERT INTO badges(user_id, name) VALUES (?, 'early adopter')", (user,))
    entries = leader.all_entries()
    assert [e.schema_version for e in entries] == [len(BADGES)] * 2

    with pytest.raises(InvalidInput, match="upgrade"):
        old.db.apply(entries)
    assert old.db.last_lsn == 0

    old.db.close()
    upgraded = nodes("follower", migrations=BADGES)  # the same files, opened by the newer program
    assert upgraded.db.apply(entries).applied_lsn == 2
    assert upgraded.db.checksum() == leader.db.checksum()
