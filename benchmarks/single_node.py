#!/usr/bin/env python3
"""The single-node baseline: requests/s and p50/p99 latency of one node over loopback, with wrk.

Starts one real node (``python -m talentnest node``) on 127.0.0.1 and a free port with a
temporary DATA_DIR, seeds users and posts through the API, then drives it with wrk for each
scenario: post creation (a write), user search and get-post (reads). Prints a table and writes
the figures as JSON (default ``benchmarks/results/single_node.json``). Every later cluster figure
is compared with these. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests._node import LocalNode  # noqa: E402  (the checkout's own node launcher)

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "single_node.json"
# A benchmark's few accounts on one address would meet the node's write limits (3,000 writes a minute an
# address): its writes would then measure 429s. Off for the node measured, as benchmarks/_cluster.py does.
UNLIMITED_WRITES = {"WRITE_LIMIT_PER_ACCOUNT": "0", "WRITE_LIMIT_PER_ADDRESS": "0"}
SKILLS = ["Python", "Go", "Rust", "SQL", "Kubernetes", "React", "Data", "Design", "Kotlin", "Swift"]
SEARCH_TERMS = ["python", "rust", "bench", "engineer", "user1", "data", "kotlin", "user42"]

# wrk's done() hook prints one line we parse: the summary and latency percentiles in microseconds.
_DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"non_2xx_3xx":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "write" or "read"
    lua: str


@dataclass(frozen=True)
class Result:
    scenario: str
    kind: str
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int


def lua_list(values: list) -> str:
    return "{" + ", ".join(json.dumps(v) for v in values) + "}"


def post_creation(tokens: list[str]) -> Scenario:
    return Scenario(
        "create post",
        "write",
        f"""
local tokens = {lua_list(tokens)}
local n = 0
request = function()
  n = n + 1
  local body = '{{"content":"benchmark post ' .. n .. ' from a wrk thread"}}'
  local headers = {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]}}
  return wrk.format("POST", "/api/posts", headers, body)
end
""",
    )


def search() -> Scenario:
    return Scenario(
        "search users",
        "read",
        f"""
local terms = {lua_list(SEARCH_TERMS)}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/users/search?query=" .. terms[(n % #terms) + 1])
end
""",
    )


def get_post(post_ids: list[int]) -> Scenario:
    return Scenario(
        "get post",
        "read",
        f"""
