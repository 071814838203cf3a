"""Planned changes of leader: handing over to a higher-ID node, and leaving on a graceful stop.

Both stop writes first (``WriteGate.guard_write`` refuses while the node hands over or stops), make
sure the followers hold every entry, and only then let go, so a planned change loses nothing.
"""

from __future__ import annotations

import asyncio
import logging

from talentnest.cluster import votes
from talentnest.cluster.membership import PeerState
from talentnest.cluster.protocols import Core
from talentnest.cluster.types import Role
from talentnest.cluster.wire import HandoverReply, HandoverRequest, decode
from talentnest.cluster.work import Job
from talentnest.errors import InvalidInput, PeerUnreachable

log = logging.getLogger("talentnest.cluster")


async def hand_over(node: Core, peer: PeerState) -> None:
    """As leader (writes paused while this runs): ship the last entries to ``peer``, ask it to stand,
    step down, and wait for it to announce itself. Any failure aborts and this node keeps leading."""
    target = peer.id
    log.info("election: term %d: handing over to node %d (%s); writes pause", node.term, target, peer.url)
    wait = max(2.0, 3 * node.heartbeat)
    if node.replication is None or not await node.replication.flush_to(peer.address, timeout=wait) or not node.is_leader():
        log.warning("election: handover to node %d aborted: it did not acknowledge LSN %d in time", target, node.db.last_lsn)
        return
    request = HandoverRequest(term=node.term, leader_id=node.node_id, last_lsn=node.db.last_lsn)
    try:
        reply = await node.transport.call(
            "POST", peer.url, "/cluster/handover", body=request.to_bytes(), timeout=max(node.membership.probe_timeout, 1.0)
        )
        accepted = reply.status == 200 and HandoverReply.parse(decode(reply.body)).accepted
    except (PeerUnreachable, InvalidInput):
        accepted = False
    if not accepted:
        log.warning("election: handover to node %d aborted: it did not accept", target)
        return
    if node.is_leader():
        node.step_down(f"handed over to node {target}")
    # Writes wait (in the forwarder) until the new leader announces itself.
    await node.gate.wait_for_leader(timeout=wait)


def on_handover(node: Core, request: HandoverRequest) -> HandoverReply:
    """As the higher-ID follower: accept when this node follows the sender in its term and holds every
    entry it has; then stand for the next term with the sender's endorsement."""
    if request.term != node.term or request.leader_id != node.leader_id:
        return HandoverReply(False, f"not following node {request.leader_id} in term {request.term}")
    if node.db.last_lsn != request.last_lsn:
        return HandoverReply(False, f"holds LSN {node.db.last_lsn}, not {request.last_lsn}")
    if not node.run_job(Job.CAMPAIGN, votes.campaign(node, handover_from=request.leader_id)):
        return HandoverReply(False, f"busy: {node.worker.current} is running")
    return HandoverReply(True, "standing for the next term")


async def leave(node: Core, drain_timeout: float) -> None:
    """As the node stops (it refuses writes from now on): drain replication if leading, step down,
    and tell every live member."""
    if node.role == Role.LEADER and node.replication is not None:
        lags = await node.replication.drain(drain_timeout)
        if lags:
            log.warning("shutdown: followers still behind after %.0f s: %s", drain_timeout, lags)
        else:
            log.info("shutdown: every reachable follower holds LSN %d", node.db.last_lsn)
        node.step_down("stepped down to shut down")
    peers = [p for p in node.membership.members() if node.membership.alive(p)]
    if peers:
        body = node.self_info().to_bytes()

        async def tell(peer: PeerState) -> None:
            try:
                await node.transport.call("POST", peer.url, "/cluster/leave", body=body, timeout=0.5)
            except PeerUnreachable as exc:
                log.info("shutdown: could not tell node %d: %s", peer.id, exc)

        await asyncio.gather(*(tell(p) for p in peers))
    log.info("shutdown: node %d leaves the cluster", node.node_id)
