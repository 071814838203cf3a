"""Shared pieces of the cluster benchmarks: a LocalCluster on its own subnet, status polling, machine facts.

The clusters are the launcher's own (``talentnest.launcher.supervisor.LocalCluster``: real node
processes on loopback addresses, the small DNS server, real signals), run on the caller's event
loop. Nothing is published on localhost ports unless asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from talentnest.launcher.probe import agreed_leader, fetch_status  # noqa: E402
from talentnest.launcher.supervisor import ClusterConfig, LocalCluster, LocalNode, parse_subnet  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_SUBNET = "127.0.6"
# Signups are seeding, not what is measured (the node reads these variables); nor are the write limits,
# which a benchmark's few accounts on one address would meet.
FAST_ARGON2 = {
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_KIB": "1024",
    "ARGON2_PARALLELISM": "1",
    "WRITE_LIMIT_PER_ACCOUNT": "0",
    "WRITE_LIMIT_PER_ADDRESS": "0",
}

__all__ = [
    "DEFAULT_SUBNET",
    "FAST_ARGON2",
    "RESULTS",
    "ROOT",
    "ClusterConfig",
    "LocalCluster",
    "LocalNode",
    "add_common_arguments",
    "agreed_leader",
    "cpu_seconds",
    "fetch_status",
    "load",
    "machine",
    "parse_subnet",
    "percentile",
    "summary",
    "timestamp",
    "url_of",
    "wait_agreed",
    "wait_ready",
    "write_report",
]


def url_of(node: LocalNode) -> str:
    return f"http://{node.address}:{node.port}"


def load() -> float:
    """The 1-minute load average: other work on the machine skews every figure."""
    return round(os.getloadavg()[0], 2)


def machine(load_before: float) -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_1m": {"before": load_before, "after": load()},
    }


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Iterable[float]) -> dict:
    values = list(values)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 4),
        "p90": round(percentile(values, 90), 4),
        "max": round(max(values), 4),
        "min": round(min(values), 4),
    }


async def wait_agreed(
    nodes: Mapping[str, str], *, timeout: float, expect: int | None = None, interval: float = 0.05
) -> tuple[int | None, dict]:
    """Poll ``/cluster/status`` of every node (name -> URL) until all name one leader that says it leads.

    Returns (leader ID or None on timeout, the last statuses).
    """
    deadline = time.monotonic() + timeout
    while True:
        results = await asyncio.gather(*(fetch_status(url, 1.0) for url in nodes.values()))
        statuses = dict(zip(nodes, results, strict=True))
        leader = agreed_leader(statuses)
        if leader is not None and (expect is None or leader == expect):
            return leader, statuses
        if time.monotonic() >= deadline:
            return None, statuses
        await asyncio.sleep(interval)


async def wait_ready(url: str, *, timeout: float, interval: float = 0.05) -> float | None:
    """Poll ``/readyz`` until it answers 200; the seconds it took, or None on timeout."""
    import aiohttp

    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < timeout:
            try:
                async with session.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=1.0)) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(interval)
    return None


def add_common_arguments(parser: argparse.ArgumentParser, output: Path) -> None:
    """--subnet, --output and --keep, the same in every cluster benchmark."""
    parser.add_argument("--subnet", default=DEFAULT_SUBNET, help=f"loopback subnet of the nodes (default {DEFAULT_SUBNET})")
    parser.add_argument("--output", type=Path, default=output, help=f"JSON results (default {output.relative_to(ROOT)})")
    parser.add_argument("--keep", action="store_true", help="keep the clusters' directories (logs, data) for inspection")


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system) process ``pid`` has used so far, from /proc; None if unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS
