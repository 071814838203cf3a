"""Reading the nodes' own view: ``GET /cluster/status`` from each, and whether they agree on a leader."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

STATUS_TIMEOUT = 2.0
# A status of a few hundred nodes fits easily; more is not a status answer.
_MAX_RESPONSE = 4 * 1024 * 1024

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


async def _get_json(url: str) -> object:
    """GET ``url`` with a bare HTTP/1.0 request (no chunking, the server closes); the JSON body, or ValueError."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        target = parts.path or "/"
        writer.write(f"GET {target} HTTP/1.0\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n\r\n".encode())
        await writer.drain()
        response = b""
        while chunk := await reader.read(65536):
            response += chunk
            if len(response) > _MAX_RESPONSE:
                raise ValueError(f"{url} answered more than {_MAX_RESPONSE} bytes")
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or status_line[1] != b"200":
        raise ValueError(f"{url} answered {status_line[1:2]}")
    return json.loads(body)


async def fetch_status(base_url: str, timeout: float = STATUS_TIMEOUT) -> dict | None:
    """The node's ``/cluster/status``, or None if it does not answer 200 with a JSON object within ``timeout``."""
    try:
        status = await asyncio.wait_for(_get_json(f"{base_url}/cluster/status"), timeout)
    except (OSError, TimeoutError, ValueError):
        return None
    return status if isinstance(status, dict) else None


async def fetch_all(urls: Mapping[str, str], timeout: float = STATUS_TIMEOUT) -> dict[str, dict | None]:
    """``/cluster/status`` from every node at once (name -> URL), None for those that do not answer."""
    results = await asyncio.gather(*(fetch_status(url, timeout) for url in urls.values()))
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
