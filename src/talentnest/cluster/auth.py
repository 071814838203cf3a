"""Node-to-node authentication: signed requests, signed answers, refused replays, rotated keys (DESIGN.md,
"Node-to-node authentication").

A request carries ``X-Cluster-Signature: t=<unix seconds>,n=<nonce>,s=<hex HMAC-SHA256(key,
"<t>\\n<n>\\n<METHOD>\\n<path and query>\\n<hex SHA-256 of the body>")>``; its answer carries
``t=<unix seconds>,n=<the request's nonce>,s=<hex HMAC-SHA256(key, "<t>\\n<n>\\nANSWER\\n<status>\\n<hex
SHA-256 of the answer's body>")>``, made with the key that verified the request. A streamed answer
(whose body hash is not known when its headers leave) puts ``streamed`` where the body hash goes and
authenticates its body in its own records (docs/cluster.md, "The streamed snapshot").

The key is the UTF-8 bytes of ``CLUSTER_SECRET`` or, when it is unset, the 32 raw bytes of
``HMAC-SHA256(key=JWT_SECRET, msg="talentnest-cluster")``. A :class:`Keyring` holds the current key (the
one a node signs with) and previous ones it still accepts until a stated time (key rotation). A request
more than 30 s away from this node's clock, or whose nonce this node has already seen, is refused.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from talentnest.config import MAX_CLOCK_SKEW_SECONDS, Settings
from talentnest.tls import PEER_CERTIFICATE_SCOPE_KEY

HEADER = "X-Cluster-Signature"
MAX_SKEW_SECONDS = MAX_CLOCK_SKEW_SECONDS
NONCE_HEX_DIGITS = 32
# The body-hash field of a streamed answer's header signature: its body is signed record by record.
STREAMED = "streamed"
# At most this many nonces are remembered (about 200 bytes each, so ~20 MB at worst). Past it the
# oldest are forgotten, and every signature at or before their time is refused from then on.
NONCE_CACHE_MAX = 100_000
_SIGNED = re.compile(r"^t=(\d{1,12}),n=([0-9a-f]{16,64}),s=([0-9a-f]{64})$")
_LEGACY = re.compile(r"^t=(\d{1,12}),s=([0-9a-f]{64})$")


class SignatureError(Exception):
    """The signature is missing, malformed, wrong, stale or replayed; the message says which (no secrets)."""


def cluster_key(*, jwt_secret: str, cluster_secret: str | None) -> bytes:
    if cluster_secret:
        return cluster_secret.encode()
    return hmac.new(jwt_secret.encode(), b"talentnest-cluster", hashlib.sha256).digest()


@dataclass(frozen=True)
class Keyring:
    """The cluster keys of a node: ``current`` signs; ``previous`` ones are accepted too, until the wall
    time ``previous_until`` (None: no end)."""

    current: bytes = field(repr=False)
    previous: tuple[bytes, ...] = field(default=(), repr=False)
    previous_until: float | None = None

    def accepted(self, now: float) -> tuple[bytes, ...]:
        """The keys a signature may be made with at wall time ``now``, the current one first."""
        if not self.previous or (self.previous_until is not None and now > self.previous_until):
            return (self.current,)
        return (self.current, *self.previous)

    @classmethod
    def of(cls, key: bytes | Keyring) -> Keyring:
        return key if isinstance(key, Keyring) else cls(key)


def keyring(
    *, jwt_secret: str, cluster_secret: str | None, jwt_previous: Sequence[str] = (), cluster_previous: Sequence[str] = (),
    previous_until: float | None = None,
) -> Keyring:  # fmt: skip
    """The keys of the settings: an explicit previous cluster key each, or, while ``CLUSTER_SECRET`` is unset,
    the key derived from each previous JWT secret (the derived key rotates with the JWT secret)."""
    current = cluster_key(jwt_secret=jwt_secret, cluster_secret=cluster_secret)
    if cluster_previous:
        previous = [s.encode() for s in cluster_previous]
    elif not cluster_secret:
        previous = [cluster_key(jwt_secret=s, cluster_secret=None) for s in jwt_previous]
    else:
        previous = []
    unique = tuple(k for k in dict.fromkeys(previous) if k != current)
    return Keyring(current, unique, previous_until if unique else None)


def _key_bytes(key: bytes | Keyring) -> bytes:
    return key.current if isinstance(key, Keyring) else key


def new_nonce() -> str:
    """A nonce for callers outside the cluster core (tests, the CLI); the core draws its own from the runtime."""
    return secrets.token_hex(NONCE_HEX_DIGITS // 2)


def _digest(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def _request_message(t: int, nonce: str, method: str, target: str, body: bytes) -> str:
    return f"{t}\n{nonce}\n{method.upper()}\n{target}\n{hashlib.sha256(body).hexdigest()}"


def _legacy_message(t: int, method: str, target: str, body: bytes) -> str:
    return f"{t}\n{method.upper()}\n{target}\n{hashlib.sha256(body).hexdigest()}"


def _answer_message(t: int, nonce: str, status: int, body_sha256: str) -> str:
    return f"{t}\n{nonce}\nANSWER\n{status}\n{body_sha256}"


def sign(
    key: bytes | Keyring, method: str, target: str, body: bytes = b"", *, now: float | None = None, nonce: str | None = None
) -> str:
    """The header value for a request; ``target`` is the path with its query string. Without ``nonce``, a
    fresh random one (read it back with :func:`nonce_of` to check the answer)."""
    t = int(time.time() if now is None else now)
    nonce = nonce or new_nonce()
    return f"t={t},n={nonce},s={_digest(_key_bytes(key), _request_message(t, nonce, method, target, body))}"


def sign_legacy(key: bytes, method: str, target: str, body: bytes = b"", *, now: float | None = None) -> str:
    """The form of the previous release (no nonce), refused unless a node accepts it for a rolling upgrade."""
    t = int(time.time() if now is None else now)
    return f"t={t},s={_digest(key, _legacy_message(t, method, target, body))}"


def nonce_of(header: str) -> str:
    """The nonce of a signature this process made (to check the answer against)."""
    match = _SIGNED.match(header)
    if match is None:
        raise SignatureError(f"malformed {HEADER}")
    return match.group(2)


def sign_answer(key: bytes, nonce: str, status: int, body_sha256: str, *, now: float | None = None) -> str:
    """The header value (or a streamed record's signature) for an answer with ``status`` to the request
    whose nonce was ``nonce``; ``body_sha256`` is the hex SHA-256 of the body (or of the body so far)."""
    t = int(time.time() if now is None else now)
    return f"t={t},n={nonce},s={_digest(key, _answer_message(t, nonce, status, body_sha256))}"


def verify_answer(key: bytes | Keyring, header: str | None, nonce: str, status: int, body_sha256: str) -> None:
    """Return if ``header`` signs an answer with ``status`` and body hash ``body_sha256`` to the request
    that carried ``nonce``, made with ``key``; raise SignatureError (saying what is wrong) otherwise.

    The answer's time is not checked: the nonce, fresh for each request and accepted once, is what binds
    an answer to its request."""
    if not header:
        raise SignatureError(f"the answer has no {HEADER}")
    match = _SIGNED.match(header.strip())
    if match is None:
        raise SignatureError(f"the answer's {HEADER} is malformed")
    if not hmac.compare_digest(match.group(2), nonce):
        raise SignatureError("the answer is signed for another request (its nonce differs)")
    expected = _digest(_key_bytes(key), _answer_message(int(match.group(1)), nonce, status, body_sha256))
    if not hmac.compare_digest(expected, match.group(3)):
        raise SignatureError("the answer's signature is wrong: it was altered, or made without the cluster key")


def check_answer(key: bytes | Keyring, sent: str, status: int, answer_header: str | None, body: bytes) -> None:
    """For a caller that signed a request with ``sign`` (header value ``sent``): raise SignatureError unless
    the answer (``status``, its ``X-Cluster-Signature``, its whole ``body``) is signed for that request."""
    verify_answer(key, answer_header, nonce_of(sent), status, hashlib.sha256(body).hexdigest())


def verify(
    key: bytes | Keyring, header: str | None, method: str, target: str, body: bytes = b"", *, now: float | None = None
) -> None:
    """Return if the request signature is good (no replay check: see :class:`RequestAuth`); raise
    SignatureError otherwise."""
    _check(Keyring.of(key), header, method, target, body, time.time() if now is None else now, accept_legacy=False)


@dataclass(frozen=True)
class Verified:
    """A request whose signature was good: the key that made it (the answer is signed with it) and its
    nonce (None for the legacy form, accepted only behind ``CLUSTER_ACCEPT_LEGACY_SIGNATURES``)."""

    key: bytes = field(repr=False)
    nonce: str | None
    t: int


def _check(
    keys: Keyring, header: str | None, method: str, target: str, body: bytes, now: float, *, accept_legacy: bool
) -> Verified:
    if not header:
        raise SignatureError(f"missing {HEADER}")
    header = header.strip()
    match = _SIGNED.match(header)
    nonce: str | None
    if match is not None:
        t, nonce, given = int(match.group(1)), match.group(2), match.group(3)
    else:
        old = _LEGACY.match(header)
        if old is None:
            raise SignatureError(f"malformed {HEADER}")
        if not accept_legacy:
            raise SignatureError(f"{HEADER} has no nonce (n=): the form of an older release, refused")
        t, nonce, given = int(old.group(1)), None, old.group(2)
    if abs(now - t) > MAX_SKEW_SECONDS:
        raise SignatureError(f"{HEADER} is {int(now - t)} s away from this node's clock (limit {MAX_SKEW_SECONDS} s)")
    message = _legacy_message(t, method, target, body) if nonce is None else _request_message(t, nonce, method, target, body)
    for key in keys.accepted(now):
        if hmac.compare_digest(_digest(key, message), given):
            return Verified(key, nonce, t)
    raise SignatureError(f"wrong {HEADER}")


class NonceCache:
    """The nonces of requests accepted within the window, so that none is accepted twice.

    A nonce signed at time ``t`` can be presented until ``t + MAX_SKEW_SECONDS``; it is remembered that
    long and then dropped. At most ``limit`` are kept: past that the oldest are forgotten and the floor
    rises to their time, so a request signed at or before it is refused (only a flood of more than
    ``limit`` signed requests within one second could refuse a genuine one).
    """

    def __init__(self, limit: int = NONCE_CACHE_MAX, window: float = MAX_SKEW_SECONDS):
        self.limit = limit
        self.window = window
        self._seen: set[str] = set()
        self._by_time: list[tuple[int, str]] = []
        self._floor = -1

    def __len__(self) -> int:
        return len(self._seen)

    def admit(self, nonce: str, t: int, now: float) -> None:
        """Remember ``nonce`` signed at ``t``; SignatureError if it was seen (or is too old to tell)."""
        while self._by_time and self._by_time[0][0] + self.window < now:
            self._seen.discard(heapq.heappop(self._by_time)[1])
        if t <= self._floor:
            raise SignatureError(f"{HEADER} is older than this node can check for replays; sign it again")
        if nonce in self._seen:
            raise SignatureError(f"{HEADER} nonce was already used: a replayed request, refused")
        while len(self._seen) >= self.limit:
            old_t, old = heapq.heappop(self._by_time)
            self._seen.discard(old)
            self._floor = max(self._floor, old_t)
        self._seen.add(nonce)
        heapq.heappush(self._by_time, (t, nonce))


class RequestAuth:
    """A node's check of incoming signed requests: the signature against its keyring and its clock, the
    nonce against the replay cache. ``check`` remembers its verdict in the request's ASGI scope, so that
    the middleware and the route may both ask without the nonce counting twice."""

    SCOPE_KEY = "talentnest.signature"

    def __init__(
        self, keys: Keyring, wall: Callable[[], float], *, accept_legacy: bool = False, require_peer_certificate: bool = False
    ):
        self.keys = keys
        self.wall = wall
        self.accept_legacy = accept_legacy
        # Over TLS, a node-to-node call must also come on a connection that presented a certificate of
        # the cluster's CA (the server asks every client for one; see talentnest.tls).
        self.require_peer_certificate = require_peer_certificate
        self.nonces = NonceCache()

    def check(self, scope: dict, header: str | None, method: str, target: str, body: bytes) -> Verified:
        """The verified signature of this request; raises SignatureError (the same one when asked again)."""
        cached = scope.get(self.SCOPE_KEY)
        if isinstance(cached, Verified):
            return cached
        if isinstance(cached, SignatureError):
            raise cached
        try:
            if self.require_peer_certificate and not scope.get(PEER_CERTIFICATE_SCOPE_KEY):
                raise SignatureError("a node-to-node call over TLS must present a certificate of TLS_CA_FILE; none was")
            now = self.wall()
            verified = _check(self.keys, header, method, target, body, now, accept_legacy=self.accept_legacy)
            if verified.nonce is not None:
                self.nonces.admit(verified.nonce, verified.t, now)
        except SignatureError as exc:
            scope[self.SCOPE_KEY] = exc
            raise
        scope[self.SCOPE_KEY] = verified
        return verified

    @classmethod
    def verified(cls, scope: dict) -> Verified | None:
        """The good signature ``check`` found on this request, if any."""
        found = scope.get(cls.SCOPE_KEY)
        return found if isinstance(found, Verified) else None

    def sign_answer(self, verified: Verified, status: int, body_sha256: str) -> str | None:
        """The answer's header, or None for a legacy request (its sender does not check answers)."""
        if verified.nonce is None:
            return None
        return sign_answer(verified.key, verified.nonce, status, body_sha256, now=self.wall())


def keyring_for(settings: Settings) -> Keyring:
    """The cluster keys a node's settings give."""
    return keyring(
        jwt_secret=settings.jwt_secret,
        cluster_secret=settings.cluster_secret,
        jwt_previous=settings.jwt_secret_previous,
        cluster_previous=settings.cluster_secret_previous,
        previous_until=settings.previous_secrets_until,
    )
