#!/usr/bin/env python3
"""Replication benchmarks of issue 5, measured side by side in one run on local clusters.

1. Write throughput (POST /api/posts with wrk, the single-node baseline's script and settings) to a
   single node, to the leader of a 3-node async cluster, through one of its followers, to the
   leader of a 3-node quorum cluster and through one of its followers. All five targets run at
   once (idle between their turns) and are measured in rounds, the order rotated every round,
   so that the ratios compare figures taken minutes apart at most on a noisy machine.
2. Replication lag at a steady rate of half the single node's measured maximum: an open-loop
   generator (``_load.py``, its own process) writes to the leader; for each answer it asks a
   follower to hold a read until it has applied that LSN (``X-Min-LSN``).
3. Read-your-writes through followers: create a post through a follower, read it at once there.
4. Sync: a 3-node cluster whose nodes start with a ~100 MB database (built beforehand through
   talentnest.store, so its log and LSNs are real); a 4th node is added and timed until its
   /readyz answers 200.

Every write counted as successful is then checked to be on every node: the nodes of each cluster
converge to one LSN and one checksum, and after the clusters stop each node's SQLite file is
read directly for the post IDs the clients were given. Clusters live on the 127.0.6.x addresses
with nothing published on localhost. Prints tables; writes ``benchmarks/results/replication.json``.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _cluster import (  # also puts src/ on sys.path
    RESULTS,
    add_common_arguments,
    cpu_seconds,
    load,
    machine,
    parse_subnet,
    percentile,
    timestamp,
    write_report,
)
from single_node import post_creation, run_wrk
from tests.cluster.harness import REAL_NODE_COMMAND, Cluster, Node, wait_until

from talentnest.services import Passwords
from talentnest.store import DB_FILENAME, Retention, iso_now
from talentnest.store.posts import PostRepo
from talentnest.store.schema import product_database
from talentnest.store.users import UserRepo

DEFAULT_OUTPUT = RESULTS / "replication.json"
LOAD_CLIENT = Path(__file__).resolve().parent / "_load.py"
TARGETS = {
    "async_over_single": 0.8,
    "quorum_over_single": 0.75,
    "follower_over_leader": 0.6,
    "lag_p99_ms": 25.0,
    "lag_max_ms": 200.0,
    "read_your_writes": 1.0,
    "sync_seconds": 10.0,
}
PASSWORD = "pass123"
WORDS = [
    "talent", "network", "python", "engineer", "design", "remote", "team", "hiring", "kotlin", "data", "cloud",
    "startup", "mentor", "growth", "product", "launch", "review", "sqlite", "cluster", "leader", "follower",
    "replica", "latency", "budget", "roadmap", "career", "skills", "weekend", "project", "coffee", "community",
]  # fmt: skip


@dataclass
class Bench:
    """One cluster under test: where to write (``target`` node), its tokens, and what it acknowledged."""

    key: str
    cluster: Cluster
    tokens: list[str]
    offsets: dict[str, int] = field(default_factory=dict)  # log sizes once ready: what was logged under load follows
    acknowledged: int = 0  # post creations answered 2xx (wrk's count and the clients')
    known_ids: list[int] = field(default_factory=list)  # post IDs the Python clients were given

    @property
    def leader(self) -> Node:
        return self.cluster.wait_for_leader(timeout=60)

    def followers(self) -> list[Node]:
        leader = self.leader
        return [node for node in self.cluster.nodes if node is not leader]


# --- clusters ----------------------------------------------------------------------------------


def start_cluster(
    directory: Path, indices: list[int], env: dict[str, str], subnet: str, node_command: Sequence[str] = REAL_NODE_COMMAND
) -> Cluster:
    """A cluster of nodes backend-<i> on <subnet>.<i>, once the highest ID leads and every node is ready."""
    cluster = Cluster(directory, env=env, subnet=subnet, publish_base=0, node_command=node_command)
    try:
        cluster.start(0, wait=False)
        for index in indices:
            cluster.add_node(f"backend-{index}", wait=False)
        highest = max(cluster.nodes, key=lambda node: node.node_id)
        cluster.wait_for_leader(expect=highest, timeout=60)
        for node in cluster.nodes:
            node.wait_ready(timeout=60)
    except BaseException:
        cluster.close()
        raise
    return cluster


def seed_tokens(node: Node, count: int, prefix: str) -> list[str]:
    tokens = []
    for i in range(count):
        username = f"{prefix}{i}"
        body = {"name": f"Bench {i}", "username": username, "email": f"{username}@bench.example", "password": PASSWORD}
        reply = node.request("POST", "/api/auth/signup", json=body, timeout=30)
        if reply.status != 201:
            raise SystemExit(f"signup of {username} on {node.name} answered {reply.status}: {reply.body}")
        tokens.append(reply.body["token"])
    return tokens


def converge(bench: Bench, timeout: float = 60) -> dict:
    """Wait until every node holds the leader's last LSN with one checksum; what was seen."""
    cluster = bench.cluster
    leader = bench.leader
    lsn = leader.status()["applied_lsn"]
    cluster.wait_for_applied(lsn, timeout=timeout)
    seen: dict[str, dict] = {}

    def same() -> bool:
        seen.clear()
        seen.update({node.name: node.checksum() for node in cluster.nodes})
        return len({(c["checksum"], c["applied_lsn"]) for c in seen.values()}) == 1

    wait_until(same, timeout=timeout, what=f"equal checksums in the {bench.key} cluster", report=lambda: str(seen))
    newest = leader.request("GET", "/api/posts?limit=1").body["items"]
    return {
        "lsn": next(iter(seen.values()))["applied_lsn"],
        "checksum": next(iter(seen.values()))["checksum"],
        "newest_post_id": newest[0]["id"] if newest else 0,
    }


