"""Failures are recorded, not swallowed, and never relaunched in a hot loop."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

import pdtnb
from pdtnb.status import TaskStatus

RUN_TIMEOUT = 1.0


def metadata(**jobs) -> pdtnb.InProcessMetadataRepository:
    return pdtnb.InProcessMetadataRepository(dict(jobs))


class Boom(Exception):
    pass


def check_failure_record(record, message: str) -> None:
    assert isinstance(record, dict)
    assert record["result"] in ("failure", "launch-error")
    assert record["error_type"].endswith("Boom") and message in record["message"]
    assert isinstance(record["traceback"], str)
    assert "Traceback" in record["traceback"]
    assert message in record["traceback"]


def make_failing(kind: str, executor, calls: list):
    inp = metadata(good=1, bad=2)
    out, done = metadata(), metadata()

    async def body(job, inp, out):
        calls.append(job)
        if job == "bad":
            raise Boom(f"body failed on {job}")
        await out.dump(job, await inp.info(job))

    if kind == "inprocess":
        task = pdtnb.InProcessSyncTask("worker", done, func=body)
    else:
        task = pdtnb.ExecutorTask("worker", executor, done, func=body)
    task.link("inp", inp, is_input=True)
    task.link("out", out, is_output=True)
    return task, out, done


@pytest.mark.parametrize("kind", ["inprocess", "executor"])
async def test_body_exception_is_recorded_and_counted_as_failed(kind, executor):
    calls: list = []
    task, out, done = make_failing(kind, executor, calls)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        start = time.perf_counter()
        await pipeline.run(timeout=RUN_TIMEOUT)
        elapsed = time.perf_counter() - start
        status = await pdtnb.pipeline_status(pipeline)
        # the failed job is not ready again (no retry until its done entry is removed)
        assert await pipeline.gather_ready_jobs(task) == set()
    assert elapsed < 0.5
    assert sorted(calls) == ["bad", "good"]  # each body called exactly once
    assert out.data == {"good": 1}
    assert done.data["good"]["result"] == "success"
    check_failure_record(done.data["bad"], "body failed on bad")

    ts = status.task("worker")
    assert isinstance(ts, TaskStatus)
    assert ts.failed == 1
    assert ts.done == 1  # done counts successes only
    assert ts.ready == 0
    assert ts.live == 0


@pytest.mark.parametrize("kind", ["inprocess", "executor"])
async def test_failed_job_does_not_block_other_jobs_or_downstream(kind, executor):
    calls: list = []
    task, _, done = make_failing(kind, executor, calls)
    after_done, final = metadata(), metadata()

    @pdtnb.InProcessSyncTask("after", after_done)
    async def after(job, out, final):
        await final.dump(job, await out.info(job))

    after.plug(task)
    after.link("final", final, is_output=True)
    async with pdtnb.Pipeline([task, after], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=RUN_TIMEOUT)
    assert final.data == {"good": 1}
    assert "bad" not in after_done.data
    assert done.data["bad"]["result"] == "failure"


async def test_removing_the_failure_record_allows_a_retry():
    calls: list = []
    task, out, done = make_failing("inprocess", None, calls)
    assert out.data == {}
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=RUN_TIMEOUT)
        await done.delete("bad")
        await pipeline.run(timeout=RUN_TIMEOUT)
    assert sorted(calls) == ["bad", "bad", "good"]


class FailingLaunch(pdtnb.Task):
    """A custom task whose launch always raises."""

    def __init__(self, name: str, inp, done=None):
        super().__init__(name)
        self.calls = 0
        self.link("inp", inp, is_input=True)
        if done is not None:
            self.link("done", done, is_status=True, inhibits_start=True, required_for_output=True)

    async def launch(self, job):
        self.calls += 1
        raise Boom(f"cannot launch {job}")

    async def update(self):
        return False


async def test_custom_launch_exception_is_recorded_in_done():
    done = metadata()
    task = FailingLaunch("custom", metadata(j1=1), done)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        with contextlib.suppress(TimeoutError):
            await pipeline.run(timeout=RUN_TIMEOUT)
        status = await pdtnb.pipeline_status(pipeline)
    assert task.calls == 1
    check_failure_record(done.data["j1"], "cannot launch j1")
    assert status.task("custom").failed == 1
    assert status.task("custom").done == 0


async def test_custom_launch_exception_without_done_is_not_hot_looped():
    task = FailingLaunch("custom", metadata(j1=1))
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        start = time.perf_counter()
        with contextlib.suppress(TimeoutError):
            await pipeline.run(timeout=1.0)
        assert time.perf_counter() - start < 1.5
        assert 1 <= task.calls <= 2
        # repeated rounds within a second do not relaunch it each time either
        calls_before = task.calls
        for _ in range(20):
            await pipeline.update()
            await asyncio.sleep(0.01)
        assert task.calls - calls_before <= 1


async def test_custom_launch_exception_several_updates():
    task = FailingLaunch("custom", metadata(j1=1, j2=2))
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        for _ in range(30):
            await pipeline.update()
    # two jobs, each tried at most twice within the ~0 s these rounds take
    assert 2 <= task.calls <= 4


async def test_one_failing_launch_does_not_stop_other_tasks():
    ok_done, out = metadata(), metadata()
    inp = metadata(j1=1)

    @pdtnb.InProcessSyncTask("ok", ok_done)
    async def ok(job, inp, out):
        await out.dump(job, await inp.info(job))

    ok.link("inp", inp, is_input=True)
    ok.link("out", out, is_output=True)
    bad = FailingLaunch("bad", inp, metadata())
    async with pdtnb.Pipeline([bad, ok], pdtnb.Session()) as pipeline:
        with contextlib.suppress(TimeoutError):
            await pipeline.run(timeout=RUN_TIMEOUT)
    assert out.data == {"j1": 1}
    assert bad.calls == 1
