"""Pipeline.run: event-driven, no fixed sleeps, timeouts and launch_once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import pdtnb


def metadata(**jobs) -> pdtnb.InProcessMetadataRepository:
    return pdtnb.InProcessMetadataRepository(dict(jobs))


async def test_three_stage_in_process_chain_finishes_fast(make_chain):
    jobs = {f"j{i}": i for i in range(10)}
    chain = make_chain(3, jobs)
    async with chain.pipeline as pipeline:
        start = time.perf_counter()
        await pipeline.run(timeout=5)
        elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"3-stage chain of 10 jobs took {elapsed:.3f} s"
    assert chain.outs[0].data == {j: v + 1 for j, v in jobs.items()}
    assert chain.outs[1].data == {j: v + 2 for j, v in jobs.items()}
    assert chain.outs[2].data == {j: v + 3 for j, v in jobs.items()}
    for done in chain.dones:
        assert set(done.data) == set(jobs)
        assert {r["result"] for r in done.data.values()} == {"success"}
    # each job ran exactly once per stage
    assert len(chain.calls) == 30
    assert set(chain.calls.values()) == {1}


async def test_run_picks_up_input_added_between_runs(make_chain):
    chain = make_chain(2, {"a": 1})
    async with chain.pipeline as pipeline:
        await pipeline.run(timeout=5)
        await chain.inp.dump("b", 10)
        await pipeline.run(timeout=5)
    assert chain.outs[1].data == {"a": 3, "b": 12}
    assert set(chain.calls.values()) == {1}


def executor_chain(executor, jobs: dict[str, int], sleep: float, finished: dict):
    inp, mid, out = metadata(**jobs), metadata(), metadata()
    done1, done2 = metadata(), metadata()

    @pdtnb.ExecutorTask("slow", executor, done1)
    def slow(job, inp, mid):
        time.sleep(sleep)
        asyncio.run(mid.dump(job, asyncio.run(inp.info(job)) + 1))
        finished[("slow", job)] = time.perf_counter()

    slow.link("inp", inp, is_input=True)
    slow.link("mid", mid, is_output=True)

    @pdtnb.ExecutorTask("fast", executor, done2)
    def fast(job, mid, out):
        asyncio.run(out.dump(job, asyncio.run(mid.info(job)) * 2))
        finished[("fast", job)] = time.perf_counter()

    fast.plug(slow)
    fast.link("out", out, is_output=True)
    return pdtnb.Pipeline([slow, fast], pdtnb.Session()), out, done1, done2


async def test_executor_chain_has_no_polling_delay(executor):
    finished: dict = {}
    pipeline, out, done1, done2 = executor_chain(executor, {"j1": 1}, 0.2, finished)
    async with pipeline:
        start = time.perf_counter()
        await pipeline.run(timeout=1.0)
        end = time.perf_counter()
    assert out.data == {"j1": 4}
    assert done1.data["j1"]["result"] == "success"
    assert done2.data["j1"]["result"] == "success"
    assert end - start < 0.6, f"run took {end - start:.3f} s for a 0.2 s job"
    # the run ends promptly once the last body finished, not at a polling tick
    assert end - finished[("fast", "j1")] < 0.15
    # and the second stage started promptly once the first finished
    assert finished[("fast", "j1")] - finished[("slow", "j1")] < 0.15


async def test_executor_jobs_run_in_parallel(executor):
    finished: dict = {}
    jobs = {f"j{i}": i for i in range(4)}
    pipeline, out, _, done2 = executor_chain(executor, jobs, 0.2, finished)
    async with pipeline:
        start = time.perf_counter()
        await pipeline.run(timeout=1.0)
        elapsed = time.perf_counter() - start
    assert out.data == {j: (v + 1) * 2 for j, v in jobs.items()}
    assert set(done2.data) == set(jobs)
    assert elapsed < 0.6, f"4 parallel 0.2 s jobs took {elapsed:.3f} s"


async def test_run_timeout_raises_on_a_job_that_never_finishes(executor, release):
    inp, done = metadata(j1=1), metadata()

    @pdtnb.ExecutorTask("stuck", executor, done)
    def stuck(job, inp):
        release.wait(10)

    stuck.link("inp", inp, is_input=True)
    async with pdtnb.Pipeline([stuck], pdtnb.Session()) as pipeline:
        start = time.perf_counter()
        with pytest.raises(TimeoutError):
            await pipeline.run(timeout=0.3)
        elapsed = time.perf_counter() - start
        assert 0.25 <= elapsed < 1.0
        # the job is still live: the timeout does not pretend it finished
        assert set(await stuck.live.job_ids()) == {"j1"}
        assert done.data == {}
        release.set()


async def test_run_timeout_with_custom_task_that_never_ends():
    class Forever(pdtnb.Task):
        poll_interval = 0.05

        def __init__(self):
            super().__init__("forever")
            self.live = metadata()
            self.link("inp", metadata(j1=1), is_input=True)
            self.link("live", self.live, is_status=True, inhibits_start=True)

        async def launch(self, job):
            await self.live.dump(job, "running")

        async def update(self):
            return bool(self.live.data)

    async with pdtnb.Pipeline([Forever()], pdtnb.Session()) as pipeline:
        start = time.perf_counter()
        with pytest.raises(TimeoutError):
            await pipeline.run(timeout=0.3)
        assert time.perf_counter() - start < 1.0


async def test_run_launch_once_launches_only_in_the_first_round(make_chain):
    chain = make_chain(2, {"a": 1, "b": 2})
    async with chain.pipeline as pipeline:
        await pipeline.run(launch_once=True, timeout=5)
        # the first stage ran; the second stage's jobs became ready only afterwards
        assert chain.outs[0].data == {"a": 2, "b": 3}
        assert chain.outs[1].data == {}
        assert await pipeline.gather_ready_jobs(chain.tasks[1]) == {"a", "b"}
        # a normal run finishes the work
        await pipeline.run(timeout=5)
    assert chain.outs[1].data == {"a": 3, "b": 4}


async def test_run_launch_once_still_reaps_live_jobs(executor):
    finished: dict = {}
    pipeline, out, done1, done2 = executor_chain(executor, {"j1": 1}, 0.05, finished)
    async with pipeline:
        await pipeline.run(launch_once=True, timeout=1.0)
        assert done1.data["j1"]["result"] == "success"  # reaped after the first round
        assert out.data == {}  # the second stage was never launched
        assert done2.data == {}


async def test_run_returns_promptly_when_quiet(make_chain):
    chain = make_chain(3, {})
    async with chain.pipeline as pipeline:
        start = time.perf_counter()
        await pipeline.run(timeout=5)
        elapsed = time.perf_counter() - start
    assert elapsed < 0.2
    assert all(not o.data for o in chain.outs)


async def test_run_returns_promptly_when_everything_is_already_done(make_chain):
    chain = make_chain(2, {"a": 1})
    async with chain.pipeline as pipeline:
        await pipeline.run(timeout=5)
        start = time.perf_counter()
        await pipeline.run(timeout=5)
        assert time.perf_counter() - start < 0.2
    assert set(chain.calls.values()) == {1}


async def test_run_wakes_when_an_external_thread_signals(executor):
    """A job ending in another thread wakes run at once, even mid-wait."""
    inp, done = metadata(j1=1), metadata()
    gate = threading.Event()

    @pdtnb.ExecutorTask("gated", executor, done)
    def gated(job, inp):
        gate.wait(5)

    gated.link("inp", inp, is_input=True)
    async with pdtnb.Pipeline([gated], pdtnb.Session()) as pipeline:
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, gate.set)
        start = time.perf_counter()
        await pipeline.run(timeout=1.0)
        elapsed = time.perf_counter() - start
    assert done.data["j1"]["result"] == "success"
    assert elapsed < 0.4
