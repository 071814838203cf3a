"""Change capture: every write transaction becomes exactly one log entry holding its row changes."""

from __future__ import annotations

import json
import sqlite3

import pytest

from talentnest.errors import NotLeader, StaleTerm
from talentnest.store import WriteReceipt, current_receipt


def changes_of(node, lsn: int) -> list[dict]:
    (entry,) = [e for e in node.all_entries() if e.lsn == lsn]
    return json.loads(entry.changes)


def ops(changes: list[dict]) -> list[tuple[str, str]]:
    return [(c["operation"], c["table"]) for c in changes]


def test_signup_is_one_entry_with_the_full_row(nodes):
    node = nodes("leader")
    user_id = node.signup("ada")

    assert node.db.last_lsn == 1
    (change,) = changes_of(node, 1)
    row = dict(node.db.conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone())
    assert change == {"operation": "INSERT", "table": "users", "data": row}


def test_each_product_write_captures_its_rows(nodes):
    node = nodes("leader")
    ada, bob = node.signup("ada"), node.signup("bob")
    post = node.post(ada, "first")

    node.post_service.update(ada, post, "edited")
    assert ops(changes_of(node, node.db.last_lsn)) == [("UPDATE", "posts")]
    assert changes_of(node, node.db.last_lsn)[0]["data"]["content"] == "edited"

    # Counters are columns the same transaction updates: they travel as ordinary row changes.
    node.post_service.like(bob, post)
    assert ops(changes_of(node, node.db.last_lsn)) == [("INSERT", "likes"), ("UPDATE", "posts")]
    assert changes_of(node, node.db.last_lsn)[1]["data"]["like_count"] == 1
    node.post_service.unlike(bob, post)
    change, counted = changes_of(node, node.db.last_lsn)
    assert (change["operation"], change["table"]) == ("DELETE", "likes")
    assert (change["data"]["post_id"], change["data"]["user_id"]) == (post, bob)
    assert counted["data"]["like_count"] == 0

    node.user_service.follow(bob, "ada")
    follow, *counts = changes_of(node, node.db.last_lsn)
    assert follow["data"]["follower_id"] == bob
    assert {c["data"]["id"]: (c["data"]["follower_count"], c["data"]["following_count"]) for c in counts} == {
        bob: (0, 1),
        ada: (1, 0),
    }
    node.user_service.unfollow(bob, "ada")
    assert ops(changes_of(node, node.db.last_lsn)) == [("DELETE", "follows"), ("UPDATE", "users"), ("UPDATE", "users")]

    node.user_service.update_profile(ada, {"skills": ["Python", "SQL"], "headline": "engineer"})
    (change,) = changes_of(node, node.db.last_lsn)
    assert change["operation"] == "UPDATE" and json.loads(change["data"]["skills"]) == ["Python", "SQL"]

    comment = node.post_service.comment(bob, post, "nice")["id"]
    assert changes_of(node, node.db.last_lsn)[0]["data"]["id"] == comment
    node.post_service.delete_comment(bob, post, comment)
    assert ops(changes_of(node, node.db.last_lsn)) == [("DELETE", "comments"), ("UPDATE", "posts")]


def test_cascaded_deletes_are_captured_row_by_row(nodes):
    node = nodes("leader")
    ada, bob = node.signup("ada"), node.signup("bob")
    post = node.post(ada)
    node.post_service.like(bob, post)
    node.post_service.comment(bob, post, "one")
    node.post_service.comment(ada, post, "two")
    node.user_service.follow(bob, "ada")

    with node.db.write() as conn:
        conn.execute("DELETE FROM users WHERE id = ?", (ada,))

    captured = ops(changes_of(node, node.db.last_lsn))
    assert sorted(captured) == sorted(
        [
            ("DELETE", "users"),
            ("DELETE", "posts"),
            ("DELETE", "likes"),
            ("DELETE", "comments"),
            ("DELETE", "comments"),
            ("DELETE", "follows"),
        ]
    )
    remaining = node.db.conn.execute(
        "SELECT (SELECT COUNT(*) FROM posts) + (SELECT COUNT(*) FROM likes) + (SELECT COUNT(*) FROM comments)"
        " + (SELECT COUNT(*) FROM follows)"
    ).fetchone()[0]
    assert remaining == 0


