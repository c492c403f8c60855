"""ProcessTask end to end with LocalLinuxManager: real scripts, real files, the real pipeline loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from proc_helpers import blob, job_dirs, running

from pdtnb import (
    STDOUT,
    InProcessBlobRepository,
    InProcessMetadataRepository,
    LocalLinuxManager,
    Pipeline,
    ProcessTask,
    ResourceManager,
    Resources,
    Session,
    TaskConfigError,
)
from pdtnb.managers.local import _read_stat
from pdtnb.task.base import is_failure_record


async def run(rig: Any, timeout: float = 30) -> Any:
    async with rig.pipeline:
        return await rig.pipeline.run(timeout=timeout)


# ---- contents and exit codes ------------------------------------------------------------------


async def test_stdin_stdout_stderr_contents(rig_factory: Any) -> None:
    rig = rig_factory('cat; echo "err of {{ job }}" >&2; printf "tail"\n', with_stdin=True)
    payloads = {"a": "alpha\n", "b": "", "c": "x" * 100_000 + "\n"}
    for job, text in payloads.items():
        async with await rig.stdin.open(job, "w") as fp:
            await fp.write(text)
    await run(rig)
    for job, text in payloads.items():
        assert await blob(rig.stdout, job) == text + "tail"
        assert await blob(rig.stderr, job) == f"err of {job}\n"
        record = rig.done.data[job]
        assert record["result"] == "success" and record["exit_code"] == 0 and record["return_code"] == 0
        assert isinstance(record["start_time"], datetime) and record["start_time"].tzinfo is not None
        assert record["start_time"] <= record["end_time"]
    assert rig.pids.data == {}
    assert job_dirs(rig) == []  # each job's directory is removed once reaped


async def test_stderr_interleaved_with_stdout(rig_factory: Any) -> None:
    rig = rig_factory("echo one; echo two >&2; echo three\n", {"j": 1}, stderr=STDOUT)
    assert rig.task.stderr is rig.stdout
    assert "stderr" not in rig.task.links
    await run(rig)
    assert await blob(rig.stdout, "j") == "one\ntwo\nthree\n"


async def test_nonzero_exit_codes_are_failures(rig_factory: Any) -> None:
    rig = rig_factory("echo before; exit {{ inp }}\n", {"ok": 0, "one": 1, "big": 42, "max": 255})
    await run(rig)
    codes = {job: rig.done.data[job]["exit_code"] for job in rig.inp.data}
    assert codes == {"ok": 0, "one": 1, "big": 42, "max": 255}
    assert rig.done.data["ok"]["result"] == "success"
    for job in ("one", "big", "max"):
        assert rig.done.data[job]["result"] == "failure"
        assert is_failure_record(rig.done.data[job])
        assert await blob(rig.stdout, job) == "before\n"  # output is kept for failed jobs too
    assert not is_failure_record(rig.done.data["ok"])


async def test_template_context_environ_and_shell_quote(rig_factory: Any) -> None:
    tricky = 'it\'s $HOME `x` "q" ; rm -rf nothing'
    rig = rig_factory(
        'printf \'%s|\' {{ job }} {{ task }} {{ inp | shell_quote }} "$GREETING" "$PWD"\n',
        {"j1": tricky},
        environ={"GREETING": "hello world"},
    )
    await run(rig)
    job, task, value, greeting, cwd = (await blob(rig.stdout, "j1")).split("|")[:5]
    assert (job, task, value, greeting) == ("j1", "t", tricky, "hello world")
    assert cwd == str(rig.basedir / "t" / "j1" / "cwd")


async def test_basedir_layout_while_running(rig_factory: Any) -> None:
    rig = rig_factory("cat >/dev/null; ls ..; sleep 0.3\n", with_stdin=True)
    async with await rig.stdin.open("j", "w") as fp:
        await fp.write("in")
    async with rig.pipeline:
        await rig.pipeline.update()
        assert rig.task.basedir == rig.basedir / "t"
        jobdir = rig.basedir / "t" / "j"
        assert (jobdir / "cwd").is_dir()
        assert (jobdir / "exe").read_text().startswith("cat")
        assert (jobdir / "stdin").read_text() == "in"
        assert set(rig.pids.data) == {"j"}
        assert set(rig.pids.data["j"]) >= {"pid", "start_time"}
        await rig.pipeline.run(timeout=10)
    listing = (await blob(rig.stdout, "j")).split()
    assert {"cwd", "exe", "stdin", "stdout", "stderr"} <= set(listing)
    assert not (rig.basedir / "t" / "j").exists()


async def test_shebang_and_template_file(rig_factory: Any, tmp_path: Path) -> None:
    template = tmp_path / "job.py.j2"
    template.write_text(f"#!{sys.executable}\nimport sys\nprint('python says', {{{{ inp }}}} * 2, sys.argv[0][-3:])\n")
    rig = rig_factory(str(template), {"a": 21})
    await run(rig)
    assert await blob(rig.stdout, "a") == "python says 42 exe\n"
    rig2 = rig_factory(template, {"b": 1})  # a Path works too
    await run(rig2)
    assert await blob(rig2.stdout, "b") == "python says 2 exe\n"


async def test_jobs_end_wake_the_pipeline(rig_factory: Any) -> None:
    # The safety-net poll is 60 s: the run can only finish quickly if job ends wake it.
    rig = rig_factory("sleep 0.2\n", {"a": 1, "b": 2})
    rig.task.poll_interval = 60
    started = time.monotonic()
    await run(rig)
    assert time.monotonic() - started < 5
    assert set(rig.done.data) == {"a", "b"}


async def test_synchronous_launch_waits_and_reaps(rig_factory: Any) -> None:
    rig = rig_factory("sleep 0.1; echo {{ job }}\n", {"s": 1})
    async with rig.pipeline:
        rig.pipeline.settings(synchronous=True)
        assert await rig.task.launch("s") is None
        assert rig.done.data["s"]["result"] == "success"
        assert rig.pids.data == {}
    assert await blob(rig.stdout, "s") == "s\n"


# ---- quotas --------------------------------------------------------------------------------------


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


async def test_200_jobs_never_exceed_the_quota(rig_factory: Any) -> None:
    quota = 6
    rig = rig_factory(
        "date +%s.%N\nsleep 0.02\ndate +%s.%N\n",
        {str(i): i for i in range(200)},
        quota=Resources.parse(cpu=quota, mem="1Gi"),
        job_resources=Resources.parse(cpu=1, mem="1Mi"),
    )
    peak_reserved = Decimal(0)

    original = rig.resources.reserve

    async def spying_reserve(request: Resources) -> Any:
        nonlocal peak_reserved
        result = await original(request)
        if rig.resources.used is not None:
            peak_reserved = max(peak_reserved, rig.resources.used.cpu)
        return result

    rig.resources.reserve = spying_reserve  # type: ignore[method-assign]
    summary = await run(rig, timeout=60)
    assert summary.launched == 200
    assert len(rig.done.data) == 200 and all(r["result"] == "success" for r in rig.done.data.values())
    own: list[tuple[float, float]] = []
    for job in rig.inp.data:
        start, end = map(float, (await blob(rig.stdout, job)).split())
        own.append((start, end))
    recorded = [(r["start_time"].timestamp(), r["end_time"].timestamp()) for r in rig.done.data.values()]
    assert max_overlap(own) <= quota
    assert max_overlap(recorded) <= quota
    assert max_overlap(own) >= 2  # the quota was actually used, not serialized
    assert peak_reserved <= quota
    assert rig.pids.data == {}
    async with rig.pipeline:
        await rig.resources.flush()
        assert (await rig.resources.reserve(Resources.parse(cpu=quota))) is None  # all given back


async def test_launch_rate_window(rig_factory: Any) -> None:
    rig = rig_factory(
        "true\n",
        {str(i): i for i in range(6)},
        quota=Resources.parse(cpu=100, mem="1Gi", launches=2),
        job_resources=Resources.parse(cpu=1, mem=0),
        window=timedelta(seconds=0.6),
    )
    async with rig.pipeline:
        await rig.pipeline.update()
        assert len(rig.pids.data) + len(rig.done.data) == 2
        for _ in range(5):  # within the window, ended jobs still count as launches
            await asyncio.sleep(0.05)
            await rig.pipeline.update()
        assert len(rig.done.data) == 2
        await asyncio.sleep(0.7)
        await rig.pipeline.update()
        assert len(rig.pids.data) + len(rig.done.data) == 4
        summary = await rig.pipeline.run(timeout=20)
        assert summary.launched == 2
    assert len(rig.done.data) == 6


# ---- timeouts --------------------------------------------------------------------------------------


async def test_timeout_kills_the_job_and_records_why(rig_factory: Any, tmp_path: Path) -> None:
    rig = rig_factory(
        f"sleep 30 & echo $! > {tmp_path}/bg_{{{{ job }}}}\necho started\nsleep 30\n",
        {"slow": 1},
        timeout=timedelta(seconds=0.5),
    )
    rig_fast = rig_factory("echo quick\n", {"fast": 1}, timeout=5)
    rig.task.poll_interval = 60  # the deadline itself must wake the pipeline
    started = time.monotonic()
    await run(rig)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 5
    record = rig.done.data["slow"]
    assert record["result"] == "timeout" and record["timed_out"] is True
    assert "timeout" in record["reason"] and "0:00:00.500000" in record["reason"]
    assert record["exit_code"] == 137
    assert is_failure_record(record)
    assert await blob(rig.stdout, "slow") == "started\n"
    background = int((tmp_path / "bg_slow").read_text())
    deadline = time.monotonic() + 5
    while running(background):
        assert time.monotonic() < deadline, "the timed-out job's background process survived"
        await asyncio.sleep(0.02)
    await run(rig_fast)
    assert rig_fast.done.data["fast"]["result"] == "success"


def test_timeout_must_be_positive(rig_factory: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        rig_factory("true\n", timeout=timedelta(0))


# ---- failure modes: nothing half-started -----------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("cat {{ nosuch }}\n", "refers to 'nosuch', which is not a link"),
        ("echo {{ inp.missing_key }}\n", "failed to render"),
        ("echo {{ job | no_such_filter }}\n", "syntax error"),
        ("{% if %}\n", "syntax error at line 1"),
        ("echo {{ 1 // 0 }}\n", "ZeroDivisionError"),
    ],
)
async def test_bad_template_fails_the_job_and_leaves_nothing(rig_factory: Any, template: str, message: str) -> None:
    rig = rig_factory(template, {"j": {"present": 1}})
    async with rig.pipeline:
        summary = await rig.pipeline.run(timeout=10)
        assert summary.failed_launches == 1 and summary.launched == 0
        record = rig.done.data["j"]
        assert record["result"] == "launch-error"
        assert record["error_type"].endswith("TaskConfigError") and message in record["message"]
        if "syntax" not in message:
            assert "task 't', job 'j'" in record["message"]
        assert rig.pids.data == {}
        assert job_dirs(rig) == []
        assert rig.manager._children == {}  # no process was started
        await rig.resources.flush()
        assert (await rig.resources.reserve(Resources.parse(cpu=4))) is None  # reservation returned


async def test_render_error_is_clear(rig_factory: Any) -> None:
    rig = rig_factory("cat {{ nosuch }} {{ other }}\n", {"j": 1})
    async with rig.pipeline:
        with pytest.raises(TaskConfigError) as info:
            await rig.task.launch("j")
    text = str(info.value)
    assert "task 't', job 'j'" in text and "'nosuch', 'other'" in text and "links: done, inp, pids" in text


class FailingPids(InProcessMetadataRepository):
    async def dump(self, job: str, data: Any) -> None:
        raise OSError("disk full (simulated)")


async def test_failure_after_spawn_kills_the_process(tmp_path: Path) -> None:
    session = Session()
    managers: list[LocalLinuxManager] = []
    spawned: list[str] = []

    class Recording(LocalLinuxManager):
        async def spawn(self, *args: Any, **kwargs: Any) -> str:
            ident = await super().spawn(*args, **kwargs)
            spawned.append(ident)
            return ident

    @session.resource
    async def procman():
        managers.append(Recording("app", tmp_path))
        yield managers[-1]

    resources = ResourceManager(Resources.parse(cpu=1, mem="1Gi"))
    done = InProcessMetadataRepository()
    inp = InProcessMetadataRepository({"j": 1})
    task = ProcessTask("t", procman, resources, Resources.parse(cpu=1), FailingPids(), "sleep 30\n", done=done)
    task.link("inp", inp, is_input=True)
    async with Pipeline([task], session, [resources]) as pipeline:
        summary = await pipeline.run(timeout=10)
        assert summary.failed_launches == 1
        assert "disk full" in done.data["j"]["message"]
        assert len(spawned) == 1
        deadline = time.monotonic() + 5
        while spawned[0] in await managers[0].get_live_pids(set(spawned)):
            assert time.monotonic() < deadline, "the process of a failed launch is still running"
            await asyncio.sleep(0.01)
        assert not (tmp_path / "app" / "t" / "j").exists()
        await resources.flush()
        assert (await resources.reserve(Resources.parse(cpu=1))) is None


async def test_quota_refusal_is_not_a_failure(rig_factory: Any) -> None:
    rig = rig_factory(
        "sleep 0.2\n",
        {"a": 1, "b": 2},
        quota=Resources.parse(cpu=1, mem="1Gi"),
        job_resources=Resources.parse(cpu=1),
    )
    async with rig.pipeline:
        report = await rig.pipeline.launch_phase()
        assert (report.launched, report.refused, report.failed) == (1, 1, 0)
        await rig.pipeline.run(timeout=10)
    assert {r["result"] for r in rig.done.data.values()} == {"success"}


async def test_missing_return_code_is_recorded_as_failure(rig_factory: Any) -> None:
    # The wrapper itself killed (not just the job): no return code file is ever written.
    rig = rig_factory("sleep 30\n", {"j": 1})
    async with rig.pipeline:
        await rig.pipeline.update()
        wrapper = int(rig.pids.data["j"]["pid"].split(":")[0])
        group = await _job_group(wrapper)
        os.killpg(wrapper, signal.SIGKILL)
        os.killpg(group, signal.SIGKILL)
        await rig.pipeline.run(timeout=10)
    record = rig.done.data["j"]
    assert record["result"] == "failure" and record.get("exit_code") is None
    assert "without recording an exit code" in record["reason"]
    assert is_failure_record(record)


def _children_of(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def _job_group(wrapper: int) -> int:
    """The process group of the job started by ``wrapper`` (once it has left the wrapper's group)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for child in _children_of(wrapper):
            stat = _read_stat(child)
            if stat is not None and stat[2] != wrapper:
                return stat[2]
        await asyncio.sleep(0.01)
    raise AssertionError("the job never started")


async def test_warns_without_any_record_of_completion(tmp_path: Path, caplog: Any) -> None:
    session = Session()

    @session.resource
    async def procman():
        yield LocalLinuxManager("app", tmp_path)

    resources = ResourceManager(Resources.parse(cpu=1))
    task = ProcessTask("bare", procman, resources, Resources(), InProcessMetadataRepository(), "true\n")
    task.link("inp", InProcessBlobRepository(), is_input=True)
    caplog.set_level(logging.WARNING, logger="pdtnb")
    async with Pipeline([task], session, [resources]):
        pass
    assert any("neither done, stdout nor stderr" in r.getMessage() for r in caplog.records)


# ---- status, reopening, adopted entries ---------------------------------------------------------


async def test_status_counts_live_done_and_failed(rig_factory: Any, tmp_path: Path) -> None:
    from pdtnb import pipeline_status

    release = tmp_path / "release"
    rig = rig_factory(
        'while [ ! -e "$RELEASE" ]; do sleep 0.02; done; exit {{ inp }}\n',
        {"ok": 0, "bad": 3},
        environ={"RELEASE": str(release)},
    )
    async with rig.pipeline:
        await rig.pipeline.update()
        status = (await pipeline_status(rig.pipeline)).task("t")
        assert (status.live, status.done, status.failed, status.ready) == (2, 0, 0, 0)
        release.touch()
        await rig.pipeline.run(timeout=10)
        status = (await pipeline_status(rig.pipeline)).task("t")
        assert (status.live, status.done, status.failed) == (0, 1, 1)


async def test_reopened_pipeline_still_reaps_and_times_out(rig_factory: Any) -> None:
    # Close the pipeline while a job runs (as a notebook user may), reopen it: the job is found in
    # pids, its timeout still counts from its original start, and it is reaped.
    rig = rig_factory("sleep 30\n", {"j": 1}, timeout=timedelta(seconds=0.6))
    async with rig.pipeline:
        await rig.pipeline.update()
        started = rig.pids.data["j"]["start_time"]
    assert set(rig.pids.data) == {"j"}
    await asyncio.sleep(0.2)
    async with rig.pipeline:
        await rig.pipeline.run(timeout=10)
    record = rig.done.data["j"]
    assert record["timed_out"] is True and record["start_time"] == started
    assert len(rig.managers) == 2  # the second session made a fresh manager


async def test_malformed_and_pydatatask_style_pids_entries(rig_factory: Any) -> None:
    rig = rig_factory("true\n", {})
    # A pids entry as pydatatask 0.4.7 wrote it (a bare pid, here one that has ended), and one
    # that is not an entry at all: both are reaped as failures instead of blocking the task.
    rig.pids.data["old"] = {"pid": b"999999999", "start_time": datetime(2024, 1, 1)}
    rig.pids.data["junk"] = "not a dict"
    async with rig.pipeline:
        await rig.pipeline.run(timeout=10)
    assert rig.pids.data == {}
    assert rig.done.data["old"]["result"] == "failure" and rig.done.data["old"].get("exit_code") is None
    assert "no process identifier" in rig.done.data["junk"]["reason"]


class UnreachableBlobs(InProcessBlobRepository):
    async def open(self, job: str, mode: str = "r") -> Any:
        if mode.startswith("w"):
            raise ConnectionError("storage unreachable (simulated)")
        return await super().open(job, mode)


async def test_results_that_cannot_be_collected_end_as_a_failure(tmp_path: Path) -> None:
    session = Session()

    @session.resource
    async def procman():
        yield LocalLinuxManager("app", tmp_path)

    resources = ResourceManager(Resources.parse(cpu=1))
    done = InProcessMetadataRepository()
    pids = InProcessMetadataRepository()
    task = ProcessTask(
        "t", procman, resources, Resources.parse(cpu=1), pids, "echo hi\n", done=done, stdout=UnreachableBlobs()
    )
    task.link("inp", InProcessMetadataRepository({"j": 1}), is_input=True)
    task.poll_interval = 0.05  # the retry spacing
    async with Pipeline([task], session, [resources]) as pipeline:
        summary = await pipeline.run(timeout=10)
    assert summary.launched == 1  # never relaunched while its results were being retried
    record = done.data["j"]
    assert record["result"] == "failure" and "could not be collected" in record["reason"]
    assert "storage unreachable" in record["reason"]
    assert pids.data == {}
    assert not (tmp_path / "app" / "t" / "j").exists()
