"""Idempotency-Key on one node: a retry gets the first answer, and keys are forgotten after a day."""

from __future__ import annotations

import time

from talentnest.cluster import idempotency
from talentnest.cluster.idempotency import TTL as IDEMPOTENCY_TTL


def post(client, token: str, key: str, content: str = "once"):
    return client.post(
        "/api/posts", json={"content": content}, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    )


def test_a_retry_with_the_same_key_gets_the_first_answer_and_writes_nothing(client, app, make_member):
    member = make_member()
    first = post(client, member.token, "k-1")
    lsn = app.state.db.last_lsn
    again = post(client, member.token, "k-1", content="changed on the retry")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert app.state.db.last_lsn == lsn, "the retry wrote something"
    assert post(client, member.token, "k-2").json()["id"] != first.json()["id"]


def test_keys_older_than_a_day_are_forgotten_by_the_leader(client, app, make_member):
    member = make_member()
    first = post(client, member.token, "old-key")

    def expire(now: float) -> int:  # run on the app's loop thread, where the node runs it
        return idempotency.expire(app.state.db, now - IDEMPOTENCY_TTL)

    assert client.portal.call(expire, time.time()) == 0, "a fresh key must be kept"
    assert client.portal.call(expire, time.time() + IDEMPOTENCY_TTL + 60) == 1
    # Forgotten: the same key is a new request now.
    second = post(client, member.token, "old-key")
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