def test_insert_or_ignore_captures_only_rows_really_inserted(nodes):
    node = nodes("leader")
    ada, bob = node.signup("ada"), node.signup("bob")
    post = node.post(ada)
    before = node.db.last_lsn

    with node.db.write() as conn:
        assert node.posts.like(conn, post, bob, "t") is True
        assert node.posts.like(conn, post, bob, "t") is False
    assert ops(changes_of(node, before + 1)) == [("INSERT", "likes"), ("UPDATE", "posts")]
    assert node.posts.by_id(post, None)["like_count"] == 1, "the ignored like is not counted"

    with node.db.write() as conn:
        assert node.posts.like(conn, post, bob, "t") is False
    assert node.db.last_lsn == before + 1, "a transaction that changed nothing is no entry"


def test_insert_or_replace_captures_the_row_it_deletes(nodes):
    node = nodes("leader")
    node.signup("ada")
    with node.db.write() as conn:
        # A new id with ada's username: REPLACE deletes the row with id 1 to make room.
        conn.execute(
            "INSERT OR REPLACE INTO users(id, username, email, name, password_hash, created_at, updated_at) "
            "VALUES (7, 'ada', 'ada2@example.org', 'Ada', 'x', 't', 't')"
        )
    assert ops(changes_of(node, node.db.last_lsn)) == [("DELETE", "users"), ("INSERT", "users")]


def test_an_update_that_moves_the_key_deletes_the_old_row(nodes):
    node = nodes("leader")
    node.signup("ada")
    with node.db.write() as conn:
        conn.execute("UPDATE users SET id = 5 WHERE id = 1")
    changes = changes_of(node, node.db.last_lsn)
    assert ops(changes) == [("DELETE", "users"), ("UPDATE", "users")]
    assert (changes[0]["data"]["id"], changes[1]["data"]["id"]) == (1, 5)


def test_reals_are_captured_exactly(nodes):
    node = nodes("leader")
    value = 1795793208.6965282  # SQLite's own JSON would write 1795793208.69653
    with node.db.write() as conn:
        conn.execute("INSERT INTO _tn_requests(key, lsn, created) VALUES ('k', 1, ?)", (value,))
    (change,) = changes_of(node, node.db.last_lsn)
    assert change["data"]["created"] == value


def test_a_rolled_back_write_leaves_no_entry_and_no_data(nodes):
    node = nodes("leader")
    node.signup("ada")
    checksum = node.db.checksum()

    with pytest.raises(RuntimeError), node.db.write() as conn:
        node.posts.insert(conn, 1, "lost", "t")
        raise RuntimeError("handler failed")

    assert node.db.last_lsn == 1
    assert len(node.all_entries()) == 1
    assert node.db.checksum() == checksum
    node.post(1, "kept")
    assert [e.lsn for e in node.all_entries()] == [1, 2]
    assert ops(changes_of(node, 2)) == [("INSERT", "posts")], "nothing of the rolled-back write leaks into the next"


def test_a_failing_statement_rolls_back_the_whole_transaction(nodes):
    node = nodes("leader")
    node.signup("ada")
    with pytest.raises(sqlite3.IntegrityError), node.db.write() as conn:
        node.posts.insert(conn, 1, "lost", "t")
        node.users.insert(conn, username="ada", email="other@example.org", name="A", password_hash="x", token_key="k", now="t")
    assert node.db.last_lsn == 1
    assert node.db.conn.execute("SELECT COUNT(*) FROM posts").fetchone()[0] == 0


def test_the_write_guard_refuses_before_any_work(nodes):
    node = nodes("leader")

    def refuse() -> None:
        raise NotLeader("not the leader")

    node.db.write_guard = refuse
    with pytest.raises(NotLeader), node.db.write() as conn:
        conn.execute("DELETE FROM users")
    assert node.db.last_lsn == 0


def test_entries_carry_the_term_and_the_history_records_each_term(nodes):
    node = nodes("leader")
    node.db.term = 3
    node.signup("ada")
    node.signup("bob")
    node.db.term = 5
    node.signup("cyd")

    assert [(e.lsn, e.term) for e in node.all_entries()] == [(1, 3), (2, 3), (3, 5)]
    assert node.db.term_history() == [(3, 1, 0), (5, 3, 0)]
    assert [node.db.term_at(lsn) for lsn in (0, 1, 2, 3)] == [0, 3, 3, 5]
    node.db.term = 4
    with pytest.raises(StaleTerm), node.db.write() as conn:
        conn.execute("DELETE FROM users")


