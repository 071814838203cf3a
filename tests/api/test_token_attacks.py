"""Token attacks beyond test_auth.py's list: algorithm confusion (HS384/HS512 with the real secret,
RS256 headers, 'none' in any case), issuer tricks, claims of the wrong type, and the token of an
account deleted behind the API's back. Each is 401 on reads and writes and changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from tests.api._helpers import JWT_SECRET, Api, bearer


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def crafted(header: dict, claims: dict, *, key: bytes = JWT_SECRET.encode(), digest=hashlib.sha256) -> str:
    """A token with any header, signed by hand (PyJWT refuses to make some of these)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def claims(user_id: int, **changes) -> dict:
    now = int(time.time())
    base = {"sub": str(user_id), "usr": "victim", "iss": "talentnest", "iat": now, "exp": now + 3600}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


ATTACKS = {
    "HS384 with the real secret": lambda uid: crafted({"alg": "HS384", "typ": "JWT"}, claims(uid), digest=hashlib.sha384),
    "HS512 with the real secret": lambda uid: crafted({"alg": "HS512", "typ": "JWT"}, claims(uid), digest=hashlib.sha512),
    "HS256 header, HS512 signature": lambda uid: crafted({"alg": "HS256"}, claims(uid), digest=hashlib.sha512),
    "RS256 header, HMAC with the secret": lambda uid: crafted({"alg": "RS256", "typ": "JWT"}, claims(uid)),
    "RS256 header, made-up signature": lambda uid: crafted({"alg": "RS256"}, claims(uid)).rsplit(".", 1)[0] + "." + "A" * 342,
    "ES256 header": lambda uid: crafted({"alg": "ES256"}, claims(uid)),
    "alg None": lambda uid: crafted({"alg": "None"}, claims(uid)).rsplit(".", 1)[0] + ".",
    "alg NONE": lambda uid: crafted({"alg": "NONE"}, claims(uid)).rsplit(".", 1)[0] + ".",
    "alg nOnE with a signature": lambda uid: crafted({"alg": "nOnE"}, claims(uid)),
    "no alg": lambda uid: crafted({"typ": "JWT"}, claims(uid)),
    "a kid pointing elsewhere": lambda uid: crafted({"alg": "HS256", "kid": "../../dev/null"}, claims(uid), key=b""),
    "signed with an empty key": lambda uid: crafted({"alg": "HS256"}, claims(uid), key=b""),
    "signed with the cluster's derived key": lambda uid: crafted(
        {"alg": "HS256"}, claims(uid), key=hmac.new(JWT_SECRET.encode(), b"talentnest-cluster", hashlib.sha256).digest()
    ),
    "wrong issuer": lambda uid: jwt.encode(claims(uid, iss="talentnest-evil"), JWT_SECRET, algorithm="HS256"),
    "issuer as a list": lambda uid: crafted({"alg": "HS256"}, claims(uid, iss=None) | {"iss": ["talentnest"]}),
    "no issuer": lambda uid: jwt.encode(claims(uid, iss=None), JWT_SECRET, algorithm="HS256"),
    "no issued-at": lambda uid: jwt.encode(claims(uid, iat=None), JWT_SECRET, algorithm="HS256"),
    "not valid yet": lambda uid: jwt.encode(claims(uid, nbf=int(time.time()) + 3600), JWT_SECRET, algorithm="HS256"),
    "expiry not a number": lambda uid: crafted({"alg": "HS256"}, claims(uid, exp=None) | {"exp": "never"}),
    "expired a minute ago": lambda uid: jwt.encode(claims(uid, exp=int(time.time()) - 60), JWT_SECRET, algorithm="HS256"),
    "subject with a space": lambda uid: jwt.encode(claims(uid, sub=f" {uid}"), JWT_SECRET, algorithm="HS256"),
    "subject in SQL": lambda uid: jwt.encode(claims(uid, sub=f"{uid} OR 1=1"), JWT_SECRET, algorithm="HS256"),
    "two dots too many": lambda uid: jwt.encode(claims(uid), JWT_SECRET, algorithm="HS256") + "..",
    "100 KB of token": lambda uid: "eyJ" + "A" * 100_000,
}


@pytest.mark.parametrize("make", ATTACKS.values(), ids=ATTACKS.keys())
def test_a_confused_or_crafted_token_is_401_and_changes_nothing(api: Api, make_member, make):
    victim = make_member("victim")
    headers = bearer(make(victim.id))

    api.refused("GET", "/api/auth/me", 401, headers=headers)
    api.refused("POST", "/api/posts", 401, json={"content": "as the victim"}, headers=headers)
    api.refused("PATCH", "/api/users/me", 401, json={"headline": "hijacked"}, headers=headers)


def test_the_same_claims_signed_properly_are_accepted(api: Api, make_member):
    victim = make_member("victim")  # so that the refusals above are about the token, not the claims

    key = jwt.decode(victim.token, options={"verify_signature": False})["key"]  # the account's token key
    token = jwt.encode(claims(victim.id, key=key), JWT_SECRET, algorithm="HS256")

    assert api.ok("GET", "/api/auth/me", headers=bearer(token))["id"] == victim.id


def test_the_token_of_an_account_deleted_in_the_store_is_refused(api: Api, make_member):
    gone, stays = make_member("gone"), make_member("stays")
    assert api.ok("GET", "/api/auth/me", headers=gone.headers)["id"] == gone.id
    api.write_sql("DELETE FROM users WHERE id = ?", gone.id)

    error = api.refused("GET", "/api/auth/me", 401, headers=gone.headers)
    api.refused("POST", "/api/posts", 401, json={"content": "from beyond"}, headers=gone.headers)
    api.refused("POST", "/api/users/stays/follow", 401, headers=gone.headers)
    api.refused("GET", "/api/feed", 401, headers=gone.headers)

    assert error["code"] == "invalid_token"
    assert api.ok("GET", "/api/auth/me", headers=stays.headers)["id"] == stays.id


def test_a_new_account_does_not_inherit_a_deleted_accounts_token(api: Api, make_member):
    gone = make_member("gone")
    api.write_sql("DELETE FROM users WHERE id = ?", gone.id)
    newcomer = make_member("newcomer")

    # Ids are never reused (AUTOINCREMENT), so the old token names nobody.
    assert newcomer.id != gone.id
    api.refused("GET", "/api/auth/me", 401, headers=gone.headers)
