#!/usr/bin/env python3
"""Talent Nest at real size: the same reads and writes on networks of 1,000 to 1,000,000 members (issue 12).

For each size the script builds a network with ``talentnest generate`` (or reuses the one it built
before, cached under ``--data-dir``), copies it into a fresh data directory, starts one node on it
(timing how long it takes to be ready), and drives it with wrk, 8 connections (8 concurrent
clients) per scenario: searches (a common skill, a rare skill, a rare name, an accented name, a
3-letter prefix, two words), the feed of the member whose followees wrote the most, the posts of
the most prolific author, the followers of the most followed member from the middle of the list,
get post, get profile, post creation and like. Then "search beside": the p99 of other reads alone,
and again while a search load runs beside them. It records latency p50/p99, requests/s and the
node's CPU milliseconds per request, the database size, the node's RSS and time to ready, and the
growth of each median against the smallest network. A last part measures, in process, what the
hop of a read to a reader thread costs in CPU. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from _cluster import RESULTS, ROOT, cpu_seconds, load, machine, timestamp, write_report  # also puts src/ on sys.path
from single_node import UNLIMITED_WRITES, Result, Scenario, lua_list, post_creation, run_wrk
from tests._node import LocalNode

from talentnest.services import Tokens
from talentnest.store import DB_FILENAME

DEFAULT_OUTPUT = RESULTS / "scale.json"
STORE_OUTPUT = RESULTS / "scale_store.json"
DEFAULT_DATA = Path.home() / ".cache" / "talentnest" / "scale"
# Labels to member counts; "empty" is the baseline of post creation: members, and nothing else yet.
SIZES = {"empty": 1_000, "1k": 1_000, "100k": 100_000, "1M": 1_000_000}
TARGETS = {
    "selective_search_p99_ms": 20.0,
    "broad_search_p99_ms": 50.0,
    "other_read_p99_ms": 10.0,
    "median_growth": 2.0,
    "post_creation_vs_empty": 0.8,
    "search_beside_p99_added_ms": 2.0,
}
SELECTIVE_SEARCHES = ("search rare skill", "search rare name", "search accented name", "search prefix")
BROAD_SEARCHES = ("search common skill",)
BESIDE_OTHER_CLIENTS, BESIDE_SEARCH_CLIENTS = 1, 2


@dataclass(frozen=True)
class Built:
    label: str
    path: Path
    members: int
    build_seconds: float | None
    counts: dict


def build(label: str, data_root: Path, seed: int) -> Built:
    """The network of ``label`` under ``data_root``, generated now if it is not there yet."""
    members = SIZES[label]
    directory = data_root / f"{label}-seed{seed}"
    meta = directory / "build.json"
    if meta.exists() and (directory / DB_FILENAME).exists():
        info = json.loads(meta.read_text())
        print(f"{label}: reusing {directory} (built in {info['build_seconds']} s)", flush=True)
        return Built(label, directory, members, info["build_seconds"], info["counts"])
    if directory.exists():
        shutil.rmtree(directory)
    extra = ["--posts", "0", "--follows", "0", "--likes", "0", "--comments", "0"] if label == "empty" else []
    print(f"{label}: generating {members:,} members into {directory} ...", flush=True)
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "talentnest", "generate", str(directory), "--members", str(members), "--seed", str(seed)]
    subprocess.run([*command, *extra], check=True, env=env)
    seconds = round(time.monotonic() - started, 1)
    with sqlite3.connect(directory / DB_FILENAME) as conn:
        counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("users", "follows", "posts", "likes")}
    meta.write_text(json.dumps({"build_seconds": seconds, "counts": counts, "seed": seed}) + "\n")
    return Built(label, directory, members, seconds, counts)


# --- what to ask for ---------------------------------------------------------------------------


def _cursor(kind: str, key: list) -> str:
    """A list cursor as the node makes them (services/_paging.py): base64url JSON of [kind, *key]."""
    return base64.urlsafe_b64encode(json.dumps([kind, *key], separators=(",", ":")).encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Targets:
    """Who and what the scenarios ask for, chosen from the network itself."""

    rare_name: str
    rare_skill: str
    two_words: str
    feed_member: tuple[int, str]
    feed_followees_posts: int
    prolific_author: str
    author_posts: int
    followed: str
    followers: int
    followers_cursor: str | None
    users: list[tuple[int, str]]
    post_ids: list[int]
    # Each sampled member's token key: a token must carry it (README, "Your account: password, export, deletion").
    token_keys: dict[int, str]


def choose(db_path: Path, rng: random.Random) -> Targets:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    members = conn.execute("SELECT MAX(id) FROM users").fetchone()[0]
    sample = sorted(rng.sample(range(1, members + 1), min(members, 2000)))
    marks = ",".join("?" for _ in sample)
    rows = conn.execute(f"SELECT id, username, name, skills, token_key FROM users WHERE id IN ({marks})", sample).fetchall()
    users = [(r[0], r[1]) for r in rows]
    token_keys = {r[0]: r[4] or "" for r in rows}
    first_names: dict[str, int] = {}
    for _, _, name, _, _ in rows:
        first_names[name.split()[0]] = first_names.get(name.split()[0], 0) + 1
    rare_name = min(first_names, key=lambda n: (first_names[n], n))
    common = max(first_names, key=lambda n: (first_names[n], n))
    family = max((r[2].split()[-1] for r in rows if r[2].split()[0] == common), key=len)
    rare_skill = "Smalltalk"
    post_count = conn.execute("SELECT COUNT(*) FROM posts").fetchone()[0]
    if post_count:
        author, author_posts = conn.execute(
            "SELECT author_id, COUNT(*) c FROM posts GROUP BY author_id ORDER BY c DESC LIMIT 1"
        ).fetchone()
        per_author = dict(conn.execute("SELECT author_id, COUNT(*) FROM posts GROUP BY author_id"))
        # The heaviest feed we can find: among sampled members and the followers of the most
        # prolific authors, the one whose followees wrote the most posts.
        prolific = [a for a, _ in sorted(per_author.items(), key=lambda item: -item[1])[:5]]
        marks_p = ",".join("?" for _ in prolific)
        fans = [
            r[0] for r in conn.execute(f"SELECT follower_id FROM follows WHERE followee_id IN ({marks_p}) LIMIT 300", prolific)
        ]

        def followees_posts(member: int) -> int:
            followees = conn.execute("SELECT followee_id FROM follows WHERE follower_id = ?", (member,))
            return sum(per_author.get(f, 0) for (f,) in followees)

        feed_id, feed_posts = max(((m, followees_posts(m)) for m in [*sample[:300], *fans]), key=lambda pair: pair[1])
        followed, followers = conn.execute(
            "SELECT followee_id, COUNT(*) c FROM follows GROUP BY followee_id ORDER BY c DESC LIMIT 1"
        ).fetchone()
        middle = conn.execute(
            "SELECT created_at, follower_id FROM follows WHERE followee_id = ? ORDER BY created_at DESC, follower_id DESC "
            "LIMIT 1 OFFSET ?",
            (followed, followers // 2),
        ).fetchone()
        cursor = _cursor("followers", list(middle))
        newest = conn.execute("SELECT MAX(id) FROM posts").fetchone()[0]
        post_ids = sorted(rng.sample(range(1, newest + 1), min(newest, 5000)))
    else:
        author, author_posts, feed_id, feed_posts, followed, followers, cursor, post_ids = 1, 0, 1, 0, 1, 0, None, []
    username = {
        uid: name
        for uid, name in conn.execute("SELECT id, username FROM users WHERE id IN (?, ?, ?)", (author, feed_id, followed))
    }
    conn.close()
    return Targets(
        rare_name=rare_name.lower(),
        rare_skill=rare_skill,
        two_words=f"{common} {family}",
        feed_member=(feed_id, username[feed_id]),
        feed_followees_posts=feed_posts,
        prolific_author=username[author],
        author_posts=author_posts,
        followed=username[followed],
        followers=followers,
        followers_cursor=cursor,
        users=users,
        post_ids=post_ids,
        token_keys=token_keys,
    )


def _get(name: str, paths: list[str], headers: dict[str, str] | None = None) -> Scenario:
    header_lua = "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()) + "}"
    return Scenario(
        name,
        "read",
        f"""
