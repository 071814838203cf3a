"""Divergence: the last LSN two logs agree on, and the archive of what only this node holds."""

from __future__ import annotations

import json

import pytest

from talentnest.store import Retention
from talentnest.store.divergence import archive_divergent, common_lsn, term_at


@pytest.mark.parametrize(
    ("local", "local_last", "leader", "leader_last", "expected"),
    [
        # identical logs
        ([(1, 1), (2, 5)], 9, [(1, 1), (2, 5)], 9, 9),
        # the follower is only behind: everything it has is the leader's
        ([(1, 1), (2, 5)], 6, [(1, 1), (2, 5), (3, 8)], 12, 6),
        # a deposed leader wrote 7-9 in term 2; the new leader started term 3 at 7
        ([(1, 1), (2, 5)], 9, [(1, 1), (2, 5), (3, 7)], 10, 6),
        # same, but the new leader never saw term 2 at all
        ([(1, 1), (2, 5)], 9, [(1, 1), (3, 5)], 10, 4),
        # this node is ahead in the same term (it holds entries the leader never got)
        ([(1, 1), (2, 5)], 9, [(1, 1), (2, 5)], 7, 7),
        # disagreement from the very first entry
        ([(2, 1)], 3, [(3, 1)], 3, 0),
        # empty logs on either side
        ([], 0, [(1, 1)], 4, 0),
        ([(1, 1)], 4, [], 0, 0),
        # several terms with entries on both sides, parting late
        ([(1, 1), (3, 4), (4, 6), (6, 9)], 12, [(1, 1), (3, 4), (4, 6), (5, 9)], 14, 8),
        # a term with entries on this node only, then the leader's later term
        ([(1, 1), (2, 3)], 5, [(1, 1), (4, 6)], 8, 2),
    ],
)
def test_common_lsn(local, local_last, leader, leader_last, expected):
    assert common_lsn(local, local_last, leader, leader_last) == expected
    assert common_lsn(leader, leader_last, local, local_last) == expected, "symmetric"


def test_term_at_follows_the_history():
    history = [(1, 1), (3, 4), (7, 10)]
    assert [term_at(history, lsn) for lsn in (0, 1, 3, 4, 9, 10, 99)] == [0, 1, 1, 3, 3, 7, 7]


def test_histories_taken_from_real_stores(nodes):
    """A deposed leader and the new one, built from the same start, part where their terms do."""
    old, new = nodes("old"), nodes("new")
    old.db.term = 1
    for name in ("ada", "bob", "cyd"):
        old.signup(name)
    new.db.apply(old.all_entries())
    old.db.term = 1
    old.post(1, "only the old leader has this")
    old.post(1, "and this")
    new.db.term = 2
    new.post(2, "the new leader's first write")

    agreed = common_lsn(old.db.term_history(), old.db.last_lsn, new.db.term_history(), new.db.last_lsn)
    assert agreed == 3


def test_archive_holds_every_divergent_entry_with_a_header(nodes):
    node = nodes("old")
    node.db.term = 1
    node.signup("ada")
    node.signup("bob")
    node.db.term = 2
    posts = [node.post(1, f"lost {n}") for n in range(3)]
    path = archive_divergent(node.db, 2, "new leader 515 in term 3 agrees up to LSN 2")

    assert path.parent == node.db.data_dir / "archive"
    assert path.name.startswith("divergent-") and path.name.endswith("-lsn3-5.jsonl")
    header, *lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert header["from_lsn"] == 3 and header["to_lsn"] == 5
    assert header["terms"] == [2]
    assert header["reason"] == "new leader 515 in term 3 agrees up to LSN 2"
    assert header["trimmed"] is False and header["entries"] == 3
    assert [line["lsn"] for line in lines] == [3, 4, 5]
    assert [line["changes"][0]["data"]["id"] for line in lines] == posts
    assert [line["changes"][0]["data"]["content"] for line in lines] == ["lost 0", "lost 1", "lost 2"]
    assert not list(path.parent.glob("*.partial"))

    second = archive_divergent(node.db, 4, "again")
    assert second != path and second.exists()


def test_archive_says_when_part_of_the_range_was_trimmed(nodes):
    node = nodes("old", retention=Retention(max_entries=3, max_bytes=10**9))
    node.db.term = 1
    for n in range(8):
        node.signup(f"user{n}")
    node.db.trim_log()
    assert node.db.first_lsn == 6
    path = archive_divergent(node.db, 2, "resync")
    header, *lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert (header["from_lsn"], header["to_lsn"], header["trimmed"], header["first_archived_lsn"]) == (3, 8, True, 6)
    assert [line["lsn"] for line in lines] == [6, 7, 8]


def test_nothing_to_archive_is_an_error(nodes):
    node = nodes("node")
    node.signup("ada")
    with pytest.raises(ValueError):
        archive_divergent(node.db, 1, "nothing")
