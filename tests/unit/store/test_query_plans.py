"""Every statement the product runs is planned on an index: ``EXPLAIN QUERY PLAN`` shows neither a
full scan of a table nor a sort of all matching rows (``USE TEMP B-TREE``).

The statements are not listed here: they are recorded (with their values) while every product
read and write runs on a small generated network, so a new query is checked as soon as it exists.
"""

from __future__ import annotations

import re

import pytest
from store_factories import Node

from talentnest.generator import NetworkSize, generate

# A scan of the posts table in rowid order, stopped by LIMIT: the newest posts of everyone.
ALLOWED_SCANS = {("SCAN p", re.compile(r"FROM posts p JOIN users u ON u.id = p.author_id WHERE 1 = 1 ORDER BY p.id DESC"))}
# Sorts that are bounded by what they sort, not by the history: the feed's newest post of each
# followee, one row per person followed, of which SQLite keeps the page's count (ORDER BY ... LIMIT).
ALLOWED_SORTS = {
    (
        "USE TEMP B-TREE FOR ORDER BY",
        re.compile(r"^SELECT author, head FROM \(SELECT f\.followee_id AS author, .* ORDER BY head DESC LIMIT \d+$"),
    )
}
# Scans that are not of a table: a constant row, a subquery's few rows, the search index driven by MATCH.
_NOT_TABLE_SCANS = re.compile(r"^SCAN (CONSTANT ROW|\(subquery-\d+\)|\S+ VIRTUAL TABLE INDEX \d+:M)")
# The store's own statements (log, metadata, triggers' bodies, which the trace shows as comments).
_STORE_INTERNALS = re.compile(r"_tn_|sqlite_master|sqlite_sequence")
_PRODUCT = re.compile(r"^(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.I)


@pytest.fixture
def network(nodes) -> Node:
    node = nodes("leader")
    node.db.term = 1
    generate(node.db, NetworkSize.scaled(300), password_hash="x", seed=3)
    return node


class Recorder:
    """The statements run on the connection, each with whether it ran for a page after the first."""

    def __init__(self) -> None:
        self.statements: dict[str, bool] = {}
        self.after_cursor = False

    def __call__(self, statement: str) -> None:
        statement = statement.strip()
        self.statements[statement] = self.statements.get(statement, False) or self.after_cursor

    def next_page(self, fn, *args, cursor, **kwargs):
        assert cursor is not None, f"{fn.__name__} {args} {kwargs} had one page only: choose a busier member"
        self.after_cursor = True
        try:
            return fn(*args, cursor=cursor, **kwargs)
        finally:
            self.after_cursor = False


def busiest(node: Node, column: str, table: str) -> int:
    return node.db.conn.execute(f"SELECT {column} FROM {table} GROUP BY {column} ORDER BY COUNT(*) DESC LIMIT 1").fetchone()[0]


def exercise(node: Node, record: Recorder, me: int, other: int) -> None:
    """Every read and write the product's services do, and the second page of every list."""
    users, posts = node.user_service, node.post_service
    name = node.users.by_id(other)["username"]
    users.profile(name)
    for query in ("python", "jo", "garcía", "node.js", "C++"):
        page = users.search(query, limit=2, cursor=None)
        record.next_page(users.search, query, limit=2, cursor=page.next_cursor)
    me_name = node.users.by_id(me)["username"]
    for listing, whose in ((users.followers, name), (users.following, me_name)):
        page = listing(whose, limit=2, cursor=None)
        record.next_page(listing, whose, limit=2, cursor=page.next_cursor)
    for author in (None, name):
        page = posts.list(author=author, viewer_id=me, limit=2, cursor=None)
        record.next_page(posts.list, author=author, viewer_id=me, limit=2, cursor=page.next_cursor)
    page = posts.feed(me, limit=3, cursor=None)
    record.next_page(posts.feed, me, limit=3, cursor=page.next_cursor)
    users.follow(me, name)
    users.unfollow(me, name)
    users.update_profile(me, {"headline": "Planner", "skills": ["SQL"]})
    post = posts.create(me, "explained")["id"]
    posts.get(post, other)
    posts.update(me, post, "explained again")
    posts.like(other, post)
    posts.unlike(other, post)
    comment = posts.comment(other, post, "plan?")["id"]
    posts.comment(me, post, "another")
    page = posts.comments(post, limit=1, cursor=None)
    record.next_page(posts.comments, post, limit=1, cursor=page.next_cursor)
    posts.delete_comment(other, post, comment)
    posts.delete(me, post)


# On a page after the first, a statement that reads a range (it has a LIMIT) must start that range
# at the cursor, in the index: a bound shown in its plan (not a filter run on every row before it).
_RANGE_BOUND = re.compile(r"^SEARCH .*\(.*[<>]\(?\?|VIRTUAL TABLE INDEX \d+:M\S*[<>]")


def plan_problems(node: Node, statement: str, *, after_cursor: bool = False) -> list[str]:
    plan = [row[3] for row in node.db.conn.execute(f"EXPLAIN QUERY PLAN {statement}")]
    problems = [
        line
        for line in plan
        if "USE TEMP B-TREE" in line and not any(line == sort and where.search(statement) for sort, where in ALLOWED_SORTS)
    ]
    if after_cursor and " LIMIT " in statement and not any(_RANGE_BOUND.search(line) for line in plan):
        problems.append(f"the cursor does not bound the index range: {plan}")
    for line in plan:
        if (
            line.startswith("SCAN ")
            and not _NOT_TABLE_SCANS.match(line)
            and not any(line == scan and where.search(statement) for scan, where in ALLOWED_SCANS)
        ):
            problems.append(line)
    return problems


def test_every_product_statement_is_planned_on_an_index(network):
    record = Recorder()
    me, other = busiest(network, "follower_id", "follows"), busiest(network, "author_id", "posts")
    network.db.conn.set_trace_callback(record)
    try:
        exercise(network, record, me, other)
    finally:
        network.db.conn.set_trace_callback(None)
    product = {s: after for s, after in record.statements.items() if _PRODUCT.match(s) and not _STORE_INTERNALS.search(s)}
    assert len(product) > 30, f"too few statements were recorded to mean anything: {list(product)}"
    assert sum(product.values()) >= 8, "the pages after the first were not recorded"
    found = {statement: plan_problems(network, statement, after_cursor=after) for statement, after in product.items()}
    bad = {statement[:200]: problems for statement, problems in found.items() if problems}
    assert not bad, "statements planned without an index:\n" + "\n".join(f"{s}\n    {p}" for s, p in bad.items())


def test_the_check_sees_a_full_scan_and_a_sort():
    class Probe:
        def __init__(self, conn):
            self.db = type("Db", (), {"conn": conn})()

    import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    probe = Probe(conn)
    assert plan_problems(probe, "SELECT * FROM t WHERE b = 'x'") == ["SCAN t"]
    assert plan_problems(probe, "SELECT * FROM t WHERE a > 3 ORDER BY b LIMIT 5") == ["USE TEMP B-TREE FOR ORDER BY"]
    assert plan_problems(probe, "SELECT * FROM t WHERE a = 3") == []
    conn.execute("CREATE TABLE c (id INTEGER PRIMARY KEY, post_id INTEGER, x TEXT)")
    conn.execute("CREATE INDEX c_by_post ON c(post_id)")
    assert plan_problems(probe, "SELECT * FROM c WHERE c.post_id = 1 AND c.id > 5 ORDER BY c.id LIMIT 3") == []
    assert plan_problems(probe, "SELECT * FROM c WHERE c.post_id = 1 AND c.id > 5 ORDER BY c.id LIMIT 3", after_cursor=True) == []
    (problem,) = plan_problems(
        probe, "SELECT * FROM c WHERE c.post_id = 1 AND (c.id > 5 OR c.x = 'a') ORDER BY c.id LIMIT 3", after_cursor=True
    )
    assert problem.startswith("the cursor does not bound the index range")
    conn.execute("CREATE VIRTUAL TABLE f USING fts5(x)")
    assert plan_problems(probe, "SELECT rowid FROM f WHERE f MATCH 'a' ORDER BY rowid") == []
    assert plan_problems(probe, "SELECT rowid FROM f WHERE x = 'a'") == ["SCAN f VIRTUAL TABLE INDEX 0:"]
