"""The follower's side of replication: taking a leader's batches, checking histories, catching up.

``on_replicate`` checks the sender's term, confirms once per leader that the two histories agree
(archiving what only this node holds and resyncing when they do not), applies in LSN order, and
reports gaps so the leader resends from this node's position. A node that is empty, far behind, or
behind the leader's retained log installs a snapshot instead (``transfer.sync_from``). ``catch_up``
pulls a peer's newer log before this node may lead.
"""

from __future__ import annotations

import logging

from talentnest.cluster import transfer
from talentnest.cluster.logwire import LogPage, ReplicateReply, ReplicateRequest, log_page_body
from talentnest.cluster.protocols import Node
from talentnest.cluster.stats import Stats
from talentnest.cluster.stream import BATCH_BYTES, BATCH_ENTRIES
from talentnest.cluster.wire import TermHistory, decode
from talentnest.cluster.work import Job
from talentnest.errors import InvalidInput, LogDiverged, PeerUnreachable, StaleTerm, StorageFailure
from talentnest.store import Database, LogEntry
from talentnest.store.divergence import archive_divergent, common_lsn

log = logging.getLogger("talentnest.replication")

# A follower this far behind gets a snapshot instead of the log (faster for both sides).
SYNC_LAG_ENTRIES = 50_000
# A batch that starts a little ahead of what the follower holds waits this long for the batch
# before it (sent just earlier, on another connection) before the follower reports a gap.
PIPELINE_WAIT_SECONDS = 0.5
PIPELINE_WAIT_ENTRIES = 4 * BATCH_ENTRIES
DIVERGED = "diverged"


