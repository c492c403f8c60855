"""A record that cannot be read affects its job alone: the rest of the pipeline runs, `status`
and `failed` show it, and `run` ends. Driven through the command line of
tests/failure/failing_pipeline.py (in-process, process and executor stages over files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "failure" / "failing_pipeline.py"


def cli(data: Path, *args: str, check: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATA": str(data)}
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
    if check is not None:
        assert proc.returncode == check, (args, proc.stdout, proc.stderr)
    return proc


def seed(data: Path, n: int = 5) -> None:
    (data / "raw").mkdir(parents=True)
    for i in range(1, n + 1):
        (data / "raw" / f"j{i}").write_text(f"{i}\n")


def states(data: Path) -> dict[str, dict]:
    return {t["name"]: t for t in json.loads(cli(data, "status", "--json", check=0).stdout)["tasks"]}


def test_a_malformed_done_record_and_a_directory_in_its_place_affect_their_jobs_alone(tmp_path):
    seed(tmp_path)
    done = tmp_path / "parse_done"
    done.mkdir()
    (done / "j2.yaml").write_text("result: [unclosed\n")  # malformed YAML
    (done / "j3.yaml").mkdir()  # a directory where the record belongs
    run = cli(tmp_path, "run", "--timeout", "30")
    assert run.returncode == 0, run.stderr  # no job failed during the run; the records were bad before
    assert "Traceback" not in run.stderr
    assert "2 unreadable records" in run.stderr and "unreadable record: parse j2: " in run.stderr
    assert not (tmp_path / "parsed" / "j2").exists() and not (tmp_path / "parsed" / "j3").exists(), (
        "a job whose record is corrupt is not run again"
    )
    s = states(tmp_path)
    assert (s["parse"]["done"], s["parse"]["failed"]) == (3, 2)
    assert (s["count"]["done"], s["count"]["blocked"]) == (3, 2)
    assert s["report"]["done"] == 3
    failed = cli(tmp_path, "failed", check=0).stdout.splitlines()
    assert failed[0].startswith("parse j2 0 unreadable record:") and "malformed YAML" in failed[0]
    assert failed[1].startswith("parse j3 0 unreadable record:")
    # the fix: retry clears the corrupt records, and the jobs run
    assert cli(tmp_path, "retry", "parse", "--failed", check=0).stdout == "parse: reset 2 jobs (j2, j3)\n"
    cli(tmp_path, "run", check=0)
    assert all(t["done"] == 5 and t["failed"] == 0 for t in states(tmp_path).values())


def test_an_unreadable_pids_record_fails_its_job_and_the_rest_runs(tmp_path):
    seed(tmp_path)
    cli(tmp_path, "run", "--timeout", "30", check=0)
    for job in ("j4", "j5"):  # make count run again for two jobs, one with a corrupt pids record
        cli(tmp_path, "rm", "count.done", job, check=0)
    pids = tmp_path / "pids"
    pids.mkdir(exist_ok=True)
    (pids / "j4.yaml").write_text("pid: [\n")
    run = cli(tmp_path, "run", "--timeout", "30")
    assert run.returncode == 1, run.stderr
    assert run.stderr.count("cannot be read") <= 3, run.stderr
    s = states(tmp_path)
    assert s["count"]["done"] == 4 and s["count"]["failed"] == 1
    record = cli(tmp_path, "show", "count", "j4", check=0).stdout
    assert "pids entry has no process identifier" in record and "unreadable" in record
