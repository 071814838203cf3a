#!/usr/bin/env python3
"""Talent Nest beside its peers (issue 13): dqlite-demo and a bare FastAPI app, side by side on the same cores.

Four systems run at once, each idle while another is measured: a 3-node dqlite-demo cluster
(Debian's go-dqlite: an HTTP key/value service over Raft-replicated SQLite), a bare FastAPI app
doing the essential work of the same requests on the same uvicorn, Python and SQLite
(``_bare.py``), a single Talent Nest node and a 3-node Talent Nest cluster. The same wrk drives
every target (Lua scripts for tokens and bodies; a ``response`` hook counts every failed answer),
in interleaved rounds (the order rotated each round, every ratio taken within a round, the
median of the rounds reported). The CPU time of every process (``/proc/<pid>/stat``) is read
before and after each run: CPU milliseconds per request of each node and each dqlite process.

Prints the table and writes ``benchmarks/results/peers.json``. ``--quick`` is a short run. It
installs nothing: without ``dqlite-demo`` (``apt-get install go-dqlite``) that column is skipped,
saying so. See benchmarks/README.md, "Peers and cost per request".
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def _environment_or_exit() -> None:
    """Run under the project's virtualenv (re-executing into it if needed), or say how to make it."""
    try:
        import aiohttp  # noqa: F401
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        # sys.prefix, not the executable: a virtualenv's python is a link to the one it was made from.
        if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parents[1].resolve():
            print(f"peers.py: {exc.name} is not installed for {sys.executable}; using {VENV_PYTHON}", file=sys.stderr)
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        raise SystemExit(
            f"peers.py needs the project's Python environment ({exc.name} is missing). Create it once with "
            "`./dev test --co -q` (a virtualenv in .venv with the locked dependencies), then run "
            "`.venv/bin/python benchmarks/peers.py --quick`."
        ) from None


_environment_or_exit()

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from _cluster import RESULTS, add_common_arguments, load, machine, parse_subnet, timestamp, write_report  # noqa: E402
from _peers import (  # noqa: E402
    DQLITE_INSTALL,
    BareApp,
    DqliteDemo,
    Scenario,
    TalentNest,
    idle_cores,
    lua_get,
    lua_put,
    medians,
    ratio,
    rounds,
)
from single_node import post_creation  # noqa: E402

DEFAULT_OUTPUT = RESULTS / "peers.json"
DEFAULT_PORT = 9000
TARGETS = {
    "follower read / dqlite-demo follower read": (">=", 1.0),
    "GET /api/posts/{id} / bare app": (">=", 0.8),
    "POST /api/posts / bare app": (">=", 0.8),
    "CPU per write, 3 nodes / single node (1 connection)": ("<=", 1.5),
}
DQ_KEYS = 1000

# name, system, kind, connections: the rows of the table, in order.
DQ_READ = "dqlite-demo: read on a follower"
DQ_WRITE = "dqlite-demo: write to the leader"
DQ_WRITE_1 = "dqlite-demo: write to the leader, 1 conn"
DQ_FWD_1 = "dqlite-demo: write through a follower, 1 conn"
BARE_GET = "bare app: GET /api/posts/{id}"
BARE_POST = "bare app: POST /api/posts"
BARE_POST_1 = "bare app: POST /api/posts, 1 conn"
ONE_GET = "single node: GET /api/posts/{id}"
ONE_POST = "single node: POST /api/posts"
ONE_POST_1 = "single node: POST /api/posts, 1 conn"
TN_READ = "3 nodes: read on a follower"
TN_WRITE = "3 nodes: write to the leader"
TN_WRITE_1 = "3 nodes: write to the leader, 1 conn"
TN_FWD = "3 nodes: write through a follower"
TN_FWD_1 = "3 nodes: write through a follower, 1 conn"


