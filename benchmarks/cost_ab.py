#!/usr/bin/env python3
"""CPU per request of two source trees side by side: a change's before/after, interleaved in one run.

Each tree (a directory holding ``src/talentnest``) runs in a worker process of its own that builds a
node's app in process (``layer_costs.build_app``: no server, no sockets) and, when told, runs a batch
of requests and answers its CPU microseconds per request (thread time). The batches alternate between
the trees, so that the machine's load falls on both alike; the median of the batches is reported.

    git archive main src | tar -x -C /tmp/base      # the tree before the change
    .venv/bin/python benchmarks/cost_ab.py /tmp/base .
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(tree: Path, per_round: int, clock: str = "thread") -> None:
    import gc
    import logging
    import tempfile
    import time

    sys.path.insert(0, str(HERE))
    import layer_costs  # puts this checkout's src/ on sys.path: the tree's goes in front of it

    sys.path.insert(0, str(tree / "src"))
    for name in [m for m in sys.modules if m == "talentnest" or m.startswith("talentnest.")]:
        del sys.modules[name]
    logging.disable(logging.WARNING)
    import uvloop

    async def serve() -> None:
        app = layer_costs.build_app(Path(tempfile.mkdtemp(prefix="talentnest-ab-")), "node")
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        try:
            seed = await layer_costs.seeded(app)
            gc.collect()
            gc.freeze()
            print(json.dumps({"ready": True}), flush=True)
            for _line in sys.stdin:
                gc.collect()
                timer = time.process_time if clock == "process" else time.thread_time
                print(json.dumps(await layer_costs.measure_app(app, *seed, per_round, clock=timer)), flush=True)
        finally:
            await lifespan.__aexit__(None, None, None)

    uvloop.run(serve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, help="the tree before and the tree after (each holds src/talentnest)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per tree")
    parser.add_argument(
        "--clock",
        choices=["thread", "process"],
        default="thread",
        help="CPU of the requests' thread (default), or of the whole worker process: reader threads included",
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.requests, args.clock)
        return 0
    if len(args.trees) != 2:
        parser.error(f"give two trees, the one before and the one after; got {len(args.trees)}")
    workers, tree_of = [], []
    for tree in [tree for _ in range(args.workers) for tree in args.trees]:
        command = [
            sys.executable,
            __file__,
            "--worker",
            str(tree.resolve()),
            "--requests",
            str(args.requests),
            "--clock",
            args.clock,
        ]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(process.stdout.readline())["ready"]
        workers.append(process)
        tree_of.append(len(tree_of) % 2)
    samples: list[dict[str, list[float]]] = [{}, {}]
    try:
        for number in range(args.rounds):
            shift = number % len(workers)
            for index in [*range(shift, len(workers)), *range(shift)]:
                workers[index].stdin.write("go\n")
                workers[index].stdin.flush()
                for request, us in json.loads(workers[index].stdout.readline()).items():
                    samples[tree_of[index]].setdefault(request, []).append(us)
    finally:
        for process in workers:
            process.stdin.close()
            process.wait(timeout=30)
    print(
        f"CPU us per request ({args.clock} time), median of {args.rounds} rounds x {args.workers} workers per tree, "
        f"batches of {args.requests}"
    )
    print(f"{'request':<36}{'before':>10}{'after':>10}{'change':>10}")
    for request in samples[0]:
        before, after = statistics.median(samples[0][request]), statistics.median(samples[1][request])
        print(f"{request:<36}{before:>10.1f}{after:>10.1f}{after - before:>+10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
