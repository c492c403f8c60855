"""examples/books/pipeline.yaml, run from the shell with ``python -m pdtnb -f``, does what
examples/books/pipeline.py does: the same files, the same reports, the same records."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from decl_support import EXAMPLE, cli

PIPELINE_YAML = EXAMPLE / "pipeline.yaml"
PIPELINE_PY = EXAMPLE / "pipeline.py"


@pytest.fixture
def books(tmp_path: Path) -> Path:
    """A copy of the example's books (the runs must not depend on, nor write next to, the checkout's)."""
    return Path(shutil.copytree(EXAMPLE / "books", tmp_path / "books"))


def environment(work: Path, books: Path) -> dict[str, str]:
    return {"PDTNB_EXAMPLE_DIR": str(work), "PDTNB_EXAMPLE_BOOKS": str(books)}


def run_script(work: Path, books: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PIPELINE_PY), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **environment(work, books)},
        check=False,
    )


def run_file(work: Path, books: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("-f", str(PIPELINE_YAML), *args, env=environment(work, books))


def files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def record(path: Path) -> dict:
    """A job record without its times."""
    data = yaml.safe_load(path.read_text())
    return {k: v for k, v in data.items() if k not in ("start_time", "end_time")}


async def test_the_yaml_example_gives_the_python_example_s_files_and_records(tmp_path: Path, books: Path) -> None:
    from_file, from_script = tmp_path / "from-file", tmp_path / "from-script"
    declared, scripted = await asyncio.gather(
        asyncio.to_thread(run_file, from_file, books, "run"), asyncio.to_thread(run_script, from_script, books, "run")
    )
    for result in (declared, scripted):
        assert result.returncode == 0, result.stderr
        assert "# run: finished: 6 succeeded, 0 failed" in result.stderr

    written, expected = files(from_file), files(from_script)
    assert list(written) == list(expected)
    names = sorted(name[:-4] for name in os.listdir(books) if name.endswith(".txt"))
    assert len(names) >= 3
    assert [k for k in written if k.startswith("reports/")] == [f"reports/{n}.txt" for n in names]
    for name in names:
        report = written[f"reports/{name}.txt"].read_text()
        assert report == expected[f"reports/{name}.txt"].read_text()
        words = len((books / f"{name}.txt").read_text().split())
        assert f"{words} words" in report
        index = yaml.safe_load(written[f"index/{name}.yaml"].read_text())
        assert index == yaml.safe_load(expected[f"index/{name}.yaml"].read_text())
        assert index["words"] == words
        for done in ("results", "index-done"):
            assert record(written[f"{done}/{name}.yaml"]) == record(expected[f"{done}/{name}.yaml"])
            assert record(written[f"{done}/{name}.yaml"])["result"] == "success"

    # status reads the same, and a second run redoes nothing
    status, again = await asyncio.gather(
        asyncio.to_thread(run_file, from_file, books, "status"), asyncio.to_thread(run_file, from_file, books, "run")
    )
    assert status.returncode == 0, status.stderr
    n = len(names)
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
    assert again.returncode == 0 and "0 launched" in again.stderr


async def test_check_and_graph_create_nothing(tmp_path: Path, books: Path) -> None:
    work, svg = tmp_path / "work", tmp_path / "drawn" / "pipeline.svg"
    svg.parent.mkdir()
    checked, drawn = await asyncio.gather(
        asyncio.to_thread(run_file, work, books, "check"),
        asyncio.to_thread(run_file, work, books, "graph", "-o", str(svg)),
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == f"{PIPELINE_YAML}: valid: 2 tasks, 5 repositories, 0 resources, 0 quotas\n"
    assert drawn.returncode == 0, drawn.stderr
    assert f"{svg}: 2 tasks drawn" in drawn.stderr
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {"".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"summary", "index"} <= texts
    assert not work.exists()
    assert sorted(os.listdir(tmp_path)) == ["books", "drawn"]