def scenarios(dq: DqliteDemo | None, bare: BareApp, single: TalentNest, cluster: TalentNest) -> list[Scenario]:
    out: list[Scenario] = []
    if dq is not None:
        follower, keys = dq.followers()[0], [f"/key{k}" for k in range(DQ_KEYS)]
        out += [
            Scenario(DQ_READ, "dqlite-demo", "read", dq.url(follower), lua_get(keys), entry=follower),
            Scenario(DQ_WRITE, "dqlite-demo", "write", dq.url(dq.leader), lua_put(DQ_KEYS), entry=dq.leader),
            Scenario(DQ_WRITE_1, "dqlite-demo", "write", dq.url(dq.leader), lua_put(DQ_KEYS), 1, entry=dq.leader),
            Scenario(DQ_FWD_1, "dqlite-demo", "write", dq.url(follower), lua_put(DQ_KEYS), 1, entry=follower),
        ]
    bare_posts = [f"/api/posts/{i}" for i in bare.post_ids]
    out += [
        Scenario(BARE_GET, "bare app", "read", bare.url, lua_get(bare_posts), entry="bare app"),
        Scenario(BARE_POST, "bare app", "write", bare.url, post_creation(bare.tokens).lua, entry="bare app"),
        Scenario(BARE_POST_1, "bare app", "write", bare.url, post_creation(bare.tokens).lua, 1, entry="bare app"),
    ]
    node = single.leader
    one_posts = [f"/api/posts/{i}" for i in single.post_ids]
    out += [
        Scenario(ONE_GET, "single node", "read", node.url, lua_get(one_posts), entry=node.name),
        Scenario(ONE_POST, "single node", "write", node.url, post_creation(single.tokens).lua, entry=node.name),
        Scenario(ONE_POST_1, "single node", "write", node.url, post_creation(single.tokens).lua, 1, entry=node.name),
    ]
    leader, follower = cluster.leader, cluster.followers()[0]
    posts = [f"/api/posts/{i}" for i in cluster.post_ids]
    write = post_creation(cluster.tokens).lua
    out += [
        Scenario(TN_READ, "3 nodes", "read", follower.url, lua_get(posts), entry=follower.name),
        Scenario(TN_WRITE, "3 nodes", "write", leader.url, write, entry=leader.name),
        Scenario(TN_WRITE_1, "3 nodes", "write", leader.url, write, 1, entry=leader.name),
        Scenario(TN_FWD, "3 nodes", "write", follower.url, write, entry=follower.name),
        Scenario(TN_FWD_1, "3 nodes", "write", follower.url, write, 1, entry=follower.name),
    ]
    return out


def comparisons(results: list[dict[str, dict]]) -> dict[str, dict | None]:
    """Every ratio of the report, each the median of the rounds' own ratios."""
    return {
        "follower read / dqlite-demo follower read": ratio(results, TN_READ, DQ_READ),
        "GET /api/posts/{id} / bare app": ratio(results, ONE_GET, BARE_GET),
        "POST /api/posts / bare app": ratio(results, ONE_POST, BARE_POST),
        "POST /api/posts / bare app (1 connection)": ratio(results, ONE_POST_1, BARE_POST_1),
        "follower read / bare app GET": ratio(results, TN_READ, BARE_GET),
        "CPU per write, 3 nodes / single node (1 connection)": ratio(results, TN_WRITE_1, ONE_POST_1, "cpu_ms_per_request_total"),
        "CPU per write, 3 nodes / single node (32 connections)": ratio(results, TN_WRITE, ONE_POST, "cpu_ms_per_request_total"),
        "write through a follower / to the leader": ratio(results, TN_FWD, TN_WRITE),
        "write through a follower / to the leader (1 connection)": ratio(results, TN_FWD_1, TN_WRITE_1),
        "3-node write to the leader / dqlite-demo": ratio(results, TN_WRITE, DQ_WRITE),
        "3-node write to the leader / dqlite-demo (1 connection)": ratio(results, TN_WRITE_1, DQ_WRITE_1),
        "CPU per follower read, dqlite-demo / Talent Nest": ratio(results, DQ_READ, TN_READ, "cpu_ms_per_request_total"),
    }


PEER_OF = {TN_READ: DQ_READ, TN_WRITE: DQ_WRITE, TN_WRITE_1: DQ_WRITE_1, TN_FWD_1: DQ_FWD_1}
BARE_OF = {ONE_GET: BARE_GET, ONE_POST: BARE_POST, ONE_POST_1: BARE_POST_1, TN_READ: BARE_GET}


