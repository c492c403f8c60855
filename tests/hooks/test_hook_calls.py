"""Job hooks (pdtnb.hooks): vetoes shown by ``why``, the calls around each outcome for in-process,
executor and process tasks, sync and async hooks, and hooks that raise."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import pdtnb
from pdtnb import (
    ExecutorTask,
    InProcessMetadataRepository,
    InProcessSyncTask,
    LocalLinuxManager,
    Pipeline,
    ProcessTask,
    ResourceManager,
    Resources,
    Session,
    why_job,
)
from pdtnb.hooks import HookSet


class Recorder:
    """A sync hook noting every call as (name, method, task, job, outcome)."""

    def __init__(self, name: str, calls: list[tuple[Any, ...]]):
        self.name = name
        self.calls = calls

    def on_launch(self, task, job, attempt):
        self.calls.append((self.name, "on_launch", task.name, job, attempt))

    def after_job(self, task, job, record):
        self.calls.append((self.name, "after_job", task.name, job, record.outcome.value))

    def on_failure(self, task, job, record):
        self.calls.append((self.name, "on_failure", task.name, job, record.error_type or record.outcome.value))


class AsyncRecorder(Recorder):
    """The same hook with coroutine methods (each yields to the loop once)."""

    async def on_launch(self, task, job, attempt):
        await asyncio.sleep(0)
        super().on_launch(task, job, attempt)

    async def after_job(self, task, job, record):
        await asyncio.sleep(0)
        super().after_job(task, job, record)

    async def on_failure(self, task, job, record):
        await asyncio.sleep(0)
        super().on_failure(task, job, record)


class Gate:
    """Vetoes the jobs in ``closed`` (with a reason, or False for ``silent`` ones)."""

    def __init__(self, closed: dict[str, str | bool]):
        self.closed = closed
        self.asked: list[str] = []

    async def before_launch(self, task, job):
        self.asked.append(job)
        return self.closed.get(job)


def inprocess(jobs: dict[str, int], fail: set[str] = frozenset(), **kwargs: Any):
    done = InProcessMetadataRepository()
    out = InProcessMetadataRepository()

    @InProcessSyncTask("t", done, **kwargs)
    async def body(job, inp, out):
        if job in fail:
            raise ValueError(f"bad input {job}")
        await out.dump(job, 1)

    body.link("inp", InProcessMetadataRepository(dict(jobs)), is_input=True)
    body.link("out", out, is_output=True)
    return body, done


# ---- vetoes -----------------------------------------------------------------------------------


async def test_a_veto_skips_the_job_and_why_gives_the_reason() -> None:
    gate = Gate({"b": "the maintenance window is open", "c": False})
    task, done = inprocess({"a": 1, "b": 2, "c": 3}, hooks=[gate])
    async with Pipeline([task], Session()) as pipeline:
        summary = await pipeline.run(timeout=10)
        assert set(done.data) == {"a"}, "vetoed jobs are not run"
        assert summary.failed == 0 and summary.ok, "a veto is not a failure"
        explained = await why_job(pipeline, "t", "b")
        assert explained.state == "ready"
        text = explained.to_text()
        assert "the maintenance window is open" in text and "skipped by a hook" in text, text
        assert "hook Gate vetoed its launch" in (await why_job(pipeline, "t", "c")).to_text()
        report = await pipeline.launch_phase()
        assert report.vetoed == 2 and report.pending == 0

        gate.closed.clear()  # the window closes: the next round launches them
        await pipeline.run(timeout=10)
        assert set(done.data) == {"a", "b", "c"}
        assert pipeline.last_veto("t", "b") is None
        assert "skipped" not in (await why_job(pipeline, "t", "a")).to_text()


async def test_why_asks_the_hooks_when_this_process_did_not_run_the_pipeline() -> None:
    gate = Gate({"b": "quota of the partner API spent"})
    task, _done = inprocess({"a": 1, "b": 2})
    async with Pipeline([task], Session(), hooks=[gate]) as pipeline:
        explained = await why_job(pipeline, "t", "b")
        assert any("asked now" in r and "quota of the partner API spent" in r for r in explained.reasons), explained
        assert "will be launched" in (await why_job(pipeline, "t", "a")).to_text()


async def test_retries_are_asked_too() -> None:
    calls: list[tuple[Any, ...]] = []
    flaky = {"n": 0}
    done = InProcessMetadataRepository()
    gate = Gate({})

    retry = pdtnb.Retry(attempts=2, delay=0.05, jitter=0)

    @InProcessSyncTask("r", done, retry=retry, hooks=[gate, Recorder("h", calls)])
    async def body(job, inp):
        flaky["n"] += 1
        if flaky["n"] == 1:
            raise RuntimeError("first attempt fails")

    body.link("inp", InProcessMetadataRepository({"j": 1}), is_input=True)
    async with Pipeline([body], Session()) as pipeline:
        await pipeline.run(timeout=10)
    assert done.data["j"]["result"] == "success" and done.data["j"]["attempt"] == 2
    assert gate.asked == ["j", "j"]
    launches = [c for c in calls if c[1] == "on_launch"]
    assert launches == [("h", "on_launch", "r", "j", 1), ("h", "on_launch", "r", "j", 2)]


# ---- calls around outcomes --------------------------------------------------------------------


async def test_sync_and_async_hooks_get_each_record_task_hooks_first() -> None:
    calls: list[tuple[Any, ...]] = []
    task, done = inprocess({"a": 1, "b": 2}, fail={"b"}, hooks=[AsyncRecorder("task", calls)])
    async with Pipeline([task], Session(), hooks=[Recorder("pipe", calls)]) as pipeline:
        summary = await pipeline.run(timeout=10)
    assert summary.succeeded == 1 and summary.failed == 1
    assert done.data["b"]["result"] == "failure"
    by_job = {j: [(who, what, arg) for who, what, _t, jj, arg in calls if jj == j] for j in ("a", "b")}
    assert by_job["a"] == [
        ("task", "on_launch", 1),
        ("pipe", "on_launch", 1),
        ("task", "after_job", "success"),
        ("pipe", "after_job", "success"),
    ]
    assert by_job["b"] == [
        ("task", "on_launch", 1),
        ("pipe", "on_launch", 1),
        ("task", "after_job", "failure"),
        ("pipe", "after_job", "failure"),
        ("task", "on_failure", "ValueError"),
        ("pipe", "on_failure", "ValueError"),
    ]
    assert task._hook_set is not None and len(task._hook_set.hooks) == 1, "closing drops the pipeline's hooks"


async def test_executor_task_hooks(tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []
    done = InProcessMetadataRepository()
    pool = ThreadPoolExecutor(2)

    def body(job, inp):
        if job == "bad":
            raise KeyError(job)

    try:
        task = ExecutorTask("ex", pool, done, func=body)
        task.hooks.append(AsyncRecorder("task", calls))  # a task's hooks as the pipeline opens
        task.link("inp", InProcessMetadataRepository({"ok": 1, "bad": 2}), is_input=True)
        async with Pipeline([task], Session(), hooks=[Recorder("pipe", calls)]) as pipeline:
            await pipeline.run(timeout=10)
    finally:
        pool.shutdown(wait=True)
    ended = sorted((who, what, job, arg) for who, what, _t, job, arg in calls if what != "on_launch")
    assert ended == [
        ("pipe", "after_job", "bad", "failure"),
        ("pipe", "after_job", "ok", "success"),
        ("pipe", "on_failure", "bad", "KeyError"),
        ("task", "after_job", "bad", "failure"),
        ("task", "after_job", "ok", "success"),
        ("task", "on_failure", "bad", "KeyError"),
    ]


async def test_process_task_hooks(tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []
    session = Session()

    @session.resource
    async def procman():
        yield LocalLinuxManager("hooks", tmp_path)

    resources = ResourceManager(Resources.parse(cpu=4, mem="1Gi"))
    done = InProcessMetadataRepository()
    task = ProcessTask(
        "proc",
        procman,
        resources,
        Resources.parse(cpu=1, mem="1Mi"),
        InProcessMetadataRepository(),
        'if [ "{{ job }}" = "bad" ]; then exit 3; fi\necho fine\n',
        done=done,
        hooks=[AsyncRecorder("task", calls)],
    )
    task.link("inp", InProcessMetadataRepository({"ok": 1, "bad": 2}), is_input=True)
    async with Pipeline([task], session, [resources], hooks=[Recorder("pipe", calls)]) as pipeline:
        await pipeline.run(timeout=20)
    assert done.data["bad"]["exit_code"] == 3
    ended = sorted((who, what, job, arg) for who, what, _t, job, arg in calls if what != "on_launch")
    assert ended == [
        ("pipe", "after_job", "bad", "failure"),
        ("pipe", "after_job", "ok", "success"),
        ("pipe", "on_failure", "bad", "failure"),
        ("task", "after_job", "bad", "failure"),
        ("task", "after_job", "ok", "success"),
        ("task", "on_failure", "bad", "failure"),
    ]
    launched = sorted((who, job) for who, what, _t, job, _a in calls if what == "on_launch")
    assert launched == [("pipe", "bad"), ("pipe", "ok"), ("task", "bad"), ("task", "ok")]


# ---- hooks that raise -------------------------------------------------------------------------


class Broken:
    name = "broken-hook"

    def before_launch(self, task, job):
        raise RuntimeError("gate broke")

    async def on_launch(self, task, job, attempt):
        raise RuntimeError("launch note broke")

    def after_job(self, task, job, record):
        raise RuntimeError("after broke")

    async def on_failure(self, task, job, record):
        raise RuntimeError("failure note broke")

    def close(self):
        raise RuntimeError("close broke")


async def test_a_raising_hook_is_logged_once_per_method_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pdtnb.hooks")
    calls: list[tuple[Any, ...]] = []
    task, done = inprocess({f"j{i}": i for i in range(20)}, fail={"j3", "j4"})
    async with Pipeline([task], Session(), hooks=[Broken(), Recorder("after", calls)]) as pipeline:
        summary = await pipeline.run(timeout=10)
    assert len(done.data) == 20, "every job ran: a raising before_launch lets the job go"
    assert summary.succeeded == 18 and summary.failed == 2
    assert done.data["j3"]["result"] == "failure" and done.data["j5"]["result"] == "success"
    assert sum(1 for c in calls if c[1] == "after_job") == 20, "the next hook is still called"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert sorted(r.getMessage().split(" raised")[0] for r in errors) == [
        "hook broken-hook.after_job",
        "hook broken-hook.before_launch",
        "hook broken-hook.close",
        "hook broken-hook.on_failure",
        "hook broken-hook.on_launch",
    ]


def test_a_hook_class_instead_of_an_instance_is_refused() -> None:
    with pytest.raises(TypeError, match="pass an instance"):
        Pipeline([], Session(), hooks=[pdtnb.JsonLinesLog])
    with pytest.raises(TypeError, match="pass an instance"):
        inprocess({"a": 1}, hooks=[Recorder])


def test_no_hooks_nothing_on_the_job_path() -> None:
    task, _ = inprocess({"a": 1})
    assert task._hook_set is None
    assert Pipeline([task], Session(), hooks=[object()]).hooks_for(task) is None, "no hook method: no dispatch"
    assert isinstance(Pipeline([task], Session(), hooks=[Gate({})]).hooks_for(task), HookSet)
    assert task.stream_launcher() is not None


async def test_a_launch_by_hand_is_asked_too_and_force_overrides_the_veto():
    """``launch TASK JOB`` (the CLI, ``%pdt launch``, the dashboard's Launch) asks the hooks as a
    launch phase does: a veto is refused with its reason; ``force`` launches anyway."""
    from pdtnb.admin import launch_job

    gate = Gate({"a": "the maintenance window is open"})
    task, done = inprocess({"a": 1, "b": 2}, hooks=[gate])
    async with Pipeline([task], Session()) as pipeline:
        vetoed = await launch_job(pipeline, "t", "a")
        assert vetoed.state == "vetoed" and gate.asked == ["a"]
        assert vetoed.refusal() == "t:a was skipped by hook Gate: the maintenance window is open"
        assert vetoed.forcible and not await done.contains("a")
        assert (await launch_job(pipeline, "t", "b")).state == "started" and await done.contains("b")
        forced = await launch_job(pipeline, "t", "a", force=True)
        assert forced.state == "started" and await done.contains("a")
        assert gate.asked == ["a", "b"], "a forced launch does not ask"
