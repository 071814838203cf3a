#!/usr/bin/env python3
"""What each layer of a node costs per request, measured in process as CPU time: by taking layers away, and alone.

No server, no sockets, no load generator: requests go straight into the ASGI app of a real node
(``create_app``, its lifespan started: a single node that leads), and the CPU time of this thread
(``time.thread_time``) per request is what is measured, a figure that other work on the machine
hardly moves. Three parts:

1. **Ablation**: ``GET /api/posts/{id}``, ``POST /api/posts`` and a signed ``/cluster/heartbeat``
   through the whole app, then through apps built without ``metrics.HttpMetrics``, without
   ``limits.BodyLimit``, without the ``cluster.middleware``, without all three, the router alone
   (FastAPI's own middleware skipped too) and the bare app of peers.py; and the whole app with each
   candidate of ``_variants.py`` switched on during its own batches only.
2. **Pieces alone**: the token's JWT check and account query, the product's SQL and render, the
   write transaction, ``response_model`` validation + serialisation, ``json``/``orjson`` of the
   answer, matching the route among the app's routes, the ``is_write`` classifier, a thread hop.
3. **The replicate path** on a follower: a leader's batch of real log entries (1 and 100) parsed
   (``wire.decode`` + ``ReplicateRequest.parse``, whose ``LogEntry.from_dict`` re-dumps each
   change) and applied (``Database.apply``), with orjson instead.

Configurations take turns in many short batches (the order rotated), and the median of the
batches is reported in microseconds per request (the 10th percentile is in the JSON too).
Prints tables and writes ``benchmarks/results/layer_costs.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _cluster import RESULTS, load, machine, percentile, timestamp, write_report  # also puts src/ on sys.path

DEFAULT_OUTPUT = RESULTS / "layer_costs.json"
HERE = Path(__file__).resolve().parent
CANDIDATES = [
    "orjson-http",
    "no-response-model",
    "orjson-http,no-response-model",
    "account-cache",
    "token-cache",
    "orjson-wire",
    "cluster-fast-path",
    "orjson-http,no-response-model,account-cache,token-cache,orjson-wire,cluster-fast-path",
]


# --- requests straight into the ASGI app --------------------------------------------------------


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 3000),
    }


async def call(
    app, method: str, path: str, body: bytes = b"", token: str | None = None, extra: list[tuple[bytes, bytes]] = ()
) -> tuple[int, bytes]:
    headers = [(b"host", b"127.0.0.1:3000"), *extra]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    sent, status, chunks = False, 0, []

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(_scope(method, path, headers), receive, send)
    return status, b"".join(chunks)


def build_app(root: Path, name: str, *, drop: tuple[str, ...] = ()):
    """A node's app on its own data directory, without the middleware classes named in ``drop``."""
    from talentnest import app as app_module
    from talentnest.config import Settings

    settings = Settings(
        jwt_secret="k" * 32,
        data_dir=root / name,
        host="127.0.0.1",
        log_level="warning",
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        # Off (0): every batch writes as one account, far past the 300 writes a minute a node allows it.
        write_limit_per_account=0,
        write_limit_per_address=0,
    )
    app = app_module.create_app(settings)
    app.user_middleware = [m for m in app.user_middleware if m.cls.__name__ not in drop]
    return app


async def seeded(app, posts: int = 200) -> tuple[str, list[int]]:
    status, body = await call(
        app,
        "POST",
        "/api/auth/signup",
        json.dumps({"name": "L", "username": "layers", "email": "l@example.org", "password": "pass123"}).encode(),
    )
    assert status == 201, body
    token = json.loads(body)["token"]
    ids = []
    for i in range(posts):
        status, body = await call(
            app, "POST", "/api/posts", json.dumps({"content": f"seed post {i} " + "y" * 80}).encode(), token
        )
        assert status == 201, body
        ids.append(json.loads(body)["id"])
    return token, ids


ABLATIONS: dict[str, tuple[str, ...]] = {
    "whole app": (),
    "without metrics.HttpMetrics": ("HttpMetrics",),
    "without limits.BodyLimit": ("BodyLimit",),
    "without cluster middleware": ("ClusterMiddleware",),
    "without all three": ("HttpMetrics", "BodyLimit", "ClusterMiddleware"),
}


