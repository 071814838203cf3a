"""A simulated machine running one node: its data directory, clocks, and the incarnations of its
process (started, paused, crashed, stopped gracefully, started again on the same data).

An incarnation is one ``create_app`` on its own :class:`SimLoop`, driven through the ASGI lifespan as
uvicorn drives it: it accepts connections once startup completes; SIGTERM (``terminate``) runs the
node's ``leave`` while it still answers, then stops listening, lets open requests finish, and shuts
the app down. A crash abandons the loop where it stands: nothing more runs, the SQLite connection is
closed (SQLite rolls back what was not committed), the connections it had open are reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talentnest.cluster.runtime import Runtime
from talentnest.cluster.transport import Reply
from talentnest.config import Settings
from talentnest.errors import PeerUnreachable
from talentnest.sim._patches import opened_by
from talentnest.sim.dns import discovery_for
from talentnest.sim.loop import SimLoop
from talentnest.sim.net import PORT, Exchange, SimTransport, http_scope, reply_headers
from talentnest.store import guard

if TYPE_CHECKING:
    from talentnest.sim.world import World

log = logging.getLogger("talentnest.sim")

# Virtual Unix time at the start of every run (2025-06-15T00:00:00Z): fixed, so replays match.
WALL_EPOCH = 1_749_945_600.0
SIGTERM_LEAVE_TIMEOUT = 8.0  # cli.NodeServer: the node's leave() may take this long
GRACEFUL_SHUTDOWN = 10.0  # uvicorn timeout_graceful_shutdown in cli.run_node


class NodeClock:
    """A node's ``Clock``: monotonic time from its own origin, wall time with its own skew."""

    def __init__(self, host: SimHost):
        self.host = host

    def monotonic(self) -> float:
        return self.host.world.clock.now + self.host.mono_origin

    def wall(self) -> float:
        return WALL_EPOCH + self.host.world.clock.now + self.host.skew

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(eq=False)
class Incarnation:
    number: int
    loop: SimLoop
    app: Any
    node: Any  # app.state.node, app.state.db: the objects the simulation watches
    db: Any
    lock: Any  # its DATA_DIR lock (store.guard.DataDirLock)
    listening: bool = False
    started: bool = False
    started_at: float | None = None  # when its lifespan startup completed
    exited: bool = False
    open: dict[tuple[int, int], Exchange] = field(default_factory=dict)
    lifespan: asyncio.Queue | None = None
    idle: asyncio.Event | None = None


