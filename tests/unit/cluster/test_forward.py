"""A follower relaying the leader's answer to a write: only once it holds that very write."""

from __future__ import annotations

import json

import pytest

from talentnest.cluster.forward import CARRIES, Forwarder, ForwardStats, Responder, unwrap_carried, wrap_carried
from talentnest.cluster.transport import Reply
from talentnest.store.schema import product_database


class Coordinator:
    node_id, role_name = 514, "follower"

    def __init__(self):
        self.carried: list[bytes] = []

    async def apply_carried(self, body):
        self.carried.append(body)

    async def wait_applied(self, lsn, timeout):
        return True

    def unhealthy(self):
        return None


@pytest.fixture
def follower(tmp_path):
    db = product_database(tmp_path)
    db.open()
    db.term = 3  # the entry at LSN 1 was written in term 3 (epoch 0), by the leader that now leads
    with db.write() as conn:
        conn.execute(
            "INSERT INTO users(username, email, name, password_hash, created_at, updated_at) "
            "VALUES ('a', 'a@x', 'a', 'x', 't', 't')"
        )
    yield db
    db.close()


async def relay(db, headers: dict[str, str], body: bytes = b'{"token": "t"}', *, verified=True, coordinator=None):
    coordinator = coordinator or Coordinator()
    forwarder = Forwarder(coordinator, db, Responder(coordinator, db), ForwardStats())
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await forwarder._relay(send, Reply(201, {"Content-Type": "application/json", **headers}, body, verified))
    relayed = {k: v for k, v in sent[0]["headers"]}
    assert int(relayed[b"content-length"]) == len(sent[1]["body"])
    assert CARRIES not in relayed, "the carrying is between nodes only"
    return sent[0]["status"], json.loads(sent[1]["body"])


async def test_the_answer_is_relayed_when_this_node_holds_the_entry_the_leader_wrote(follower):
    status, body = await relay(follower, {"X-Cluster-LSN": "1", "X-Cluster-Entry": "3.0"})
    assert (status, body) == (201, {"token": "t"})


async def test_an_answer_for_an_entry_replaced_at_that_lsn_is_not_relayed_as_a_success(follower):
    # A deposed leader wrote LSN 1 in term 2; the cluster's LSN 1 is another write (seed 3874: the
    # relayed signup's token named an account written again with another key).
    status, body = await relay(follower, {"X-Cluster-LSN": "1", "X-Cluster-Entry": "2.0"})
    assert status == 503 and body["error"]["code"] == "write_lost"
    assert "Idempotency-Key" in body["error"]["message"]


@pytest.mark.parametrize("value", ["", "3", "3.", ".0", "x.0", "3.0.1", "-3.0", "9" * 30 + ".0"])
async def test_a_malformed_entry_header_from_a_peer_is_not_relayed_as_a_success(follower, value):
    status, body = await relay(follower, {"X-Cluster-LSN": "1", "X-Cluster-Entry": value})
    assert status == 503 and body["error"]["code"] == "write_unverified"
    assert "Idempotency-Key" in body["error"]["message"]


async def test_an_answer_without_an_entry_header_from_an_older_release_is_relayed(follower):
    status, body = await relay(follower, {"X-Cluster-LSN": "1"})
    assert (status, body) == (201, {"token": "t"})


CARRYING = {"X-Cluster-LSN": "1", "X-Cluster-Entry": "3.0", CARRIES.decode(): "1"}


async def test_an_answer_that_carries_its_entry_is_applied_here_and_relayed_without_it(follower):
    coordinator = Coordinator()
    status, body = await relay(follower, CARRYING, wrap_carried(b'{"e": 1}', b'{"token": "t"}'), coordinator=coordinator)
    assert (status, body) == (201, {"token": "t"})
    assert coordinator.carried == [b'{"e": 1}']


@pytest.mark.parametrize(
    "body, verified",
    [
        (wrap_carried(b'{"e": 1}', b'{"token": "t"}'), False),
        (b'{"token": "t"}', True),
        (b"99\n{}", True),
        (b"-1\n{}", True),
        (b"\n{}", True),
    ],
    ids=["signature not checked", "no length", "longer than the body", "negative", "empty length"],
)
async def test_an_answer_that_carries_an_entry_unchecked_or_unreadable_is_neither_applied_nor_relayed(follower, body, verified):
    coordinator = Coordinator()
    status, answer = await relay(follower, CARRYING, body, verified=verified, coordinator=coordinator)
    assert status == 503 and answer["error"]["code"] == "write_unverified"
    assert coordinator.carried == []


def test_a_carried_entry_is_framed_by_its_length():
    assert unwrap_carried(wrap_carried(b"", b"{}")) == (b"", b"{}")
    assert unwrap_carried(wrap_carried(b"a\nb", b"")) == (b"a\nb", b"")
    assert unwrap_carried(b"1" * 10 + b"\n") is None
