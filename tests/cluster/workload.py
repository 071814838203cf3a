"""Clients that keep a cluster busy during faults, and what they observed: for the cluster tests and the nemesis.

``Writers`` are threads that post numbered contents (``<prefix>-<writer>-<n>``), each with its own
Idempotency-Key, through every live node in turn, retrying a write (same key, next node) until it is
acknowledged, as a careful client does. ``Signups`` keep creating accounts the same way and keep
each acknowledged account's id and token. What the cluster holds afterwards is read back over HTTP
(``stored_contents``, ``archived_text``, ``leader_claims``) and judged by ``invariants.py``.
Nothing here imports pytest: the benchmark uses it as it is.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# A retry keeps the same key; these statuses mean "not done, try again" (elsewhere, later).
RETRY_STATUSES = frozenset({503, 504, 502})
ELECTED = re.compile(r"election: term (\d+): leader is (\d+) \(([^)]*)\), elected with")


@dataclass(frozen=True)
class Target:
    """Where a client can send a request: a node's name and base URL."""

    name: str
    url: str


@dataclass(frozen=True)
class Ack:
    """A write a client was told had happened (a 201, first time or replayed)."""

    content: str
    via: str
    at: float
    lsn: int | None
    body: dict


@dataclass
class Unexpected:
    """An answer a careful client cannot act on (a 500, a 4xx for a valid request)."""

    what: str
    via: str
    status: int
    text: str


def _lsn(response: httpx.Response) -> int | None:
    value = response.headers.get("x-cluster-lsn")
    return int(value) if value and value.isdigit() else None


@dataclass
class _Client:
    """Shared retry loop: send one request through the targets in turn until it is acknowledged."""

    targets: Callable[[], Sequence[Target]]
    timeout: float = 8.0
    give_up_after: float = 120.0
    pause: float = 0.05
    acked: list[Ack] = field(default_factory=list)
    unexpected: list[Unexpected] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    answers: Counter = field(default_factory=Counter)  # (status, error code) -> count
    abandoned: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    running: threading.Event = field(default_factory=threading.Event)  # cleared: hold new requests (a checkpoint)
    lock: threading.Lock = field(default_factory=threading.Lock)
    error: BaseException | None = None
    in_flight: int = 0

    def __post_init__(self) -> None:
        self.running.set()

    def hold(self, timeout: float = 30.0) -> bool:
        """Send no new request until ``release``; True once none is in flight (within ``timeout``)."""
        self.running.clear()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.in_flight == 0:
                    return True
            time.sleep(0.02)
        return False

    def release(self) -> None:
        self.running.set()

    def send_until_acknowledged(
        self, client: httpx.Client, what: str, path: str, body: dict, headers: dict[str, str], turn: itertools.count
    ) -> Ack | None:
        """None if stopped (or given up) before an acknowledgement: the write may or may not exist."""
        deadline = time.monotonic() + self.give_up_after
        while not self.stop.is_set():
            if not self.running.is_set():
                self.running.wait(0.2)
                deadline = time.monotonic() + self.give_up_after  # time held does not count
                continue
            if time.monotonic() >= deadline:
                with self.lock:
                    self.abandoned.append(what)
                return None
            live = list(self.targets())
            if not live:
                time.sleep(self.pause)
                continue
            target = live[next(turn) % len(live)]
            with self.lock:
                self.attempts[what] += 1
                self.in_flight += 1
            try:
                response = client.post(f"{target.url}{path}", json=body, headers=headers)
            except httpx.HTTPError:
                with self.lock:
                    self.answers[("no answer", None)] += 1
                time.sleep(self.pause)
                continue
            finally:
                with self.lock:
                    self.in_flight -= 1
            code = None
            try:
                payload = response.json()
            except ValueError:
                payload = None
            if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
                code = payload["error"].get("code")
            with self.lock:
                self.answers[(response.status_code, code)] += 1
            if response.status_code == 201 and isinstance(payload, dict):
                ack = Ack(what, target.name, time.time(), _lsn(response), payload)
                with self.lock:
                    self.acked.append(ack)
                return ack
            if response.status_code not in RETRY_STATUSES:
                with self.lock:
                    self.unexpected.append(Unexpected(what, target.name, response.status_code, response.text[:300]))
                    if response.status_code < 500:
                        self.abandoned.append(what)  # refused for what it is: a retry would be refused too
                if response.status_code < 500:
                    return None
            time.sleep(self.pause)
        return None


