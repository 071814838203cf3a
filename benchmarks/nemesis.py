#!/usr/bin/env python3
"""Soak under random faults (issue 15): a local cluster for a bounded time while a nemesis breaks it and clients write.

A 3- or 5-node cluster of real node processes (the tests' harness: the launcher's supervisor, its DNS
server, iptables on loopback, a tmpfs per node as its DATA_DIR, libfaketime in every node) runs for
``--minutes`` under a random schedule (``--seed``) of SIGKILL, SIGSTOP, graceful stops, partitions
(any split, or one cut link), DNS answers that are wrong or missing, wall-clock jumps, and full
disks, one fault at a time, in rounds that each play every kind once in a random order. Writers
post numbered contents with Idempotency-Keys through every node and signups keep happening.

At each checkpoint (``--checkpoint-minutes``) and at the end, faults stop, clients are held, and
the run measures how long the cluster takes to converge, then checks ``tests/cluster/invariants.py``:
acknowledged writes lost (quorum mode: none, ever; async mode: only if a divergence archive holds
it, and never one that a majority of nodes held, i.e. archived), applied twice, tokens answering
``/api/auth/me`` as another account, more than one leader in a term (from every node's log, and
from ``/cluster/status`` polled throughout), equal checksums at equal LSNs, and any answer of 500.
Prints the schedule's counts by kind and a summary table, writes ``benchmarks/results/nemesis.json``,
and exits 1 if any invariant broke. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _cluster import RESULTS, load, machine, parse_subnet, timestamp, write_report
from tests.cluster import invariants
from tests.cluster.harness import Cluster, Node, firewall_unavailable
from tests.cluster.hazards import faketime_library, tmpfs_unavailable
from tests.cluster.workload import (
    Signups,
    Target,
    Writers,
    archived_text,
    leader_claims,
    sign_up,
    stored_contents,
    stored_usernames,
    who_is,
)

DEFAULT_OUTPUT = RESULTS / "nemesis.json"
KINDS = ("kill", "pause", "stop", "partition", "dns", "clock", "disk")
FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2", "LOG_LEVEL": "info"}
CONVERGE_TIMEOUT = 90.0
TOKENS_CHECKED = 60  # accounts whose token is asked /api/auth/me on every node at each checkpoint


class RunFailed(Exception):
    """The run could not go on (the cluster did not start or converge): a finding, reported as such."""


# --- the nemesis ---------------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    detail: str
    at: float  # seconds since the run began
    lasted: float = 0.0


class Nemesis:
    """Chooses and plays faults on ``cluster``, one at a time; ``undo`` ends the current one."""

    def __init__(self, cluster: Cluster, rng: random.Random, kinds: tuple[str, ...] = KINDS):
        self.cluster = cluster
        self.rng = rng
        self.kinds = kinds
        self._round: list[str] = []
        self._undo: Callable[[], None] | None = None
        self.current: Fault | None = None
        self._played: Counter = Counter()

    def next_kind(self) -> str:
        if not self._round:
            self._round = list(self.kinds)
            self.rng.shuffle(self._round)
        return self._round.pop()

    def _running(self) -> list[Node]:
        return [node for node in self.cluster.nodes if node.is_running and not node.is_paused]

    def _victim(self, kind: str) -> Node:
        """The leader for the 1st, 3rd... fault of a kind (the worst place for most faults), a follower
        for the others: so that even a short run hits the leader with every kind."""
        running = self._running() or self.cluster.nodes
        leaders = [node for node in running if (node.try_status(timeout=1.0) or {}).get("current_role") == "leader"]
        on_leader = self._played[kind] % 2 == 0
        self._played[kind] += 1
        if on_leader and leaders:
            return leaders[0]
        followers = [node for node in running if node not in leaders]
        return self.rng.choice(followers or running)

    def play(self, kind: str, at: float) -> Fault:
        rng = self.rng
        node = self._victim(kind)
        if kind == "kill":
            node.stop(graceful=False)
            detail, undo = f"SIGKILL {node.name}", lambda: node.start(wait=False)
        elif kind == "stop":
            node.stop()
            detail, undo = f"SIGTERM {node.name}", lambda: node.start(wait=False)
        elif kind == "pause":
            node.pause()
            detail, undo = f"SIGSTOP {node.name}", node.resume
        elif kind == "partition":
            detail, undo = self._partition()
        elif kind == "dns":
            detail, undo = self._dns()
        elif kind == "clock":
            offset = rng.choice((-1, 1)) * rng.uniform(5, 45)
            node.set_clock(offset)
            detail, undo = f"{node.name} clock {offset:+.0f} s", lambda: node.set_clock(0)
        elif kind == "disk":
            filled = node.disk.fill()
            detail, undo = f"{node.name} disk full ({filled >> 20} MiB filler)", node.disk.free
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        self._undo = undo
        self.current = Fault(kind, detail, at)
        return self.current

    def _partition(self) -> tuple[str, Callable[[], None]]:
        nodes = list(self.cluster.nodes)
        self.rng.shuffle(nodes)
        if self.rng.random() < 0.25:
            pairs = [(nodes[0], nodes[1])]  # one link cut: both ends still reach the others
            detail = f"cut {nodes[0].name} x {nodes[1].name}"
        else:
            k = self.rng.randint(1, len(nodes) - 1)
            side, rest = nodes[:k], nodes[k:]
            pairs = [(a, b) for a in side for b in rest]
            detail = f"partition {{{', '.join(sorted(n.name for n in side))}}} | {{{', '.join(sorted(n.name for n in rest))}}}"
        firewall = self.cluster.firewall
        for a, b in pairs:
            firewall.cut(a.address, b.address)

        def heal() -> None:
            for a, b in pairs:
                firewall.restore(a.address, b.address)

        return detail, heal

    def _dns(self) -> tuple[str, Callable[[], None]]:
        nodes = self.cluster.nodes
        subnet = nodes[0].address.rsplit(".", 1)[0]
        kind = self.rng.choice(("nxdomain", "empty", "servfail", "silent", "partial", "wrong"))
        if kind == "partial":
            some = self.rng.sample(nodes, self.rng.randint(1, len(nodes) - 1))
            addresses = tuple(sorted(n.address for n in some))
            self.cluster.dns("only", addresses)
        elif kind == "wrong":
            addresses = (f"{subnet}.200", f"{subnet}.201")
            self.cluster.dns("only", addresses)
        else:
            addresses = ()
            self.cluster.dns(kind)
        return f"DNS {kind}" + (f" {list(addresses)}" if addresses else ""), lambda: self.cluster.dns(None)

    def undo(self, at: float) -> Fault | None:
        fault, undo = self.current, self._undo
        self.current = self._undo = None
        if undo is not None:
            undo()
        if fault is not None:
            fault.lasted = round(at - fault.at, 2)
        return fault

    def restore_everything(self) -> None:
        """After the last fault: every node running, every cut healed, DNS truthful, clocks and disks right."""
        self.cluster.firewall.close()
        self.cluster.dns(None)
        for node in self.cluster.nodes:
            if node.is_paused:
                node.resume()
            elif not node.is_running:
                node.start(wait=False)
            with contextlib.suppress(AssertionError):
                node.set_clock(0)
            node.disk.free()


# --- watching the leaders -------------------------------------------------------------------------------


class LeaderWatch:
    """Polls every node's ``/cluster/status`` in a thread and keeps (term, node) for each claim to lead."""

    def __init__(self, cluster: Cluster, interval: float = 0.5):
        self.cluster = cluster
        self.interval = interval
        self.claims: set[tuple[int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-watch", daemon=True)

    def start(self) -> LeaderWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for node in self.cluster.nodes:
                if not (node.is_running and not node.is_paused):
                    continue
                status = node.try_status(timeout=0.5)
                if status and status.get("current_role") == "leader":
                    self.claims.add((status["term"], node.name))
            self._stop.wait(self.interval)


# --- the run ----------------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    at: float
    final: bool
    converge_seconds: float | None
    leader: str | None
    lsn: int | None
    acknowledged: int
    signups: int
    lost: list[str] = field(default_factory=list)
    lost_archived: list[str] = field(default_factory=list)
    duplicated: int = 0
    misattributed: int = 0
    tokens_checked: int = 0
    violations: list[str] = field(default_factory=list)


def targets_of(cluster: Cluster) -> Callable[[], list[Target]]:
    def targets() -> list[Target]:
        return [Target(n.name, n.url) for n in cluster.nodes if n.is_running and not n.is_paused]

    return targets


def poll(condition: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def converged_positions(cluster: Cluster) -> tuple[str | None, dict[str, tuple[str, int]] | None]:
    """(agreed leader, name -> (checksum, LSN)) when every node agrees on one leader and holds the same data."""
    statuses = {n.name: n.try_status(timeout=2) for n in cluster.nodes}
    leaders = {s["leader_id"] for s in statuses.values() if s}
    if None in statuses.values() or len(leaders) != 1 or None in leaders:
        return None, None
    positions = {}
    for node in cluster.nodes:
        answer = node.checksum()
        positions[node.name] = (answer["checksum"], answer["applied_lsn"])
    if len(set(positions.values())) != 1:
        return None, None
    leader = next(n.name for n in cluster.nodes if statuses[n.name]["current_role"] == "leader")
    return leader, positions


class Run:
    def __init__(self, args: argparse.Namespace, directory: Path):
        self.args = args
        self.rng = random.Random(args.seed)
        env = dict(FAST)
        if args.mode == "quorum":
            env.update(REPLICATION_MODE="quorum", CLUSTER_SIZE=str(args.nodes))
        names = [f"backend-{i}" for i in range(1, args.nodes + 1)]
        self.cluster = Cluster(
            directory,
            env=env,
            subnet=args.subnet,
            publish_base=0,
            disks={name: args.disk_mib << 20 for name in names},
            fake_clocks={name: 0 for name in names},
        )
        self.nemesis = Nemesis(self.cluster, self.rng)
        self.faults: list[Fault] = []
        self.checkpoints: list[Checkpoint] = []
        self.started = time.monotonic()
        self.writers: Writers | None = None
        self.signups: Signups | None = None
        self.authors: list[str] = []
        self.watch = LeaderWatch(self.cluster)

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def say(self, text: str) -> None:
        print(f"[{self.now():7.1f} s] {text}", flush=True)

    def start(self) -> None:
        self.say(f"starting {self.args.nodes} nodes ({self.args.mode} mode) on {self.args.subnet}.x in {self.cluster.directory}")
        self.cluster.start(self.args.nodes, timeout=60)
        targets = targets_of(self.cluster)
        self.authors = [f"nemesis{w}" for w in range(self.args.writers)]
        tokens = [sign_up(targets, author).token for author in self.authors]
        self.writers = Writers(targets, tokens, prefix="n", give_up_after=300, pause=0.05).start()
        self.signups = Signups(targets, prefix="member", pause_between=0.3, give_up_after=300).start()
        self.watch.start()

    def play(self) -> None:
        args = self.args
        end = self.started + args.minutes * 60
        next_checkpoint = self.started + args.checkpoint_minutes * 60 if args.checkpoint_minutes else float("inf")
        while time.monotonic() < end:
            if time.monotonic() >= next_checkpoint:
                self.checkpoint(final=False)
                next_checkpoint = time.monotonic() + args.checkpoint_minutes * 60
                continue
            kind = self.nemesis.next_kind()
            fault = self.nemesis.play(kind, self.now())
            self.say(f"fault: {fault.detail}")
            shortest, longest = args.fault_seconds
            time.sleep(min(self.rng.uniform(shortest, longest), max(0.0, end - time.monotonic())))
            self.faults.append(self.nemesis.undo(self.now()))
            time.sleep(min(self.rng.uniform(0.5, max(0.5, longest / 3)), max(0.0, end - time.monotonic())))

    def checkpoint(self, *, final: bool) -> Checkpoint:
        """Stop faulting, hold the clients, time the convergence, check everything; resume unless final."""
        assert self.writers is not None and self.signups is not None
        self.nemesis.restore_everything()
        healed_at = time.monotonic()
        if final:
            self.writers.finish()
            self.signups.finish()
        else:
            self.writers.hold()
            self.signups.hold()
        result: tuple[str | None, dict | None] = (None, None)

        def settled() -> bool:
            nonlocal result
            result = converged_positions(self.cluster)
            return result[0] is not None

        done = poll(settled, CONVERGE_TIMEOUT)
        took = round(time.monotonic() - healed_at, 2) if done else None
        leader_name, positions = result
        point = Checkpoint(
            at=self.now(),
            final=final,
            converge_seconds=took,
            leader=leader_name,
            lsn=next(iter(positions.values()))[1] if positions else None,
            acknowledged=len(self.writers.acked),
            signups=len(self.signups.accounts),
        )
        if not done:
            point.violations.append(f"not_converged: no agreement within {CONVERGE_TIMEOUT:.0f} s of the faults ending")
        else:
            self.judge(point, self.cluster.node(leader_name))
        self.checkpoints.append(point)
        self.say(
            f"{'end' if final else 'checkpoint'}: converged in {took} s; {point.acknowledged} writes and {point.signups} signups "
            f"acknowledged; lost {len(point.lost)} (archived {len(point.lost_archived)}), misattributed {point.misattributed}, "
            f"violations {len(point.violations)}"
        )
        if not final:
            self.writers.release()
            self.signups.release()
        return point

    def judge(self, point: Checkpoint, leader: Node) -> None:
        assert self.writers is not None and self.signups is not None
        quorum = self.args.mode == "quorum"
        where = Target(leader.name, leader.url)
        stored = stored_contents(where, self.authors, timeout=30)
        archives = {node.name: archived_text([node.data_dir]) for node in self.cluster.nodes}
        archived = "\n".join(archives.values())
        acknowledged = self.writers.acknowledged
        accounts = list(self.signups.accounts)
        held = stored_usernames(where, [a.username for a in accounts], timeout=30)
        held_names = {u: 1 for u, i in held.items() if i is not None}
        chosen = accounts if len(accounts) <= TOKENS_CHECKED else self.rng.sample(accounts, TOKENS_CHECKED)
        answers = [(a.username, n.name, *who_is(Target(n.name, n.url), a.token)) for a in chosen for n in self.cluster.nodes]
        point.tokens_checked = len(answers)
        everything = [*acknowledged, *(a.username for a in accounts)]
        every_stored = {**stored, **held_names}
        point.lost = [c for c in everything if every_stored.get(c, 0) == 0]
        point.lost_archived = invariants.lost_but_archived(everything, every_stored, archived)
        misattributed = invariants.tokens_not_misattributed(answers)
        point.misattributed = len(misattributed)
        twice = invariants.nothing_applied_twice(stored)
        point.duplicated = len(twice)
        claims = set(leader_claims({n.name: n.logs() for n in self.cluster.nodes})) | self.watch.claims
        violations = [
            *invariants.acknowledged_writes_kept(everything, every_stored, quorum=quorum, archived=archived),
            *invariants.not_lost_from_a_majority(point.lost, archives),
            *twice,
            *misattributed,
            *invariants.one_leader_per_term(claims),
        ]
        point.violations.extend(str(v) for v in violations)

    def leaders_per_term(self) -> dict[int, list[str]]:
        claims = set(leader_claims({n.name: n.logs() for n in self.cluster.nodes})) | self.watch.claims
        return {term: sorted(nodes) for term, nodes in sorted(invariants.leaders_by_term(claims).items())}

    def close(self) -> None:
        """Stop the clients and the watch, then every node, cut, mount and clock file: whatever failed before."""
        try:
            for client in (self.writers, self.signups):
                if client is not None:
                    client.finish(timeout=15)
            self.watch.stop()
        finally:
            self.cluster.close()


def report(run: Run, load_before: float, interrupted: str | None) -> dict:
    args = run.args
    final = run.checkpoints[-1] if run.checkpoints else None
    leaders = run.leaders_per_term()
    writers, signups = run.writers, run.signups
    counts = Counter(fault.kind for fault in run.faults)
    violations = sorted({v for point in run.checkpoints for v in point.violations})
    answers = [*(writers.answers if writers else {}).items(), *(signups.answers if signups else {}).items()]
    server_errors = sum(
        n for (status, _), n in answers if isinstance(status, int) and status >= 500 and status not in (502, 503, 504)
    )
    if server_errors and not args.tolerate_server_errors:
        violations.append(f"server_error: {server_errors} requests answered a 5xx other than 503 (see unexpected_answers)")
    # A node's refusal of another node's signature is no client's business: relayed, it says the
    # client's token is bad, and the client gives up a write it should retry.
    relayed = sum(n for (status, code), n in answers if status == 401 and code == "invalid_signature")
    if relayed:
        violations.append(f"relayed_refusal: {relayed} requests answered 401 invalid_signature (a node's refusal of a node)")
    return {
        "benchmark": "nemesis",
        "when": timestamp(),
        "machine": machine(load_before),
        "settings": {
            "minutes": args.minutes,
            "nodes": args.nodes,
            "mode": args.mode,
            "seed": args.seed,
            "writers": args.writers,
            "checkpoint_minutes": args.checkpoint_minutes,
            "fault_seconds": list(args.fault_seconds),
            "disk_mib": args.disk_mib,
            "tolerate_server_errors": args.tolerate_server_errors,
            "node_timing": FAST,
        },
        "interrupted": interrupted,
        "faults": {kind: counts.get(kind, 0) for kind in KINDS},
        "faults_total": len(run.faults),
        "schedule": [asdict(fault) for fault in run.faults],
        "writes_acknowledged": len(writers.acked) if writers else 0,
        "signups_acknowledged": len(signups.accounts) if signups else 0,
        "answers": {f"{status} {code or ''}".strip(): n for (status, code), n in (writers.answers if writers else {}).items()},
        "signup_answers": {
            f"{status} {code or ''}".strip(): n for (status, code), n in (signups.answers if signups else {}).items()
        },
        "unexpected_answers": [
            asdict(u) for u in [*(writers.unexpected if writers else []), *(signups.unexpected if signups else [])]
        ][:50],
        "server_errors": server_errors,
        "relayed_signature_refusals": relayed,
        "lost": len(final.lost) if final else None,
        "lost_archived": len(final.lost_archived) if final else None,
        "lost_examples": final.lost[:20] if final else [],
        "duplicated": final.duplicated if final else None,
        "misattributed": final.misattributed if final else None,
        "terms": len(leaders),
        "max_leaders_per_term": max((len(v) for v in leaders.values()), default=0),
        "terms_with_two_leaders": {t: v for t, v in leaders.items() if len(v) > 1},
        "converge_seconds_after_last_fault": final.converge_seconds if final else None,
        "checkpoints": [
            asdict(point) | {"lost": point.lost[:20], "lost_archived": point.lost_archived[:20]} for point in run.checkpoints
        ],
        "violations": violations,
        "passed": interrupted is None and not violations and final is not None,
    }


def print_tables(result: dict) -> None:
    print("\nfaults played (by kind):")
    for kind, n in result["faults"].items():
        print(f"  {kind:<10} {n:>5}")
    print(f"  {'total':<10} {result['faults_total']:>5}")
    rows = [
        (
            "mode / nodes / minutes",
            f"{result['settings']['mode']} / {result['settings']['nodes']} / {result['settings']['minutes']}",
        ),
        ("writes acknowledged", result["writes_acknowledged"]),
        ("signups acknowledged", result["signups_acknowledged"]),
        ("answered 500 (or another server error)", result["server_errors"]),
        ("answered 401 invalid_signature", result["relayed_signature_refusals"]),
        ("acknowledged and lost", result["lost"]),
        ("  of which archived", result["lost_archived"]),
        ("applied twice", result["duplicated"]),
        ("tokens misattributed", result["misattributed"]),
        ("terms / most leaders in one term", f"{result['terms']} / {result['max_leaders_per_term']}"),
        ("converged after the last fault (s)", result["converge_seconds_after_last_fault"]),
        ("checkpoints", len(result["checkpoints"])),
        ("violations", len(result["violations"])),
    ]
    print("\nsummary:")
    for name, value in rows:
        print(f"  {name:<36} {value}")
    for violation in result["violations"][:20]:
        print(f"  VIOLATION {violation}")
    print("\nPASSED" if result["passed"] else "\nFAILED")


def preflight() -> str | None:
    for reason in (firewall_unavailable(), tmpfs_unavailable()):
        if reason:
            return reason
    if faketime_library() is None:
        return "clock jumps need libfaketime (apt-get install faketime libfaketime)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long faults are played")
    parser.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    parser.add_argument("--mode", choices=("async", "quorum"), default="quorum")
    parser.add_argument("--seed", type=int, default=15, help="seed of the schedule (the same seed plays the same schedule)")
    parser.add_argument("--writers", type=int, default=3, help="writer threads, each with its own account")
    parser.add_argument(
        "--fault-seconds", type=float, nargs=2, default=(1.0, 12.0), metavar=("MIN", "MAX"), help="how long each fault lasts"
    )
    parser.add_argument(
        "--disk-mib", type=int, default=512, help="size of each node's tmpfs DATA_DIR: room for the run's data and a snapshot"
    )
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between checkpoints (0: only at the end)")
    parser.add_argument(
        "--tolerate-server-errors", action="store_true", help="report answers of 500 without failing the run for them"
    )
    parser.add_argument("--subnet", default=os.environ.get("TN_TEST_SUBNET", "127.0.6"), help="loopback subnet of the nodes")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the results JSON goes")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directory (logs) for inspection")
    args = parser.parse_args(argv)
    args.subnet = parse_subnet(args.subnet)
    reason = preflight()
    if reason:
        print(f"nemesis: cannot run: {reason}", file=sys.stderr)
        return 2
    load_before = load()
    directory = Path(tempfile.mkdtemp(prefix="talentnest-nemesis-"))
    run = Run(args, directory)
    interrupted = None
    try:
        run.start()
        run.play()
        run.checkpoint(final=True)
    except KeyboardInterrupt:
        interrupted = "interrupted (Ctrl-C)"
    except BaseException as exc:  # the harness fails with pytest's exceptions: a finding, not a crash
        interrupted = f"{type(exc).__name__}: {exc}"[:4000]
        print(f"nemesis: the run could not go on: {interrupted}", file=sys.stderr)
    finally:
        result = report(run, load_before, interrupted)
        logs = {node.name: node.logs(tail=30) for node in run.cluster.nodes}
        try:
            run.close()
        finally:
            if args.keep or not result["passed"]:
                print(f"cluster directory kept: {directory}")
            else:
                shutil.rmtree(directory, ignore_errors=True)
    if not result["passed"]:
        result["log_tails"] = logs
    print_tables(result)
    write_report(args.output, result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