def log_offsets(cluster: Cluster) -> dict[str, int]:
    return {node.name: node.log_path.stat().st_size if node.log_path.exists() else 0 for node in cluster.nodes}


def election_lines(cluster: Cluster, offsets: dict[str, int]) -> list[str]:
    """Every change of role or leader the nodes logged since ``offsets``: a stable cluster logs none under load."""
    lines = []
    for node in cluster.nodes:
        with node.log_path.open("rb") as stream:
            stream.seek(offsets.get(node.name, 0))
            text = stream.read().decode(errors="replace")
        lines += [f"{node.name}: {line.strip()[-200:]}" for line in text.splitlines() if "election:" in line or "lease" in line]
    return lines


def stored_posts(data_dir: Path) -> set[int]:
    """The post IDs in a stopped node's SQLite file, read directly."""
    conn = sqlite3.connect(f"file:{data_dir / DB_FILENAME}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM posts")}
    finally:
        conn.close()


# --- 1. throughput ---------------------------------------------------------------------------


def _cpu(nodes: list[Node]) -> dict[str, float | None]:
    return {n.name: cpu_seconds(n.pid) for n in nodes}


def cores_used(before: dict[str, float | None], nodes: list[Node], wall: float) -> dict[str, float]:
    """CPU seconds per second of each node since ``before`` (a process at full speed on one core: 1.0)."""
    after = _cpu(nodes)
    return {
        name: round((after[name] - start) / wall, 3)
        for name, start in before.items()
        if start is not None and after.get(name) is not None
    }


