"""The contracts inside the cluster core: between the node (who leads, in which term) and replication
(moving the log), and between the node and its helpers (loop, votes, handover, gate, status).

The node owns role, term, leader and the lease; replication owns the streams, the follower's apply
and its position. Each side sees the other only through these Protocols, and every method says what
happens when it cannot do its part.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from talentnest.cluster.health import Health
from talentnest.cluster.logwire import ReplicateReply
from talentnest.cluster.membership import Membership
from talentnest.cluster.runtime import Clock, Transport
from talentnest.cluster.state import DurableState
from talentnest.cluster.types import Role
from talentnest.cluster.waiters import AppliedWaiters
from talentnest.cluster.wire import NodeInfo
from talentnest.cluster.work import Job, Worker
from talentnest.config import Settings
from talentnest.store import Database


@dataclass
class LoopState:
    """What the control loop remembers between cycles (written by control.py only)."""

    last_election: float
    last_campaign: float | None = None


@dataclass(frozen=True)
class Member:
    """A peer replication streams to: where it is, and the last LSN its heartbeats reported (None
    before it has answered one)."""

    address: str
    url: str
    node_id: int
    reported_lsn: int | None


class Node(Protocol):
    """What replication needs of the node."""

    node_id: int
    url: str
    clock: Clock
    heartbeat: float
    settings: Settings
    leader_id: int | None  # the current term's leader, once known

    @property
    def term(self) -> int: ...

    @property
    def transport(self) -> Transport:
        """The signed peer client (raises RuntimeError before the node has started)."""

    def is_leader(self) -> bool: ...

    def members(self) -> Sequence[Member]: ...

    def voters(self) -> int: ...

    def adopt_term(self, term: int, why: str) -> bool:
        """A peer is in a later ``term``: move to it and stop leading (fencing). Never fails; a term
        that is not later is ignored, one beyond :meth:`term_in_reach` refused (False)."""

    def term_in_reach(self, term: int) -> bool:
        """Whether a peer's ``term`` may be taken: at most ``wire.MAX_TERM_STEP`` above this node's."""

    def heard_from_leader(self, leader_id: int, leader_url: str) -> None:
        """A leader of the current term sent something this node accepted: follow it, and restart the
        wait before this node may vote for another."""

    def lease_acknowledged(self, address: str, sent_at: float) -> None:
        """A follower accepted, in the current term, what this leader sent at ``sent_at``."""

    def run_job(self, job: Job, work: Coroutine[Any, Any, Any]) -> bool:
        """Start long work (one at a time); False if another job runs (``work`` is then dropped)."""

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None: ...

    def record_event(self, kind: str, text: str) -> None: ...

    def wake(self) -> None:
        """Run the control loop's next cycle now (after a sync, a catch-up...)."""

    def snapshot_installed(self) -> None:
        """A peer's snapshot replaced this node's data (whatever was set aside is replaced now)."""

    def reached_by_leader(self) -> None:
        """The current leader's history was checked to contain this node's log."""


class Replicator(Protocol):
    """What the node needs of replication."""

    @property
    def in_sync(self) -> bool:
        """As follower: holds everything its leader has, as the last batch said."""

    def reset(self) -> None:
        """Fresh runtime state for a (re)start in a new event loop."""

    def start_leading(self) -> None:
        """This node leads the current term: stream to every member."""

    async def stop_leading(self) -> None:
        """Stop every stream and fail every write waiting for a quorum (they answer "not acknowledged")."""

    def members_changed(self) -> None: ...

    def peer_back(self, address: str) -> None:
        """A member answers again (perhaps a new process): check its history and position now."""

    def term_changed(self) -> None:
        """A new term: whatever the follower side confirmed of the old leader's history is void."""

    def history_confirmed(self) -> bool:
        """As follower: this node has checked, in the current term, that its log is a prefix of the
        leader's (so what it serves at an LSN is what the leader holds there)."""

    def match_lsn(self, address: str) -> int | None:
        """As leader: the last LSN the member at ``address`` holds, None without a stream to it."""

    async def wait_quorum(self, lsn: int, term: int, timeout: float) -> bool:
        """True once a majority of the voters holds ``lsn`` while this node still leads ``term``;
        False after ``timeout`` or as soon as it stops leading."""

    def hurry(self, lsn: int, node_id: int | None = None) -> None:
        """As leader: somebody waits for ``lsn`` to reach node ``node_id`` (None: every member), so its
        stream sends it without lingering."""

    def carried(self, held: int, lsn: int) -> bytes | None:
        """As leader: the replicate body of the entries after ``held`` up to ``lsn`` (for a forwarded write's
        answer), None when there are too many or they cannot be read."""

    async def on_replicate_body(self, body: bytes) -> ReplicateReply:
        """As follower: take one replicate body from a leader, as ``/cluster/replicate`` does (raises
        InvalidInput for a malformed one or a term out of reach)."""

    async def flush_to(self, address: str, timeout: float) -> bool:
        """True once the member at ``address`` holds every entry written so far; False after ``timeout``."""

    async def drain(self, timeout: float) -> dict[str, int]:
        """Wait (bounded) until every reachable member holds the last entry; the lags left, by address."""

    def catch_up(self, url: str, source_id: int, why: str) -> Coroutine[Any, Any, None]:
        """Before leading: pull what the peer at ``url`` holds beyond this log (its log, or a snapshot).
        Failures are logged, never raised; the node decides again at its next cycle."""

    def status(self) -> dict[str, Any]: ...


CommitListener = Callable[[int], None]


class Core(Protocol):
    """What the node's helpers (the control loop, votes, handover, the write gate, status) see of it:
    its state, read as it is, and the transitions only the node performs."""

    node_id: int
    url: str
    address: str | None
    heartbeat: float
    quorum_mode: bool
    stopping: bool
    role: Role
    leader_id: int | None
    leader_url: str | None
    settings: Settings
    clock: Clock
    db: Database
    state: DurableState
    membership: Membership
    worker: Worker
    waiters: AppliedWaiters
    replication: Replicator | None
    maintenance: list[Callable[[], object]]
    token_keys: Callable[[], tuple[str, ...]]  # the JWT kids this node accepts (for NodeInfo)
    loop: LoopState
    health: Health
    incarnation: str
    started_ms: int

    @property
    def term(self) -> int: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def heard_from(self) -> int | None: ...

    @property
    def gate(self) -> Any: ...

    def voters(self) -> int: ...

    def is_leader(self) -> bool: ...

    def may_lead(self) -> bool: ...

    def leader_alive(self, now: float | None = None) -> bool: ...

    def lease_valid(self, now: float | None = None) -> bool: ...

    def lease_expiry(self) -> float: ...

    def current_leader_url(self) -> str | None: ...

    def leader_changed(self) -> asyncio.Event: ...

    def wake_event(self) -> asyncio.Event: ...

    def self_info(self) -> NodeInfo: ...

    def run_job(self, job: Job, work: Coroutine[Any, Any, Any]) -> bool: ...

    def adopt_term(self, term: int, why: str) -> bool: ...

    def term_in_reach(self, term: int) -> bool: ...

    def step_down(self, why: str) -> None: ...

    def begin_candidacy(self) -> int: ...

    def end_candidacy(self, term: int, granted: Sequence[str], sent_at: float, votes: int) -> bool: ...

    def record_vote(self, candidate: int) -> None: ...

    def record_event(self, kind: str, text: str) -> None: ...
