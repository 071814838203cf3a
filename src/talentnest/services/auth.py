"""Accounts: signup, login, tokens and password hashes. No HTTP, no replication."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import argon2
import jwt

from talentnest.config import MAX_CLOCK_SKEW_SECONDS
from talentnest.errors import ClusterError, Conflict, InvalidInput, Unauthorized
from talentnest.services import _render, rules
from talentnest.services.throttle import LoginThrottle, ThrottlePolicy
from talentnest.store import Database
from talentnest.store.users import UserRepo

# A short JWT_SECRET is reported once, at start, by the node; not on every token.
warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)

TOKEN_ISSUER = "talentnest"
TOKEN_ALGORITHM = "HS256"


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


class Tokens:
    """HS256 JWTs naming a user; only HS256 is accepted, expiry and issuer are checked."""

    def __init__(self, secret: str, *, ttl: int, clock: Callable[[], float] = time.time):
        self._secret = secret
        self._ttl = ttl
        self._clock = clock

    def issue(self, user_id: int, username: str) -> str:
        now = int(self._clock())
        claims = {"sub": str(user_id), "usr": username, "iss": TOKEN_ISSUER, "iat": now, "exp": now + self._ttl}
        return jwt.encode(claims, self._secret, algorithm=TOKEN_ALGORITHM)

    def user_id(self, token: str) -> int:
        """The user a valid token names; Unauthorized for anything else."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[TOKEN_ALGORITHM],
                issuer=TOKEN_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
                leeway=MAX_CLOCK_SKEW_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired; log in again", code="token_expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("token is not valid", code="invalid_token") from None
        subject = claims.get("sub")
        # isascii: str.isdigit() is also true of "²", which int() refuses.
        if not isinstance(subject, str) or not (subject.isascii() and subject.isdigit()) or len(subject) > 18:
            raise Unauthorized("token is not valid", code="invalid_token")
        return int(subject)


@dataclass(frozen=True)
class Session:
    token: str
    user: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"token": self.token, "user": self.user}


class AuthService:
    def __init__(
        self, db: Database, users: UserRepo, passwords: Passwords, tokens: Tokens, throttle: LoginThrottle | None = None
    ):
        self.db = db
        self.users = users
        self.passwords = passwords
        self.tokens = tokens
        self.throttle = throttle or LoginThrottle(ThrottlePolicy())

    async def signup(self, *, name: str, username: str, email: str, password: str) -> Session:
        name = rules.text(name, field="name", max_length=rules.NAME_MAX, min_length=1, multiline=False)
        username = rules.username(username)
        email = rules.email(email)
        password = rules.password(password)
        self._refuse_taken(username, email)
        password_hash = await self.passwords.hash(password)
        with self.db.write() as conn:
            # Checked again inside the transaction: another signup may have won meanwhile.
            self._refuse_taken(username, email)
            user_id = self.users.insert(
                conn, username=username, email=email, name=name, password_hash=password_hash, now=self.db.now()
            )
        return Session(self.tokens.issue(user_id, username), _render.user(self.users.by_id(user_id), private=True))

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
        return Session(self.tokens.issue(row["id"], row["username"]), _render.user(self.users.by_id(row["id"]), private=True))

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
        """The id of the user a token names, who must still exist."""
        user_id = self.tokens.user_id(token)
        if not self.users.exists(user_id):
            raise Unauthorized("the account of this token no longer exists", code="invalid_token")
        return user_id

    def me(self, user_id: int) -> dict[str, Any]:
        return _render.user(self.users.by_id(user_id), private=True)