def throughput(args, targets: list[tuple[str, Bench, Node]], workdir: Path) -> dict:
    """wrk against each target in turn, in rounds; requests/s and the CPU each node spent per write."""
    rounds: list[dict[str, dict]] = []
    loads = []
    for number in range(args.rounds):
        shift = number % len(targets)
        order = targets[shift:] + targets[:shift]
        measured: dict[str, dict] = {}
        loads.append(load())
        for name, bench, node in order:
            scenario = post_creation(bench.tokens)
            options = dict(connections=args.connections, threads=args.threads, workdir=workdir)
            results = []
            if args.warmup > 0:
                results.append(run_wrk(args.wrk, node.url, scenario, seconds=args.warmup, **options))
            leader = bench.leader
            nodes = bench.cluster.nodes
            before = _cpu(nodes)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = run_wrk(args.wrk, node.url, scenario, seconds=args.seconds, **options)
            done = resource.getrusage(resource.RUSAGE_CHILDREN)
            cores = cores_used(before, nodes, result.seconds)
            results.append(result)
            bench.acknowledged += sum(r.requests - r.non_2xx for r in results)
            rps = result.requests_per_second
            # CPU milliseconds per write: what each node would need of a core of its own.
            per_write = {
                "leader": round(cores[leader.name] / rps * 1000, 3),
                "entry": round(cores[node.name] / rps * 1000, 3),
                "cluster": round(sum(cores.values()) / rps * 1000, 3),
            }
            wrk_cores = (done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime) / result.seconds
            measured[name] = {
                **asdict(result),
                "entry_node": node.name,
                "leader": leader.name,
                "cores": {**cores, "wrk": round(wrk_cores, 3)},
                "cpu_ms_per_write": per_write,
                "load_1m": load(),
            }
            print(
                f"  round {number + 1} {name:<16} {rps:>7.1f} req/s  p50 {result.p50_ms:>6.1f} ms  p99 {result.p99_ms:>7.1f} ms  "
                f"errors {result.errors + result.non_2xx}  cores: "
                + ", ".join(f"{k}{'*' if k == leader.name else ''} {v:.2f}" for k, v in cores.items())
                + f", wrk {wrk_cores:.2f}  (load {load()})",
                flush=True,
            )
        rounds.append(measured)

    def median_of(values: list[float]) -> dict:
        return {"per_round": [round(x, 3) for x in values], "median": round(statistics.median(values), 3)}

    def rate(r: dict, name: str) -> float:
        return r[name]["requests_per_second"]

    def measured(top: str, bottom: str) -> dict:
        return median_of([rate(r, top) / rate(r, bottom) for r in rounds])

    def ms(r: dict, name: str, key: str) -> float:
        return r[name]["cpu_ms_per_write"][key]

    def bound(r: dict, name: str) -> float:
        # The busiest process limits a node that has a core of its own: the leader, or the follower that forwards.
        return max(ms(r, name, "leader"), ms(r, name, "entry"))

    return {
        "rounds": rounds,
        "load_1m_per_round": loads,
        "median_rps": {name: round(statistics.median(rate(r, name) for r in rounds), 1) for name, _, _ in targets},
        "median_cpu_ms_per_write": {
            name: {key: round(statistics.median(ms(r, name, key) for r in rounds), 3) for key in ("leader", "entry", "cluster")}
            for name, _, _ in targets
        },
        # Measured: requests/s side by side in each round.
        "ratios": {
            "async_over_single": measured("async leader", "single"),
            "quorum_over_single": measured("quorum leader", "single"),
            "follower_over_leader": measured("async follower", "async leader"),
            "quorum_follower_over_quorum_leader": measured("quorum follower", "quorum leader"),
        },
        # Derived from CPU per write: the same ratios if every node had a core to itself (the busiest
        # process bounds the rate), which the noise of a shared 2-core machine does not move much.
        "ratios_per_core": {
            "async_over_single": median_of([ms(r, "single", "leader") / ms(r, "async leader", "leader") for r in rounds]),
            "quorum_over_single": median_of([ms(r, "single", "leader") / ms(r, "quorum leader", "leader") for r in rounds]),
            "follower_over_leader": median_of([bound(r, "async leader") / bound(r, "async follower") for r in rounds]),
            "quorum_follower_over_quorum_leader": median_of(
                [bound(r, "quorum leader") / bound(r, "quorum follower") for r in rounds]
            ),
        },
    }


# --- 2 and 3. the Python clients ----------------------------------------------------------------


def run_client(spec: dict, workdir: Path, timeout: float) -> dict:
    spec_path = workdir / f"spec-{spec['mode']}-{time.monotonic_ns()}.json"
    out_path = spec_path.with_suffix(".out.json")
    spec_path.write_text(json.dumps(spec))
    completed = subprocess.run([sys.executable, str(LOAD_CLIENT), str(spec_path), str(out_path)], timeout=timeout)
    if completed.returncode != 0:
        raise SystemExit(f"the load client failed ({completed.returncode}) on {spec['mode']}")
    return json.loads(out_path.read_text())


