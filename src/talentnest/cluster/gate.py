"""What the HTTP layer asks of the cluster (the forwarding middleware's ``Coordinator``): may this node
write now, where is the leader, has this node applied an LSN, does a majority hold one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable

from talentnest.cluster.protocols import Core
from talentnest.cluster.types import Role
from talentnest.cluster.work import Job
from talentnest.errors import InvalidInput, NoLeader, NotLeader

log = logging.getLogger("talentnest.forward")


class WriteGate:
    """A narrow view of one node for the HTTP layer; the node keeps every piece of state it reads."""

    def __init__(self, node: Core):
        self.node = node
        self._watched: dict[str, set[asyncio.Future]] = {}
        self._lost: weakref.WeakSet[asyncio.Future] = weakref.WeakSet()

    @property
    def node_id(self) -> int:
        return self.node.node_id

    @property
    def url(self) -> str:
        return self.node.url

    @property
    def client(self):
        return self.node.transport

    @property
    def role_name(self) -> str:
        return self.node.role.value

    def wall(self) -> float:
        return self.node.clock.wall()

    def current_term(self) -> int:
        return self.node.term

    def guard_write(self) -> None:
        """Called by the store before every write: only a leader with a valid lease writes."""
        node = self.node
        if node.role != Role.LEADER:
            raise NotLeader(f"node {node.node_id} is not the leader", code="not_leader")
        if node.worker.current == Job.HANDOVER or node.stopping:
            raise NotLeader(f"node {node.node_id} is handing over leadership", code="not_leader")
        if not node.lease_valid():
            raise NotLeader(f"node {node.node_id} lost its majority; it no longer takes writes", code="not_leader")

    def accepting_writes(self) -> bool:
        try:
            self.guard_write()
        except NotLeader:
            return False
        return True

    async def wait_for_leader(self, timeout: float, other_than: str | None = None) -> str | None:
        """A reachable leader's URL (ours included), other than ``other_than`` (a leader that just
        refused), waiting up to ``timeout`` for one."""
        node = self.node
        deadline = node.clock.monotonic() + timeout
        while True:
            if self.accepting_writes():
                return node.url
            url = node.current_leader_url()
            if url and node.role != Role.LEADER and url != other_than:
                return url
            remaining = deadline - node.clock.monotonic()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(node.leader_changed().wait(), timeout=min(remaining, 0.05))

    async def wait_applied(self, lsn: int, timeout: float) -> bool:
        """True once this node holds ``lsn`` *in the leader's history*; False after ``timeout``. A node
        that holds that LSN in another history (a deposed leader before it resyncs) does not count, and
        both must hold at once: while the history is being confirmed the LSN can go back (a snapshot
        installed, divergent entries archived), as it did under a follower that relayed a write it did
        not hold yet (simulator seed 21890)."""
        node = self.node
        if lsn <= 0:
            return True
        deadline = node.clock.monotonic() + timeout
        while True:
            if not await node.waiters.wait(lsn, max(0.0, deadline - node.clock.monotonic())):
                return False
            if self.history_trusted() and node.db.last_lsn >= lsn:
                return True
            remaining = deadline - node.clock.monotonic()
            if remaining <= 0:
                return False
            await node.clock.sleep(min(0.02, remaining))

    def history_trusted(self) -> bool:
        node = self.node
        if node.role == Role.LEADER:
            return node.lease_valid()
        return node.replication is not None and node.current_leader_url() is not None and node.replication.history_confirmed()

    async def wait_committed(self, lsn: int, term: int, timeout: float) -> bool:
        """Quorum mode: True once a majority holds ``lsn`` in ``term``. Async mode: True at once."""
        node = self.node
        if not node.quorum_mode or node.replication is None:
            return True
        return await node.replication.wait_quorum(lsn, term, timeout)

    def awaited_by(self, lsn: int, node_id: int | None) -> None:
        """The peer ``node_id`` forwarded the write at ``lsn`` and waits until it holds it (read-your-writes):
        replicate it there without lingering (None: to every member)."""
        if self.node.replication is not None:
            self.node.replication.hurry(lsn, node_id)

    def carried(self, held: int, lsn: int) -> bytes | None:
        """As leader: the entries after ``held`` up to ``lsn`` as a replicate body, for the answer to the write a
        follower forwarded (``held``: what it said it holds). None in quorum mode: the write waits for a
        majority, so its streams send it at once anyway and the answer comes after."""
        if self.node.quorum_mode or self.node.replication is None:
            return None
        return self.node.replication.carried(held, lsn)

    async def apply_carried(self, body: bytes) -> None:
        """As follower: apply the entry the leader's (signed, checked) answer to a forwarded write carried, as
        ``POST /cluster/replicate`` would: the same parse, term bound and checks of term, history and gap.
        Whatever it does not apply (a gap, a history to check) arrives through the stream as before."""
        node = self.node
        if node.replication is None or node.health.refusal() is not None:
            return
        try:
            await node.replication.on_replicate_body(body)
        except InvalidInput as exc:
            log.warning("forward: the leader's answer carried entries this node refuses: %s", exc)

    def refusal(self) -> str | None:
        return self.node.health.refusal()

    def unhealthy(self) -> str | None:
        return self.node.health.not_ready_reason()

    def leader_expected(self) -> bool:
        """This node reaches a majority, so a leader can be elected where it is."""
        return self.node.membership.reachable() > self.node.voters() // 2

    def watch_leader(self, url: str, call: asyncio.Future) -> Callable[[], bool]:
        """Cancel ``call`` if the leader at ``url`` is suspected before ``call`` ends; returns a
        function that tells whether that is why it was cancelled."""
        watched = self._watched.setdefault(url, set())
        watched.add(call)
        call.add_done_callback(watched.discard)
        return lambda: call in self._lost

    def leader_suspected(self, url: str) -> None:
        """The leader at ``url`` stopped answering: end every forward still waiting on it."""
        for call in self._watched.pop(url, set()):
            if not call.done():
                self._lost.add(call)
                call.cancel()

    def no_leader_error(self) -> NoLeader:
        node = self.node
        refusing = [f"node {p.id} refuses its signature: {p.refuses}" for p in node.membership.peers.values() if p.refuses]
        return NoLeader(
            f"no leader is reachable from node {node.node_id} (it reaches {node.membership.reachable()} of "
            f"{node.voters()} members); writes are refused until one is elected, reads go on"
            + (f" ({'; '.join(refusing)})" if refusing else ""),
            code="no_leader",
        )
