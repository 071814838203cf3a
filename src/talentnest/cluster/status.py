"""What a node reports of itself: readiness (``/readyz``) and the ``/cluster/status`` JSON."""

from __future__ import annotations

from typing import Any

from talentnest.cluster.auth import MAX_SKEW_SECONDS
from talentnest.cluster.protocols import Core
from talentnest.cluster.types import Role
from talentnest.cluster.wire import NodeInfo


def self_info(node: Core) -> NodeInfo:
    """What this node says of itself in every heartbeat and in its answers to them."""
    return NodeInfo(
        id=node.node_id,
        url=node.url,
        term=node.term,
        role=node.role.value,
        leader_id=node.leader_id,
        last_lsn=node.db.last_lsn,
        last_term=node.db.last_term,
        ready=readiness(node)[0],
        leaving=node.stopping,
        eligible=node.may_lead(),
        votes=node.health.may_vote,
        incarnation=node.incarnation,
        started_ms=node.started_ms,
        wall_ms=int(node.clock.wall() * 1000),
        token_keys=node.token_keys(),
    )


def clock_report(node: Core) -> dict[str, Any]:
    """How far this node's clock is from its peers'; beyond the signature window when most of the
    peers that told their time disagree with it by more than the window (then say so)."""
    skews = [p.skew for p in node.membership.peers.values() if p.skew is not None]
    off = [s for s in skews if abs(s) > MAX_SKEW_SECONDS]
    beyond = bool(skews) and len(off) * 2 > len(skews)
    report: dict[str, Any] = {"max_skew_seconds": round(max(skews, key=abs), 3) if skews else None, "beyond_window": beyond}
    if beyond:
        report["note"] = (
            f"this node's clock is about {abs(sorted(off)[len(off) // 2]):.0f} s away from its peers' "
            f"(signatures allow {MAX_SKEW_SECONDS} s): they refuse its calls; fix its time (NTP)"
        )
    return report


def readiness(node: Core) -> tuple[bool, str]:
    """Ready to serve: synced, and a leader known (this node or a live one)."""
    if node.address is None:
        return False, "starting: own address not known yet"
    problem = node.health.not_ready_reason()
    if problem is not None:
        return False, problem
    if node.worker.syncing:
        return False, "syncing from the leader"
    if node.role == Role.LEADER:
        return True, "leader"
    if node.current_leader_url() is None:
        return False, "no leader known"
    if node.replication is None or not node.replication.in_sync:
        return False, "catching up with the leader"
    return True, f"following leader {node.leader_id}"


def render(node: Core) -> dict[str, Any]:
    """The seed's /cluster/status JSON, plus term, LSNs, lag and health details."""
    now = node.clock.monotonic()
    membership = node.membership
    leading = node.role == Role.LEADER
    # A leader this node can no longer hear from is not reported as its leader.
    known = leading or node.current_leader_url() is not None
    leader_peer = membership.by_id(node.leader_id)
    leader_lsn = node.db.last_lsn if leading else (leader_peer.last_lsn if leader_peer else None)

    def lag(applied: int | None) -> int | None:
        return None if leader_lsn is None or applied is None else max(0, leader_lsn - applied)

    nodes = [
        {
            "id": node.node_id,
            "address": node.url,
            "role": node.role.value,
            "is_leader": leading,
            "healthy": True,
            "applied_lsn": node.db.last_lsn,
            "lag": lag(node.db.last_lsn),
            "term": node.term,
            "self": True,
        }
    ]
    for peer in sorted(membership.peers.values(), key=lambda p: p.id):
        alive = membership.alive(peer, now)
        if not alive and peer.last_ok is not None and now - peer.last_ok > membership.failure_timeout:
            continue  # the seed: a node without an answer for FAILURE_TIMEOUT is removed
        is_leader = known and peer.id == node.leader_id and not leading
        reported = peer.info.role if (alive and peer.info is not None) else Role.FOLLOWER.value
        match = node.replication.match_lsn(peer.address) if (node.replication is not None and leading) else None
        applied = match if match is not None else (peer.last_lsn if peer.last_ok is not None else None)
        nodes.append(
            {
                "id": peer.id,
                "address": peer.url,
                "role": Role.LEADER.value if is_leader else (reported if reported != Role.LEADER else Role.FOLLOWER.value),
                "is_leader": is_leader,
                "healthy": alive,
                "applied_lsn": applied,
                "lag": lag(applied),
                "term": peer.term if peer.last_ok is not None else None,
                "last_seen_seconds": None if peer.last_ok is None else round(now - peer.last_ok, 3),
                "clock_skew_seconds": None if peer.skew is None else round(peer.skew, 3),
                "refuses_us": peer.refuses,
                "self": False,
            }
        )
    ready, reason = readiness(node)
    voters = node.voters()
    payload = {
        "current_node_id": node.node_id,
        "current_role": node.role.value,
        "leader_id": node.leader_id if known else None,
        "leader_address": (node.url if leading else node.leader_url) if known else None,
        "total_nodes": len(nodes),
        "nodes": nodes,
        "term": node.term,
        "applied_lsn": node.db.last_lsn,
        "ready": ready,
        "ready_reason": reason,
        "replication_mode": node.settings.replication_mode,
        "health": node.health.as_dict(),
        "departed": [
            {"id": peer.id, "address": peer.url, "seconds_ago": round(now - since, 3)}
            for peer, since in node.membership.departed.values()
        ],
        "clock": clock_report(node),
        "quorum": {"voters": voters, "reachable": membership.reachable(now), "needed": voters // 2 + 1},
    }
    if node.replication is not None:
        payload["replication"] = node.replication.status()
    return payload
