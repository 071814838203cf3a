#!/usr/bin/env python3
"""What WAL checkpoints cost the writer's event loop: in a reader thread (as shipped) against SQLite's own.

SQLite's automatic checkpoint runs on the connection that commits, so on a node it ran on the event
loop: every 1,000 pages it copied the WAL back into the database file and synced it, holding the loop
for a few milliseconds. With reader threads a node turns it off and a reader thread copies the pages
back; the writer only finishes the few written meanwhile (``store/_db.py``, ``_checkpoint_if_due``).

No server and no sockets: ``POST /api/posts`` goes straight into a real node's ASGI app (a single node
that leads, as in ``layer_costs.py``), in interleaved rounds of the two configurations, each on its
own data directory. Per configuration: the wall time of each write (the loop is held for all of it),
p50/p99/p99.9/max, how many writes took over 2 ms, and the loop thread's CPU per write. Writes
``benchmarks/results/checkpoints.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _cluster import RESULTS, load, machine, percentile, timestamp, write_report  # also puts src/ on sys.path
from layer_costs import build_app, call, seeded

DEFAULT_OUTPUT = RESULTS / "checkpoints.json"
CONFIGURATIONS = ("in a reader thread (shipped)", "SQLite's automatic checkpoint on the loop")


def _as_before(db) -> None:
    """The node as it was: SQLite checkpoints on the writer's connection every 1,000 pages."""
    db.conn.execute("PRAGMA wal_autocheckpoint=1000")
    db._checkpoint_if_due = lambda: None


async def measure(rounds: int, writes: int, root: Path) -> dict:
    apps = {}
    for number, name in enumerate(CONFIGURATIONS):
        app = build_app(root, f"config-{number}")
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        token, _ = await seeded(app, posts=10)
        if number == 1:
            _as_before(app.state.db)
        apps[name] = (app, lifespan, token)
    walls = {name: [] for name in CONFIGURATIONS}
    cpu = dict.fromkeys(CONFIGURATIONS, 0.0)
    for round_number in range(rounds):
        order = CONFIGURATIONS if round_number % 2 == 0 else tuple(reversed(CONFIGURATIONS))
        for name in order:
            app, _, token = apps[name]
            started_cpu = time.thread_time()
            for n in range(writes):
                body = b'{"content":"checkpoint benchmark post %d of round %d, with some text to it"}' % (n, round_number)
                started = time.perf_counter()
                status, answer = await call(app, "POST", "/api/posts", body, token)
                walls[name].append(time.perf_counter() - started)
                assert status == 201, answer
            cpu[name] += time.thread_time() - started_cpu
            print(f"  round {round_number + 1} {name}: {writes} writes", flush=True)
    results = {}
    for name in CONFIGURATIONS:
        app, lifespan, _ = apps[name]
        samples = walls[name]
        db = app.state.db
        results[name] = {
            "writes": len(samples),
            "p50_ms": percentile(samples, 50) * 1e3,
            "p99_ms": percentile(samples, 99) * 1e3,
            "p999_ms": percentile(samples, 99.9) * 1e3,
            "max_ms": max(samples) * 1e3,
            "over_2ms": sum(1 for s in samples if s > 0.002),
            "loop_cpu_us_per_write": cpu[name] / len(samples) * 1e6,
            "reader_thread_checkpoints": db._readers.checkpoints,
            "writer_checkpoints_finishing_them": db.inline_checkpoints,
        }
        await lifespan.__aexit__(None, None, None)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    parser.add_argument("--writes", type=int, default=5000, help="writes per configuration and round (default 5000)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2,000 writes")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.writes = 2, 2000
    load_before = load()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tn-checkpoints-") as root:
        results = asyncio.run(measure(args.rounds, args.writes, Path(root)))
    print(f"\nPOST /api/posts in process, {args.rounds} interleaved rounds of {args.writes} writes each")
    print(f"{'checkpoints':44} {'p50':>7} {'p99':>7} {'p99.9':>7} {'max':>7} {'>2 ms':>6} {'loop CPU':>9}")
    for name, r in results.items():
        print(
            f"{name:44} {r['p50_ms']:6.3f}  {r['p99_ms']:6.3f}  {r['p999_ms']:6.3f}  {r['max_ms']:6.2f}  "
            f"{r['over_2ms']:5d}  {r['loop_cpu_us_per_write']:6.1f} us"
        )
    write_report(
        args.output,
        {
            "benchmark": "checkpoints",
            "timestamp": timestamp(),
            "config": {"rounds": args.rounds, "writes": args.writes},
            "results": results,
            "machine": machine(load_before),
            "duration_seconds": round(time.monotonic() - started, 1),
        },
    )


if __name__ == "__main__":
    main()
