"""What the cluster core takes from the world outside it: time, randomness, the network and discovery.

Nothing else in ``cluster/`` reads a clock, draws a random number, sleeps or opens a socket: each node
is given a :class:`Runtime`, the real one (:func:`real_runtime`) in a node process, a simulated one in
the deterministic simulation (``talentnest sim``), which runs many nodes in one process on one seed.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from talentnest.cluster.auth import Keyring
from talentnest.cluster.discovery import Discovery
from talentnest.cluster.transport import PeerClient, Reply
from talentnest.config import Settings


class Clock(Protocol):
    """Two clocks: ``monotonic`` for every duration (leases, timeouts, suspicion) and ``wall`` (Unix
    seconds) only for what other machines compare (signatures, timestamps shown to people)."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The process's clocks. ``asyncio``'s own timers use the event loop's clock, which is monotonic too."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ChunkStream(Protocol):
    """A streamed answer: its status and headers, then its body in chunks. ``authenticate(signature,
    body_sha256)`` checks one of the body's signed records against the request it answers and raises
    ``PeerUnreachable`` (a forged answer) when it fails."""

    status: int
    headers: Mapping[str, str]

    def chunks(self, size: int) -> AsyncIterator[bytes]: ...

    async def read_exactly(self, size: int) -> bytes:
        """The next ``size`` bytes of the body; fewer only where it ends (empty at its end)."""

    def authenticate(self, signature: str, body_sha256: str) -> None: ...


class Transport(Protocol):
    """Signed calls to peers. Every failure to get an answer raises ``PeerUnreachable``
    (``PeerRefused`` when nobody listens at the address: the peer's process is not running; a
    ``ForgedAnswer`` when the answer's signature fails); an authenticated answer, whatever its
    status, is returned."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def call(
        self,
        method: str,
        base_url: str,
        target: str,
        *,
        body: bytes = b"",
        timeout: float,
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
    ) -> Reply: ...

    async def call_json(self, method: str, base_url: str, target: str, payload: Any = None, *, timeout: float) -> Reply: ...

    def stream(
        self, base_url: str, target: str, *, connect_timeout: float, start_timeout: float, read_timeout: float
    ) -> AbstractAsyncContextManager[ChunkStream]: ...


class Resolver(Protocol):
    """Who the members are. ``resolve`` returns IPv4 addresses, sorted; on a lookup failure it returns
    the last good answer (and says so in the log once), never raises."""

    @property
    def source(self) -> str: ...

    @property
    def static(self) -> bool: ...

    @property
    def answered(self) -> bool:
        """Some lookup has been answered (NXDOMAIN and empty answers included), or the list is static."""
        ...

    async def resolve(self) -> list[str]: ...


@dataclass(frozen=True)
class Runtime:
    """A node's outside world. ``transport(keys, local_address)`` makes the node's peer client once its
    own address is known (``keys`` an ``auth.Keyring``); ``resolver(settings)`` makes its source of members.
    ``threads``: whether the node may start threads of its own (the store's reader threads, a streamed
    snapshot's read-ahead thread). The simulation says no: that work then goes through the event loop's
    default executor, which the simulation's loops run inline, on virtual time (docs/simulation.md)."""

    clock: Clock
    random: random.Random
    transport: Callable[[Keyring, str | None], Transport]
    resolver: Callable[[Settings], Resolver]
    threads: bool = True


def _dns_resolver(settings: Settings) -> Resolver:
    timeout = min(2.0, max(0.3, settings.heartbeat_interval))
    return Discovery(settings.service_name, dns_server=settings.dns_server, peers=settings.peers, timeout=timeout)


def real_runtime(*, tls: ssl.SSLContext | None = None, accept_legacy: bool = False) -> Runtime:
    """The runtime of a node process: system clocks, OS randomness, aiohttp to real peers (over TLS with
    ``tls``, the node's client context), real DNS."""
    clock, rng = SystemClock(), random.SystemRandom()

    def transport(keys: Keyring, local_address: str | None) -> Transport:
        return PeerClient(
            keys, local_address=local_address, rng=rng, wall=clock.wall, monotonic=clock.monotonic, tls=tls,
            accept_legacy=accept_legacy,
        )  # fmt: skip

    return Runtime(clock=clock, random=rng, transport=transport, resolver=_dns_resolver)
