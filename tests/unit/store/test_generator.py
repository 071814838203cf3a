"""The network generator at small size: realistic rows, right counters and index, real log entries
that a follower can apply, the same network for the same seed."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest
from store_factories import assert_counters_are_recounts, assert_index_is_rebuilt

from talentnest.generator import NetworkSize, generate
from talentnest.services import rules

SIZE = NetworkSize.scaled(200, follows=1_500, posts=900, likes=1_200, comments=300)


def generated(nodes, name: str, seed: int = 5):
    node = nodes(name)
    node.db.term = 1
    report = generate(node.db, SIZE, password_hash="hash", seed=seed)
    return node, report


def test_the_generator_writes_the_network_asked_for(nodes):
    node, report = generated(nodes, "leader")
    conn = node.db.conn
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("users", "follows", "posts")}
    assert counts == {"users": 200, "follows": 1_500, "posts": 900}
    assert report.size.members == 200 and report.size.follows == 1_500 and report.size.posts == 900
    assert 600 <= report.size.likes <= 2_400 and 100 <= report.size.comments <= 600, "heavy-tailed, near the means"
    assert report.size.likes == conn.execute("SELECT COUNT(*) FROM likes").fetchone()[0]

    users = conn.execute("SELECT username, email, name, headline, skills FROM users").fetchall()
    assert all(re.fullmatch(rules.USERNAME_PATTERN, u["username"]) for u in users)
    assert all(rules.email(u["email"]) == u["email"] for u in users[:20])
    assert all(3 <= len(json.loads(u["skills"])) <= 8 for u in users)
    assert all(u["headline"] for u in users)
    accented = [u["name"] for u in users if any(unicodedata.decomposition(ch) for ch in u["name"])]
    assert len(accented) > 40, "names with accents from several languages"
    assert conn.execute("SELECT COUNT(*) FROM follows WHERE follower_id = followee_id").fetchone()[0] == 0
    assert conn.execute("SELECT MAX(follower_count) FROM users").fetchone()[0] > 2 * 1_500 / 200, "popular members"

    assert_counters_are_recounts(node.db)
    assert_index_is_rebuilt(node.db, [["python"], ["jo"], ["garcía"]])
    assert node.user_service.search("python", limit=5, cursor=None).items
    # The index is built once after the members are written; its triggers are back for what follows.
    node.signup("zebulon_after")
    assert [u["username"] for u in node.user_service.search("zebulon", limit=5, cursor=None).items] == ["zebulon_after"]
    assert_index_is_rebuilt(node.db, [["zebulon"]])


def test_the_network_is_written_as_log_entries_a_follower_applies(nodes):
    leader, report = generated(nodes, "leader")
    entries = leader.all_entries()
    assert [e.lsn for e in entries] == list(range(report.first_lsn, report.last_lsn + 1)) and report.first_lsn == 1
    follower = nodes("follower")
    follower.catch_up_from(leader)
    assert follower.db.checksum() == leader.db.checksum()
    assert_index_is_rebuilt(follower.db, [["python"]])


def test_the_same_seed_gives_the_same_network_and_another_seed_another(nodes):
    first, _ = generated(nodes, "first")
    again, _ = generated(nodes, "again")
    other, _ = generated(nodes, "other", seed=6)
    assert first.db.checksum() == again.db.checksum() != other.db.checksum()


def test_the_generator_refuses_a_database_that_has_members(nodes):
    node = nodes("leader")
    node.signup("ada")
    with pytest.raises(ValueError, match="already holds members"):
        generate(node.db, SIZE, password_hash="hash")


def test_sizes_that_cannot_be_built_are_refused():
    with pytest.raises(ValueError, match="at least 2 members"):
        NetworkSize.scaled(1)
    with pytest.raises(ValueError, match="do not fit"):
        NetworkSize.scaled(3, follows=7)
