"""A pipeline never signals a process it cannot prove it started: a pids entry in pydatatask's
bare-PID format, whose pid now belongs to an unrelated process, is neither taken as the job nor
killed at the task's timeout."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone

import psutil

import pdtnb
from pdtnb.record import read_record


async def test_a_bare_pid_of_an_unrelated_process_is_never_killed(tmp_path):
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)  # noqa: ASYNC220 - not ours to await
    try:
        session = pdtnb.Session()

        @session.resource
        async def procman():
            yield pdtnb.LocalLinuxManager("stranger", tmp_path / "procs")

        raw = pdtnb.InProcessMetadataRepository({"j": 1})
        done, pids = pdtnb.InProcessMetadataRepository(), pdtnb.InProcessMetadataRepository()
        # As pydatatask 0.4.7 wrote it, long ago; the pid is now the stranger's.
        pids.data["j"] = {"pid": str(stranger.pid), "start_time": datetime(2024, 1, 1, tzinfo=timezone.utc)}
        quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=4, mem="1Gi"))
        task = pdtnb.ProcessTask(
            "p", procman, quota, pdtnb.Resources.parse(cpu=1, mem="1Mi"), pids, "true\n", done=done, timeout=0.1
        )
        task.link("raw", raw, is_input=True)
        async with pdtnb.Pipeline([task], session, [quota]) as pipeline:
            await pipeline.run(timeout=10)
        assert stranger.poll() is None and psutil.Process(stranger.pid).status() != psutil.STATUS_ZOMBIE
        record = read_record(done.data["j"])
        assert record.failed and "bare process id" in record.reason and "nothing was signalled" in record.reason
        assert pids.data == {}
    finally:
        stranger.kill()
        stranger.wait()


async def test_process_jobs_do_not_start_with_sigint_ignored(tmp_path):
    """A non-interactive shell starts `&` commands with SIGINT and SIGQUIT ignored; the job must
    not inherit that, or a Python job never sees an interrupt."""
    session = pdtnb.Session()

    @session.resource
    async def procman():
        yield pdtnb.LocalLinuxManager("signals", tmp_path / "procs")

    raw = pdtnb.InProcessMetadataRepository({"j": 1})
    done, pids, out = (
        pdtnb.InProcessMetadataRepository(),
        pdtnb.InProcessMetadataRepository(),
        pdtnb.InProcessBlobRepository(),
    )
    quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=4, mem="1Gi"))
    task = pdtnb.ProcessTask(
        "p",
        procman,
        quota,
        pdtnb.Resources.parse(cpu=1, mem="1Mi"),
        pids,
        "grep SigIgn /proc/self/status\n",
        done=done,
        stdout=out,
    )
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], session, [quota]) as pipeline:
        await pipeline.run(timeout=10)
    line = out.data["j"].decode().split()
    ignored = int(line[1], 16)
    assert not ignored & (1 << (2 - 1)), "SIGINT is not ignored"
    assert not ignored & (1 << (3 - 1)), "SIGQUIT is not ignored"
