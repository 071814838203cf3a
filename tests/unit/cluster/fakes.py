"""Fakes for the cluster core's Protocols: a clock the test moves, a network the test answers, DNS the
test writes. A ClusterNode built on them runs its real code with no socket and no real time."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talentnest.cluster.node import ClusterNode
from talentnest.cluster.replication import Replication
from talentnest.cluster.runtime import Runtime
from talentnest.cluster.transport import PeerRefused, Reply
from talentnest.config import Settings
from talentnest.errors import PeerUnreachable
from talentnest.store import Database
from talentnest.store.schema import product_database

JWT_SECRET = "unit-test-secret-unit-test-secret"


class FakeClock:
    """Monotonic and wall time that move only when the test says so (``sleep`` moves them too)."""

    def __init__(self, start: float = 1000.0, wall: float = 1_700_000_000.0):
        self.now = start
        self.wall_offset = wall - start

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Call:
    method: str
    url: str
    target: str
    body: bytes


Handler = Callable[[Call], Reply | Exception]


@dataclass
class FakeTransport:
    """Answers each call with ``handler(call)``: a Reply, or an exception to raise (PeerUnreachable,
    PeerRefused). Without a handler, every peer refuses the connection. Records every call."""

    handler: Handler | None = None
    calls: list[Call] = field(default_factory=list)
    started: bool = False

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    async def call(self, method, base_url, target, *, body=b"", timeout, headers=None, sign=True) -> Reply:
        call = Call(method, base_url, target, body)
        self.calls.append(call)
        answer = self.handler(call) if self.handler else PeerRefused(f"{base_url} refused the connection")
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def call_json(self, method, base_url, target, payload=None, *, timeout) -> Reply:
        body = b"" if payload is None else json.dumps(payload).encode()
        return await self.call(method, base_url, target, body=body, timeout=timeout)

    @asynccontextmanager
    async def stream(self, base_url, target, *, connect_timeout, start_timeout, read_timeout):
        raise PeerUnreachable(f"{base_url} sends no snapshot in this test")
        yield  # pragma: no cover

    def to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.target.startswith(path)]


def reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status, {}, json.dumps(payload).encode())


class FakeResolver:
    """DNS as the test writes it; ``answer`` None means the lookup failed (the last answer is kept)."""

    def __init__(self, addresses: list[str] | None = None):
        self.answer: list[str] | None = list(addresses or [])
        self._last: list[str] = list(self.answer or [])
        self.source = "DNS test"
        self.static = False
        self.answered = False

    async def resolve(self) -> list[str]:
        if self.answer is not None:
            self._last = sorted(self.answer)
            self.answered = True
        return list(self._last)


@dataclass
class Rig:
    node: ClusterNode
    db: Database
    clock: FakeClock
    transport: FakeTransport
    resolver: FakeResolver
    replication: Replication


def make_rig(data_dir: Path, *, address: str = "10.0.2.3", peers: list[str] | None = None, **settings: Any) -> Rig:
    """A node at ``address`` (ID 515 by default) with its real store, on fakes; not started."""
    clock, transport, resolver = FakeClock(), FakeTransport(), FakeResolver([address, *(peers or [])])
    values: dict[str, Any] = dict(jwt_secret=JWT_SECRET, data_dir=data_dir, advertise_address=address)
    values.update(settings)
    runtime = Runtime(clock=clock, random=random.Random(1), transport=lambda key, local: transport, resolver=lambda s: resolver)
    db = product_database(data_dir, clock=clock.wall)
    db.open()
    node = ClusterNode(Settings(**values), db, runtime)
    replication = Replication(node, db, syncing=lambda: node.worker.syncing, wait_applied=node.waiters.wait)
    node.replication = replication
    return Rig(node, db, clock, transport, resolver, replication)


def info(node_id: int, address: str, *, term: int = 1, role: str = "follower", lsn: int = 0, **extra: Any) -> dict[str, Any]:
    """A peer's heartbeat body (``NodeInfo``)."""
    return {
        "id": node_id,
        "url": f"http://{address}:3000",
        "term": term,
        "role": role,
        "leader_id": extra.pop("leader_id", None),
        "last_lsn": lsn,
        "last_term": extra.pop("last_term", term if lsn else 0),
        "ready": extra.pop("ready", True),
        "leaving": extra.pop("leaving", False),
        **extra,
    }


async def started(rig: Rig) -> Rig:
    """The rig's node joined (its address known, its transport up), with no loop of its own."""
    await rig.node.start(run_loop=False)
    return rig