local paths = {lua_list(paths)}
local headers = {header_lua}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n * 7919 % #paths) + 1], headers)
end
""",
    )


def _search(name: str, query: str) -> Scenario:
    from urllib.parse import quote

    return _get(name, [f"/api/users/search?query={quote(query)}"])


def scenarios(targets: Targets, tokens: Tokens) -> list[Scenario]:
    # Tokens made here as a node makes them: without the account's key a node refuses them (401
    # token_revoked), which a run on a freshly built network counted as thousands of write errors.
    bearer = {uid: tokens.issue(uid, name, targets.token_keys.get(uid, "")) for uid, name in targets.users[:200]}
    feed_id, feed_name = targets.feed_member
    found = [
        _search("search common skill", "python"),
        _search("search rare skill", targets.rare_skill),
        _search("search rare name", targets.rare_name),
        _search("search accented name", "élodie"),
        _search("search prefix", "jos"),
        _search("search two words", targets.two_words),
        _get("feed", ["/api/feed"], {"Authorization": f"Bearer {tokens.issue(feed_id, feed_name)}"}),
        _get("posts by author", [f"/api/posts?author={targets.prolific_author}"]),
        _get("get profile", [f"/api/users/{name}" for _, name in targets.users]),
    ]
    if targets.followers_cursor:
        found.append(_get("followers deep", [f"/api/users/{targets.followed}/followers?cursor={targets.followers_cursor}"]))
    if targets.post_ids:
        found.append(_get("get post", [f"/api/posts/{i}" for i in targets.post_ids]))
    writers = list(bearer.items())
    found.append(post_creation([token for _, token in writers[:50]]))
    if targets.post_ids:
        found.append(
            Scenario(
                "like",
                "write",
                f"""