def table(summary: dict[str, dict], results: list[dict[str, dict]]) -> str:
    header = (
        f"{'scenario':<46}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms/req':>11}{'vs dqlite':>10}{'vs bare':>9}"
        "  CPU ms/req of each process"
    )
    lines = [header, "-" * len(header)]
    for name, s in summary.items():
        peer = ratio(results, name, PEER_OF[name]) if name in PEER_OF else None
        bare = ratio(results, name, BARE_OF[name]) if name in BARE_OF else None
        per = ", ".join(f"{label} {v:.3f}" for label, v in s["cpu_ms_per_request"].items() if v >= 0.0005)
        failed = sum(s["failed_per_round"])
        note = f"  [{failed} refused]" if failed else ""
        vs_peer = f"{peer['median']:.2f}x" if peer else "-"
        vs_bare = f"{bare['median']:.2f}x" if bare else "-"
        lines.append(
            f"{name:<46}{s['rps']:>9,.0f}{s['p50_ms']:>8.2f}{s['p99_ms']:>8.2f}{s['cpu_ms_per_request_total'] or 0:>11.3f}"
            f"{vs_peer:>10}{vs_bare:>9}  {per}{note}"
        )
    return "\n".join(lines)


def verdicts(ratios: dict[str, dict | None]) -> str:
    lines = [f"\n{'ratio (median of the rounds)':<58}{'measured':>9}  {'per round':<24}{'target':>8}  verdict"]
    for name, r in ratios.items():
        if r is None:
            lines.append(f"{name:<58}{'-':>9}")
            continue
        sign, target = TARGETS.get(name, (None, None))
        shown = f"{sign} {target:g}" if sign else ""
        met = "" if sign is None else ("met" if (r["median"] >= target if sign == ">=" else r["median"] <= target) else "MISSED")
        each = " ".join(f"{v:.2f}" for v in r["per_round"])
        lines.append(f"{name:<58}{r['median']:>9.3f}  {each:<24}{shown:>8}  {met}")
    return "\n".join(lines)