class FollowerSide:
    def __init__(self, node: Node, db: Database, stats: Stats, waiter):
        self.node = node
        self.db = db
        self.stats = stats
        self.wait_applied = waiter  # (lsn, timeout) -> bool: True once this node holds lsn
        self.in_sync = False
        self.confirmed: tuple[int, int] | None = None  # (term, leader) whose history matches ours
        self.leader_last_lsn = 0  # the leader's last LSN, as its last batch said
        self._behind_from: int | None = None  # the LSN we were at when we fell out of sync

    def reset(self) -> None:
        self.in_sync = False
        self.confirmed = None
        self._behind_from = None

    def term_changed(self) -> None:
        self.confirmed = None
        self.in_sync = False

    def _answer(self, success: bool, reason: str) -> ReplicateReply:
        return ReplicateReply(term=self.node.term, success=success, applied_lsn=self.db.last_lsn, reason=reason)

    async def on_replicate(self, request: ReplicateRequest, *, syncing: bool) -> ReplicateReply:
        """Take one batch from the leader of ``request.term``; never raises for a well-formed request."""
        node, db, term, leader_id = self.node, self.db, request.term, request.leader_id
        if term < node.term:
            return self._answer(False, "stale_term")
        node.adopt_term(term, f"node {leader_id} leads term {term}")
        if node.is_leader():
            return self._answer(False, "stale_term")
        node.heard_from_leader(leader_id, request.leader_url)
        self.leader_last_lsn = request.leader_last_lsn
        if syncing:
            return self._answer(False, "syncing")
        if self.confirmed != (term, leader_id):
            if request.history is None:
                return self._answer(False, "history_needed")
            if self.check_history(request.history, request.leader_last_lsn, leader_id) == DIVERGED:
                return self._resync(request, f"diverged from node {leader_id}")
            self.confirmed = (term, leader_id)
            node.reached_by_leader()
        if db.last_lsn < request.prev_lsn <= db.last_lsn + PIPELINE_WAIT_ENTRIES:
            # Batches are pipelined: an earlier one may still be on its way. Wait for it briefly.
            await self.wait_applied(request.prev_lsn, PIPELINE_WAIT_SECONDS)
            if node.term != term or self.confirmed != (term, leader_id):
                return self._answer(False, "stale_term" if node.term > term else "history_needed")
        mine = db.last_lsn
        if mine == 0 and request.leader_last_lsn > 0:
            return self._resync(request, f"this node is empty and the leader is at LSN {request.leader_last_lsn}")
        if request.leader_first_lsn > mine + 1 or request.leader_last_lsn - mine > SYNC_LAG_ENTRIES:
            return self._resync(request, f"this node is at LSN {mine}, the leader at {request.leader_last_lsn}")
        if request.prev_lsn > mine:
            return self._answer(False, "gap")
        if request.prev_lsn > 0 and request.prev_term >= 0 and not self._holds(request):
            self.confirmed = None
            return self._answer(False, "history_needed")
        try:
            result = db.apply(request.entries, sender_term=term, current_term=node.term)
        except (StaleTerm, LogDiverged) as exc:
            # Our log and the leader's differ where we thought they agreed: compare the histories
            # again (the next batch carries the leader's), which archives and resyncs if they differ.
            log.warning("replication: refused entries from node %d: %s; checking histories again", leader_id, exc)
            self.confirmed = None
            return self._answer(False, "history_needed")
        except StorageFailure:
            # Told to the node by the store (it is not ready now); the leader tries again after a backoff.
            return self._answer(False, "unavailable")
        self._count_applied(request.entries, mine, result.applied_lsn)
        self._track_sync(leader_id, mine, result.applied_lsn)
        return self._answer(not result.gap, "gap" if result.gap else "applied")

    def _holds(self, request: ReplicateRequest) -> bool:
        """This log's entry at the batch's previous LSN is the leader's (same term, same epoch)."""
        term, epoch = self.db.position_at(request.prev_lsn)
        return term == request.prev_term and (request.prev_epoch is None or epoch == request.prev_epoch)

    def _resync(self, request: ReplicateRequest, why: str) -> ReplicateReply:
        self.node.run_job(Job.SYNC, self.sync(request.leader_url, request.leader_id, why))
        return self._answer(False, "syncing")

    def _track_sync(self, leader_id: int, before: int, after: int) -> None:
        if not self.in_sync and self._behind_from is None:
            self._behind_from = before
        self.in_sync = after >= self.leader_last_lsn
        if self.in_sync and self._behind_from is not None:
            start, self._behind_from = self._behind_from, None
            if after > start:
                text = f"caught up with leader {leader_id} through the log: LSN {start} -> {after}"
            else:
                text = f"in sync with leader {leader_id} at LSN {after}"
            log.info("sync: node %d %s", self.node.node_id, text)
            self.node.record_event("sync", text)

    def _count_applied(self, entries, before: int, after: int) -> None:
        applied = [e for e in entries if before < e.lsn <= after]
        self.stats.entries_applied += len(applied)
        self.stats.bytes_applied += sum(len(e.changes) for e in applied)

    def check_history(self, history: TermHistory, source_last: int, source_id: int) -> str | None:
        """None when our log is a prefix of the source's; else archive what diverged and return DIVERGED
        (the caller then installs the source's snapshot)."""
        agreed = common_lsn(self.db.term_history(), self.db.last_lsn, history, source_last)
        if self.db.last_lsn <= agreed:
            return None
        self.stats.divergences += 1
        path = archive_divergent(self.db, agreed, f"node {source_id} holds a different history after LSN {agreed}")
        text = (
            f"this node held entries {agreed + 1}-{self.db.last_lsn} that node {source_id} never had; "
            f"archived them to {path} and resyncing"
        )
        log.warning("divergence: %s", text)
        self.node.record_event("divergence", text)
        return DIVERGED

    async def sync(self, url: str, source_id: int, why: str) -> None:
        """Install the snapshot of the node at ``url`` (failures logged: the leader asks again)."""
        if await transfer.sync_from(self.node, self.db, self.stats, url, source_id, why):
            self.confirmed = None
        self.node.wake()

    async def catch_up(self, url: str, source_id: int, why: str) -> None:
        """Pull what the peer at ``url`` holds beyond our log, page by page (or its snapshot, when its
        log no longer reaches back to our position or our histories differ)."""
        node, db = self.node, self.db
        log.info("sync: catching up from node %d before leading: %s", source_id, why)
        start_lsn = db.last_lsn
        try:
            checked = False
            while True:
                target = f"/cluster/log?after={db.last_lsn}&limit={BATCH_ENTRIES}"
                reply = await node.transport.call("GET", url, target, timeout=max(5.0, 5 * node.heartbeat))
                if reply.status == 410:
                    await self.sync(url, source_id, "its log no longer holds our position")
                    return
                if reply.status != 200:
                    raise PeerUnreachable(f"node {source_id} answered HTTP {reply.status} to /cluster/log")
                page = LogPage.parse(decode(reply.body))
                if not checked:
                    checked = True
                    if self.check_history(page.history, page.last_lsn, source_id) == DIVERGED:
                        await self.sync(url, source_id, f"diverged from node {source_id}")
                        return
                if not page.entries:
                    break
                before = db.last_lsn
                result = db.apply(page.entries)
                self._count_applied(page.entries, before, result.applied_lsn)
                if result.applied_lsn >= page.last_lsn:
                    break
            log.info(
                "sync: caught up from node %d: LSN %d -> %d (%d entries)",
                *(source_id, start_lsn, db.last_lsn, db.last_lsn - start_lsn),
            )
        except (PeerUnreachable, InvalidInput, StaleTerm, LogDiverged) as exc:
            log.warning("sync: catching up from node %d failed: %s", source_id, exc)
        finally:
            node.wake()


def log_page(db: Database, after: int, limit: int) -> bytes:
    """The ``/cluster/log`` answer: entries after ``after`` (raises LogTruncated when trimmed away)."""
    entries: list[LogEntry] = db.entries_after(after, max_entries=limit, max_bytes=BATCH_BYTES)
    return log_page_body(
        last_lsn=db.last_lsn, last_term=db.last_term, first_lsn=db.first_lsn, history=db.term_history(), entries=entries
    )
