"""The election rule as a pure function of the cluster view: highest ID among live members leads,
but only with a majority of the listed members and never with older data than a live peer."""

from __future__ import annotations

from talentnest.cluster.types import Action, ClusterView, Decision, Role


def elect(view: ClusterView) -> Decision:
    """Decide this node's next step. No I/O: the caller probes, then acts on the decision."""
    if view.role == Role.LEADER:
        return _as_leader(view)
    return _as_follower(view)


def _as_leader(view: ClusterView) -> Decision:
    if not view.lease_valid:
        return Decision(
            Action.STEP_DOWN,
            f"lease lapsed: reached {view.reachable} of {view.voters} members, a majority needs {view.voters // 2 + 1}",
        )
    if view.periodic:
        successor = _successor(view)
        if successor is not None:
            return Decision(
                Action.HANDOVER,
                f"node {successor.id} has a higher ID and holds every entry (LSN {successor.last_lsn}); handing over",
                successor.id,
            )
    return Decision(Action.NONE, f"leading term {view.term} with {view.reachable} of {view.voters} members")


def _successor(view: ClusterView):
    """A live, listed, ready peer with a higher ID than ours that has caught up with us."""
    candidates = [
        p
        for p in view.peers
        if p.alive
        and p.listed
        and p.ready
        and p.id > view.self_id
        and p.log_position == view.log_position
        and p.alive_for >= view.handover_settle
    ]
    return max(candidates, key=lambda p: p.id, default=None)


def _as_follower(view: ClusterView) -> Decision:
    if view.discovering:
        return Decision(Action.NONE, "discovering peers before the first election")
    if view.syncing:
        return Decision(Action.NONE, "syncing from the leader")
    if view.leader_id is not None and view.leader_id != view.self_id and view.leader_alive:
        return Decision(Action.NONE, f"following leader {view.leader_id}")
    alive = view.alive_peers
    highest = max([view.self_id] + [p.id for p in alive if p.listed])
    if highest != view.self_id:
        return Decision(Action.NONE, f"no live leader; node {highest} has the highest ID and should lead")
    if not view.has_majority:
        return Decision(
            Action.NONE,
            f"no live leader, but this node reaches {view.reachable} of {view.voters} members; "
            f"a majority needs {view.voters // 2 + 1}, so it will not lead",
        )
    ahead = [p for p in alive if p.log_position > view.log_position]
    if ahead:
        best = max(ahead, key=lambda p: (p.log_position, p.id))
        return Decision(
            Action.CATCH_UP,
            f"node {best.id} holds newer data (term {best.last_term}, LSN {best.last_lsn}) than this node "
            f"(term {view.last_term}, LSN {view.last_lsn}); catching up before leading",
            best.id,
        )
    return Decision(
        Action.CAMPAIGN, f"highest live ID with {view.reachable} of {view.voters} members; standing for term {view.term + 1}"
    )
