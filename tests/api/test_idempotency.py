"""Idempotency-Key on one node: a retry gets the first answer, the key reused for another request is
refused, a commit the disk refuses is a 503, and keys are forgotten after a day."""

from __future__ import annotations

import logging
import sqlite3
import time

from fastapi.testclient import TestClient

from talentnest.app import create_app
from talentnest.cluster import idempotency
from talentnest.cluster.idempotency import TTL as IDEMPOTENCY_TTL
from tests.api._helpers import assert_error, bearer, fast_settings


def post(client, token: str, key: str, content: str = "once"):
    return client.post("/api/posts", json={"content": content}, headers={**bearer(token), "Idempotency-Key": key})


def test_a_retry_with_the_same_key_gets_the_first_answer_and_writes_nothing(client, app, make_member):
    member = make_member()
    first = post(client, member.token, "k-1")
    lsn = app.state.db.last_lsn
    again = post(client, member.token, "k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert app.state.db.last_lsn == lsn, "the retry wrote something"
    assert post(client, member.token, "k-2").json()["id"] != first.json()["id"]


def test_the_key_reused_with_another_body_path_or_method_is_refused_422_and_changes_nothing(api, client, make_member):
    member = make_member()

    def reused(method: str, url: str, key: str, **kwargs) -> str:
        headers = {**member.headers, "Idempotency-Key": key}
        return api.refused(method, url, 422, "idempotency_key_reused", headers=headers, **kwargs)["message"]

    first = post(client, member.token, "k-1", content="the first")
    assert first.status_code == 201
    post_id = first.json()["id"]
    assert "another body" in reused("POST", "/api/posts", "k-1", json={"content": "another"})
    # Another route, and another method on a route the key was used on: the message names the first.
    assert "for POST /api/posts;" in reused("POST", f"/api/posts/{post_id}/comments", "k-1", json={"content": "c"})
    liked = client.post(f"/api/posts/{post_id}/like", headers={**member.headers, "Idempotency-Key": "like-1"})
    assert liked.status_code in (200, 201), liked.text
    assert f"for POST /api/posts/{post_id}/like;" in reused("DELETE", f"/api/posts/{post_id}/like", "like-1")
    assert api.ok("GET", f"/api/posts/{post_id}")["like_count"] == 1

    # The first request itself is still replayed, and the key is the caller's own: another token may use it.
    again = post(client, member.token, "k-1", content="the first")
    assert again.status_code == 201 and again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = post(client, make_member().token, "k-1", content="another")
    assert other.status_code == 201 and other.json()["id"] != post_id


def test_an_answer_kept_without_a_claim_by_an_earlier_release_is_replayed_whatever_the_body(api, client, make_member):
    """An earlier release keeps only the answer row: its retries are replayed as that release does."""
    member = make_member()
    first = post(client, member.token, "old", content="the first")
    use = idempotency.Use.of("old", "POST", "/api/posts", "/api/posts", b"", member.headers["Authorization"])
    api.write_sql("DELETE FROM _tn_requests WHERE key = ?", use.claim)
    with api.unchanged():
        again = post(client, member.token, "old", content="another")
    assert again.status_code == 201 and again.json() == first.json() and again.headers["idempotent-replayed"] == "true"


def test_a_commit_the_disk_refuses_is_503_storage_failure_logged_once_without_a_traceback(tmp_path, caplog):
    """The answer and the write commit together, after the route ran: a full disk there is the node's
    503, as it is inside a route, not an exception past the app (a traceback in the server's log)."""
    app = create_app(fast_settings(tmp_path / "data"))
    with TestClient(app) as client:
        token = client.post(
            "/api/auth/signup", json={"name": "Ann", "username": "ann", "email": "ann@example.com", "password": "pass123"}
        ).json()["token"]
        db = app.state.db
        lsn = db.last_lsn
        append_entry = db._append_entry

        def full_disk(conn, pending):
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = sqlite3.SQLITE_FULL  # what SQLite sets when the disk fills at this step
            raise error

        db._append_entry = full_disk
        try:
            with caplog.at_level(logging.WARNING):
                refused = post(client, token, "k-full")
        finally:
            db._append_entry = append_entry
        error = assert_error(refused, 503, "storage_failure")
        assert "the disk is full" in error["message"] and refused.headers["retry-after"] == "1"
        assert db.last_lsn == lsn and client.get("/api/posts").json()["items"] == [], "the refused write was kept"
        failed = [r for r in caplog.records if "POST /api/posts failed" in r.getMessage()]
        assert [r.levelno for r in failed] == [logging.WARNING], caplog.text
        assert not [r for r in caplog.records if r.exc_info], caplog.text


def test_keys_older_than_a_day_are_forgotten_by_the_leader(client, app, make_member):
    member = make_member()
    first = post(client, member.token, "old-key")

    def expire(now: float) -> int:  # run on the app's loop thread, where the node runs it
        return idempotency.expire(app.state.db, now - IDEMPOTENCY_TTL)

    assert client.portal.call(expire, time.time()) == 0, "a fresh key must be kept"
    assert client.portal.call(expire, time.time() + IDEMPOTENCY_TTL + 60) == 2, "the answer and its claim"
    # Forgotten: the same key is a new request now, even another one.
    second = post(client, member.token, "old-key", content="another")
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]


def test_two_requests_with_one_key_at_once_write_once_and_both_get_its_answer(client, app):
    # Both pass the key's check before either has written (a signup waits for its password hash off the
    # loop); the second's commit then finds the key taken: it is rolled back and answered as a retry.
    import threading

    lsn = app.state.db.last_lsn
    body = {"name": "Ada", "username": "ada_once", "email": "ada_once@example.com", "password": "correct horse battery"}
    answers: list = [None] * 4
    start = threading.Barrier(len(answers))

    def sign_up(i: int) -> None:
        start.wait()
        answers[i] = client.post("/api/auth/signup", json=body, headers={"Idempotency-Key": "signup-once"})

    threads = [threading.Thread(target=sign_up, args=(i,)) for i in range(len(answers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [a.status_code for a in answers] == [201] * len(answers), [a.text[:200] for a in answers]
    assert len({a.json()["user"]["id"] if "user" in a.json() else a.json()["token"] for a in answers}) == 1
    assert app.state.db.last_lsn == lsn + 1, "written once"
