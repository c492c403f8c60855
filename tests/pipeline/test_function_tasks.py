"""InProcessSyncTask and ExecutorTask: decorator and func= forms, binding links to parameters,
configuration errors at open, cancel, and the live repository."""

from __future__ import annotations

import asyncio
import threading

import pytest

import pdtnb

#: Every run here should end in milliseconds; the timeout only bounds a hang.
RUN_TIMEOUT = 1.5


def metadata(**jobs) -> pdtnb.InProcessMetadataRepository:
    return pdtnb.InProcessMetadataRepository(dict(jobs))


# ---- InProcessSyncTask -----------------------------------------------------------------------


async def test_inprocess_decorator_receives_repositories_by_link_name():
    inp = metadata(j1=1, j2=2)
    out = metadata()
    done = metadata()
    seen = {}

    @pdtnb.InProcessSyncTask("double", done)
    async def double(job, inp, out):
        seen[job] = (inp, out)
        await out.dump(job, await inp.info(job) * 2)

    assert isinstance(double, pdtnb.InProcessSyncTask)
    double.link("inp", inp, is_input=True)
    double.link("out", out, is_output=True)
    async with pdtnb.Pipeline([double], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=RUN_TIMEOUT)
    assert out.data == {"j1": 2, "j2": 4}
    assert seen["j1"][0] is inp and seen["j1"][1] is out
    assert {j: r["result"] for j, r in done.data.items()} == {"j1": "success", "j2": "success"}
    assert all(r["start_time"] <= r["end_time"] for r in done.data.values())


async def test_inprocess_func_keyword_and_parameter_order_free():
    inp = metadata(a=10)
    out = metadata()
    done = metadata()

    async def body(out, job, inp):  # parameters bound by name, not position
        await out.dump(job, await inp.info(job) + 1)

    task = pdtnb.InProcessSyncTask("inc", done, func=body)
    task.link("inp", inp, is_input=True)
    task.link("out", out, is_output=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=RUN_TIMEOUT)
    assert out.data == {"a": 11}
    assert done.data["a"]["result"] == "success"


async def test_body_without_job_parameter_is_accepted():
    inp = metadata(a=1)
    done = metadata()
    calls = []

    @pdtnb.InProcessSyncTask("t", done)
    async def t(inp):
        calls.append(inp)

    t.link("inp", inp, is_input=True)
    async with pdtnb.Pipeline([t], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=RUN_TIMEOUT)
    assert calls == [inp]
    assert done.data["a"]["result"] == "success"


@pytest.mark.parametrize("kind", ["inprocess", "executor"])
async def test_parameter_naming_no_link_fails_at_open(kind, executor):
    done = metadata()

    async def body(job, inp, outptu):
        pass

    if kind == "inprocess":
        task = pdtnb.InProcessSyncTask("typo_task", done, func=body)
    else:
        task = pdtnb.ExecutorTask("typo_task", executor, done, func=body)
    task.link("inp", metadata(j=1), is_input=True)
    task.link("output", metadata(), is_output=True)
    pipeline = pdtnb.Pipeline([task], pdtnb.Session())
    with pytest.raises(pdtnb.TaskConfigError) as info:
        await pipeline.open()
    message = str(info.value)
    assert "typo_task" in message
    assert "outptu" in message
    assert not pipeline.is_open
    assert not pipeline.session.is_open
    with pytest.raises(pdtnb.PipelineStateError):
        await pipeline.update()


@pytest.mark.parametrize("kind", ["inprocess", "executor"])
async def test_task_without_required_for_start_link_fails_at_open(kind, executor):
    done = metadata()

    async def body(job, out):
        pass

    if kind == "inprocess":
        task = pdtnb.InProcessSyncTask("lonely", done, func=body)
    else:
        task = pdtnb.ExecutorTask("lonely", executor, done, func=body)
    task.link("out", metadata(), is_output=True)
    pipeline = pdtnb.Pipeline([task], pdtnb.Session())
    with pytest.raises(pdtnb.TaskConfigError, match="lonely"):
        await pipeline.open()
    assert not pipeline.is_open


async def test_task_without_function_fails_at_open():
    task = pdtnb.InProcessSyncTask("nofunc", metadata())
    task.link("inp", metadata(j=1), is_input=True)
    with pytest.raises(pdtnb.TaskConfigError, match="nofunc"):
        await pdtnb.Pipeline([task], pdtnb.Session()).open()


async def test_custom_task_without_required_for_start_fails_at_open():
    class Custom(pdtnb.Task):
        async def update(self):
            return False

        async def launch(self, job):
            return None

    task = Custom("custom_no_inputs")
    task.link("out", metadata(), is_output=True)
    with pytest.raises(pdtnb.TaskConfigError, match="custom_no_inputs"):
        await pdtnb.Pipeline([task], pdtnb.Session()).open()


async def test_ready_override_satisfies_validation():
    done = metadata()
    calls = []

    @pdtnb.InProcessSyncTask("t", done, ready=metadata(r1=None))
    async def t(job):
        calls.append(job)

    async with pdtnb.Pipeline([t], pdtnb.Session()) as pipeline:
        await pipeline.update()
    assert calls == ["r1"]


