"""The leader's side of replication: one stream per member, writes waiting for a quorum, and drains.

A write is committed locally first; the streams carry it to every member (group commit: a batch holds
whatever accumulated while the previous one was in flight). In quorum mode the write's answer waits
until a majority of the voters holds it (``wait_quorum``); a planned handover or a graceful stop waits
until the followers hold everything (``flush_to``, ``drain``).
"""

from __future__ import annotations

import asyncio
import itertools

from talentnest.cluster.protocols import Node
from talentnest.cluster.stats import Stats
from talentnest.cluster.stream import BATCH_BYTES, FollowerStream, batch_body
from talentnest.errors import LogTruncated
from talentnest.store import Database

# At most this many entries ride in a forwarded write's answer (LeaderSide.carried).
CARRIED_ENTRIES = 4
# How many recent commit times are kept (for each follower's lag in seconds).
COMMIT_TIMES_KEPT = 100_000


class LeaderSide:
    def __init__(self, node: Node, db: Database, stats: Stats):
        self.node = node
        self.db = db
        self.stats = stats
        self.streams: dict[str, FollowerStream] = {}
        self.leading = False
        self._new_entries = asyncio.Event()
        self._quorum_waiters: list[tuple[int, asyncio.Future]] = []
        self._commit_times: dict[int, float] = {}

    def reset(self) -> None:
        self.streams = {}
        self.leading = False
        self._new_entries = asyncio.Event()
        self._quorum_waiters = []

    def now(self) -> float:
        return self.node.clock.monotonic()

    # --- commits -----------------------------------------------------------------------------

    def committed(self, lsn: int) -> None:
        """A commit listener: note the time, wake the streams, release waiters of a cluster of one."""
        self._commit_times[lsn] = self.now()
        if len(self._commit_times) > COMMIT_TIMES_KEPT:
            # LSNs arrive in order, so the dict's first keys are the oldest: no sort on this path.
            for old in list(itertools.islice(self._commit_times, COMMIT_TIMES_KEPT // 2)):
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

    # --- streams -----------------------------------------------------------------------------

    def start_leading(self) -> None:
        self.leading = True
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
        """Keep one stream per member while leading."""
        if not self.leading:
            return
        wanted = {m.address: m for m in self.node.members()}
        for address, member in wanted.items():
            if address not in self.streams:
                stream = FollowerStream(self, address, member.url, member.node_id)
                self.streams[address] = stream
                stream.start()
        for address in list(self.streams):
            if address not in wanted:
                self.node.spawn(self.streams.pop(address).stop(), f"stop-stream-{address}")

    def reported_lsn(self, address: str) -> int | None:
        member = next((m for m in self.node.members() if m.address == address), None)
        return member.reported_lsn if member is not None else None

    def peer_back(self, address: str) -> None:
        stream = self.streams.get(address)
        if stream is not None:
            stream.retry_now()

    def match_lsn(self, address: str) -> int | None:
        stream = self.streams.get(address)
        return None if stream is None else stream.match_lsn

    def carried(self, held: int, lsn: int) -> bytes | None:
        """The replicate body of the entries after ``held`` (what the follower said it holds) up to ``lsn``,
        for the answer to the write at ``lsn`` that follower forwarded: it applies them from there, through
        the checks of a replicate call, instead of waiting for its stream (docs/cluster.md, "Writes and
        replication"). None (its stream is hurried instead) when the follower lacks more than
        ``CARRIED_ENTRIES`` (many writes at once: the stream's batches carry them more cheaply), when this
        node no longer leads, or when the log no longer holds them."""
        if not self.leading or not 0 < lsn - held <= CARRIED_ENTRIES:
            return None
        try:
            entries = self.db.entries_after(held, max_entries=lsn - held, max_bytes=BATCH_BYTES)
        except LogTruncated:
            return None
        if not entries or entries[-1].lsn != lsn:
            return None
        return batch_body(self.node, self.db, held, entries)

    def hurry(self, lsn: int, node_id: int | None = None) -> None:
        """Somebody waits for ``lsn`` to reach the follower ``node_id`` (None: every follower): its
        stream sends it without lingering (``stream.FollowerStream``)."""
        for stream in self.streams.values():
            if node_id is None or stream.node_id == node_id:
                stream.hurry(lsn)

    # --- quorum ------------------------------------------------------------------------------

    def acknowledged(self) -> None:
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
        if not self.leading or self.node.term != term:
            return False
        if self._replicas_holding(lsn) >= self.node.voters() // 2 + 1:
            return True
        self.hurry(lsn)
        future = asyncio.get_running_loop().create_future()
        self._quorum_waiters.append((lsn, future))
        try:
            held = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            held = False
        return bool(held) and self.node.term == term and self.leading

    # --- drains ------------------------------------------------------------------------------

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
        clock = self.node.clock
        deadline = clock.monotonic() + timeout
        target = self.db.last_lsn
        self.hurry(target)
        while clock.monotonic() < deadline:
            if not self._behind(target, addresses, reachable_only=reachable_only):
                return {}
            await clock.sleep(0.01)
        return self._behind(target, addresses)

    async def flush_to(self, address: str, timeout: float) -> bool:
        return not await self._wait_held(timeout, {address})

    async def drain(self, timeout: float) -> dict[str, int]:
        return await self._wait_held(timeout, reachable_only=True)
