#!/usr/bin/env python3
"""A backup of a 1 GB database from a follower while the leader takes writes (issue 14), on a local cluster.

1. A database of ``--size-gb`` (1) built through talentnest.store (real write transactions, real log
   and LSNs: replication.py's ``build_database``), copied to the three nodes of a local cluster.
2. The leader's write throughput (POST /api/posts with wrk, single_node.py's script) in slices of
   ``--slice`` seconds: before the backup, while ``talentnest backup --url <follower>`` runs (the
   slices that lie wholly inside it), and after it.
3. The backup itself: its wall time (the node making its snapshot, then the stream and the client's
   verification), the sizes, and the resident memory of the follower and of the backup command,
   sampled every 0.1 s from /proc (streamed, neither holds the backup in memory).
4. ``talentnest restore`` of that backup into an empty data directory (after the cluster stopped): its
   wall time and the command's peak RSS.

Nodes live on ``--subnet`` (127.0.6.x by default), nothing published; the databases and the backup
are made under ``--workdir`` (a temporary directory) and deleted afterwards unless ``--keep``.
Prints a summary; writes ``benchmarks/results/backup.json``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _cluster import RESULTS, add_common_arguments, load, machine, parse_subnet, timestamp, write_report
from replication import build_database, seed_tokens, start_cluster
from single_node import post_creation, run_wrk

from talentnest.cluster.state import DurableState

DEFAULT_OUTPUT = RESULTS / "backup.json"


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return round(int(found.group(1)) / 1024, 1) if found else None


class Sampler(threading.Thread):
    """The RSS of some processes every ``interval`` seconds until stopped: the peak of each."""

    def __init__(self, pids: dict[str, int | None], interval: float = 0.1):
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for name, pid in self.pids.items():
                value = rss_mb(pid)
                if value is not None:
                    self.peaks[name] = max(self.peaks.get(name, 0.0), value)
            self.halt.wait(self.interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, DEFAULT_OUTPUT)
    parser.add_argument("--size-gb", type=float, default=1.0, help="database size to build (default 1 GB)")
    parser.add_argument("--slice", type=int, default=3, help="seconds per wrk run (default 3)")
    parser.add_argument("--baseline-slices", type=int, default=4, help="wrk runs before and after the backup (default 4 each)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--workdir", type=Path, default=None, help="where databases and the backup go (default: a temp dir)")
    args = parser.parse_args(argv)
    args.subnet = parse_subnet(args.subnet)
    workdir = Path(tempfile.mkdtemp(prefix="tn-backup-bench-", dir=args.workdir))
    load_before = load()
    try:
        report = run(args, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["machine"] = machine(load_before)
    report["when"] = timestamp()
    write_report(args.output, report)
    return 0


def run(args, workdir: Path) -> dict:
    directory = workdir / "cluster"
    seed = directory / "backend-1" / "data"
    print(f"building a {args.size_gb:g} GB database through talentnest.store ...", flush=True)
    built = build_database(seed, int(args.size_gb * 1e9), random.Random(14))
    print(f"  {built['file_mb']} MB, {built['posts']} posts, LSN {built['lsn']}, in {built['build_seconds']} s", flush=True)
    for name in ("backend-2", "backend-3"):
        shutil.copytree(seed, directory / name / "data")
    for name in ("backend-1", "backend-2", "backend-3"):
        # Nodes that hold data but no durable state would neither vote nor stand (docs/cluster.md).
        DurableState(directory / name / "data").save(1, None)
    cluster = start_cluster(directory, [1, 2, 3], {"LOG_LEVEL": "info"}, args.subnet)
    try:
        leader = cluster.wait_for_leader(timeout=60)
        follower = min((n for n in cluster.nodes if n is not leader), key=lambda n: n.node_id)
        tokens = seed_tokens(leader, 16, "bk")
        scenario = post_creation(tokens)
        options = dict(connections=args.connections, threads=args.threads, workdir=workdir)
        run_wrk(args.wrk, leader.url, scenario, seconds=1, **options)  # warm-up

        def slices(count: int) -> list[float]:
            runs = [run_wrk(args.wrk, leader.url, scenario, seconds=args.slice, **options) for _ in range(count)]
            return [run.requests_per_second for run in runs]

        before = slices(args.baseline_slices)
        print(f"  leader writes before: {before} req/s", flush=True)
        idle_rss = rss_mb(follower.pid)
        file = workdir / "talentnest.backup"
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        env["JWT_SECRET"] = cluster.jwt_secret
        during: list[float] = []
        started = time.monotonic()
        command = subprocess.Popen(
            [sys.executable, "-m", "talentnest", "backup", "--url", follower.url, str(file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        sampler = Sampler({"follower": follower.pid, "backup_command": command.pid, "leader": leader.pid})
        sampler.start()
        finished: list[float] = []

        def wait_for_the_command() -> None:
            command.wait()
            finished.append(time.monotonic())

        waiter = threading.Thread(target=wait_for_the_command, daemon=True)
        waiter.start()
        while command.poll() is None:
            rps = run_wrk(args.wrk, leader.url, scenario, seconds=args.slice, **options).requests_per_second
            if command.poll() is None:  # the whole slice ran while the backup did
                during.append(rps)
        waiter.join()
        took = finished[0] - started
        output = command.stdout.read()
        sampler.halt.set()
        sampler.join()
        if command.returncode != 0:
            raise SystemExit(f"the backup failed ({command.returncode}):\n{output}")
        after = slices(args.baseline_slices)
        print(output, flush=True)
        manifest = json.loads(Path(f"{file}.manifest.json").read_text())
        made = re.search(r"backup: serving a snapshot .* made in ([0-9.]+) s", follower.logs())
        baseline = statistics.mean(before + after)
        report = {
            "database": built,
            "backup": {
                "seconds": round(took, 2),
                "node_snapshot_seconds": float(made.group(1)) if made else None,
                "lsn": manifest["lsn"],
                "raw_mb": round(manifest["raw_bytes"] / 1e6, 1),
                "compressed_mb": round(manifest["compressed_bytes"] / 1e6, 1),
                "from": f"{follower.name} (follower)",
                "verified": "verifying" in output,
                "output": output.splitlines(),
            },
            "rss_mb": {"follower_idle": idle_rss, **{f"{k}_peak": v for k, v in sampler.peaks.items()}},
            "leader_writes_per_second": {
                "before": before,
                "during": during,
                "after": after,
                "baseline_mean": round(baseline, 1),
                "during_mean": round(statistics.mean(during), 1) if during else None,
                "during_over_baseline": round(statistics.mean(during) / baseline, 3) if during else None,
            },
            "settings": {"slice_seconds": args.slice, "connections": args.connections, "threads": args.threads},
        }
    finally:
        cluster.close()
    report["restore"] = time_restore(file, workdir / "restored" / "data", env)
    print(json.dumps({k: report[k] for k in ("backup", "restore", "rss_mb", "leader_writes_per_second")}, indent=2), flush=True)
    return report


def time_restore(file: Path, data_dir: Path, env: dict) -> dict:
    """``talentnest restore FILE --data-dir DIR`` of the backup just taken: its time and peak RSS."""
    started = time.monotonic()
    command = subprocess.Popen(
        [sys.executable, "-m", "talentnest", "restore", str(file), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sampler = Sampler({"restore_command": command.pid})
    sampler.start()
    output, _ = command.communicate()
    took = time.monotonic() - started
    sampler.halt.set()
    sampler.join()
    if command.returncode != 0:
        raise SystemExit(f"the restore failed ({command.returncode}):\n{output}")
    return {
        "seconds": round(took, 2),
        "restore_command_peak_rss_mb": sampler.peaks.get("restore_command"),
        "database_mb": round((data_dir / "talentnest.db").stat().st_size / 1e6, 1),
        "output": output.splitlines(),
    }


if __name__ == "__main__":
    sys.exit(main())
