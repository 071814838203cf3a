"""Signup, login, me and bearer tokens, through the real ASGI app."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from tests.api._helpers import JWT_SECRET, Api, assert_error, bearer, raw_json

SEED_SIGNUP = {"name": "Test User", "username": "testuser", "email": "test@example.com", "password": "password123"}
PRIVATE_USER_KEYS = {
    "id", "name", "username", "headline", "bio", "location", "skills",
    "follower_count", "following_count", "created_at", "email", "updated_at",
}  # fmt: skip


def valid_signup(**changes) -> dict:
    body = dict(SEED_SIGNUP)
    body.update(changes)
    return body


# --- signup ------------------------------------------------------------------------------------


def test_signup_with_the_seeds_example_answers_a_token_and_the_new_user(api: Api):
    response = api.client.post("/api/auth/signup", json=SEED_SIGNUP)

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"token", "user"}
    user = body["user"]
    assert set(user) == PRIVATE_USER_KEYS
    assert user["username"] == "testuser"
    assert user["name"] == "Test User"
    assert user["email"] == "test@example.com"
    assert user["skills"] == [] and user["follower_count"] == 0 and user["following_count"] == 0
    assert "password" not in response.text and "argon2" not in response.text
    assert api.ok("GET", "/api/auth/me", headers=bearer(body["token"]))["id"] == user["id"]


def test_signup_accepts_the_seeds_short_password_pass123(api: Api):
    member = api.signup(name="Test", username="test1", email="test1@test.com", password="pass123")

    assert member.username == "test1"
    assert api.ok("POST", "/api/auth/login", json={"username": "test1", "password": "pass123"})["user"]["id"] == member.id


def test_signup_stores_username_and_email_lower_case(api: Api):
    member = api.signup(**valid_signup(username="Mixed_Case_9", email="Someone@EXAMPLE.Org"))

    assert member.user["username"] == "mixed_case_9"
    assert member.user["email"] == "someone@example.org"
    assert api.ok("GET", "/api/users/MIXED_CASE_9")["id"] == member.id


@pytest.mark.parametrize("username", ["abc", "a" * 30, "___", "007", "UPPER_lower_09"])
def test_signup_accepts_usernames_at_the_limits(api: Api, username: str):
    assert api.signup(**valid_signup(username=username)).username == username.lower()


def test_signup_accepts_non_ascii_names(api: Api):
    assert api.signup(**valid_signup(name="Zoë Ñandú-Łukasiewicz 李")).user["name"] == "Zoë Ñandú-Łukasiewicz 李"


@pytest.mark.parametrize("taken", ["testuser", "TestUser", "TESTUSER"])
def test_signup_with_a_taken_username_is_409_and_changes_nothing(api: Api, taken: str):
    api.signup(**SEED_SIGNUP)

    api.refused("POST", "/api/auth/signup", 409, "username_taken", json=valid_signup(username=taken, email="other@example.com"))


@pytest.mark.parametrize("taken", ["test@example.com", "TEST@EXAMPLE.COM", "Test@Example.Com", " test@example.com "])
def test_signup_with_a_taken_email_is_409_whatever_its_case(api: Api, taken: str):
    api.signup(**SEED_SIGNUP)

    api.refused("POST", "/api/auth/signup", 409, "email_taken", json=valid_signup(username="other", email=taken))


INVALID_SIGNUPS = {
    "username too short": valid_signup(username="ab"),
    "username too long": valid_signup(username="a" * 31),
    "username with a dash": valid_signup(username="bad-name"),
    "username with a space": valid_signup(username="bad name"),
    "username with a dot": valid_signup(username="bad.name"),
    "username non-ascii": valid_signup(username="ñandú"),
    "username with a trailing newline": valid_signup(username="abc\n"),
    "username empty": valid_signup(username=""),
    "username not a string": valid_signup(username=12345),
    "username reserved for a route": valid_signup(username="search"),
    "username reserved, any case": valid_signup(username="Search"),
    "password of 5 characters": valid_signup(password="12345"),
    "password too long": valid_signup(password="x" * 257),
    "password with NUL": valid_signup(password="pass\x00word"),
    "email without @": valid_signup(email="not-an-email"),
    "email without a domain dot": valid_signup(email="a@b"),
    "email with a space": valid_signup(email="a b@example.com"),
    "email too long": valid_signup(email="a" * 250 + "@example.com"),
    "email with a newline": valid_signup(email="a@example.com\nBcc: x@example.com"),
    "name empty": valid_signup(name=""),
    "name only spaces": valid_signup(name="   "),
    "name too long": valid_signup(name="n" * 101),
    "name with a bell": valid_signup(name="Bell\x07"),
    "name with NUL": valid_signup(name="Nul\x00"),
    "name with a newline": valid_signup(name="Two\nLines"),
    "name with DEL": valid_signup(name="Del\x7f"),
    "name with a C1 control": valid_signup(name="Next\x85Line"),
    "name with a line separator": valid_signup(name="Two\u2028Lines"),
    "an unknown field": valid_signup(role="admin"),
    "a missing field": {k: v for k, v in SEED_SIGNUP.items() if k != "email"},
    "a list instead of an object": [SEED_SIGNUP],
    "null": None,
}


@pytest.mark.parametrize("body", INVALID_SIGNUPS.values(), ids=INVALID_SIGNUPS.keys())
def test_signup_with_invalid_fields_is_422_and_changes_nothing(api: Api, body):
    api.refused("POST", "/api/auth/signup", 422, **raw_json(json.dumps(body)))


@pytest.mark.parametrize("field", ["name", "username", "email", "password"])
def test_signup_with_a_lone_surrogate_is_422(api: Api, field: str):
    text = json.dumps(valid_signup()).replace(f'"{field}": "', f'"{field}": "\\ud800', 1)

    api.refused("POST", "/api/auth/signup", 422, **raw_json(text))


def test_signup_with_a_lone_surrogate_as_a_key_is_422(api: Api):
    text = json.dumps(valid_signup())[:-1] + ', "\\udc80": 1}'

    api.refused("POST", "/api/auth/signup", 422, **raw_json(text))


def test_a_422_names_each_bad_field(api: Api):
    error = api.refused("POST", "/api/auth/signup", 422, json=valid_signup(username="x", password="1"))

    assert {f["field"] for f in error["fields"]} == {"username", "password"}


# --- login -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "testuser"},
        {"username": "TestUser"},
        {"email": "test@example.com"},
        {"email": "TEST@Example.com"},
        {"username": "test@example.com"},
        {"username": "  testuser  "},
    ],
    ids=["username", "username any case", "email", "email any case", "email in username", "spaces around"],
)
def test_login_by_username_or_email_answers_a_working_token(api: Api, credentials: dict):
    member = api.signup(**SEED_SIGNUP)

    with api.unchanged():  # a login is a read
        session = api.ok("POST", "/api/auth/login", json={**credentials, "password": "password123"})

    assert set(session) == {"token", "user"}
    assert session["user"]["id"] == member.id and session["user"]["email"] == "test@example.com"
    assert api.ok("GET", "/api/auth/me", headers=bearer(session["token"]))["username"] == "testuser"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "testuser", "password": "wrong-password"},
        {"username": "testuser", "password": "PASSWORD123"},
        {"username": "nobody", "password": "password123"},
        {"email": "nobody@example.com", "password": "password123"},
    ],
    ids=["wrong password", "password case", "unknown username", "unknown email"],
)
def test_login_with_wrong_credentials_is_401(api: Api, body: dict):
    api.signup(**SEED_SIGNUP)

    response = api.client.post("/api/auth/login", json=body)

    assert_error(response, 401, "invalid_credentials")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "text",
    [
        '{"password": "password123"}',
        '{"username": "testuser"}',
        '{"username": "testuser", "password": "password123", "admin": true}',
        '{"username": 5, "password": "password123"}',
        '{"username": "test\\ud800user", "password": "password123"}',
        '{"username": "testuser", "password": "pass\\udfffword123"}',
        '{"username": "testuser", "password": "x' + "y" * 256 + '"}',
    ],
    ids=[
        "no identifier",
        "no password",
        "unknown field",
        "username a number",
        "surrogate username",
        "surrogate password",
        "long",
    ],
)
def test_login_with_invalid_fields_is_422(api: Api, text: str):
    api.signup(**SEED_SIGNUP)

    api.refused("POST", "/api/auth/login", 422, **raw_json(text))


def test_login_with_nul_in_the_username_is_401_not_a_crash(api: Api):
    api.signup(**SEED_SIGNUP)

    api.refused("POST", "/api/auth/login", 401, json={"username": "testuser\x00", "password": "password123"})


# --- me and tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/auth/me", "/api/users/me"])
def test_me_answers_the_private_profile(api: Api, url: str):
    member = api.signup(**SEED_SIGNUP)

    me = api.ok("GET", url, headers=member.headers)

    assert set(me) == PRIVATE_USER_KEYS
    assert me == member.user


@pytest.mark.parametrize("url", ["/api/auth/me", "/api/users/me"])
def test_me_without_a_token_is_401_and_asks_for_a_bearer_token(api: Api, url: str):
    response = api.client.get(url)

    assert_error(response, 401, "missing_token")
    assert response.headers["www-authenticate"] == "Bearer"


def _claims(user_id: int = 1, **changes) -> dict:
    now = int(time.time())
    claims = {"sub": str(user_id), "usr": "testuser", "iss": "talentnest", "iat": now, "exp": now + 3600}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _unsigned(claims: dict) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


BAD_TOKENS = {
    "garbage": ("not-a-jwt", "invalid_token"),
    "expired": (jwt.encode(_claims(exp=int(time.time()) - 60), JWT_SECRET, algorithm="HS256"), "token_expired"),
    "forged with another secret": (jwt.encode(_claims(), "another-secret-of-at-least-32-bytes!", algorithm="HS256"), None),
    "alg none": (_unsigned(_claims()), None),
    "alg none with empty signature and padding": (_unsigned(_claims()) + "==", None),
    "HS512 with the right secret": (jwt.encode(_claims(), JWT_SECRET + "-" * 40, algorithm="HS512"), None),
    "wrong issuer": (jwt.encode(_claims(iss="someone-else"), JWT_SECRET, algorithm="HS256"), None),
    "no expiry": (jwt.encode(_claims(exp=None), JWT_SECRET, algorithm="HS256"), None),
    "no subject": (jwt.encode(_claims(sub=None), JWT_SECRET, algorithm="HS256"), None),
    "subject not a number": (jwt.encode(_claims(sub="admin"), JWT_SECRET, algorithm="HS256"), None),
    "subject negative": (jwt.encode(_claims(sub="-1"), JWT_SECRET, algorithm="HS256"), None),
    "subject of superscript digits": (jwt.encode(_claims(sub="²"), JWT_SECRET, algorithm="HS256"), None),
    "subject a number, not text": (jwt.encode(_claims(sub=None) | {"sub": 1}, JWT_SECRET, algorithm="HS256"), None),
    "subject huge": (jwt.encode(_claims(sub="9" * 40), JWT_SECRET, algorithm="HS256"), None),
    "user that does not exist": (jwt.encode(_claims(user_id=999), JWT_SECRET, algorithm="HS256"), None),
    "signature tampered": ("TAMPER", None),
}


@pytest.mark.parametrize("token, code", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_a_bad_expired_or_forged_token_is_401_on_reads_and_writes(api: Api, token: str, code: str | None):
    member = api.signup(**SEED_SIGNUP)
    if token == "TAMPER":
        head, _payload, signature = member.token.split(".")
        token = f"{head}.{_b64(_claims(user_id=member.id, usr='someone'))}.{signature}"
    headers = bearer(token)

    error = api.refused("GET", "/api/auth/me", 401, headers=headers)
    api.refused("POST", "/api/posts", 401, json={"content": "hello"}, headers=headers)
    api.refused("PATCH", "/api/users/me", 401, json={"headline": "hacked"}, headers=headers)
    # An optional token is still checked when it is sent.
    api.refused("GET", "/api/posts", 401, headers=headers)

    assert error["code"] == (code or "invalid_token")


@pytest.mark.parametrize("header", ["Basic dGVzdDp0ZXN0", "Bearer", "Bearer ", "Token abc", "bearer"])
def test_an_authorization_header_without_a_bearer_token_is_401(api: Api, header: str):
    api.signup(**SEED_SIGNUP)

    api.refused("POST", "/api/posts", 401, json={"content": "hello"}, headers={"Authorization": header})


def test_the_bearer_scheme_is_case_insensitive(api: Api):
    member = api.signup(**SEED_SIGNUP)

    assert api.ok("GET", "/api/auth/me", headers={"Authorization": f"bearer {member.token}"})["id"] == member.id
