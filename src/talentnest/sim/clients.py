"""The simulated users: each signs up, then writes posts with numbered contents and updates its
profile through random nodes, each write with an Idempotency-Key, retrying with the same key (through
any node) after a 503, a timeout or an "outcome unknown" answer; and reads its posts back, with and
without X-Min-LSN.

What they are told feeds the invariants: every acknowledged write (``AckedWrite``), every read of
one (``Read``), a token that acts as someone else, a token refused by a node.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from talentnest.cluster.transport import Reply
from talentnest.config import MAX_CLOCK_SKEW_SECONDS
from talentnest.errors import PeerUnreachable
from talentnest.sim.invariants import AckedWrite, Read, Violation
from talentnest.sim.net import HttpRequest

if TYPE_CHECKING:
    from talentnest.sim.host import SimHost
    from talentnest.sim.world import World

CLIENT_TIMEOUT = 6.0  # a client gives up before a forward does (15 s) and retries elsewhere, same key
PASSWORD = "correct horse battery staple"


@dataclass
class _Own:
    content: str
    post_id: int | None
    lsn: int | None


class Client:
    def __init__(self, world: World, index: int):
        self.world = world
        self.index = index
        self.name = f"c{index + 1}"
        self.address = f"10.0.9.{index + 1}"
        self.rng = random.Random(f"{world.seed}:client:{index}")
        self.generation = 0
        self.username = ""
        self.token: str | None = None
        self.written = 0
        self.updates = 0
        self.own: list[_Own] = []
        self.done = False
        self.requests = 0

    # --- one request -----------------------------------------------------------------------

    def _pick(self) -> SimHost:
        return self.rng.choice(self.world.members)

    async def call(
        self, host: SimHost, method: str, path: str, payload: Any = None, *, key: str | None = None, min_lsn: int | None = None
    ) -> Reply | None:
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if self.token:
            headers.append((b"authorization", f"Bearer {self.token}".encode()))
        if key is not None:
            headers.append((b"idempotency-key", key.encode()))
        if min_lsn is not None:
            headers.append((b"x-min-lsn", str(min_lsn).encode()))
        self.requests += 1
        try:
            reply = await self.world.network.exchange(
                self.address,
                host.address,
                HttpRequest(method, path, headers, body),
                CLIENT_TIMEOUT,
                base_url=f"http://{host.address}:3000",
            )
        except PeerUnreachable as exc:
            self.world.trace.add(f"{self.name} {method} {path} via {host.name}: {type(exc).__name__}")
            return None
        self.world.trace.add(
            f"{self.name} {method} {path} via {host.name}: {reply.status} lsn={reply.headers.get('X-Cluster-LSN')}"
        )
        return reply

    async def _pause(self, low: float = 0.05, high: float = 0.6) -> None:
        import asyncio

        await asyncio.sleep(self.rng.uniform(low, high))

    @property
    def _may_start(self) -> bool:
        return self.world.clock.now < self.world.writes_until

    @property
    def _may_retry(self) -> bool:
        return self.world.clock.now < self.world.clients_until

    # --- the workload ----------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while self._may_start:
                if self.token is None and not await self.sign_up():
                    continue
                dice = self.rng.random()
                if self.own and dice < 0.25:
                    await self.read_back()
                elif dice < 0.4:
                    await self.update_profile()
                else:
                    await self.write()
                await self._pause(0.1, 1.1)
        finally:
            self.done = True

    async def sign_up(self) -> bool:
        self.generation += 1
        self.username = f"u{self.index + 1}g{self.generation}"
        payload = {
            "name": f"User {self.username}",
            "username": self.username,
            "email": f"{self.username}@example.com",
            "password": PASSWORD,
        }
        key = f"signup-{self.username}"
        self.token = None
        while self._may_retry:
            reply = await self.call(self._pick(), "POST", "/api/auth/signup", payload, key=key)
            if reply is not None and reply.status == 201:
                self.token = reply.json()["token"]
                return True
            if reply is not None and reply.status == 409:
                return await self.log_in()  # it was applied before (username taken, or the key's answer was not kept)
            await self._pause(0.1, 1.0)
        return False

    async def log_in(self) -> bool:
        for _ in range(20):
            if not self._may_retry:
                return False
            reply = await self.call(self._pick(), "POST", "/api/auth/login", {"username": self.username, "password": PASSWORD})
            if reply is not None and reply.status == 200:
                self.token = reply.json()["token"]
                return True
            await self._pause(0.1, 1.0)
        return False

    async def send_write(self, method: str, path: str, payload: Any, key: str) -> tuple[SimHost, Reply] | None:
        """Send a write with its Idempotency-Key through random nodes until one answers it for good
        (not a 503, a 500 or no answer); the node and its answer, or None if the client gave up. A
        client whose account is gone signs up again and goes on (the key is per account, so the
        write is a new one then)."""
        while self._may_retry and self.token is not None:
            host = self._pick()
            reply = await self.call(host, method, path, payload, key=key)
            if reply is None or reply.status == 503 or reply.status >= 500:
                await self._pause(0.1, 1.0)  # a 500 is counted where it was answered (server_error)
                continue
            if reply.status != 401:
                return host, reply
            if "no longer exists" in _error_message(reply):
                self.world.trace.add(f"{self.name} account {self.username} is gone; signing up again")
                self.token = None
                if not await self.sign_up():
                    return None
                continue
            refused = f"node {_node(reply)} refused {self.name}'s token: {_error_message(reply)}"
            if _error_code(reply) == "token_revoked":
                # These clients never change a password: the account under this token's id carries another
                # key, so the signup that made the token was lost, and its username was taken again by this
                # client's own retry. Async mode may lose an acknowledged write if it archives it: judged at
                # the end, when every archive is in (World.revoked). The client logs in again, as told.
                self.world.revoked.append((str(_claims(self.token or "").get("key", "")), refused, self.world.clock.now))
                self.world.trace.add(f"{refused}; logging in again")
                if not await self.log_in():
                    return None
                continue
            off = self._clock_off(_node(reply))
            if off is not None:  # out of spec: no node has to accept it (docs/simulation.md, "Clients")
                self.world.trace.add(f"{refused} (its clock is {off:.0f} s from the token's, beyond {MAX_CLOCK_SKEW_SECONDS} s)")
            else:
                self.world.violation(Violation("token_refused", refused, self.world.clock.now))
            await self._pause(0.2, 1.0)
        return None

    def _clock_off(self, node_id: int | None) -> float | None:
        """How far node ``node_id``'s wall clock is from its token's ``iat``, when beyond what a node must
        accept (``MAX_CLOCK_SKEW_SECONDS``: skew faults reach 45 s); None when within it."""
        host = next((h for h in self.world.hosts if h.node_id == node_id), None)
        issued = _issued_at(self.token or "")
        if host is None or issued is None:
            return None
        off = host.clock.wall() - issued
        return off if abs(off) > MAX_CLOCK_SKEW_SECONDS else None

    def _done(self, what: str, reply: Reply, ok: int) -> bool:
        """Whether the answer says the write happened (``ok``, or its key was used already)."""
        if reply.status == ok or (reply.status == 409 and _error_code(reply) == "idempotency_key_used"):
            return True
        self.world.unexpected(self.name, f"{what} answered {reply.status}: {reply.body[:200]!r}")
        return False

    async def write(self) -> None:
        """A post with the next numbered content."""
        self.written += 1
        content = f"{self.name}-{self.written}"
        key = f"post-{self.name}-{self.written}"
        sent = self.world.clock.now
        answered = await self.send_write("POST", "/api/posts", {"content": content}, key)
        if answered is not None and self._done("POST /api/posts", answered[1], 201):
            self._acknowledged(answered[0], content, key, answered[1], sent)

    async def update_profile(self) -> None:
        """A new headline: the same row written again and again (what a re-applied old entry would undo)."""
        self.updates += 1
        headline = f"{self.username} v{self.updates}"
        key = f"profile-{self.name}-{self.updates}"
        answered = await self.send_write("PATCH", "/api/users/me", {"headline": headline}, key)
        if answered is not None:
            self._done("PATCH /api/users/me", answered[1], 200)

    def _acknowledged(self, host: SimHost, content: str, key: str, reply: Reply, sent: float) -> None:
        lsn = _int(reply.headers.get("X-Cluster-LSN"))
        leader = _int(reply.headers.get("X-Leader-Id")) or _node(reply)
        post_id = None
        if reply.status == 201:
            post = reply.json()
            post_id = post.get("id")
            author = (post.get("author") or {}).get("username")
            if post.get("content") != content or author != self.username:
                self.world.violation(
                    Violation(
                        "token_misattributed",
                        f"{self.name} ({self.username}) wrote '{content}' and was answered a post by {author!r} "
                        f"with {post.get('content')!r}",
                        self.world.clock.now,
                    )
                )
        write = AckedWrite(content, key, self.world.clock.now, _node(reply) or 0, leader, lsn, post_id, sent)
        self.world.checker.acked.append(write)
        self.own.append(_Own(content, post_id, lsn))
        if post_id is not None and reply.headers.get("X-Node-Role") == "follower":
            self.world.control.create_task(self._read_own_write(host, content, post_id))

    async def _read_own_write(self, host: SimHost, content: str, post_id: int) -> None:
        """Read-your-writes: a write acknowledged through a follower is visible there at once."""
        reply = await self.call(host, "GET", f"/api/posts/{post_id}")
        if reply is not None:
            self._record_read(content, None, reply, same_node=True)

    async def read_back(self) -> None:
        own = self.rng.choice(self.own)
        if own.post_id is None:
            return
        min_lsn = own.lsn if (own.lsn is not None and self.rng.random() < 0.8) else None
        reply = await self.call(self._pick(), "GET", f"/api/posts/{own.post_id}", min_lsn=min_lsn)
        if reply is not None:
            self._record_read(own.content, min_lsn, reply, same_node=False)

    def _record_read(self, content: str, min_lsn: int | None, reply: Reply, *, same_node: bool) -> None:
        got = None
        if reply.status == 200:
            got = reply.json().get("content")
        if min_lsn is None and not same_node:
            return  # a plain read may be stale: nothing to check
        self.world.checker.reads.append(
            Read(
                content,
                self.world.clock.now,
                _node(reply) or 0,
                min_lsn,
                reply.status,
                _int(reply.headers.get("X-Cluster-LSN")),
                got,
                same_node,
            )
        )


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _claims(token: str) -> dict:
    """A JWT's claims, unverified (only to judge a refusal); {} if it has none."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _issued_at(token: str) -> float | None:
    """The ``iat`` of a JWT, unverified (only to judge whether a refusal was within spec)."""
    try:
        return float(_claims(token)["iat"])
    except (KeyError, ValueError, TypeError):
        return None


def _node(reply: Reply) -> int | None:
    return _int(reply.headers.get("X-Node-Id"))


def _error(reply: Reply) -> dict:
    try:
        return reply.json().get("error") or {}
    except (ValueError, AttributeError):
        return {}


def _error_code(reply: Reply) -> str | None:
    return _error(reply).get("code")


def _error_message(reply: Reply) -> str:
    return str(_error(reply).get("message", ""))
