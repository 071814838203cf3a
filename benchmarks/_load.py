#!/usr/bin/env python3
"""The cluster benchmarks' own HTTP clients, run as a separate process: ``_load.py SPEC.json RESULT.json``.

Two modes (``spec["mode"]``):

- ``lag``: an open-loop generator. Post creation ``i`` is sent to the leader at ``start + i/rate``
  whether or not earlier ones have been answered (wrk is closed-loop: it waits for an answer
  before the next request, which hides queueing). When the leader answers with the write's
  ``X-Cluster-LSN``, a ``GET /healthz`` with ``X-Min-LSN`` goes to a follower (the followers in
  turn); the node holds that read until it has applied the LSN, so the lag is the time from the
  leader's answer to the follower's. Idle probes (no X-Min-LSN) measure what one probe costs.
- ``ryw``: read-your-writes through followers. Each worker creates a post through a follower
  and at once reads it back from that same follower (no X-Min-LSN): the read must find it.

It runs in its own process so that its CPU does not slow the supervisor's event loop (DNS).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    uvloop = None


def _post_body(i: int, tag: str) -> bytes:
    return json.dumps({"content": f"{tag} post {i}"}).encode()


async def _touch(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(f"{url}/healthz") as response:
        await response.read()


async def lag(spec: dict) -> dict:
    leader, followers, tokens = spec["leader"], spec["followers"], spec["tokens"]
    rate, seconds = float(spec["rate"]), float(spec["seconds"])
    probe_every = int(spec.get("probe_every", 1))
    max_in_flight = int(spec.get("max_in_flight", 512))
    total = int(rate * seconds)
    writes: list[dict] = []
    idle_probes: list[float] = []
    errors: dict[str, int] = {}
    skipped = 0
    in_flight = 0
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=max_in_flight, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)

    async def one(session: aiohttp.ClientSession, i: int, due: float) -> None:
        nonlocal in_flight
        in_flight += 1
        record: dict = {"i": i, "late_ms": round((time.monotonic() - due) * 1000, 3)}
        try:
            headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}", "Content-Type": "application/json"}
            sent = time.monotonic()
            async with session.post(f"{leader}/api/posts", data=_post_body(i, "lag"), headers=headers) as response:
                body = await response.read()
                answered = time.monotonic()
                record["status"] = response.status
                record["write_ms"] = round((answered - sent) * 1000, 3)
                lsn = response.headers.get("X-Cluster-LSN")
            if response.status != 201:
                errors[f"write {response.status}"] = errors.get(f"write {response.status}", 0) + 1
                return
            record["id"] = json.loads(body)["id"]
            record["lsn"] = int(lsn)
            if i % probe_every:
                return
            follower = followers[(i // probe_every) % len(followers)]
            record["follower"] = follower
            async with session.get(f"{follower}/healthz", headers={"X-Min-LSN": lsn}) as response:
                await response.read()
                applied = time.monotonic()
                record["probe_status"] = response.status
            if response.status == 200:
                record["lag_ms"] = round((applied - answered) * 1000, 3)
            else:
                errors[f"probe {response.status}"] = errors.get(f"probe {response.status}", 0) + 1
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        finally:
            in_flight -= 1
            writes.append(record)

    async def idle(session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            follower = followers[n % len(followers)]
            n += 1
            sent = time.monotonic()
            try:
                async with session.get(f"{follower}/healthz") as response:
                    await response.read()
                idle_probes.append(round((time.monotonic() - sent) * 1000, 3))
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Open the connections first, so the first second does not measure TCP handshakes.
        await asyncio.gather(*(_touch(session, url) for url in [leader, *followers] for _ in range(8)))
        stop = asyncio.Event()
        idler = asyncio.create_task(idle(session, stop))
        tasks = set()
        start = time.monotonic()
        for i in range(total):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= max_in_flight:
                skipped += 1  # the leader cannot keep up: counted, not queued without bound
                continue
            task = asyncio.create_task(one(session, i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent_for = time.monotonic() - start
        if tasks:
            await asyncio.wait(tasks, timeout=60)
        stop.set()
        await idler
    return {
        "mode": "lag",
        "rate": rate,
        "planned": total,
        "sent_for_seconds": round(sent_for, 3),
        "skipped": skipped,
        "errors": errors,
        "writes": writes,
        "idle_probe_ms": idle_probes,
    }


async def ryw(spec: dict) -> dict:
    followers, tokens = spec["followers"], spec["tokens"]
    count, concurrency = int(spec["count"]), int(spec.get("concurrency", 8))
    results: list[dict] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            follower = followers[i % len(followers)]
            headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}", "Content-Type": "application/json"}
            content = f"ryw post {i}"
            record: dict = {"i": i, "follower": follower}
            try:
                async with session.post(f"{follower}/api/posts", data=json.dumps({"content": content}), headers=headers) as r:
                    body = await r.json(content_type=None)
                    record.update(write_status=r.status, write_lsn=r.headers.get("X-Cluster-LSN"))
                if r.status != 201:
                    results.append(record)
                    continue
                record["id"] = body["id"]
                async with session.get(f"{follower}/api/posts/{body['id']}") as r:
                    read = await r.json(content_type=None)
                    record.update(read_status=r.status, read_lsn=r.headers.get("X-Cluster-LSN"))
                record["ok"] = r.status == 200 and read.get("content") == content
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                record["error"] = repr(exc)
            results.append(record)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return {"mode": "ryw", "count": count, "concurrency": concurrency, "results": results}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    runner = {"lag": lag, "ryw": ryw}[spec["mode"]]
    result = uvloop.run(runner(spec)) if uvloop is not None else asyncio.run(runner(spec))
    Path(argv[2]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
