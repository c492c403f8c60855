"""Retry policies on every task kind (attempts survive a restart) and kill of live jobs."""

from __future__ import annotations

import asyncio
import threading
import time

import psutil
import pytest

import pdtnb
from pdtnb.record import Outcome, read_record


def flaky_task(kind: str, done, failures: dict[str, int], executor=None, retry=None, exc=ValueError):
    """A task whose body fails the first ``failures[job]`` times it runs for ``job``."""
    calls: dict[str, int] = {}

    def attempt(job):
        calls[job] = calls.get(job, 0) + 1
        if calls[job] <= failures.get(job, 0):
            raise exc(f"attempt {calls[job]} of {job} fails")

    if kind == "executor":
        task = pdtnb.ExecutorTask("flaky", executor, done, func=lambda job: attempt(job), retry=retry)
    else:

        async def body(job):
            attempt(job)

        task = pdtnb.InProcessSyncTask("flaky", done, func=body, retry=retry)
    return task, calls


@pytest.mark.parametrize("kind", ["inprocess", "executor"])
async def test_a_job_is_retried_until_it_succeeds_with_its_attempt_history(kind, executor):
    raw = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2, "c": 3})
    done = pdtnb.InProcessMetadataRepository()
    retry = pdtnb.Retry(attempts=3, delay=0.05, jitter=0)
    task, calls = flaky_task(kind, done, {"a": 2, "c": 5}, executor, retry)
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        started = time.monotonic()
        summary = await pipeline.run(timeout=10)
        elapsed = time.monotonic() - started
        failed = await pdtnb.failed_jobs(pipeline)
    assert calls == {"a": 3, "b": 1, "c": 3}, "c gives up after the third attempt"
    a = read_record(done.data["a"])
    assert a.succeeded and a.attempt == 3
    assert [h["attempt"] for h in a.history] == [1, 2]
    assert [read_record(h).message for h in a.history] == ["attempt 1 of a fails", "attempt 2 of a fails"]
    c = read_record(done.data["c"])
    assert c.failed and c.attempt == 3 and c.retry_at is None
    assert [(f.job, f.state, f.attempt) for f in failed] == [("c", "failed", 3)]
    assert summary.retried == 4 and summary.failed == 1 and summary.succeeded == 2
    assert 0.1 <= elapsed < 5, "run waited for the retries (0.05 s, then 0.1 s) and no longer"


async def test_retry_only_on_the_named_exceptions():
    raw = pdtnb.InProcessMetadataRepository({"a": 1})
    done = pdtnb.InProcessMetadataRepository()
    task, calls = flaky_task("inprocess", done, {"a": 1}, retry=pdtnb.Retry(delay=0, on=(KeyError,)), exc=ValueError)
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=5)
    assert calls == {"a": 1}
    assert read_record(done.data["a"]).failed


async def test_a_retrying_job_is_shown_as_retrying_and_its_attempts_survive_a_restart(tmp_path):
    def build():
        raw = pdtnb.YamlMetadataFileRepository(tmp_path / "raw")
        done = pdtnb.YamlMetadataFileRepository(tmp_path / "done")
        marker = tmp_path / "fixed"

        @pdtnb.InProcessSyncTask("t", done, retry=pdtnb.Retry(attempts=3, delay=0.3, jitter=0))
        async def body(job):
            if not marker.exists():
                raise OSError(f"{job}: the disk is not mounted")

        body.link("raw", raw, is_input=True)
        return pdtnb.Pipeline([body], pdtnb.Session()), raw, done, marker

    pipeline, raw, done, marker = build()
    await raw.dump("j", 1)
    async with pipeline:
        await pipeline.update()  # one round: attempt 1 fails, attempt 2 is scheduled
        status = await pdtnb.pipeline_status(pipeline)
        assert (status.task("t").retrying, status.task("t").failed, status.task("t").ready) == (1, 0, 0)
        why = await pdtnb.why_job(pipeline, "t", "j")
        assert why.state == "retrying" and any("next attempt is due in" in r for r in why.reasons)
    marker.touch()
    pipeline, raw, done, marker = build()  # a new controller, same repositories
    async with pipeline:
        summary = await pipeline.run(timeout=5)
    record = read_record(await done.info("j"))
    assert record.succeeded and record.attempt == 2 and summary.retried == 1
    assert record.history[0]["error_type"] == "OSError"


