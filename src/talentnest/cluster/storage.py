"""What a node does when its storage fails: a full disk or an I/O error takes it out of leading (and,
following, out of readiness) until it works again; a damaged file is set aside (kept) and the node
resyncs from a peer, and never leads until it has (docs/cluster.md, "When a node cannot write")."""

from __future__ import annotations

import asyncio

from talentnest.cluster.health import Problem
from talentnest.cluster.protocols import Core
from talentnest.cluster.types import Role
from talentnest.errors import StorageFailure
from talentnest.store import guard

DRAINED_FILENAME = "drained"


def node_marker(node: Core):
    return node.settings.data_dir / DRAINED_FILENAME


class StorageCare:
    def __init__(self, node: Core):
        self.node = node

    def failed(self, failure: StorageFailure) -> None:
        """A failure listener of the store (a write, an apply or a read failed for a reason of storage)."""
        node = self.node
        now = node.clock.monotonic()
        if failure.damaged:
            if node.health.failed(Problem.DAMAGED, f"its database is damaged ({failure.message})", now):
                asyncio.get_running_loop().call_soon(self._set_aside, failure.message)
            return
        if node.health.storage_failed(failure, leading=node.role == Role.LEADER, now=now):
            node.record_event("health", failure.message)
            node.wake()

    def _set_aside(self, why: str) -> None:
        """After the failing call: stop leading, move the file aside, start again from an empty one."""
        node = self.node
        if node.role == Role.LEADER:
            node.step_down(f"stepped down: its database is damaged ({why})")
        node.db.close()
        place = guard.set_aside(node.db.data_dir, why)
        node.db.open()
        self._waiting(f"its damaged database was moved to {place}")
        if node.replication is not None:
            node.replication.term_changed()
        node.wake()

    def check_marker(self) -> None:
        """At start: data set aside before (at this start or an earlier one) and not yet resynced;
        a drain an operator left in place."""
        why = guard.needs_sync(self.node.db.data_dir)
        if why is not None:
            self._waiting(f"its database was set aside ({why})")
        if node_marker(self.node).exists():
            self.node.health.failed(Problem.DRAINED, "drained by an operator: it does not stand for leader", 0.0)
        if not self.node.state.existed:
            self.node.health.failed(Problem.NEW, "it starts without durable state (new, or its disk was lost)", 0.0)

    def reached_by_leader(self) -> None:
        """A leader's history is confirmed to contain this node's log: it is a full member now."""
        if self.node.health.cleared(Problem.NEW, "a leader's log holds this node's"):
            self.node.record_event("health", "a leader reached this node: it votes from now on")

    def _waiting(self, why: str) -> None:
        text = f"{why}; it waits for a peer's snapshot before it may lead"
        self.node.health.cleared(Problem.DAMAGED, "set aside")
        self.node.health.failed(Problem.DAMAGED, text, self.node.clock.monotonic())
        self.node.record_event("health", text)

    def drain(self, drained: bool) -> bool:
        """An operator's drain (kept across restarts in ``DATA_DIR/drained``) or its end; whether it
        changed anything."""
        node, marker = self.node, node_marker(self.node)
        if drained:
            marker.write_text("drained by an operator: it serves, but does not stand for leader\n")
            changed = node.health.failed(
                Problem.DRAINED, "drained by an operator: it does not stand for leader", node.clock.monotonic()
            )
        else:
            marker.unlink(missing_ok=True)
            changed = node.health.cleared(Problem.DRAINED, "undrained by an operator")
        if changed:
            node.record_event("health", "drained" if drained else "undrained")
            node.wake()
        return changed

    def snapshot_installed(self) -> None:
        """A peer's snapshot replaced this node's data: what was set aside is replaced now."""
        guard.synced(self.node.db.data_dir)
        self.node.health.cleared(Problem.NEW, "installed a peer's snapshot")
        if self.node.health.cleared(Problem.DAMAGED, "installed a peer's snapshot"):
            self.node.record_event("health", "installed a peer's snapshot; may lead again")
