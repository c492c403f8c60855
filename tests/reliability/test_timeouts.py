"""`run(timeout=S)` ends within about a second of S whatever the jobs do, leaving state consistent."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import pdtnb


async def test_a_hanging_in_process_job_does_not_outlive_the_timeout():
    raw = pdtnb.InProcessMetadataRepository({"hang": 1, "quick": 2})
    done = pdtnb.InProcessMetadataRepository()

    @pdtnb.InProcessSyncTask("t", done)
    async def body(job):
        if job == "hang":
            await asyncio.sleep(3600)

    body.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([body], pdtnb.Session()) as pipeline:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"timed out after 0\.5 s"):
            await pipeline.run(timeout=0.5)
        assert time.monotonic() - started < 1.5
        assert "hang" not in done.data, "an interrupted job is not a failure"
        assert await pipeline.gather_ready_jobs(body) == {"hang"}, "it is ready again"


async def test_queued_executor_jobs_are_dropped_at_the_timeout():
    raw = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(5)})
    done = pdtnb.InProcessMetadataRepository()
    gate = threading.Event()
    ran: list[str] = []
    pool = ThreadPoolExecutor(1)

    def body(job):
        ran.append(job)
        gate.wait(10)

    task = pdtnb.ExecutorTask("t", pool, done, func=body)
    task.link("raw", raw, is_input=True)
    try:
        async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
            with pytest.raises(TimeoutError):
                await pipeline.run(timeout=0.3)
            assert len(await task.live.job_ids()) == 1, "only the running body stays live"
            gate.set()
            await pipeline.run(timeout=10)
        assert len(ran) == 5 and len(set(ran)) == 5, "every body ran once: none queued twice, none lost"
        assert len(done.data) == 5
    finally:
        gate.set()
        pool.shutdown(wait=True)
