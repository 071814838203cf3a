"""One simulated run: N nodes of the real cluster code in one process, on one seed.

``run(config)`` builds the world (virtual clock, one loop per process, the in-memory network and
DNS, the hosts, the clients), plays the fault schedule while clients write and read, heals every
fault at the end of the window, waits (bounded) for the nodes to converge, checks every invariant,
and returns a ``Result`` with the violations, the trace's hash and what it measured.

Timeline of a run (virtual seconds): nodes start within the first 0.5 s; clients from 1.5 s; faults
within [2.5, 2.5 + window); at the end of the window every fault is over and clients start nothing new
(they finish what they started, retrying, for up to 15 s more); the nodes must then converge within
``settle`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talentnest.sim import faults as faults_mod
from talentnest.sim import findings
from talentnest.sim._patches import forget_apps, simulated_process
from talentnest.sim.clients import Client
from talentnest.sim.dns import SimDNS
from talentnest.sim.faults import Fault
from talentnest.sim.host import Incarnation, SimHost
from talentnest.sim.invariants import Checker, Violation
from talentnest.sim.loop import Scheduler, SimLoop, Stalled, VirtualClock, restart_numbering
from talentnest.sim.nemesis import Nemesis
from talentnest.sim.net import Network
from talentnest.sim.trace import Trace
from talentnest.sim.watch import Watcher

FAULTS_START = 2.5
CLIENTS_START = 1.5
FINISH_GRACE = 15.0  # after the window, clients may finish what they started for this long
CONVERGENCE_POLL = 0.25
DEFAULT_WINDOW = 8.0
DEFAULT_SETTLE = 30.0
JWT_SECRET = "sim-jwt-secret-0123456789abcdef0123456789abcdef"
SIM_TIMINGS = {"HEARTBEAT_INTERVAL": "1", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "5"}


@dataclass(frozen=True)
class RunConfig:
    seed: int
    nodes: int = 3
    mode: str = "async"
    mutant: str | None = None
    faults: tuple[Fault, ...] | None = None  # None: drawn from the seed
    window: float = DEFAULT_WINDOW
    settle: float = DEFAULT_SETTLE
    clients: int = 3
    fail_fast: bool = True
    keep: Path | None = None  # keep the nodes' data directories under this directory
    root: Path | None = None  # where data directories are made (default: /dev/shm when present)
    tolerate: tuple[str, ...] = ()  # known findings this run tolerates (sim.findings)

    @property
    def spare(self) -> str | None:
        """The machine ``join`` faults bring in: async mode only (in quorum mode the voters are
        CLUSTER_SIZE, and a member beyond it is a misconfiguration, not a fault)."""
        return f"n{self.nodes + 1}" if self.mode == "async" else None

    def schedule(self) -> list[Fault]:
        """The faults of this run: the given ones, or the seed's; less what a tolerated finding avoids."""
        if self.faults is not None:
            drawn = list(self.faults)
        else:
            names = [f"n{i + 1}" for i in range(self.nodes)]
            drawn = faults_mod.generate(self.seed, names, start=FAULTS_START, end=FAULTS_START + self.window, spare=self.spare)
        tolerated = findings.resolve(list(self.tolerate))
        dns_modes = frozenset().union(*(f.avoid_dns_modes for f in tolerated))
        skews = [f.max_skew for f in tolerated if f.max_skew is not None]
        return faults_mod.without(drawn, dns_modes=dns_modes, max_skew=min(skews) if skews else None)


@dataclass
class Result:
    config: RunConfig
    faults: list[Fault]
    violations: list[Violation]  # those no tolerated finding accounts for
    steps: int
    virtual_seconds: float
    wall_seconds: float
    digest: str
    trace_tail: list[str]
    log_tail: list[str]
    stats: dict[str, Any] = field(default_factory=dict)
    known: list[tuple[str, Violation]] = field(default_factory=list)  # (finding, violation) tolerated

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def first(self) -> Violation | None:
        return self.violations[0] if self.violations else None


