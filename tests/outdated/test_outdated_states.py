"""Which done jobs are outdated, in memory and on files: records of older writers, failures,
live jobs, a redefined body, and rerun_outdated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import pdtnb
from pdtnb import failures


def stage(name: str, done, inp, factor: int, **options):
    """An in-process stage multiplying its input by ``factor`` (a closure value: part of its code)."""

    async def body(job, inp, out):
        await out.dump(job, await inp.info(job) * factor)

    task = pdtnb.InProcessSyncTask(name, done, func=body, **options)
    out = pdtnb.InProcessMetadataRepository()
    task.link("inp", inp, is_input=True)
    task.link("out", out, is_output=True)
    return task, out


def counts(status: pdtnb.PipelineStatus, name: str) -> tuple[int, int]:
    t = status.task(name)
    return t.done, t.outdated


@pytest.mark.parametrize("storage", ["memory", "files"])
async def test_a_redefined_body_makes_done_jobs_outdated_and_retry_runs_them_with_the_new_code(tmp_path: Path, storage):
    inp = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(6)})
    if storage == "memory":
        done = pdtnb.InProcessMetadataRepository()
    else:
        done = pdtnb.YamlMetadataFileRepository(tmp_path / "d")
    task, out = stage("t", done, inp, 2)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        await pipeline.run()
        assert counts(await pdtnb.pipeline_status(pipeline), "t") == (6, 0)

    # The notebook re-runs the task's cell with another factor: a new task on the same records.
    task2, _ = stage("t", done, inp, 3)
    task2.links["out"].repo = out  # the same output repository
    async with pdtnb.Pipeline([task2], pdtnb.Session()) as pipeline:
        status = await pdtnb.pipeline_status(pipeline)
        assert counts(status, "t") == (0, 6) and status.task("t").total == 6
        assert (status.task("t").job_states or {}) == {} and not status.is_trace
        trace = await pdtnb.pipeline_trace(pipeline, ["j1"])
        assert trace.task("t").job_states == {"j1": "outdated"}
        why = await failures.why_job(pipeline, "t", "j1")
        assert why.state == "outdated" and "what is bound to its body changed" in why.reasons[0], why.reasons

        result = await failures.retry_jobs(pipeline, "t", ["j1", "j2"], outdated=True)
        assert result.jobs == ["j1", "j2"]
        await pipeline.run()
        assert await out.info("j1") == 3 and await out.info("j3") == 6, "only the retried jobs ran again"
        assert counts(await pdtnb.pipeline_status(pipeline), "t") == (2, 4)


async def test_records_without_a_fingerprint_failures_and_live_jobs_are_never_outdated(tmp_path: Path):
    done = pdtnb.YamlMetadataFileRepository(tmp_path / "done")
    inp = pdtnb.InProcessMetadataRepository({"old": 1, "bad": 2, "new": 3})
    # A record of pydatatask 0.4.7 and a failure, written before this code existed.
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "old.yaml").write_text(yaml.safe_dump({"success": True, "start_time": None, "end_time": None}))
    task, _ = stage("t", done, inp, 2)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        await done.dump(
            "bad", {"result": "failure", "error_type": "ValueError", "message": "no", "fingerprint": "0123456789abcdef"}
        )
        await pipeline.run()
    task2, _ = stage("t", done, inp, 5)
    async with pdtnb.Pipeline([task2], pdtnb.Session()) as pipeline:
        status = (await pdtnb.pipeline_status(pipeline)).task("t")
        assert (status.done, status.outdated, status.failed) == (1, 1, 1), status
        trace = (await pdtnb.pipeline_trace(pipeline, ["old", "bad", "new"])).task("t").job_states
        assert trace == {"old": "done", "bad": "failed", "new": "outdated"}
        refused = pytest.raises(pdtnb.PdtnbError, match="old succeeded with the task's code as it is now")
        with refused:
            await failures.retry_jobs(pipeline, "t", ["old"], outdated=True)


async def test_rerun_outdated_runs_again_only_the_outdated_jobs_of_that_task():
    inp = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(4)})
    done_a, done_b = pdtnb.InProcessMetadataRepository(), pdtnb.InProcessMetadataRepository()
    a, out_a = stage("a", done_a, inp, 2, rerun_outdated=True)
    b, out_b = stage("b", done_b, inp, 2)
    async with pdtnb.Pipeline([a, b], pdtnb.Session()) as pipeline:
        await pipeline.run()
    a2, _ = stage("a", done_a, inp, 10, rerun_outdated=True)
    a2.links["out"].repo = out_a
    b2, _ = stage("b", done_b, inp, 10)
    b2.links["out"].repo = out_b
    async with pdtnb.Pipeline([a2, b2], pdtnb.Session()) as pipeline:
        summary = await pipeline.run()
        assert summary.succeeded == 4
        status = await pdtnb.pipeline_status(pipeline)
        assert counts(status, "a") == (4, 0) and counts(status, "b") == (0, 4)
        assert await out_a.info("j3") == 30 and await out_b.info("j3") == 6


async def test_a_pipeline_file_declares_rerun_outdated(tmp_path: Path):
    path = tmp_path / "p.yaml"
    (tmp_path / "outdated_bodies.py").write_text("async def body(job, inp):\n    pass\n")
    path.write_text(
        "version: 1\n"
        "import_paths: [.]\n"
        "repositories:\n"
        "  inp: {kind: InProcessMetadataRepository}\n"
        "  done: {kind: InProcessMetadataRepository}\n"
        "tasks:\n"
        "  t:\n"
        "    kind: in-process\n"
        "    func: outdated_bodies:body\n"
        "    done: done\n"
        "    rerun_outdated: true\n"
        "    links: {inp: {repo: inp, kind: input}}\n"
    )
    pipeline = pdtnb.load(path)
    assert pipeline.tasks["t"].rerun_outdated is True
