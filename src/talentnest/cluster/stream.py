"""The leader's sender to one follower: batches in a window, backoff while it is away, resend from gaps.

The stream is the seed's "queue for failed replications": its position survives the follower's
absence. Up to ``WINDOW`` batches are in flight at once (the follower applies them in LSN order,
waiting briefly for an earlier batch that arrives late). Any answer that is not a success resets the
pipeline to the position the follower gives: everything after it is sent again.

Entries nobody waits for linger: a batch leaves at once when the stream has been quiet for the node's
linger (``REPLICATION_LINGER_MS``), else when the linger has passed since the last one left, so that
writes arriving one at a time (one client, one connection) share an exchange instead of paying one
each. Entries somebody waits for (a write in quorum mode, a write forwarded by this follower, a drain
or a handover: ``hurry``) leave at once. docs/cluster.md, "Writes and replication", gives the figures.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from talentnest.cluster.logwire import ReplicateReply, replicate_body
from talentnest.cluster.protocols import Node
from talentnest.cluster.stats import Stats
from talentnest.cluster.wire import decode
from talentnest.cluster.work import cancel_and_wait
from talentnest.errors import InvalidInput, LogTruncated, PeerUnreachable
from talentnest.store import Database

log = logging.getLogger("talentnest.replication")

BATCH_ENTRIES = 2000
BATCH_BYTES = 4 * 1024 * 1024


def batch_body(node: Node, db: Database, prev: int, entries, *, truncated: bool = False, history=None) -> bytes:
    """A replicate body from this leader: ``entries`` after LSN ``prev`` (``truncated``: the log no longer
    holds ``prev``), with the leader's ``history`` when the follower has yet to check it."""
    position = db.position_at(prev)
    return replicate_body(
        leader_id=node.node_id,
        term=node.term,
        leader_url=node.url,
        prev_lsn=prev,
        prev_term=-1 if truncated else position[0],
        prev_epoch=0 if truncated else position[1],
        leader_last_lsn=db.last_lsn,
        leader_last_term=db.last_term,
        leader_first_lsn=db.first_lsn,
        history=history,
        entries=entries,
    )


class Sender(Protocol):
    """What a stream needs of the leader's side (``leader.LeaderSide``)."""

    node: Node
    db: Database
    stats: Stats

    def now(self) -> float: ...

    def commit_time(self, lsn: int) -> float | None: ...

    def new_entries_event(self) -> asyncio.Event: ...

    def reported_lsn(self, address: str) -> int | None: ...

    def acknowledged(self) -> None:
        """A follower holds more now: release the writes waiting for a quorum that it completes."""