async def measure_app(app, token: str, ids: list[int], per_round: int, clock=time.thread_time) -> dict[str, float]:
    """CPU microseconds per GET and per POST through ``app``: of this thread by default, or of the whole
    process with ``clock=time.process_time`` (the reader threads' share of a read included)."""
    out = {}
    started = clock()
    for n in range(per_round):
        status, body = await call(app, "GET", f"/api/posts/{ids[n % len(ids)]}")
        assert status == 200, body
    out["GET /api/posts/{id}"] = (clock() - started) / per_round * 1e6
    started = clock()
    for n in range(per_round):
        status, body = await call(app, "POST", "/api/posts", b'{"content":"layer cost post %d"}' % n, token)
        assert status == 201, body
    out["POST /api/posts"] = (clock() - started) / per_round * 1e6
    node = getattr(getattr(app, "state", None), "node", None)
    if node is not None:
        # A signed node-to-node call with a small JSON body, as every replicate call is: what the
        # stack costs /cluster/* (the handler itself, membership.heard, is a few microseconds).
        from talentnest.cluster.auth import HEADER, sign

        body = node.self_info().to_bytes()
        started = clock()
        for _ in range(per_round):
            signature = sign(node.key, "POST", "/cluster/heartbeat", body).encode()
            status, answer = await call(app, "POST", "/cluster/heartbeat", body, extra=[(HEADER.lower().encode(), signature)])
            assert status == 200, answer
        out["POST /cluster/heartbeat (signed)"] = (clock() - started) / per_round * 1e6
    return out


async def ablation(root: Path, rounds: int, per_round: int) -> dict:
    """Every configuration in turn, in many short batches (the order rotated): per configuration and
    request, the median and the 10th percentile of the batches' CPU microseconds per request."""
    sys.path.insert(0, str(HERE))
    import _variants

    apps, lifespans, seeds, patches = {}, [], {}, {}

    async def start(name: str, app) -> None:
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        lifespans.append(lifespan)
        apps[name], seeds[name], patches[name] = app, await seeded(app), []

    for number, (name, drop) in enumerate(ABLATIONS.items()):
        await start(name, build_app(root, f"ablation-{number}", drop=drop))
    whole = apps["whole app"]
    # The router alone: the whole app's routes without any middleware, FastAPI's own included (but for
    # the exit stack its dependencies need).
    from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware

    router = AsyncExitStackMiddleware(whole.router)

    async def router_alone(scope, receive, send):
        scope["app"] = whole
        await router(scope, receive, send)

    # The bare app of peers.py, over the whole app's file: the same rows, the same token secret.
    os.environ.update(BARE_DB=str(root / "ablation-0" / "talentnest.db"), BARE_SECRET="k" * 32)
    import _bare

    for name, app in (("router alone (no middleware at all)", router_alone), ("bare app (_bare.py)", _bare.app)):
        apps[name], seeds[name], patches[name] = app, seeds["whole app"], []
    # The candidates: the whole app with each switched on during its own batches only.
    have_orjson = importlib.util.find_spec("orjson") is not None
    for variants in CANDIDATES:
        names = variants.split(",")
        if "orjson" in variants and not have_orjson:
            print(f"skipped {variants}: needs orjson (pip install orjson)")
            continue
        label = f"+ {variants}"
        if "cluster-fast-path" in names:  # a change of how the app is built: an app of its own
            built = _variants.switch_on(_variants.patch_of("cluster-fast-path"))
            try:
                await start(label, build_app(root, f"candidate-{len(apps)}"))
            finally:
                _variants.switch_off(built)
            names.remove("cluster-fast-path")
        else:
            apps[label], seeds[label] = whole, seeds["whole app"]
        patches[label] = [_variants.patch_of(name, set(names)) for name in names]
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in apps}
    order = list(apps)
    # A node holds one app; this process holds fifteen. Frozen, their objects are not walked by every
    # collection of the requests' garbage, which would tax allocation-heavy code here more than in a node.
    gc.collect()
    gc.freeze()
    try:
        for number in range(rounds):
            shift = number % len(order)
            for name in order[shift:] + order[:shift]:
                gc.collect()  # each batch starts with no garbage of the one before
                switched = [_variants.switch_on(patch) for patch in patches[name]]
                try:
                    measured = await measure_app(apps[name], *seeds[name], per_round)
                finally:
                    for originals in reversed(switched):
                        _variants.switch_off(originals)
                for request, us in measured.items():
                    samples[name].setdefault(request, []).append(us)
    finally:
        for lifespan in lifespans:
            await lifespan.__aexit__(None, None, None)
    return {
        name: {r: {"median": round(statistics.median(v), 1), "p10": round(percentile(v, 10), 1)} for r, v in by.items()}
        for name, by in samples.items()
    }


