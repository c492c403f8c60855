"""The failure loop through the command line, in subprocesses, on a 3-stage file pipeline with an
in-process, a process and an executor stage (tests/failure/failing_pipeline.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).with_name("failing_pipeline.py")
JOBS = [f"j{i}" for i in range(1, 9)]


class Cli:
    def __init__(self, data: Path, env: dict[str, str]):
        self.data = data
        self.env = {**os.environ, "DATA": str(data), **env}

    def __call__(self, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check is not None:
            assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(SCRIPT), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def cli(tmp_path) -> Cli:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i, job in enumerate(JOBS, 1):
        (raw / job).write_text(f"{i * 11}\n")
    return Cli(tmp_path, {"FAIL_PARSE": "j2 j5", "FAIL_COUNT": "j4", "PYTHONUNBUFFERED": "1"})


def states(cli: Cli) -> dict[str, dict]:
    tasks = json.loads(cli("status", "--json").stdout)["tasks"]
    return {t["name"]: t for t in tasks}


def test_from_status_to_the_cause_and_back_to_done(cli):
    run = cli("run", check=1)  # jobs failed: exit status 1
    assert "# run: finished: 16 succeeded, 3 failed, 5 blocked" in run.stderr, run.stderr

    s = states(cli)
    assert (s["parse"]["done"], s["parse"]["failed"]) == (6, 2)
    assert (s["count"]["done"], s["count"]["failed"], s["count"]["blocked"]) == (5, 1, 2)
    assert (s["report"]["done"], s["report"]["blocked"]) == (5, 3)
    assert all(t["total"] == len(JOBS) for t in s.values()), "each job in exactly one state"
    assert "# count: ready 0, live 0, done 5, failed 1, retrying 0, blocked 2, waiting 0" in cli("status").stderr

    failed = cli("failed").stdout.splitlines()
    assert failed == [
        "parse j2 1 ValueError: cannot parse j2: '22' is not a number",
        "parse j5 1 ValueError: cannot parse j5: '55' is not a number",
        "count j4 1 exit code 3: counting j4: the input is corrupt",
    ]
    assert [f["job"] for f in json.loads(cli("failed", "count", "--json").stdout)] == ["j4"]

    show = cli("show", "parse", "j2").stdout
    assert show.startswith("parse j2: failed\n")
    assert f'File "{SCRIPT}", line' in show and "in check_input" in show, show
    assert "raise ValueError" in show
    process = cli("show", "count", "j4").stdout
    assert "exit code 3" in process and "counting j4: the input is corrupt" in process

    why = cli("why", "report", "j2").stdout
    assert "report j2: blocked" in why
    assert "upstream count j2 is blocked" in why and "upstream parse j2 failed: ValueError" in why

    # the downstream never ran on the failed process job's stdout
    assert not (cli.data / "report" / "j4").exists()
    record = (cli.data / "count_done" / "j4.yaml").read_text()
    assert "stderr_tail: |" in record and "counting j4: the input is corrupt" in record
    cat = cli("cat", "parse.done", "j2").stdout
    assert "traceback: |" in cat and "\\n" not in cat

    trace = cli("trace", "j2", "j4")
    assert (
        "# j2: parse failed (ValueError: cannot parse j2: '22' is not a number), count blocked, report blocked"
        in trace.stderr
    )
    assert (
        "# j4: parse done, count failed (exit code 3: counting j4: the input is corrupt), report blocked"
        in trace.stderr
    )
    missing = cli("trace", "nosuch", check=1)
    assert missing.stderr == "error: no repository of this pipeline holds job 'nosuch'\n"

    # fix the bug, retry every failed job and what they blocked
    (cli.data / "fixed").touch()
    assert cli("retry", "parse", "--failed", "-r").stdout == "parse: reset 2 jobs (j2, j5)\n"
    assert cli("retry", "count", "j4").stdout == "count: reset 1 job (j4)\n"
    assert "finished: 8 succeeded, 0 failed" in cli("run").stderr  # parse 2, count 3, report 3
    s = states(cli)
    assert all((t["done"], t["failed"], t["blocked"]) == (8, 0, 0) for t in s.values()), s
    assert (cli.data / "report" / "j4").read_text() == "j4: 3 bytes\n"


def test_retry_and_kill_refuse_what_they_cannot_do(cli):
    cli("run", check=1)
    err = cli("retry", "parse", "j1", check=1).stderr
    assert err == "error: parse j1 succeeded; use `rm parse.done j1` to run it again\n"
    assert "nothing to retry" in cli("retry", "count", "--failed").stdout or True
    assert cli("retry", "parse", check=1).stderr.startswith("error: retry: give one or more jobs")
    assert cli("kill", "count", "j1", check=1).stderr == "error: count j1 is not running here (it is done)\n"
    assert cli("show", "parse", "nosuch", check=1).stderr == (
        "error: no repository of this pipeline holds job 'nosuch'\n"
    )
    long_id = "x" * 5000
    err = cli("show", "parse", long_id, check=1).stderr
    assert len(err) < 300 and "5000 characters" in err
    assert cli("why", "nosuchtask", "j1", check=1).stderr.startswith("error: no task named 'nosuchtask'")


def test_kill_a_live_process_job_from_another_terminal(cli):
    cli.env["SLOW"] = "j3"
    runner = cli.start("run")
    try:
        deadline = time.monotonic() + 30
        while not (cli.data / "pids" / "j3.yaml").exists():
            assert time.monotonic() < deadline, "the slow job never started"
            assert runner.poll() is None, runner.communicate()
            time.sleep(0.05)
        killed = cli("kill", "count", "j3")
        assert killed.stdout == "count j3: killed (recorded: killed)\n"
        _, err = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 1, err
    record = yaml.safe_load((cli.data / "count_done" / "j3.yaml").read_text())
    assert record["result"] == "killed" and record["reason"] == "killed by request"
    assert states(cli)["report"]["blocked"] == 4  # j2, j5 (parse), j4 (count failed), j3 (killed)
    assert "count j3 1 killed by request" in cli("failed").stdout  # (exit code 137) when the wrapper saw it
