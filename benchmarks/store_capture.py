"""What change capture costs, how fast a follower applies, and what a snapshot of ~100 MB takes.

    python benchmarks/store_capture.py            # full run (about a minute or two)
    python benchmarks/store_capture.py --quick    # small sizes, for a smoke check

Write throughput is measured on two stores side by side in one process, capture on and capture
off, in interleaved rounds (so a noisy neighbour hits both alike). Each is reported as wall-clock
throughput (median and best round) and as CPU time of the writing thread per transaction (median
and minimum), since on a shared machine the wall clock mostly measures the neighbours. "capture
adds" is the extra time per transaction, in percent of the time without capture.
Results go to benchmarks/results/store_capture.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from talentnest.services import PostService
from talentnest.store import Database, LogEntry
from talentnest.store.posts import PostRepo
from talentnest.store.schema import product_database
from talentnest.store.snapshot import install, prepare_snapshot, take_snapshot
from talentnest.store.users import UserRepo

RESULTS = Path(__file__).resolve().parent / "results" / "store_capture.json"
VOCABULARY = (
    "python sql distributed systems leader follower replication snapshot talent network engineer design product data "
    "platform backend cluster latency throughput resilient team hiring remote senior skills mentor open source "
    "kubernetes docker testing quality review architecture event stream storage"
)
WORDS = VOCABULARY.split()


def open_store(root: Path, name: str, *, capture: bool) -> tuple[Database, UserRepo, PostRepo, PostService]:
    db = product_database(root / name, capture=capture)
    users, posts = UserRepo(db), PostRepo(db)
    db.open()
    return db, users, posts, PostService(db, posts, users)


def add_user(db: Database, users: UserRepo, name: str) -> int:
    with db.write() as conn:
        return users.insert(
            conn, username=name, email=f"{name}@example.org", name=name, password_hash="x", token_key=name, now="t"
        )


# --- write throughput --------------------------------------------------------------------------


def measure_writes(root: Path, *, rounds: int, per_round: int) -> dict:
    """One-row transactions per second, capture on vs off, two workloads."""
    stores = {capture: open_store(root, f"writes-{'on' if capture else 'off'}", capture=capture) for capture in (True, False)}
    authors = {capture: add_user(s[0], s[1], "writer") for capture, s in stores.items()}
    workloads = {
        # The store's single write path with the product's own SQL: the worst case for capture.
        "repo_insert": lambda s, a, n: _repo_insert(s, a, n),
        # What an API write does below HTTP: validate, write, read back and render.
        "service_create": lambda s, a, n: s[3].create(a, f"post number {n} about {WORDS[n % len(WORDS)]}"),
    }
    results = {}
    for name, work in workloads.items():
        wall: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for round_no in range(rounds):
            order = (True, False) if round_no % 2 == 0 else (False, True)
            for capture in order:
                store, author = stores[capture], authors[capture]
                started, cpu_started = time.perf_counter(), time.thread_time()
                for n in range(per_round):
                    work(store, author, n)
                wall[capture].append(per_round / (time.perf_counter() - started))
                cpu[capture].append((time.thread_time() - cpu_started) / per_round * 1e6)
        results[name] = _summarise(wall, cpu)
    for store in stores.values():
        store[0].close()
    return results


async def _asgi_post(app, path: str, body: dict, token: str | None = None) -> tuple[int, bytes]:
    """One request straight into the ASGI app: no server, no client library in between."""
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 3000),
    }
    sent = False
    status, chunks = 0, []

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def measure_api_writes(root: Path, *, rounds: int, per_round: int) -> dict:
    """POST /api/posts through the whole app in process (routing, validation, token check, services,
    store, JSON), capture on vs off: what capture costs an API write, without a network in between."""
    import asyncio

    from talentnest import app as app_module
    from talentnest.config import Settings

    async def run() -> dict:
        apps, tokens, lifespans = {}, {}, []
        for capture in (True, False):
            settings = Settings(
                jwt_secret="b" * 32,
                data_dir=root / f"api-{'on' if capture else 'off'}",
                host="127.0.0.1",
                argon2_time_cost=1,
                argon2_memory_kib=1024,
                argon2_parallelism=1,
            )
            original = app_module.build_database
            app_module.build_database = lambda s, capture=capture: product_database(s.data_dir, capture=capture)
            try:
                app = app_module.create_app(settings)
            finally:
                app_module.build_database = original
            lifespan = app.router.lifespan_context(app)
            await lifespan.__aenter__()
            lifespans.append(lifespan)
            status, body = await _asgi_post(
                app, "/api/auth/signup", {"name": "W", "username": "writer", "email": "w@example.org", "password": "pass123"}
            )
            assert status == 201, body
            apps[capture], tokens[capture] = app, json.loads(body)["token"]
        wall: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for round_no in range(rounds):
            for capture in (True, False) if round_no % 2 == 0 else (False, True):
                started, cpu_started = time.perf_counter(), time.thread_time()
                for n in range(per_round):
                    status, body = await _asgi_post(apps[capture], "/api/posts", {"content": f"post number {n}"}, tokens[capture])
                    assert status == 201, body
                wall[capture].append(per_round / (time.perf_counter() - started))
                cpu[capture].append((time.thread_time() - cpu_started) / per_round * 1e6)
        for lifespan in lifespans:
            await lifespan.__aexit__(None, None, None)
        return {"wall": wall, "cpu": cpu}

    samples = asyncio.run(run())
    return _summarise(samples["wall"], samples["cpu"])


def _summarise(wall: dict[bool, list[float]], cpu: dict[bool, list[float]]) -> dict:
    """Throughput and CPU per transaction, off vs on, and what capture adds in percent."""
    row = {
        "tx_per_s_median": _off_on(wall, statistics.median, 0),
        "tx_per_s_best": _off_on(wall, max, 0),
        "cpu_us_per_tx_median": _off_on(cpu, statistics.median, 1),
        "cpu_us_per_tx_min": _off_on(cpu, min, 1),
    }
    row["on_over_off_median"] = round(row["tx_per_s_median"]["on"] / row["tx_per_s_median"]["off"], 3)
    row["capture_cost_percent"] = {
        "wall_median": _cost(row["tx_per_s_median"]["off"] / row["tx_per_s_median"]["on"]),
        "wall_best": _cost(row["tx_per_s_best"]["off"] / row["tx_per_s_best"]["on"]),
        "cpu_median": _cost(row["cpu_us_per_tx_median"]["on"] / row["cpu_us_per_tx_median"]["off"]),
        "cpu_min": _cost(row["cpu_us_per_tx_min"]["on"] / row["cpu_us_per_tx_min"]["off"]),
    }
    return row


def _off_on(samples: dict[bool, list[float]], pick, digits: int) -> dict:
    return {"off": round(pick(samples[False]), digits or None), "on": round(pick(samples[True]), digits or None)}


def _cost(slowdown: float) -> float:
    """Extra time per transaction that capture adds, in percent of the time without it."""
    return round((slowdown - 1) * 100, 1)


def _repo_insert(store, author: int, n: int) -> None:
    db, _, posts, _ = store
    with db.write() as conn:
        posts.insert(conn, author, f"post number {n} about {WORDS[n % len(WORDS)]}", "2026-01-01T00:00:00.000Z")


# --- apply throughput --------------------------------------------------------------------------


def measure_apply(root: Path, *, entries: int, batch_sizes: list[int], repeats: int) -> dict:
    """Entries per second a follower applies, for a log of single-post writes and of mixed writes."""
    leader = open_store(root, "apply-leader", capture=True)
    db, users, _, service = leader
    authors = [add_user(db, users, f"author{i}") for i in range(20)]
    rng = random.Random(7)
    post_ids: list[int] = []
    while db.last_lsn < entries:
        author = rng.choice(authors)
        roll = rng.random()
        if roll < 0.6 or not post_ids:
            post_ids.append(service.create(author, " ".join(rng.choices(WORDS, k=20)))["id"])
        elif roll < 0.85:
            service.like(author, rng.choice(post_ids))
        else:
            service.comment(author, rng.choice(post_ids), " ".join(rng.choices(WORDS, k=8)))
    log = db.entries_after(0, max_entries=10**9, max_bytes=10**12)
    wire = [json.loads(e.to_json()) for e in log]
    db.close()
    results = {"entries": len(log), "mix": "60% posts, 25% likes, 15% comments"}
    for size in batch_sizes:
        rates = []
        for attempt in range(repeats):
            follower = product_database(root / f"apply-{size}-{attempt}").open()
            batches = [[LogEntry.from_dict(item) for item in wire[i : i + size]] for i in range(0, len(wire), size)]
            started = time.perf_counter()
            for batch in batches:
                follower.apply(batch)
            rates.append(len(log) / (time.perf_counter() - started))
            assert follower.last_lsn == log[-1].lsn
            follower.close()
        results[f"batch_{size}_entries_per_s"] = round(statistics.median(rates))
    return results


# --- snapshots ---------------------------------------------------------------------------------


def build_large_store(root: Path, target_bytes: int) -> Database:
    """A store of about ``target_bytes`` with realistic rows and a log of its last writes."""
    db, users, _, service = open_store(root, "large", capture=True)
    rng = random.Random(11)
    db.capture = False  # bulk load without a log, then write the tail with capture on
    with db.write() as conn:
        user_ids = [
            users.insert(
                conn,
                username=f"member{i}",
                email=f"member{i}@example.org",
                name=f"Member {i}",
                password_hash="x" * 90,
                token_key=f"k{i}",
                now="t",
            )
            for i in range(5000)
        ]
    while db.path.stat().st_size < target_bytes:
        with db.write() as conn:
            rows = [
                (rng.choice(user_ids), " ".join(rng.choices(WORDS, k=rng.randint(40, 140))), "2026-01-01T00:00:00.000Z")
                for _ in range(5000)
            ]
            conn.executemany(
                "INSERT INTO posts(author_id, content, created_at, updated_at) VALUES (?, ?, ?, ?)", [(*r, r[2]) for r in rows]
            )
            top = conn.execute("SELECT MAX(id) FROM posts").fetchone()[0]
            conn.executemany(
                "INSERT OR IGNORE INTO likes(post_id, user_id, created_at) VALUES (?, ?, 't')",
                [(rng.randint(1, top), rng.choice(user_ids)) for _ in range(5000)],
            )
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.capture = True
    for n in range(2000):
        service.create(rng.choice(user_ids), f"recent post {n}")
    return db


def measure_snapshot(root: Path, target_bytes: int) -> dict:
    db = build_large_store(root, target_bytes)
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db_bytes = db.path.stat().st_size
    results: dict = {"database_bytes": db_bytes, "log_entries": db.last_lsn - db.first_lsn + 1}
    for compression in ("zstd", "gzip"):
        dest = root / f"snapshot.{compression}"
        started = time.perf_counter()
        info = take_snapshot(db.path, dest, compression=compression)
        take_s = time.perf_counter() - started

        node = product_database(root / f"node-{compression}").open()
        started = time.perf_counter()
        prepared = prepare_snapshot(
            node.data_dir, dest, compression=compression, expected_sha256=info.sha256, max_schema_version=node.schema_version
        )
        prepare_s = time.perf_counter() - started
        started = time.perf_counter()
        install(node, prepared)
        install_s = time.perf_counter() - started
        assert node.last_lsn == db.last_lsn
        started = time.perf_counter()
        same = node.checksum() == db.checksum()
        checksum_s = (time.perf_counter() - started) / 2
        assert same, "the installed snapshot differs from its source"
        node.close()
        shutil.rmtree(node.data_dir)
        dest.unlink()
        results[compression] = {
            "raw_bytes": info.raw_bytes,
            "compressed_bytes": info.compressed_bytes,
            "ratio": round(info.raw_bytes / info.compressed_bytes, 2),
            "take_s": round(take_s, 2),
            "prepare_s": round(prepare_s, 2),
            "install_s": round(install_s, 3),
            "checksum_s": round(checksum_s, 2),
        }
    db.close()
    return results


# --- report ------------------------------------------------------------------------------------


def print_report(results: dict) -> None:
    print(f"\nTalent Nest store benchmark ({results['machine']['cpus']} CPUs, SQLite {results['machine']['sqlite']})")
    print("\nWrite throughput, one-row transactions, capture off vs on (interleaved rounds)")
    print(f"  {'workload':<16}{'measure':<22}{'off':>10}{'on':>10}{'capture adds':>14}")
    for name, row in results["writes"].items():
        cost = row["capture_cost_percent"]
        lines = [
            ("tx/s, median round", row["tx_per_s_median"], cost["wall_median"]),
            ("tx/s, best round", row["tx_per_s_best"], cost["wall_best"]),
            ("CPU µs/tx, median", row["cpu_us_per_tx_median"], cost["cpu_median"]),
            ("CPU µs/tx, min", row["cpu_us_per_tx_min"], cost["cpu_min"]),
        ]
        for index, (label, values, percent) in enumerate(lines):
            print(f"  {name if index == 0 else '':<16}{label:<22}{values['off']:>10}{values['on']:>10}{percent:>13.1f}%")
    apply = results["apply"]
    print(f"\nApply throughput ({apply['entries']} entries: {apply['mix']})")
    for key, value in apply.items():
        if key.startswith("batch_"):
            print(f"  batches of {key.split('_')[1]:>5}: {value:>8} entries/s")
    snap = results.get("snapshot")
    if snap:
        print(f"\nSnapshot of a {snap['database_bytes'] / 1e6:.0f} MB database ({snap['log_entries']} log entries)")
        print(f"  {'':<6}{'compressed':>12}{'ratio':>7}{'take':>8}{'prepare':>9}{'install':>9}{'checksum':>10}")
        for compression in ("zstd", "gzip"):
            row = snap[compression]
            print(
                f"  {compression:<6}{row['compressed_bytes'] / 1e6:>9.1f} MB{row['ratio']:>7.2f}{row['take_s']:>7.2f}s"
                f"{row['prepare_s']:>8.2f}s{row['install_s']:>8.3f}s{row['checksum_s']:>9.2f}s"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the databases (default: a temp dir)")
    parser.add_argument("--snapshot-mb", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rounds, per_round, entries, snapshot_mb = (4, 300, 2000, 5) if args.quick else (30, 500, 20000, args.snapshot_mb)

    root = Path(tempfile.mkdtemp(prefix="tn-bench-", dir=args.dir))
    try:
        results = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "sqlite": sqlite3.sqlite_version,
                "platform": platform.platform(),
                "data_dir_filesystem": str(root),
            },
            "parameters": {"rounds": rounds, "writes_per_round": per_round, "apply_entries": entries, "snapshot_mb": snapshot_mb},
            "writes": {
                **measure_writes(root, rounds=rounds, per_round=per_round),
                "api_post": measure_api_writes(root, rounds=max(4, rounds // 3), per_round=per_round // 2),
            },
            "apply": measure_apply(root, entries=entries, batch_sizes=[100, 1000], repeats=1 if args.quick else 3),
            "snapshot": measure_snapshot(root, snapshot_mb * 1024 * 1024),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_report(results)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