class SimHost:
    """One machine: address, data directory, clocks; at most one running incarnation at a time."""

    def __init__(self, world: World, index: int, address: str, data_dir: Path, env: dict[str, str]):
        self.world = world
        self.index = index
        self.address = address
        self.node_id = 0
        self.data_dir = data_dir
        self.env = env
        self.settings = Settings.from_env(env)
        self.name = f"n{index + 1}"
        rng = random.Random(f"{world.seed}:host:{index}")
        self.mono_origin = rng.uniform(1_000.0, 1_000_000.0)  # machines booted at different times
        self.skew = 0.0
        self.incarnation: Incarnation | None = None
        self._numbers = itertools.count(1)
        self._client_ports = itertools.count(40_000)
        self.clock = NodeClock(self)

    # --- what the network and DNS see ------------------------------------------------------

    @property
    def listening(self) -> bool:
        inc = self.incarnation
        return inc is not None and inc.listening and not inc.loop.dead

    @property
    def running(self) -> bool:
        """A process exists (starting, serving, paused or shutting down): Docker's DNS lists it."""
        return self.incarnation is not None

    @property
    def paused(self) -> bool:
        return self.incarnation is not None and self.incarnation.loop.paused

    # --- process control -------------------------------------------------------------------

    def start(self) -> None:
        if self.incarnation is not None:
            return
        from talentnest.app import create_app

        number = next(self._numbers)
        loop = SimLoop(self.world.clock, f"{self.name}#{number}", on_error=self.world.loop_error)
        world = self.world
        rng = random.Random(f"{world.seed}:runtime:{self.index}:{number}")
        runtime = Runtime(
            clock=self.clock,
            random=rng,
            transport=lambda keys, address: SimTransport(world.network, keys, address or self.address, self.clock.wall, rng),
            resolver=lambda settings: discovery_for(settings, world.dns, self.address),
            threads=False,  # reads and snapshot chunks run in the loop's executor: inline (sim/loop.py)
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The process takes its data directory's lock first, as the CLI does; the kernel lets go of
        # a killed process's lock, so a crash releases it here.
        lock = guard.DataDirLock(self.data_dir)
        lock.acquire(owner=f"simulated node at {self.address}")
        app = create_app(self.settings, runtime=runtime, data_lock=lock)
        inc = Incarnation(number, loop, app, app.state.node, app.state.db, lock)
        self.incarnation = inc
        world.scheduler.add(loop)
        world.watcher.started(self, inc)
        loop.create_task(self._lifespan(inc))
        world.trace.add(f"{self.name} start #{number}")

    async def _lifespan(self, inc: Incarnation) -> None:
        inc.lifespan = asyncio.Queue()
        inc.idle = asyncio.Event()
        inc.lifespan.put_nowait({"type": "lifespan.startup"})

        async def send(message: dict) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                inc.listening = inc.started = True
                inc.started_at = self.world.clock.now
                self.node_id = inc.node.node_id
                self.world.trace.add(f"{self.name} listening as node {self.node_id}")
            elif kind.endswith(".failed"):
                self.world.anomaly(self, "startup_failed" if "startup" in kind else "shutdown_failed", message.get("message", ""))

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        try:
            await inc.app(scope, inc.lifespan.get, send)
        except Exception as exc:  # uvicorn logs it and the process exits
            self.world.anomaly(self, "lifespan_error", repr(exc))
        self._exited(inc)

    def _exited(self, inc: Incarnation) -> None:
        """The process ended by itself (after a graceful shutdown, or a failed start)."""
        if inc is not self.incarnation:
            return
        inc.exited = True
        inc.listening = False
        inc.lock.release()  # a process that exits lets go of its lock, whatever the app did
        self._reset_open(inc)
        self._bury(inc)
        self.world.trace.add(f"{self.name} exited #{inc.number}")

    def terminate(self) -> None:
        """SIGTERM, as cli.NodeServer handles it."""
        inc = self.incarnation
        if inc is None or inc.lifespan is None:
            return
        self.world.trace.add(f"{self.name} sigterm #{inc.number}")
        inc.loop.create_task(self._graceful(inc))

    async def _graceful(self, inc: Incarnation) -> None:
        if inc.started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(inc.node.leave(), timeout=SIGTERM_LEAVE_TIMEOUT)
        inc.listening = False
        if inc.open:
            inc.idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inc.idle.wait(), timeout=GRACEFUL_SHUTDOWN)
        inc.lifespan.put_nowait({"type": "lifespan.shutdown"})

    def crash(self) -> None:
        """SIGKILL: nothing of this incarnation runs again."""
        inc = self.incarnation
        if inc is None:
            return
        inc.loop.dead = True
        inc.listening = False
        self._reset_open(inc)
        # What the kernel does to a killed process's files: uncommitted work rolls back, locks go.
        for conn in opened_by(inc.loop):
            with contextlib.suppress(Exception):
                conn.close()
        inc.lock.release()
        self._bury(inc)
        self.world.trace.add(f"{self.name} crash #{inc.number}")

    def _reset_open(self, inc: Incarnation) -> None:
        for exchange in list(inc.open.values()):
            path = exchange.request.target.split("?")[0]
            error = PeerUnreachable(
                f"http://{self.address}:{PORT} failed during {exchange.request.method} {path}: Server disconnected"
            )
            self.world.network.send_back(exchange, error=error)
        inc.open.clear()

    def _bury(self, inc: Incarnation) -> None:
        inc.loop.dead = True
        self.world.scheduler.remove(inc.loop)
        # Kept until the run ends, so that the abandoned coroutines are not collected (and their
        # finally blocks run) in the middle of the run.
        self.world.graveyard.append((inc, list(asyncio.all_tasks(inc.loop))))
        self.incarnation = None

    def pause(self) -> None:
        if self.incarnation is not None:
            self.incarnation.loop.paused = True
            self.world.trace.add(f"{self.name} pause")

    def resume(self) -> None:
        if self.incarnation is not None:
            self.incarnation.loop.paused = False
            self.world.trace.add(f"{self.name} resume")

    def wipe(self) -> None:
        """Lose the disk (a replaced machine): only while the process is not running."""
        if self.incarnation is None and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
            self.world.trace.add(f"{self.name} wipe")
            self.world.watcher.wiped(self)

    # --- serving ---------------------------------------------------------------------------

    def accept(self, exchange: Exchange) -> None:
        inc = self.incarnation
        key = (exchange.id, exchange.served)
        inc.open[key] = exchange
        inc.loop.create_task(self._serve(inc, exchange, key))

    async def _serve(self, inc: Incarnation, exchange: Exchange, key: tuple[int, int]) -> None:
        request = exchange.request
        scope = http_scope(request, src=exchange.src, dst=self.address, client_port=next(self._client_ports))
        start: dict | None = None
        chunks: list[bytes] = []
        complete = False
        delivered = False
        disconnected = asyncio.Event()

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            nonlocal start, complete
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    complete = True

        try:
            await inc.app(scope, receive, send)
        except Exception as exc:
            self.world.anomaly(self, "unhandled_exception", f"{request.method} {request.target}: {exc!r}")
        finally:
            disconnected.set()
        if inc.open.pop(key, None) is None:
            return  # the connection was reset meanwhile
        if inc.idle is not None and not inc.open:
            inc.idle.set()
        if start is None:
            reply = Reply(500, reply_headers([(b"content-type", b"text/plain")]), b"Internal Server Error")
        elif not complete:
            if key[1] == 1:
                error = PeerUnreachable(f"http://{self.address}:{PORT} closed the answer early")
                self.world.network.send_back(exchange, error=error)
            return
        else:
            reply = Reply(start["status"], reply_headers(start.get("headers", [])), b"".join(chunks))
        self.world.watcher.answered(self, inc, exchange, reply)
        # A duplicate's answer goes to whoever sent the copy (a replay is refused), not to the caller.
        if key[1] == 1:
            self.world.network.send_back(exchange, reply)
