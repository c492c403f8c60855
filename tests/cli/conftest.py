"""Fixtures for the command-line tests: a small pipeline script in tmp_path, run as a real program."""

from __future__ import annotations

import runpy
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import pdtnb

PIPELINE_SCRIPT = textwrap.dedent(
    '''
    """A two-stage file pipeline: stage1 upper-cases inp (plus an optional suffix from opts) into a,
    stage2 describes a as YAML in b."""

    from pathlib import Path

    import pdtnb

    BASE = Path(__file__).resolve().parent / "data"

    inp = pdtnb.FileRepository(BASE / "inp")
    opts = pdtnb.YamlMetadataFileRepository(BASE / "opts")
    a = pdtnb.FileRepository(BASE / "a")
    b = pdtnb.YamlMetadataFileRepository(BASE / "b")
    done1 = pdtnb.YamlMetadataFileRepository(BASE / "done1")
    done2 = pdtnb.YamlMetadataFileRepository(BASE / "done2")


    def log_call(task, job):
        with open(BASE / "calls.log", "a") as fp:
            fp.write(f"{task} {job}\\n")


    @pdtnb.InProcessSyncTask("stage1", done1)
    async def stage1(job, inp, opts, a):
        log_call("stage1", job)
        async with await inp.open(job, "r") as fp:
            text = await fp.read()
        options = await opts.info(job) or {}
        if options.get("fail"):
            raise RuntimeError(f"asked to fail on {job}")
        async with await a.open(job, "w") as fp:
            await fp.write(text.upper() + str(options.get("suffix", "")))


    stage1.link("inp", inp, is_input=True)
    stage1.link("opts", opts, is_input=True, required_for_start=False)
    stage1.link("a", a, is_output=True)


    @pdtnb.InProcessSyncTask("stage2", done2)
    async def stage2(job, a, b):
        log_call("stage2", job)
        async with await a.open(job, "r") as fp:
            text = await fp.read()
        await b.dump(job, {"text": text, "length": len(text)})


    stage2.plug(stage1)
    stage2.link("b", b, is_output=True)

    pipeline = pdtnb.Pipeline([stage1, stage2], pdtnb.Session())

    if __name__ == "__main__":
        pdtnb.main(pipeline)
    '''
)


def write_script(directory: Path) -> Path:
    path = directory / "pipeline.py"
    path.write_text(PIPELINE_SCRIPT)
    return path


def runner(script: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``run("status", "--json", input="...")`` runs the script as a program and returns the result."""

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=20,
            cwd=script.parent,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    return run


def seeder(data_dir: Path) -> Callable[..., None]:
    """Write input files directly (faster than one ``inject`` process per job)."""

    def write(**jobs: str) -> None:
        (data_dir / "inp").mkdir(parents=True, exist_ok=True)
        for job, text in jobs.items():
            (data_dir / "inp" / job).write_text(text)

    return write


@pytest.fixture
def script(tmp_path: Path) -> Path:
    """The pipeline script; its data lives in ``tmp_path / "data"``."""
    return write_script(tmp_path)


@pytest.fixture
def data_dir(script: Path) -> Path:
    return script.parent / "data"


@pytest.fixture
def cli(script: Path) -> Callable[..., subprocess.CompletedProcess]:
    return runner(script)


@pytest.fixture
def seed(data_dir: Path) -> Callable[..., None]:
    return seeder(data_dir)


@pytest.fixture
def ran(script: Path, seed) -> None:
    """Jobs j1 ("hello") and j2 ("world") pushed through both stages by ``main(pipeline, ["run"])``.

    Done in this process to save a process start; the tests then use real subprocesses."""
    seed(j1="hello", j2="world")
    pdtnb.main(runpy.run_path(str(script))["pipeline"], argv=["run", "--timeout", "10"])
    assert (script.parent / "data" / "b" / "j2.yaml").exists()


@dataclass
class Shared:
    cli: Callable[..., subprocess.CompletedProcess]
    data_dir: Path


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Shared:
    """One pipeline for read-only tests: j1 ("hello") and j2 ("world") ran through both stages,
    then j3 ("pending") added and not run."""
    script_path = write_script(tmp_path_factory.mktemp("shared"))
    data = script_path.parent / "data"
    run = runner(script_path)
    seeder(data)(j1="hello", j2="world")
    result = run("run", "--timeout", "10")
    assert result.returncode == 0, result.stderr
    seeder(data)(j3="pending")
    return Shared(run, data)


@pytest.fixture
def load_pipeline(script: Path):
    """The script's pipeline object, loaded in this process (for calling the coroutines directly)."""

    def load():
        return runpy.run_path(str(script))["pipeline"]

    return load


@pytest.fixture
def calls(data_dir: Path) -> Callable[[], list[str]]:
    """The ``TASK JOB`` lines of every body call so far."""

    def read() -> list[str]:
        path = data_dir / "calls.log"
        return path.read_text().splitlines() if path.exists() else []

    return read
