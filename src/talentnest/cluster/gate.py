"""What the HTTP layer asks of the cluster (the forwarding middleware's ``Coordinator``): may this node
write now, where is the leader, has this node applied an LSN, does a majority hold one."""

from __future__ import annotations

import asyncio
import contextlib

from talentnest.cluster.protocols import Core
from talentnest.cluster.types import Role
from talentnest.cluster.work import Job
from talentnest.errors import NoLeader, NotLeader


class WriteGate:
    """A narrow view of one node for the HTTP layer; the node keeps every piece of state it reads."""

    def __init__(self, node: Core):
        self.node = node

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
        """True once this node holds ``lsn``; False after ``timeout``."""
        return await self.node.waiters.wait(lsn, timeout)

    async def wait_committed(self, lsn: int, term: int, timeout: float) -> bool:
        """Quorum mode: True once a majority holds ``lsn`` in ``term``. Async mode: True at once."""
        node = self.node
        if not node.quorum_mode or node.replication is None:
            return True
        return await node.replication.wait_quorum(lsn, term, timeout)

    def no_leader_error(self) -> NoLeader:
        node = self.node
        return NoLeader(
            f"no leader is reachable from node {node.node_id} (it reaches {node.membership.reachable()} of "
            f"{node.voters()} members); writes are refused until one is elected, reads go on",
            code="no_leader",
        )
