"""The simulation's event loops: virtual time, the order they are stepped in, pauses, inline threads."""

from __future__ import annotations

import asyncio
import threading
import time

from talentnest.sim.loop import Scheduler, SimLoop, VirtualClock
from talentnest.store.schema import product_database


def make_scheduler(*names: str) -> tuple[Scheduler, list[SimLoop]]:
    clock = VirtualClock()
    scheduler = Scheduler(clock)
    loops = [SimLoop(clock, name) for name in names]
    for loop in loops:
        scheduler.add(loop)
    return scheduler, loops


def sleep_on(loop: SimLoop, seconds: float) -> list[float]:
    """Start a task on ``loop`` that sleeps ``seconds``; the list gets the loop's time when it wakes."""
    woke: list[float] = []

    async def sleeper():
        await asyncio.sleep(seconds)
        woke.append(loop.time())

    loop.create_task(sleeper())
    return woke


def test_an_hour_of_sleeping_takes_no_real_time_and_the_clock_says_an_hour():
    scheduler, (loop,) = make_scheduler("a")
    woke = sleep_on(loop, 3600)
    started = time.perf_counter()
    scheduler.run_until(7200)

    assert woke == [3600.0]
    assert time.perf_counter() - started < 1.0
    assert scheduler.clock.now == 7200


def test_loops_run_in_the_order_of_their_events_across_processes():
    scheduler, (a, b) = make_scheduler("a", "b")
    order: list[tuple[str, float]] = []

    async def ticker(loop: SimLoop, name: str, period: float):
        for _ in range(3):
            await asyncio.sleep(period)
            order.append((name, loop.time()))

    a.create_task(ticker(a, "a", 1.0))
    b.create_task(ticker(b, "b", 1.5))
    scheduler.run_until(10)

    assert order == [("a", 1.0), ("b", 1.5), ("a", 2.0), ("a", 3.0), ("b", 3.0), ("b", 4.5)]


def test_a_paused_loop_runs_nothing_and_its_timers_fire_late_when_resumed():
    scheduler, (loop,) = make_scheduler("a")
    woke = sleep_on(loop, 1)
    scheduler.run_until(0.5)  # the sleep has begun: its timer is due at 1.0
    loop.paused = True
    scheduler.run_until(5)
    assert woke == []
    loop.paused = False
    scheduler.run_until(6)

    assert woke == [5.0]


def test_a_dead_loop_is_never_stepped_again():
    scheduler, (loop,) = make_scheduler("a")
    ran: list[float] = []
    loop.call_at(2.0, lambda: ran.append(loop.time()))
    loop.dead = True
    scheduler.run_until(5)

    assert ran == []


def test_to_thread_runs_inline_and_hands_back_its_result_and_its_error():
    scheduler, (loop,) = make_scheduler("a")
    results: list[object] = []

    def fails():
        raise ValueError("from the worker")

    async def main():
        results.append(await asyncio.to_thread(lambda: 6 * 7))
        try:
            await asyncio.to_thread(fails)
        except ValueError as exc:
            results.append(str(exc))

    loop.create_task(main())
    scheduler.run_until(1)

    assert results == [42, "from the worker"]


def test_a_database_without_reader_threads_reads_inline_on_its_own_connection(tmp_path):
    # Runtime.threads off (the simulation): Database.read runs on the loop's thread, at once, in
    # its own read transaction, and sees only what is committed.
    scheduler, (loop,) = make_scheduler("a")
    db = product_database(tmp_path, readers=0).open()
    threads_before = threading.active_count()
    seen: list[tuple[int, bool, int, float]] = []

    def where() -> tuple[int, bool, int, float]:
        count = db.reader.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        return threading.get_ident(), db.reader is db.conn, count, loop.time()

    async def main():
        await asyncio.sleep(1.0)
        seen.append(await db.read(where))
        db.conn.execute("BEGIN")
        db.conn.execute(
            "INSERT INTO users (username, email, name, password_hash, created_at, updated_at)"
            " VALUES ('ada', 'a@x.io', 'A', 'h', '', '')"
        )
        seen.append(await db.read(where))  # the writer's transaction is not committed yet
        db.conn.execute("ROLLBACK")

    loop.create_task(main())
    try:
        scheduler.run_until(5)
    finally:
        db.shutdown()

    assert seen == [(threading.get_ident(), False, 0, 1.0), (threading.get_ident(), False, 0, 1.0)]
    assert threading.active_count() == threads_before


def test_the_wire_delivers_in_time_order_before_loops_at_the_same_instant():
    scheduler, (loop,) = make_scheduler("a")
    seen: list[str] = []
    scheduler.wire.call_at(2.0, seen.append, "wire at 2")
    loop.call_at(2.0, lambda: seen.append("loop at 2"))
    scheduler.wire.call_at(1.0, seen.append, "wire at 1")
    scheduler.run_until(3)

    assert seen == ["wire at 1", "wire at 2", "loop at 2"]


def test_a_busy_loop_that_never_lets_virtual_time_move_is_reported_not_waited_for(monkeypatch):
    # A run that can never reach its end (callbacks rescheduling one another at one instant) must fail
    # with the seed, not hang a campaign's worker silently.
    import pytest

    from talentnest.sim import loop as loop_module

    monkeypatch.setattr(loop_module, "STALL_STEPS", 1_000)
    scheduler, (busy, calm) = make_scheduler("busy", "calm")
    woke = sleep_on(calm, 1.0)
    scheduler.run_until(2.0)
    assert woke == [1.0], "time moves as long as something waits"

    def spin() -> None:
        busy.call_soon(spin)

    busy.call_soon(spin)
    with pytest.raises(loop_module.Stalled, match="busiest loop is busy"):
        scheduler.run_until(10.0)


def test_waiting_out_the_last_sliver_of_a_deadline_on_a_skewed_clock_lets_time_move(monkeypatch):
    # A node's clock is the virtual one plus a skew; ``sleep(deadline - node_now())`` can come to a
    # sliver under asyncio's 1 ns resolution, which asyncio runs at once. On virtual time that woke at
    # the same instant for ever (campaign seeds 1963, 3549, 5122); a sliver now waits one resolution.
    from talentnest.sim import loop as loop_module

    monkeypatch.setattr(loop_module, "STALL_STEPS", 10_000)
    scheduler, (loop,) = make_scheduler("node")
    skew = -3.2  # the node's clock is behind, so its last place is finer than virtual time's
    scheduler.clock.advance_to(3.2419792437)
    deadline = (scheduler.clock.now + skew) + 5e-17  # a sliver that virtual time cannot even add
    wakes: list[float] = []

    async def wait_out() -> None:
        while (pause := deadline - (loop.time() + skew)) > 0:
            await asyncio.sleep(pause)
            wakes.append(loop.time())

    loop.create_task(wait_out())
    scheduler.run_until(4.0)
    assert wakes and len(wakes) < 1_000, f"{len(wakes)} wakes"
    assert wakes == sorted(set(wakes)), "every wake is at a later instant"