local ids = {lua_list(post_ids)}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/posts/" .. ids[(n * 7919 % #ids) + 1])
end
""",
    )


# --- seeding -----------------------------------------------------------------------------------


def seed(client: httpx.Client, users: int, posts: int, rng: random.Random) -> tuple[list[str], list[int]]:
    """Sign up ``users`` members with profiles and write ``posts`` posts; answer tokens and post ids."""
    tokens = []
    for i in range(users):
        response = client.post(
            "/api/auth/signup",
            json={"name": f"Bench User {i}", "username": f"user{i}", "email": f"user{i}@bench.example", "password": "pass123"},
        )
        response.raise_for_status()
        token = response.json()["token"]
        profile = {"headline": rng.choice(["Data engineer", "Backend engineer", "Designer"]), "skills": rng.sample(SKILLS, 3)}
        client.patch("/api/users/me", json=profile, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        tokens.append(token)
    post_ids = []
    for i in range(posts):
        token = tokens[i % len(tokens)]
        response = client.post("/api/posts", json={"content": f"seed post {i}"}, headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        post_ids.append(response.json()["id"])
    return tokens, post_ids


# --- wrk ---------------------------------------------------------------------------------------


def run_wrk(wrk: str, url: str, scenario: Scenario, *, seconds: int, connections: int, threads: int, workdir: Path) -> Result:
    script = workdir / f"{scenario.name.replace(' ', '_')}.lua"
    script.write_text(scenario.lua + _DONE_LUA)
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    raw = json.loads(lines[-1][len("RESULT ") :])
    elapsed = raw["duration_us"] / 1e6
    return Result(
        scenario=scenario.name,
        kind=scenario.kind,
        requests=raw["requests"],
        seconds=round(elapsed, 2),
        requests_per_second=round(raw["requests"] / elapsed, 1),
        p50_ms=round(raw["p50_us"] / 1000, 2),
        p90_ms=round(raw["p90_us"] / 1000, 2),
        p99_ms=round(raw["p99_us"] / 1000, 2),
        max_ms=round(raw["max_us"] / 1000, 2),
        errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"],
        non_2xx=raw["non_2xx_3xx"],
    )


def table(results: list[Result]) -> str:
    header = f"{'scenario':<14} {'kind':<6} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'requests':>9} {'errors':>7}"
    rows = [
        f"{r.scenario:<14} {r.kind:<6} {r.requests_per_second:>9.1f} {r.p50_ms:>8.2f} {r.p90_ms:>8.2f} {r.p99_ms:>8.2f} "
        f"{r.requests:>9} {r.errors + r.non_2xx:>7}"
        for r in results
    ]
    return "\n".join([header, "-" * len(header), *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per scenario (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each scenario (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="open HTTP connections (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--users", type=int, default=200, help="members to seed (default 200)")
    parser.add_argument("--posts", type=int, default=2000, help="posts to seed (default 2000)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind the node to (default 127.0.0.1)")
    default_output = DEFAULT_OUTPUT.relative_to(ROOT)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON results (default {default_output})")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help="the wrk binary")
    args = parser.parse_args(argv)
    if not Path(args.wrk).exists():
        parser.error(f"wrk not found at {args.wrk}; install it (apt-get install wrk) or pass --wrk")
    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.x.x.x)")

    load_before = os.getloadavg()
    rng = random.Random(7)
    workdir = Path(tempfile.mkdtemp(prefix="talentnest-bench-"))
    node = LocalNode(workdir, host=args.host, JWT_SECRET=secrets.token_hex(32), LOG_LEVEL="warning", **UNLIMITED_WRITES)
    results: list[Result] = []
    try:
        node.wait_ready()
        started = time.monotonic()
        with httpx.Client(base_url=node.url, timeout=30) as client:
            tokens, post_ids = seed(client, args.users, args.posts, rng)
        seconds = time.monotonic() - started
        print(f"node {node.url}: seeded {args.users} users and {args.posts} posts in {seconds:.1f} s", flush=True)
        for scenario in (post_creation(tokens[:50]), search(), get_post(post_ids)):
            options = dict(connections=args.connections, threads=args.threads, workdir=workdir)
            if args.warmup > 0:
                run_wrk(args.wrk, node.url, scenario, seconds=args.warmup, **options)
            result = run_wrk(args.wrk, node.url, scenario, seconds=args.seconds, **options)
            print(f"  {result.scenario}: {result.requests_per_second:.0f} req/s, p99 {result.p99_ms:.1f} ms", flush=True)
            results.append(result)
        with httpx.Client(base_url=node.url, timeout=30) as client:
            newest = client.get("/api/posts", params={"limit": 1}).json()["items"][0]["id"]
        # Every acknowledged write is really there: warm-up and measured posts on top of the seed.
        created = newest - max(post_ids)
        written = sum(r.requests - r.non_2xx for r in results if r.kind == "write")
        if created < written:
            raise SystemExit(f"only {created} posts were stored, but wrk counted {written} successful post creations")
    finally:
        node.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(table(results))
    report = {
        "benchmark": "single_node",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            # Other work on the machine skews the figures; the 1-minute load says how much there was.
            "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        },
        "config": {
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "seed_users": args.users,
            "seed_posts": args.posts,
            "transport": "HTTP/1.1 keep-alive over loopback; wrk and the node share the machine",
        },
        "results": [asdict(r) for r in results],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
