"""Requests waiting until this node holds an LSN (read-your-writes, ``X-Min-LSN``), woken by its commits."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable


class AppliedWaiters:
    """Futures keyed by LSN, released in order as commits (written here or applied) reach them."""

    def __init__(self, last_lsn: Callable[[], int]):
        self.last_lsn = last_lsn
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._seq = itertools.count()

    def reset(self) -> None:
        self._waiters = []

    def committed(self, lsn: int) -> None:
        """A commit listener: release everyone waiting for ``lsn`` or less."""
        while self._waiters and self._waiters[0][0] <= lsn:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(True)

    async def wait(self, lsn: int, timeout: float) -> bool:
        """True once this node holds ``lsn``; False after ``timeout``."""
        if self.last_lsn() >= lsn:
            return True
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (lsn, next(self._seq), future))
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return self.last_lsn() >= lsn
