"""The feed against a plain model: every page of every member's feed, walked by its cursors, is
exactly the posts of the people they follow and their own, newest first, with no post skipped or
repeated, whatever the mix of followees (none, fewer than a page, more, some who never posted)."""

from __future__ import annotations

import random

import pytest
from store_factories import Node

from talentnest.store.posts import POST_SELECT

MODEL = (
    f"{POST_SELECT} WHERE p.author_id = ?2 "
    "OR p.author_id IN (SELECT followee_id FROM follows WHERE follower_id = ?2) ORDER BY p.id DESC"
)


def model_feed(node: Node, member: int) -> list[tuple]:
    return [tuple(row) for row in node.db.conn.execute(MODEL, (member, member))]


def walked_feed(node: Node, member: int, limit: int) -> list[tuple]:
    """The member's whole feed read page by page, each page asked for ``limit`` posts after the last."""
    rows, before = [], None
    while True:
        page = node.posts.feed(member, limit=limit, before_id=before)
        assert len(page) <= limit
        rows.extend(tuple(row) for row in page)
        if len(page) < limit:
            return rows
        before = page[-1]["id"]


def random_network(node: Node, rng: random.Random, members: int) -> list[int]:
    ids = [node.signup(f"m{i}") for i in range(members)]
    silent = set(rng.sample(ids, members // 4))  # followed by some, never post
    for member in ids:
        for followee in rng.sample(ids, rng.choice([0, 1, 2, members // 2, members - 1])):
            if followee != member:
                node.user_service.follow(member, node.username(followee))
    writers = [m for m in ids if m not in silent]
    # Bursts by one author, then interleavings, so that pages cut inside and across authors' runs.
    posts = []
    for _ in range(members * 6):
        author = rng.choice(writers)
        posts += [node.post(author, f"by {author}") for _ in range(rng.choice([1, 1, 2, 7]))]
    for post in rng.sample(posts, len(posts) // 5):
        author = node.posts.author_of(post)
        node.post_service.delete(author, post)
    for post in rng.sample([p for p in posts if node.posts.author_of(p)], 10):
        node.post_service.like(rng.choice(ids), post)
    return ids


@pytest.mark.parametrize("seed", range(4))
def test_every_page_of_every_feed_is_the_model_feed_cut_at_its_cursors(nodes, seed):
    node = nodes("leader")
    rng = random.Random(seed)
    ids = random_network(node, rng, members=12)
    checked = 0
    for member in ids:
        expected = model_feed(node, member)
        for limit in (1, 2, 3, 5, 11, 200):
            assert walked_feed(node, member, limit) == expected, f"member {member}, pages of {limit}"
        checked += len(expected)
    assert checked > 0


def test_a_feed_with_no_followees_is_the_members_own_posts_and_an_empty_one_is_empty(nodes):
    node = nodes("leader")
    loner, quiet, other = node.signup("loner"), node.signup("quiet"), node.signup("other")
    mine = [node.post(loner, f"mine {i}") for i in range(4)]
    node.post(other, "not followed")
    assert [row["id"] for row in node.posts.feed(loner, limit=10, before_id=None)] == mine[::-1]
    assert [row["id"] for row in node.posts.feed(loner, limit=2, before_id=mine[2])] == [mine[1], mine[0]]
    assert node.posts.feed(quiet, limit=10, before_id=None) == []
    node.user_service.follow(quiet, "loner")
    assert [row["id"] for row in node.posts.feed(quiet, limit=3, before_id=None)] == mine[:0:-1]
    assert node.posts.feed(quiet, limit=3, before_id=mine[0]) == []
