#!/usr/bin/env python3
"""Issue 13's candidate changes measured side by side with the node as shipped: req/s and CPU per request each moves.

Each candidate is a prototype patched into a node from outside ``src/`` (``_variants.py``; nothing
of the product changes). Two groups, each in interleaved rounds (order rotated, every ratio taken
within a round, the median reported):

1. single nodes, one per variant (``orjson-http``, ``no-response-model``, both, ``account-cache``,
   ``token-cache``, ``granian``, all of them), under ``GET /api/posts/{id}`` and ``POST /api/posts``
   at 32 connections; beside them the bare app reading inline and in a worker thread (the thread
   hop a reader pool costs);
2. 3-node clusters, one per variant of the replication path (``orjson-wire``, and the linger of
   ``REPLICATION_LINGER_MS``: off, 2 ms and 5 ms beside the shipped 10 ms), under writes to the
   leader at 1 and 32 connections and through a follower at 1 connection: the CPU per write of all
   three nodes is what these move.

Needs orjson and granian for those variants (``pip install orjson granian``; not dependencies of
the project): a variant whose package is missing is skipped, saying so. Prints the tables and
writes ``benchmarks/results/candidates.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _cluster import RESULTS, add_common_arguments, load, machine, parse_subnet, timestamp, write_report
from _peers import BareApp, Scenario, TalentNest, lua_get, medians, ratio, rounds
from single_node import post_creation

DEFAULT_OUTPUT = RESULTS / "candidates.json"
VARIANT_NODE = (sys.executable, str(Path(__file__).resolve().parent / "_variants.py"))
AS_SHIPPED = "as shipped"
# name -> TN_VARIANTS; the first is the node as shipped (the real node command).
SINGLE = {
    AS_SHIPPED: "",
    "orjson-http": "orjson-http",
    "no-response-model": "no-response-model",
    "orjson + no-response-model": "orjson-http,no-response-model",
    "account-cache": "account-cache",
    "token-cache": "token-cache",
    "granian": "granian",
    "all of the above": "orjson-http,no-response-model,account-cache,token-cache,granian",
}
# name -> (TN_VARIANTS, the nodes' settings); ``cluster-fast-path`` shipped in the first round (cluster/front.py).
CLUSTER = {
    AS_SHIPPED: ("", {}),
    "orjson-wire": ("orjson-wire", {}),
    "no linger (REPLICATION_LINGER_MS=0)": ("", {"REPLICATION_LINGER_MS": "0"}),
    "linger 2 ms": ("", {"REPLICATION_LINGER_MS": "2"}),
    "linger 5 ms": ("", {"REPLICATION_LINGER_MS": "5"}),
}
NEEDS = {"orjson": "orjson", "granian": "granian"}
BARE_INLINE, BARE_THREAD = "bare app: read inline", "bare app: read in a worker thread"


def missing_packages(variants: str) -> list[str]:
    return [package for key, package in NEEDS.items() if key in variants and importlib.util.find_spec(package) is None]


def available(variants: dict[str, str]) -> dict[str, str]:
    kept = {}
    for name, names in variants.items():
        missing = missing_packages(names)
        if missing:
            print(f"skipped {name}: needs {', '.join(missing)} (pip install {' '.join(missing)})")
        else:
            kept[name] = names
    return kept


def start_node(workdir: Path, key: str, indices: list[int], names: str, subnet: str, args, env=None) -> TalentNest:
    command = VARIANT_NODE if names else None
    env = {**({"TN_VARIANTS": names} if names else {}), **(env or {})}
    system = TalentNest(workdir / key, indices, subnet, env=env, node_command=command)
    system.start(users=args.users, posts=args.posts, prefix=f"v{indices[0]}x")
    return system


def effect(results, variant_scenario: str, baseline_scenario: str) -> dict:
    """req/s and CPU per request of a variant against the node as shipped, each within a round."""
    return {
        "rps_ratio": ratio(results, variant_scenario, baseline_scenario),
        "cpu_ratio": ratio(results, variant_scenario, baseline_scenario, "cpu_ms_per_request_total"),
    }


def print_effects(title: str, summary: dict, effects: dict) -> None:
    print(f"\n{title}")
    header = f"{'variant / scenario':<58}{'req/s':>8}{'p99 ms':>8}{'CPU ms/req':>11}{'req/s x':>9}{'CPU x':>8}"
    print(header + "\n" + "-" * len(header))
    for name, s in summary.items():
        e = effects.get(name, {})
        rps = f"{e['rps_ratio']['median']:.2f}" if e.get("rps_ratio") else "-"
        cpu = f"{e['cpu_ratio']['median']:.2f}" if e.get("cpu_ratio") else "-"
        print(f"{name:<58}{s['rps']:>8,.0f}{s['p99_ms']:>8.1f}{s['cpu_ms_per_request_total'] or 0:>11.3f}{rps:>9}{cpu:>8}")


def run_group(args, plan: list[Scenario], processes: dict, baselines: dict[str, str], workdir: Path) -> dict:
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
    summary = medians(results, [s.name for s in plan])
    effects = {name: effect(results, name, baselines[name]) for name in summary if baselines.get(name) not in (None, name)}
    return {"summary": summary, "effects": effects, "rounds": results}


def single_group(args, workdir: Path) -> dict:
    variants = available(SINGLE)
    systems: dict[str, TalentNest] = {}
    bares = {
        BARE_INLINE: BareApp(workdir / "bare-inline", f"{args.subnet}.41", args.port),
        BARE_THREAD: BareApp(workdir / "bare-thread", f"{args.subnet}.42", args.port, env={"BARE_READS": "thread"}),
    }
    try:
        for number, (name, names) in enumerate(variants.items()):
            systems[name] = start_node(workdir, f"single-{number}", [51 + number], names, args.subnet, args)
            print(f"single node {name}: {systems[name].leader.url}", flush=True)
        for bare in bares.values():
            bare.build(users=args.users, posts=args.posts)
            bare.start()
        plan, baselines = [], {}
        for name, system in systems.items():
            node = system.leader
            reads = lua_get([f"/api/posts/{i}" for i in system.post_ids])
            get, post = f"{name}: GET /api/posts/{{id}}", f"{name}: POST /api/posts"
            plan += [
                Scenario(get, name, "read", node.url, reads, entry=node.name),
                Scenario(post, name, "write", node.url, post_creation(system.tokens).lua, entry=node.name),
            ]
            baselines[get], baselines[post] = f"{AS_SHIPPED}: GET /api/posts/{{id}}", f"{AS_SHIPPED}: POST /api/posts"
        for name, bare in bares.items():
            plan.append(Scenario(name, name, "read", bare.url, lua_get([f"/api/posts/{i}" for i in bare.post_ids])))
            baselines[name] = BARE_INLINE
        processes = {name: system.pids() for name, system in systems.items()} | {name: b.pids() for name, b in bares.items()}
        print(
            f"\nsingle nodes: {args.rounds} rounds x {len(plan)} scenarios x ({args.warmup:g} + {args.seconds:g}) s", flush=True
        )
        return run_group(args, plan, processes, baselines, workdir)
    finally:
        for system in systems.values():
            system.stop()
        for bare in bares.values():
            bare.stop()


def cluster_group(args, workdir: Path) -> dict:
    variants = available({name: names for name, (names, _env) in CLUSTER.items()})
    systems: dict[str, TalentNest] = {}
    try:
        for number, (name, names) in enumerate(variants.items()):
            first = 61 + 3 * number
            indices = [first, first + 1, first + 2]
            systems[name] = start_node(workdir, f"cluster-{number}", indices, names, args.subnet, args, CLUSTER[name][1])
            print(f"3 nodes {name}: leader {systems[name].leader.url}", flush=True)
        plan, baselines = [], {}
        for name, system in systems.items():
            leader, follower, writes = system.leader, system.followers()[0], post_creation(system.tokens).lua
            runs = (("to the leader", leader, 1), ("to the leader", leader, 32), ("through a follower", follower, 1))
            for where, node, connections in runs:
                scenario = f"{name}: write {where}, {connections} conn"
                plan.append(Scenario(scenario, name, "write", node.url, writes, connections, entry=node.name))
                baselines[scenario] = f"{AS_SHIPPED}: write {where}, {connections} conn"
        processes = {name: system.pids() for name, system in systems.items()}
        print(
            f"\n3-node clusters: {args.rounds} rounds x {len(plan)} scenarios x ({args.warmup:g} + {args.seconds:g}) s",
            flush=True,
        )
        return run_group(args, plan, processes, baselines, workdir)
    finally:
        for system in systems.values():
            system.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--seconds", type=float, default=4, help="measured wrk seconds per scenario and round (default 4)")
    parser.add_argument("--warmup", type=float, default=1, help="unmeasured wrk seconds before each (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--users", type=int, default=50, help="members whose tokens write (default 50)")
    parser.add_argument("--posts", type=int, default=300, help="posts seeded per node (default 300)")
    parser.add_argument("--port", type=int, default=9000, help="the bare apps' port (default 9000)")
    parser.add_argument("--skip", action="append", default=[], choices=["single", "cluster"], help="leave a group out")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help="the wrk binary")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s")
    add_common_arguments(parser, DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.subnet = parse_subnet(args.subnet)
    if args.quick:
        args.rounds, args.seconds, args.posts = 1, 2, 100
    if not Path(args.wrk).exists():
        parser.error(f"wrk not found at {args.wrk}; install it (apt-get install wrk) or pass --wrk")
    load_before = load()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="talentnest-candidates-"))
    report: dict = {"benchmark": "candidates", "timestamp": timestamp()}
    try:
        if "single" not in args.skip:
            report["single"] = single_group(args, workdir)
        if "cluster" not in args.skip:
            report["cluster"] = cluster_group(args, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if "single" in report:
        print_effects(
            "single nodes (32 connections), against the node as shipped", report["single"]["summary"], report["single"]["effects"]
        )
    if "cluster" in report:
        print_effects(
            "3-node clusters, against the cluster as shipped", report["cluster"]["summary"], report["cluster"]["effects"]
        )
    report.update(
        config={"rounds": args.rounds, "seconds": args.seconds, "warmup_seconds": args.warmup, "subnet": args.subnet},
        variants={"single": SINGLE, "cluster": CLUSTER},
        machine=machine(load_before),
        duration_seconds=round(time.monotonic() - started, 1),
    )
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
