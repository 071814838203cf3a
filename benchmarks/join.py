#!/usr/bin/env python3
"""Joining at size (issue 12): a node joins a cluster whose database is several gigabytes.

1. Builds (or reuses) a database of ``--gb`` GB through talentnest.store's write path (real write
   transactions, real log entries and LSNs: ``replication.build_database``), outside the repository
   (``--data``, default /work/join-data), and gives a copy to each of the two nodes of a cluster.
2. Starts that cluster (backend-1 and backend-2 on the benchmark subnet, backend-2 leads) and measures
   the leader's write throughput with wrk while nothing else happens (``--idle-seconds``).
3. Adds backend-3, empty, and keeps wrk writing to the leader in back-to-back runs while it joins: the
   joiner fetches the streamed snapshot (``/cluster/sync?format=stream``), and is timed from its start
   until its ``/readyz`` answers 200. Meanwhile its ``/cluster/status`` (``replication.sync``: bytes,
   total, percent, rate) and its memory (``VmRSS`` and the peak ``VmHWM`` from /proc) are sampled.
4. Stops the cluster and checks the joiner's file offline: ``PRAGMA integrity_check`` (kept off the
   join's critical path on purpose, see docs/cluster.md) and the same posts as the leader's.

Prints a table; writes ``benchmarks/results/join.json``. See benchmarks/README.md, "Joining at size".
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _cluster import RESULTS, add_common_arguments, cpu_seconds, load, machine, timestamp, write_report
from replication import build_database, seed_tokens, start_cluster
from single_node import post_creation, run_wrk
from tests.cluster.harness import wait_until

from talentnest.store import DB_FILENAME

DEFAULT_OUTPUT = RESULTS / "join.json"
TARGETS = {"join_seconds": 120.0, "joiner_peak_rss_mb": 300.0, "throughput_ratio": 0.5}


def _proc_status(pid: int | None) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of ``pid`` in kB, from /proc."""
    found: dict[str, int] = {}
    if pid is None:
        return found
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    found[name] = int(value.split()[0])
    except OSError:
        pass
    return found


def prepared_database(args) -> tuple[Path, dict]:
    """The built database (reused when one of the asked size is there already) and how it was built."""
    seed = args.data / "seed"
    marker = seed / "built.json"
    if marker.exists() and (seed / DB_FILENAME).exists():
        built = json.loads(marker.read_text())
        if abs(built["target_gb"] - args.gb) < 0.01:
            print(f"  reusing the {built['file_mb']} MB database in {seed} (built in {built['build_seconds']} s)", flush=True)
            return seed, built
    shutil.rmtree(seed, ignore_errors=True)
    print(f"  building a {args.gb} GB database in {seed} through talentnest.store ...", flush=True)
    built = build_database(seed, int(args.gb * 1e9), random.Random(12))
    built["target_gb"] = args.gb
    marker.write_text(json.dumps(built))
    print(f"  built {built['file_mb']} MB ({built['posts']} posts, LSN {built['lsn']}) in {built['build_seconds']} s", flush=True)
    return seed, built


def wrk_rounds(args, url: str, tokens: list[str], workdir: Path, stop: threading.Event, runs: list[dict]) -> None:
    """Back-to-back wrk runs of ``--run-seconds`` until ``stop``; each run's figures into ``runs``."""
    scenario = post_creation(tokens)
    while not stop.is_set():
        started = time.monotonic()
        result = run_wrk(
            args.wrk, url, scenario, seconds=args.run_seconds, connections=args.connections, threads=args.threads, workdir=workdir
        )
        runs.append(
            {
                "started": started,
                "ended": time.monotonic(),
                "rps": result.requests_per_second,
                "errors": result.errors + result.non_2xx,
            }
        )


