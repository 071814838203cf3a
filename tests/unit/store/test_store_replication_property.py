"""Property: whatever the product writes and however the log reaches a follower (in batches, with
duplicates, re-deliveries, out of order, across restarts), the follower holds exactly the leader's
data at the LSN it reports, ends equal to the leader, and can take over its ids."""

from __future__ import annotations

import random
import tempfile
from contextlib import suppress
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_factories import Node, make_node

from talentnest.errors import ProductError

index = st.integers(min_value=0, max_value=50)
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)

write_op = st.one_of(
    st.tuples(st.just("signup")),
    st.tuples(st.just("post"), index, text),
    st.tuples(st.just("edit"), index, text),
    st.tuples(st.just("delete_post"), index),
    st.tuples(st.just("like"), index, index),
    st.tuples(st.just("unlike"), index, index),
    st.tuples(st.just("follow"), index, index),
    st.tuples(st.just("unfollow"), index, index),
    st.tuples(st.just("comment"), index, index, text),
    st.tuples(st.just("profile"), index, st.lists(text, max_size=3), text),
    st.tuples(st.just("delete_user"), index),
)
delivery = st.tuples(
    st.just("deliver"),
    st.integers(min_value=0, max_value=60),  # first entry of the batch (may be long applied)
    st.integers(min_value=1, max_value=8),  # batch length
    st.integers(min_value=0, max_value=3),  # entries repeated inside the batch
    st.randoms(use_true_random=False),  # order inside the batch
)
step = st.one_of(write_op, write_op, delivery, st.tuples(st.just("restart")))


class Scenario:
    def __init__(self, root: Path):
        self.leader = make_node(root / "leader")
        self.follower = make_node(root / "follower")
        self.checksum_at = {0: self.leader.db.checksum()}
        self.signups = 0

    def close(self) -> None:
        self.leader.db.close()
        self.follower.db.close()

    def pick(self, table: str, i: int) -> int | None:
        return self.leader.pick(table, i)

    def username(self, user_id: int) -> str:
        return self.leader.username(user_id)

    def write(self, op: tuple) -> None:
        node, kind = self.leader, op[0]
        if kind == "signup":
            self.signups += 1
            node.signup(f"user{self.signups}")
        elif kind == "delete_user":
            if (user := self.pick("users", op[1])) is not None:
                with node.db.write() as conn:
                    conn.execute("DELETE FROM users WHERE id = ?", (user,))
        elif kind in ("edit", "delete_post"):
            if (post := self.pick("posts", op[1])) is not None:
                author = node.posts.author_of(post)
                if kind == "edit":
                    node.post_service.update(author, post, op[2])
                else:
                    node.post_service.delete(author, post)
        elif kind == "profile":
            if (user := self.pick("users", op[1])) is not None:
                node.user_service.update_profile(user, {"skills": op[2], "headline": op[3][:100]})
        else:
            user = self.pick("users", op[1])
            if user is None:
                return
            if kind == "post":
                node.post(user, op[2])
            elif kind in ("follow", "unfollow"):
                method = node.user_service.follow if kind == "follow" else node.user_service.unfollow
                method(user, self.username(self.pick("users", op[2])))
            elif (post := self.pick("posts", op[2])) is not None:
                if kind == "like":
                    node.post_service.like(user, post)
                elif kind == "unlike":
                    node.post_service.unlike(user, post)
                else:
                    node.post_service.comment(user, post, op[3])

    def deliver(self, start: int, length: int, repeats: int, rng: random.Random) -> None:
        entries = self.leader.all_entries()
        batch = entries[start : start + length]
        batch = batch + batch[:repeats]
        rng.shuffle(batch)
        before = self.follower.db.last_lsn
        present = {e.lsn for e in batch}
        expected = before
        while expected + 1 in present:
            expected += 1
        result = self.follower.db.apply(batch)
        assert result.applied_lsn == expected == self.follower.db.last_lsn
        assert result.applied == expected - before
        assert result.gap == any(lsn > expected + 1 for lsn in present)

    def check(self) -> None:
        lsn = self.follower.db.last_lsn
        assert self.follower.db.checksum() == self.checksum_at[lsn], f"follower at LSN {lsn} differs from the leader then"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps=st.lists(step, max_size=45))
def test_follower_matches_leader_under_any_delivery(steps):
    with tempfile.TemporaryDirectory() as root:
        scenario = Scenario(Path(root))
        try:
            run(scenario, steps)
        finally:
            scenario.close()


def run(scenario: Scenario, steps: list[tuple]) -> None:
    leader, follower = scenario.leader, scenario.follower
    for op in steps:
        if op[0] == "deliver":
            scenario.deliver(*op[1:])
        elif op[0] == "restart":
            follower.db.reopen()
        else:
            with suppress(ProductError):  # refused by the product's rules: nothing written
                scenario.write(op)
            scenario.checksum_at[leader.db.last_lsn] = leader.db.checksum()
        scenario.check()

    follower.catch_up_from(leader)
    assert follower.db.last_lsn == leader.db.last_lsn
    assert follower.db.checksum() == leader.db.checksum()
    assert [e.to_json() for e in follower.all_entries()] == [e.to_json() for e in leader.all_entries()]
    check_takeover(leader, follower)


def check_takeover(leader: Node, follower: Node) -> None:
    """The follower becomes the writer: the ids it hands out are the ones the leader would have."""
    sequences = "SELECT name, seq FROM sqlite_sequence ORDER BY name"
    assert follower.db.conn.execute(sequences).fetchall() == leader.db.conn.execute(sequences).fetchall()
    follower.db.term = leader.db.term + 1
    new_user = follower.signup("successor")
    new_post = follower.post(new_user, "after the failover")
    with leader.db.write() as conn:
        assert (
            leader.users.insert(
                conn, username="successor", email="successor@example.org", name="S", password_hash="x", token_key="k", now="t"
            )
            == new_user
        )
        assert leader.posts.insert(conn, new_user, "after the failover", "t") == new_post
