"""SIGKILL, SIGINT and SIGTERM sent to ``python pipeline.py run`` at random moments, then ``run``
again: every job's output is present once and complete, no temporary file is left, ``status``
agrees, and no body ran twice except the jobs in flight at the fault.

The moments are drawn from ``random.Random`` seeded with ``PDTNB_FAULT_SEED`` (default in
faultkit.SEED) and the trial number, counted from the start of the first body (so that every
fault lands in a running pipeline, not in its imports); every message names the seed, the trial and
the delay; ``PDTNB_FAULT_SEED=S pytest 'tests/faults/test_fault_signals.py::TEST[trial-N]'`` replays
one (the timing still varies with the machine's load).

In flight, for counting: a body that had started and whose job had no done record at the fault
(for the process stage, no pids entry either: the few milliseconds between a process's start and
its pids entry, see docs/processes.md "Crash recovery"). After a SIGKILL such a job may run once
more. After a SIGINT or SIGTERM only the in-process and executor jobs cancelled mid-body may; a
process job keeps running, detached, and the next ``run`` adopts it: it must never run twice.
The counts are printed in the terminal summary (``SIGKILL trials: T, duplicate runs: D``).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from faultkit import SEED, trial_rng

pytestmark = pytest.mark.faults

SIGKILL_TRIALS = 20
INTERRUPT_TRIALS = 20
SIGTERM_TRIALS = 3
N = 24  # jobs per trial, through three stages
SLEEP = 0.22  # each body sleeps up to this long: the run's work lasts about 1.4 s
DELAYS = (0.05, 1.2)  # the fault lands this long after the first body started
EXIT_WITHIN = 2.0  # the interrupt contract: run exits this soon after the first SIGINT/SIGTERM
SLACK = 0.5  # for a loaded 2-core machine


def _start_and_wait(pipe, where):
    proc = pipe.start("run", "--timeout", "60")
    assert pipe.wait_for_first_body(proc), f"{where}: no body started\n{pipe.finish(proc)}"
    return proc


@pytest.mark.parametrize("trial", range(SIGKILL_TRIALS), ids=lambda t: f"trial-{t}")
def test_sigkill_at_a_random_moment(trial, make_pipe, tally):
    delay = round(trial_rng("SIGKILL", trial).uniform(*DELAYS), 3)
    where = f"seed={SEED} trial={trial} delay={delay}"
    pipe = make_pipe(n=N, sleep=SLEEP)
    proc = _start_and_wait(pipe, where)
    time.sleep(delay)
    mid_run = proc.poll() is None
    if mid_run:
        os.kill(proc.pid, signal.SIGKILL)  # the controller only: its process jobs survive, as after a crash
    pipe.finish(proc)
    time.sleep(0.15)  # process jobs spawned just before the kill write their log line
    snap = pipe.snapshot()
    in_flight = {(s, j) for s in pipe.stages for j in snap.in_flight(s)}
    # A process job with neither a pids entry nor a done record was at most spawned in the window
    # before its pids entry: it may run again even if its log line came later than the snapshot.
    allowed = in_flight | {("s3", j) for j in pipe.jobs if j not in snap.pids and j not in snap.done["s3"]}

    again = pipe.cli("run", "--timeout", "60")
    problems = [] if again.returncode == 0 else [f"the restarted run failed: {again}"]
    problems += pipe.check_complete() + pipe.check_status() + pipe.check_runs(allowed)
    duplicates = sum(c - 1 for c in pipe.duplicates().values())
    counts = tally["SIGKILL"]
    counts["trials"] += 1
    counts["duplicates"] += duplicates
    counts["in flight"] += len(in_flight)
    counts["killed after the run ended"] += not mid_run
    print(f"SIGKILL {where}: mid-run={mid_run} in flight={sorted(in_flight)} duplicates={pipe.duplicates()}")
    assert duplicates <= len(allowed), f"{where}: {duplicates} duplicate runs > {len(allowed)} jobs in flight"
    assert not problems, f"{where}: mid-run={mid_run}\n" + "\n".join(problems)


def interrupt_trial(sig: signal.Signals, code: int, trial: int, make_pipe, tally) -> None:
    name = sig.name
    delay = round(trial_rng(name, trial).uniform(*DELAYS), 3)
    where = f"seed={SEED} trial={trial} delay={delay} signal={name}"
    pipe = make_pipe(n=N, sleep=SLEEP)
    proc = _start_and_wait(pipe, where)
    time.sleep(delay)
    mid_run = proc.poll() is None
    sent = time.monotonic()
    problems = []
    if mid_run:
        os.kill(proc.pid, sig)
        try:
            proc.wait(EXIT_WITHIN + SLACK)
        except Exception:
            problems.append(f"run did not exit within {EXIT_WITHIN} s of {name}")
    took = time.monotonic() - sent
    first = pipe.finish(proc, timeout=20)
    if mid_run and "# run: finished" in first.stderr:
        # The signal came as the process was exiting after its run had ended (the summary is
        # out): Python's own handling applies by then (death by the signal, or 0).
        mid_run = False
        if first.returncode not in (0, code, -sig):
            problems.append(f"exit status {first.returncode} after {name} sent as the finished run exited")
    if mid_run:
        if first.returncode != code:
            problems.append(f"exit status {first.returncode} after {name}, want {code} (took {took:.2f} s)")
        if "interrupted" not in first.stderr:
            problems.append(f"no 'interrupted' on stderr after {name}")
        if "Traceback" in first.stderr:
            problems.append(f"a traceback after {name}")
    if first.returncode is None:
        problems.append(f"run still running 20 s after {name}: killed")
    time.sleep(0.1)
    snap = pipe.snapshot()
    failed = {
        (stage, job): record.get("result") if isinstance(record, dict) else record
        for stage in pipe.stages
        for job, record in pipe.records(stage).items()
        if not (isinstance(record, dict) and record.get("result") == "success")
    }
    if failed:
        problems.append(f"jobs recorded as failed by the interrupt: {sorted(failed.items())[:10]}")
    # Cancelled in-process and executor bodies run again; process jobs are adopted, never rerun.
    in_flight = {(s, j) for s in ("s1", "s2") for j in snap.in_flight(s)}

    again = pipe.cli("run", "--timeout", "60")
    if again.returncode != 0:
        problems.append(f"the restarted run failed: {again}")
    problems += pipe.check_complete() + pipe.check_status() + pipe.check_runs(in_flight)
    duplicates = sum(c - 1 for c in pipe.duplicates().values())
    counts = tally[name]
    counts["trials"] += 1
    counts["duplicates"] += duplicates
    counts["cancelled mid-body"] += len(in_flight)
    counts["sent after the run ended"] += not mid_run
    counts["slowest exit (ms)"] = max(counts["slowest exit (ms)"], int(took * 1000) if mid_run else 0)
    print(
        f"{name} {where}: mid-run={mid_run} exit in {took:.2f} s rc={first.returncode} "
        f"cancelled={sorted(in_flight)} duplicates={pipe.duplicates()}"
    )
    assert not problems, f"{where}: mid-run={mid_run}\n" + "\n".join(problems) + f"\n--- interrupted run:\n{first}"


@pytest.mark.parametrize("trial", range(INTERRUPT_TRIALS), ids=lambda t: f"trial-{t}")
def test_sigint_at_a_random_moment(trial, make_pipe, tally):
    interrupt_trial(signal.SIGINT, 130, trial, make_pipe, tally)


@pytest.mark.parametrize("trial", range(SIGTERM_TRIALS), ids=lambda t: f"trial-{t}")
def test_sigterm_at_a_random_moment(trial, make_pipe, tally):
    interrupt_trial(signal.SIGTERM, 143, trial, make_pipe, tally)


def _sigint_while_stuck(pipe, stage: str, job: str):
    """Run, wait for ``job`` of ``stage`` to start (and get stuck), SIGINT the run; the run must
    exit with 130 within the contract's time. Returns the run's result."""
    proc = pipe.start("run", "--timeout", "60")
    assert pipe.wait_for_start(stage, job), pipe.finish(proc)
    time.sleep(0.2)
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    result = pipe.finish(proc, timeout=15)
    took = time.monotonic() - sent
    assert result.returncode == 130 and took <= EXIT_WITHIN + SLACK, f"took {took:.2f} s\n{result}"
    assert "interrupted" in result.stderr, result
    return result


def test_sigint_with_an_executor_body_stuck_in_its_thread_exits_within_two_seconds(make_pipe):
    """A worker thread cannot be interrupted: the run must not wait for it to exit."""
    pipe = make_pipe(stages=("s1", "s2"), n=4, sleep=0.0, hostile={("s2", "j2"): "hang"})
    _sigint_while_stuck(pipe, "s2", "j2")
    assert all(r.get("result") == "success" for r in pipe.records("s2").values()), pipe.records("s2")
    assert "j2" not in pipe.records("s2"), "the interrupted job is left ready, not recorded"


def test_a_second_sigint_exits_at_once(make_pipe):
    """A body that swallows cancellations keeps the first SIGINT's clean-up waiting; the second
    SIGINT ends the run at once."""
    pipe = make_pipe(stages=("s1",), n=3, sleep=0.0, hostile={("s1", "j2"): "stubborn"})
    proc = pipe.start("run", "--timeout", "60")
    assert pipe.wait_for_start("s1", "j2"), pipe.finish(proc)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    if proc.poll() is None:
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        result = pipe.finish(proc, timeout=15)
        took = time.monotonic() - sent
        assert took <= 0.5 + SLACK, f"the second SIGINT took {took:.2f} s to end the run\n{result}"
    else:
        result = pipe.finish(proc)
    assert result.returncode == 130, result
    assert "j2" not in pipe.records("s1"), "the interrupted job is left ready, not recorded"


def test_sigint_between_a_process_jobs_spawn_and_its_pids_entry_never_runs_it_twice(make_pipe):
    """The launch of a process job is interrupted after its process started and before its pids
    entry is written (a slow pids store holds it there). The job is a process job: it must be
    adopted by the next run, or at least never run again."""
    pipe = make_pipe(stages=("s3",), n=1, sleep=0.3, extra_env={"FAULT_PIDS_DELAY": "1.0"})
    proc = pipe.start("run", "--timeout", "60")
    assert pipe.wait_for_start("s3", "j1"), pipe.finish(proc)
    os.kill(proc.pid, signal.SIGINT)
    first = pipe.finish(proc, timeout=15)
    assert first.returncode == 130, first
    time.sleep(0.5)  # the job's own work is at most 0.3 s
    ended_before_restart = pipe.ends()[("s3", "j1")]
    again = pipe.cli("run", "--timeout", "60")
    where = f"interrupted: {first}\nrestarted: {again}\nlog: {pipe.log_lines('s3', 'j1')}"
    assert again.returncode == 0, where
    problems = pipe.check_complete() + pipe.check_runs(set())
    assert not problems, f"{where}\nthe first run got to its end: {bool(ended_before_restart)}\n" + "\n".join(problems)


def test_sigint_with_a_body_blocking_the_event_loop_exits_within_two_seconds(make_pipe):
    """Synchronous code in an in-process body holds the loop: nothing can cancel it, so the run
    exits without it (the watchdog), leaving it ready."""
    pipe = make_pipe(stages=("s1",), n=3, sleep=0.0, hostile={("s1", "j2"): "block"})
    _sigint_while_stuck(pipe, "s1", "j2")
    assert "j2" not in pipe.records("s1"), "the interrupted job is left ready, not recorded"
    assert pipe.temporaries() == []


def test_run_timeout_with_a_body_blocking_the_event_loop_exits_about_a_second_after(make_pipe):
    pipe = make_pipe(stages=("s1",), n=3, sleep=0.0, hostile={("s1", "j2"): "block"})
    started = time.monotonic()
    result = pipe.cli("run", "--timeout", "2", timeout=30)
    took = time.monotonic() - started
    assert result.returncode == 1 and took <= 2 + 1.0 + 1.0 + SLACK, f"took {took:.2f} s\n{result}"  # + start-up
    assert "timed out after 2 s" in result.stderr and "Traceback" not in result.stderr, result
    assert "j2" not in pipe.records("s1"), "the blocked job is left ready, not recorded"
