"""Crash recovery: SIGKILL the pipeline process while jobs run, restart it, lose and repeat nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from recovery_pipeline import JOBS, QUOTA, build, prepare

from pdtnb import LocalLinuxManager
from pdtnb.repository.metadata import yaml_load

HERE = Path(__file__).resolve().parent


def log_events(root: Path) -> list[tuple[str, str, float]]:
    path = root / "log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(kind, job, float(stamp)) for kind, job, stamp in (line.split() for line in lines)]


def max_overlap(events: list[tuple[str, str, float]]) -> int:
    best = current = 0
    for kind, _, _ in sorted(events, key=lambda e: (e[2], e[0] == "start")):
        current += 1 if kind == "start" else -1
        best = max(best, current)
    return best


async def wait_for(condition, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def pids_entries(root: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((root / "pids").glob("*.yaml")):
        out[path.stem] = yaml_load(path.read_bytes(), str(path))
    return out


def start_pipeline_process(root: Path) -> subprocess.Popen:
    """The first pipeline, in a process of its own (so that it can be SIGKILLed)."""
    return subprocess.Popen([sys.executable, str(HERE / "recovery_pipeline.py"), str(root)], cwd=str(HERE))


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """The pipeline's directory; afterwards, every job is released so none outlives a failed test."""
    prepare(tmp_path)
    yield tmp_path
    (tmp_path / "release" / "all").touch()


async def test_sigkill_and_restart_loses_and_relaunches_nothing(root: Path) -> None:
    first = start_pipeline_process(root)
    try:
        await wait_for(
            lambda: len(pids_entries(root)) == QUOTA and len(log_events(root)) == QUOTA,
            f"the first pipeline to start {QUOTA} jobs",
        )
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    before = pids_entries(root)
    running_jobs = sorted(before)
    assert len(running_jobs) == QUOTA and {e[1] for e in log_events(root)} == set(running_jobs)

    # The jobs outlived the pipeline process.
    checker = LocalLinuxManager("recovery", root / "procs")
    idents = {job: entry["pid"] for job, entry in before.items()}
    assert await checker.get_live_pids(set(idents.values())) == set(idents.values())

    # Two of them end while no pipeline is running; their return codes are written by the wrapper.
    ended, still_running = running_jobs[:2], running_jobs[2]
    for job in ended:
        (root / "release" / job).touch()
    rc_files = [root / "procs" / "recovery" / "work" / job / "return_code" for job in ended]
    await wait_for(lambda: all(p.exists() for p in rc_files), "the released jobs to end")
    restart_time = time.time()

    pipeline, _ = build(root)
    async with pipeline:
        # First round: the jobs that ended meanwhile are reaped at once; the other is adopted.
        await pipeline.update_only_update()
        done_now = {p.stem for p in (root / "done").glob("*.yaml")}
        assert done_now == set(ended)
        assert set(pids_entries(root)) == {still_running}
        # The adopted job counts against the quota: only QUOTA - 1 new jobs may start.
        report = await pipeline.launch_phase()
        assert report.launched == QUOTA - 1 and report.refused >= 1
        assert len(pids_entries(root)) == QUOTA

        (root / "release" / "all").touch()
        summary = await pipeline.run(timeout=30)
    assert summary.launched == len(JOBS) - QUOTA - (QUOTA - 1)

    events = log_events(root)
    starts = sorted(job for kind, job, _ in events if kind == "start")
    assert starts == sorted(JOBS), "a job was lost or launched twice"
    assert sorted(job for kind, job, _ in events if kind == "end") == sorted(JOBS)
    assert max_overlap(events) <= QUOTA
    assert pids_entries(root) == {}
    for job in JOBS:
        record = yaml_load((root / "done" / f"{job}.yaml").read_bytes(), job)
        assert record["result"] == "success" and record["exit_code"] == 0, (job, record)
        assert (root / "stdout" / job).read_text() == f"output of {job}\n"
        if job in before:
            # Start time from the first pipeline's pids entry; end time from the return code file.
            assert record["start_time"] == before[job]["start_time"]
        if job in ended:
            assert record["end_time"].timestamp() <= restart_time
    assert not any((root / "procs" / "recovery" / "work").iterdir())