class FollowerStream:
    WINDOW = 4

    def __init__(self, leader: Sender, address: str, url: str, node_id: int):
        self.leader = leader
        self.address = address
        self.url = url
        self.node_id = node_id
        self.next_lsn: int | None = None  # the first LSN not yet handed to a request
        self.match_lsn = 0  # the follower holds everything up to here
        self.confirmed = False  # the follower has checked our history against its own
        self.failures = 0
        self._unreachable = False  # some of the failures got no answer at all (not an HTTP error, not "unavailable")
        self.syncing = False
        self.task: asyncio.Task | None = None
        self.wakeup = asyncio.Event()
        self._epoch = 0  # bumped on every reset: answers to older requests are ignored
        self._retry_at = 0.0  # while failing or syncing: when to try again
        self._last_sent = 0.0  # when the last batch left
        self.awaited_lsn = 0  # somebody waits for the follower to hold this LSN: no lingering up to it
        self._inflight: set[asyncio.Task] = set()
        self._stopped = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"replicate-{self.address}")

    async def stop(self) -> None:
        self._stopped = True
        await cancel_and_wait([t for t in [self.task, *self._inflight] if t is not None])
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
        self._retry_at = self.leader.now() + min(1.0, 0.05 * 2 ** (self.failures - 1))

    def retry_now(self) -> None:
        """Forget the backoff and check the follower's history and position again, now (requests still
        in flight belong to the old epoch: they are dropped rather than waited for)."""
        self.failures = 0
        self._retry_at = 0.0
        self.reset(confirmed=False)
        for task in list(self._inflight):
            task.cancel()
        self.wakeup.set()

    def lag_seconds(self, now: float) -> float:
        if self.match_lsn >= self.leader.db.last_lsn:
            return 0.0
        committed = self.leader.commit_time(self.match_lsn + 1)
        return max(0.0, now - committed) if committed is not None else 0.0

    async def _run(self) -> None:
        leader = self.leader
        while not self._stopped:
            if self.next_lsn is None:
                reported = leader.reported_lsn(self.address)
                self.next_lsn = (reported + 1) if reported is not None else leader.db.last_lsn + 1
            pause = self._retry_at - leader.now()
            if (self.failures or self.syncing) and pause > 0:
                # Backing off (the follower is away, or installing a snapshot); peer_back cuts it short.
                await self._wait(pause)
                continue
            if not self._fill():
                held = self._held_until()
                if held is not None:
                    # Entries wait for more to join them (a hurry() or a finished request wakes us sooner).
                    await self._wait(held - leader.now())
                    continue
                if not self._inflight and leader.now() - self._last_sent >= leader.node.heartbeat:
                    # Idle for a heartbeat: an empty batch checks that the follower still holds what it
                    # acknowledged. Its log can go back without this stream's word (another node's
                    # snapshot, an archived divergence: simulator seeds 1430 and 733); a gap resets us.
                    self._send()
                    continue
                await self._wait(leader.node.heartbeat, new_entries=True)

    async def _wait(self, timeout: float, *, new_entries: bool = False) -> None:
        self.wakeup.clear()
        waits = [asyncio.ensure_future(self.wakeup.wait())]
        if new_entries:
            waits.append(asyncio.ensure_future(self.leader.new_entries_event().wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    def _fill(self) -> int:
        """Hand batches to requests until the window is full; how many were sent."""
        if not self.confirmed or self.syncing or self.failures:
            # One request at a time until the follower has checked our history (or answers again).
            if self._inflight:
                return 0
            self._send()
            return 1
        sent = 0
        while len(self._inflight) < self.WINDOW and self.next_lsn <= self.leader.db.last_lsn:
            if self._held_until() is not None:
                break
            self._send()
            sent += 1
        return sent

    def hurry(self, lsn: int) -> None:
        """Somebody waits for the follower to hold ``lsn``: send it without lingering."""
        if lsn > self.awaited_lsn:
            self.awaited_lsn = lsn
            self.wakeup.set()

    def _held_until(self) -> float | None:
        """When the pending entries may leave, if they are to wait for more to join them; None: now (or
        nothing is pending). They wait only while nobody waits for them, the last batch left less than
        the node's linger ago and they would not fill a batch."""
        leader = self.leader
        linger, last = leader.node.settings.replication_linger, leader.db.last_lsn
        pending = last - self.next_lsn + 1
        if linger <= 0 or pending <= 0 or self.next_lsn <= self.awaited_lsn or pending >= BATCH_ENTRIES:
            return None
        until = self._last_sent + linger
        return until if until > leader.now() else None

    def _send(self) -> None:
        db, node = self.leader.db, self.leader.node
        prev = self.next_lsn - 1
        try:
            entries = db.entries_after(prev, max_entries=BATCH_ENTRIES, max_bytes=BATCH_BYTES)
            truncated = False
        except LogTruncated:
            entries, truncated = [], True
        body = batch_body(node, db, prev, entries, truncated=truncated, history=None if self.confirmed else db.term_history())
        if entries:
            self.next_lsn = entries[-1].lsn + 1
        self._last_sent = self.leader.now()
        task = asyncio.create_task(self._request(body, len(entries), self._epoch, node.term))
        self._inflight.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # (a full disk while acting on the answer): said in one line, not "never retrieved"; the
            # follower's next answer names its position, and the stream resends from there.
            log.warning("replication: a batch to node %d at %s failed: %s", self.node_id, self.address, task.exception())
        self.wakeup.set()  # room in the window, or an answer to act on

    async def _request(self, body: bytes, count: int, epoch: int, term: int) -> None:
        leader = self.leader
        sent_at = leader.now()
        try:
            reply = await leader.node.transport.call(
                "POST", self.url, "/cluster/replicate", body=body, timeout=max(5.0, 5 * leader.node.heartbeat)
            )
            answer = ReplicateReply.parse(decode(reply.body)) if reply.status == 200 else None
        except PeerUnreachable as exc:
            self._failed(epoch, f"{exc}", unreachable=True)
            return
        except InvalidInput as exc:
            self._failed(epoch, f"answered with a bad body: {exc}")
            return
        leader.stats.batches_sent += 1
        leader.stats.entries_sent += count
        leader.stats.bytes_sent += len(body)
        if answer is None:
            self._failed(epoch, f"answered HTTP {reply.status}: {reply.body[:200]!r}")
            return
        if self.failures and epoch == self._epoch:
            if self._unreachable:
                log.info(
                    "replication: node %d at %s reachable again after %d failed attempts",
                    *(self.node_id, self.address, self.failures),
                )
                self._unreachable = False
            if answer.reason != "unavailable":
                # (a follower that answers but cannot apply keeps its backoff growing: handle() adds to it)
                self.failures = 0
        self.handle(answer, epoch, sent_at, term)

    def _failed(self, epoch: int, why: str, *, unreachable: bool = False) -> None:
        self.leader.stats.send_failures += 1
        if epoch != self._epoch:
            return
        self._unreachable = self._unreachable or unreachable
        self._back_off()
        if self.failures in (1, 10) or self.failures % 100 == 0:
            log.info("replication: retrying node %d at %s (attempt %d): %s", self.node_id, self.address, self.failures, why)
        self.reset(self.match_lsn)

    def handle(self, reply: ReplicateReply, epoch: int, sent_at: float, term: int) -> None:
        """Move the position by the follower's answer to a batch sent in ``epoch`` and ``term``."""
        node = self.leader.node
        if reply.term > node.term:
            node.adopt_term(reply.term, f"a follower at {self.address} is in term {reply.term}")
            return
        if reply.term == term == node.term and reply.reason != "stale_term":
            # The follower accepted us as its leader when this was sent: it renews the lease too. A
            # "stale_term" answer in our own term comes from a node that leads this term itself (the
            # heartbeat answers' case F12, docs/simulation.md): it holds no lease for us.
            node.lease_acknowledged(self.address, sent_at)
        if epoch != self._epoch:
            return
        self.syncing = reply.reason == "syncing"
        if self.syncing:
            self._retry_at = self.leader.now() + min(1.0, node.heartbeat)
        if reply.success:
            self.confirmed = True
            self.match_lsn = max(self.match_lsn, reply.applied_lsn)
            # The follower may hold more than we were about to send (a snapshot took it past).
            self.next_lsn = max(self.next_lsn or 0, reply.applied_lsn + 1)
            self.leader.acknowledged()
        else:
            # The follower's own word on what it holds: it can go down (after a resync) as well as up.
            self.match_lsn = reply.applied_lsn
            self.reset(reply.applied_lsn, confirmed=False if reply.reason == "history_needed" else None)
            if reply.reason == "unavailable":
                self._back_off()  # it cannot apply now (full disk...): try again later, not at once
