"""Moving the log: the leader streams entries to each follower; followers apply, catch up and sync.

Leader side: one ``FollowerStream`` per member, each a task that sends every entry after the
follower's position in batches (whatever accumulated while the previous batch was in flight:
group commit), retrying with backoff while the follower is away. The stream is the seed's
"queue for failed replications": its position survives the follower's absence.

Follower side: ``on_replicate`` checks the sender's term, confirms once per leader that the two
histories agree (archiving and resyncing when they do not), applies in LSN order, and reports
gaps so the leader resends from the follower's position. A follower that is empty, far behind,
or behind the leader's retained log installs a snapshot (``sync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talentnest.errors import InvalidInput, LogTruncated, PeerUnreachable, SnapshotError, StaleTerm
from talentnest.store import Database, LogEntry, snapshot
from talentnest.store.divergence import archive_divergent, common_lsn

if TYPE_CHECKING:
    from talentnest.cluster.node import ClusterNode

log = logging.getLogger("talentnest.replication")

BATCH_ENTRIES = 2000
BATCH_BYTES = 4 * 1024 * 1024
# A follower this far behind gets a snapshot instead of the log (faster for both sides).
SYNC_LAG_ENTRIES = 50_000
# A batch that starts a little ahead of what the follower holds waits this long for the batch
# before it (sent just earlier, on another connection) before the follower reports a gap.
PIPELINE_WAIT_SECONDS = 0.5
PIPELINE_WAIT_ENTRIES = 4 * BATCH_ENTRIES


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KB' (decimal units, as disk and network tools count)."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


@dataclass
class Stats:
    """Counters for /cluster/status and /metrics."""

    entries_sent: int = 0
    bytes_sent: int = 0
    batches_sent: int = 0
    send_failures: int = 0
    entries_applied: int = 0
    bytes_applied: int = 0
    syncs: int = 0
    sync_bytes: int = 0
    sync_seconds: float = 0.0
    snapshots_served: int = 0
    divergences: int = 0
    # The last snapshot this node made (to serve) or installed: compressed and database sizes.
    snapshot_bytes: int = 0
    snapshot_raw_bytes: int = 0


class FollowerStream:
    """The leader's sender to one follower.

    Up to ``WINDOW`` batches are in flight at once (the follower applies them in LSN order,
    waiting briefly for an earlier batch that arrives late). Any answer that is not a success
    resets the pipeline to the position the follower gives: everything after it is sent again.
    """

    WINDOW = 4

    def __init__(self, replication: Replication, address: str, url: str):
        self.replication = replication
        self.address = address
        self.url = url
        self.next_lsn: int | None = None  # the first LSN not yet handed to a request
        self.match_lsn = 0  # the follower holds everything up to here
        self.confirmed = False  # the follower has checked our history against its own
        self.failures = 0
        self.syncing = False
        self.task: asyncio.Task | None = None
        self.wakeup = asyncio.Event()
        self._epoch = 0  # bumped on every reset: answers to older requests are ignored
        self._retry_at = 0.0  # while failing or syncing: when to try again
        self._inflight: set[asyncio.Task] = set()
        self._stopped = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"replicate-{self.address}")

    async def stop(self) -> None:
        self._stopped = True
        for task in [self.task, *self._inflight]:
            if task is not None:
                task.cancel()
        for task in [self.task, *self._inflight]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.task = None
        self._inflight.clear()

    def reset(self, position: int | None = None, *, confirmed: bool | None = None) -> None:
        """Start again from ``position`` (None: from what the follower's heartbeats say); answers
        to requests sent before are ignored from now on."""
        self._epoch += 1
        self.next_lsn = None if position is None else position + 1
        if confirmed is not None:
            self.confirmed = confirmed

    def _back_off(self) -> None:
        """One more failure: wait 50 ms, doubling up to 1 s, before trying again."""
        self.failures += 1
        self._retry_at = self.replication.node.clock() + min(1.0, 0.05 * 2 ** (self.failures - 1))

    def retry_now(self) -> None:
        """Forget the backoff and check the follower's history and position again, now."""
        self.failures = 0
        self._retry_at = 0.0
        self.reset(confirmed=False)
        self.wakeup.set()

    def peer_label(self) -> str:
        """The follower's node ID as its heartbeats tell it, or '?' before it has answered one."""
        peer = self.replication.node.peers.get(self.address)
        return str(peer.id) if peer is not None else "?"

    def lag_seconds(self, now: float) -> float:
        if self.match_lsn >= self.replication.db.last_lsn:
            return 0.0
        committed = self.replication.commit_time(self.match_lsn + 1)
        return max(0.0, now - committed) if committed is not None else 0.0

    async def _run(self) -> None:
        rep = self.replication
        node = rep.node
        while not self._stopped:
            if self.next_lsn is None:
                peer = node.peers.get(self.address)
                known = peer is not None and peer.last_ok is not None
                self.next_lsn = (peer.last_lsn + 1) if known else rep.db.last_lsn + 1
            pause = self._retry_at - node.clock()
            if (self.failures or self.syncing) and pause > 0:
                # Backing off (the follower is away, or installing a snapshot); peer_answers cuts it short.
                await self._wait(pause)
                continue
            if not self._fill():
                await self._wait(node.heartbeat, new_entries=True)

    async def _wait(self, timeout: float, *, new_entries: bool = False) -> None:
        self.wakeup.clear()
        waits = [asyncio.ensure_future(self.wakeup.wait())]
        if new_entries:
            waits.append(asyncio.ensure_future(self.replication.new_entries_event().wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    def _fill(self) -> int:
        """Hand batches to requests until the window is full; how many were sent."""
        rep = self.replication
        sent = 0
        if not self.confirmed or self.syncing or self.failures:
            # One request at a time until the follower has checked our history (or answers again).
            if not self._inflight:
                self._send()
                sent += 1
            return sent
        while len(self._inflight) < self.WINDOW and self.next_lsn <= rep.db.last_lsn:
            self._send()
            sent += 1
        return sent

    def _send(self) -> None:
        rep = self.replication
        node = rep.node
        db = rep.db
        prev = self.next_lsn - 1
        try:
            entries = db.entries_after(prev, max_entries=BATCH_ENTRIES, max_bytes=BATCH_BYTES)
            truncated = False
        except LogTruncated:
            entries, truncated = [], True
        history = None if self.confirmed else db.term_history()
        body = (
            f'{{"leader_id":{node.node_id},"term":{node.term},"leader_url":"{node.url}",'
            f'"prev_lsn":{prev},"prev_term":{db.term_at(prev) if not truncated else -1},'
            f'"leader_last_lsn":{db.last_lsn},"leader_last_term":{db.last_term},"leader_first_lsn":{db.first_lsn},'
            f'"history":{json.dumps(history) if history is not None else "null"},'
            f'"entries":[{",".join(e.to_json() for e in entries)}]}}'
        ).encode()
        if entries:
            self.next_lsn = entries[-1].lsn + 1
        task = asyncio.create_task(self._request(body, len(entries), self._epoch, node.term))
        self._inflight.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self.wakeup.set()  # room in the window, or an answer to act on

    async def _request(self, body: bytes, count: int, epoch: int, term: int) -> None:
        rep = self.replication
        node = rep.node
        sent_at = node.clock()
        try:
            reply = await node.client.call(
                "POST", self.url, "/cluster/replicate", body=body, timeout=max(5.0, 5 * node.heartbeat)
            )
        except PeerUnreachable as exc:
            if epoch == self._epoch:
                self._back_off()
                rep.stats.send_failures += 1
                if self.failures in (1, 10) or self.failures % 100 == 0:
                    log.info(
                        "replication: retrying node %s at %s (attempt %d): %s",
                        self.peer_label(),
                        self.address,
                        self.failures,
                        exc,
                    )
                self.reset(self.match_lsn)
            return
        rep.stats.batches_sent += 1
        rep.stats.entries_sent += count
        rep.stats.bytes_sent += len(body)
        if reply.status != 200:
            log.warning("replication: node at %s answered HTTP %d: %s", self.address, reply.status, reply.body[:200])
            if epoch == self._epoch:
                self._back_off()
                self.reset(self.match_lsn)
            return
        if self.failures and epoch == self._epoch:
            log.info(
                "replication: node %s at %s reachable again after %d failed attempts",
                self.peer_label(),
                self.address,
                self.failures,
            )
            self.failures = 0
        self._handle(reply.json(), epoch, sent_at, term)

    def _handle(self, reply: dict[str, Any], epoch: int, sent_at: float, term: int) -> None:
        """Move the position by the follower's answer."""
        rep = self.replication
        node = rep.node
        their_term = int(reply.get("term", 0))
        applied = int(reply.get("applied_lsn", 0))
        if their_term > node.term:
            node.adopt_term(their_term, f"a follower at {self.address} is in term {their_term}")
            return
        if their_term == term == node.term:
            # The follower accepted us as its leader when this was sent: it renews the lease too.
            node.lease_acknowledged(self.address, sent_at)
        if epoch != self._epoch:
            return
        reason = reply.get("reason")
        self.syncing = reason == "syncing"
        if self.syncing:
            self._retry_at = node.clock() + min(1.0, node.heartbeat)
        if reply.get("success"):
            self.confirmed = True
            self.match_lsn = max(self.match_lsn, applied)
            # The follower may hold more than we were about to send (a snapshot took it past).
            self.next_lsn = max(self.next_lsn or 0, applied + 1)
            rep.acknowledged(self.address, applied)
        else:
            # The follower's own word on what it holds: it can go down (after a resync) as well as up.
            self.match_lsn = applied
            self.reset(applied, confirmed=False if reason == "history_needed" else None)


class Replication:
    """Both sides of replication for one node."""

    def __init__(self, node: ClusterNode, db: Database):
        self.node = node
        self.db = db
        self.stats = Stats()
        self.streams: dict[str, FollowerStream] = {}
        self.leading = False
        self.in_sync = False
        self.confirmed: tuple[int, int] | None = None  # (term, leader) whose history matches ours
        self._behind_from: int | None = None  # the LSN we were at when we fell out of sync
        self.leader_last_lsn = 0  # on a follower: the leader's last LSN, as its last batch said
        self._new_entries = asyncio.Event()
        self._quorum_waiters: list[tuple[int, asyncio.Future]] = []
        self._commit_times: dict[int, float] = {}
        self._sync_task: asyncio.Task | None = None
        db.add_commit_listener(self._on_commit)

    def reset(self) -> None:
        """Fresh runtime state for a (re)start in a new event loop."""
        self.streams = {}
        self.leading = False
        self.in_sync = False
        self.confirmed = None
        self._behind_from = None
        self._new_entries = asyncio.Event()
        self._quorum_waiters = []
        self._sync_task = None

    # --- leader side -----------------------------------------------------------------------

    def _on_commit(self, lsn: int) -> None:
        now = self.node.clock()
        self._commit_times[lsn] = now
        if len(self._commit_times) > 100_000:
            # LSNs arrive in order, so the dict's first keys are the oldest: no sort on this path.
            for old in list(itertools.islice(self._commit_times, 50_000)):
                del self._commit_times[old]
        self._new_entries.set()
        self._new_entries = asyncio.Event()
        if self.leading and self.node.voters() == 1:
            self._release_quorum_waiters()

    def commit_time(self, lsn: int) -> float | None:
        return self._commit_times.get(lsn)

    def new_entries_event(self) -> asyncio.Event:
        """Set at the next commit (a fresh event each time)."""
        return self._new_entries

    def start_leading(self) -> None:
        self.leading = True
        self.in_sync = True
        self.members_changed()

    async def stop_leading(self) -> None:
        self.leading = False
        streams, self.streams = list(self.streams.values()), {}
        for stream in streams:
            await stream.stop()
        for _, future in self._quorum_waiters:
            if not future.done():
                future.set_result(False)
        self._quorum_waiters = []

    def members_changed(self) -> None:
        """Keep one stream per listed peer while leading."""
        if not self.leading:
            return
        wanted = {p.address: p.url for p in self.node.peers.values() if p.listed}
        for address, url in wanted.items():
            if address not in self.streams:
                stream = FollowerStream(self, address, url)
                self.streams[address] = stream
                stream.start()
        for address in list(self.streams):
            if address not in wanted:
                stream = self.streams.pop(address)
                self.node.spawn(stream.stop(), f"stop-stream-{address}")

    def peer_answers(self, address: str) -> None:
        """A peer answers heartbeats again (perhaps a new process): check its history and position
        again now, rather than after the backoff or the next write."""
        stream = self.streams.get(address)
        if stream is not None:
            stream.retry_now()

    def term_changed(self) -> None:
        self.confirmed = None
        self.in_sync = False

    def match_lsn(self, address: str) -> int | None:
        stream = self.streams.get(address)
        return None if stream is None else stream.match_lsn

    def acknowledged(self, address: str, lsn: int) -> None:
        self._release_quorum_waiters()

    def _replicas_holding(self, lsn: int) -> int:
        return 1 + sum(1 for s in self.streams.values() if s.match_lsn >= lsn)

    def _release_quorum_waiters(self) -> None:
        needed = self.node.voters() // 2 + 1
        keep = []
        for lsn, future in self._quorum_waiters:
            if future.done():
                continue
            if self._replicas_holding(lsn) >= needed:
                future.set_result(True)
            else:
                keep.append((lsn, future))
        self._quorum_waiters = keep

    async def wait_quorum(self, lsn: int, term: int, timeout: float) -> bool:
        """True once a majority of the voters holds ``lsn`` while this node still leads ``term``."""
        if not self.leading or self.node.term != term:
            return False
        if self._replicas_holding(lsn) >= self.node.voters() // 2 + 1:
            return True
        future = asyncio.get_running_loop().create_future()
        self._quorum_waiters.append((lsn, future))
        try:
            held = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            held = False
        return bool(held) and self.node.term == term and self.leading

    def _behind(self, target: int, addresses=None, *, reachable_only: bool = False) -> dict[str, int]:
        """How many entries short of ``target`` each follower is (only those short of it); a named
        follower without a stream yet is short of everything."""
        behind = {
            a: target - s.match_lsn
            for a, s in self.streams.items()
            if (addresses is None or a in addresses) and s.match_lsn < target and not (reachable_only and s.failures)
        }
        behind.update({a: target for a in addresses or () if a not in self.streams})
        return behind

    async def _wait_held(self, timeout: float, addresses=None, *, reachable_only: bool = False) -> dict[str, int]:
        """Wait (bounded) until the followers hold the last entry as of now; the lags left."""
        clock = self.node.runtime.clock
        deadline = clock.monotonic() + timeout
        target = self.db.last_lsn
        while clock.monotonic() < deadline:
            if not self._behind(target, addresses, reachable_only=reachable_only):
                return {}
            await clock.sleep(0.01)
        return self._behind(target, addresses)

    async def flush_to(self, address: str, timeout: float) -> bool:
        """Wait until the follower at ``address`` holds every entry (planned handover)."""
        return not await self._wait_held(timeout, {address})

    async def drain(self, timeout: float) -> dict[str, int]:
        """Wait (bounded) until every reachable follower holds the last entry; report the lags left."""
        return await self._wait_held(timeout, reachable_only=True)

    # --- follower side ---------------------------------------------------------------------

    async def on_replicate(self, request: dict[str, Any]) -> dict[str, Any]:
        node = self.node
        try:
            term = int(request["term"])
            leader_id = int(request["leader_id"])
            leader_url = str(request["leader_url"])
            prev_lsn, prev_term = int(request["prev_lsn"]), int(request["prev_term"])
            leader_last, leader_first = int(request["leader_last_lsn"]), int(request["leader_first_lsn"])
            history = request.get("history")
            raw_entries = request["entries"]
            if not isinstance(raw_entries, list):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(
                "replicate needs term, leader_id, leader_url, prev_lsn, prev_term, leader_*_lsn, entries"
            ) from None

        def answer(success: bool, reason: str) -> dict[str, Any]:
            return {"term": node.term, "success": success, "applied_lsn": self.db.last_lsn, "reason": reason}

        if term < node.term:
            return answer(False, "stale_term")
        if term > node.term:
            node.adopt_term(term, f"node {leader_id} leads term {term}")
        if node.role.value == "leader":
            return answer(False, "stale_term")
        node.follow(leader_id, leader_url)
        node.heard_from_leader = node.clock()
        self.leader_last_lsn = leader_last
        if node.syncing:
            return answer(False, "syncing")
        if self.confirmed != (term, leader_id):
            if history is None:
                return answer(False, "history_needed")
            verdict = self._check_history(history, leader_last, leader_id, leader_url)
            if verdict is not None:
                return answer(False, verdict)
            self.confirmed = (term, leader_id)
        if self.db.last_lsn < prev_lsn <= self.db.last_lsn + PIPELINE_WAIT_ENTRIES:
            # Batches are pipelined: an earlier one may still be on its way. Wait for it briefly.
            await node.wait_applied(prev_lsn, PIPELINE_WAIT_SECONDS)
            if node.term != term or self.confirmed != (term, leader_id):
                return answer(False, "stale_term" if node.term > term else "history_needed")
        my_last = self.db.last_lsn
        if my_last == 0 and leader_last > 0:
            self._start_sync(leader_url, leader_id, f"this node is empty and the leader is at LSN {leader_last}")
            return answer(False, "syncing")
        if leader_first > my_last + 1 or leader_last - my_last > SYNC_LAG_ENTRIES:
            self._start_sync(leader_url, leader_id, f"this node is at LSN {my_last}, the leader at {leader_last}")
            return answer(False, "syncing")
        if prev_lsn > my_last:
            return answer(False, "gap")
        if prev_lsn > 0 and prev_term >= 0 and self.db.term_at(prev_lsn) != prev_term:
            self.confirmed = None
            return answer(False, "history_needed")
        try:
            entries = [LogEntry.from_dict(item) for item in raw_entries]
            result = self.db.apply(entries, sender_term=term, current_term=node.term)
        except StaleTerm as exc:
            log.warning("replication: refused entries from node %d: %s", leader_id, exc)
            self.confirmed = None
            return answer(False, "history_needed")
        self._count_applied(entries, my_last, result.applied_lsn)
        if not self.in_sync and self._behind_from is None:
            self._behind_from = my_last
        self.in_sync = result.applied_lsn >= leader_last
        if self.in_sync and self._behind_from is not None:
            start, self._behind_from = self._behind_from, None
            if result.applied_lsn > start:
                text = f"caught up with leader {leader_id} through the log: LSN {start} -> {result.applied_lsn}"
            else:
                text = f"in sync with leader {leader_id} at LSN {result.applied_lsn}"
            log.info("sync: node %d %s", node.node_id, text)
            node.record_event("sync", text)
        return answer(not result.gap, "gap" if result.gap else "applied")

    def _count_applied(self, entries: list[LogEntry], before: int, after: int) -> None:
        applied = [e for e in entries if before < e.lsn <= after]
        self.stats.entries_applied += len(applied)
        self.stats.bytes_applied += sum(len(e.changes) for e in applied)

    def _check_history(self, history: Any, leader_last: int, source_id: int, source_url: str) -> str | None:
        """None when our log is a prefix of the source's; else archive what diverged and resync."""
        theirs = [(int(t), int(s)) for t, s in history]
        agreed = common_lsn(self.db.term_history(), self.db.last_lsn, theirs, leader_last)
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
        self._start_sync(source_url, source_id, f"diverged after LSN {agreed}", force=True)
        return "syncing"

    def _start_sync(self, url: str, source_id: int, why: str, *, force: bool = False) -> None:
        if self._sync_task is not None and not self._sync_task.done():
            return
        self.node.syncing = True
        self._sync_task = self.node.spawn(self.sync_from(url, source_id, why), "sync")

    async def sync_from(self, url: str, source_id: int, why: str) -> None:
        """Install a snapshot of the node at ``url``, then continue from its LSN."""
        node = self.node
        node.syncing = True
        started = node.clock()
        incoming = node.settings.data_dir / "incoming.snapshot"
        log.info("sync: requesting a snapshot from node %d (%s): %s", source_id, url, why)
        try:
            async with node.client.stream(url, "/cluster/sync?format=binary", connect_timeout=5, read_timeout=30) as response:
                if response.status != 200:
                    raise SnapshotError(f"node {source_id} answered HTTP {response.status} to /cluster/sync")
                compression = response.headers.get("X-Snapshot-Compression", "zstd")
                sha256 = response.headers.get("X-Snapshot-Sha256")
                size = 0
                with open(incoming, "wb") as handle:
                    async for chunk in response.chunks(1 << 20):
                        handle.write(chunk)
                        size += len(chunk)
                    handle.flush()
                    os.fsync(handle.fileno())
            prepared = await asyncio.to_thread(
                snapshot.prepare_snapshot,
                node.settings.data_dir,
                incoming,
                compression=compression,
                expected_sha256=sha256,
                max_schema_version=self.db.schema_version,
            )
            try:
                info = self.db.install_snapshot(prepared)
            except BaseException:
                prepared.discard()
                raise
            seconds = node.clock() - started
            self.stats.syncs += 1
            self.stats.sync_bytes += size
            self.stats.sync_seconds += seconds
            self.stats.snapshot_bytes, self.stats.snapshot_raw_bytes = size, info.raw_bytes
            self.confirmed = None
            text = (
                f"installed a snapshot from node {source_id} at LSN {info.lsn} (term {info.term}): "
                f"{human_bytes(size)} sent, {human_bytes(info.raw_bytes)} database, in {seconds:.2f} s"
            )
            log.info("sync: %s", text)
            node.record_event("sync", text)
        except (PeerUnreachable, SnapshotError, OSError) as exc:
            log.warning("sync: from node %d failed: %s; will retry", source_id, exc)
        finally:
            with contextlib.suppress(FileNotFoundError):
                Path(incoming).unlink()
            node.syncing = False
            node.wake()

    async def catch_up_from(self, url: str, source_id: int, why: str) -> None:
        """Before leading: pull what a peer holds beyond our log (from its log, or its snapshot)."""
        node = self.node
        if node.syncing:
            return
        node.syncing = True
        log.info("sync: catching up from node %d before leading: %s", source_id, why)
        start_lsn = self.db.last_lsn
        try:
            checked = False
            while True:
                target = f"/cluster/log?after={self.db.last_lsn}&limit={BATCH_ENTRIES}"
                reply = await node.client.call("GET", url, target, timeout=max(5.0, 5 * node.heartbeat))
                if reply.status == 410:
                    node.syncing = False
                    await self.sync_from(url, source_id, "its log no longer holds our position")
                    return
                if reply.status != 200:
                    raise PeerUnreachable(f"node {source_id} answered HTTP {reply.status} to /cluster/log")
                page = reply.json()
                if not checked:
                    checked = True
                    if self._check_history(page["history"], int(page["last_lsn"]), source_id, url) is not None:
                        return
                entries = [LogEntry.from_dict(item) for item in page["entries"]]
                if not entries:
                    break
                before = self.db.last_lsn
                result = self.db.apply(entries)
                self._count_applied(entries, before, result.applied_lsn)
                if result.applied_lsn >= int(page["last_lsn"]):
                    break
            log.info(
                "sync: caught up from node %d: LSN %d -> %d (%d entries)",
                source_id,
                start_lsn,
                self.db.last_lsn,
                self.db.last_lsn - start_lsn,
            )
        except (PeerUnreachable, InvalidInput, StaleTerm, ValueError, KeyError) as exc:
            log.warning("sync: catching up from node %d failed: %s", source_id, exc)
        finally:
            if self._sync_task is None or self._sync_task.done():
                node.syncing = False
            node.wake()

    # --- serving ---------------------------------------------------------------------------

    def log_page(self, after: int, limit: int) -> str:
        entries = self.db.entries_after(after, max_entries=limit, max_bytes=BATCH_BYTES)
        return (
            f'{{"last_lsn":{self.db.last_lsn},"last_term":{self.db.last_term},"first_lsn":{self.db.first_lsn},'
            f'"history":{json.dumps(self.db.term_history())},"entries":[{",".join(e.to_json() for e in entries)}]}}'
        )

    def status(self) -> dict[str, Any]:
        now = self.node.clock()
        followers = {
            address: {
                "match_lsn": s.match_lsn,
                "lag": max(0, self.db.last_lsn - s.match_lsn),
                "lag_seconds": round(s.lag_seconds(now), 3),
                "failures": s.failures,
                "syncing": s.syncing,
            }
            for address, s in self.streams.items()
        }
        return {
            "in_sync": self.in_sync,
            "followers": followers,
            "entries_sent": self.stats.entries_sent,
            "entries_applied": self.stats.entries_applied,
            "syncs": self.stats.syncs,
        }
