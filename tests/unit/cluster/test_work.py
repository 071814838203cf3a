"""One long job at a time: a second one is refused (and never started), side tasks' failures are logged."""

from __future__ import annotations

import asyncio
import logging

from talentnest.cluster.work import Job, Worker


async def test_one_job_at_a_time_and_the_refused_one_never_runs():
    worker = Worker()
    gate = asyncio.Event()
    ran: list[str] = []

    async def job(name: str) -> None:
        ran.append(name)
        await gate.wait()

    assert worker.start(Job.SYNC, job("sync"))
    await asyncio.sleep(0)
    assert worker.busy and worker.syncing and worker.current == Job.SYNC
    assert not worker.start(Job.CAMPAIGN, job("campaign")), "a second job while one runs"
    gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not worker.busy
    assert ran == ["sync"]
    assert worker.start(Job.CAMPAIGN, job("campaign"))
    await worker.stop()
    assert not worker.busy


async def test_a_failed_job_frees_the_worker_and_says_why(caplog):
    worker = Worker()

    async def broken() -> None:
        raise OSError("disk full")

    with caplog.at_level(logging.ERROR, logger="talentnest.cluster"):
        assert worker.start(Job.CATCH_UP, broken())
        for _ in range(5):
            await asyncio.sleep(0)
    assert not worker.busy
    assert "catch_up failed: disk full" in caplog.text


def test_only_sync_and_catch_up_count_as_syncing():
    assert [j for j in Job if j.is_syncing] == [Job.SYNC, Job.CATCH_UP]