local tokens = {lua_list([token for _, token in writers])}
local posts = {lua_list(targets.post_ids)}
local n = 0
request = function()
  n = n + 1
  local headers = {{["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]}}
  return wrk.format("POST", "/api/posts/" .. posts[(n * 104729 % #posts) + 1] .. "/like", headers, "")
end
""",
            )
        )
    return found


def others(targets: Targets) -> Scenario:
    """Reads a search runs beside: profiles and posts, in turn."""
    paths = [f"/api/users/{name}" for _, name in targets.users[:500]] + [f"/api/posts/{i}" for i in targets.post_ids[:500]]
    random.Random(3).shuffle(paths)
    return _get("other reads", paths)


# --- one size ----------------------------------------------------------------------------------


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                fields[key] = int(value.split()[0])
    return {"rss_kib": fields.get("VmRSS", 0), "peak_rss_kib": fields.get("VmHWM", 0)}


def measure(node: LocalNode, scenario: Scenario, args, workdir: Path) -> dict:
    options = {"connections": args.connections, "threads": args.threads, "workdir": workdir}
    if args.warmup > 0:
        run_wrk(args.wrk, node.url, scenario, seconds=args.warmup, **options)
    before = cpu_seconds(node.process.pid)
    result = run_wrk(args.wrk, node.url, scenario, seconds=args.seconds, **options)
    cpu = cpu_seconds(node.process.pid) - before
    return {**asdict(result), "node_cpu_ms_per_request": round(1000 * cpu / max(result.requests, 1), 3)}


def search_beside(node: LocalNode, targets: Targets, args, workdir: Path) -> dict:
    """p99 of other reads from one client alone, then with searches from two more beside them.

    One client keeps the node below saturation, so the difference is what the searches do to other
    requests (a search on the event loop blocked them all), not the node's CPU running out.
    """
    other = others(targets)
    searching = _search("search beside", "python")
    options = {"threads": 1, "workdir": workdir}
    run_wrk(args.wrk, node.url, other, seconds=max(args.warmup, 1), connections=BESIDE_OTHER_CLIENTS, **options)
    alone = run_wrk(args.wrk, node.url, other, seconds=args.seconds, connections=BESIDE_OTHER_CLIENTS, **options)
    beside: dict[str, Result] = {}

    def load_search() -> None:
        beside["search"] = run_wrk(
            args.wrk, node.url, searching, seconds=args.seconds + 2, connections=BESIDE_SEARCH_CLIENTS, **options
        )

    thread = threading.Thread(target=load_search)
    thread.start()
    time.sleep(1)  # the search load is running before the measured reads start (a head start, not a wait for a condition)
    with_search = run_wrk(args.wrk, node.url, other, seconds=args.seconds, connections=BESIDE_OTHER_CLIENTS, **options)
    thread.join()
    return {
        "alone": asdict(alone),
        "with_search": asdict(with_search),
        "search": asdict(beside["search"]),
        "p99_added_ms": round(with_search.p99_ms - alone.p99_ms, 2),
        "p50_added_ms": round(with_search.p50_ms - alone.p50_ms, 2),
    }


def run_size(built: Built, args, scratch: Path) -> dict:
    workdir = scratch / built.label
    data = workdir / "data"
    data.mkdir(parents=True)
    started = time.monotonic()
    shutil.copyfile(built.path / DB_FILENAME, data / DB_FILENAME)
    copy_seconds = time.monotonic() - started
    targets = choose(data / DB_FILENAME, random.Random(11))
    secret = secrets.token_hex(32)
    started = time.monotonic()
    node = LocalNode(workdir, host=args.host, JWT_SECRET=secret, LOG_LEVEL="warning", PEERS=args.host, **UNLIMITED_WRITES)
    try:
        node.wait_ready(timeout=600)
        ready_seconds = time.monotonic() - started
        print(
            f"{built.label}: {(data / DB_FILENAME).stat().st_size / 1e9:.2f} GB, node ready in {ready_seconds:.1f} s; "
            f"feed of member {targets.feed_member[0]} (followees wrote {targets.feed_followees_posts:,} posts), "
            f"{targets.prolific_author} wrote {targets.author_posts:,}, {targets.followed} has {targets.followers:,} followers",
            flush=True,
        )
        results = {}
        for scenario in scenarios(targets, Tokens(secret, ttl=86400)):
            if built.label == "empty" and scenario.name != "create post":
                continue
            results[scenario.name] = measure(node, scenario, args, workdir)
            r = results[scenario.name]
            print(
                f"  {scenario.name:<22} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
                f"{r['requests_per_second']:8.0f} req/s  node {r['node_cpu_ms_per_request']:.2f} ms CPU/req  "
                f"errors {r['errors'] + r['non_2xx']}",
                flush=True,
            )
        beside = search_beside(node, targets, args, workdir) if built.label != "empty" else None
        if beside:
            print(
                f"  other reads p99 {beside['alone']['p99_ms']:.2f} ms alone, {beside['with_search']['p99_ms']:.2f} ms beside "
                f"a search load ({beside['search']['requests_per_second']:.0f} searches/s): +{beside['p99_added_ms']:.2f} ms",
                flush=True,
            )
        memory = rss_kib(node.process.pid)
    finally:
        node.stop()
    store = store_costs(data / DB_FILENAME, targets) if built.label != "empty" else None
    if store:
        print(
            "  store alone, CPU ms p50/p99: "
            + ", ".join(f"{name} {r['cpu_ms_p50']:.2f}/{r['cpu_ms_p99']:.2f}" for name, r in store.items()),
            flush=True,
        )
    return {
        "label": built.label,
        "members": built.counts["users"],
        "counts": built.counts,
        "build_seconds": built.build_seconds,
        "database_bytes": (data / DB_FILENAME).stat().st_size,
        "copy_seconds": round(copy_seconds, 1),
        "ready_seconds": round(ready_seconds, 2),
        **memory,
        "targets": {k: v for k, v in asdict(targets).items() if k not in ("users", "post_ids")},
        "scenarios": results,
        "search_beside": beside,
        "store_alone": store,
    }


# --- the store alone ---------------------------------------------------------------------------

STORE_CALLS = 200  # calls of each read, in turn with the others, in the store-alone part


def store_costs(db_path: Path, targets: Targets, calls: int = STORE_CALLS) -> dict:
    """CPU time of each read's store call in process (no HTTP, no other client): the query's own cost,
    which a busy machine barely moves, where wall-clock latencies under wrk measure its queue."""
    from talentnest.store.posts import PostRepo
    from talentnest.store.schema import product_database
    from talentnest.store.users import UserRepo

    db = product_database(db_path.parent).open()
    users, posts = UserRepo(db), PostRepo(db)
    page = 21  # the services ask for one row more than a page, to know whether another follows
    ids = {name: uid for uid, name in targets.users}
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        named = dict(
            conn.execute(
                "SELECT username, id FROM users WHERE username IN (?, ?)", (targets.prolific_author, targets.followed)
            ).fetchall()
        )
    after = None
    if targets.followers_cursor:
        padded = targets.followers_cursor + "=" * (-len(targets.followers_cursor) % 4)
        _, created_at, follower = json.loads(base64.urlsafe_b64decode(padded))
        after = (created_at, follower)
    member_ids = list(ids.values())
    reads = {
        "search common skill": lambda n: users.search(["python"], limit=page, after=None),
        "search rare skill": lambda n: users.search([targets.rare_skill], limit=page, after=None),
        "search rare name": lambda n: users.search([targets.rare_name], limit=page, after=None),
        "search accented name": lambda n: users.search(["élodie"], limit=page, after=None),
        "search prefix": lambda n: users.search(["jos"], limit=page, after=None),
        "search two words": lambda n: users.search(targets.two_words.split(), limit=page, after=None),
        "feed": lambda n: posts.feed(targets.feed_member[0], limit=page, before_id=None),
        "posts by author": lambda n: posts.list(
            author_id=named[targets.prolific_author], viewer_id=None, limit=page, before_id=None
        ),
        "followers deep": lambda n: users.followers(named[targets.followed], limit=page, after=after),
        "get profile": lambda n: users.by_id(member_ids[n * 7919 % len(member_ids)]),
        "get post": lambda n: posts.by_id(targets.post_ids[n * 7919 % len(targets.post_ids)], None),
    }
    if not targets.post_ids:
        for name in ("feed", "posts by author", "followers deep", "get post"):
            reads.pop(name)
    samples: dict[str, list[float]] = {name: [] for name in reads}
    try:
        for n in range(calls):  # in turn, so that no read has the cache to itself
            for name, read in reads.items():
                started = time.thread_time()
                read(n)
                samples[name].append((time.thread_time() - started) * 1e3)
    finally:
        db.shutdown()
    found = {}
    for name, values in samples.items():
        values.sort()
        found[name] = {
            "cpu_ms_p50": round(statistics.median(values), 3),
            "cpu_ms_p99": round(values[min(len(values) - 1, int(0.99 * len(values)))], 3),
            "calls": len(values),
        }
    return found


# --- the thread hop ----------------------------------------------------------------------------


def thread_hop(db_path: Path, calls: int) -> dict:
    """CPU per read: ``by_id`` inline on the loop, and through ``Database.read`` (a reader thread)."""
    from talentnest.store.schema import product_database
    from talentnest.store.users import UserRepo

    with tempfile.TemporaryDirectory() as scratch:
        shutil.copyfile(db_path, Path(scratch) / DB_FILENAME)
        db = product_database(Path(scratch)).open()
        users = UserRepo(db)

        async def inline() -> None:
            for n in range(calls):
                users.by_id(n % 900 + 1)

        async def hop() -> None:
            for n in range(calls):
                await db.read(users.by_id, n % 900 + 1)

        async def empty_hop() -> None:
            for _ in range(calls):
                await db.read(int)

        figures = {}
        for name, body in (("inline", inline), ("reader thread", hop), ("empty read", empty_hop)):
            runs = []
            for _ in range(3):
                cpu, wall = time.process_time(), time.perf_counter()
                asyncio.run(body())
                runs.append(((time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6))
            figures[name] = {
                "cpu_us": round(statistics.median(r[0] for r in runs), 1),
                "wall_us": round(statistics.median(r[1] for r in runs), 1),
            }
        db.shutdown()
    figures["hop_cpu_us"] = round(figures["reader thread"]["cpu_us"] - figures["inline"]["cpu_us"], 1)
    return figures


# --- the report --------------------------------------------------------------------------------


def verdicts(sizes: list[dict]) -> dict:
    by_label = {s["label"]: s for s in sizes}
    largest = next((by_label[label] for label in ("1M", "100k", "1k") if label in by_label), None)
    smallest = by_label.get("1k")
    if largest is None:
        return {}
    found = {"size": largest["label"]}
    scenarios = largest["scenarios"]
    found["selective_search_p99_ms"] = max(scenarios[n]["p99_ms"] for n in SELECTIVE_SEARCHES if n in scenarios)
    found["broad_search_p99_ms"] = max(scenarios[n]["p99_ms"] for n in BROAD_SEARCHES if n in scenarios)
    other_reads = [n for n, r in scenarios.items() if r["kind"] == "read" and not n.startswith("search")]
    found["other_read_p99_ms"] = max(scenarios[n]["p99_ms"] for n in other_reads)
    if smallest is not None:
        growth = {
            n: round(r["p50_ms"] / smallest["scenarios"][n]["p50_ms"], 2)
            for n, r in scenarios.items()
            if r["kind"] == "read" and n in smallest["scenarios"] and smallest["scenarios"][n]["p50_ms"] > 0
        }
        found["median_growth"] = max(growth.values()) if growth else None
        found["median_growth_by_read"] = growth
    if "empty" in by_label and "create post" in scenarios:
        empty = by_label["empty"]["scenarios"]["create post"]["requests_per_second"]
        found["post_creation_vs_empty"] = round(scenarios["create post"]["requests_per_second"] / empty, 2)
    if largest.get("search_beside"):
        found["search_beside_p99_added_ms"] = largest["search_beside"]["p99_added_ms"]
    met = {}
    for key, limit in TARGETS.items():
        value = found.get(key)
        if value is not None:
            met[key] = value >= limit if key == "post_creation_vs_empty" else value < limit
    return {**found, "met": met}


def table(sizes: list[dict]) -> str:
    measured = [s for s in sizes if s["label"] != "empty"]
    names = list(dict.fromkeys(n for s in measured for n in s["scenarios"]))
    head = f"{'scenario':<22}" + "".join(f" | {s['label'] + ' p50/p99 ms, req/s':^30}" for s in measured) + " | p50 growth"
    lines = [head, "-" * len(head)]
    base = measured[0]["scenarios"] if measured else {}
    for name in names:
        cells = []
        for s in measured:
            r = s["scenarios"].get(name)
            cells.append(f"{r['p50_ms']:7.2f} / {r['p99_ms']:7.2f}, {r['requests_per_second']:6.0f}" if r else " " * 30)
        last = measured[-1]["scenarios"].get(name)
        growth = f"x{last['p50_ms'] / base[name]['p50_ms']:.2f}" if last and name in base and base[name]["p50_ms"] else ""
        lines.append(f"{name:<22}" + "".join(f" | {c:^30}" for c in cells) + f" | {growth}")
    for s in sizes:
        lines.append(
            f"{s['label']}: {s['members']:,} members, {s['counts']['posts']:,} posts, {s['database_bytes'] / 1e9:.2f} GB, "
            f"ready in {s['ready_seconds']} s, RSS {s['rss_kib'] / 1024:.0f} MiB (peak {s['peak_rss_kib'] / 1024:.0f} MiB)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="empty,1k,100k,1M", help=f"comma-separated, of {', '.join(SIZES)} (default: all)")
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA, help=f"where built networks are cached (default {DEFAULT_DATA})"
    )
    parser.add_argument("--seed", type=int, default=1, help="the generator's seed (default 1)")
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per scenario (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each scenario (default 2)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--hop-calls", type=int, default=20_000, help="reads per run of the thread-hop measure (default 20000)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address of the node (default 127.0.0.1)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON results (default {DEFAULT_OUTPUT.relative_to(ROOT)})"
    )
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help="the wrk binary")
    parser.add_argument("--keep", action="store_true", help="keep the copies the nodes ran on (and their logs)")
    parser.add_argument(
        "--store-only",
        action="store_true",
        help=f"only the store-alone part (no node, no wrk), written to {STORE_OUTPUT.relative_to(ROOT)} unless --output",
    )
    args = parser.parse_args(argv)
    labels = [label.strip() for label in args.sizes.split(",") if label.strip()]
    unknown = [label for label in labels if label not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose among {list(SIZES)}")
    if not Path(args.wrk).exists():
        parser.error(f"wrk not found at {args.wrk}; install it (apt-get install wrk) or pass --wrk")
    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.x.x.x)")

    load_before = load()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.store_only:
        return store_only(labels, args, load_before)
    scratch = Path(tempfile.mkdtemp(prefix="talentnest-scale-", dir=args.data_dir))
    sizes = []
    try:
        for label in labels:
            built = build(label, args.data_dir, args.seed)
            sizes.append(run_size(built, args, scratch))
            if not args.keep:
                shutil.rmtree(scratch / label, ignore_errors=True)
        hop = thread_hop(build("1k", args.data_dir, args.seed).path / DB_FILENAME, args.hop_calls)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(table(sizes))
    print(
        f"\nthread hop: a read inline {hop['inline']['cpu_us']} us CPU, "
        f"through a reader thread {hop['reader thread']['cpu_us']} us (+{hop['hop_cpu_us']} us), "
        f"an empty read {hop['empty read']['cpu_us']} us"
    )
    found = verdicts(sizes)
    for key, ok in found.get("met", {}).items():
        relation = ">=" if key == "post_creation_vs_empty" else "<"
        print(f"  {key}: {found[key]} (target {relation} {TARGETS[key]}): {'met' if ok else 'MISSED'}")
    report = {
        "benchmark": "scale",
        "timestamp": timestamp(),
        "machine": machine(load_before),
        "config": {
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "seed": args.seed,
            "search_beside_clients": {"other reads": BESIDE_OTHER_CLIENTS, "searches": BESIDE_SEARCH_CLIENTS},
            "transport": "HTTP/1.1 keep-alive over loopback; wrk and the node share the machine",
        },
        "sizes": sizes,
        "thread_hop": hop,
        "targets": TARGETS,
        "verdicts": found,
    }
    write_report(args.output, report)
    return 0


def store_only(labels: list[str], args, load_before: float) -> int:
    """The store-alone part at each size, on a copy of each network (opening it may migrate it)."""
    sizes = []
    for label in [label for label in labels if label != "empty"]:
        built = build(label, args.data_dir, args.seed)
        with tempfile.TemporaryDirectory(prefix="talentnest-scale-", dir=args.data_dir) as scratch:
            copy = Path(scratch) / DB_FILENAME
            shutil.copyfile(built.path / DB_FILENAME, copy)
            targets = choose(copy, random.Random(11))
            found = store_costs(copy, targets)
        print(f"{label}: " + ", ".join(f"{n} {r['cpu_ms_p50']:.2f}/{r['cpu_ms_p99']:.2f}" for n, r in found.items()), flush=True)
        sizes.append({"label": label, "members": built.counts["users"], "counts": built.counts, "store_alone": found})
    base = sizes[0]["store_alone"] if sizes else {}
    growth = {n: round(r["cpu_ms_p50"] / base[n]["cpu_ms_p50"], 2) for n, r in sizes[-1]["store_alone"].items() if n in base}
    print("p50 growth, smallest to largest: " + ", ".join(f"{n} x{g}" for n, g in growth.items()))
    output = args.output if args.output != DEFAULT_OUTPUT else STORE_OUTPUT
    report = {
        "benchmark": "scale, store alone",
        "timestamp": timestamp(),
        "machine": machine(load_before),
        "config": {"calls": STORE_CALLS, "page": 21, "measure": "thread CPU time of each store call, in process"},
        "sizes": sizes,
        "p50_growth": growth,
    }
    write_report(output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
