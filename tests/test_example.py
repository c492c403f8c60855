"""The README's first command runs examples/books/pipeline.py; check it end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "books" / "pipeline.py"


def run(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PDTNB_EXAMPLE_DIR": str(work)}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


def test_example_runs_end_to_end_and_reports_status(work: Path) -> None:
    books = sorted(p.stem for p in (EXAMPLE.parent / "books").glob("*.txt"))
    assert len(books) >= 3

    result = run(work, "run")
    assert result.returncode == 0, result.stderr
    assert "launched" in result.stderr

    status = run(work, "status")
    assert status.returncode == 0, status.stderr
    n = len(books)
    assert status.stdout.splitlines() == [
        "summary",
        f"summary.books {n}",
        f"summary.done {n}",
        f"summary.reports {n}",
        "",
        "index",
        f"index.reports {n}",
        f"index.done {n}",
        f"index.index {n}",
        "",
    ]
    assert f"# summary: ready 0, live 0, done {n}, failed 0" in status.stderr

    report = (work / "reports" / "river.txt").read_text()
    text = (EXAMPLE.parent / "books" / "river.txt").read_text()
    assert f"{len(text.split())} words" in report
    counts = run(work, "cat", "index.index", "river")
    assert counts.returncode == 0
    assert f"words: {len(text.split())}" in counts.stdout


def test_example_second_run_redoes_nothing(work: Path) -> None:
    assert run(work, "run").returncode == 0
    before = {p: p.stat().st_mtime_ns for p in (work / "reports").iterdir()}
    again = run(work, "run")
    assert again.returncode == 0
    assert "0 launched" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in (work / "reports").iterdir()} == before


def test_example_retries_a_job_after_its_done_record_is_removed(work: Path) -> None:
    assert run(work, "run").returncode == 0
    rm = run(work, "rm", "-r", "summary.done", "river")
    assert rm.returncode == 0, rm.stderr
    status = json.loads(run(work, "status", "--json").stdout)
    summary = next(t for t in status["tasks"] if t["name"] == "summary")
    assert summary["ready"] == 1
    rerun = run(work, "run")
    assert "2 launched" in rerun.stderr  # summary, then index, for river only
