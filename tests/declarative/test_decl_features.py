"""Every link kind, plug's options, retry policies, priorities, executor tasks, process tasks and
quotas, declared in a file and run end to end on local files and memory (the server-backed kinds
are tests/declarative/test_servers.py's)."""

from __future__ import annotations

import itertools
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from decl_support import FILES

import pdtnb
from pdtnb.record import read_record


@pytest.fixture
def bodies() -> Any:
    """decl_bodies (importable once a file naming it is loaded), its state cleared."""
    pdtnb.check(FILES / "runs.yaml")
    import decl_bodies

    decl_bodies.reset()
    return decl_bodies


def outputs(pipeline: pdtnb.Pipeline, task: str) -> dict[str, dict[str, Any]]:
    """A task's output links, by name, to what their repositories hold."""
    return {
        name: dict(link.repo.data)
        for name, link in pipeline.tasks[task].links.items()
        if link.is_output and hasattr(link.repo, "data")
    }


def flags(pipeline: pdtnb.Pipeline, task: str, link: str) -> set[str]:
    spec = pipeline.tasks[task].links[link]
    names = (
        "is_input",
        "is_output",
        "is_status",
        "required_for_start",
        "inhibits_start",
        "required_for_output",
        "inhibits_output",
    )
    return {name for name in names if getattr(spec, name)}


async def test_every_link_kind_and_plug_option(bodies: Any) -> None:
    pipeline = pdtnb.load(FILES / "links.yaml")
    # each named kind is the flag it names; flags given directly are as given
    assert flags(pipeline, "double", "numbers") == {"is_input", "required_for_start"}
    assert flags(pipeline, "double", "allowed") == {"required_for_start"}
    assert flags(pipeline, "double", "blocked") == {"inhibits_start"}
    assert flags(pipeline, "double", "doubled") == {"is_output", "required_for_output"}
    assert flags(pipeline, "double", "seen") == {"is_status"}
    assert flags(pipeline, "double", "gate") == {"required_for_output"}
    assert flags(pipeline, "double", "hold") == {"inhibits_output"}
    assert flags(pipeline, "flags", "source") == {"is_input", "required_for_start"}
    assert flags(pipeline, "flags", "blocked") == {"inhibits_start"}
    # plug: output_links picks double's outputs; meta brings its gates; without meta, none
    assert set(pipeline.tasks["report"].links) == {
        "done",
        "reports",
        "doubled",
        "double_done",
        "double_gate",
        "double_hold",
    }
    assert set(pipeline.tasks["eager"].links) == {"done", "reports", "doubled"}
    async with pipeline:
        summary = await pipeline.run(timeout=20)
    assert summary.failed == 0

    # numbers a..d; d is not allowed (required), c is blocked (inhibits)
    assert outputs(pipeline, "double") == {"doubled": {"a": 2, "b": 4}}
    assert pipeline.tasks["double"].links["seen"].repo.data == {"a": "seen by double", "b": "seen by double"}
    assert outputs(pipeline, "square") == {"squares": {"a": 1, "b": 4, "c": 9, "d": 16}}
    # report waits for double's gate (a, b) and its hold (b): a only; eager (no meta) takes both
    assert outputs(pipeline, "report") == {"reports": {"a": "a: 2"}}
    assert outputs(pipeline, "eager") == {"reports": {"a": "a: 2", "b": "b: 4"}}
    # negate's job x reads square's job names[x]; z names no job of square
    assert outputs(pipeline, "negate") == {"negated": {"x": -1, "y": -4}}
    assert outputs(pipeline, "flags") == {"negated": {"a": -1, "b": -2}}


