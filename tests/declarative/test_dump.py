"""pdtnb.dump: a Python-defined pipeline written as a pipeline file, loaded back to the same graph
and the same results; what a file cannot hold is refused, naming it."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import yaml

import pdtnb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "books"


def _shape(pipeline: pdtnb.Pipeline) -> dict:
    """Every task's links: the repository's class and place, and every flag."""

    def place(repo: object) -> str:
        return str(getattr(repo, "basedir", "")) or type(repo).__name__

    return {
        name: {
            link_name: (
                type(link.repo).__name__,
                place(link.repo),
                link.is_input,
                link.is_output,
                link.is_status,
                link.required_for_start,
                link.inhibits_start,
                link.required_for_output,
                link.inhibits_output,
                link.require_success,
            )
            for link_name, link in task.links.items()
        }
        for name, task in pipeline.tasks.items()
    }


def _import_example(monkeypatch: pytest.MonkeyPatch, work: Path) -> pdtnb.Pipeline:
    monkeypatch.setenv("PDTNB_EXAMPLE_DIR", str(work))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    spec = importlib.util.spec_from_file_location("books_pipeline_for_dump", EXAMPLE / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.pipeline


def _results(work: Path) -> dict[str, str]:
    return {
        str(p.relative_to(work)): p.read_text()
        for p in sorted(work.rglob("*"))
        if p.is_file() and ".pdtnb-meta" not in p.parts and p.parent.name not in ("results", "index-done")
    }


def test_the_python_example_dumps_to_a_file_that_loads_to_the_same_graph_and_results(tmp_path, monkeypatch):
    python_work, file_work = tmp_path / "python", tmp_path / "file"
    python_pipeline = _import_example(monkeypatch, python_work)
    target = tmp_path / "dumped" / "pipeline.yaml"
    target.parent.mkdir()
    text = pdtnb.dump(python_pipeline, target)
    assert target.read_text() == text
    document = yaml.safe_load(text)
    assert document["tasks"]["summary"]["func"] == "bodies:count_book"
    assert document["tasks"]["index"]["plug"] == "summary"
    loaded = pdtnb.load(target)
    assert _shape(loaded) == _shape(python_pipeline)

    async def run(pipeline: pdtnb.Pipeline) -> None:
        async with pipeline:
            summary = await pipeline.run()
            assert summary.ok, summary.describe()

    asyncio.run(run(python_pipeline))
    # The same file, with its output paths pointed elsewhere, gives the same results there.
    moved = text.replace(str(python_work), str(file_work))
    target.write_text(moved)
    asyncio.run(run(pdtnb.load(target)))
    python_results, file_results = _results(python_work), _results(file_work)
    assert python_results and python_results == file_results
    assert any("paragraphs" in v for k, v in file_results.items() if k.startswith("index/"))


def _one_task_pipeline(func: object, repo: pdtnb.Repository | None = None) -> pdtnb.Pipeline:
    done = pdtnb.YamlMetadataFileRepository("/tmp/pdtnb-dump-test-done")
    task = pdtnb.InProcessSyncTask("work", done, func=func)
    task.link("inputs", repo or pdtnb.FileRepository("/tmp/pdtnb-dump-test-in"), is_input=True)
    return pdtnb.Pipeline([task], pdtnb.Session())


def test_what_a_file_cannot_hold_is_refused_naming_it():
    def closure(job: str) -> None:
        pass

    with pytest.raises(pdtnb.NotDeclarableError, match=r"task work\.func: .*closure\b.*move it to module level"):
        pdtnb.dump(_one_task_pipeline(closure))
    with pytest.raises(pdtnb.NotDeclarableError, match=r"task work\.func: .*lambda"):
        pdtnb.dump(_one_task_pipeline(lambda job: None))
    with pytest.raises(pdtnb.NotDeclarableError, match=r"repository inputs: an in-memory repository holding data"):
        pdtnb.dump(_one_task_pipeline(sys.exit, pdtnb.InProcessMetadataRepository({"a": 1})))


def test_a_declared_resource_dumps_its_kind_and_never_a_secret(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "resources:\n"
        "  store: {kind: s3, endpoint_url: 'http://127.0.0.1:9', aws_access_key_id: AKIA,\n"
        '          aws_secret_access_key: "${SECRET}"}\n'
        "repositories:\n"
        "  out: {kind: S3BucketRepository, client: store, bucket: b, prefix: out/}\n"
        "  done: {kind: YamlMetadataFileRepository, filename: done}\n"
        "  inp: {kind: FileRepository, basedir: inp}\n"
        "tasks:\n"
        "  t:\n    kind: in-process\n    func: 'os:getcwd'\n    done: done\n"
        "    links: {inp: {repo: inp, kind: input}, out: {repo: out, kind: output}}\n"
    )
    pipeline = pdtnb.load(tmp_path / "p.yaml", environ={"SECRET": "hunter2-very-secret"})
    text = pdtnb.dump(pipeline, tmp_path / "again.yaml")
    assert "hunter2" not in text and "AKIA" not in text
    document = yaml.safe_load(text)
    store = document["resources"]["store"]
    assert store["kind"] == "s3" and store["endpoint_url"] == "http://127.0.0.1:9"
    assert store["aws_secret_access_key"] == "${SECRET}"  # the file's own variable, kept
    assert store["aws_access_key_id"] == "${STORE_AWS_ACCESS_KEY_ID}"  # a literal key: never written
    secrets = {"SECRET": "x", "STORE_AWS_ACCESS_KEY_ID": "y"}
    again = pdtnb.load(tmp_path / "again.yaml", environ=secrets)
    assert _shape(again) == _shape(pipeline)


def test_a_loaded_files_variables_stay_variables_in_its_dump(tmp_path):
    """A file written for several machines (${ENDPOINT}, ${DATA}/in, ${BUCKET}) dumps with its
    variables, not this machine's values, and the dump loads to the same pipeline elsewhere."""
    (tmp_path / "p.yaml").write_text(
        "resources:\n"
        "  store: {kind: s3, endpoint_url: '${ENDPOINT}', aws_access_key_id: '${KEY_ID}',\n"
        "          aws_secret_access_key: '${SECRET}'}\n"
        "  procs: {kind: local-processes, app: dump, local_path: '${DATA}/procs'}\n"
        "quotas:\n  cpu: {cpu: 1, mem: 1Gi}\n"
        "repositories:\n"
        "  pids: {kind: YamlMetadataFileRepository, filename: '${DATA}/pids'}\n"
        "  out: {kind: S3BucketRepository, client: store, bucket: '${BUCKET}', prefix: 'out-${STAGE:-dev}/'}\n"
        "  done: {kind: YamlMetadataFileRepository, filename: done}\n"
        "  inp: {kind: FileRepository, basedir: '${DATA}/in'}\n"
        "tasks:\n"
        "  t:\n    kind: process\n    template: 'cat {{ inp }} > /dev/null'\n    done: done\n"
        "    manager: procs\n    resource_manager: cpu\n    job_resources: {cpu: 1, mem: 16Mi}\n    pids: pids\n"
        "    environ: {MODE: '${MODE}', FIXED: plain}\n"
        "    links: {inp: {repo: inp, kind: input}, out: {repo: out, kind: output}}\n"
    )
    here = {
        "ENDPOINT": "http://127.0.0.1:9",
        "KEY_ID": "AKIAHERE",
        "SECRET": "hunter2",
        "BUCKET": "bucket-here",
        "DATA": str(tmp_path / "here"),
        "MODE": "fast",
    }
    pipeline = pdtnb.load(tmp_path / "p.yaml", environ=here)
    text = pdtnb.dump(pipeline, tmp_path / "again.yaml")
    for value in here.values():
        assert value not in text, value
    document = yaml.safe_load(text)
    assert document["resources"]["store"]["endpoint_url"] == "${ENDPOINT}"
    assert document["resources"]["procs"]["local_path"] == "${DATA}/procs"
    assert document["repositories"]["out"]["bucket"] == "${BUCKET}"
    assert document["repositories"]["out"]["prefix"] == "out-${STAGE:-dev}/"
    assert document["repositories"]["inp"]["basedir"] == "${DATA}/in"
    assert document["tasks"]["t"]["environ"] == {"MODE": "${MODE}", "FIXED": "plain"}
    there = {**here, "BUCKET": "bucket-there", "DATA": str(tmp_path / "there"), "STAGE": "prod"}
    again = pdtnb.load(tmp_path / "again.yaml", environ=there)
    out = again.tasks["t"].links["out"].repo
    assert (out.bucket, out.prefix) == ("bucket-there", "out-prod/")
    assert Path(again.tasks["t"].links["inp"].repo.basedir) == tmp_path / "there" / "in"
    assert again.tasks["t"].links.keys() == pipeline.tasks["t"].links.keys()