def replication_lag(args, bench: Bench, rate: float, workdir: Path) -> dict:
    leader = bench.leader
    followers = [node.url for node in bench.followers()]
    load_before = load()
    nodes = bench.cluster.nodes
    before = _cpu(nodes)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    raw = run_client(
        {
            "mode": "lag",
            "leader": leader.url,
            "followers": followers,
            "tokens": bench.tokens,
            "rate": rate,
            "seconds": args.lag_seconds,
            "probe_every": args.lag_probe_every,
        },
        workdir,
        timeout=args.lag_seconds + 180,
    )
    wall = time.monotonic() - started
    cores = cores_used(before, nodes, wall)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    cores["load client"] = round((done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime) / wall, 3)
    writes = raw["writes"]
    ok = [w for w in writes if w.get("status") == 201]
    bench.acknowledged += len(ok)
    bench.known_ids.extend(w["id"] for w in ok)
    lags = [w["lag_ms"] for w in writes if "lag_ms" in w]
    write_ms = [w["write_ms"] for w in ok]
    late = [w["late_ms"] for w in writes]
    per_follower = {}
    for url in followers:
        mine = [w["lag_ms"] for w in writes if w.get("follower") == url and "lag_ms" in w]
        per_follower[url] = {"n": len(mine), "p50_ms": percentile(mine, 50), "p99_ms": percentile(mine, 99), "max_ms": max(mine)}
    return {
        "cluster": bench.key,
        "rate_per_s": round(rate, 1),
        "seconds": args.lag_seconds,
        "planned_writes": raw["planned"],
        "acknowledged_writes": len(ok),
        "achieved_rate_per_s": round(len(ok) / raw["sent_for_seconds"], 1) if raw["sent_for_seconds"] else None,
        "skipped_by_generator": raw["skipped"],
        "errors": raw["errors"],
        "lag_ms": {
            "n": len(lags),
            "p50": percentile(lags, 50),
            "p90": percentile(lags, 90),
            "p99": percentile(lags, 99),
            "max": max(lags) if lags else None,
        },
        "lag_per_follower": per_follower,
        "write_latency_ms": {
            "p50": percentile(write_ms, 50),
            "p99": percentile(write_ms, 99),
            "max": max(write_ms, default=None),
        },
        "idle_probe_ms": {
            "n": len(raw["idle_probe_ms"]),
            "p50": percentile(raw["idle_probe_ms"], 50),
            "p99": percentile(raw["idle_probe_ms"], 99),
        },
        "send_lateness_ms": {"p50": percentile(late, 50), "p99": percentile(late, 99), "max": max(late, default=None)},
        "cores": cores,
        "leader": leader.name,
        "load_1m": {"before": load_before, "after": load()},
    }


def read_your_writes(args, bench: Bench, workdir: Path) -> dict:
    followers = [node.url for node in bench.followers()]
    raw = run_client(
        {"mode": "ryw", "followers": followers, "tokens": bench.tokens, "count": args.ryw, "concurrency": args.ryw_concurrency},
        workdir,
        timeout=300,
    )
    results = raw["results"]
    written = [r for r in results if r.get("write_status") == 201]
    bench.acknowledged += len(written)
    bench.known_ids.extend(r["id"] for r in written)
    failures = [r for r in written if not r.get("ok")]
    return {
        "cluster": bench.key,
        "attempts": len(results),
        "writes_acknowledged": len(written),
        "read_back": len(written) - len(failures),
        "fraction": round((len(written) - len(failures)) / len(written), 4) if written else None,
        "write_failures": [r for r in results if r.get("write_status") != 201][:10],
        "read_failures": failures[:10],
        "concurrency": args.ryw_concurrency,
    }


# --- 4. sync -----------------------------------------------------------------------------------