async def test_retry_priority_and_an_executor_task(bodies: Any) -> None:
    pipeline = pdtnb.load(FILES / "runs.yaml")
    retry = pipeline.tasks["flaky"].retry
    assert (retry.attempts, retry.delay, retry.jitter, retry.on) == (3, 0.0, 0.0, (ValueError, bodies.Flaky))
    async with pipeline:
        executor = pipeline.tasks["threaded"].executor
        assert isinstance(executor, ThreadPoolExecutor) and executor._max_workers == 2
        summary = await pipeline.run(timeout=20)
    # the declared pool is the session's: shut down with the pipeline, a new one when it reopens
    with pytest.raises(RuntimeError, match="shutdown"):
        executor.submit(print)
    with pytest.raises(pdtnb.SessionClosedError, match=r"threaded\.executor"):
        _ = pipeline.tasks["threaded"].executor
    async with pipeline:
        again = pipeline.tasks["threaded"].executor
        assert again is not executor and again.submit(lambda: 7).result() == 7

    # retried on ValueError, then on decl_bodies:Flaky, then it succeeded; TypeError is not retried
    done = {job: read_record(value) for job, value in pipeline.tasks["flaky"].done.data.items()}
    assert done["a"].succeeded and done["a"].attempt == 3
    assert [h["error_type"] for h in done["a"].history] == ["ValueError", "decl_bodies.Flaky"]
    assert done["b"].failed and done["b"].attempt == 1 and done["b"].error_type == "TypeError"
    assert done["c"].succeeded and done["c"].attempt == 1
    assert bodies.calls == {("flaky", "a"): 3, ("flaky", "b"): 1, ("flaky", "c"): 1}
    assert outputs(pipeline, "flaky") == {"results": {"a": 3, "c": 1}}
    assert (summary.retried, summary.failed) == (2, 1)

    # every job of high (priority 5) ran before any of low (1), though low is declared first
    assert sorted(bodies.order) == [(t, j) for t in ("high", "low") for j in ("j1", "j2", "j3")]
    assert [task for task, _ in bodies.order] == ["high"] * 3 + ["low"] * 3

    # the executor task's bodies ran in its pool's threads
    threads = outputs(pipeline, "threaded")["threads"]
    assert {job: value["value"] for job, value in threads.items()} == {"a": 1, "b": 2, "c": 3}
    assert all(value["thread"].startswith("ThreadPoolExecutor-") for value in threads.values())


async def test_a_file_with_a_pool_and_in_memory_data_dumps_after_a_run_and_runs_again(
    bodies: Any, tmp_path: Path
) -> None:
    """A loaded file dumps what it declared (the pool, the input data), not what its run added to
    the in-memory repositories; the dump loads and runs to the same results."""
    pipeline = pdtnb.load(FILES / "runs.yaml")
    async with pipeline:
        await pipeline.run(timeout=20)
    first = outputs(pipeline, "threaded")["threads"]
    assert len(pipeline.tasks["threaded"].done.data) == 3  # the run filled the in-memory records
    document = yaml.safe_load(pdtnb.dump(pipeline, tmp_path / "again.yaml"))
    assert document["tasks"]["threaded"]["executor"] == {"kind": "threads", "max_workers": 2}
    assert document["repositories"]["numbers"]["data"] == {"a": 1, "b": 2, "c": 3}
    assert document["repositories"]["threaded-done"] == {"kind": "InProcessMetadataRepository"}
    bodies.reset()
    again = pdtnb.load(tmp_path / "again.yaml")
    async with again:
        await again.run(timeout=20)
    threads = outputs(again, "threaded")["threads"]
    assert {job: value["value"] for job, value in threads.items()} == {
        job: value["value"] for job, value in first.items()
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="local-processes needs Linux")
async def test_process_tasks_with_inline_and_file_templates_share_a_quota(tmp_path: Path) -> None:
    pipeline = pdtnb.load(FILES / "processes.yaml", environ={"DECL_WORK": str(tmp_path), "USER": "tester"})
    inline, from_file = pipeline.tasks["inline"], pipeline.tasks["from-file"]
    assert (inline.window, inline.timeout) == (timedelta(seconds=60), timedelta(seconds=30))
    assert inline.resource_manager is from_file.resource_manager
    assert from_file.stderr is from_file.stdout and "stderr" not in from_file.links  # stderr: STDOUT
    async with pipeline:
        summary = await pipeline.run(timeout=60)
    assert (summary.succeeded, summary.failed) == (6, 0)

    spans = []
    for job, number in {"a": 1, "b": 2, "c": 3}.items():
        first, times = (tmp_path / "inline-out" / f"{job}.txt").read_text().splitlines()
        assert first == f"{job} {number * 10} hello from tester $5"  # ${USER}, and $$ for $
        assert (tmp_path / "inline-err" / f"{job}.txt").read_text() == "to stderr\n"
        spans.append(tuple(map(float, times.split())))
        line, err, times = (tmp_path / "file-out" / f"{job}.txt").read_text().splitlines()
        assert (line, err) == (f"from-file {job} {number + 100}", "to stderr, into stdout")
        spans.append(tuple(map(float, times.split())))
        for done in ("inline-done", "file-done"):
            record = yaml.safe_load((tmp_path / done / f"{job}.yaml").read_text())
            assert (record["result"], record["exit_code"]) == ("success", 0)
    # one CPU in the quota, one CPU per job: no two jobs of either task ran at once
    spans.sort()
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), spans
    assert not list((tmp_path / "processes" / "decl").glob("*/*")), "every job's directory is removed"