# ---- ExecutorTask ----------------------------------------------------------------------------


async def test_executor_decorator_runs_sync_body_in_worker_thread(executor):
    inp = metadata(j1=1, j2=2, j3=3)
    out = metadata()
    done = metadata()
    threads = set()

    @pdtnb.ExecutorTask("ex", executor, done)
    def ex(job, inp, out):
        threads.add(threading.get_ident())
        # a sync body gets the repositories too; drive them with a private loop
        value = asyncio.run(inp.info(job))
        asyncio.run(out.dump(job, value * 10))

    assert isinstance(ex, pdtnb.ExecutorTask)
    ex.link("inp", inp, is_input=True)
    ex.link("out", out, is_output=True)
    async with pdtnb.Pipeline([ex], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=RUN_TIMEOUT)
    assert out.data == {"j1": 10, "j2": 20, "j3": 30}
    assert threading.get_ident() not in threads
    assert {r["result"] for r in done.data.values()} == {"success"}
    assert set(done.data) == {"j1", "j2", "j3"}


async def test_executor_func_keyword_async_body(executor):
    inp = metadata(j1="a")
    out = metadata()
    done = metadata()

    async def body(job, inp, out):
        await out.dump(job, (await inp.info(job)).upper())

    task = pdtnb.ExecutorTask("ex", executor, done, func=body)
    task.link("inp", inp, is_input=True)
    task.link("out", out, is_output=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=RUN_TIMEOUT)
    assert out.data == {"j1": "A"}
    assert done.data["j1"]["result"] == "success"


async def test_executor_live_repo_shows_running_jobs(executor, release):
    inp = metadata(j1=1)
    done = metadata()
    started = threading.Event()

    @pdtnb.ExecutorTask("slow", executor, done)
    def slow(job, inp):
        started.set()
        assert release.wait(10)

    slow.link("inp", inp, is_input=True)
    async with pdtnb.Pipeline([slow], pdtnb.Session()) as pipeline:
        assert await pipeline.update() is True
        assert await asyncio.to_thread(started.wait, 5)
        live = slow.links["live"].repo
        assert live is slow.live
        assert isinstance(live, pdtnb.ExecutorLiveRepo)
        assert set(await live.job_ids()) == {"j1"}
        assert await live.contains("j1")
        assert [j async for j in live] == ["j1"]
        # a live job is not ready again, and is not launched twice
        assert await pipeline.gather_ready_jobs(slow) == set()
        assert await pipeline.update_only_update() is True
        status = await pdtnb.pipeline_status(pipeline)
        assert status.task("slow").live == 1
        assert status.task("slow").done == 0
        assert done.data == {}

        release.set()
        await pipeline.run(timeout=RUN_TIMEOUT)
        assert set(await live.job_ids()) == set()
        assert not await live.contains("j1")
    assert done.data["j1"]["result"] == "success"


async def test_executor_cancel_of_non_running_job_does_nothing(executor, release):
    inp = metadata(j1=1)
    done = metadata()
    started = threading.Event()

    @pdtnb.ExecutorTask("slow", executor, done)
    def slow(job, inp):
        started.set()
        assert release.wait(10)

    slow.link("inp", inp, is_input=True)
    async with pdtnb.Pipeline([slow], pdtnb.Session()) as pipeline:
        # nothing running at all
        assert await slow.cancel("nosuchjob") is None
        await pipeline.update()
        assert await asyncio.to_thread(started.wait, 5)
        # another job's cancel leaves the running one alone
        await slow.cancel("j2")
        assert set(await slow.live.job_ids()) == {"j1"}
        release.set()
        await pipeline.run(timeout=RUN_TIMEOUT)
        # cancelling a finished job changes nothing either
        await slow.cancel("j1")
    assert done.data["j1"]["result"] == "success"


async def test_executor_cancel_of_queued_job_prevents_it(release):
    """With one worker busy, a queued job can be cancelled through the live repository."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    inp = metadata(j1=1, j2=2)
    done = metadata()
    ran = []
    started = threading.Event()

    @pdtnb.ExecutorTask("one", pool, done)
    def one(job, inp):
        ran.append(job)
        started.set()
        assert release.wait(10)

    one.link("inp", inp, is_input=True)
    try:
        async with pdtnb.Pipeline([one], pdtnb.Session()) as pipeline:
            await pipeline.update()
            assert set(await one.live.job_ids()) == {"j1", "j2"}
            assert await asyncio.to_thread(started.wait, 5)
            queued = ({"j1", "j2"} - set(ran)).pop()
            await one.live.delete(queued)
            assert set(await one.live.job_ids()) == {ran[0]}
            # the cancelled job is ready again; keep the pipeline from relaunching it while reaping
            assert queued in await pipeline.gather_ready_jobs(one)
            one.disabled = True
            release.set()
            await pipeline.run(timeout=RUN_TIMEOUT)
    finally:
        pool.shutdown(wait=True)
    assert ran == [ran[0]]
    assert queued not in done.data