class Writers(_Client):
    """``count`` threads posting ``<prefix>-<w>-<n>`` with a token each (``tokens``, one per writer)."""

    def __init__(self, targets: Callable[[], Sequence[Target]], tokens: Sequence[str], *, prefix: str = "write", **options):
        super().__init__(targets, **options)
        self.tokens = list(tokens)
        self.prefix = prefix
        self._threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(len(self.tokens))]

    @property
    def acknowledged(self) -> list[str]:
        with self.lock:
            return [ack.content for ack in self.acked]

    def start(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def finish(self, timeout: float = 60.0) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, w: int) -> None:
        client = httpx.Client(timeout=self.timeout, trust_env=False)
        turn = itertools.count(w)
        try:
            for n in itertools.count(1):
                content = f"{self.prefix}-{w}-{n}"
                headers = {"Authorization": f"Bearer {self.tokens[w]}", "Idempotency-Key": content}
                done = self.send_until_acknowledged(client, content, "/api/posts", {"content": content}, headers, turn)
                if done is None and self.stop.is_set():
                    return  # given up (not stopped): go on with the next number
        except BaseException as exc:  # reported by whoever reads .error
            self.error = exc
        finally:
            client.close()


def signup_body(username: str, password: str = "password123") -> dict:
    return {"name": username.title(), "username": username, "email": f"{username}@example.com", "password": password}


@dataclass(frozen=True)
class Account:
    username: str
    user_id: int
    token: str
    via: str


class Signups(_Client):
    """One thread signing up ``<prefix><n>`` one after another, each with an Idempotency-Key."""

    def __init__(self, targets: Callable[[], Sequence[Target]], *, prefix: str = "member", pause_between: float = 0.2, **options):
        super().__init__(targets, **options)
        self.prefix = prefix
        self.pause_between = pause_between
        self.accounts: list[Account] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Signups:
        self._thread.start()
        return self

    def finish(self, timeout: float = 60.0) -> None:
        self.stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        client = httpx.Client(timeout=self.timeout, trust_env=False)
        turn = itertools.count()
        try:
            for n in itertools.count(1):
                username = f"{self.prefix}{n}"
                body = signup_body(username)
                key = {"Idempotency-Key": username}
                ack = self.send_until_acknowledged(client, username, "/api/auth/signup", body, key, turn)
                if ack is None:
                    if self.stop.is_set():
                        return
                    continue
                with self.lock:
                    self.accounts.append(Account(username, ack.body["user"]["id"], ack.body["token"], ack.via))
                self.stop.wait(self.pause_between)
        except BaseException as exc:
            self.error = exc
        finally:
            client.close()


def sign_up(targets: Callable[[], Sequence[Target]], username: str, *, give_up_after: float = 60.0) -> Account:
    """One account, retried (same Idempotency-Key) until acknowledged: a busy machine is no reason to fail."""
    client = _Client(targets, timeout=15.0, give_up_after=give_up_after)
    with httpx.Client(timeout=client.timeout, trust_env=False) as http:
        key = {"Idempotency-Key": f"account-{username}"}
        ack = client.send_until_acknowledged(http, username, "/api/auth/signup", signup_body(username), key, itertools.count())
    if ack is None:
        raise RuntimeError(f"the signup of {username} was not acknowledged within {give_up_after:g} s: {client.unexpected[-3:]}")
    return Account(username, ack.body["user"]["id"], ack.body["token"], ack.via)


# --- reading back what the cluster holds ----------------------------------------------------------------


def _pages(client: httpx.Client, url: str) -> Iterable[dict]:
    cursor = None
    while True:
        response = client.get(url + (f"&cursor={cursor}" if cursor else ""))
        response.raise_for_status()
        page = response.json()
        yield from page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return


def stored_contents(target: Target, authors: Iterable[str], *, timeout: float = 10.0) -> Counter:
    """content -> how many posts hold it, over every post of ``authors`` on one node."""
    counts: Counter = Counter()
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        for author in authors:
            for post in _pages(client, f"{target.url}/api/posts?author={author}&limit=100"):
                counts[post["content"]] += 1
    return counts


def stored_usernames(target: Target, usernames: Iterable[str], *, timeout: float = 10.0) -> dict[str, int | None]:
    """username -> its id on one node (None when the account is not there)."""
    found: dict[str, int | None] = {}
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        for username in usernames:
            response = client.get(f"{target.url}/api/users/{username}")
            found[username] = response.json()["id"] if response.status_code == 200 else None
    return found


def who_is(target: Target, token: str, *, timeout: float = 10.0) -> tuple[int, str | None]:
    """``GET /api/auth/me`` with ``token``: the status and the username it answered, if any."""
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        response = client.get(f"{target.url}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    username = response.json().get("username") if response.status_code == 200 else None
    return response.status_code, username


def archived_text(data_dirs: Iterable[Path]) -> str:
    """Every divergence archive (``DATA_DIR/archive/*``) of the given nodes, as one text to search."""
    parts = []
    for data_dir in data_dirs:
        for path in sorted(Path(data_dir).glob("archive/*")):
            if path.is_file():
                parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


def leader_claims(logs: dict[str, str]) -> list[tuple[int, str]]:
    """(term, node) for every election a node's log says it won; ``logs`` maps a node's name to its log."""
    claims = []
    for name, text in logs.items():
        for match in ELECTED.finditer(text):
            claims.append((int(match.group(1)), name))
    return claims
