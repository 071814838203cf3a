#!/usr/bin/env python3
"""Failover time of a 3-node local cluster: from a signal to the leader until every survivor names one new leader.

Runs the launcher's own LocalCluster (real node processes on 127.0.6.x, its DNS server, real
signals) with the nodes' DEFAULT timing (HEARTBEAT_INTERVAL 1, ELECTION_INTERVAL 10,
FAILURE_TIMEOUT 30) unless told otherwise. Each run finds the current leader, sends it SIGKILL
(a crash; it leaves DNS as its process dies), SIGTERM (``docker stop``) or SIGSTOP (a hang: it
stays in DNS), and polls ``/cluster/status`` of both survivors every 20 ms until both name the
same new leader and that leader says it leads. Then the old leader is brought back (started
again, or SIGCONT) and the run waits until all three agree again before the next one.

Prints a table and writes ``benchmarks/results/failover.json``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _cluster import (
    FAST_ARGON2,
    RESULTS,
    ClusterConfig,
    LocalCluster,
    add_common_arguments,
    agreed_leader,
    fetch_status,
    load,
    machine,
    parse_subnet,
    summary,
    timestamp,
    url_of,
    wait_agreed,
    wait_ready,
    write_report,
)

DEFAULT_OUTPUT = RESULTS / "failover.json"
# Targets of issue 4 for a SIGKILL of the leader, with default settings.
TARGET_MEDIAN_S, TARGET_MAX_S = 2.0, 3.0
KINDS = ("kill", "term", "stop")
KIND_TITLES = {"kill": "SIGKILL (crash)", "term": "SIGTERM (graceful stop)", "stop": "SIGSTOP (hang)"}


@dataclass
class Run:
    kind: str
    run: int
    old_leader: int
    new_leader: int | None
    seconds: float | None  # from the signal to the first poll where every survivor agreed; None: never
    per_survivor: dict[str, float | None]  # when each survivor first named the new leader
    polls: int
    rejoin_seconds: float | None  # old leader back until it leads all three again (handover)
    load_1m: float
    rejoin_note: str | None = None
    election_lines: list[str] = field(default_factory=list)


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _election_lines(path: Path, offset: int, limit: int = 6) -> list[str]:
    try:
        with path.open("rb") as stream:
            stream.seek(offset)
            text = stream.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return [line.strip()[-220:] for line in text.splitlines() if "election" in line][:limit]


async def current_leader(cluster: LocalCluster, timeout: float) -> int:
    nodes = {node.name: url_of(node) for node in cluster.nodes if node.is_running and not node.is_paused}
    leader, statuses = await wait_agreed(nodes, timeout=timeout)
    if leader is None:
        raise SystemExit(f"no agreed leader among {sorted(nodes)} within {timeout} s: {statuses}")
    return leader


async def one_run(
    cluster: LocalCluster,
    kind: str,
    number: int,
    *,
    interval: float,
    timeout: float,
    rejoin_timeout: float,
    jitter: float,
    rng: random.Random,
) -> Run:
    leader_id = await current_leader(cluster, rejoin_timeout)
    old = next(node for node in cluster.nodes if node.node_id == leader_id)
    survivors = [node for node in cluster.nodes if node is not old]
    offsets = {node.name: _log_size(node.log_path) for node in survivors}
    latest: dict[str, dict | None] = {node.name: None for node in survivors}
    first_named: dict[str, float | None] = {node.name: None for node in survivors}
    agreed: dict[str, float | int | None] = {"at": None, "leader": None}
    done = asyncio.Event()
    polls = 0
    load_now = load()

    async def poll(node) -> None:
        nonlocal polls
        url = url_of(node)
        tick = time.monotonic()
        while not done.is_set():
            status = await fetch_status(url, timeout=max(0.5, 10 * interval))
            now = time.monotonic() - started
            polls += 1
            latest[node.name] = status
            if status is not None and status.get("leader_id") not in (None, leader_id) and first_named[node.name] is None:
                first_named[node.name] = now
            leader = agreed_leader(latest)
            if leader is not None and leader != leader_id and not done.is_set():
                agreed.update(at=now, leader=leader)
                done.set()
                return
            tick += interval
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    # A random wait of up to one heartbeat, so that the signal lands at any point of the nodes'
    # heartbeat cycle (the rejoin before it ends right after a heartbeat round, which would bias it).
    await asyncio.sleep(rng.uniform(0, jitter))
    started = time.monotonic()
    if kind == "kill":
        action = asyncio.create_task(cluster.kill_node(old.name))
    elif kind == "term":
        action = asyncio.create_task(cluster.stop_node(old.name))
    else:
        action = asyncio.create_task(cluster.pause_node(old.name))
    pollers = [asyncio.create_task(poll(node)) for node in survivors]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout)
    done.set()
    await asyncio.gather(*pollers)
    await action

    # Bring the old leader back and wait until the three agree again (it usually takes over by handover).
    back = time.monotonic()
    if kind == "stop":
        await cluster.resume_node(old.name)
    else:
        await cluster.start_node(old.name)
    # Each run starts from the same settled cluster: the highest ID leads again (planned handover)
    # and every node is ready.
    everyone = {node.name: url_of(node) for node in cluster.nodes}
    highest = max(node.node_id for node in cluster.nodes)
    leader, statuses = await wait_agreed(everyone, timeout=rejoin_timeout, expect=highest)
    rejoin = round(time.monotonic() - back, 3) if leader is not None else None
    note = None
    if leader is None:
        # Go on from whatever the three agree on, and say what stopped the handover.
        leader, statuses = await wait_agreed(everyone, timeout=rejoin_timeout)
        seen = "; ".join(
            f"{name}: {s.get('current_role')}, leader {s.get('leader_id')}, ready {s.get('ready')} ({s.get('ready_reason')})"
            if s
            else f"{name}: no answer"
            for name, s in statuses.items()
        )
        note = f"node {highest} did not lead again within {rejoin_timeout:g} s; then: {seen}"
        print(f"    warning: {note}", flush=True)
    # Every node ready too (a follower that never hears from the leader's replication stays "catching up").
    # (After a failed handover the wait was already long: look once more, briefly.)
    deadline = time.monotonic() + (rejoin_timeout if note is None else 1.0)
    unready = [
        name for name, url in everyone.items() if await wait_ready(url, timeout=max(0.5, deadline - time.monotonic())) is None
    ]
    if unready:
        note = (note + "; " if note else "") + f"not ready (/readyz): {', '.join(unready)}"
        print(f"    warning: {', '.join(unready)} not ready (/readyz) after the rejoin", flush=True)
    return Run(
        kind=kind,
        run=number,
        old_leader=leader_id,
        new_leader=agreed["leader"],
        seconds=None if agreed["at"] is None else round(agreed["at"], 3),
        per_survivor={name: None if t is None else round(t, 3) for name, t in first_named.items()},
        polls=polls,
        rejoin_seconds=rejoin,
        rejoin_note=note,
        load_1m=load_now,
        election_lines=[line for node in survivors for line in _election_lines(node.log_path, offsets[node.name])],
    )


async def measure(args: argparse.Namespace, workdir: Path) -> list[Run]:
    env = {**FAST_ARGON2, "LOG_LEVEL": "info"}
    for name, value in (
        ("HEARTBEAT_INTERVAL", args.heartbeat),
        ("ELECTION_INTERVAL", args.election),
        ("FAILURE_TIMEOUT", args.failure_timeout),
    ):
        if value is not None:
            env[name] = str(value)
    config = ClusterConfig(
        state_dir=workdir / "cluster", subnet=args.subnet, publish_base=0, env=env, control=False, stop_timeout=args.stop_timeout
    )
    cluster = LocalCluster(config, on_event=lambda text: None)
    cluster.preflight(3)
    runs: list[Run] = []
    rng = random.Random(args.seed)
    try:
        await cluster.start(3)
        started = time.monotonic()
        leader = await current_leader(cluster, 60)
        print(f"cluster of 3 on {args.subnet}.1-3 agreed on leader {leader} in {time.monotonic() - started:.1f} s", flush=True)
        plan = [("kill", args.runs), ("term", args.term_runs), ("stop", args.stop_runs)]
        for kind, count in plan:
            for number in range(1, count + 1):
                run = await one_run(
                    cluster,
                    kind,
                    number,
                    interval=args.interval,
                    timeout=args.timeout if kind != "stop" else args.stop_timeout_s,
                    rejoin_timeout=args.rejoin_timeout,
                    jitter=args.jitter if args.jitter is not None else (args.heartbeat or 1.0),
                    rng=rng,
                )
                runs.append(run)
                seconds = "no agreement" if run.seconds is None else f"{run.seconds:.3f} s"
                print(
                    f"  {kind:<4} run {number:>2}: leader {run.old_leader} -> {run.new_leader}: {seconds} "
                    f"(survivors {run.per_survivor}; rejoin {run.rejoin_seconds} s; load {run.load_1m})",
                    flush=True,
                )
    finally:
        await cluster.shutdown()
    return runs


def table(runs: list[Run]) -> tuple[str, dict]:
    header = f"{'signal':<24} {'runs':>4} {'median s':>9} {'p90 s':>7} {'max s':>7} {'min s':>7} {'failed':>6}  each run (s)"
    lines = [header, "-" * len(header)]
    summaries = {}
    for kind in KINDS:
        chosen = [run for run in runs if run.kind == kind]
        if not chosen:
            continue
        times = [run.seconds for run in chosen if run.seconds is not None]
        stats = summary(times)
        stats["failed"] = sum(1 for run in chosen if run.seconds is None)
        stats["runs"] = [run.seconds for run in chosen]
        summaries[kind] = stats
        each = " ".join("-" if t is None else f"{t:.2f}" for t in stats["runs"])
        if times:
            lines.append(
                f"{KIND_TITLES[kind]:<24} {len(chosen):>4} {stats['median']:>9.3f} {stats['p90']:>7.3f} {stats['max']:>7.3f} "
                f"{stats['min']:>7.3f} {stats['failed']:>6}  {each}"
            )
        else:
            lines.append(f"{KIND_TITLES[kind]:<24} {len(chosen):>4} {'-':>9} {'-':>7} {'-':>7} {'-':>7} {stats['failed']:>6}")
    return "\n".join(lines), summaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="SIGKILL runs (default 10)")
    parser.add_argument("--term-runs", type=int, default=5, help="SIGTERM runs (default 5)")
    parser.add_argument("--stop-runs", type=int, default=3, help="SIGSTOP runs (default 3)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run: 2 SIGKILL, 1 SIGTERM, 0 SIGSTOP runs")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between status polls of each survivor (0.02)")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up on one SIGKILL/SIGTERM run after this (30 s)")
    parser.add_argument("--stop-timeout-s", type=float, default=60.0, help="give up on one SIGSTOP run after this (60 s)")
    parser.add_argument("--rejoin-timeout", type=float, default=20.0, help="wait for the highest ID to lead again (20 s)")
    parser.add_argument("--stop-timeout", type=float, default=10.0, help="SIGKILL after SIGTERM if the node has not left (10 s)")
    parser.add_argument("--jitter", type=float, help="random wait before each signal, up to (default: one heartbeat)")
    parser.add_argument("--seed", type=int, default=4, help="seed of the random waits (default 4)")
    parser.add_argument("--heartbeat", type=float, help="HEARTBEAT_INTERVAL for the nodes (node default: 1)")
    parser.add_argument("--election", type=float, help="ELECTION_INTERVAL for the nodes (node default: 10)")
    parser.add_argument("--failure-timeout", type=float, help="FAILURE_TIMEOUT for the nodes (node default: 30)")
    add_common_arguments(parser, DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.subnet = parse_subnet(args.subnet)
    if args.quick:
        args.runs, args.term_runs, args.stop_runs = 2, 1, 0

    load_before = load()
    workdir = Path(tempfile.mkdtemp(prefix="talentnest-failover-"))
    try:
        runs = asyncio.run(measure(args, workdir))
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    text, summaries = table(runs)
    print()
    print(text)
    kill = summaries.get("kill", {})
    verdict = None
    if kill.get("n"):
        verdict = {
            "median_below_2s": kill["median"] < TARGET_MEDIAN_S,
            "max_below_3s": kill["failed"] == 0 and kill["max"] < TARGET_MAX_S,
        }
        print(
            f"\nSIGKILL target (issue 4): median < {TARGET_MEDIAN_S} s: {'met' if verdict['median_below_2s'] else 'MISSED'} "
            f"({kill['median']:.3f} s); max < {TARGET_MAX_S} s: {'met' if verdict['max_below_3s'] else 'MISSED'} "
            f"({kill['max']:.3f} s)"
        )
    report = {
        "benchmark": "failover",
        "timestamp": timestamp(),
        "machine": machine(load_before),
        "config": {
            "nodes": 3,
            "subnet": args.subnet,
            "heartbeat_interval": args.heartbeat or "node default (1)",
            "election_interval": args.election or "node default (10)",
            "failure_timeout": args.failure_timeout or "node default (30)",
            "poll_interval_s": args.interval,
            "jitter_s": "uniform 0 to one heartbeat before each signal" if args.jitter is None else args.jitter,
            "measured": "from sending the signal to the first status poll where both survivors name the same new "
            "leader and it says it leads (poll completion time)",
        },
        "targets": {"kill_median_s": TARGET_MEDIAN_S, "kill_max_s": TARGET_MAX_S, "met": verdict},
        "summary": summaries,
        "runs": [asdict(run) for run in runs],
    }
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
