"""Node-to-node signatures on their own: the replay cache's bound and window, keys accepted during a
rotation and refused after its stated end, the older form refused unless asked for, and the streamed
snapshot's records refused the moment one byte of them is altered."""

from __future__ import annotations

import hashlib

import pytest

from talentnest.cluster import auth, snapshot_stream
from talentnest.cluster.auth import Keyring, NonceCache, RequestAuth, SignatureError
from talentnest.cluster.keys import newest_accepted
from talentnest.errors import SnapshotError

NOW = 1_700_000_000.0
OLD, NEW = b"old-cluster-key-old-cluster-key!", b"new-cluster-key-new-cluster-key!"


def test_a_nonce_is_accepted_once_within_the_window_and_forgotten_after_it():
    cache = NonceCache()
    cache.admit("a" * 32, int(NOW), NOW)
    with pytest.raises(SignatureError, match="already used"):
        cache.admit("a" * 32, int(NOW), NOW + 29)
    cache.admit("b" * 32, int(NOW) + 31, NOW + 31)  # the first one's window is over: dropped
    assert len(cache) == 1


def test_the_replay_cache_is_bounded_and_past_its_bound_refuses_what_it_can_no_longer_check():
    cache = NonceCache(limit=100)
    for n in range(250):
        cache.admit(f"{n:032x}", int(NOW) + n // 100, NOW)
    assert len(cache) == 100
    # The forgotten nonces were signed at NOW or NOW + 1: anything signed then is refused now...
    with pytest.raises(SignatureError, match="older than"):
        cache.admit(f"{0:032x}", int(NOW), NOW)
    with pytest.raises(SignatureError, match="older than"):
        cache.admit("f" * 32, int(NOW) + 1, NOW)
    # ... while a request signed later still passes.
    cache.admit("e" * 32, int(NOW) + 2, NOW)


def request_auth(keys: Keyring, **options) -> RequestAuth:
    return RequestAuth(keys, lambda: NOW, **options)


def check(verifier: RequestAuth, header: str, body: bytes = b"{}") -> auth.Verified:
    return verifier.check({}, header, "POST", "/cluster/heartbeat", body)


def test_previous_keys_are_accepted_until_the_stated_time_and_answers_use_the_key_that_signed():
    keys = Keyring(NEW, (OLD,), previous_until=NOW + 60)
    verified = check(request_auth(keys), auth.sign(OLD, "POST", "/cluster/heartbeat", b"{}", now=NOW))
    assert verified.key == OLD
    answer = request_auth(keys).sign_answer(verified, 200, hashlib.sha256(b"ok").hexdigest())
    auth.verify_answer(OLD, answer, verified.nonce, 200, hashlib.sha256(b"ok").hexdigest())
    with pytest.raises(SignatureError):
        auth.verify_answer(NEW, answer, verified.nonce, 200, hashlib.sha256(b"ok").hexdigest())

    expired = RequestAuth(keys, lambda: NOW + 61)
    with pytest.raises(SignatureError, match="wrong"):
        expired.check({}, auth.sign(OLD, "POST", "/cluster/heartbeat", b"{}", now=NOW + 61), "POST", "/cluster/heartbeat", b"{}")
    check(request_auth(keys), auth.sign(NEW, "POST", "/cluster/heartbeat", b"{}", now=NOW))


def test_the_older_form_without_a_nonce_is_refused_unless_a_rolling_upgrade_asks_for_it():
    legacy = auth.sign_legacy(NEW, "POST", "/cluster/heartbeat", b"{}", now=NOW)
    with pytest.raises(SignatureError, match="older release"):
        check(request_auth(Keyring(NEW)), legacy)
    verified = check(request_auth(Keyring(NEW), accept_legacy=True), legacy)
    assert verified.nonce is None
    assert request_auth(Keyring(NEW)).sign_answer(verified, 200, "x") is None  # its sender checks no answer


def test_a_verdict_is_kept_in_the_request_so_a_second_check_does_not_count_the_nonce_again():
    verifier, scope = request_auth(Keyring(NEW)), {}
    header = auth.sign(NEW, "POST", "/cluster/heartbeat", b"{}", now=NOW)
    first = verifier.check(scope, header, "POST", "/cluster/heartbeat", b"{}")
    assert verifier.check(scope, header, "POST", "/cluster/heartbeat", b"{}") is first
    with pytest.raises(SignatureError, match="already used"):
        verifier.check({}, header, "POST", "/cluster/heartbeat", b"{}")


def test_the_key_derived_from_the_jwt_secret_rotates_with_it():
    keys = auth.keyring(jwt_secret="new-jwt", cluster_secret=None, jwt_previous=["old-jwt"], previous_until=NOW)
    assert keys.current == auth.cluster_key(jwt_secret="new-jwt", cluster_secret=None)
    assert keys.previous == (auth.cluster_key(jwt_secret="old-jwt", cluster_secret=None),)
    explicit = auth.keyring(jwt_secret="new-jwt", cluster_secret="c2", jwt_previous=["old-jwt"], previous_until=NOW)
    assert explicit.previous == ()  # an explicit CLUSTER_SECRET does not change with the JWT secret


@pytest.mark.parametrize(
    ("theirs", "expected"),
    [
        ([("new", "old"), ("new", "old")], "new"),
        ([("new", "old"), ("old",)], "old"),
        ([None, ("new", "old")], "old"),
        ([], "new"),
        ([("other",)], "old"),
    ],
    ids=["all have the new key", "one has not yet", "one not heard from", "alone", "none in common"],
)
def test_new_tokens_are_signed_with_the_newest_key_every_member_accepts(theirs, expected):
    assert newest_accepted(["new", "old"], theirs) == expected


# --- the streamed snapshot's records -----------------------------------------------------------


def stream_of(records: list[tuple[bytes, bytes]], key: bytes = NEW, nonce: str = "ab" * 16) -> bytes:
    digest, out = hashlib.sha256(), bytearray()
    for kind, payload in records:
        data = snapshot_stream.record(kind, payload)
        digest.update(data)
        signature = snapshot_stream.record(b"S", auth.sign_answer(key, nonce, 200, digest.hexdigest()).encode())
        digest.update(signature)
        out += data + signature
    return bytes(out)


def reader(nonce: str = "ab" * 16) -> snapshot_stream.RecordReader:
    def authenticate(signature: str, body_sha256: str) -> None:
        auth.verify_answer(NEW, signature, nonce, 200, body_sha256)

    return snapshot_stream.RecordReader(authenticate)


RECORDS = [(b"H", b'{"header": 1}'), (b"D", b"chunk one" * 100), (b"D", b"chunk two" * 100), (b"E", b"{}")]


def test_records_are_handed_out_only_once_their_signature_verifies_however_the_bytes_are_cut():
    body = stream_of(RECORDS)
    for cut in (1, 7, 100, len(body)):
        records = reader()
        got = []
        for start in range(0, len(body), cut):
            got += records.feed(body[start : start + cut])
        assert got == RECORDS and records.finished_cleanly()


@pytest.mark.parametrize("position", [0, 5, 30, 200, 600, -3])
def test_one_altered_byte_anywhere_stops_the_stream_at_that_record(position):
    body = bytearray(stream_of(RECORDS))
    body[position] ^= 0x01
    records = reader()
    with pytest.raises((SignatureError, SnapshotError)):
        records.feed(bytes(body))


def test_records_signed_for_another_request_or_with_another_key_are_refused():
    for body in (stream_of(RECORDS, nonce="cd" * 16), stream_of(RECORDS, key=OLD)):
        with pytest.raises(SignatureError):
            reader().feed(body)


def test_a_record_without_its_signature_is_not_handed_out():
    body = snapshot_stream.record(b"H", b"{}") + snapshot_stream.record(b"D", b"x")
    with pytest.raises(SnapshotError, match="not followed by its signature"):
        reader().feed(body)
