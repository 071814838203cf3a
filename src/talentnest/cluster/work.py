"""Long actions beside the control loop, one at a time: sync, catch-up, handover, campaign.

Patroni's ``AsyncExecutor``: the loop never waits for long work (heartbeats and leases go on), and
never starts a second one while one runs, so no two of them can interleave their changes to the
node. Which one runs is the one piece of state that says "syncing", "handing over" or "campaigning".
Other background tasks (stopping a stream, telling peers) go through ``spawn``: their failures are
logged, never silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from enum import StrEnum
from typing import Any

log = logging.getLogger("talentnest.cluster")


async def cancel_and_wait(tasks: list[asyncio.Task]) -> None:
    """Cancel ``tasks`` and wait for each to end, whatever it ends with (its errors are its own to log)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class Job(StrEnum):
    SYNC = "sync"  # installing a snapshot
    CATCH_UP = "catch_up"  # pulling a peer's newer log before leading
    HANDOVER = "handover"  # shipping the last entries to a higher-ID node, then stepping down
    CAMPAIGN = "campaign"  # asking for votes

    @property
    def is_syncing(self) -> bool:
        return self in (Job.SYNC, Job.CATCH_UP)


class Worker:
    def __init__(self) -> None:
        self.current: Job | None = None
        self._job: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def busy(self) -> bool:
        return self.current is not None

    @property
    def syncing(self) -> bool:
        return self.current is not None and self.current.is_syncing

    def start(self, job: Job, work: Coroutine[Any, Any, Any]) -> bool:
        """Run ``work`` as ``job`` unless another job runs (then False, and ``work`` is closed unrun)."""
        if self.current is not None:
            work.close()
            return False
        self.current = job
        self._job = self.spawn(work, job.value)
        self._job.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Task) -> None:
        if task is self._job:
            self.current = None
            self._job = None

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        """Run ``work`` beside the loop (not a job: any number may run); its failure is logged."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("cluster: %s failed: %s", name, t.exception())

        task.add_done_callback(done)
        return task

    async def stop(self) -> None:
        """Cancel everything running and wait for it to end."""
        await cancel_and_wait(list(self._tasks))
        self.current = None
        self._job = None
