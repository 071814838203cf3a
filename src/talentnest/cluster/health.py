"""Whether this node can do its part (apply, commit, trust its data, be the only one with its ID) and
so whether it may serve as ready and stand for leader: the one notion of "eligible to lead".

A problem is set by whoever meets it (the store's failure listener, the follower's apply, the start-up
check, an operator's drain, an identity clash) and cleared when its cause is gone; the election reads
only ``eligible`` and the reasons.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from talentnest.cluster.wire import NodeInfo
from talentnest.errors import StorageFailure
from talentnest.store import Database

log = logging.getLogger("talentnest.cluster")


class Problem(StrEnum):
    COMMIT = "commit"  # a write could not be committed (full disk, I/O error): may not lead
    APPLY = "apply"  # the leader's entries could not be applied: not ready, may not lead
    DAMAGED = "damaged"  # the database was damaged and moved aside: not ready until synced from a peer
    IDENTITY = "identity"  # another node runs with this node's ID: this one refuses to serve
    DRAINED = "drained"  # an operator asked this node not to lead (it still serves)
    NEW = "new"  # no durable state (new, or its disk was lost): no vote, no candidacy until a leader reached it

    @property
    def blocks_ready(self) -> bool:
        return self not in (Problem.DRAINED, Problem.NEW)

    @property
    def refuses_service(self) -> bool:
        return self is Problem.IDENTITY


@dataclass(frozen=True)
class Issue:
    problem: Problem
    reason: str
    since: float  # monotonic


class Health:
    def __init__(self) -> None:
        self._issues: dict[Problem, Issue] = {}

    def failed(self, problem: Problem, reason: str, now: float) -> bool:
        """Record ``problem``; True when it is new (it is logged once, at its start)."""
        current = self._issues.get(problem)
        self._issues[problem] = Issue(problem, reason, current.since if current else now)
        if current is None:
            log.warning("health: %s; this node %s", reason, _consequence(problem))
        return current is None

    def cleared(self, problem: Problem, why: str) -> bool:
        """The cause is gone; True when it was there."""
        issue = self._issues.pop(problem, None)
        if issue is not None:
            log.info("health: %s again: %s", problem.value, why)
        return issue is not None

    def has(self, problem: Problem) -> bool:
        return problem in self._issues

    @property
    def eligible(self) -> bool:
        return not self._issues

    def not_ready_reason(self) -> str | None:
        return next((i.reason for i in self._issues.values() if i.problem.blocks_ready), None)

    def refusal(self) -> str | None:
        return next((i.reason for i in self._issues.values() if i.problem.refuses_service), None)

    def clash(self, node_id: int, url: str, ours: tuple[int, str], info: NodeInfo, now: float) -> bool:
        """Another process (``info``) runs with this node's ID; ``ours`` is (started_ms, incarnation).
        The one that started later refuses to serve: True when that is this one, newly."""
        if (info.started_ms, info.incarnation) > ours:
            log.error(
                "identity: node ID %d is also used by the node at %s, which started after this one and must refuse to serve",
                *(node_id, info.url),
            )
            return False
        reason = (
            f"node ID {node_id} of this node ({url}) is also used by the node at {info.url}, which started first; "
            "give every node its own ID (NODE_ID, or ADVERTISE_ADDRESS)"
        )
        return self.failed(Problem.IDENTITY, reason, now)

    def storage_failed(self, failure: StorageFailure, *, leading: bool, now: float) -> bool:
        """The store could not write (as leader) or apply (as follower); True when that is new."""
        problem = Problem.COMMIT if leading else Problem.APPLY
        return self.failed(problem, f"cannot {problem.value}: {failure.message}", now)

    def committed(self, lsn: int) -> None:
        """A commit listener: an apply went through, so applying works again."""
        if Problem.APPLY in self._issues:
            self.cleared(Problem.APPLY, f"applied LSN {lsn}")

    def check_storage(self, db: Database) -> bool:
        """While a write could not commit, try a small one; True once one commits (it may lead again)."""
        if Problem.COMMIT not in self._issues:
            return False
        try:
            db.check_writable()
        except StorageFailure:
            return False
        return self.cleared(Problem.COMMIT, "a test write committed")

    @property
    def only_drained(self) -> bool:
        return set(self._issues) == {Problem.DRAINED}

    def eligible_if(self, *, bootstrapping: bool) -> bool:
        """Eligible to lead, counting a new node as eligible while the whole cluster holds no data."""
        return self.eligible or (bootstrapping and set(self._issues) == {Problem.NEW})

    @property
    def may_vote(self) -> bool:
        """A node that lost its state (or never had one) must not help elect anyone over data it lacks."""
        return Problem.NEW not in self._issues and Problem.DAMAGED not in self._issues

    def reasons(self) -> list[str]:
        return [i.reason for i in self._issues.values()]

    def as_dict(self) -> dict[str, object]:
        return {"eligible": self.eligible, "problems": {i.problem.value: i.reason for i in self._issues.values()}}


def _consequence(problem: Problem) -> str:
    return {
        Problem.COMMIT: "steps down and does not lead until it can commit again",
        Problem.APPLY: "is not ready and does not lead until it can apply again",
        Problem.DAMAGED: "is not ready and does not lead until it has synced from a peer",
        Problem.IDENTITY: "refuses to serve",
        Problem.DRAINED: "does not stand for leader (it hands over if it leads)",
        Problem.NEW: "neither votes nor stands until a leader has reached it (or every member is new)",
    }[problem]
