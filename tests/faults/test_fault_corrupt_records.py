"""Every kind of corrupt record, through the command line of the three-stage fault pipeline
(tests/reliability/test_corrupt_records.py has malformed YAML and a directory in place of the
in-process stage's done record, and malformed YAML in a pids record; here: the other kinds, and
every stage). For each: ``run`` ends having completed every other job, ``status`` works and
shows the corrupt job, ``failed`` lists it, and the corrupt job's repositories are left as they
were. Also: a pids entry holding the bare pid of a process of the test's own (the sentinel) is
never signalled, by ``kill`` or by the task's timeout."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from faultkit import expected_values

pytestmark = pytest.mark.faults

N = 5
BAD = "j3"
STAGES = ("s1", "s2", "s3")


def _bad_yaml(path):
    path.write_text("result: [unclosed\n")


def _a_list(path):
    path.write_text("- result\n- success\n")


def _a_bare_string(path):
    path.write_text("success\n")


def _a_directory(path):
    path.mkdir()


def _empty(path):
    path.write_text("")


def _not_utf8(path):
    path.write_bytes(b"result: \xff\xfe success\n")


# kind -> (how to corrupt, the stage whose done record is corrupt): each kind on one stage, every
# stage used, so that the three task kinds read corrupt records.
DONE_KINDS = {
    "bad-yaml": (_bad_yaml, "s2"),
    "list": (_a_list, "s1"),
    "bare-string": (_a_bare_string, "s3"),
    "directory": (_a_directory, "s2"),
    "empty-file": (_empty, "s3"),
    "not-utf8": (_not_utf8, "s1"),
}


def _state(path):
    """What is at ``path``, to compare before and after."""
    if path.is_dir():
        return ("directory", sorted(p.name for p in path.iterdir()))
    if path.exists():
        return ("file", path.read_bytes(), path.stat().st_mode)
    return None


def _job_paths(pipe, job):
    """Every place the pipeline may hold ``job``, except its input."""
    out = {}
    for stage in pipe.stages:
        out[f"{stage}_out"] = pipe.data / f"{stage}_out" / job
        out[f"{stage}_done"] = pipe.data / f"{stage}_done" / f"{job}.yaml"
    out["s3_pids"] = pipe.data / "s3_pids" / f"{job}.yaml"
    return out


def _check_others_complete(pipe, where):
    others = [j for j in pipe.jobs if j != BAD]
    problems = []
    for stage in pipe.stages:
        names = pipe.names(f"{stage}_out") - {BAD}
        if names != set(others):
            problems.append(f"{stage} output holds {sorted(names)}, want {others}")
        for job in others:
            path = pipe.data / f"{stage}_out" / job
            if path.exists() and path.read_bytes() != expected_values(job, pipe.stages)[stage]:
                problems.append(f"{stage} {job}: incomplete output")
        bad = [
            j
            for j, r in pipe.records(stage).items()
            if j != BAD and not (isinstance(r, dict) and r.get("result") == "success")
        ]
        if bad:
            problems.append(f"{stage}: other jobs not successes: {bad}")
    runs = pipe.starts()
    for (stage, job), count in runs.items():
        if count > 1:
            problems.append(f"{stage} {job} ran {count} times")
    tmp = pipe.temporaries()
    if tmp:
        problems.append(f"temporary files left: {tmp}")
    assert not problems, f"{where}:\n" + "\n".join(problems)


@pytest.mark.parametrize("kind", DONE_KINDS)
def test_a_corrupt_done_record_affects_its_job_alone(kind, make_pipe):
    corrupt, stage = DONE_KINDS[kind]
    pipe = make_pipe(n=N, sleep=0.0)
    record = pipe.data / f"{stage}_done" / f"{BAD}.yaml"
    # Everything upstream of the corrupt stage ran for the job, as it would have before the damage.
    for up in pipe.stages[: pipe.stages.index(stage)]:
        (pipe.data / f"{up}_out").mkdir(parents=True, exist_ok=True)
        (pipe.data / f"{up}_out" / BAD).write_bytes(expected_values(BAD, pipe.stages)[up])
        (pipe.data / f"{up}_done").mkdir(parents=True, exist_ok=True)
        (pipe.data / f"{up}_done" / f"{BAD}.yaml").write_text(
            "result: success\nstart_time: 2026-01-01 00:00:00+00:00\nend_time: 2026-01-01 00:00:01+00:00\n"
        )
    record.parent.mkdir(parents=True, exist_ok=True)
    corrupt(record)
    before = {name: _state(path) for name, path in _job_paths(pipe, BAD).items()}

    run = pipe.cli("run", "--timeout", "30", timeout=60)
    where = f"{kind} in {stage}: {run}"
    assert run.returncode is not None, f"run did not end: {where}"
    assert run.returncode == 0, where  # no job failed during the run: the record was bad before
    assert "Traceback" not in run.stderr, where

    _check_others_complete(pipe, where)
    after = {name: _state(path) for name, path in _job_paths(pipe, BAD).items()}
    assert after == before, f"{where}: the corrupt job's repositories changed"
    assert not any(job == BAD for (s, job) in pipe.starts() if s == stage), f"{where}: the corrupt job ran"

    status, tasks = pipe.status()
    assert status.returncode == 0 and tasks, f"{where}\nstatus: {status}"
    index = pipe.stages.index(stage)
    for s in pipe.stages:
        t = tasks[s]
        i = pipe.stages.index(s)
        want = (
            {"done": N, "failed": 0, "blocked": 0}
            if i < index
            else {"done": N - 1, "failed": 1, "blocked": 0}
            if i == index
            else {"done": N - 1, "failed": 0, "blocked": 1}
        )
        got = {k: t[k] for k in want}
        assert got == want and t["ready"] == 0 and t["live"] == 0, f"{where}\nstatus of {s}: {t}"

    failed = pipe.cli("failed")
    assert failed.returncode == 0, f"{where}\nfailed: {failed}"
    lines = failed.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{stage} {BAD} ") and "unreadable record" in lines[0], (
        f"{where}\nfailed: {failed}"
    )
    # As for malformed YAML (tests/reliability/test_corrupt_records.py), the run says so at its end.
    assert "unreadable record" in run.stderr, f"{where}\nthe run does not report the unreadable record"


# job -> (kind, how to corrupt its pids entry): all in one pipeline, since each affects its job alone
# (malformed YAML is tests/reliability/test_corrupt_records.py's).
PIDS_KINDS = {
    "j2": ("list", _a_list),
    "j3": ("bare-string", lambda p: p.write_text("12345\n")),
    "j4": ("directory", _a_directory),
    "j5": ("empty-file", _empty),
    "j6": ("no-pid", lambda p: p.write_text("start_time: 2026-01-01 00:00:00+00:00\n")),
    "j7": ("garbage-pid", lambda p: p.write_text("pid: not-a-pid\nstart_time: 2026-01-01 00:00:00+00:00\n")),
}


def test_malformed_pids_records_fail_their_jobs_alone(make_pipe):
    n = 8
    pipe = make_pipe(n=n, sleep=0.0)
    (pipe.data / "s3_pids").mkdir(parents=True)
    for job, (_kind, corrupt) in PIDS_KINDS.items():
        corrupt(pipe.data / "s3_pids" / f"{job}.yaml")
    run = pipe.cli("run", "--timeout", "30", timeout=60)
    where = f"pids {', '.join(f'{j}: {k}' for j, (k, _) in PIDS_KINDS.items())}: {run}"
    assert run.returncode in (0, 1), where
    assert "Traceback" not in run.stderr, where
    good = [j for j in pipe.jobs if j not in PIDS_KINDS]
    for job in good:
        for stage in pipe.stages:
            path = pipe.data / f"{stage}_out" / job
            assert path.exists() and path.read_bytes() == expected_values(job, pipe.stages)[stage], f"{where}\n{job}"
    launched = sorted(j for (s, j) in pipe.starts() if s == "s3" and j in PIDS_KINDS)
    assert not launched, f"{where}: jobs whose pids entry is corrupt were launched: {launched}"
    assert not any((pipe.data / "s3_out" / job).exists() for job in PIDS_KINDS), where
    assert all(c == 1 for c in pipe.starts().values()), pipe.duplicates()

    status, tasks = pipe.status()
    assert status.returncode == 0 and tasks, f"{where}\nstatus: {status}"
    s3 = tasks["s3"]
    want = (n - len(PIDS_KINDS), len(PIDS_KINDS), 0, 0)
    assert (s3["done"], s3["failed"], s3["ready"], s3["live"]) == want, f"{where}\nstatus of s3: {s3}"
    failed = pipe.cli("failed")
    lines = failed.stdout.splitlines()
    listed = sorted(line.split()[1] for line in lines if line.startswith("s3 "))
    assert failed.returncode == 0 and listed == sorted(PIDS_KINDS) and len(lines) == len(PIDS_KINDS), (
        f"{where}\nfailed: {failed}"
    )


def test_a_bare_pid_of_the_tests_own_process_is_never_signalled(make_pipe, sentinel):
    """pydatatask's bare-pid pids entries, whose pid is now the sentinel's: neither ``kill`` nor
    the task's timeout nor reaping may signal it (the sentinel fixture also checks it at the end)."""
    pipe = make_pipe(n=N, sleep=0.0, extra_env={"FAULT_S3_TIMEOUT": "0.5"})
    (pipe.data / "s3_pids").mkdir(parents=True)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for job in (BAD, "j4"):
        (pipe.data / "s3_pids" / f"{job}.yaml").write_text(f"pid: '{sentinel.pid}'\nstart_time: {start}\n")
    kill = pipe.cli("kill", "s3", "j4")
    assert sentinel.poll() is None, f"`kill s3 j4` signalled the sentinel: {kill}"
    assert kill.returncode == 1 and "Traceback" not in kill.stderr, kill
    assert "bare process id" in kill.stderr and "nothing was signalled" in kill.stderr, kill
    assert "killed" not in str(pipe.records("s3").get("j4")), "a kill that signalled nothing is not recorded"
    run = pipe.cli("run", "--timeout", "30", timeout=60)
    assert sentinel.poll() is None, f"run signalled the sentinel: {run}"
    assert run.returncode in (0, 1) and "Traceback" not in run.stderr, run
    record = pipe.records("s3").get(BAD)
    assert isinstance(record, dict) and record.get("result") != "success", record
    reason = str(record.get("reason"))
    assert "bare process id" in reason and "nothing was signalled" in reason, record
    assert not pipe.names("s3_pids"), pipe.names("s3_pids")
    assert ("s3", BAD) not in pipe.starts() and ("s3", "j4") not in pipe.starts()
