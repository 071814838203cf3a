"""One node's membership, health probes, election loop, leadership lease, votes and status.

The loop (``run_cycle``) reloads the member list from DNS, probes every member, builds a
``ClusterView``, asks the pure ``elect`` what to do and does it; it returns what it did in words.
Long work (catching up, syncing) runs beside the loop, never inside it.

Timing, from HEARTBEAT_INTERVAL ``h``: a probe waits ``0.8h``; a peer unheard for ``3h`` (or
whose connection was refused) is suspected and cannot lead; a leader keeps its lease while a
majority answered one of its probes sent within the last ``2.5h``. A follower only votes for a
new leader once it has not heard from the old one for ``3h``, after the old lease has lapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections import deque
from typing import Any

from talentnest.cluster import auth
from talentnest.cluster.discovery import detect_address, fallback_address, node_id_for
from talentnest.cluster.election import elect
from talentnest.cluster.runtime import Runtime, Transport
from talentnest.cluster.state import DurableState
from talentnest.cluster.transport import PeerRefused
from talentnest.cluster.types import Action, ClusterView, Decision, PeerState, PeerView, Role
from talentnest.config import Settings
from talentnest.errors import NoLeader, NotLeader, PeerUnreachable
from talentnest.store import Database, iso_from_epoch

log = logging.getLogger("talentnest.cluster")

# How long a write's answer is kept for a retry with the same Idempotency-Key.
IDEMPOTENCY_TTL = 24 * 3600


class ClusterNode:
    """This node's view of the cluster and its part in it."""

    def __init__(self, settings: Settings, db: Database, runtime: Runtime):
        self.settings = settings
        self.db = db
        self.runtime = runtime
        self.clock = runtime.clock.monotonic
        self.wall = runtime.clock.wall
        self.key = auth.cluster_key(jwt_secret=settings.jwt_secret, cluster_secret=settings.cluster_secret)
        h = settings.heartbeat_interval
        self.heartbeat = h
        self.probe_timeout = 0.8 * h
        self.suspect_after = 3.0 * h
        self.lease_duration = 2.5 * h
        self.failure_timeout = settings.failure_timeout
        self.quorum_mode = settings.replication_mode == "quorum"
        self.state = DurableState(settings.data_dir)
        self.discovery = runtime.resolver(settings)
        self.address: str | None = None
        self.node_id: int = settings.node_id or 0
        self.url = ""
        self.client: Transport | None = None
        self.role = Role.FOLLOWER
        self.leader_id: int | None = None
        self.leader_url: str | None = None
        self.peers: dict[str, PeerState] = {}
        self.listed: list[str] = []
        self.heard_from_leader: float | None = None
        self.rounds = 0
        self.syncing = False
        self.handing_over = False
        self.stopping = False
        self.campaigning = False
        self.last_campaign: float | None = None
        self.last_election = self.clock()
        self.events: deque[dict[str, Any]] = deque(maxlen=100)
        # Counters for /metrics (read-only elsewhere): elections this node stood in, and changes of leader it saw.
        self.elections_won = 0
        self.elections_lost = 0
        self.leader_changes = 0
        self._last_leader: int | None = None
        self.replication: Any = None  # set by app wiring (cluster.replication.Replication)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._side_tasks: set[asyncio.Task] = set()
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._waiter_seq = itertools.count()
        self._leader_changed = asyncio.Event()
        db.add_commit_listener(self._on_commit)

    # --- identity and lifecycle ------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.state.current.term

    def _resolve_identity(self, listed: list[str], address: str | None = None) -> bool:
        address = address or detect_address(advertise=self.settings.advertise_address, host=self.settings.host, listed=listed)
        if address is None:
            return False
        self.address = address
        self.node_id = self.settings.node_id if self.settings.node_id is not None else node_id_for(address)
        self.url = f"http://{address}:{self.settings.port}"
        return True

    async def start(self) -> None:
        """Find this node's address and start the membership loop (returns once it has joined).

        A node can be started again after ``stop`` (in another event loop, as test clients do).
        """
        self._reset_runtime()
        listed = await self.discovery.resolve()
        if not self._resolve_identity(listed):
            address = fallback_address()
            log.warning(
                "cluster: no DNS record or host name tells this node's address; advertising %s "
                "(set ADVERTISE_ADDRESS if peers reach this node elsewhere)",
                address,
            )
            self._resolve_identity(listed, address)
        self.client = self.runtime.transport(self.key, self.address)
        await self.client.start()
        self.db.write_guard = self.guard_write
        if self.db.last_term > self.term:
            # A snapshot or a restored file can hold a newer term than our state file remembers.
            self.state.save(self.db.last_term, None)
        log.info(
            "cluster: node %d at %s (members from %s, term %d, LSN %d)",
            self.node_id,
            self.url,
            self.discovery.source,
            self.term,
            self.db.last_lsn,
        )
        await self.refresh_members()
        if not any(p.listed for p in self.peers.values()):
            # Alone in the member list: lead at once, so a single node serves writes from its first request.
            await self.campaign(handover_from=None)
        self._task = asyncio.create_task(self._loop(), name="cluster-loop")
        self._task.add_done_callback(self._loop_ended)

    def _reset_runtime(self) -> None:
        self.stopping = self.handing_over = self.campaigning = self.syncing = False
        self.role = Role.FOLLOWER
        self.leader_id = self.leader_url = None
        self.heard_from_leader = None
        self.rounds = 0
        self.last_election = self.clock()
        self._wake = asyncio.Event()
        self._leader_changed = asyncio.Event()
        self._waiters = []
        self._side_tasks = set()
        if self.replication is not None:
            self.replication.reset()

    def _loop_ended(self, task: asyncio.Task) -> None:
        if self.stopping:
            return
        error = None if task.cancelled() else task.exception()
        log.critical("cluster: the membership loop ended unexpectedly (%r); this node can no longer take part", error)

    async def stop(self) -> None:
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=2)
        for task in list(self._side_tasks):
            task.cancel()
        for task in list(self._side_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.replication is not None:
            await self.replication.stop_leading()
        if self.client is not None:
            await self.client.close()

    def spawn(self, coro, name: str) -> asyncio.Task:
        """Run long work beside the loop; its failure is logged, never silent."""
        task = asyncio.create_task(coro, name=name)
        self._side_tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._side_tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("cluster: %s failed: %s", name, t.exception())

        task.add_done_callback(done)
        return task

    def wake(self) -> None:
        self._wake.set()

    def _set_role(self, role: Role) -> None:
        """Change role; every change is one log line."""
        if role == self.role:
            return
        previous, self.role = self.role, role
        log.info("role: node %d is now %s (was %s) in term %d", self.node_id, role.value, previous.value, self.term)

    def _count_leader(self, leader_id: int | None) -> None:
        if leader_id is not None and leader_id != self._last_leader:
            if self._last_leader is not None:
                self.leader_changes += 1
            self._last_leader = leader_id

    def record_event(self, kind: str, text: str) -> None:
        self.events.append({"ts": iso_from_epoch(self.wall()), "kind": kind, "term": self.term, "text": text})

    # --- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self.stopping:
            started = self.clock()
            try:
                sentence = await self.run_cycle()
                if sentence:
                    log.debug("cluster: %s", sentence)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster: membership cycle failed; retrying next heartbeat")
            now = self.clock()
            delay = max(0.0, self.heartbeat - (now - started))
            if self.role == Role.LEADER:
                # Step down the moment the lease ends, not at the next heartbeat.
                delay = min(delay, max(0.0, self.lease_expiry() - now) + 0.001)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def run_cycle(self) -> str:
        """Reload members, probe them, decide, act; return what was done, in words."""
        if self.role == Role.LEADER and not self.lease_valid():
            # The lease is over: stop claiming leadership before any slow probing.
            return await self.act(elect(self.view()))
        # Probes go to the members known now while DNS is asked again: a slow DNS answer must
        # not delay the heartbeats that keep the lease (new members are probed next round).
        await asyncio.gather(self.refresh_members(), self.probe_peers())
        self.rounds += 1
        now = self.clock()
        periodic = now - self.last_election >= self.settings.election_interval
        if periodic:
            self.last_election = now
        decision = elect(self.view(periodic=periodic))
        sentence = await self.act(decision)
        if periodic:
            self.expire_idempotency_keys()
        return sentence

    def expire_idempotency_keys(self, now: float | None = None) -> int:
        """On the leader: forget Idempotency-Key answers older than a day (a replicated delete)."""
        if not self.accepting_writes():
            return 0
        removed = self.db.expire_requests((self.wall() if now is None else now) - IDEMPOTENCY_TTL)
        if removed:
            log.info("maintenance: forgot %d idempotency keys older than %d h", removed, IDEMPOTENCY_TTL // 3600)
        return removed

    async def refresh_members(self) -> None:
        listed = await self.discovery.resolve()
        if self.address and self.address not in listed and not self.discovery.static:
            # Our own record may lag (DNS caches, start-up); we are a member all the same.
            listed = sorted([*listed, self.address])
        listed_set = set(listed)
        now = self.clock()
        for address in listed:
            if address == self.address or address in self.peers:
                continue
            self.peers[address] = PeerState(
                id=node_id_for(address), address=address, url=f"http://{address}:{self.settings.port}", first_seen=now
            )
            log.info("membership: node %d (%s) is listed", node_id_for(address), address)
        for address, peer in list(self.peers.items()):
            was_listed = peer.listed
            peer.listed = address in listed_set
            if was_listed and not peer.listed:
                log.info("membership: node %d (%s) is no longer listed", peer.id, address)
                if peer.id == self.leader_id and self.role != Role.LEADER:
                    self._lose_leader(f"leader {peer.id} left {self.discovery.source}")
            if not peer.listed and not self._alive(peer, now) and now - (peer.last_ok or peer.first_seen) > self.failure_timeout:
                del self.peers[address]
        self.listed = listed
        if self.replication is not None:
            self.replication.members_changed()

    async def probe_peers(self) -> None:
        peers = [p for p in self.peers.values() if p.listed]
        if peers:
            await asyncio.gather(*(self.probe(peer) for peer in peers))

    async def probe(self, peer: PeerState) -> None:
        sent = self.clock()
        try:
            reply = await self.client.call_json(
                "POST", peer.url, "/cluster/heartbeat", self.self_info(), timeout=self.probe_timeout
            )
        except PeerRefused:
            self._mark_refused(peer)
            return
        except PeerUnreachable:
            if peer.alive_since is not None and not self._alive(peer, self.clock()):
                self._mark_down(peer, "stopped answering")
            return
        if reply.status != 200:
            log.warning("membership: node %d answered the heartbeat with HTTP %d", peer.id, reply.status)
            return
        try:
            info = reply.json()
        except ValueError:
            return
        if int(info.get("term", -1)) == self.term:
            peer.lease_ack = sent
        self.observe(info, peer=peer)

    def _mark_refused(self, peer: PeerState, why: str = "refused the connection") -> None:
        first = not peer.refused
        peer.refused = True
        if first and peer.alive_since is not None:
            self._mark_down(peer, why)

    def _mark_down(self, peer: PeerState, why: str) -> None:
        peer.alive_since = None
        log.info("membership: node %d (%s) is suspected: %s", peer.id, peer.address, why)
        if peer.id == self.leader_id and self.role != Role.LEADER:
            self._lose_leader(f"leader {peer.id} {why}")

    def _lose_leader(self, why: str) -> None:
        self.heard_from_leader = None
        self.record_event("leader_lost", why)
        log.info("election: term %d: %s; looking for a new leader", self.term, why)
        self.wake()

    # --- what peers tell us ----------------------------------------------------------------

    def self_info(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "url": self.url,
            "term": self.term,
            "role": self.role.value,
            "leader_id": self.leader_id,
            "last_lsn": self.db.last_lsn,
            "last_term": self.db.last_term,
            "ready": self.ready,
            "leaving": self.stopping,
        }

    def _peer_for(self, info: dict[str, Any]) -> PeerState | None:
        url = info.get("url")
        for peer in self.peers.values():
            if peer.url == url:
                return peer
        return None

    def observe(self, info: dict[str, Any], *, peer: PeerState | None = None, inbound: bool = False) -> None:
        """Take in a peer's state (from its heartbeat, or its answer to ours)."""
        now = self.clock()
        peer = peer or self._peer_for(info)
        try:
            their_id, their_term = int(info["id"]), int(info["term"])
        except (KeyError, TypeError, ValueError):
            return
        if peer is not None and info.get("leaving"):
            # It is shutting down: neither a leader to follow nor one to wait for.
            self._mark_refused(peer, "is shutting down")
            return
        if peer is not None:
            if peer.alive_since is None or peer.refused:
                peer.alive_since = now
                log.info("membership: node %d (%s) answers", their_id, peer.address)
                if self.replication is not None:
                    self.replication.peer_answers(peer.address)
            peer.refused = False
            peer.last_ok = now
            peer.id = their_id
            peer.term = their_term
            peer.role = str(info.get("role", Role.FOLLOWER))
            peer.leader_id = info.get("leader_id")
            peer.last_lsn = int(info.get("last_lsn") or 0)
            peer.last_term = int(info.get("last_term") or 0)
            peer.ready = bool(info.get("ready"))
        if their_term > self.term:
            self.adopt_term(their_term, f"node {their_id} is in term {their_term}")
        if their_term == self.term and info.get("role") == Role.LEADER and their_id != self.node_id:
            if self.role == Role.LEADER and their_id < self.node_id:
                log.error(
                    "election: term %d: node %d also claims to lead; it has the lower ID and must step down", self.term, their_id
                )
                return
            url = info.get("url") or (peer.url if peer else None)
            self.follow(their_id, url)
            self.heard_from_leader = now

    def adopt_term(self, term: int, why: str) -> None:
        """A higher term exists: move to it and step down if leading (fencing)."""
        if term <= self.term:
            return
        was_leader = self.role == Role.LEADER
        self.state.save(term, None)
        if was_leader or self.role == Role.CANDIDATE:
            self._become_follower(None, f"stepped down: {why}")
        else:
            self.leader_id = None
            self.leader_url = None
        if self.replication is not None:
            self.replication.term_changed()

    def follow(self, leader_id: int, leader_url: str | None) -> None:
        if self.leader_id == leader_id and self.role == Role.FOLLOWER:
            return
        if self.role == Role.LEADER:
            self._become_follower(leader_id, f"node {leader_id} leads term {self.term}", leader_url)
            return
        previous = self.leader_id
        self._set_role(Role.FOLLOWER)
        self._count_leader(leader_id)
        self.leader_id = leader_id
        self.leader_url = leader_url
        self._leader_changed.set()
        self._leader_changed = asyncio.Event()
        text = f"term {self.term}: leader is {leader_id} ({leader_url}); this node {self.node_id} follows"
        if previous is not None and previous != leader_id:
            text += f" (previous leader {previous})"
        log.info("election: %s", text)
        self.record_event("election", text)

    # --- decisions -------------------------------------------------------------------------

    def _alive(self, peer: PeerState, now: float) -> bool:
        return peer.last_ok is not None and not peer.refused and now - peer.last_ok < self.suspect_after

    def members_alive(self) -> int:
        """This node plus the listed peers that answer now (what shares a cluster-wide allowance)."""
        now = self.clock()
        return 1 + sum(1 for p in self.peers.values() if p.listed and self._alive(p, now))

    def voters(self) -> int:
        if self.quorum_mode and self.settings.cluster_size:
            return self.settings.cluster_size
        listed = set(self.listed)
        if self.address:
            listed.add(self.address)
        return max(1, len(listed))

    def lease_acknowledged(self, address: str, sent_at: float) -> None:
        """A follower accepted a message sent at ``sent_at`` in our term: the lease holds since then."""
        peer = self.peers.get(address)
        if peer is not None and (peer.lease_ack is None or sent_at > peer.lease_ack):
            peer.lease_ack = sent_at

    def lease_expiry(self) -> float:
        """When the leader's lease ends: a majority (itself included) answered probes sent since
        ``expiry - lease_duration``. Infinite for a cluster of one."""
        needed = self.voters() // 2  # acknowledgements needed besides our own
        if needed == 0:
            return float("inf")
        acks = sorted((p.lease_ack for p in self.peers.values() if p.listed and p.lease_ack is not None), reverse=True)
        if len(acks) < needed:
            return float("-inf")
        return acks[needed - 1] + self.lease_duration

    def lease_valid(self, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        return now < self.lease_expiry()

    def leader_alive(self, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        if self.leader_id is None or self.leader_id == self.node_id:
            return False
        peer = next((p for p in self.peers.values() if p.id == self.leader_id), None)
        if peer is not None and peer.refused:
            return False
        return self.heard_from_leader is not None and now - self.heard_from_leader < self.suspect_after

    def view(self, *, periodic: bool = False) -> ClusterView:
        now = self.clock()
        peers = tuple(
            PeerView(
                id=p.id,
                url=p.url,
                listed=p.listed,
                alive=self._alive(p, now),
                term=p.term,
                role=p.role,
                leader_id=p.leader_id,
                last_lsn=p.last_lsn,
                last_term=p.last_term,
                ready=p.ready,
                alive_for=(now - p.alive_since) if (p.alive_since is not None and self._alive(p, now)) else 0.0,
            )
            for p in self.peers.values()
        )
        return ClusterView(
            self_id=self.node_id,
            role=self.role,
            term=self.term,
            leader_id=self.leader_id,
            last_lsn=self.db.last_lsn,
            last_term=self.db.last_term,
            peers=peers,
            voters=self.voters(),
            leader_alive=self.leader_alive(now),
            lease_valid=self.lease_valid(now),
            syncing=self.syncing,
            discovering=self.rounds < 2 and any(p.listed for p in self.peers.values()),
            periodic=periodic,
            handover_settle=2 * self.heartbeat,
        )

    async def act(self, decision: Decision) -> str:
        if decision.action == Action.STEP_DOWN:
            self._become_follower(None, f"stepped down: {decision.reason}")
        elif decision.action == Action.CAMPAIGN:
            now = self.clock()
            if not self.campaigning and (self.last_campaign is None or now - self.last_campaign >= self.heartbeat):
                self.last_campaign = now
                self.spawn(self.campaign(handover_from=None), "campaign")
        elif decision.action == Action.CATCH_UP and not self.syncing and self.replication is not None:
            peer = next(p for p in self.peers.values() if p.id == decision.target)
            self.spawn(self.replication.catch_up_from(peer.url, peer.id, decision.reason), "catch-up")
        elif decision.action == Action.HANDOVER and not self.handing_over:
            peer = next(p for p in self.peers.values() if p.id == decision.target)
            self.spawn(self.handover(peer), "handover")
        return decision.reason

    # --- leadership ------------------------------------------------------------------------

    async def campaign(self, *, handover_from: int | None) -> bool:
        """Stand for the next term; lead if a majority of the voters grants its vote.

        A pre-vote round first asks whether the peers would vote, without changing any term:
        a node that cannot win never raises the term, so it cannot disrupt a healthy leader.
        """
        if self.campaigning:
            return False
        self.campaigning = True
        try:
            peers = [p for p in self.peers.values() if p.listed]
            request = {
                "term": self.term + 1,
                "candidate_id": self.node_id,
                "candidate_url": self.url,
                "last_lsn": self.db.last_lsn,
                "last_term": self.db.last_term,
                "handover_from": handover_from,
            }
            pre = await self._gather_votes(peers, {**request, "pre_vote": True})
            if self._tally(peers, pre, request["term"], pre_vote=True) is None:
                return False
            if self.role == Role.LEADER or (self.leader_alive() and handover_from is None):
                return False
            term = self.term + 1
            request["term"] = term
            self.state.save(term, self.node_id)
            self._set_role(Role.CANDIDATE)
            self.leader_id = None
            self.leader_url = None
            sent = self.clock()
            answers = await self._gather_votes(peers, request)
            if self.term != term or self.role != Role.CANDIDATE:
                self.elections_lost += 1
                return False
            granted = self._tally(peers, answers, term, pre_vote=False)
            if granted is None:
                self.elections_lost += 1
                self._set_role(Role.FOLLOWER)
                return False
            self.elections_won += 1
            for p in granted:
                p.lease_ack = sent
            self._become_leader(1 + len(granted))
            return True
        finally:
            self.campaigning = False

    def _tally(self, peers: list[PeerState], answers: list, term: int, *, pre_vote: bool) -> list[PeerState] | None:
        """The peers that granted, when with this node they make a majority; else None (logged)."""
        for p, answer in zip(peers, answers, strict=True):
            if answer and int(answer.get("term", 0)) > self.term and not answer.get("granted"):
                self.adopt_term(int(answer["term"]), f"node {p.id} is in term {answer['term']}")
                return None
        granted = [p for p, answer in zip(peers, answers, strict=True) if answer and answer.get("granted")]
        votes = 1 + len(granted)
        if votes > self.voters() // 2:
            return granted
        refusals = "; ".join(
            f"{p.id}: {answer.get('reason')}"
            for p, answer in zip(peers, answers, strict=True)
            if answer and not answer.get("granted")
        )
        log.info(
            "election: term %d: node %d %s with %d of %d votes%s",
            term,
            self.node_id,
            "would lose the pre-vote" if pre_vote else "lost",
            votes,
            self.voters(),
            f" ({refusals})" if refusals else "",
        )
        return None

    async def _gather_votes(self, peers: list[PeerState], request: dict[str, Any]) -> list[dict[str, Any] | None]:
        """Ask every peer; stop waiting once a majority has granted (a hung peer must not hold up
        the election). Answers not in yet count as None."""
        needed = self.voters() // 2  # grants needed besides our own
        answers: list[dict[str, Any] | None] = [None] * len(peers)

        async def ask(index: int) -> tuple[int, dict[str, Any] | None]:
            return index, await self._ask_vote(peers[index], request)

        tasks = [asyncio.ensure_future(ask(i)) for i in range(len(peers))]
        granted = 0
        try:
            for next_done in asyncio.as_completed(tasks):
                index, answer = await next_done
                answers[index] = answer
                if answer is None:
                    continue
                granted += bool(answer.get("granted"))
                if granted >= needed or int(answer.get("term", 0)) > request["term"]:
                    break
        finally:
            for task in tasks:
                task.cancel()
        return answers

    async def _ask_vote(self, peer: PeerState, request: dict[str, Any]) -> dict[str, Any] | None:
        try:
            reply = await self.client.call_json("POST", peer.url, "/cluster/vote", request, timeout=max(self.probe_timeout, 1.0))
            return reply.json() if reply.status == 200 else None
        except (PeerUnreachable, ValueError):
            return None

    def _become_leader(self, votes: int) -> None:
        self._set_role(Role.LEADER)
        self._count_leader(self.node_id)
        self.leader_id = self.node_id
        self.leader_url = self.url
        self.db.term = self.term
        self._leader_changed.set()
        self._leader_changed = asyncio.Event()
        text = f"term {self.term}: leader is {self.node_id} ({self.url}), elected with {votes} of {self.voters()} votes"
        log.info("election: %s", text)
        self.record_event("election", text)
        if self.replication is not None:
            self.replication.start_leading()
        self.wake()  # announce at once with a heartbeat round

    def _become_follower(self, leader_id: int | None, why: str, leader_url: str | None = None) -> None:
        was_leader = self.role == Role.LEADER
        self._set_role(Role.FOLLOWER)
        self._count_leader(leader_id)
        self.leader_id = leader_id
        self.leader_url = leader_url
        self.heard_from_leader = self.clock() if leader_id is not None else None
        text = f"term {self.term}: node {self.node_id} {why}"
        if leader_id is not None:
            text += f"; leader is {leader_id} ({leader_url})"
        log.info("election: %s", text)
        self.record_event("election", text)
        if was_leader and self.replication is not None:
            self.spawn(self.replication.stop_leading(), "stop-leading")
        self._leader_changed.set()
        self._leader_changed = asyncio.Event()

    async def on_vote(self, request: dict[str, Any]) -> dict[str, Any]:
        """Grant or refuse a vote (or a pre-vote, which changes nothing); a granted vote is
        persisted with its term before the answer leaves."""
        term = int(request["term"])
        candidate = int(request["candidate_id"])
        handover_from = request.get("handover_from")
        pre_vote = bool(request.get("pre_vote"))
        their_position = (int(request["last_term"]), int(request["last_lsn"]))

        def answer(granted: bool, reason: str) -> dict[str, Any]:
            return {"term": self.term, "granted": granted, "reason": reason}

        if term < self.term or (term == self.term and pre_vote is False and self.role == Role.LEADER):
            return answer(False, f"term {term} is not newer than this node's term {self.term}")
        endorsed = handover_from is not None and handover_from in (self.leader_id, self.node_id)
        if self.role == Role.LEADER and not endorsed and not self.stopping and self.lease_valid():
            return answer(False, f"node {self.node_id} leads term {self.term} with a valid lease")
        if self.leader_alive() and not endorsed and candidate != self.leader_id:
            # Before refusing, look again: a dead leader is usually a refused connection.
            leader = next((p for p in self.peers.values() if p.id == self.leader_id), None)
            if leader is not None:
                await self.probe(leader)
            if self.leader_alive():
                return answer(False, f"leader {self.leader_id} is alive")
        if their_position < (self.db.last_term, self.db.last_lsn):
            return answer(
                False,
                f"candidate's log (term {their_position[0]}, LSN {their_position[1]}) is behind this node's "
                f"(term {self.db.last_term}, LSN {self.db.last_lsn})",
            )
        voted = self.state.current.voted_for
        if term == self.term and voted is not None and voted != candidate:
            return answer(False, f"already voted for {voted} in term {self.term}")
        if pre_vote:
            return answer(True, "would vote")
        if term > self.term:
            self.adopt_term(term, f"node {candidate} stands for term {term}")
        if self.role == Role.LEADER:
            self._become_follower(None, f"handing over to node {candidate}")
        self.state.save(self.term, candidate)
        self.heard_from_leader = self.clock()  # give the winner time to announce itself
        return answer(True, "granted")

    async def handover(self, peer: PeerState) -> None:
        """Planned handover to a higher-ID node: stop writes, ship the last entries, then let it lead."""
        self.handing_over = True
        target_id = peer.id
        try:
            log.info("election: term %d: handing over to node %d (%s); writes pause", self.term, target_id, peer.url)
            caught_up = await self.replication.flush_to(peer.address, timeout=max(2.0, 3 * self.heartbeat))
            if not caught_up or self.role != Role.LEADER:
                log.warning(
                    "election: handover to node %d aborted: it did not acknowledge LSN %d in time", target_id, self.db.last_lsn
                )
                return
            try:
                reply = await self.client.call_json(
                    "POST",
                    peer.url,
                    "/cluster/handover",
                    {"term": self.term, "leader_id": self.node_id, "last_lsn": self.db.last_lsn},
                    timeout=max(self.probe_timeout, 1.0),
                )
                accepted = reply.status == 200 and reply.json().get("accepted")
            except (PeerUnreachable, ValueError):
                accepted = False
            if not accepted:
                log.warning("election: handover to node %d aborted: it did not accept", target_id)
                return
            if self.role == Role.LEADER:
                self._become_follower(None, f"handed over to node {target_id}")
            # Writes wait (in the forwarder) until the new leader announces itself.
            await self.wait_for_leader(timeout=max(2.0, 3 * self.heartbeat))
        finally:
            self.handing_over = False

    def on_handover(self, request: dict[str, Any]) -> dict[str, Any]:
        term, leader, lsn = int(request["term"]), int(request["leader_id"]), int(request["last_lsn"])
        if term != self.term or leader != self.leader_id:
            return {"accepted": False, "reason": f"not following node {leader} in term {term}"}
        if self.db.last_lsn != lsn:
            return {"accepted": False, "reason": f"holds LSN {self.db.last_lsn}, not {lsn}"}
        self.spawn(self.campaign(handover_from=leader), "handover-campaign")
        return {"accepted": True, "reason": "standing for the next term"}

    def on_leave(self, request: dict[str, Any]) -> None:
        """A peer says it is shutting down: treat it as gone now rather than after missed beats."""
        peer = self._peer_for(request)
        if peer is not None:
            self._mark_refused(peer, "is shutting down")

    # --- what the HTTP layer asks ----------------------------------------------------------

    def guard_write(self) -> None:
        """Called by the store before every write: only a leader with a valid lease writes."""
        if self.role != Role.LEADER:
            raise NotLeader(f"node {self.node_id} is not the leader", code="not_leader")
        if self.handing_over or self.stopping:
            raise NotLeader(f"node {self.node_id} is handing over leadership", code="not_leader")
        if not self.lease_valid():
            raise NotLeader(f"node {self.node_id} lost its majority; it no longer takes writes", code="not_leader")

    @property
    def role_name(self) -> str:
        return self.role.value

    def current_term(self) -> int:
        return self.term

    async def wait_committed(self, lsn: int, term: int, timeout: float) -> bool:
        """Quorum mode: True once a majority holds ``lsn`` in ``term``. Async mode: True at once."""
        if not self.quorum_mode:
            return True
        return await self.replication.wait_quorum(lsn, term, timeout)

    async def leave(self, drain_timeout: float = 5.0) -> None:
        """Graceful stop (SIGTERM): refuse new writes, drain replication if leading, tell the peers."""
        self.stopping = True
        if self.role == Role.LEADER and self.replication is not None:
            lags = await self.replication.drain(drain_timeout)
            if lags:
                log.warning("shutdown: followers still behind after %.0f s: %s", drain_timeout, lags)
            else:
                log.info("shutdown: every reachable follower holds LSN %d", self.db.last_lsn)
            self._become_follower(None, "stepped down to shut down")
        peers = [p for p in self.peers.values() if p.listed and self._alive(p, self.clock())]
        if peers and self.client is not None:

            async def tell(peer: PeerState) -> None:
                try:
                    await self.client.call_json("POST", peer.url, "/cluster/leave", self.self_info(), timeout=0.5)
                except PeerUnreachable as exc:
                    log.info("shutdown: could not tell node %d: %s", peer.id, exc)

            await asyncio.gather(*(tell(p) for p in peers))
        log.info("shutdown: node %d leaves the cluster", self.node_id)

    def accepting_writes(self) -> bool:
        try:
            self.guard_write()
        except NotLeader:
            return False
        return True

    def is_leader(self) -> bool:
        return self.role == Role.LEADER

    def current_leader_url(self) -> str | None:
        if self.role == Role.LEADER:
            return self.url
        return self.leader_url if self.leader_alive() else None

    async def wait_for_leader(self, timeout: float, other_than: str | None = None) -> str | None:
        """A reachable leader's URL (ours included), other than ``other_than`` (a leader that just
        refused), waiting up to ``timeout`` for one."""
        deadline = self.clock() + timeout
        while True:
            if self.accepting_writes():
                return self.url
            url = self.current_leader_url()
            if url and self.role != Role.LEADER and url != other_than:
                return url
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leader_changed.wait(), timeout=min(remaining, 0.05))

    def _on_commit(self, lsn: int) -> None:
        while self._waiters and self._waiters[0][0] <= lsn:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(True)

    async def wait_applied(self, lsn: int, timeout: float) -> bool:
        """True once this node holds ``lsn``; False after ``timeout``."""
        if self.db.last_lsn >= lsn:
            return True
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (lsn, next(self._waiter_seq), future))
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return self.db.last_lsn >= lsn

    def no_leader_error(self) -> NoLeader:
        view = self.view()
        return NoLeader(
            f"no leader is reachable from node {self.node_id} (it reaches {view.reachable} of {view.voters} members); "
            "writes are refused until one is elected, reads go on",
            code="no_leader",
        )

    # --- readiness and status --------------------------------------------------------------

    @property
    def ready(self) -> bool:
        if self.syncing or self.address is None:
            return False
        if self.role == Role.LEADER:
            return True
        return self.leader_alive() and self.replication is not None and self.replication.in_sync

    def readiness(self) -> tuple[bool, str]:
        if self.address is None:
            return False, "starting: own address not known yet"
        if self.syncing:
            return False, "syncing from the leader"
        if self.role == Role.LEADER:
            return True, "leader"
        if not self.leader_alive():
            return False, "no leader known"
        if self.replication is None or not self.replication.in_sync:
            return False, "catching up with the leader"
        return True, f"following leader {self.leader_id}"

    def status(self) -> dict[str, Any]:
        """The seed's /cluster/status JSON, plus term, LSNs, lag and health details."""
        now = self.clock()
        # A leader this node can no longer hear from is not reported as its leader.
        known = self.role == Role.LEADER or self.leader_alive(now)
        leader_lsn = self.db.last_lsn if self.role == Role.LEADER else None
        if leader_lsn is None and self.leader_id is not None:
            leader_peer = next((p for p in self.peers.values() if p.id == self.leader_id), None)
            leader_lsn = leader_peer.last_lsn if leader_peer else None
        nodes = [
            {
                "id": self.node_id,
                "address": self.url,
                "role": self.role.value,
                "is_leader": self.role == Role.LEADER,
                "healthy": True,
                "applied_lsn": self.db.last_lsn,
                "lag": None if leader_lsn is None else max(0, leader_lsn - self.db.last_lsn),
                "term": self.term,
                "self": True,
            }
        ]
        for peer in sorted(self.peers.values(), key=lambda p: p.id):
            if not peer.listed:
                continue
            alive = self._alive(peer, now)
            if not alive and now - (peer.last_ok or peer.first_seen) > self.failure_timeout and peer.last_ok is not None:
                continue  # removed after FAILURE_TIMEOUT without an answer
            is_leader = known and peer.id == self.leader_id and self.role != Role.LEADER
            role = Role.LEADER.value if is_leader else (peer.role if alive and peer.role != Role.LEADER else Role.FOLLOWER.value)
            match = self.replication.match_lsn(peer.address) if (self.replication and self.role == Role.LEADER) else None
            applied = match if match is not None else (peer.last_lsn if peer.last_ok is not None else None)
            nodes.append(
                {
                    "id": peer.id,
                    "address": peer.url,
                    "role": role,
                    "is_leader": is_leader,
                    "healthy": alive,
                    "applied_lsn": applied,
                    "lag": None if (leader_lsn is None or applied is None) else max(0, leader_lsn - applied),
                    "term": peer.term if peer.last_ok is not None else None,
                    "last_seen_seconds": None if peer.last_ok is None else round(now - peer.last_ok, 3),
                    "self": False,
                }
            )
        nodes.sort(key=lambda n: n["id"])
        view_reachable = 1 + sum(1 for p in self.peers.values() if p.listed and self._alive(p, now))
        ready, reason = self.readiness()
        status = {
            "current_node_id": self.node_id,
            "current_role": self.role.value,
            "leader_id": self.leader_id if known else None,
            "leader_address": (self.url if self.role == Role.LEADER else self.leader_url) if known else None,
            "total_nodes": len(nodes),
            "nodes": nodes,
            "term": self.term,
            "applied_lsn": self.db.last_lsn,
            "ready": ready,
            "ready_reason": reason,
            "replication_mode": self.settings.replication_mode,
            "quorum": {"voters": self.voters(), "reachable": view_reachable, "needed": self.voters() // 2 + 1},
        }
        if self.replication is not None:
            status["replication"] = self.replication.status()
        return status