# --- the pieces alone ----------------------------------------------------------------------------


def per_call(fn: Callable[[], object], n: int) -> float:
    started = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - started) / n * 1e6


async def per_await(fn, n: int) -> float:
    """CPU of the whole process (a thread hop costs the worker thread too) per awaited call."""
    started = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - started) / n * 1e6


async def pieces(root: Path, rounds: int, n: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from pydantic import TypeAdapter
    from starlette.routing import Match

    from talentnest import api
    from talentnest.api.models import PostOut
    from talentnest.app import write_classifier

    app = build_app(root, "pieces")
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        token, ids = await seeded(app)
        product = app.state.product
        auth, posts = product.auth, product.posts
        post = posts.get(ids[0], None)
        created = posts.get(ids[0], 1)
        adapter = TypeAdapter(PostOut)
        is_write = write_classifier(api.router.routes)
        get_scope = _scope("GET", f"/api/posts/{ids[0]}", [])
        routes = app.router.routes

        def match_route() -> None:
            for route in routes:
                if route.matches(get_scope)[0] == Match.FULL:
                    return

        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1)

        def nothing() -> None:
            return None

        async def hop() -> None:
            await loop.run_in_executor(pool, nothing)

        async def inline() -> None:
            nothing()

        checks: dict[str, Callable[[], object]] = {
            "token: JWT check (PyJWT, Tokens.user_id)": lambda: auth.tokens.user_id(token),
            "token: account check (UserRepo.exists)": lambda: auth.users.exists(1),
            "GET: SQL by key + render (PostService.get)": lambda: posts.get(ids[0], None),
            "GET: the SQL alone (PostRepo.by_id)": lambda: posts.posts.by_id(ids[0], None),
            "POST: write transaction + capture + read back (PostService.create)": lambda: posts.create(1, "a piece post"),
            "response_model: validate + dump_json (PostOut)": lambda: adapter.dump_json(
                adapter.validate_python(created), exclude_unset=True
            ),
            "json.dumps of the answer (Starlette's options)": lambda: json.dumps(
                post, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
            ).encode(),
            "routing: match GET /api/posts/{id} among the app's routes": match_route,
            "cluster middleware: is_write(scope) of a GET": lambda: is_write(get_scope),
        }
        if importlib.util.find_spec("orjson") is not None:
            import orjson

            checks["orjson.dumps of the answer"] = lambda: orjson.dumps(post)
        samples: dict[str, list[float]] = {}
        for _ in range(rounds):
            for name, fn in checks.items():
                samples.setdefault(name, []).append(per_call(fn, n))
            samples.setdefault("thread hop: await run_in_executor(pool, f) minus f inline", []).append(
                await per_await(hop, n // 4) - await per_await(inline, n // 4)
            )
        pool.shutdown()
        return {name: round(statistics.median(v), 2) for name, v in samples.items()}
    finally:
        await lifespan.__aexit__(None, None, None)


# --- the replicate path ---------------------------------------------------------------------------


def replicate_path(root: Path, rounds: int) -> dict:
    """A follower's work for a batch: parse (decode + ReplicateRequest.parse) and apply, per entry."""
    from talentnest.cluster import logwire, wire
    from talentnest.store import _db as db_module
    from talentnest.store.posts import PostRepo
    from talentnest.store.schema import product_database
    from talentnest.store.users import UserRepo

    leader = product_database(root / "replicate-leader").open()
    leader.term = 1
    users, posts = UserRepo(leader), PostRepo(leader)
    with leader.write() as conn:
        author = users.insert(
            conn, username="rep", email="r@example.org", name="Rep", password_hash="-", token_key="k", now=leader.now()
        )
    for i in range(2000):
        with leader.write() as conn:
            posts.insert(conn, author, f"replicated post {i} from the leader's log " + "z" * 60, leader.now())
    entries = leader.entries_after(0, max_entries=5000, max_bytes=64 * 1024 * 1024)
    leader.close()

    def body(batch) -> bytes:
        return logwire.replicate_body(
            leader_id=1, term=1, leader_url="http://127.0.0.1:3000", prev_lsn=batch[0].lsn - 1, prev_term=1,
            prev_epoch=entries[batch[0].lsn - 2].epoch,
            leader_last_lsn=batch[-1].lsn, leader_last_term=1, leader_first_lsn=1, history=None, entries=batch,
        )  # fmt: skip

    out: dict[str, dict[str, float]] = {}
    json_module = db_module.json
    shims = {"json": (json_module, json_module)}
    if importlib.util.find_spec("orjson") is not None:
        sys.path.insert(0, str(HERE))
        from _variants import _OrjsonModule

        shims["orjson"] = (_OrjsonModule(), _OrjsonModule())
    for size in (1, 100):
        batches = [entries[i : i + size] for i in range(1, len(entries) - size, size)][:300]
        bodies = [body(b) for b in batches]
        for kind, (wire_json, db_json) in shims.items():
            wire.json, db_module.json = wire_json, db_json
            parse, redump, apply = [], [], []
            for number in range(rounds):
                started = time.thread_time()
                parsed = [logwire.ReplicateRequest.parse(wire.decode(b)) for b in bodies]
                parse.append((time.thread_time() - started) / (len(bodies) * size) * 1e6)
                decoded = [wire.decode(b)["entries"] for b in bodies]
                started = time.thread_time()
                for items in decoded:
                    for item in items:
                        db_module.LogEntry.from_dict(item)
                redump.append((time.thread_time() - started) / (len(bodies) * size) * 1e6)
                follower = product_database(root / f"replicate-follower-{size}-{kind}-{number}").open()
                follower.apply(entries[:1])  # the author: the batches follow on from it
                started = time.thread_time()
                for request in parsed:
                    follower.apply(request.entries, sender_term=1, current_term=1)
                apply.append((time.thread_time() - started) / (len(parsed) * size) * 1e6)
                follower.close()
            out[f"batch of {size}, {kind}"] = {
                "parse (decode + ReplicateRequest.parse), us/entry": round(statistics.median(parse), 2),
                "of which LogEntry.from_dict (re-dump), us/entry": round(statistics.median(redump), 2),
                "apply (Database.apply), us/entry": round(statistics.median(apply), 2),
            }
        wire.json, db_module.json = json_module, json_module
    return out


# --- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="batches per configuration, interleaved (default 30)")
    parser.add_argument("--requests", type=int, default=100, help="requests of each kind per batch (default 100)")
    parser.add_argument("--quick", action="store_true", help="6 batches of 50 requests")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests = 6, 50
    import logging

    logging.disable(logging.WARNING)
    import uvloop

    load_before = load()
    root = Path(tempfile.mkdtemp(prefix="talentnest-layers-"))
    report: dict = {"benchmark": "layer_costs", "timestamp": timestamp(), "unit": "CPU microseconds (thread time)"}
    report["ablation"] = uvloop.run(ablation(root, args.rounds, args.requests))
    print(
        f"\nper request, CPU us: median of {args.rounds} interleaved batches of {args.requests} (difference from the whole app)"
    )
    columns = ["GET /api/posts/{id}", "POST /api/posts", "POST /cluster/heartbeat (signed)"]
    print(f"{'configuration':<48}" + "".join(f"{c:>34}" for c in columns))
    whole = report["ablation"]["whole app"]
    for name, figures in report["ablation"].items():
        cells = []
        for column in columns:
            value = figures.get(column, {}).get("median")
            moved = value - whole[column]["median"] if value is not None else 0
            cells.append(f"{'-':>34}" if value is None else f"{value:>24.1f} ({moved:+7.1f})")
        print(f"{name[:47]:<48}" + "".join(cells))
    report["pieces"] = uvloop.run(pieces(root, args.rounds, args.requests * 2))
    print("\neach piece alone, CPU us per call")
    for name, us in report["pieces"].items():
        print(f"  {us:>8.2f}  {name}")
    report["replicate"] = replicate_path(root, args.rounds)
    print("\nthe follower's work per replicated entry, CPU us")
    for name, figures in report["replicate"].items():
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    report["machine"] = machine(load_before)
    report["config"] = {"rounds": args.rounds, "requests": args.requests}
    write_report(args.output, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