def test_plug_options_links_retry_quota_and_priorities_survive_the_round_trip(tmp_path):
    shutil.copy(EXAMPLE / "bodies.py", tmp_path / "bodies.py")
    (tmp_path / "p.yaml").write_text(
        "quotas:\n  cpu: {cpu: 2, mem: 1Gi}\n"
        "repositories:\n"
        "  books: {kind: FileRepository, basedir: books, extension: .txt}\n"
        "  names: {kind: YamlMetadataFileRepository, filename: names}\n"
        "  a-done: {kind: YamlMetadataFileRepository, filename: a-done}\n"
        "  b-done: {kind: YamlMetadataFileRepository, filename: b-done}\n"
        "  reports: {kind: FileRepository, basedir: reports}\n"
        "  seen: {kind: YamlMetadataFileRepository, filename: seen}\n"
        "tasks:\n"
        "  a:\n    kind: in-process\n    func: bodies:count_book\n    done: a-done\n    priority: 5\n"
        "    retry: {attempts: 4, delay: 0.5, on: [TimeoutError, 137]}\n"
        "    links:\n      books: {repo: books, kind: input}\n      reports: {repo: reports, kind: output}\n"
        "      seen: {repo: seen, kind: [status, inhibits]}\n"
        "  b:\n    kind: in-process\n    func: bodies:index_report\n    done: b-done\n"
        "    plug: {task: a, translator: names, meta: false}\n"
        "    links:\n      index: {repo: seen, kind: output, required_for_output: false}\n"
    )
    first = pdtnb.load(tmp_path / "p.yaml")
    text = pdtnb.dump(first, tmp_path / "again.yaml")
    document = yaml.safe_load(text)
    assert document["tasks"]["a"]["priority"] == 5
    assert document["tasks"]["a"]["retry"]["on"] == ["TimeoutError", 137]
    assert document["tasks"]["b"]["plug"] == {"task": "a", "meta": False, "translator": "names"}
    assert document["quotas"] == {"quota": {"cpu": 2, "mem": 1073741824}}
    again = pdtnb.load(tmp_path / "again.yaml")
    assert _shape(again) == _shape(first)
    assert again.priority("a", "x") == 5 and again.priority("b", "x") == 0
    assert again.tasks["a"].retry.attempts == 4 and TimeoutError in again.tasks["a"].retry.on
