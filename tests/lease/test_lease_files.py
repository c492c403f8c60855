"""One controller at a time on a pipeline kept in local files: the lease is a kernel lock
(flock) on ``.pdtnb-meta/lease`` in the first done repository's directory.

Real pipeline scripts run through the command line in subprocesses, as cron and a terminal would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time

import pytest
from common import Runner, one_error_line, stop

import pdtnb
from pdtnb.lease import LEASE_HELD_EXIT, LeaseHeldError


def test_a_second_controller_is_refused_naming_the_holder_and_readers_are_not(tmp_path):
    run = Runner(tmp_path, SLEEP="60")  # the first run goes on until interrupted below
    first = run.start("run")
    try:
        run.wait_for_log()
        for args in (["run"], ["update"], ["launch", "work", "j1"], ["rm", "work.done", "j1"], ["retry", "work", "j1"]):
            refused = run(*args)
            assert refused.returncode == LEASE_HELD_EXIT, (args, refused.stderr)
            line = one_error_line(refused.stderr)
            assert f"pid {first.pid} on {socket.gethostname()}" in line, line
            assert "lease_pipeline.py run" in line and "since 20" in line and "--wait" in line, line
        # Reading never needs the lease, and status says who is acting.
        status = run("status")
        assert status.returncode == 0, status.stderr
        assert f"controlled now by lease_pipeline.py run (pid {first.pid}" in status.stderr
        assert json.loads(run("status", "--json").stdout)["controller"]["pid"] == first.pid
        for args in (["ls", "work.done"], ["failed"], ["why", "work", "j1"], ["trace", "j1"]):
            assert run(*args).returncode == 0, args
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=30)
        assert first.returncode == 130, err
    finally:
        stop(first)
    assert set(run.runs().values()) == {1} and len(run.runs()) == 6, run.runs()  # nobody else ran them
    assert not (tmp_path / "done" / ".pdtnb-meta" / "lease").exists(), "an idle pipeline leaves no lease file"


def test_wait_waits_for_the_holder_then_acts(tmp_path):
    run = Runner(tmp_path, SLEEP="2")
    first = run.start("run")
    try:
        run.wait_for_log()
        started = time.monotonic()
        second = run("run", "--wait")
        assert second.returncode == 0, second.stderr
        assert first.poll() is not None, "the second acted only once the first had finished"
        assert time.monotonic() - started > 0.5
        assert "0 launched" in second.stderr, second.stderr  # nothing left to do
        # A bounded wait gives up with the refusal.
        third = run.start("run", SLEEP="5", N="7")
        try:
            time.sleep(1.0)
            bounded = run("run", "--wait", "0.5")
            assert bounded.returncode == LEASE_HELD_EXIT and "waited 0.5 s" in one_error_line(bounded.stderr)
        finally:
            stop(third)
    finally:
        stop(first)
    assert run.runs()["j0"] == 1


def test_a_dead_holder_is_replaced_at_once(tmp_path):
    run = Runner(tmp_path, SLEEP="30")
    first = run.start("run")
    try:
        run.wait_for_log()
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=10)
        started = time.monotonic()
        second = run("run", SLEEP="0")
        assert second.returncode == 0, second.stderr
        assert time.monotonic() - started < 10
    finally:
        stop(first)
    # The first run's bodies were in flight when it died: they ran again, once.
    assert set(run.runs().values()) == {2}, run.runs()


async def test_two_pipelines_in_one_process_exclude_each_other_only_while_acting(tmp_path):
    """What a notebook does: it holds the lease during an action or a background run, not while
    the notebook merely sits open, so cron can run between actions."""

    def build() -> pdtnb.Pipeline:
        inputs = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2})
        done = pdtnb.YamlMetadataFileRepository(tmp_path / "done")
        gate = asyncio.Event()

        @pdtnb.InProcessSyncTask("work", done)
        async def work(job):
            await gate.wait()

        work.link("inputs", inputs, is_input=True)
        pipeline = pdtnb.Pipeline([work], pdtnb.Session(), controller="notebook")
        pipeline.gate = gate  # type: ignore[attr-defined]
        return pipeline

    one, two = build(), build()
    async with one, two:
        await one.update_phase()
        assert not one.holds_lease
        await two.update_phase()  # free again between actions
        running = asyncio.create_task(one.run())
        await asyncio.sleep(0.2)
        with pytest.raises(LeaseHeldError, match=rf"notebook run \(pid {os.getpid()}"):
            await two.update()
        one.gate.set()
        await running
        assert (await two.update()) is False  # nothing left, and the lease taken and given back


def test_a_function_pods_own_launch_takes_no_lease_and_no_other_launch_escapes_it(tmp_path):
    """A KubeFunctionTask's pod runs `launch TASK JOB --sync` for its own job while the controller
    that created it holds the lease; the variable the pod gets (PDTNB_FUNCTION_JOB=TASK/JOB) lets
    exactly that launch through."""
    run = Runner(tmp_path, SLEEP="60")
    first = run.start("run")
    try:
        run.wait_for_log()
        own = run("launch", "work", "j1", "--force", "--sync", SLEEP="0", PDTNB_FUNCTION_JOB="work/j1")
        assert own.returncode == 0, own.stderr
        for other in ("work/j2", "other/j1"):  # another job, another task: a second controller
            refused = run("launch", "work", "j1", "--force", "--sync", SLEEP="0", PDTNB_FUNCTION_JOB=other)
            assert refused.returncode == LEASE_HELD_EXIT, refused.stderr
        without_sync = run("launch", "work", "j1", "--force", SLEEP="0", PDTNB_FUNCTION_JOB="work/j1")
        assert without_sync.returncode == LEASE_HELD_EXIT, without_sync.stderr
    finally:
        stop(first)
