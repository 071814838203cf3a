"""Bringing a node up and down: finding its own address and ID, opening its transport, the checks at
start, its first look at the members (a node alone leads at once), the control loop's task, and
stopping all of it. The graceful leave (SIGTERM) is handover.py's; the state all this sets is the
node's (node.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from talentnest.cluster import control, votes
from talentnest.cluster.discovery import node_id_for, own_address

if TYPE_CHECKING:
    from talentnest.cluster.node import ClusterNode

log = logging.getLogger("talentnest.cluster")


async def start(node: ClusterNode, *, run_loop: bool) -> None:
    """Join: who this node is, its transport, its checks at start, then the members and the loop."""
    settings = node.settings
    node.started_ms = int(node.clock.wall() * 1000)
    listed = await node.membership.resolver.resolve()
    address = own_address(advertise=settings.advertise_address, host=settings.host, listed=listed)
    node.address = node.membership.address = address
    node.node_id = settings.node_id if settings.node_id is not None else node_id_for(address)
    node.url = f"{settings.scheme}://{address}:{settings.port}"
    transport = node.transport_or_none = node.membership.transport = node.runtime.transport(node.key, address)
    node.membership.remember(node.state.current.members)
    await transport.start()
    node.db.write_guard = node.gate.guard_write
    node.care.check_marker()
    if node.db.last_term > node.term:
        # A snapshot or a restored file can hold a newer term than our state file remembers.
        node.state.save(node.db.last_term, None)
    log.info(
        "cluster: node %d at %s (members from %s, term %d, LSN %d)",
        *(node.node_id, node.url, node.membership.resolver.source, node.term, node.db.last_lsn),
    )
    await node.membership.refresh()
    if node.membership.blind(node.clock.monotonic()):
        log.warning(
            "cluster: %s has not answered and no member is known, so this node does not lead alone: it waits "
            "for an answer, or FAILURE_TIMEOUT (%g s)",
            *(node.membership.resolver.source, settings.failure_timeout),
        )
    elif not node.membership.peers:
        await votes.campaign(node, handover_from=None)  # alone: a single node serves writes from its first request
    if run_loop:
        node.loop_task = asyncio.create_task(control.run_loop(node), name="cluster-loop")
        node.loop_task.add_done_callback(lambda task: _loop_ended(node, task))


def _loop_ended(node: ClusterNode, task: asyncio.Task) -> None:
    if not node.stopping:
        error = None if task.cancelled() else task.exception()
        log.critical("cluster: the membership loop ended unexpectedly (%r); this node can no longer take part", error)


async def stop(node: ClusterNode) -> None:
    """End the loop, the long work, the streams (if leading) and the transport (``node.stopping`` is set)."""
    if node.loop_task is not None:
        node.loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(node.loop_task, timeout=2)
    await node.worker.stop()
    if node.replication is not None:
        await node.replication.stop_leading()
    if node.transport_or_none is not None:
        await node.transport_or_none.close()
