"""Bodies that misbehave, through the command line of the fault pipeline: ``sys.exit(3)``,
``raise KeyboardInterrupt``, an exception whose message cannot be encoded, one whose ``__str__``
raises (in-process and executor stages); a process job leaving a child behind; a body that hangs
(``run --timeout 2``). Each is that job's failure (the hang: the job stays ready), ``failed``
lists each in one line, and every other job completes."""

from __future__ import annotations

import time

import pytest
from faultkit import expected_values

pytestmark = pytest.mark.faults

#: job -> (hostile kind, what its `failed` line must name)
HOSTILE = {
    "j2": ("exit", "SystemExit"),
    "j3": ("kbint", "KeyboardInterrupt"),
    "j4": ("unencodable", "ValueError"),
    "j5": ("badstr", "BadStr"),
}
N = 7


def _check_good_jobs(pipe, good, where):
    problems = []
    for stage in pipe.stages:
        for job in good:
            path = pipe.data / f"{stage}_out" / job
            if not path.exists() or path.read_bytes() != expected_values(job, pipe.stages)[stage]:
                problems.append(f"{stage} {job}: output missing or incomplete")
            record = pipe.records(stage).get(job)
            if not (isinstance(record, dict) and record.get("result") == "success"):
                problems.append(f"{stage} {job}: record {record!r}")
    for (stage, job), count in pipe.starts().items():
        if count > 1:
            problems.append(f"{stage} {job}: body ran {count} times")
    if pipe.temporaries():
        problems.append(f"temporary files left: {pipe.temporaries()}")
    assert not problems, f"{where}\n" + "\n".join(problems)


@pytest.mark.parametrize("stage", ["s1", "s2"], ids=["in-process", "executor"])
def test_hostile_function_bodies_fail_their_jobs_alone(stage, make_pipe):
    pipe = make_pipe(n=N, sleep=0.0, hostile={(stage, job): kind for job, (kind, _) in HOSTILE.items()})
    run = pipe.cli("run", "--timeout", "30", timeout=60)
    where = f"{stage}: {run}"
    assert run.returncode == 1, where  # jobs failed during the run
    assert "Traceback" not in run.stderr, where
    good = [j for j in pipe.jobs if j not in HOSTILE]
    _check_good_jobs(pipe, good, where)
    for job in HOSTILE:
        assert not (pipe.data / f"{stage}_out" / job).exists(), where
        record = pipe.records(stage).get(job)
        assert isinstance(record, dict) and record.get("result") == "failure", f"{where}\n{job}: {record!r}"

    failed = pipe.cli("failed")
    raw = (pipe.root / f"cmd{len(pipe.started) - 1}.out").read_bytes()
    raw.decode("utf-8")  # strictly: an unencodable message is escaped, never written raw
    lines = failed.stdout.splitlines()
    assert failed.returncode == 0 and len(lines) == len(HOSTILE), f"{where}\nfailed: {failed}"
    for line, (job, (kind, name)) in zip(lines, sorted(HOSTILE.items())):
        assert line.startswith(f"{stage} {job} 1 ") and name in line, f"{kind}: {line!r}\n{failed}"

    status, tasks = pipe.status()
    assert status.returncode == 0, status
    index = pipe.stages.index(stage)
    for s in pipe.stages:
        i = pipe.stages.index(s)
        want = (
            {"done": N, "failed": 0, "blocked": 0}
            if i < index
            else (
                {"done": N - 4, "failed": 4, "blocked": 0} if i == index else {"done": N - 4, "failed": 0, "blocked": 4}
            )
        )
        got = {k: tasks[s][k] for k in want}
        assert got == want and tasks[s]["ready"] == 0 and tasks[s]["live"] == 0, f"status of {s}: {tasks[s]}"
    for job in ("j4", "j5"):  # the messages that cannot be encoded or computed
        shown = pipe.cli("show", stage, job)
        assert shown.returncode == 0 and "Traceback (most recent" not in shown.stderr, f"show {stage} {job}: {shown}"


def test_a_process_job_leaving_a_child_behind_fails_alone_and_the_run_does_not_wait_for_it(make_pipe):
    pipe = make_pipe(n=4, sleep=0.0, hostile={("s3", "j2"): "orphan"})
    run = pipe.cli("run", "--timeout", "30", timeout=60)
    where = f"orphan: {run}"
    assert run.returncode == 1, where
    assert run.elapsed < 10, f"the run waited for the job's child (sleep 30): {where}"
    _check_good_jobs(pipe, ["j1", "j3", "j4"], where)
    failed = pipe.cli("failed")
    lines = failed.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("s3 j2 1 exit code 5"), f"{where}\nfailed: {failed}"
    assert not pipe.names("s3_pids") and not pipe.job_dirs_left(), where
    left = [p for p in pipe.ours() if p.name() == "sleep"]
    print(f"children left behind by s3 j2 after its job was reaped: {[p.pid for p in left]}")


@pytest.mark.parametrize("stage", ["s1", "s2"], ids=["in-process", "executor"])
def test_a_hanging_body_is_left_ready_when_run_times_out(stage, make_pipe):
    pipe = make_pipe(n=5, sleep=0.0, hostile={(stage, "j2"): "hang"})
    proc = pipe.start("run", "--timeout", "2")
    assert pipe.wait_for_first_body(proc), pipe.finish(proc)
    first_body = time.monotonic()  # the run's clock started a little earlier, when the pipeline opened
    result = pipe.finish(proc, timeout=30)
    took = time.monotonic() - first_body
    where = f"hang in {stage}: exited {took:.2f} s after the first body started: {result}"
    assert result.returncode not in (0, None), where
    assert took <= 2 + 1 + 0.5, where  # the timeout, then within about a second
    assert "Traceback" not in result.stderr, where
    good = [j for j in pipe.jobs if j != "j2"]
    if stage == "s1":
        # An in-process body runs inside the launch phase (as in pydatatask): while one hangs, the
        # round does not end, so later stages wait; the other jobs of its own stage finish.
        for job in good:
            assert pipe.records("s1").get(job, {}).get("result") == "success", f"{where}: s1 {job}"
        assert pipe.temporaries() == [], where
    else:
        _check_good_jobs(pipe, good, where)
    assert "j2" not in pipe.records(stage), f"{where}: the hung job was recorded: {pipe.records(stage)['j2']}"
    status, tasks = pipe.status()
    assert status.returncode == 0, status
    t = tasks[stage]
    assert (t["ready"], t["failed"], t["live"], t["done"]) == (1, 0, 0, 4), f"{where}\nstatus of {stage}: {t}"
