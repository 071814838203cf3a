"""Deliberately broken variants of the core, applied by the simulator itself by patching.

Nothing here is a switch in production code: each mutant is one small function that replaces one
piece of today's core for the length of a run (``applied(name)``) and puts it back after. A run with a
mutant must fail; the same seed without it must pass. Each names, in its docstring, the property it
breaks, so that the invariant expected to catch it is known. Written against the split core (main
at 05ec5f9): ``cluster/node.py`` ``ClusterNode.record_vote`` and ``lease``, ``cluster/control.py``
``elect``, ``cluster/votes.py`` ``grant_vote``, ``cluster/follower.py`` ``FollowerSide.on_replicate``,
``store/_db.py`` ``Database.apply``, ``cluster/gate.py`` ``WriteGate.apply_carried``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from talentnest.cluster import control, votes
from talentnest.cluster.follower import FollowerSide
from talentnest.cluster.gate import WriteGate
from talentnest.cluster.logwire import ReplicateReply, ReplicateRequest, decode_replicate
from talentnest.cluster.node import ClusterNode
from talentnest.store import ApplyResult, Database
from talentnest.store import _db as store_db

Patch = list[tuple[Any, str, Any]]  # (owner, attribute, replacement)


def vote_not_persisted() -> Patch:
    """``ClusterNode.record_vote`` keeps the vote it grants in memory only: a voter that restarts
    forgets it and may vote again, for another candidate, in a term it already voted in.
    Breaks: a granted vote is durable before its answer leaves (``vote_not_durable``), and through it
    ``one_leader_per_term``."""
    original = ClusterNode.record_vote

    def record_vote(self: ClusterNode, candidate: int) -> None:
        state = self.state

        def remember(term: int, voted_for: int | None) -> None:
            state.current = dataclasses.replace(state.current, term=term, voted_for=voted_for)

        state.save = remember  # shadows DurableState.save on this one object, for this call
        try:
            original(self, candidate)
        finally:
            del state.save

    return [(ClusterNode, "record_vote", record_vote)]


def lease_outlives_timeout() -> Patch:
    """The leader's lease lasts two heartbeats longer than the followers' timeout (after which they
    stop waiting for it and elect another), set after ``lease.check_timing`` has passed: a leader cut
    off from its followers keeps writing while its successor writes too. Breaks: ``lease_overlap``
    (commits in time order go down in term)."""
    original = ClusterNode.__init__

    def __init__(self: ClusterNode, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.lease.duration = self.suspect_after + 2 * self.heartbeat

    return [(ClusterNode, "__init__", __init__)]


def apply_skips_lsn_check() -> Patch:
    """``Database.apply`` applies every entry it is given, in LSN order, without checking it against
    the LSN it has applied, and takes the batch's last entry as its position (its log takes an entry
    again over the one it holds): a batch that arrives twice, or late, applies its rows again over
    newer ones and moves the node's LSN back. Breaks: ``lsn_backwards`` (a node's LSN goes down with
    nothing archived), and ``no_convergence``."""

    def apply(self: Database, entries, *, sender_term: int | None = None, current_term: int | None = None) -> ApplyResult:
        todo = sorted(entries, key=lambda e: e.lsn)
        if todo:
            self._apply_entries(todo)
        return ApplyResult(self.last_lsn, len(todo), False)

    insert_log = store_db._INSERT_LOG.replace("INSERT INTO", "INSERT OR REPLACE INTO")
    return [(Database, "apply", apply), (store_db, "_INSERT_LOG", insert_log)]


def candidate_ignores_log_freshness() -> Patch:
    """The highest ID leads at once, whatever it holds: ``elect`` never decides to catch up from a peer
    that holds newer data (its CATCH_UP rule), and ``grant_vote`` grants without comparing the
    candidate's log with the voter's (its BEHIND rule). A node that comes back with old data leads and
    overwrites what the others acknowledged. Breaks: ``acked_write_lost`` (quorum mode),
    ``divergent_not_archived``/``no_convergence``."""
    original_elect = control.elect
    original_grant = votes.grant_vote

    def elect(view):
        if view.role != "leader":
            peers = tuple(dataclasses.replace(p, last_lsn=view.last_lsn, last_term=view.last_term) for p in view.peers)
            view = dataclasses.replace(view, peers=peers)
        return original_elect(view)

    def grant_vote(request, voter):
        return original_grant(dataclasses.replace(request, last_term=voter.last_term, last_lsn=voter.last_lsn), voter)

    return [(control, "elect", elect), (votes, "grant_vote", grant_vote)]


def ack_before_commit() -> Patch:
    """A follower answers a replicate batch as applied as soon as it arrives, and applies it after
    the answer has left (or never, if it crashes first or the batch does not fit). In quorum mode the
    leader counts it towards the majority. Breaks: ``ack_beyond_commit`` (a follower acknowledges an
    LSN it has not committed), and through it ``acked_write_lost``."""
    original = FollowerSide.on_replicate

    async def on_replicate(self: FollowerSide, request, *, syncing: bool):
        if not request.entries or self.node.is_leader():
            return await original(self, request, syncing=syncing)
        self.node.spawn(original(self, request, syncing=syncing), "apply-after-answer")
        last = max(e.lsn for e in request.entries)
        return ReplicateReply(term=max(self.node.term, request.term), success=True, applied_lsn=last, reason="applied")

    return [(FollowerSide, "on_replicate", on_replicate)]


def carried_unchecked() -> Patch:
    """A follower applies the entries a leader's answer to its forwarded write carried straight to its
    database, without the replicate path's checks of term, history and position (``WriteGate.apply_carried``
    as if it were trusted data). A deposed leader's answer then puts its own history into the follower,
    which relays that write as a success, and the follower's own entries are overwritten when it resyncs.
    Breaks: ``divergent_not_archived`` (entries a node held vanish without an archive), ``acked_write_lost``."""

    async def apply_carried(self: WriteGate, body: bytes) -> None:
        request = ReplicateRequest.parse(decode_replicate(body))
        fresh = [e for e in request.entries if e.lsn > self.node.db.last_lsn]
        if fresh and fresh[0].lsn == self.node.db.last_lsn + 1:
            self.node.db.apply(fresh)

    return [(WriteGate, "apply_carried", apply_carried)]


MUTANTS: dict[str, Callable[[], Patch]] = {
    "vote-not-persisted": vote_not_persisted,
    "lease-outlives-timeout": lease_outlives_timeout,
    "apply-skips-lsn-check": apply_skips_lsn_check,
    "candidate-ignores-log-freshness": candidate_ignores_log_freshness,
    "ack-before-commit": ack_before_commit,
    "carried-unchecked": carried_unchecked,
}


def describe(name: str) -> str:
    """The first sentence of the mutant's docstring."""
    doc = (MUTANTS[name].__doc__ or "").strip()
    return " ".join(doc.split("Breaks:")[0].split())


def breaks(name: str) -> str:
    doc = " ".join((MUTANTS[name].__doc__ or "").split())
    return doc.split("Breaks:", 1)[1].strip() if "Breaks:" in doc else ""


@contextlib.contextmanager
def applied(name: str | None) -> Iterator[None]:
    """Apply mutant ``name`` (None: none) for the length of the block."""
    if name is None:
        yield
        return
    if name not in MUTANTS:
        raise ValueError(f"unknown mutant '{name}'; known: {', '.join(MUTANTS)}")
    patch = MUTANTS[name]()
    saved = [(owner, attribute, vars(owner)[attribute]) for owner, attribute, _ in patch]
    try:
        for owner, attribute, replacement in patch:
            setattr(owner, attribute, replacement)
        yield
    finally:
        for owner, attribute, original in saved:
            setattr(owner, attribute, original)
