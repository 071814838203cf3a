"""Accounts: signup, login, tokens and password hashes. No HTTP, no replication."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import argon2
import jwt

import talentnest.services._render as _render
import talentnest.services.rules as rules
from talentnest.config import MAX_CLOCK_SKEW_SECONDS
from talentnest.errors import ClusterError, Conflict, Forbidden, InvalidInput, Unauthorized
from talentnest.services.throttle import LoginThrottle, ThrottlePolicy
from talentnest.store import Database
from talentnest.store.users import UserRepo

# A short JWT_SECRET is reported once, at start, by the node; not on every token.
warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)

TOKEN_ISSUER = "talentnest"
TOKEN_ALGORITHM = "HS256"
# How many verified tokens ``Tokens`` remembers (about 300 bytes each); the oldest goes first when full.
VERIFIED_TOKENS_KEPT = 4096


class Passwords:
    """argon2id hashes, computed off the event loop (each costs tens of milliseconds)."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int):
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=argon2.Type.ID
        )
        # Verified when the account does not exist, so both cases take the same time.
        self._dummy = self._hasher.hash("not-a-password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._dummy, password) and password_hash is not None
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except argon2.exceptions.InvalidHashError:
            return True


def token_key_id(secret: str) -> str:
    """The ``kid`` that names a JWT key in a token's header: a digest of it, which tells nothing of it."""
    return hmac.new(secret.encode(), b"talentnest-token-key-id", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class TokenSubject:
    """Whom a valid token names: the account's id and username, and the account's token key when the
    token was issued (empty in tokens of accounts made before keys, and of older releases)."""

    user_id: int
    username: str
    key: str


class Tokens:
    """HS256 JWTs naming a user and the user's token key (claim ``key``); only HS256 is accepted,
    expiry and issuer are checked.

    Each token names its key (``kid``). ``secret`` is the current key; ``previous`` keys are still
    accepted until the wall time ``previous_until`` (key rotation). ``choose_key(kids)`` picks which of
    the accepted kids (current first) signs a new token (by default the current one): during a rolling
    rotation, the newest key every node already accepts (``app.py``). A token without ``kid`` (issued by
    an older release) is checked against every accepted key.
    """

    def __init__(
        self,
        secret: str,
        *,
        ttl: int,
        clock: Callable[[], float] = time.time,
        previous: Sequence[str] = (),
        previous_until: float | None = None,
        choose_key: Callable[[Sequence[str]], str] | None = None,
    ):
        self._keys = {token_key_id(s): s for s in (secret, *previous)}
        self._current = token_key_id(secret)
        self._previous_until = previous_until
        self._ttl = ttl
        self._clock = clock
        self._choose = choose_key or (lambda kids: kids[0])
        self._verified: dict[str, tuple[TokenSubject, str, int]] = {}  # token -> (subject, kid, exp)

    def accepted_kids(self) -> tuple[str, ...]:
        """The kids of the keys accepted now, the current one first."""
        if self._previous_until is not None and self._clock() > self._previous_until:
            return (self._current,)
        return tuple(self._keys)

    def issue(self, user_id: int, username: str, key: str = "") -> str:
        now = int(self._clock())
        kids = self.accepted_kids()
        kid = self._choose(kids)
        if kid not in kids:
            kid = self._current
        claims: dict[str, Any] = {"sub": str(user_id), "usr": username, "iss": TOKEN_ISSUER, "iat": now, "exp": now + self._ttl}
        if key:
            claims["key"] = key
        return jwt.encode(claims, self._keys[kid], algorithm=TOKEN_ALGORITHM, headers={"kid": kid})

    def user_id(self, token: str) -> int:
        """The user a valid token names; Unauthorized for anything else."""
        return self.subject(token).user_id

    def subject(self, token: str) -> TokenSubject:
        """Whom a valid token names; Unauthorized for anything else."""
        known = self._verified.get(token)
        if known is not None:
            subject, kid, expires = known
            # PyJWT's rule: expired once exp <= now - leeway, now being the wall time (not self._clock).
            if expires > time.time() - MAX_CLOCK_SKEW_SECONDS and kid in self.accepted_kids():
                return subject
            self._verified.pop(token, None)
        subject, kid, expires = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.pop(next(iter(self._verified), None), None)
        self._verified[token] = (subject, kid, expires)
        return subject

    def _verify(self, token: str) -> tuple[TokenSubject, str, int]:
        """Every check of a token: whom it names, the kid of the key that verified it, its ``exp``."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise Unauthorized("token is not valid", code="invalid_token") from None
        kids = self.accepted_kids()
        if kid is not None and kid not in kids:
            raise Unauthorized("token is signed with a key this node does not accept; log in again", code="invalid_token")
        claims, verified_by = None, ""
        for candidate in [kid] if kid is not None else kids:
            try:
                claims = jwt.decode(
                    token,
                    self._keys[candidate],
                    algorithms=[TOKEN_ALGORITHM],
                    issuer=TOKEN_ISSUER,
                    options={"require": ["exp", "iat", "sub", "iss"]},
                    leeway=MAX_CLOCK_SKEW_SECONDS,
                )
                verified_by = candidate
                break
            except jwt.ExpiredSignatureError:
                raise Unauthorized("token has expired; log in again", code="token_expired") from None
            except jwt.PyJWTError:
                continue
        if claims is None:
            raise Unauthorized("token is not valid", code="invalid_token")
        subject = claims.get("sub")
        # isascii: str.isdigit() is also true of "²", which int() refuses.
        if not isinstance(subject, str) or not (subject.isascii() and subject.isdigit()) or len(subject) > 18:
            raise Unauthorized("token is not valid", code="invalid_token")
        username, key = claims.get("usr", ""), claims.get("key", "")
        if not isinstance(username, str) or not isinstance(key, str):
            raise Unauthorized("token is not valid", code="invalid_token")
        return TokenSubject(int(subject), username, key), verified_by, int(claims["exp"])


@dataclass(frozen=True)
class Session:
    token: str
    user: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"token": self.token, "user": self.user}


def random_token_key() -> str:
    return secrets.token_hex(16)


class AuthService:
    """Signup, login, tokens, password changes and account deletion.

    ``new_token_key()`` draws an account's token key (a random identity, 128 bits of hex by default): at
    signup and at every password change. A token is accepted only while its account's row carries the key
    the token carries, so a token never acts as another account that later got the same id (issue 15,
    case 4), and a password change or a deletion ends every older token on every node that holds the
    change. Wrong passwords given to a password change or a deletion count as failed logins.
    """

    def __init__(
        self,
        db: Database,
        users: UserRepo,
        passwords: Passwords,
        tokens: Tokens,
        throttle: LoginThrottle | None = None,
        *,
        new_token_key: Callable[[], str] = random_token_key,
    ):
        self.db = db
        self.users = users
        self.passwords = passwords
        self.tokens = tokens
        self.throttle = throttle or LoginThrottle(ThrottlePolicy())
        self.new_token_key = new_token_key

    async def signup(self, *, name: str, username: str, email: str, password: str) -> Session:
        name = rules.text(name, field="name", max_length=rules.NAME_MAX, min_length=1, multiline=False)
        username = rules.username(username)
        email = rules.email(email)
        password = rules.password(password)
        self._refuse_taken(username, email)
        password_hash = await self.passwords.hash(password)
        key = self.new_token_key()
        with self.db.write() as conn:
            # Checked again inside the transaction: another signup may have won meanwhile.
            self._refuse_taken(username, email)
            user_id = self.users.insert(
                conn, username=username, email=email, name=name, password_hash=password_hash, token_key=key, now=self.db.now()
            )
        return Session(self.tokens.issue(user_id, username, key), _render.user(self.users.by_id(user_id), private=True))

    def _refuse_taken(self, username: str, email: str) -> None:
        username_taken, email_taken = self.users.taken(username, email)
        if username_taken:
            raise Conflict(f"username '{username}' is already taken", code="username_taken")
        if email_taken:
            raise Conflict("an account with this email already exists", code="email_taken")

    async def login(self, *, username: str | None, email: str | None, password: str, client: str | None = None) -> Session:
        """By username or email (a ``username`` holding an email works too).

        ``client`` is the caller's address, for throttling; TooManyRequests once the account or
        the address has failed too often (before any password is verified).
        """
        identifier = username if username is not None else email
        if identifier is None or not isinstance(password, str):
            raise InvalidInput("login needs a password and a username or email")
        identifier = identifier.strip()
        if "@" in identifier:
            row = self.users.credentials(email=identifier.lower())
        else:
            row = self.users.credentials(username=identifier.lower())
        # One count per account whether it is named by username or email; unknown names count too.
        account = f"user:{row['id']}" if row is not None else f"name:{identifier.lower()}"
        self.throttle.check(account, client)
        if not await self.passwords.verify(row["password_hash"] if row else None, password) or row is None:
            self.throttle.failed(account, client)
            raise Unauthorized("wrong username, email or password", code="invalid_credentials")
        self.throttle.succeeded(account)
        await self._rehash_if_needed(row["id"], row["password_hash"], password)
        return self._session(row["id"])

    def _session(self, user_id: int) -> Session:
        """A new token of the account as it is now (its current token key), with its profile."""
        identity = self.users.token_identity(user_id)
        if identity is None:
            raise Unauthorized("the account of this token no longer exists", code="invalid_token")
        user = _render.user(self.users.by_id(user_id), private=True)
        return Session(self.tokens.issue(user_id, identity["username"], identity["token_key"]), user)

    async def _confirm_password(self, user_id: int, password: object, client: str | None) -> None:
        """Forbidden unless ``password`` is the account's own; throttled and counted as a login."""
        if not isinstance(password, str):
            raise InvalidInput("password must be a string", code="invalid_input")
        row = self.users.credentials_of(user_id)
        if row is None:
            raise Unauthorized("the account of this token no longer exists", code="invalid_token")
        account = f"user:{user_id}"
        self.throttle.check(account, client)
        if not await self.passwords.verify(row["password_hash"], password):
            self.throttle.failed(account, client)
            raise Forbidden("the password given is not this account's", code="wrong_password")
        self.throttle.succeeded(account)

    async def change_password(self, user_id: int, *, old_password: str, new_password: str, client: str | None = None) -> Session:
        """Set a new password and a new token key: every other token of the account ends. Answers a
        session with a fresh token (the caller's own token ends too)."""
        new_password = rules.password(new_password, field="new_password")
        await self._confirm_password(user_id, old_password, client)
        password_hash = await self.passwords.hash(new_password)
        with self.db.write() as conn:
            if not self.users.change_password(conn, user_id, password_hash, self.new_token_key(), self.db.now()):
                raise Unauthorized("the account of this token no longer exists", code="invalid_token")
        return self._session(user_id)

    async def delete_account(self, user_id: int, *, password: str, client: str | None = None) -> None:
        """Remove the account with its posts, comments, likes and follows, in one write: its tokens end
        with it, on every node that holds the write."""
        await self._confirm_password(user_id, password, client)
        with self.db.write() as conn:
            if not self.users.delete(conn, user_id):
                raise Unauthorized("the account of this token no longer exists", code="invalid_token")

    async def _rehash_if_needed(self, user_id: int, password_hash: str, password: str) -> None:
        if not self.passwords.needs_rehash(password_hash):
            return
        new_hash = await self.passwords.hash(password)
        try:
            with self.db.write() as conn:
                self.users.set_password_hash(conn, user_id, new_hash)
        except ClusterError:
            # Only the leader writes; the hash is upgraded on a later login there.
            pass

    def authenticate(self, token: str) -> int:
        """The id of the account a token names, which must still exist and carry the token's key (an
        account made before keys, whose key is empty, must carry the token's username too)."""
        subject = self.tokens.subject(token)
        identity = self.users.token_identity(subject.user_id)
        # Another username under the token's id: its account is gone, and the id was given again
        # (after a failover that lost the signup: issue 15, case 4).
        if identity is None or (subject.username and subject.username != identity["username"]):
            raise Unauthorized("the account of this token no longer exists", code="invalid_token")
        key = identity["token_key"]
        if subject.key != key or not (key or subject.username):
            raise Unauthorized("this token was ended (its account's password changed); log in again", code="token_revoked")
        return subject.user_id

    def me(self, user_id: int) -> dict[str, Any]:
        return _render.user(self.users.by_id(user_id), private=True)
