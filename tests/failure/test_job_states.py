"""Failure is a state: blocked downstream jobs, counts that add up, hostile bodies recorded, and
launch options that are arguments of one launch."""

from __future__ import annotations

import asyncio
import sys

import pytest

import pdtnb
from pdtnb.record import read_record


def chain(fail: set[str], n: int = 6, require_success: bool = True, kind: str = "inprocess", executor=None):
    """parse -> count -> report, in memory; parse raises on the jobs in ``fail``."""
    raw = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(n)})
    parsed, counted, reported = (pdtnb.InProcessMetadataRepository() for _ in range(3))
    dones = [pdtnb.InProcessMetadataRepository() for _ in range(3)]
    seen: dict[str, list[str]] = {"parse": [], "count": [], "report": []}

    async def parse_body(job, raw, parsed):
        seen["parse"].append(job)
        value = await raw.info(job)
        await parsed.dump(job, value)  # the output is written before the failure
        if job in fail:
            raise ValueError(f"cannot parse {job}")

    if kind == "executor":

        def sync_parse(job, raw, parsed):
            seen["parse"].append(job)
            parsed.data[job] = raw.data[job]
            if job in fail:
                raise ValueError(f"cannot parse {job}")

        parse = pdtnb.ExecutorTask("parse", executor, dones[0], func=sync_parse)
    else:
        parse = pdtnb.InProcessSyncTask("parse", dones[0], func=parse_body)
    parse.link("raw", raw, is_input=True)
    parse.link("parsed", parsed, is_output=True)

    @pdtnb.InProcessSyncTask("count", dones[1])
    async def count(job, parsed, counted):
        seen["count"].append(job)
        await counted.dump(job, await parsed.info(job))

    count.plug(parse, require_success=require_success)
    count.link("counted", counted, is_output=True)

    @pdtnb.InProcessSyncTask("report", dones[2])
    async def report(job, counted, reported):
        seen["report"].append(job)
        await reported.dump(job, await counted.info(job))

    report.plug(count)
    report.link("reported", reported, is_output=True)
    return pdtnb.Pipeline([parse, count, report], pdtnb.Session()), seen, dones


@pytest.mark.parametrize("kind", ["inprocess", "executor"])
async def test_failed_upstream_job_blocks_its_dependants_and_counts_add_up(kind, executor):
    pipeline, seen, _ = chain({"j1", "j4"}, kind=kind, executor=executor)
    async with pipeline:
        summary = await pipeline.run(timeout=10)
        status = await pdtnb.pipeline_status(pipeline)
        trace = await pdtnb.pipeline_trace(pipeline, ["j1", "j2"])
    assert sorted(seen["count"]) == ["j0", "j2", "j3", "j5"], "a failed job's outputs never feed count"
    assert sorted(seen["report"]) == ["j0", "j2", "j3", "j5"]
    assert summary.failed == 2 and summary.succeeded == 4 + 4 + 4 and not summary.ok
    assert summary.blocked == 4  # j1 and j4, in count and in report
    for name, failed, blocked in (("parse", 2, 0), ("count", 0, 2), ("report", 0, 2)):
        t = status.task(name)
        counts = (t.done, t.failed, t.blocked, t.ready, t.live, t.retrying, t.waiting)
        assert counts == (4, failed, blocked, 0, 0, 0, 0)
        assert t.total == 6, "every job is in exactly one state"
    assert trace.task("report").job_states == {"j1": "blocked", "j2": "done"}
    assert status.to_dict()["tasks"][1]["blocked"] == 2


async def test_require_success_false_lets_a_task_see_failures():
    pipeline, seen, _ = chain({"j1"}, require_success=False)
    async with pipeline:
        await pipeline.run(timeout=10)
        status = await pdtnb.pipeline_status(pipeline)
    assert "j1" in seen["count"], "count opted out of require_success"
    assert status.task("count").blocked == 0


