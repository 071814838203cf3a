"""Reading the nodes' own view: ``GET /cluster/status`` from each, and whether they agree on a leader."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import aiohttp

STATUS_TIMEOUT = 2.0

# name -> the node's /cluster/status JSON, or None when it did not answer.
Statuses = Mapping[str, dict | None]


def agreed_leader(statuses: Statuses) -> int | None:
    """The leader's ID if every node answered, all name the same leader, and that leader says it leads.

    None otherwise (a node silent, a disagreement, no leader yet, or a leader that is not among them).
    """
    if not statuses or any(status is None for status in statuses.values()):
        return None
    leaders = {status.get("leader_id") for status in statuses.values()}
    if len(leaders) != 1:
        return None
    (leader_id,) = leaders
    if leader_id is None:
        return None
    return leader_id if any(_claims_leadership(status, leader_id) for status in statuses.values()) else None


def _claims_leadership(status: dict, leader_id: int) -> bool:
    return status.get("current_node_id") == leader_id and status.get("current_role") == "leader"


def disagreement(statuses: Statuses) -> str:
    """One line per node saying what it sees, for progress and timeout messages."""
    parts = []
    for name, status in statuses.items():
        if status is None:
            parts.append(f"{name}: no answer")
        else:
            parts.append(f"{name}: {status.get('current_role')}, leader {status.get('leader_id')}")
    return "; ".join(parts)


async def fetch_status(session: aiohttp.ClientSession, base_url: str, timeout: float = STATUS_TIMEOUT) -> dict | None:
    """The node's ``/cluster/status``, or None if it does not answer with JSON within ``timeout``."""
    try:
        async with session.get(f"{base_url}/cluster/status", timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                return None
            status = await response.json(content_type=None)
            return status if isinstance(status, dict) else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def fetch_all(urls: Mapping[str, str], timeout: float = STATUS_TIMEOUT) -> dict[str, dict | None]:
    """``/cluster/status`` from every node at once (name -> URL), None for those that do not answer."""
    if not urls:
        return {}
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(fetch_status(session, url, timeout) for url in urls.values()))
    return dict(zip(urls, results, strict=True))


async def wait_for_agreement(
    urls: Callable[[], Mapping[str, str]],
    timeout: float,
    *,
    on_progress: Callable[[Statuses], None] | None = None,
    interval: float = 0.25,
) -> tuple[int | None, Statuses]:
    """Poll until the nodes ``urls()`` names agree on one leader; return (leader ID or None on timeout, last statuses)."""
    deadline = time.monotonic() + timeout
    statuses: Statuses = {}
    while True:
        statuses = await fetch_all(urls())
        leader = agreed_leader(statuses)
        if leader is not None or time.monotonic() >= deadline:
            return leader, statuses
        if on_progress is not None:
            on_progress(statuses)
        await asyncio.sleep(interval)