def build_database(data_dir: Path, target_bytes: int, rng: random.Random) -> dict:
    """A database of ~``target_bytes`` through talentnest.store: real write transactions, real log and LSNs.

    One member (username ``syncer``, password ``pass123``) writes posts of 4,000-5,000 characters
    (the API's maximum is 5,000), 20 to a transaction; the log is trimmed as it goes, so the file
    holds data rather than an old log.
    """
    started = time.monotonic()
    db = product_database(data_dir, retention=Retention(max_entries=500, max_bytes=2 * 1024 * 1024))
    users, posts = UserRepo(db), PostRepo(db)
    password_hash = asyncio.run(Passwords(time_cost=1, memory_kib=1024, parallelism=1).hash(PASSWORD))
    db.open()
    try:
        db.term = 1
        with db.write() as conn:
            author = users.insert(
                conn,
                username="syncer",
                email="syncer@bench.example",
                name="Sync Bench",
                password_hash=password_hash,
                token_key="k",
                now=iso_now(),
            )
        page_size = db.conn.execute("PRAGMA page_size").fetchone()[0]
        count = content_bytes = batches = 0
        while True:
            with db.write() as conn:
                now = iso_now()
                for _ in range(20):
                    words = rng.choices(WORDS, k=rng.randint(560, 700))
                    content = " ".join(words)[:5000]
                    posts.insert(conn, author, content, now)
                    count += 1
                    content_bytes += len(content)
            batches += 1
            if batches % 8 == 0:
                db.trim_log()
                size = db.conn.execute("PRAGMA page_count").fetchone()[0] * page_size
                if size >= target_bytes:
                    break
        db.trim_log()
        lsn = db.last_lsn
    finally:
        db.close()
    return {
        "posts": count,
        "content_mb": round(content_bytes / 1e6, 1),
        "file_mb": round((data_dir / DB_FILENAME).stat().st_size / 1e6, 1),
        "lsn": lsn,
        "build_seconds": round(time.monotonic() - started, 1),
    }


def sync_new_node(args, workdir: Path, rng: random.Random) -> dict:
    directory = workdir / "sync"
    seed = directory / "backend-1" / "data"
    built = build_database(seed, int(args.sync_mb * 1e6), rng)
    print(
        f"  built {built['file_mb']} MB database ({built['posts']} posts, {built['content_mb']} MB of text, LSN {built['lsn']}) "
        f"in {built['build_seconds']} s",
        flush=True,
    )
    for name in ("backend-2", "backend-3"):
        shutil.copytree(seed, directory / name / "data")
    cluster = start_cluster(directory, [1, 2, 3], {"LOG_LEVEL": "info"}, args.subnet)
    try:
        load_before = load()
        started = time.monotonic()
        node = cluster.add_node(wait=False)
        wait_until(node.is_ready, timeout=args.sync_timeout, interval=0.05, what=f"{node.name} ready", report=cluster.report)
        ready = time.monotonic() - started
        line = next((line for line in node.logs().splitlines() if "sync: installed a snapshot" in line), None)
        print(f"  {node.name} ready {ready:.2f} s after it was started: {line}", flush=True)
        # It receives new writes too: a post through a follower reaches the new node.
        leader = cluster.wait_for_leader(timeout=60)
        handover = time.monotonic() - started
        first = cluster.node("backend-1")
        login = first.request("POST", "/api/auth/login", json={"username": "syncer", "password": PASSWORD})
        assert login.status == 200, f"login answered {login.status}: {login.body}"
        post = first.request("POST", "/api/posts", json={"content": "after the sync"}, token=login.body["token"])
        assert post.status == 201, f"post answered {post.status}: {post.body}"
        cluster.wait_for_applied(post.lsn, timeout=30)
        sums = cluster.checksums()
        if len(set(sums.values())) != 1:
            raise SystemExit(f"after the sync the checksums differ: {sums}")
        return {
            "database": built,
            "ready_seconds": round(ready, 3),
            "sync_line": line,
            "snapshot": _parse_sync_line(line),
            "leader_after": leader.name,
            "all_agree_seconds": round(handover, 3),
            "post_after_sync_lsn": post.lsn,
            "checksums_equal": True,
            "load_1m": {"before": load_before, "after": load()},
        }
    finally:
        cluster.close()