async def test_a_hand_made_link_to_another_tasks_done_requires_success_too():
    raw = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2})
    done1, done2 = pdtnb.InProcessMetadataRepository(), pdtnb.InProcessMetadataRepository()
    ran = []

    @pdtnb.InProcessSyncTask("first", done1)
    async def first(job):
        if job == "b":
            raise RuntimeError("no")

    first.link("raw", raw, is_input=True)

    @pdtnb.InProcessSyncTask("second", done2)
    async def second(job):
        ran.append(job)

    second.link("upstream", done1, required_for_start=True)  # as a pydatatask script would
    async with pdtnb.Pipeline([first, second], pdtnb.Session()) as pipeline:
        assert second.links["upstream"].require_success is True
        await pipeline.run(timeout=10)
    assert ran == ["a"]


def hostile(kind: str):
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("str fails")

    async def body(job):
        if kind == "exit":
            sys.exit(3)
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "generator":
            raise GeneratorExit
        if kind == "unprintable":
            raise Unprintable()
        if kind == "undecodable":
            raise FileNotFoundError(b"/data/caf\xe9".decode("utf-8", "surrogateescape"))

    return body


async def test_any_exception_a_body_raises_is_that_jobs_failure_and_the_run_goes_on():
    kinds = ["exit", "interrupt", "generator", "unprintable", "undecodable"]
    raw = pdtnb.InProcessMetadataRepository({k: 1 for k in kinds} | {"fine": 1})
    done = pdtnb.InProcessMetadataRepository()

    async def body(job):
        if job != "fine":
            await hostile(job)(job)

    task = pdtnb.InProcessSyncTask("t", done, func=body)
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        summary = await pipeline.run(timeout=10)
        failed = await pdtnb.failed_jobs(pipeline)
    assert summary.failed == 5 and summary.succeeded == 1
    assert read_record(done.data["fine"]).succeeded
    reasons = {f.job: f.reason for f in failed}
    assert reasons["exit"] == "SystemExit: 3"
    assert reasons["interrupt"] == "KeyboardInterrupt"
    assert reasons["generator"] == "GeneratorExit"
    assert "Unprintable" in reasons["unprintable"]
    assert "caf\\xe9" in reasons["undecodable"]


async def test_cancelling_the_controller_is_not_a_job_failure():
    raw = pdtnb.InProcessMetadataRepository({"slow": 1})
    done = pdtnb.InProcessMetadataRepository()
    started = asyncio.Event()

    @pdtnb.InProcessSyncTask("t", done)
    async def body(job):
        started.set()
        await asyncio.sleep(30)

    body.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([body], pdtnb.Session()) as pipeline:
        run = asyncio.ensure_future(pipeline.run())
        await started.wait()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        assert done.data == {}, "no record: the job stays ready"
        assert await pipeline.gather_ready_jobs(body) == {"slow"}


async def test_launch_options_are_arguments_of_one_launch_not_task_attributes(tmp_path):
    raw = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2})
    done = pdtnb.InProcessMetadataRepository()
    observed = []

    @pdtnb.InProcessSyncTask("t", done)
    async def body(job):
        observed.append((job, body.metadata, body.synchronous))

    body.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([body], pdtnb.Session()) as pipeline:
        outcome = await pdtnb.admin.launch_job(pipeline, "t", "a", sync=True, meta=False)
        assert outcome.state == "started" and "a" not in done.data
        await pipeline.run(timeout=5)
    # "a" left no record, so the run launches it again; the task's attributes never changed
    assert sorted(observed) == [("a", True, False), ("a", True, False), ("b", True, False)]
    assert set(done.data) == {"a", "b"}


async def test_a_launch_by_hand_that_raises_is_the_jobs_failure():
    raw = pdtnb.InProcessMetadataRepository({"a": 1})
    done = pdtnb.InProcessMetadataRepository()

    class Broken(pdtnb.InProcessSyncTask):
        async def launch(self, job, options=None):
            raise OSError(13, "Permission denied: '/opt/tool'")  # (a full disk is no job's failure)

    task = Broken("t", done, func=lambda job: None)
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        with pytest.raises(pdtnb.JobLaunchError, match=r"t a failed to launch: PermissionError: .*denied") as info:
            await pdtnb.admin.launch_job(pipeline, "t", "a")
    assert isinstance(info.value.__cause__, OSError)
    record = read_record(done.data["a"])
    assert record.outcome.value == "launch-error" and "Permission denied" in record.message