async def test_process_jobs_are_retried_on_the_named_exit_codes(tmp_path):
    session = pdtnb.Session()

    @session.resource
    async def procman():
        yield pdtnb.LocalLinuxManager("retry", tmp_path / "procs")

    counter = tmp_path / "count"
    raw = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2})
    done, pids = pdtnb.InProcessMetadataRepository(), pdtnb.InProcessMetadataRepository()
    out = pdtnb.InProcessBlobRepository()
    quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=4, mem="1Gi"))
    task = pdtnb.ProcessTask(
        "p",
        procman,
        quota,
        pdtnb.Resources.parse(cpu=1, mem="1Mi"),
        pids,
        f"echo x >> {counter}.{{{{ job }}}}\n"
        f"n=$(wc -l < {counter}.{{{{ job }}}})\n"
        'echo "attempt $n" >&2\n'
        'if [ "{{ job }}" = a ] && [ "$n" -lt 2 ]; then exit 3; fi\n'
        'if [ "{{ job }}" = b ]; then exit 4; fi\n',
        done=done,
        stdout=out,
        retry=pdtnb.Retry(attempts=3, delay=0, on=(3,)),
    )
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], session, [quota]) as pipeline:
        await pipeline.run(timeout=20)
    a, b = read_record(done.data["a"]), read_record(done.data["b"])
    assert a.succeeded and a.attempt == 2 and a.history[0]["exit_code"] == 3
    assert b.failed and b.exit_code == 4 and b.attempt == 1, "exit code 4 is not retried"
    assert b.stderr_tail == "attempt 1\n" and b.reason_line() == "exit code 4: attempt 1"


async def test_kill_an_in_process_job():
    raw = pdtnb.InProcessMetadataRepository({"slow": 1, "quick": 2})
    done = pdtnb.InProcessMetadataRepository()
    started = asyncio.Event()

    @pdtnb.InProcessSyncTask("t", done, retry=pdtnb.Retry(delay=0))
    async def body(job):
        if job == "slow":
            started.set()
            await asyncio.sleep(30)

    body.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([body], pdtnb.Session()) as pipeline:
        run = asyncio.ensure_future(pipeline.run(timeout=10))
        await started.wait()
        record = await pdtnb.kill_job(pipeline, "t", "slow")
        summary = await run
        with pytest.raises(pdtnb.PdtnbError, match="not running"):
            await pdtnb.kill_job(pipeline, "t", "slow")
    assert record.outcome is Outcome.KILLED
    assert read_record(done.data["slow"]).outcome is Outcome.KILLED, "a killed job is not retried"
    assert read_record(done.data["quick"]).succeeded
    assert summary.failed == 1 and summary.succeeded == 1


async def test_kill_an_executor_job_queued_or_running(executor):
    raw = pdtnb.InProcessMetadataRepository({"running": 1, "other": 2, "queued": 3})
    done = pdtnb.InProcessMetadataRepository()
    gate = threading.Event()
    ran = []

    def body(job):
        ran.append(job)
        gate.wait(10)

    task = pdtnb.ExecutorTask("t", executor, done, func=body)  # 2 worker threads
    task.link("raw", raw, is_input=True)
    pipeline = pdtnb.Pipeline([task], pdtnb.Session(), priority=lambda t, j: {"running": 3, "other": 2}.get(j, 1))
    async with pipeline:
        await pipeline.update()  # launches all three: two run, "queued" waits for a thread
        deadline = time.monotonic() + 5
        while len(ran) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110 - a thread fills it
            await asyncio.sleep(0.01)
        assert sorted(ran) == ["other", "running"]
        await pdtnb.kill_job(pipeline, "t", "queued")
        await pdtnb.kill_job(pipeline, "t", "running")
        gate.set()
        await pipeline.run(timeout=5)
    assert "queued" not in ran, "a queued job is not started once killed"
    assert read_record(done.data["queued"]).reason == "killed by request before it started"
    assert read_record(done.data["running"]).outcome is Outcome.KILLED, "its late success is discarded"
    assert read_record(done.data["other"]).succeeded


async def test_kill_a_process_job_kills_its_process_group(tmp_path):
    session = pdtnb.Session()

    @session.resource
    async def procman():
        yield pdtnb.LocalLinuxManager("kill", tmp_path / "procs")

    raw = pdtnb.InProcessMetadataRepository({"slow": 1})
    done, pids = pdtnb.InProcessMetadataRepository(), pdtnb.InProcessMetadataRepository()
    quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=4, mem="1Gi"))
    pidfile = tmp_path / "child.pid"
    task = pdtnb.ProcessTask(
        "p",
        procman,
        quota,
        pdtnb.Resources.parse(cpu=1, mem="1Mi"),
        pids,
        f"sleep 60 & echo $! > {pidfile}\necho started\nwait\n",
        done=done,
    )
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], session, [quota]) as pipeline:
        await pipeline.update()
        deadline = time.monotonic() + 5
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        child = int(pidfile.read_text())
        assert psutil.pid_exists(child)
        record = await pdtnb.kill_job(pipeline, "p", "slow")
        assert record is not None and record.outcome is Outcome.KILLED
        await pipeline.run(timeout=5)
    assert not _alive(child), "the job's whole process group is gone"
    final = read_record(done.data["slow"])
    assert final.outcome is Outcome.KILLED and final.stdout_tail == "started\n"
    assert pids.data == {}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
