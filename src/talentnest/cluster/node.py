"""The owner of who leads: this node's role, term, leader and lease, and the loop that decides them.

Every change of role, term or leader happens here; membership, replication, votes and handover report
to this class (``membership.Owner``, ``protocols.Node``) and it decides. The loop (``run_cycle``)
reloads the members, probes them, builds a ``ClusterView``, asks the pure ``elect`` what to do, does
it, and returns what it actually did. Long work runs beside the loop, one job at a time.

Timing, from HEARTBEAT_INTERVAL ``h``: the lease lasts ``2.5h`` from the acknowledgements of a
majority; a follower votes for a new leader only after ``3h`` without a message from the old one
(or once nothing listens at its address), so a lease has always lapsed before a successor is elected.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from talentnest.cluster import auth, control, handover, lifecycle, status, wire
from talentnest.cluster.gate import WriteGate
from talentnest.cluster.health import Health
from talentnest.cluster.lease import Lease, check_timing
from talentnest.cluster.membership import Membership, PeerState
from talentnest.cluster.protocols import LoopState, Member, Replicator
from talentnest.cluster.runtime import Runtime, Transport
from talentnest.cluster.state import DurableState
from talentnest.cluster.storage import StorageCare
from talentnest.cluster.types import ClusterView, Cycle, Role
from talentnest.cluster.waiters import AppliedWaiters
from talentnest.cluster.wire import NodeInfo
from talentnest.cluster.work import Job, Worker
from talentnest.config import Settings
from talentnest.store import Database, iso_from_epoch

log = logging.getLogger("talentnest.cluster")


class ClusterNode:
    """This node's part in the cluster."""

    def __init__(self, settings: Settings, db: Database, runtime: Runtime):
        self.settings = settings
        self.db = db
        self.runtime = runtime
        self.clock = runtime.clock
        self.key = auth.keyring_for(settings)
        self.token_keys: Callable[[], tuple[str, ...]] = tuple  # the JWT kids this node accepts (app.py)
        self.heartbeat = settings.heartbeat_interval
        self.suspect_after = 3.0 * self.heartbeat
        self.quorum_mode = settings.replication_mode == "quorum"
        self.state = DurableState(settings.data_dir)
        self.lease = Lease(self.clock.monotonic, 2.5 * self.heartbeat)
        check_timing(lease=self.lease.duration, suspect_after=self.suspect_after)
        self.membership = Membership(
            resolver=runtime.resolver(settings), clock=self.clock.monotonic, wall=self.clock.wall, port=settings.port,
            heartbeat=self.heartbeat, failure_timeout=settings.failure_timeout, owner=self,
            cluster_size=settings.cluster_size if self.quorum_mode else None,  # async mode: voters from DNS
        )  # fmt: skip
        self.membership.scheme = settings.scheme
        self.worker = Worker()
        self.waiters = AppliedWaiters(lambda: db.last_lsn)
        self.gate = WriteGate(self)
        self.health = Health()
        self.incarnation = f"{runtime.random.getrandbits(64):016x}"  # this process, among others with our ID
        self.started_ms = 0
        self.replication: Replicator | None = None  # wired by app.py
        self.maintenance: list[Callable[[], object]] = []  # run by the leader at each periodic election
        self.address: str | None = None
        self.node_id: int = settings.node_id or 0
        self.url = ""
        self.transport_or_none: Transport | None = None  # set by lifecycle.start
        self.role = Role.FOLLOWER
        self.leader_id: int | None = None  # the leader of the current term, once known
        self.leader_url: str | None = None
        self._refused_term = 0  # the last term refused as out of reach (logged once)
        self._heard_at: float | None = None  # when a leader (of any term) last reached us, or we voted
        self._heard_from: int | None = None
        self.stopping = False
        self.loop = LoopState(self.clock.monotonic())
        self.events: deque[dict[str, Any]] = deque(maxlen=100)
        self.elections_won = self.elections_lost = self.leader_changes = 0
        self._last_leader: int | None = None
        self._wake = asyncio.Event()
        self._leader_changed = asyncio.Event()
        self.loop_task: asyncio.Task | None = None  # the control loop (lifecycle.start)
        db.add_commit_listener(self.waiters.committed)
        db.add_commit_listener(self.health.committed)
        self.care = StorageCare(self)
        db.add_failure_listener(self.care.failed)

    @property
    def term(self) -> int:
        return self.state.current.term

    @property
    def transport(self) -> Transport:
        if self.transport_or_none is None:
            raise RuntimeError("the node has not started")
        return self.transport_or_none

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self, *, run_loop: bool = True) -> None:
        """Find this node's address and start the loop; returns once it has joined (a node alone leads
        at once). A node can be started again after ``stop``, in another event loop. Without
        ``run_loop`` the caller runs the cycles itself (``run_cycle``), as unit tests do."""
        self._reset_runtime()
        await lifecycle.start(self, run_loop=run_loop)

    def _reset_runtime(self) -> None:
        self.stopping = False
        self.role = Role.FOLLOWER
        self.leader_id = self.leader_url = self._heard_at = self._heard_from = None
        self.loop = LoopState(self.clock.monotonic())
        self.membership.reset()
        self.lease.clear()
        self.waiters.reset()
        self.worker = Worker()
        self._wake = asyncio.Event()
        self._leader_changed = asyncio.Event()
        if self.replication is not None:
            self.replication.reset()

    async def stop(self) -> None:
        self.stopping = True
        await lifecycle.stop(self)

    async def leave(self, drain_timeout: float = 5.0) -> None:
        """Graceful stop (SIGTERM): refuse new writes, drain replication if leading, tell the peers."""
        self.stopping = True
        if self.transport_or_none is not None:
            await handover.leave(self, drain_timeout)

    def run_job(self, job: Job, work: Coroutine[Any, Any, Any]) -> bool:
        return self.worker.start(job, work)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        self.worker.spawn(work, name)

    def wake(self) -> None:
        self._wake.set()

    def wake_event(self) -> asyncio.Event:
        return self._wake

    def record_event(self, kind: str, text: str) -> None:
        self.events.append({"ts": iso_from_epoch(self.clock.wall()), "kind": kind, "term": self.term, "text": text})

    # --- the loop (control.py) -----------------------------------------------------------

    async def run_cycle(self) -> Cycle:
        """Reload members, probe them, decide, act; return what was done."""
        return await control.run_cycle(self)

    def view(self, *, periodic: bool = False) -> ClusterView:
        return control.view(self, periodic=periodic)

    def voters(self) -> int:
        """Members whose majority is needed. A peer that said it does not vote (it has no durable state
        yet: a joiner, or a lost disk) is a learner and is not counted, unless this node does not vote
        either (a cluster being created counts everyone): a lone leader joined by a new node keeps
        leading (docs/cluster.md, "Membership"). Quorum mode counts ``CLUSTER_SIZE`` whatever happens."""
        total = self.membership.voters()
        if self.membership.cluster_size or not self.health.may_vote:
            return total
        return total - sum(1 for p in self.membership.peers.values() if p.info is not None and not p.info.votes)

    def members(self) -> Sequence[Member]:
        return [
            Member(p.address, p.url, p.id, p.last_lsn if p.last_ok is not None else None) for p in self.membership.peers.values()
        ]

    def members_alive(self) -> int:  # this node plus the members that answer now (a shared allowance)
        return self.membership.reachable()

    def lease_expiry(self) -> float:
        return self.lease.expiry(self.voters(), self.membership.peers)

    def lease_valid(self, now: float | None = None) -> bool:
        return (self.clock.monotonic() if now is None else now) < self.lease_expiry()

    def lease_acknowledged(self, address: str, sent_at: float) -> None:
        if self.role == Role.LEADER:
            self.lease.acknowledge(address, sent_at)

    @property
    def heard_from(self) -> int | None:  # the leader (or candidate voted for) that last reached this node
        return self._heard_from

    def leader_changed(self) -> asyncio.Event:
        """Set at the next change of leader (a fresh event each time)."""
        return self._leader_changed

    def leader_alive(self, now: float | None = None) -> bool:
        """A leader reached this node within ``3h`` (or it voted that recently), and its process is
        not known to be gone. Until then this node neither stands nor votes for anyone else."""
        if self._heard_at is None or self._heard_from == self.node_id:
            return False
        leader = self.membership.by_id(self._heard_from)
        if leader is not None and (leader.refused or leader.left):
            return False
        return (self.clock.monotonic() if now is None else now) - self._heard_at < self.suspect_after

    # --- what membership tells us (membership.Owner) ----------------------------------------

    def is_leader(self) -> bool:
        return self.role == Role.LEADER

    def self_info(self) -> NodeInfo:
        return status.self_info(self)

    def peer_said(self, peer: PeerState | None, info: NodeInfo, probe_sent_at: float | None) -> None:
        if info.id == self.node_id and info.url != self.url:
            ours = (self.started_ms, self.incarnation)
            if self.health.clash(self.node_id, self.url, ours, info, self.clock.monotonic()) and self.role == Role.LEADER:
                self.step_down("stepped down: another node has this node's ID")
            return
        if peer is None:
            return  # not a member (discovery does not list it): its term and leader move nothing here
        if info.term > self.term and not self.adopt_term(info.term, f"node {info.id} is in term {info.term}"):
            return
        if probe_sent_at is not None and info.term == self.term and info.leader_id == self.node_id:
            # Only a follower that counts this node its leader renews the lease (simulator seed 986).
            self.lease_acknowledged(peer.address, probe_sent_at)
        if info.term == self.term and info.role == Role.LEADER and info.id != self.node_id:
            if self.role == Role.LEADER and info.id < self.node_id:
                log.error(
                    "election: term %d: node %d also claims to lead; it has the lower ID and must step down", self.term, info.id
                )
                return
            self.heard_from_leader(info.id, info.url or (peer.url if peer else ""))

    def peer_lost(self, peer: PeerState, why: str, *, gone: bool) -> None:
        self.gate.leader_suspected(peer.url)
        if peer.id == self._heard_from and self.role != Role.LEADER and gone:
            self._heard_at = None  # known gone (its lease went with its process), even once it is no member
            self.record_event("leader_lost", f"leader {peer.id} {why}")
            log.info("election: term %d: leader %d %s; looking for a new leader", self.term, peer.id, why)
            self.wake()

    def peer_back(self, peer: PeerState) -> None:
        if self.replication is not None:
            self.replication.peer_back(peer.address)

    def members_changed(self) -> None:
        self.state.save_members(tuple(self.membership.peers))
        if self.replication is not None:
            self.replication.members_changed()

    # --- terms and roles -------------------------------------------------------------------

    def term_in_reach(self, term: int) -> bool:
        return term - self.term <= wire.MAX_TERM_STEP

    def adopt_term(self, term: int, why: str) -> bool:
        """A later term exists: move to it and stop leading (fencing). Whether a leader was heard from
        recently is kept: it still holds this node's vote back (leader stickiness). A term further
        ahead than ``wire.MAX_TERM_STEP`` is refused (logged once per term): False."""
        if term <= self.term:
            return True
        if not self.term_in_reach(term):
            if term != self._refused_term:
                self._refused_term = term
                log.warning(
                    "election: term %d: refused term %d (%s): more than %d above this node's", self.term, term, why,
                    wire.MAX_TERM_STEP,
                )  # fmt: skip
            return False
        was = self.role
        self.state.save(term, None)
        self.lease.clear()
        if was in (Role.LEADER, Role.CANDIDATE):
            self._become_follower(None, f"stepped down: {why}")
        else:
            self.leader_id = self.leader_url = None
        if self.replication is not None:
            self.replication.term_changed()
        return True

    def heard_from_leader(self, leader_id: int, leader_url: str) -> None:
        self.follow(leader_id, leader_url)
        self._heard_at, self._heard_from = self.clock.monotonic(), leader_id

    def follow(self, leader_id: int, leader_url: str | None) -> None:
        if self.leader_id == leader_id and self.role == Role.FOLLOWER:
            return
        if self.role != Role.FOLLOWER:
            self._become_follower(leader_id, f"node {leader_id} leads term {self.term}", leader_url)
            return
        previous, self.leader_id, self.leader_url = self.leader_id, leader_id, leader_url
        self._count_leader(leader_id)
        text = f"term {self.term}: leader is {leader_id} ({leader_url}); this node {self.node_id} follows"
        if previous is not None and previous != leader_id:
            text += f" (previous leader {previous})"
        self._announce(text)

    def _set_role(self, role: Role) -> None:
        if role != self.role:
            previous, self.role = self.role, role
            log.info("role: node %d is now %s (was %s) in term %d", self.node_id, role.value, previous.value, self.term)

    def _count_leader(self, leader_id: int | None) -> None:
        if leader_id is not None and leader_id != self._last_leader:
            if self._last_leader is not None:
                self.leader_changes += 1
            self._last_leader = leader_id

    def _announce(self, text: str) -> None:
        log.info("election: %s", text)
        self.record_event("election", text)
        self._leader_changed.set()
        self._leader_changed = asyncio.Event()

    # --- health ----------------------------------------------------------------------------

    def may_lead(self) -> bool:
        """Eligible to lead (health), a new node included while no member holds data yet."""
        empty = self.db.last_lsn == 0 and all(p.last_lsn == 0 for p in self.membership.peers.values())
        return self.health.eligible_if(bootstrapping=empty)

    def snapshot_installed(self) -> None:
        self.care.snapshot_installed()

    def reached_by_leader(self) -> None:
        self.care.reached_by_leader()

    def _become_leader(self, votes: int) -> None:
        self.care.reached_by_leader()  # a majority accepted this node's log as the cluster's
        self._set_role(Role.LEADER)
        self._count_leader(self.node_id)
        self.leader_id, self.leader_url = self.node_id, self.url
        self._heard_at = self._heard_from = None
        self.db.term, self.db.epoch = self.term, self.runtime.random.getrandbits(63) or 1
        self._announce(f"term {self.term}: leader is {self.node_id} ({self.url}), elected with {votes} of {self.voters()} votes")
        if self.replication is not None:
            self.replication.start_leading()
        self.wake()  # announce at once with a heartbeat round

    def step_down(self, why: str) -> None:
        """Stop leading (a handover, a shutdown) without knowing the next leader yet."""
        self._become_follower(None, why)

    def _become_follower(self, leader_id: int | None, why: str, leader_url: str | None = None) -> None:
        was_leader = self.role == Role.LEADER
        self._set_role(Role.FOLLOWER)
        self._count_leader(leader_id)
        self.leader_id, self.leader_url = leader_id, leader_url
        if leader_id is not None:
            self._heard_at, self._heard_from = self.clock.monotonic(), leader_id
        text = f"term {self.term}: node {self.node_id} {why}"
        self._announce(text + (f"; leader is {leader_id} ({leader_url})" if leader_id is not None else ""))
        if was_leader and self.replication is not None:
            self.spawn(self.replication.stop_leading(), "stop-leading")

    # --- candidacy (the vote rounds themselves are in votes.py) -----------------------------

    def begin_candidacy(self) -> int:
        """Stand for the next term: persist it with this node's own vote, then ask. The new term."""
        term = self.term + 1
        self.state.save(term, self.node_id)
        self.lease.clear()
        self._set_role(Role.CANDIDATE)
        self.leader_id = self.leader_url = None
        return term

    def end_candidacy(self, term: int, granted: Sequence[str], sent_at: float, votes: int) -> bool:
        """Lead ``term`` when a majority granted (``granted``: the addresses that did, ``votes`` with
        ours), if nothing moved this node on meanwhile; else go back to following. Whether it leads."""
        if self.term != term or self.role != Role.CANDIDATE:
            self.elections_lost += 1
            return False
        if votes <= self.voters() // 2:
            self.elections_lost += 1
            self._set_role(Role.FOLLOWER)
            return False
        self.elections_won += 1
        for address in granted:
            self.lease.acknowledge(address, sent_at)  # each set its wait for us when it granted
        self._become_leader(votes)
        return True

    def record_vote(self, candidate: int) -> None:
        """Persist a vote for ``candidate`` in the current term (before the answer leaves), and give it
        time to announce itself before this node stands or votes for another."""
        self.state.save(self.term, candidate)
        self._heard_at, self._heard_from = self.clock.monotonic(), candidate

    def current_leader_url(self) -> str | None:
        """Where writes go: this node when it leads, else the current term's leader while it is alive."""
        if self.role == Role.LEADER:
            return self.url
        return self.leader_url if self.leader_id is not None and self.leader_alive() else None

    def readiness(self) -> tuple[bool, str]:
        return status.readiness(self)

    def status(self) -> dict[str, Any]:
        return status.render(self)
