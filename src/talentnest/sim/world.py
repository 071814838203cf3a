"""One simulated run: N nodes of the real cluster code in one process, on one seed.

``run(config)`` builds the world (virtual clock, one loop per process, the in-memory network and
DNS, the hosts, the clients), plays the fault schedule while clients write and read, heals every
fault at the end of the window, waits (bounded) for the nodes to converge, checks every invariant,
and returns a ``Result`` with the violations, the trace's hash and what it measured.

Timeline of a run (virtual seconds): nodes start within the first 0.5 s; clients from 1.5 s; faults
within [3, 3 + window); at the end of the window every fault is over and clients start nothing new
(they finish what they started, retrying, for up to 15 s more); the nodes must then converge within
``settle`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talentnest.cluster.discovery import node_id_for
from talentnest.sim import faults as faults_mod
from talentnest.sim import findings
from talentnest.sim._patches import forget_apps, simulated_process
from talentnest.sim.clients import Client
from talentnest.sim.dns import Override, SimDNS
from talentnest.sim.faults import Fault
from talentnest.sim.host import Incarnation, SimHost
from talentnest.sim.invariants import Checker, Commit, Violation
from talentnest.sim.loop import Scheduler, SimLoop, VirtualClock, restart_numbering
from talentnest.sim.net import Conditions, Network
from talentnest.sim.trace import Trace

BOOTSTRAP = 1.0  # the first node up leads alone until the others start: by design, not a finding
FAULTS_START = 2.5
CLIENTS_START = 1.5
FINISH_GRACE = 15.0  # after the window, clients may finish what they started for this long
CONVERGENCE_POLL = 0.25
DEFAULT_WINDOW = 8.0
DEFAULT_SETTLE = 30.0
JWT_SECRET = "sim-jwt-secret-0123456789abcdef0123456789abcdef"
SIM_TIMINGS = {"HEARTBEAT_INTERVAL": "1", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "5"}
STATE_FILENAME = "cluster-state.json"  # cluster/state.py: where a node keeps its term and vote
ARCHIVE_DIR = "archive"  # store/divergence.py


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
            drawn = faults_mod.generate(
                self.seed, names, start=FAULTS_START, end=FAULTS_START + self.window, spare=self.spare
            )
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


def canonical_digest(changes: str | list) -> int:
    """A digest of an entry's changes that does not depend on how a node spelled the JSON."""
    value = json.loads(changes) if isinstance(changes, str) else changes
    return zlib.crc32(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


@dataclass
class _Watch:
    """What the world remembers of one host across its incarnations."""

    role: tuple[str, int] | None = None
    lsn: int = 0
    conn: Any = None
    captured_to: int = 0
    entries: dict[int, tuple[int, int]] = field(default_factory=dict)  # lsn -> (term, digest) it held
    archives: dict[str, dict] = field(default_factory=dict)  # archive file name -> parsed


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
            world.violation(Violation("core_error", f"{where} logged {record.levelname}: {message}", world.clock.now))


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
        self.ended_by: str | None = None  # a tolerated finding's trigger ended the run
        self.graveyard: list[tuple[Incarnation, list]] = []
        self.closing = False
        self.settled = False
        self.unexpected_answers: list[str] = []
        self.hosts: list[SimHost] = []
        self.watch: dict[int, _Watch] = {}
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
                "REPLICATION_MODE": config.mode,
                **SIM_TIMINGS,
            }
            if config.mode == "quorum":
                env["CLUSTER_SIZE"] = str(config.nodes)
            host = SimHost(self, i, address, data_dir, env)
            self.hosts.append(host)
            self.watch[i] = _Watch()
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
        self.active: dict[int, Fault] = {}
        self.overrides: dict[int, Override] = {}
        self._fault_ids = itertools.count()
        self.scheduler.after_step = self.after_step

    # --- what hosts and clients report ---------------------------------------------------------

    def violation(self, violation: Violation) -> None:
        if self.closing:
            return
        finding = findings.known_as(violation.invariant, self.tolerated, disk_lost=bool(self.checker.wiped))
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

    def observe_start(self, host: SimHost, inc: Incarnation) -> None:
        inc.loop.owner = host
        inc.db.add_commit_listener(lambda lsn: self._committed(host, inc, lsn))
        self.watch[host.index].conn = None

    def observe_exit(self, host: SimHost, inc: Incarnation) -> None:
        pass

    def observe_wipe(self, host: SimHost) -> None:
        self.watch[host.index] = _Watch()
        self.checker.wiped.append((self.clock.now, node_id_for(host.address)))

    def observe_answer(self, host: SimHost, inc: Incarnation, exchange, reply) -> None:
        """Checks on what leaves a node, at the instant it leaves."""
        if self.closing:
            return
        request = exchange.request
        if reply.status >= 500 and reply.status != 503:
            self.violation(
                Violation(
                    "server_error",
                    f"{host.name} answered {request.method} {request.target} with {reply.status}: {reply.body[:300]!r}",
                    self.clock.now,
                )
            )
            return
        path = request.target.split("?")[0]
        if reply.status != 200 or path not in ("/cluster/vote", "/cluster/replicate"):
            return
        answer = json.loads(reply.body)
        if path == "/cluster/vote":
            asked = json.loads(request.body)
            if answer.get("granted") and not asked.get("pre_vote"):
                term, candidate = int(asked["term"]), int(asked["candidate_id"])
                if not self._vote_on_disk(host, term, candidate):
                    self.violation(
                        Violation(
                            "vote_not_durable",
                            f"{host.name} granted its vote in term {term} to node {candidate} before storing it",
                            self.clock.now,
                        )
                    )
        else:
            applied = int(answer.get("applied_lsn", 0))
            if applied > inc.db.last_lsn:
                self.violation(
                    Violation(
                        "ack_beyond_commit",
                        f"{host.name} answered replicate with applied_lsn {applied} while it has committed {inc.db.last_lsn}",
                        self.clock.now,
                    )
                )

    def _vote_on_disk(self, host: SimHost, term: int, candidate: int) -> bool:
        try:
            stored = json.loads((host.data_dir / STATE_FILENAME).read_text())
        except (OSError, ValueError):
            return False
        return int(stored.get("term", 0)) > term or (int(stored.get("term", 0)) == term and stored.get("voted_for") == candidate)

    # --- per step ----------------------------------------------------------------------------------

    def after_step(self, loop: SimLoop) -> None:
        host = loop.owner
        if host is None:
            return
        inc = host.incarnation
        if inc is None or inc.loop is not loop:
            return
        watch = self.watch[host.index]
        node, db = inc.node, inc.db
        role = (node.role, node.term)
        if role != watch.role:
            watch.role = role
            self.trace.add(f"{host.name} is {role[0]} in term {role[1]}")
            if role[0] == "leader":
                as_it_started = inc.started_at is None or inc.started_at == self.clock.now
                if as_it_started and len(self.hosts) > 1 and self.clock.now > BOOTSTRAP:
                    text = f"{host.name} led term {role[1]} alone as it started"
                    if self.known_trigger("alone-at-start", text):
                        return
                self.checker.leader(self.clock.now, role[1], node.node_id)
        try:
            conn = db.conn
        except RuntimeError:
            return  # not open yet (or closing): its LSN is not its data's
        if conn is not watch.conn:
            watch.conn = conn
            self._database_opened(host, inc)
        lsn = db.last_lsn
        if lsn != watch.lsn:
            if lsn < watch.lsn:
                self._lsn_went_back(host, watch.lsn, lsn)
            watch.lsn = lsn

    def _committed(self, host: SimHost, inc: Incarnation, lsn: int) -> None:
        if inc.loop.dead or self.closing:
            return
        node, db = inc.node, inc.db
        if node.role == "leader":
            self.checker.commit(Commit(self.clock.now, node.node_id, db.last_term, lsn))
        watch = self.watch[host.index]
        for row_lsn, term, changes in db.conn.execute(
            "SELECT lsn, term, changes FROM _tn_log WHERE lsn > ? ORDER BY lsn", (watch.captured_to,)
        ):
            watch.entries[row_lsn] = (term, canonical_digest(changes))
            watch.captured_to = row_lsn

    def _log_of(self, inc: Incarnation) -> dict[int, tuple[int, int]]:
        return {
            lsn: (term, canonical_digest(ch)) for lsn, term, ch in inc.db.conn.execute("SELECT lsn, term, changes FROM _tn_log")
        }

    def _database_opened(self, host: SimHost, inc: Incarnation) -> None:
        """The database file was (re)opened (a start, or a snapshot installed): everything this host
        held before and no longer holds must be in its archive."""
        watch = self.watch[host.index]
        now_held = self._log_of(inc)
        self._check_archived(host, watch.entries, now_held)
        watch.entries = now_held
        watch.captured_to = max(now_held, default=0)

    def _check_archived(self, host: SimHost, before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> None:
        gone = {lsn: v for lsn, v in before.items() if after.get(lsn) != v}
        if not gone:
            return
        archived = self._archived_entries(host)
        missing = sorted(lsn for lsn, v in gone.items() if v not in archived.get(lsn, ()))
        if missing:
            self.violation(
                Violation(
                    "divergent_not_archived",
                    f"{host.name} no longer holds entries {_ranges(missing)} it held before, and no archive has them",
                    self.clock.now,
                )
            )

    def _archives(self, host: SimHost) -> dict[str, dict]:
        watch = self.watch[host.index]
        directory = host.data_dir / ARCHIVE_DIR
        if directory.is_dir():
            for path in sorted(directory.glob("*.jsonl")):
                if path.name not in watch.archives:
                    lines = path.read_text().splitlines()
                    watch.archives[path.name] = {"header": json.loads(lines[0]), "entries": [json.loads(x) for x in lines[1:]]}
        return watch.archives

    def _archived_entries(self, host: SimHost) -> dict[int, set[tuple[int, int]]]:
        held: dict[int, set[tuple[int, int]]] = {}
        for archive in self._archives(host).values():
            for entry in archive["entries"]:
                held.setdefault(int(entry["lsn"]), set()).add((int(entry["term"]), canonical_digest(entry["changes"])))
        return held

    def _lsn_went_back(self, host: SimHost, before: int, after: int) -> None:
        for archive in self._archives(host).values():
            header = archive["header"]
            if header["from_lsn"] <= after + 1 and header["to_lsn"] >= before:
                self.trace.add(f"{host.name} LSN {before} -> {after}, archived LSN {header['from_lsn']}-{header['to_lsn']}")
                return
        self.violation(
            Violation(
                "lsn_backwards",
                f"{host.name}'s LSN went from {before} to {after} with no archive of LSN {after + 1}-{before}",
                self.clock.now,
            )
        )

    # --- faults ----------------------------------------------------------------------------------

    def _addresses(self, names) -> list[str]:
        return [self.by_name[n].address for n in names]

    def _links(self, fault: Fault) -> list[tuple[str, str]]:
        everyone = [h.address for h in self.hosts]
        if fault.kind == "isolate":
            (me,) = self._addresses(fault.nodes)
            return [(me, o) for o in everyone if o != me] + [(o, me) for o in everyone if o != me]
        if fault.kind == "split":
            side = set(self._addresses(fault.nodes))
            rest = [a for a in everyone if a not in side]
            return [(a, b) for a in sorted(side) for b in rest] + [(b, a) for a in sorted(side) for b in rest]
        a, b = self._addresses(fault.nodes)
        return [(a, b)] if fault.kind == "cut" else [(a, b), (b, a)]

    def begin(self, fault_id: int, fault: Fault) -> None:
        self.active[fault_id] = fault
        self.trace.add(f"fault begins: {fault.describe()}")
        kind = fault.kind
        if kind in ("crash", "pause", "stop", "wipe", "skew", "join"):
            host = self.by_name[fault.nodes[0]]
            if kind == "join":
                self.control.create_task(self._join(host))
            elif kind == "crash":
                host.crash()
            elif kind == "pause":
                host.pause()
            elif kind == "stop":
                host.terminate()
            elif kind == "wipe":
                host.crash()
                host.wipe()
            else:
                host.skew = float(fault.params["seconds"])
        elif kind in faults_mod.PARTITION_KINDS:
            self.network.cut(self._links(fault))
        elif kind == "net":
            p = fault.params
            self.network.conditions = Conditions(
                float(p.get("loss", 0)), float(p.get("duplicate", 0)), tuple(p.get("delay", (0.0002, 0.0015)))
            )
        elif kind == "dns":
            p = fault.params
            override = Override(
                p["mode"],
                frozenset(self._addresses(fault.nodes)),
                frozenset(self._addresses(p.get("keep", ()))),
                frozenset(p.get("extra", ())),
            )
            self.overrides[fault_id] = override
            self.dns.overrides.append(override)

    def end(self, fault_id: int) -> None:
        fault = self.active.pop(fault_id, None)
        if fault is None:
            return
        self.trace.add(f"fault ends: {fault.describe()}")
        kind = fault.kind
        if kind in ("crash", "stop", "wipe"):
            self.control.create_task(self._start_when_down(self.by_name[fault.nodes[0]]))
        elif kind == "join":
            self.by_name[fault.nodes[0]].terminate()
        elif kind == "pause":
            self.by_name[fault.nodes[0]].resume()
        elif kind == "skew":
            self.by_name[fault.nodes[0]].skew = 0.0
        elif kind in faults_mod.PARTITION_KINDS:
            self.network.heal(self._links(fault))
        elif kind == "net":
            self.network.conditions = Conditions()
        elif kind == "dns":
            override = self.overrides.pop(fault_id, None)
            if override in self.dns.overrides:
                self.dns.overrides.remove(override)

    async def _join(self, host: SimHost) -> None:
        """A new machine joins with an empty disk (once the one before it has left)."""
        while host.running:
            await asyncio.sleep(0.05)
        host.wipe()
        host.start()

    async def _start_when_down(self, host: SimHost) -> None:
        while host.running:  # a graceful stop still draining
            await asyncio.sleep(0.05)
        host.start()

    def heal_everything(self) -> None:
        for fault_id in sorted(self.active):
            self.end(fault_id)

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
                "restarts": sum(1 for _ in self.graveyard),
            },
        )

    def _play(self, schedule: list[Fault]) -> None:
        rng_start = __import__("random").Random(f"{self.seed}:start")
        for host in self.members:
            self.control.call_at(rng_start.uniform(0.0, 0.5), host.start)
        for client in self.clients:
            self.control.call_at(CLIENTS_START + rng_start.uniform(0, 0.5), lambda c=client: self.control.create_task(c.run()))
        for fault in schedule:
            fault_id = next(self._fault_ids)
            self.control.call_at(fault.at, self.begin, fault_id, fault)
            self.control.call_at(fault.end, self.end, fault_id)
        self.scheduler.run_until(self.window_end, stop=self._stop)
        if self._stop():
            return
        self.heal_everything()
        self.trace.add("faults over")
        self.control.create_task(self._watch_convergence())
        self.scheduler.run_until(self.window_end + self.config.settle, stop=self._stop)

    def _finish(self) -> None:
        if self.ended_by is not None or (self.config.fail_fast and self.checker.violations):
            return
        now = self.clock.now
        incs = [(h, h.incarnation) for h in self.members]
        if not self.settled:
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
        leader = next((inc for _, inc in live if inc.node.role == "leader"), live[0][1] if live else None)
        final: Counter[str] = Counter()
        if leader is not None:
            for content, count in leader.db.conn.execute("SELECT content, COUNT(*) FROM posts GROUP BY content"):
                final[content] = count
        archived: set[str] = set()
        for host in self.hosts:
            for archive in self._archives(host).values():
                for entry in archive["entries"]:
                    for change in entry["changes"]:
                        if change.get("table") == "posts" and change.get("operation") in ("INSERT", "UPDATE"):
                            archived.add(change["data"].get("content"))
        self.checker.finish(final, archived, at=now)
        for host, inc in live:
            watch = self.watch[host.index]
            self._check_archived(host, watch.entries, self._log_of(inc))
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


def _ranges(numbers: list[int]) -> str:
    parts, start, prev = [], None, None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = n
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(parts)


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