class _LogCapture(logging.Handler):
    """The core's warnings and errors, with virtual time and node; an error is a violation."""

    def __init__(self, world: World):
        super().__init__(logging.WARNING)
        self.world = world
        self.lines: deque[str] = deque(maxlen=300)

    def emit(self, record: logging.LogRecord) -> None:
        world = self.world
        if world.closing:
            return
        try:
            loop = asyncio.get_running_loop()
            where = getattr(loop, "name", "?")
        except RuntimeError:
            where = "-"
        message = record.getMessage()
        self.lines.append(f"{world.clock.now:12.6f} {where:<6} {record.levelname:<8} {record.name}: {message}")
        if record.levelno >= logging.ERROR:
            # A leader that hears of another leader in its own term says so at ERROR: that is the breach of
            # one leader per term seen from inside, judged (and tolerated) as that invariant.
            invariant = "one_leader_per_term" if "also claims to lead" in message else "core_error"
            world.violation(Violation(invariant, f"{where} logged {record.levelname}: {message}", world.clock.now))


class World:
    def __init__(self, config: RunConfig, directory: Path):
        restart_numbering()
        self.config = config
        self.seed = config.seed
        self.directory = directory
        self.clock = VirtualClock()
        self.trace = Trace(self.clock)
        self.scheduler = Scheduler(self.clock)
        self.control = SimLoop(self.clock, "ctl", on_error=self.loop_error)
        self.scheduler.add(self.control)
        self.network = Network(self.clock, self.scheduler.wire, config.seed, self.trace)
        self.dns = SimDNS(lambda: [h.address for h in self.hosts if h.running])
        self.checker = Checker(quorum=config.mode == "quorum", report=self.violation, nodes=config.nodes)
        self.tolerated = findings.resolve(list(config.tolerate))
        self.known: list[tuple[str, Violation]] = []
        self.ended_by: str | None = None  # a tolerated finding's trigger (or a livelock) ended the run
        self.graveyard: list[tuple[Incarnation, list]] = []
        self.closing = False
        self.settled = False
        self.unexpected_answers: list[str] = []
        # Tokens refused as ended by a password change no client made: (token key, refusal, time).
        self.revoked: list[tuple[str, str, float]] = []
        self.hosts: list[SimHost] = []
        for i in range(config.nodes + (config.spare is not None)):
            address = f"10.0.2.{i + 1}"
            data_dir = directory / f"n{i + 1}"
            env = {
                "JWT_SECRET": JWT_SECRET,
                "ADVERTISE_ADDRESS": address,
                "DATA_DIR": str(data_dir),
                "ARGON2_TIME_COST": "1",
                "ARGON2_MEMORY_KIB": "1024",
                "ARGON2_PARALLELISM": "1",
                # The simulated clients write faster than a member may; the limits are not under test here.
                "WRITE_LIMIT_PER_ACCOUNT": "0",
                "WRITE_LIMIT_PER_ADDRESS": "0",
                "REPLICATION_MODE": config.mode,
                **SIM_TIMINGS,
            }
            if config.mode == "quorum":
                env["CLUSTER_SIZE"] = str(config.nodes)
            host = SimHost(self, i, address, data_dir, env)
            self.hosts.append(host)
            self.network.hosts[address] = host
        self.by_name = {h.name: h for h in self.hosts}
        self.members = self.hosts[: config.nodes]  # the spare, if any, is outside until it joins
        self.spare = self.hosts[config.nodes] if config.spare is not None else None
        self.clients = [Client(self, i) for i in range(config.clients)]
        # A given schedule may run past the default window: the run waits for its last fault to end.
        self.schedule = config.schedule()
        self.window_end = max([FAULTS_START + config.window, *(f.end for f in self.schedule)])
        self.writes_until = self.window_end
        self.clients_until = self.window_end + FINISH_GRACE
        self.watcher = Watcher(self, len(self.hosts))
        self.nemesis = Nemesis(self)
        self.scheduler.after_step = self.watcher.stepped

    # --- what hosts and clients report ---------------------------------------------------------

    def violation(self, violation: Violation) -> None:
        if self.closing:
            return
        finding = findings.known_as(
            violation.invariant,
            self.tolerated,
            disk_lost=bool(self.checker.wiped),
            counted_out=self.watcher.counted_out,
        )
        if finding is not None:
            self.known.append((finding, violation))
            self.trace.add(f"KNOWN {finding}: {violation}")
            return
        self.checker.record(violation)
        self.trace.add(f"VIOLATION {violation}")

    def known_trigger(self, trigger: str, text: str) -> bool:
        """A tolerated finding strikes now: the run ends here, as known (what follows would follow
        from it). False if no tolerated finding has this trigger (the invariants judge what follows)."""
        finding = next((f for f in self.tolerated if f.trigger == trigger), None)
        if finding is None or self.ended_by is not None:
            return finding is not None
        self.ended_by = finding.name
        violation = Violation(trigger, text, self.clock.now)
        self.known.append((finding.name, violation))
        self.trace.add(f"KNOWN {finding.name}: {violation}")
        return True

    def anomaly(self, host: SimHost, kind: str, text: str) -> None:
        self.violation(Violation(kind, f"{host.name}: {text[-2000:]}", self.clock.now))

    def unexpected(self, who: str, text: str) -> None:
        self.unexpected_answers.append(f"{who}: {text}")
        self.violation(Violation("unexpected_answer", f"{who}: {text}", self.clock.now))

    def loop_error(self, name: str, context: dict) -> None:
        exc = context.get("exception")
        self.violation(Violation("loop_error", f"{name}: {context.get('message')} {exc!r}", self.clock.now))

    # --- the run -----------------------------------------------------------------------------------

    def _converged(self) -> bool:
        if not all(c.done for c in self.clients):
            return False
        if self.spare is not None and self.spare.running:
            return False  # it is still leaving
        incs = [h.incarnation for h in self.members]
        if any(inc is None or not inc.listening or inc.loop.paused for inc in incs):
            return False
        if len({inc.db.last_lsn for inc in incs}) != 1:
            return False
        leaders = [inc.node for inc in incs if inc.node.role == "leader"]
        if len(leaders) != 1 or any(inc.node.leader_id != leaders[0].node_id for inc in incs):
            return False
        return len({inc.db.checksum() for inc in incs}) == 1

    async def _watch_convergence(self) -> None:
        while not self.settled:
            if self._converged():
                self.settled = True
                self.trace.add("converged")
                return
            await asyncio.sleep(CONVERGENCE_POLL)

    def _stop(self) -> bool:
        return self.settled or self.ended_by is not None or (self.config.fail_fast and bool(self.checker.violations))

    def run(self) -> Result:
        started = time.perf_counter()
        config = self.config
        schedule = self.schedule
        capture = _LogCapture(self)
        logger = logging.getLogger("talentnest")
        saved = (logger.level, logger.propagate)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
        logger.addHandler(capture)
        # No garbage collection during the run: it would finalise abandoned tasks at moments that
        # differ between replays. Everything is collected at the end (``_teardown``).
        collecting = gc.isenabled()
        gc.disable()
        try:
            from talentnest.sim import mutants

            with simulated_process(config.seed), mutants.applied(config.mutant):
                self._play(schedule)
                self._finish()
            result = self._result(schedule, started, capture)
        finally:
            logger.removeHandler(capture)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
            self._teardown()
            if collecting:
                gc.enable()
        result.wall_seconds = time.perf_counter() - started
        return result

    def _result(self, schedule: list[Fault], started: float, capture: _LogCapture) -> Result:
        return Result(
            config=self.config,
            faults=schedule,
            violations=list(self.checker.violations),
            steps=self.scheduler.steps,
            virtual_seconds=self.clock.now,
            wall_seconds=time.perf_counter() - started,
            digest=self.trace.digest(),
            trace_tail=list(self.trace.tail),
            log_tail=list(capture.lines),
            known=list(self.known),
            stats={
                "messages": self.network.sent,
                "dropped": self.network.dropped,
                "acked_writes": len(self.checker.acked),
                "commits": self.checker.commits,
                "client_requests": sum(c.requests for c in self.clients),
                "terms": max(self.checker.leaders, default=0),
                "processes_ended": len(self.graveyard),
                "trace_events": self.trace.events,
            },
        )

    def _play(self, schedule: list[Fault]) -> None:
        rng_start = __import__("random").Random(f"{self.seed}:start")
        for host in self.members:
            self.control.call_at(rng_start.uniform(0.0, 0.5), host.start)
        for client in self.clients:
            self.control.call_at(CLIENTS_START + rng_start.uniform(0, 0.5), lambda c=client: self.control.create_task(c.run()))
        self.nemesis.schedule(schedule)
        try:
            self.scheduler.run_until(self.window_end, stop=self._stop)
            if self._stop():
                return
            self.nemesis.heal_everything()
            self.trace.add("faults over")
            self.control.create_task(self._watch_convergence())
            self.scheduler.run_until(self.window_end + self.config.settle, stop=self._stop)
        except Stalled as exc:
            # Nothing after it can be judged: the run ends here, failed.
            self.violation(Violation("livelock", str(exc), self.clock.now))
            self.ended_by = "livelock"

    def _finish(self) -> None:
        if self.ended_by is not None or (self.config.fail_fast and self.checker.violations):
            return
        now = self.clock.now
        incs = [(h, h.incarnation) for h in self.members]
        lost_majority = self.checker.quorum and len({node for _, node in self.checker.wiped}) > len(self.members) // 2
        if not self.settled and lost_majority:
            # Quorum mode with a majority of disks lost: the acknowledged writes may be on none of the
            # nodes that kept theirs, so no leader may be elected (docs/cluster.md): waiting is right.
            self.trace.add("not converged: a majority of the nodes lost their disks (quorum mode waits for an operator)")
        elif not self.settled:
            state = "; ".join(
                f"{h.name}: down"
                if inc is None
                else f"{h.name}: {inc.node.role} t{inc.node.term} LSN {inc.db.last_lsn} {inc.node.readiness()[1]}"
                for h, inc in incs
            )
            pending = [c.name for c in self.clients if not c.done]
            self.violation(
                Violation(
                    "no_convergence",
                    f"not converged {self.config.settle:g} s after the faults ended ({state}; clients busy: {pending})",
                    now,
                )
            )
        live = [(h, inc) for h, inc in incs if inc is not None and inc.started]
        leader = next((inc for _, inc in live if inc.node.role == "leader"), None)
        # The leader's data is the cluster's. With none (a quorum cluster that lost most disks waits for an
        # operator), a write is kept if a live node's disk holds it: seed 2455 judged an empty node's.
        final: Counter[str] = Counter()
        for inc in [leader] if leader is not None else [inc for _, inc in live]:
            for content, count in inc.db.conn.execute("SELECT content, COUNT(*) FROM posts GROUP BY content"):
                final[content] = max(final[content], count)
        self.checker.finish(final, self.watcher.archived_contents(), at=now)
        lost_signups = self.watcher.archived_token_keys() if not self.checker.quorum else set()
        for key, refused, at in self.revoked:
            # Only a signup async mode lost and archived excuses it (its token's key is in an archive).
            if key not in lost_signups:
                self.violation(Violation("token_refused", f"{refused} (its signup is in no archive)", at))
        for host, inc in live:
            self.watcher.check_archived(host, self.watcher.of[host.index].entries, self.watcher.log_of(inc))
        for host, inc in live:
            self.trace.add(f"final {host.name} LSN {inc.db.last_lsn} checksum {inc.db.checksum()}")

    def _teardown(self) -> None:
        self.closing = True
        for host in self.hosts:
            inc = host.incarnation
            if inc is not None:
                inc.loop.dead = True
                with contextlib.suppress(Exception):
                    inc.db.conn.close()
                inc.lock.release()
                host._bury(inc)
        self.control.dead = True
        loops = [self.control, *(inc.loop for inc, _ in self.graveyard)]
        # The abandoned coroutines are finalised now: their finally blocks run against closed
        # databases, and those a crash left unstarted warn. Nothing of that belongs to the run.
        hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for loop in loops:
                    for task in asyncio.all_tasks(loop):
                        with contextlib.suppress(BaseException):
                            task.get_coro().close()  # now, rather than whenever it is collected
                self.graveyard.clear()
                self.scheduler.loops.clear()
                self.hosts.clear()
                self.clients.clear()
                forget_apps()
                gc.collect()
        finally:
            sys.unraisablehook = hook
        if self.config.keep is None:
            shutil.rmtree(self.directory, ignore_errors=True)


def default_root() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() else Path(tempfile.gettempdir())


_frozen = False


def _freeze_heap() -> None:
    """Once per process: what is alive before the first run (modules, FastAPI's route models) is
    moved out of the collector's sight, so that collecting a run's garbage costs milliseconds."""
    global _frozen
    if not _frozen:
        import talentnest.app  # noqa: F401 - imported (with FastAPI) before the heap is frozen

        gc.collect()
        gc.freeze()
        _frozen = True


def run(config: RunConfig) -> Result:
    """Run one seed; the data directories live under ``config.keep`` (kept) or a temporary directory."""
    _freeze_heap()
    if config.keep is not None:
        directory = config.keep / f"seed-{config.seed}"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix=f"talentnest-sim-{config.seed}-", dir=config.root or default_root()))
    return World(config, directory).run()
