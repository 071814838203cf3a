"""User tokens during a key rotation: each names its key (kid), previous keys are accepted until the
stated time, a token of an older release (no kid) is still accepted, and an unknown kid is refused; a
verified token is remembered only while it stays valid."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from talentnest.config import MAX_CLOCK_SKEW_SECONDS
from talentnest.errors import Unauthorized
from talentnest.services import auth as auth_module
from talentnest.services.auth import TOKEN_ISSUER, Tokens, token_key_id

NEW, OLD = "new-jwt-secret-new-jwt-secret-new!", "old-jwt-secret-old-jwt-secret-old!"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_token_names_its_key_and_the_chosen_key_signs_it():
    clock = Clock()
    rotating = Tokens(NEW, ttl=3600, clock=clock, previous=[OLD], previous_until=clock.now + 60, choose_key=lambda kids: kids[-1])
    token = rotating.issue(7, "ada")
    assert jwt.get_unverified_header(token)["kid"] == token_key_id(OLD)
    assert Tokens(OLD, ttl=3600, clock=clock).user_id(token) == 7, "a node that has only the old key accepts it"
    assert rotating.user_id(token) == 7
    assert jwt.get_unverified_header(Tokens(NEW, ttl=3600, clock=clock).issue(7, "ada"))["kid"] == token_key_id(NEW)


def test_previous_keys_are_accepted_until_the_stated_time_then_refused():
    clock = Clock()
    old_token = Tokens(OLD, ttl=86400, clock=clock).issue(7, "ada")
    rotated = Tokens(NEW, ttl=86400, clock=clock, previous=[OLD], previous_until=clock.now + 60)
    assert rotated.user_id(old_token) == 7
    clock.now += 61
    with pytest.raises(Unauthorized, match="does not accept"):
        rotated.user_id(old_token)
    assert rotated.accepted_kids() == (token_key_id(NEW),)
    assert jwt.get_unverified_header(rotated.issue(7, "ada"))["kid"] == token_key_id(NEW)


def test_a_token_without_kid_from_an_older_release_is_checked_against_every_accepted_key():
    clock = Clock()
    claims = {"sub": "7", "iss": TOKEN_ISSUER, "iat": int(clock.now), "exp": int(clock.now) + 60}
    older = jwt.encode(claims, OLD, algorithm="HS256")
    assert Tokens(NEW, ttl=60, clock=clock, previous=[OLD], previous_until=clock.now + 60).user_id(older) == 7
    with pytest.raises(Unauthorized):
        Tokens(NEW, ttl=60, clock=clock).user_id(older)


@pytest.mark.parametrize("kid", ["0123456789abcdef", ["a"], 5, {"k": 1}])
def test_a_kid_this_node_does_not_hold_is_refused(kid):
    clock = Clock()
    claims = {"sub": "7", "iss": TOKEN_ISSUER, "iat": int(clock.now), "exp": int(clock.now) + 60}

    def part(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signed = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{part(claims)}"
    digest = hmac.new(NEW.encode(), signed.encode(), hashlib.sha256).digest()
    token = f"{signed}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"
    with pytest.raises(Unauthorized):
        Tokens(NEW, ttl=60, clock=clock).user_id(token)


def test_a_remembered_token_is_refused_once_it_expires():
    # Verified (and remembered) while valid, then asked again after its expiry: PyJWT's rule (exp against
    # the wall time, MAX_CLOCK_SKEW_SECONDS of leeway) must refuse it from memory too.
    ttl = 3600
    clock = Clock()
    clock.now = time.time() - ttl - MAX_CLOCK_SKEW_SECONDS + 2  # expires 1-2 s from now, leeway included
    tokens = Tokens(NEW, ttl=ttl, clock=clock)
    token = tokens.issue(7, "ada")
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert tokens.user_id(token) == 7
    assert tokens.user_id(token) == 7, "asked again while valid: answered (from memory)"
    while time.time() <= expires + MAX_CLOCK_SKEW_SECONDS:  # the condition itself: the wall time passing exp
        time.sleep(0.05)
    with pytest.raises(Unauthorized) as refused:
        tokens.user_id(token)
    assert refused.value.code == "token_expired"


def test_a_remembered_token_without_kid_is_refused_once_its_key_is_no_longer_accepted():
    clock = Clock()
    claims = {"sub": "7", "iss": TOKEN_ISSUER, "iat": int(clock.now), "exp": int(clock.now) + 600}
    older = jwt.encode(claims, OLD, algorithm="HS256")
    rotated = Tokens(NEW, ttl=600, clock=clock, previous=[OLD], previous_until=clock.now + 60)
    assert rotated.user_id(older) == 7
    clock.now += 61
    with pytest.raises(Unauthorized):
        rotated.user_id(older)


def test_refused_tokens_are_not_remembered_and_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(auth_module, "VERIFIED_TOKENS_KEPT", 3)
    clock = Clock()
    tokens = Tokens(NEW, ttl=600, clock=clock)
    forged = jwt.encode({"sub": "7", "iss": TOKEN_ISSUER, "iat": int(clock.now), "exp": int(clock.now) + 600}, OLD)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            tokens.user_id(forged)
    issued = [tokens.issue(user, f"user{user}") for user in range(1, 6)]
    assert [tokens.user_id(token) for token in issued] == [1, 2, 3, 4, 5]
    assert len(tokens._verified) == 3 and forged not in tokens._verified
    assert [tokens.user_id(token) for token in issued] == [1, 2, 3, 4, 5], "a forgotten token is verified again"
