"""A follower relaying the leader's answer to a write: only once it holds that very write."""

from __future__ import annotations

import json

import pytest

from talentnest.cluster.forward import Forwarder, ForwardStats, Responder
from talentnest.cluster.transport import Reply
from talentnest.store.schema import product_database


class Coordinator:
    node_id, role_name = 514, "follower"

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


async def relay(db, headers: dict[str, str]) -> tuple[int, dict]:
    coordinator = Coordinator()
    forwarder = Forwarder(coordinator, db, Responder(coordinator, db), ForwardStats())
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await forwarder._relay(send, Reply(201, {"Content-Type": "application/json", **headers}, b'{"token": "t"}'))
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
