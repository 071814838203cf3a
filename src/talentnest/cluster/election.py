"""The election rules as pure functions: ``elect`` (highest ID among live members leads, only with a
majority of the members and never with older data than a live peer), ``grant_vote`` and ``tally``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from talentnest.cluster.types import Action, ClusterView, Decision, Role
from talentnest.cluster.wire import VoteReply, VoteRequest

# How far behind the leader a successor may still be when a planned handover starts (entries).
HANDOVER_LAG = 256


def elect(view: ClusterView) -> Decision:
    """Decide this node's next step. No I/O: the caller probes, then acts on the decision."""
    if view.role == Role.LEADER:
        return _as_leader(view)
    return _as_follower(view)


def _as_leader(view: ClusterView) -> Decision:
    if not view.eligible:
        successor = _successor(view, settled=False)
        if successor is not None:
            return Decision(
                Action.HANDOVER,
                f"not eligible to lead ({view.not_eligible_because}); handing over to node {successor.id}",
                successor.id,
            )
        if view.drained and view.lease_valid:
            # Stepping down now could lose the last writes (async mode): keep leading until a peer catches up.
            return Decision(Action.NONE, "drained, but no caught-up peer to hand over to yet; still leading")
        return Decision(Action.STEP_DOWN, f"not eligible to lead: {view.not_eligible_because}")
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


def _successor(view: ClusterView, *, settled: bool = True):
    """A live, ready, eligible member that has (nearly) caught up with us: with a higher ID than ours and
    alive for a while (a planned handover), or any (``settled=False``: this node may not lead any more).

    Nearly: in this term, at most ``HANDOVER_LAG`` entries behind what it last reported. Under steady
    writes a follower's report always trails the leader by a few entries, and exact equality would
    starve the handover; ``handover.hand_over`` pauses writes and ships the rest before letting go, and
    gives up (still leading) when the peer does not acknowledge the last entry in time."""
    candidates = [
        p
        for p in view.peers
        if p.alive
        and p.ready
        and p.eligible
        and (p.id > view.self_id or not settled)
        and p.last_term == view.last_term
        and 0 <= view.last_lsn - p.last_lsn <= HANDOVER_LAG
        and (p.alive_for >= view.handover_settle or not settled)
    ]
    return max(candidates, key=lambda p: p.id, default=None)


def _as_follower(view: ClusterView) -> Decision:
    if view.discovering:
        return Decision(Action.NONE, "discovering peers before the first election")
    if view.blind:
        return Decision(Action.NONE, "discovery has not answered yet, so this node cannot tell whether it is alone")
    if view.syncing:
        return Decision(Action.NONE, "syncing from the leader")
    if view.leader_alive:
        if view.leader_id is not None and view.leader_id != view.self_id:
            return Decision(Action.NONE, f"following leader {view.leader_id}")
        return Decision(Action.NONE, "a leader was heard from less than its lease ago; waiting for the new term's leader")
    if not view.eligible:
        return Decision(Action.NONE, f"no live leader, but this node is not eligible to lead: {view.not_eligible_because}")
    alive = view.alive_peers
    highest = max([view.self_id] + [p.id for p in alive if p.eligible])
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


# --- votes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voter:
    """What a node knows when a candidate asks for its vote (no I/O behind it)."""

    node_id: int
    term: int
    voted_for: int | None
    role: Role
    lease_valid: bool  # as leader: a majority answered within the lease
    leader_id: int | None
    leader_alive: bool  # as follower: heard from its leader recently
    stopping: bool
    last_term: int
    last_lsn: int
    may_vote: bool = True  # False: this node lost its data (or is new) and no leader has reached it since

    @property
    def log_position(self) -> tuple[int, int]:
        return (self.last_term, self.last_lsn)


class Refusal(StrEnum):
    STALE_TERM = "stale_term"
    LEADING = "leading"
    LEADER_ALIVE = "leader_alive"
    BEHIND = "behind"
    VOTED = "voted"
    NOT_A_VOTER = "not_a_voter"


@dataclass(frozen=True)
class Verdict:
    """A vote granted or refused, and why. ``refusal`` names the rule; ``LEADER_ALIVE`` is worth
    asking the leader again before answering (a dead leader is usually a refused connection)."""

    granted: bool
    reason: str
    refusal: Refusal | None = None


def grant_vote(request: VoteRequest, voter: Voter) -> Verdict:
    """Raft's vote rules with a pre-vote and leader stickiness; the caller persists a granted real
    vote (term and candidate) before the answer leaves, and must not answer if it cannot."""
    term, candidate = request.term, request.candidate_id
    if term < voter.term or (term == voter.term and not request.pre_vote and voter.role == Role.LEADER):
        return Verdict(False, f"term {term} is not newer than this node's term {voter.term}", Refusal.STALE_TERM)
    endorsed = request.handover_from is not None and request.handover_from in (voter.leader_id, voter.node_id)
    if voter.role == Role.LEADER and not endorsed and not voter.stopping and voter.lease_valid:
        return Verdict(False, f"node {voter.node_id} leads term {voter.term} with a valid lease", Refusal.LEADING)
    if voter.leader_alive and not endorsed and candidate != voter.leader_id:
        return Verdict(False, f"leader {voter.leader_id} is alive", Refusal.LEADER_ALIVE)
    if not voter.may_vote and (
        (request.last_lsn, voter.last_lsn) != (0, 0) or (term <= voter.term and voter.voted_for != candidate)
    ):
        # Only where no data exists yet (a cluster being created) may a node without state vote, and only
        # for a term newer than any it has heard of since it started: it may have voted in those before its
        # disk was lost, or led one (simulator seed 11153, F14 in docs/simulation.md).
        why = f"node {voter.node_id} has lost or never had its state, and no leader has reached it since"
        return Verdict(False, why, Refusal.NOT_A_VOTER)
    if request.log_position < voter.log_position:
        return Verdict(
            False,
            f"candidate's log (term {request.last_term}, LSN {request.last_lsn}) is behind this node's "
            f"(term {voter.last_term}, LSN {voter.last_lsn})",
            Refusal.BEHIND,
        )
    if term == voter.term and voter.voted_for is not None and voter.voted_for != candidate:
        return Verdict(False, f"already voted for {voter.voted_for} in term {voter.term}", Refusal.VOTED)
    return Verdict(True, "would vote" if request.pre_vote else "granted")


@dataclass(frozen=True)
class Tally:
    """The answers of one vote round: who granted, whether that is a majority with the candidate's own
    vote, and the highest term a refusing peer named (the candidate must adopt it)."""

    granted: tuple[int, ...]  # indexes into the peers asked
    won: bool
    votes: int
    higher_term: int | None
    refusals: tuple[str, ...]


def tally(answers: Sequence[tuple[int, VoteReply | None]], *, voters: int, term: int) -> Tally:
    """Count ``(peer id, answer or None)`` pairs among ``voters`` members; ``term`` is the candidate's
    current term (a refusal naming a later one means the candidate is out of date)."""
    higher = [a.term for _, a in answers if a is not None and not a.granted and a.term > term]
    granted = tuple(i for i, (_, a) in enumerate(answers) if a is not None and a.granted)
    votes = 1 + len(granted)
    refusals = tuple(f"{peer}: {a.reason}" for peer, a in answers if a is not None and not a.granted)
    return Tally(
        granted=granted,
        won=not higher and votes > voters // 2,
        votes=votes,
        higher_term=max(higher) if higher else None,
        refusals=refusals,
    )