NOTES = [
    "dqlite commits every write on a majority of its 3 voters and fsyncs its Raft log; Talent Nest answers a write "
    "once its leader's SQLite has committed it (async replication, WAL with synchronous=NORMAL: no fsync per commit).",
    "dqlite-demo refuses concurrent writers ('database is locked', answered 200 with an 'Error:' body): its writes are "
    "also measured with one connection, and every refused write is counted out of its req/s.",
    "dqlite forwards every query to its leader, reads on a follower included (its go driver talks to the leader): a "
    "follower read costs two processes; a Talent Nest follower answers from its own SQLite file.",
    "dqlite-demo's request is a key/value lookup of a 260-byte text; Talent Nest's and the bare app's GET is the product's "
    "post query (a join with the author, like and comment counts) rendered as JSON of about the same size.",
    "The bare app has no middleware, no response_model, no account check of the token, no replication, no metrics; "
    "its POST answers what it inserted instead of reading the post back.",
    "Everything shares the machine's cores with wrk: figures are those of a 2-core box for 3-4 busy processes; the CPU "
    "milliseconds per request are the steadier figure on a busy machine.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over every scenario (default 3)")
    parser.add_argument("--seconds", type=float, default=5, help="measured wrk seconds per scenario and round (default 5)")
    parser.add_argument("--warmup", type=float, default=1, help="unmeasured wrk seconds before each (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2; 1 for one connection)")
    parser.add_argument("--users", type=int, default=50, help="members whose tokens write, per system (default 50)")
    parser.add_argument("--posts", type=int, default=500, help="posts seeded per system, read back (default 500)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the bare app's port (default {DEFAULT_PORT})")
    parser.add_argument("--dqlite-demo", default=shutil.which("dqlite-demo"), help="the dqlite-demo binary")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help="the wrk binary")
    parser.add_argument("--quick", action="store_true", help="a short run: 1 round of 2 s after 1 s of warm-up")
    add_common_arguments(parser, DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.subnet = parse_subnet(args.subnet)
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.posts = 1, 2, 1, 200
    if not Path(args.wrk).exists():
        parser.error(f"wrk not found at {args.wrk}; install it (apt-get install wrk) or pass --wrk")
    have_dqlite = bool(args.dqlite_demo) and Path(args.dqlite_demo).exists() and shutil.which("dqlite") is not None
    if not have_dqlite:
        print(f"dqlite-demo not found: its column is skipped. Install it with `{DQLITE_INSTALL}` (Debian's go-dqlite).")

    load_before = load()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="talentnest-peers-"))
    dq = DqliteDemo(workdir / "dqlite", args.subnet, binary=args.dqlite_demo) if have_dqlite else None
    bare = BareApp(workdir / "bare", f"{args.subnet}.41", args.port)
    single = TalentNest(workdir / "single", [21], args.subnet)
    cluster = TalentNest(workdir / "cluster", [1, 2, 3], args.subnet)
    report: dict = {"benchmark": "peers", "timestamp": timestamp()}
    try:
        if dq is not None:
            dq.start(keys=DQ_KEYS)
            print(f"dqlite-demo: 3 voters on {args.subnet}.31-33, leader {dq.leader}, {DQ_KEYS} keys", flush=True)
        bare.build(users=args.users, posts=args.posts)
        bare.start()
        print(f"bare app: {bare.url}, {args.users} members, {args.posts} posts", flush=True)
        for system, prefix in ((single, "one"), (cluster, "three")):
            system.start(users=args.users, posts=args.posts, prefix=prefix)
            where = ", ".join(f"{n.name} {n.address}" for n in system.nodes)
            print(f"talent nest: {where}; leader {system.leader.name}; {args.posts} posts", flush=True)
        processes = {"bare app": bare.pids(), "single node": single.pids(), "3 nodes": cluster.pids()}
        if dq is not None:
            processes["dqlite-demo"] = dq.pids()
        plan = scenarios(dq, bare, single, cluster)
        print(f"\n{args.rounds} rounds x {len(plan)} scenarios x ({args.warmup:g} + {args.seconds:g}) s", flush=True)
        results = rounds(
            args.wrk,
            plan,
            processes,
            count=args.rounds,
            seconds=args.seconds,
            warmup=args.warmup,
            threads=args.threads,
            workdir=workdir,
            progress=lambda line: print(line, flush=True),
        )
        roles = {
            "dqlite-demo": {"leader": dq.leader, "followers": dq.followers()} if dq else None,
            "3 nodes": {"leader": cluster.leader.name, "followers": [n.name for n in cluster.followers()]},
        }
    finally:
        for system in (cluster, single, bare, dq):
            if system is not None:
                system.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    summary = medians(results, [s.name for s in plan])
    ratios = comparisons(results)
    print(f"\nmedian of {args.rounds} interleaved round(s), {args.seconds:g} s each, 32 connections unless said")
    print(table(summary, results))
    print(verdicts(ratios))
    idle = idle_cores(results)
    print(
        "\nidle, while another system was measured (cores): "
        + "; ".join(
            f"{system}: " + ", ".join(f"{label} {v:.3f}" for label, v in labels.items()) for system, labels in idle.items()
        )
    )
    if dq is None:
        print(f"\n(dqlite-demo skipped: install it with `{DQLITE_INSTALL}`)")
    print("\nwhat differs:\n" + "\n".join(f"- {note}" for note in NOTES))
    report.update(
        config={
            "subnet": args.subnet,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "wrk_threads": args.threads,
            "users": args.users,
            "posts": args.posts,
            "dqlite_demo": "present" if dq else f"missing (install: {DQLITE_INSTALL})",
            "load_generator": "wrk with Lua scripts; a response hook counts failed answers",
        },
        roles=roles,
        targets={name: f"{sign} {value}" for name, (sign, value) in TARGETS.items()},
        summary=summary,
        ratios=ratios,
        idle_cores=idle,
        rounds=results,
        notes=NOTES,
        machine=machine(load_before),
        duration_seconds=round(time.monotonic() - started, 1),
    )
    write_report(args.output, report)
    print(f"({report['duration_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
