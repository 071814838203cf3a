"""Virtual time for the simulation: one clock, one event loop per node, and the scheduler that steps them.

Each simulated process (a node's incarnation, or the clients) runs on its own :class:`SimLoop`, an
asyncio loop whose ``time()`` is the simulation's virtual clock, whose selector never blocks, and
whose ``run_in_executor`` runs the function inline (so ``asyncio.to_thread`` stays deterministic).
The :class:`Scheduler` repeatedly steps the loop whose next event is earliest, moving the clock
forward to it. A paused loop is not stepped (its timers fire late when it resumes, as a stopped
process's would); a crashed one is abandoned without running anything more.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from asyncio import events
from collections.abc import Callable
from typing import Any


class VirtualClock:
    """The simulation's time, in seconds from the start of a run; it only moves forward."""

    def __init__(self) -> None:
        self.now = 0.0

    def advance_to(self, when: float) -> None:
        if when > self.now:
            self.now = when


class _NoSelector:
    """Nothing in the simulation waits on a file descriptor: every select returns at once, empty."""

    def select(self, timeout: float | None = None) -> list:
        return []

    def close(self) -> None:
        pass


_ids = itertools.count()


def restart_numbering() -> None:
    """Number tasks and futures from 0 again (each run does, so a run's hashes do not depend on the
    runs before it in the same process)."""
    global _ids
    _ids = itertools.count()


class _Task(asyncio.Task):
    """A task whose hash is its creation number, not its memory address: sets of tasks (the core's
    in-flight requests, ``asyncio.wait``) then iterate in the same order on every replay."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sim_id = next(_ids)  # before Task.__init__, which files the task in a WeakSet
        super().__init__(*args, **kwargs)

    def __hash__(self) -> int:
        return self._sim_id


class _Future(asyncio.Future):
    """A future hashed by creation number (see ``_Task``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sim_id = next(_ids)
        super().__init__(*args, **kwargs)

    def __hash__(self) -> int:
        return self._sim_id


class SimLoop(asyncio.BaseEventLoop):
    """One simulated process's event loop on the shared virtual clock; stepped by the Scheduler only."""

    def __init__(self, clock: VirtualClock, name: str, on_error: Callable[[str, dict], None] | None = None):
        super().__init__()
        self.clock = clock
        self.name = name
        self.owner: Any = None  # the simulated host whose process this loop is (None: wire, clients)
        self.paused = False
        self.dead = False
        self.steps = 0
        self._selector = _NoSelector()
        self._on_error = on_error
        self.set_task_factory(lambda loop, coro, **kw: _Task(coro, loop=loop, **kw))

    def time(self) -> float:
        return self.clock.now

    def call_later(self, delay, callback, *args, context=None):
        # asyncio runs a timer due within the clock's resolution (1 ns) at once, and a delay under half
        # a unit of the clock's last place adds nothing to it. A real clock has moved on by then; this one
        # has not, so code that waits out the last sliver of a deadline measured on a node's skewed
        # clock woke at the same instant for ever (campaign seeds 1963, 3549, 5122: livelocks). A
        # positive delay here is at least one resolution: time moves, as it does on a machine.
        if 0 < delay < self._clock_resolution:
            delay = self._clock_resolution
        return super().call_later(delay, callback, *args, context=context)

    def create_future(self) -> asyncio.Future:
        return _Future(loop=self)

    def _process_events(self, event_list: list) -> None:
        pass

    def _write_to_self(self) -> None:
        pass

    def run_in_executor(self, executor, func, *args):
        """Run ``func`` now, on this loop's thread: what a worker thread would compute, without
        the thread (its duration is not modelled; the answer is)."""
        future = self.create_future()
        try:
            future.set_result(func(*args))
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def __del__(self) -> None:
        pass  # never closed: an abandoned coroutine finalised later may still schedule on it, harmlessly

    def call_exception_handler(self, context: dict) -> None:
        if self.dead:
            return  # a crashed process's leftovers (tasks destroyed while pending) are not errors
        if self._on_error is not None:
            self._on_error(self.name, context)
        else:
            super().call_exception_handler(context)

    def next_time(self) -> float | None:
        """When this loop next has something to run (now if callbacks are ready), or None."""
        if self._ready:
            return self.clock.now
        scheduled = self._scheduled
        while scheduled and scheduled[0]._cancelled:
            self._timer_cancelled_count -= 1
            heapq.heappop(scheduled)._scheduled = False
        return scheduled[0]._when if scheduled else None

    def step(self) -> None:
        """Run what is due now: timers that have expired, then every ready callback (one loop iteration)."""
        self.steps += 1
        self._thread_id = threading.get_ident()
        events._set_running_loop(self)
        try:
            self._run_once()
        finally:
            events._set_running_loop(None)
            self._thread_id = None


class Wire:
    """Timed deliveries between processes (the kernel and the cables): a plain heap of callbacks,
    cheaper than a loop of its own, run by the Scheduler in time order with the loops' events."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., None], tuple]] = []
        self._seq = itertools.count()

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), callback, args))

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run_next(self) -> None:
        _, _, callback, args = heapq.heappop(self._heap)
        callback(*args)


STALL_STEPS = 200_000  # steps at one virtual instant that make a run a livelock (a normal run takes ~5,000 in all)


class Stalled(RuntimeError):
    """Virtual time stopped moving: callbacks keep rescheduling one another at the same instant (a busy
    loop, which on a real machine would burn a core), so the run can never reach its end."""


class Scheduler:
    """Steps the live, unpaused loop (or the wire) whose next event is earliest; ``after_step`` runs
    after each loop step. At equal times the wire goes first, then loops in the order they were added."""

    def __init__(self, clock: VirtualClock):
        self.clock = clock
        self.wire = Wire()
        self.loops: list[SimLoop] = []
        self.steps = 0
        self.deliveries = 0
        self.after_step: Callable[[SimLoop], None] | None = None

    def add(self, loop: SimLoop) -> None:
        self.loops.append(loop)

    def remove(self, loop: SimLoop) -> None:
        self.loops.remove(loop)

    def run_until(self, deadline: float, stop: Callable[[], bool] | None = None) -> None:
        """Run every loop until virtual time ``deadline`` (or until ``stop()`` is true after a step)."""
        clock = self.clock
        wire = self.wire
        after = self.after_step
        instant, same = clock.now, 0
        while True:
            if clock.now != instant:
                instant, same = clock.now, 0
            same += 1
            if same > STALL_STEPS:
                busiest = max(self.loops, key=lambda loop: loop.steps, default=None)
                where = f"; the busiest loop is {busiest.name}" if busiest is not None else ""
                raise Stalled(f"{STALL_STEPS:,} steps at {clock.now:.6f} s without virtual time moving{where}")
            best: SimLoop | None = None
            best_time = wire.next_time()
            if best_time is None:
                best_time = deadline + 1.0
            for loop in self.loops:
                if loop.paused or loop.dead:
                    continue
                when = loop.next_time()
                if when is not None and when < best_time:
                    best, best_time = loop, when
            if best_time > deadline:
                clock.advance_to(deadline)
                return
            clock.advance_to(best_time)
            if best is None:
                wire.run_next()
                self.deliveries += 1
                continue
            best.step()
            self.steps += 1
            if after is not None:
                after(best)
            if stop is not None and stop():
                return