def _parse_sync_line(line: str | None) -> dict | None:
    if not line:
        return None
    match = re.search(r"([\d.]+) MB sent, ([\d.]+) MB database, in ([\d.]+) s", line)
    if not match:
        return None
    return {"sent_mb": float(match[1]), "database_mb": float(match[2]), "seconds": float(match[3])}


# --- report ------------------------------------------------------------------------------------


def verdict(value: float | None, target: float, *, higher: bool) -> str:
    if value is None:
        return "n/a"
    return "met" if (value >= target if higher else value < target) else "MISSED"


def print_report(report: dict) -> None:
    tp = report.get("throughput")
    if tp:
        names = list(tp["median_rps"])
        print("\nwrite throughput, POST /api/posts with wrk (req/s per round, order rotated; CPU ms per write)")
        rounds = "".join(f"{'round ' + str(i + 1):>9}" for i in range(len(tp["rounds"])))
        header = f"{'target':<17}{rounds}{'median':>9}{'leader ms':>11}{'entry ms':>10}{'all ms':>8}"
        print(header + "\n" + "-" * len(header))
        for name in names:
            cells = "".join(f"{r[name]['requests_per_second']:>9.1f}" for r in tp["rounds"])
            cpu = tp["median_cpu_ms_per_write"][name]
            print(
                f"{name:<17}{cells}{tp['median_rps'][name]:>9.1f}{cpu['leader']:>11.2f}{cpu['entry']:>10.2f}{cpu['cluster']:>8.2f}"
            )
        print(f"\n{'ratio':<34}{'measured':>9}{'per round':>32}{'per core':>10}{'target':>9}  verdict (measured)")
        rows = [
            ("async leader / single node", "async_over_single", TARGETS["async_over_single"]),
            ("quorum leader / single node", "quorum_over_single", TARGETS["quorum_over_single"]),
            ("async follower / async leader", "follower_over_leader", TARGETS["follower_over_leader"]),
            ("quorum follower / quorum leader", "quorum_follower_over_quorum_leader", None),
        ]
        for title, key, target in rows:
            r = tp["ratios"][key]
            each = " ".join(f"{x:.2f}" for x in r["per_round"])
            shown = f">= {target}" if target else "-"
            judged = verdict(r["median"], target, higher=True) if target else ""
            print(f"{title:<34}{r['median']:>9.3f}{each:>32}{tp['ratios_per_core'][key]['median']:>10.3f}{shown:>9}  {judged}")
        print(
            "  (per core: the ratio of CPU milliseconds per write of the busiest process, i.e. the ratio if every node "
            "had a core to itself)"
        )
    for lag in report.get("lag", []):
        s = lag["lag_ms"]
        print(
            f"\nreplication lag, {lag['cluster']} cluster, open loop at {lag['rate_per_s']} writes/s for {lag['seconds']} s "
            f"({lag['acknowledged_writes']} writes, {s['n']} probes; a probe alone takes p50 {lag['idle_probe_ms']['p50']} ms)"
        )
        print(
            f"  p50 {s['p50']:.2f} ms   p90 {s['p90']:.2f} ms   p99 {s['p99']:.2f} ms "
            f"({verdict(s['p99'], TARGETS['lag_p99_ms'], higher=False)} < {TARGETS['lag_p99_ms']:g})   "
            f"max {s['max']:.2f} ms ({verdict(s['max'], TARGETS['lag_max_ms'], higher=False)} < {TARGETS['lag_max_ms']:g})"
        )
        print("  cores used: " + ", ".join(f"{k}{'*' if k == lag['leader'] else ''} {v:.2f}" for k, v in lag["cores"].items()))
        w = lag["write_latency_ms"]
        print(
            f"  write latency p50 {w['p50']} ms, p99 {w['p99']} ms; errors {lag['errors'] or 'none'}; "
            f"generator skipped {lag['skipped_by_generator']}"
        )
    for ryw in report.get("read_your_writes", []):
        print(
            f"\nread-your-writes through followers, {ryw['cluster']} cluster: {ryw['read_back']}/{ryw['writes_acknowledged']} "
            f"read back at once ({verdict(ryw['fraction'], 1.0, higher=True)}; {ryw['concurrency']} concurrent writers)"
        )
    sync = report.get("sync")
    if sync:
        db = sync["database"]
        print(
            f"\nsync of a new node: ready {sync['ready_seconds']:.2f} s after start "
            f"({verdict(sync['ready_seconds'], TARGETS['sync_seconds'], higher=False)} < {TARGETS['sync_seconds']:g} s); "
            f"database {db['file_mb']} MB, LSN {db['lsn']}\n  {sync['sync_line']}"
        )
    check = report.get("correctness")
    if check:
        print("\ncorrectness (every acknowledged write on every node):")
        for key, c in check.items():
            print(
                f"  {key:<7} acknowledged {c['acknowledged']}, stored {c['stored_per_node']}, "
                f"client IDs missing {c['client_ids_missing']}, checksums equal {c['checksums_equal']}: "
                f"{'OK' if c['ok'] else 'FAILED'}"
            )
            changes = c["leadership_changes_under_load"]
            print(f"    changes of role or leader while measured: {len(changes) or 'none'}")
            for line in changes[:6]:
                print(f"      {line}")


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds over the five targets (default 5)")
    parser.add_argument("--seconds", type=int, default=5, help="measured wrk seconds per target and round (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured wrk seconds before each (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32, as the baseline)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--users", type=int, default=50, help="members whose tokens write, per cluster (default 50)")
    parser.add_argument("--lag-seconds", type=float, default=20, help="seconds of the open-loop lag run (default 20)")
    parser.add_argument("--lag-rate", type=float, help="writes/s of the lag run (default: half the single node's median)")
    parser.add_argument("--lag-probe-every", type=int, default=1, help="time the lag of every n-th write (default 1)")
    parser.add_argument("--ryw", type=int, default=400, help="read-your-writes attempts per cluster (default 400)")
    parser.add_argument("--ryw-concurrency", type=int, default=8, help="concurrent read-your-writes clients (default 8)")
    parser.add_argument("--sync-mb", type=float, default=100, help="size of the database the new node syncs (default 100)")
    parser.add_argument("--sync-timeout", type=float, default=120, help="give up on the new node after this (default 120 s)")
    parts = ["throughput", "lag", "ryw", "sync"]
    parser.add_argument("--skip", action="append", default=[], choices=parts, help="leave a part out (repeatable)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (1 round of 3 s, 5 s of lag, 50 RYW, 10 MB sync)")
    parser.add_argument(
        "--linger-ms", type=int, help="the nodes' REPLICATION_LINGER_MS (default: theirs, 10), to compare the linger with 0"
    )
    add_common_arguments(parser, DEFAULT_OUTPUT)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help="the wrk binary")
    args = parser.parse_args(argv)
    args.subnet = parse_subnet(args.subnet)
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.lag_seconds, args.ryw, args.sync_mb = 1, 3, 1, 5, 50, 10
    if "throughput" not in args.skip and not Path(args.wrk).exists():
        parser.error(f"wrk not found at {args.wrk}; install it (apt-get install wrk) or pass --wrk")

    load_before = load()
    rng = random.Random(5)
    workdir = Path(tempfile.mkdtemp(prefix="talentnest-replication-"))
    report: dict = {
        "benchmark": "replication",
        "timestamp": timestamp(),
        "config": {
            "subnet": args.subnet,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "users": args.users,
            "node_settings": "defaults (HEARTBEAT_INTERVAL 1, ELECTION_INTERVAL 10, FAILURE_TIMEOUT 30), LOG_LEVEL=info"
            + ("" if args.linger_ms is None else f", REPLICATION_LINGER_MS={args.linger_ms}"),
        },
        "targets": TARGETS,
    }
    started = time.monotonic()
    benches: dict[str, Bench] = {}
    try:
        # Info level logs elections (no access log: nothing per request), so a leader that loses its
        # lease under load shows in the report.
        quiet = {"LOG_LEVEL": "info"}
        if args.linger_ms is not None:
            quiet["REPLICATION_LINGER_MS"] = str(args.linger_ms)
        if not {"throughput", "lag", "ryw"} <= set(args.skip):
            layout = [
                ("single", [21], quiet),
                ("async", [1, 2, 3], quiet),
                ("quorum", [11, 12, 13], {**quiet, "REPLICATION_MODE": "quorum", "CLUSTER_SIZE": "3"}),
            ]
            for key, indices, env in layout:
                cluster = start_cluster(workdir / key, indices, env, args.subnet)
                benches[key] = Bench(key, cluster, [])
                benches[key].tokens = seed_tokens(benches[key].leader, args.users, f"{key}user")
                benches[key].offsets = log_offsets(cluster)
                where = ", ".join(f"{n.name} {n.address} ({n.node_id})" for n in cluster.nodes)
                print(f"{key} cluster ready: {where}; leader {benches[key].leader.name}", flush=True)

            if "throughput" not in args.skip:
                print(f"\nthroughput: {args.rounds} rounds x 5 targets x ({args.warmup} + {args.seconds}) s", flush=True)
                a, q = benches["async"], benches["quorum"]
                targets = [
                    ("single", benches["single"], benches["single"].leader),
                    ("async leader", a, a.leader),
                    ("async follower", a, a.followers()[0]),
                    ("quorum leader", q, q.leader),
                    ("quorum follower", q, q.followers()[0]),
                ]
                report["throughput"] = throughput(args, targets, workdir)

            rate = args.lag_rate or (report["throughput"]["median_rps"]["single"] / 2 if "throughput" in report else 400)
            if "lag" not in args.skip:
                report["lag"] = []
                for key in ("async", "quorum"):
                    print(f"\nreplication lag in the {key} cluster at {rate:.0f} writes/s for {args.lag_seconds} s", flush=True)
                    report["lag"].append(replication_lag(args, benches[key], rate, workdir))
                    s = report["lag"][-1]["lag_ms"]
                    print(f"  lag p50 {s['p50']} ms, p99 {s['p99']} ms, max {s['max']} ms", flush=True)
            if "ryw" not in args.skip:
                report["read_your_writes"] = []
                for key in ("async", "quorum"):
                    report["read_your_writes"].append(read_your_writes(args, benches[key], workdir))
                    r = report["read_your_writes"][-1]
                    print(f"\nread-your-writes ({key}): {r['read_back']}/{r['writes_acknowledged']}", flush=True)

            report["correctness"] = {}
            converged = {key: converge(bench) for key, bench in benches.items()}
            elections = {key: election_lines(bench.cluster, bench.offsets) for key, bench in benches.items()}
            for bench in benches.values():
                bench.cluster.close()
            for key, bench in benches.items():
                stored = {node.name: stored_posts(node.data_dir) for node in bench.cluster.nodes}
                counts = {name: len(ids) for name, ids in stored.items()}
                missing = {name: len(set(bench.known_ids) - ids) for name, ids in stored.items()}
                same = len({frozenset(ids) for ids in stored.values()}) == 1
                report["correctness"][key] = {
                    "acknowledged": bench.acknowledged,
                    "stored_per_node": counts,
                    "client_ids_checked": len(bench.known_ids),
                    "client_ids_missing": missing,
                    "checksums_equal": True,
                    "same_posts_on_every_node": same,
                    "converged": converged[key],
                    "leadership_changes_under_load": elections[key],
                    "ok": same and all(n >= bench.acknowledged for n in counts.values()) and not any(missing.values()),
                }

        if "sync" not in args.skip:
            print(f"\nsync: a 4th node joins a cluster holding a {args.sync_mb:g} MB database", flush=True)
            report["sync"] = sync_new_node(args, workdir, rng)
    finally:
        for bench in benches.values():
            bench.cluster.close()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    report["machine"] = machine(load_before)
    report["duration_seconds"] = round(time.monotonic() - started, 1)
    print_report(report)
    write_report(args.output, report)
    print(f"({report['duration_seconds']} s)")
    failed = [key for key, c in report.get("correctness", {}).items() if not c["ok"]]
    if failed:
        print(f"CORRECTNESS FAILED in: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
