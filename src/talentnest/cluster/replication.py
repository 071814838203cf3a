"""Replication as the node sees it (``protocols.Replicator``): the leader's side and the follower's side
of moving the log, over one store, with the counters both keep for /cluster/status and /metrics."""

from __future__ import annotations

from typing import Any

from talentnest.cluster.follower import FollowerSide
from talentnest.cluster.leader import LeaderSide
from talentnest.cluster.logwire import ReplicateReply, ReplicateRequest, decode_replicate
from talentnest.cluster.protocols import Node
from talentnest.cluster.stats import Stats
from talentnest.cluster.wire import in_reach
from talentnest.store import Database


class Replication:
    """Both sides for one node; ``node`` is what they need of it (``protocols.Node``)."""

    def __init__(self, node: Node, db: Database, *, syncing, wait_applied):
        self.node = node
        self.db = db
        self.stats = Stats()
        self.leader = LeaderSide(node, db, self.stats)
        self.follower = FollowerSide(node, db, self.stats, wait_applied)
        self._syncing = syncing  # () -> bool: a snapshot or catch-up is running on this node
        db.add_commit_listener(self.leader.committed)

    @property
    def in_sync(self) -> bool:
        return self.follower.in_sync

    def reset(self) -> None:
        self.leader.reset()
        self.follower.reset()

    # --- leader side -----------------------------------------------------------------------

    def start_leading(self) -> None:
        self.follower.in_sync = True
        self.leader.start_leading()

    async def stop_leading(self) -> None:
        await self.leader.stop_leading()

    def members_changed(self) -> None:
        self.leader.members_changed()

    def peer_back(self, address: str) -> None:
        self.leader.peer_back(address)

    def match_lsn(self, address: str) -> int | None:
        return self.leader.match_lsn(address)

    async def wait_quorum(self, lsn: int, term: int, timeout: float) -> bool:
        return await self.leader.wait_quorum(lsn, term, timeout)

    def hurry(self, lsn: int, node_id: int | None = None) -> None:
        self.leader.hurry(lsn, node_id)

    def carried(self, held: int, lsn: int) -> bytes | None:
        return self.leader.carried(held, lsn)

    async def flush_to(self, address: str, timeout: float) -> bool:
        return await self.leader.flush_to(address, timeout)

    async def drain(self, timeout: float) -> dict[str, int]:
        return await self.leader.drain(timeout)

    # --- follower side ---------------------------------------------------------------------

    def term_changed(self) -> None:
        self.follower.term_changed()

    def history_confirmed(self) -> bool:
        return self.follower.confirmed == (self.node.term, self.node.leader_id)

    async def on_replicate(self, request: ReplicateRequest) -> ReplicateReply:
        return await self.follower.on_replicate(request, syncing=self._syncing())

    async def on_replicate_body(self, body: bytes) -> ReplicateReply:
        """A replicate body as it arrives (``POST /cluster/replicate``, or carried in the answer to a forwarded
        write): parsed once, refused whole (InvalidInput) if malformed or its term out of reach, then taken
        as ``on_replicate`` takes a batch."""
        return await self.on_replicate(in_reach(self.node, ReplicateRequest.parse(decode_replicate(body))))

    def catch_up(self, url: str, source_id: int, why: str):
        return self.follower.catch_up(url, source_id, why)

    # --- reporting -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.node.clock.monotonic()
        last = self.db.last_lsn
        followers = {
            address: {
                "match_lsn": s.match_lsn,
                "lag": max(0, last - s.match_lsn),
                "lag_seconds": round(s.lag_seconds(now), 3),
                "failures": s.failures,
                "syncing": s.syncing,
            }
            for address, s in self.leader.streams.items()
        }
        return {
            "in_sync": self.in_sync,
            "followers": followers,
            "entries_sent": self.stats.entries_sent,
            "entries_applied": self.stats.entries_applied,
            "syncs": self.stats.syncs,
            "sync": self.stats.sync_progress.as_dict() if self.stats.sync_progress is not None else None,
        }
