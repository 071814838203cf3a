"""Brute-force login: failures per account and per client address end in 429 with Retry-After.

The node's throttle is swapped for one with small allowances and a clock the test moves, so
windows pass without waiting. A client address other than the TestClient's own is given the way
a peer gives it: a signed X-Forwarded-For.
"""

from __future__ import annotations

import json

import pytest

from talentnest.cluster.auth import HEADER, sign
from talentnest.services.throttle import LoginThrottle, ThrottlePolicy
from tests.api._helpers import Api, assert_error

PER_ACCOUNT, PER_ADDRESS, WINDOW = 3, 6, 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(api: Api, clock: Clock) -> LoginThrottle:
    small = LoginThrottle(ThrottlePolicy(per_account=PER_ACCOUNT, per_address=PER_ADDRESS, window=WINDOW), clock=clock)
    api.app.state.product.auth.throttle = small
    return small


def login(api: Api, password: str, *, address: str | None = None, unsigned_headers: dict | None = None, **who):
    """POST /api/auth/login; ``address`` is sent as a peer would (signed X-Forwarded-For)."""
    body = json.dumps({**who, "password": password}).encode()
    headers = {"Content-Type": "application/json", **(unsigned_headers or {})}
    if address is not None:
        headers["X-Forwarded-For"] = address
        headers[HEADER] = sign(api.app.state.node.key, "POST", "/api/auth/login", body)
    return api.client.post("/api/auth/login", content=body, headers=headers)


def fail(api: Api, times: int, **kwargs) -> None:
    for _ in range(times):
        assert_error(login(api, "wrong-password", **kwargs), 401, "invalid_credentials")


def assert_throttled(response, *, retry_after: int | None = None) -> int:
    assert_error(response, 429, "login_throttled")
    seconds = int(response.headers["retry-after"])
    assert 1 <= seconds <= WINDOW
    if retry_after is not None:
        assert seconds == retry_after
    return seconds


def test_repeated_failures_for_one_account_get_429_even_with_the_right_password(api: Api, throttle, make_member, clock):
    make_member("victim", password="right-password")
    fail(api, PER_ACCOUNT, username="victim")

    clock.now += 10
    with api.unchanged():
        assert_throttled(login(api, "wrong-password", username="victim"), retry_after=int(WINDOW) - 10)
        # Not even the right password gets in while throttled: a guess cannot be told to be right.
        assert_throttled(login(api, "right-password", username="victim"))


def test_the_account_opens_again_once_its_failures_leave_the_window(api: Api, throttle, make_member, clock):
    make_member("victim", password="right-password")
    fail(api, PER_ACCOUNT, username="victim")
    seconds = assert_throttled(login(api, "right-password", username="victim"))

    clock.now += seconds - 1
    assert_throttled(login(api, "right-password", username="victim"), retry_after=1)
    clock.now += 1

    assert login(api, "right-password", username="victim").status_code == 200


def test_throttled_attempts_are_not_counted_so_they_do_not_extend_the_wait(api: Api, throttle, make_member, clock):
    make_member("victim", password="right-password")
    fail(api, PER_ACCOUNT, username="victim")
    for _ in range(20):
        assert_throttled(login(api, "wrong-password", username="victim"))

    clock.now += WINDOW

    assert login(api, "right-password", username="victim").status_code == 200


def test_username_and_email_of_one_account_share_one_count(api: Api, throttle, make_member):
    make_member("victim", email="victim@example.com", password="right-password")
    fail(api, 1, username="victim")
    fail(api, 1, email="VICTIM@example.com")
    fail(api, PER_ACCOUNT - 2, username="victim@example.com")

    assert_throttled(login(api, "right-password", username="VICTIM"))


def test_unknown_accounts_are_throttled_like_known_ones(api: Api, throttle):
    fail(api, PER_ACCOUNT, username="nobody")

    assert_throttled(login(api, "any-password", username="nobody"))


def test_a_success_on_another_account_does_not_reset_a_count(api: Api, throttle, make_member):
    make_member("victim", password="right-password")
    make_member("attacker", password="own-password")
    fail(api, PER_ACCOUNT - 1, username="victim")

    assert login(api, "own-password", username="attacker").status_code == 200
    fail(api, 1, username="victim")

    assert_throttled(login(api, "right-password", username="victim"))


def test_an_accounts_own_success_clears_its_count(api: Api, throttle, make_member):
    make_member("owner", password="right-password")
    fail(api, PER_ACCOUNT - 1, username="owner")
    assert login(api, "right-password", username="owner").status_code == 200

    fail(api, PER_ACCOUNT - 1, username="owner")  # would be throttled if the earlier failures still counted

    assert login(api, "right-password", username="owner").status_code == 200


def test_failures_over_many_accounts_from_one_address_get_429_for_that_address_only(api: Api, throttle, make_member):
    make_member("victim", password="right-password")
    for i in range(PER_ADDRESS):
        fail(api, 1, username=f"guess{i}", address="203.0.113.7")

    assert_throttled(login(api, "right-password", username="victim", address="203.0.113.7"))
    assert login(api, "right-password", username="victim", address="198.51.100.1").status_code == 200
    assert login(api, "right-password", username="victim").status_code == 200  # the TestClient's own address


def test_a_success_does_not_reset_the_address_count(api: Api, throttle, make_member):
    make_member("attacker", password="own-password")
    for i in range(PER_ADDRESS - 1):
        fail(api, 1, username=f"guess{i}", address="203.0.113.7")
        assert login(api, "own-password", username="attacker", address="203.0.113.7").status_code == 200

    fail(api, 1, username="one-more", address="203.0.113.7")

    assert_throttled(login(api, "own-password", username="attacker", address="203.0.113.7"))


def test_an_unsigned_x_forwarded_for_is_ignored(api: Api, throttle, make_member):
    make_member("victim", password="right-password")
    # A client that names a new address on each attempt is still counted as itself.
    for i in range(PER_ADDRESS):
        fail(api, 1, username=f"guess{i}", unsigned_headers={"X-Forwarded-For": f"192.0.2.{i}"})

    assert_throttled(login(api, "right-password", username="victim", unsigned_headers={"X-Forwarded-For": "192.0.2.200"}))
    assert login(api, "right-password", username="victim", address="192.0.2.200").status_code == 200


def test_a_forwarded_for_signed_with_another_key_is_refused_and_escapes_nothing(api: Api, throttle, make_member):
    make_member("victim", password="right-password")
    body = json.dumps({"username": "victim", "password": "right-password"}).encode()
    forged = {
        "Content-Type": "application/json",
        "X-Forwarded-For": "198.51.100.9",
        HEADER: sign(b"not-the-cluster-key", "POST", "/api/auth/login", body),
    }
    for i in range(PER_ADDRESS):
        fail(api, 1, username=f"guess{i}")

    # A request that claims to come from a node but fails the signature is refused before it runs
    # (it is not a login, so it is neither counted under the address it names nor let through).
    assert_error(api.client.post("/api/auth/login", content=body, headers=forged), 401, "invalid_signature")
    assert_throttled(api.client.post("/api/auth/login", content=body, headers={"Content-Type": "application/json"}))
