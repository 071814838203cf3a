#!/usr/bin/env python3
"""Where a node's CPU goes per request, under load: py-spy samples of real nodes driven by wrk, by layer (issue 13).

A single node and a 3-node cluster run as in peers.py. For each scenario (``GET /api/posts/{id}``,
``POST /api/posts``, a read on a follower, a write through a follower, a write to the leader, whose
followers then take ``/cluster/replicate``), at 1 and at 32 connections: wrk runs once unprofiled,
to measure requests/s and the CPU milliseconds per request of every node (``/proc``), then again
while ``py-spy record --format raw`` samples the nodes that work (the entry node, the leader, a
follower). Each sample is given to a layer by ``_layers.py`` (the innermost frame a rule names);
a layer's share of the samples times the node's CPU per request is its cost in microseconds.

Needs py-spy (``pip install py-spy``; not a dependency of the project) and root or ptrace rights.
py-spy pauses the process for each sample (exact stacks; ``--rate`` 100 Hz by default keeps the
slowdown small). Samples with no Python frame above the event loop are uvloop's C code, the
kernel, and (at one connection) the loop waiting in epoll, which py-spy cannot always tell from
work: that share is an upper bound, and at one connection the Python layers' figures are low. Prints one table per scenario and
writes ``benchmarks/results/request_profile.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _cluster import RESULTS, add_common_arguments, load, machine, parse_subnet, timestamp, write_report
from _layers import layers, parse_raw
from _peers import _COUNTING_LUA, Scenario, TalentNest, lua_get, run
from single_node import post_creation

DEFAULT_OUTPUT = RESULTS / "request_profile.json"


def profile(
    py_spy: str, wrk: str, scenario: Scenario, pids: dict[str, int], *, seconds: float, rate: int, threads: int, workdir: Path
) -> dict[str, dict]:
    """wrk on ``scenario`` while py-spy samples each of ``pids``; per process: samples, layers, stacks."""
    script = workdir / f"profile-{scenario.name.replace(' ', '_').replace('/', '_')}.lua"
    script.write_text(scenario.lua + _COUNTING_LUA)
    threads = max(1, min(threads, scenario.connections))
    command = [wrk, f"-t{threads}", f"-c{scenario.connections}", f"-d{seconds + 2:g}s", "-s", str(script), scenario.url]
    load_gen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    spies = {}
    try:
        time.sleep(1)  # past the connections' opening
        for label, pid in pids.items():
            out = workdir / f"spy-{label}-{time.monotonic_ns()}.txt"
            spy = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--duration", f"{seconds:g}", "--format", "raw"]
            spies[label] = (subprocess.Popen([*spy, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)
        for spy, _ in spies.values():
            spy.wait(timeout=seconds + 60)
    finally:
        stdout, _ = load_gen.communicate(timeout=seconds + 60)
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    raw = json.loads(lines[-1][len("RESULT ") :]) if lines else {}
    rps = (raw.get("requests", 0) - raw.get("failed", 0)) / (raw["duration_us"] / 1e6) if raw.get("duration_us") else 0.0
    answered = rps * seconds
    found: dict[str, dict] = {}
    for label, (spy, out) in spies.items():
        if spy.returncode != 0 or not out.exists():
            error = spy.stderr.read().decode(errors="replace") if spy.stderr else ""
            raise SystemExit(f"py-spy failed on {label} ({spy.returncode}): {error[-500:]}")
        stacks = parse_raw(out.read_text().splitlines())
        by_layer = layers(stacks)
        total = sum(by_layer.values())
        found[label] = {
            "samples": total,
            "profiled_rps": round(rps, 1),
            "layers_percent": {layer: round(count / total * 100, 2) for layer, count in by_layer.most_common()},
            # Time sampled per request: CPU only while the node has a core; on a loaded machine it also
            # holds the waits for one (us_per_request, the share times the measured CPU, does not).
            "sampled_us_per_request": {
                layer: round(count / rate / answered * 1e6, 1) if answered else None for layer, count in by_layer.most_common()
            },
            "top_stacks": [[count, stack] for stack, count in stacks.most_common(15)],
        }
    return found


def with_cpu(found: dict, cpu_ms: float) -> None:
    """Each layer's microseconds per request: its share of the samples times the node's measured CPU per request.

    At 32 connections a node is busy all the time, so its samples are its work (and its waits for
    a core, alike in every layer). At one connection the loop also waits in epoll between
    requests, which py-spy counts as the event loop's: there the Python layers' figures are low.
    """
    found["us_per_request"] = {layer: round(share / 100 * cpu_ms * 1000, 1) for layer, share in found["layers_percent"].items()}


def print_breakdown(name: str, measured: dict, profiled: dict[str, dict]) -> None:
    print(
        f"\n{name}: {measured['rps']:.0f} req/s unprofiled, p99 {measured['p99_ms']:.1f} ms, CPU ms/request: "
        + ", ".join(f"{label} {v:.3f}" for label, v in measured["cpu_ms_per_request"].items() if v and v >= 0.001)
    )
    for label, found in profiled.items():
        cpu = measured["cpu_ms_per_request"].get(label) or 0.0
        print(
            f"  {label} ({found['samples']} samples; {cpu * 1000:.0f} us CPU per request): share of samples, CPU us per request"
        )
        for layer, share in found["layers_percent"].items():
            if share >= 0.5:
                print(f"    {share:>5.1f}%  {found['us_per_request'][layer]:>6.0f} us  {layer}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8, help="profiled seconds per scenario (default 8)")
    parser.add_argument("--measure-seconds", type=float, default=5, help="unprofiled wrk seconds per scenario (default 5)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second (default 100)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, action="append", help="connection counts (default 1 and 32)")
    parser.add_argument("--users", type=int, default=50, help="members whose tokens write (default 50)")
    parser.add_argument("--posts", type=int, default=300, help="posts seeded and read back (default 300)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help="the wrk binary")
    parser.add_argument("--quick", action="store_true", help="3 s per scenario, 32 connections only")
    add_common_arguments(parser, DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    args.subnet = parse_subnet(args.subnet)
    connections = args.connections or [1, 32]
    if args.quick:
        args.seconds, args.measure_seconds, connections = 3, 2, [32]
    if not Path(args.py_spy).exists():
        parser.error(f"py-spy not found at {args.py_spy}; install it (pip install py-spy) or pass --py-spy")
    if not Path(args.wrk).exists():
        parser.error(f"wrk not found at {args.wrk}; install it (apt-get install wrk) or pass --wrk")

    load_before = load()
    workdir = Path(tempfile.mkdtemp(prefix="talentnest-profile-"))
    single = TalentNest(workdir / "single", [21], args.subnet)
    cluster = TalentNest(workdir / "cluster", [1, 2, 3], args.subnet)
    report: dict = {"benchmark": "request_profile", "timestamp": timestamp(), "scenarios": {}}
    try:
        single.start(users=args.users, posts=args.posts, prefix="one")
        cluster.start(users=args.users, posts=args.posts, prefix="three")
        node, leader, follower = single.leader, cluster.leader, cluster.followers()[0]
        other = cluster.followers()[1]
        processes = {"single node": single.pids(), "3 nodes": cluster.pids()}
        reads_one = lua_get([f"/api/posts/{i}" for i in single.post_ids])
        reads_three = lua_get([f"/api/posts/{i}" for i in cluster.post_ids])
        plan = []
        one_writes, three_writes = post_creation(single.tokens).lua, post_creation(cluster.tokens).lua
        for n in connections:
            suffix = "" if n == 32 else f", {n} conn"
            plan += [
                (Scenario(f"GET /api/posts/{{id}}{suffix}", "single node", "read", node.url, reads_one, n), [node]),
                (Scenario(f"POST /api/posts{suffix}", "single node", "write", node.url, one_writes, n), [node]),
                (Scenario(f"read on a follower{suffix}", "3 nodes", "read", follower.url, reads_three, n), [follower]),
                (Scenario(f"write to the leader{suffix}", "3 nodes", "write", leader.url, three_writes, n), [leader, other]),
                (
                    Scenario(f"write through a follower{suffix}", "3 nodes", "write", follower.url, three_writes, n),
                    [follower, leader],
                ),
            ]
        for scenario, nodes in plan:
            measured = run(
                args.wrk, scenario, processes, seconds=args.measure_seconds, warmup=1, threads=args.threads, workdir=workdir
            )
            pids = {n.name: n.pid for n in nodes}
            profiled = profile(
                args.py_spy, args.wrk, scenario, pids, seconds=args.seconds, rate=args.rate, threads=args.threads, workdir=workdir
            )
            roles = {leader.name: "leader", follower.name: "follower (entry)", other.name: "follower", node.name: "single node"}
            for label in profiled:
                profiled[label]["role"] = roles.get(label)
                with_cpu(profiled[label], measured["cpu_ms_per_request"].get(label) or 0.0)
            report["scenarios"][scenario.name] = {"measured": measured, "profiled": profiled}
            print_breakdown(scenario.name, measured, profiled)
    finally:
        cluster.stop()
        single.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["config"] = {"seconds": args.seconds, "rate": args.rate, "connections": connections, "subnet": args.subnet}
    report["machine"] = machine(load_before)
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