def test_each_leader_stretch_records_its_epoch_and_another_leader_of_the_same_term_cannot_write(nodes):
    node = nodes("leader")
    node.db.term, node.db.epoch = 3, 111
    node.signup("ada")
    node.db.term, node.db.epoch = 4, 222
    node.signup("bob")
    assert node.db.term_history() == [(3, 1, 111), (4, 2, 222)]
    assert [e.epoch for e in node.all_entries()] == [111, 222]
    assert node.db.position_at(2) == (4, 222)
    node.db.epoch = 333  # a second process leading term 4 (a duplicated node ID)
    with pytest.raises(StaleTerm, match="another leader"), node.db.write() as conn:
        conn.execute("DELETE FROM users")


def test_log_state_survives_a_restart(nodes):
    node = nodes("leader")
    node.db.term = 2
    node.signup("ada")
    node.signup("bob")
    node.db.reopen()
    assert (node.db.first_lsn, node.db.last_lsn, node.db.last_term) == (1, 2, 2)
    node.post(1)
    assert node.db.last_lsn == 3


def test_a_request_transaction_and_its_last_statement_are_one_entry(nodes):
    """An Idempotency-Key's answer is kept in the write's own transaction: one entry, one LSN."""
    node = nodes("leader")
    receipt = WriteReceipt()
    token = current_receipt.set(receipt)
    try:
        with node.db.request_transaction() as request:
            node.signup("ada")
            node.signup("bob")  # a second write of the same request joins the first
            lsn = request.commit(
                lambda conn, lsn: conn.execute("INSERT INTO _tn_requests(key, lsn, created) VALUES ('retry-me', ?, 0)", (lsn,))
            )
    finally:
        current_receipt.reset(token)
    assert lsn == receipt.lsn == node.db.last_lsn == 1
    assert sorted(ops(changes_of(node, 1))) == [("INSERT", "_tn_requests"), ("INSERT", "users"), ("INSERT", "users")]
    assert node.db.conn.execute("SELECT lsn FROM _tn_requests WHERE key = 'retry-me'").fetchone()[0] == 1


def test_a_request_transaction_that_fails_or_is_not_committed_leaves_nothing(nodes):
    node = nodes("leader")
    with pytest.raises(RuntimeError, match="boom"), node.db.request_transaction():
        node.signup("ada")
        raise RuntimeError("boom")
    with node.db.request_transaction():
        node.signup("bob")  # never committed
    assert node.db.last_lsn == 0
    assert node.db.conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0
    node.signup("cy")  # the writer is free again
    assert node.db.last_lsn == 1


def test_capture_lives_on_the_connection_not_in_the_file(nodes):
    node = nodes("leader")
    node.signup("ada")
    stored = node.db.conn.execute("SELECT COUNT(*) FROM main.sqlite_master WHERE type = 'trigger'").fetchone()[0]
    assert stored == 0
    # Another connection (a tool, a snapshot check) can write without the capture function.
    other = sqlite3.connect(node.db.path)
    other.execute("UPDATE users SET name = 'Other' WHERE id = 1")
    other.commit()
    other.close()


def test_capture_off_writes_no_log(nodes):
    node = nodes("bench", capture=False)
    node.signup("ada")
    node.post(1)
    assert node.db.last_lsn == 0
    assert node.db.conn.execute("SELECT COUNT(*) FROM _tn_log").fetchone()[0] == 0
    assert node.db.conn.execute("SELECT COUNT(*) FROM posts").fetchone()[0] == 1


def test_a_reused_checksum_follows_the_lsn(nodes):
    node = nodes("leader")
    node.signup("ada")
    first = node.db.checksum(reuse=True)
    assert node.db.checksum(reuse=True) == first == node.db.checksum()
    node.signup("bob")
    assert node.db.checksum(reuse=True) == node.db.checksum() != first


def test_a_file_from_before_epochs_gains_them_when_it_opens(tmp_path):
    import sqlite3 as sqlite

    from talentnest.store.schema import product_database

    old = sqlite.connect(tmp_path / "talentnest.db")
    old.executescript(
        "CREATE TABLE _tn_log (lsn INTEGER PRIMARY KEY, term INTEGER NOT NULL, ts TEXT NOT NULL, "
        "schema_version INTEGER NOT NULL, changes TEXT NOT NULL);"
        "CREATE TABLE _tn_terms (term INTEGER PRIMARY KEY, start_lsn INTEGER NOT NULL);"
        "INSERT INTO _tn_log VALUES (1, 2, 't', 1, '[]'); INSERT INTO _tn_terms VALUES (2, 1);"
    )
    old.commit()
    old.close()
    db = product_database(tmp_path)
    db.open()
    try:
        assert db.term_history() == [(2, 1, 0)]
        assert (db.last_lsn, db.last_term, db.last_epoch) == (1, 2, 0)
        assert db.entries_after(0)[0].epoch == 0
    finally:
        db.close()