def join(args, cluster, tokens: list[str], workdir: Path) -> dict:
    leader = cluster.wait_for_leader(timeout=60)
    samples: list[dict] = []
    runs: list[dict] = []
    stop = threading.Event()
    writer = threading.Thread(target=wrk_rounds, args=(args, leader.url, tokens, workdir, stop, runs))
    writer.start()
    leader_cpu = cpu_seconds(leader.pid)
    started = time.monotonic()
    joiner = cluster.add_node("backend-3", wait=False)
    try:
        while True:
            status = joiner.try_status(timeout=1.0)
            memory = _proc_status(joiner.pid)
            progress = ((status or {}).get("replication") or {}).get("sync")
            samples.append(
                {
                    "t": round(time.monotonic() - started, 2),
                    "rss_kb": memory.get("VmRSS"),
                    "hwm_kb": memory.get("VmHWM"),
                    "sync": progress,
                }
            )
            if joiner.is_ready():
                break
            if time.monotonic() - started > args.timeout:
                raise SystemExit(f"backend-3 not ready after {args.timeout} s\n{cluster.report()}")
            time.sleep(0.5)  # the sampling period
        ready = time.monotonic() - started
        peak = _proc_status(joiner.pid).get("VmHWM")
    finally:
        stop.set()
        writer.join()
    leader_cpu = (cpu_seconds(leader.pid) or 0) - (leader_cpu or 0)
    during = [r for r in runs if r["started"] >= started and r["ended"] <= started + ready]
    progress_lines = [line for line in joiner.logs().splitlines() if re.search(r"sync: (received|receiving|installed)", line)]
    shown = [s for s in samples if s["sync"]]
    return {
        "ready_seconds": round(ready, 2),
        "joiner_peak_rss_mb": round((peak or 0) / 1024, 1),
        "joiner_rss_mb_samples": [round((s["rss_kb"] or 0) / 1024, 1) for s in samples],
        "status_samples_with_progress": len(shown),
        "status_progress": [{"t": s["t"], **s["sync"]} for s in shown][:: max(1, len(shown) // 20)],
        "progress_log_lines": progress_lines,
        "writes_during_join": {"runs": [round(r["rps"], 1) for r in during], "errors": sum(r["errors"] for r in during)},
        "throughput_during_rps": round(statistics.mean(r["rps"] for r in during), 1) if during else None,
        "leader_cpu_seconds_during_join": round(leader_cpu, 2),
    }


def check_files(cluster) -> dict:
    """Offline, after the stop: the joiner's file passes a full integrity_check and holds the leader's posts."""
    found = {}
    for node in cluster.nodes:
        with sqlite3.connect(f"file:{node.data_dir / DB_FILENAME}?mode=ro", uri=True) as db:
            found[node.name] = db.execute("SELECT count(*), max(id) FROM posts").fetchone()
    started = time.monotonic()
    with sqlite3.connect(f"file:{cluster.node('backend-3').data_dir / DB_FILENAME}?mode=ro", uri=True) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    return {"posts_per_node": found, "same_posts": len(set(found.values())) == 1, "joiner_integrity_check": integrity,
            "integrity_check_seconds": round(time.monotonic() - started, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=5.0, help="database size in GB (default 5)")
    parser.add_argument(
        "--data", type=Path, default=Path("/work/join-data"), help="where the big files go (outside the repository)"
    )
    parser.add_argument("--idle-seconds", type=int, default=20, help="measured seconds of idle write throughput (default 20)")
    parser.add_argument("--run-seconds", type=int, default=5, help="length of each wrk run during the join (default 5)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on the join after this many seconds")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--build-only", action="store_true", help="build (or find) the database, then stop")
    add_common_arguments(parser, DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    load_before = load()
    seed, built = prepared_database(args)
    if args.build_only:
        return 0
    directory = args.data / "cluster"
    shutil.rmtree(directory, ignore_errors=True)
    for name in ("backend-1", "backend-2"):
        print(f"  copying the database to {name} ...", flush=True)
        (directory / name).mkdir(parents=True)
        shutil.copytree(seed, directory / name / "data", ignore=shutil.ignore_patterns("built.json"))
    workdir = Path(tempfile.mkdtemp(prefix="join-bench-"))
    cluster = start_cluster(directory, [1, 2], {"LOG_LEVEL": "info"}, args.subnet)
    try:
        leader = cluster.wait_for_leader(timeout=60)
        tokens = seed_tokens(leader, 20, "joinbench")
        scenario = post_creation(tokens)
        run_wrk(args.wrk, leader.url, scenario, seconds=2, connections=args.connections, threads=args.threads, workdir=workdir)
        idle = run_wrk(
            args.wrk,
            leader.url,
            scenario,
            seconds=args.idle_seconds,
            connections=args.connections,
            threads=args.threads,
            workdir=workdir,
        )
        print(f"  idle: {idle.requests_per_second:.1f} writes/s to the leader {leader.name} (p99 {idle.p99_ms} ms)", flush=True)
        joined = join(args, cluster, tokens, workdir)
        print(f"  backend-3 ready after {joined['ready_seconds']} s, peak RSS {joined['joiner_peak_rss_mb']} MB", flush=True)
        for line in joined["progress_log_lines"]:
            print(f"    {line}")
        new_leader = cluster.wait_for_leader(timeout=60)
        wait_until(
            lambda: len({(s or {}).get("applied_lsn") for s in cluster.statuses().values()}) == 1, timeout=60, what="one LSN"
        )
    finally:
        cluster.close()
    files = check_files(cluster)
    ratio = joined["throughput_during_rps"] / idle.requests_per_second if joined["throughput_during_rps"] else None
    report = {
        "benchmark": "join",
        "when": timestamp(),
        "machine": machine(load_before),
        "database": built,
        "cluster": "backend-1 and backend-2 holding the database (backend-2 leads); backend-3 joins empty",
        "idle_rps": idle.requests_per_second,
        "idle_p99_ms": idle.p99_ms,
        **joined,
        "throughput_ratio": round(ratio, 3) if ratio else None,
        "leader_after": new_leader.name,
        "files": files,
        "targets": TARGETS,
        "verdicts": {
            "join_seconds": joined["ready_seconds"] < TARGETS["join_seconds"],
            "joiner_peak_rss_mb": joined["joiner_peak_rss_mb"] < TARGETS["joiner_peak_rss_mb"],
            "throughput_ratio": ratio is not None and ratio > TARGETS["throughput_ratio"],
            "progress_visible": joined["status_samples_with_progress"] > 0 and bool(joined["progress_log_lines"]),
            "file_intact": files["joiner_integrity_check"] == "ok" and files["same_posts"],
        },
    }
    print(f"\n{'join of a ' + str(built['file_mb']) + ' MB database':<44} {'measured':>12} {'target':>10}")
    print(f"{'seconds until ready':<44} {joined['ready_seconds']:>12} {'< 120':>10}")
    print(f"{'joiner peak RSS (MB)':<44} {joined['joiner_peak_rss_mb']:>12} {'< 300':>10}")
    print(f"{'leader writes/s during / idle':<44} {round(ratio, 2) if ratio else None!s:>12} {'> 0.5':>10}")
    print(f"{'status samples showing progress':<44} {joined['status_samples_with_progress']:>12}")
    print(f"{'joiner file integrity_check (offline)':<44} {files['joiner_integrity_check']:>12}")
    write_report(args.output, report)
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(report["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
