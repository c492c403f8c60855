"""Repository paths given relative to the pipeline's working directory still name the files from
inside a job, whose working directory is a fresh empty directory: file repositories keep an
absolute ``basedir`` (``os.path.abspath`` at construction, symbolic links kept)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from pdtnb import (
    DirectoryRepository,
    FileRepository,
    LocalLinuxManager,
    Pipeline,
    ProcessTask,
    ResourceManager,
    Resources,
    Session,
    YamlMetadataFileRepository,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
RIVER = "the river runs to the sea\n"  # 6 words


def test_file_repositories_keep_an_absolute_basedir_with_symlinks_kept(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    here = Path(os.getcwd())
    for cls in (FileRepository, DirectoryRepository, YamlMetadataFileRepository):
        repo = cls("link/books")
        assert repo.basedir == here / "link" / "books"  # absolute, and not resolved to real/books
        assert str(here / "link" / "books") in repr(repo)
    repo = FileRepository("./data/../data/books", ".txt")
    assert repo.basedir == here / "data" / "books"
    assert repo.fullpath("a") == here / "data" / "books" / "a.txt"
    # a later chdir does not move the repository
    monkeypatch.chdir(tmp_path / "real")
    assert repo.fullpath("a") == here / "data" / "books" / "a.txt"
    # assigning basedir makes it absolute too
    repo.basedir = "other"
    assert repo.basedir == Path(os.getcwd()) / "other"
    # an absolute path or ~ are unchanged apart from expansion
    assert FileRepository(tmp_path / "x").basedir == tmp_path / "x"
    assert FileRepository("~/x").basedir == Path(os.path.expanduser("~/x"))


async def test_yaml_records_at_a_relative_path_survive_a_chdir(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    repo = YamlMetadataFileRepository("records")
    await repo.dump("a", {"result": "success"})
    monkeypatch.chdir("/")
    assert await repo.info("a") == {"result": "success"}
    assert [j async for j in repo] == ["a"]
    assert (tmp_path / "records" / "a.yaml").exists()


async def test_process_task_gets_absolute_paths_of_relative_repositories(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "books").mkdir(parents=True)
    (tmp_path / "data" / "books" / "river.txt").write_text(RIVER)
    session = Session()

    @session.resource
    async def localhost():
        yield LocalLinuxManager("app", tmp_path / "procs")

    quota = ResourceManager(Resources.parse(cpu=2, mem="1Gi"))
    books = FileRepository("data/books", ".txt")
    counts = FileRepository("data/counts")
    done = YamlMetadataFileRepository("data/wc-done")
    pids = YamlMetadataFileRepository("data/wc-pids")
    task = ProcessTask(
        "wc",
        localhost,
        quota,
        Resources.parse(cpu=1, mem="10Mi"),
        pids,
        "wc -w < {{ books | shell_quote }}\n",
        done=done,
        stdout=counts,
    )
    task.link("books", books, is_input=True)
    pipeline = Pipeline([task], session, [quota])
    async with pipeline:
        await pipeline.run(timeout=60)
    record = await done.info("river")
    assert record["result"] == "success", record
    assert (tmp_path / "data" / "counts" / "river").read_text().strip() == "6"
    assert await books.info("river") == str(Path(os.getcwd()) / "data" / "books" / "river.txt")


def _first_python_block(markdown: str) -> str:
    match = re.search(r"```python\n(.*?)```", markdown, re.S)
    assert match is not None
    return match.group(1)


async def test_processes_md_main_example_runs_verbatim(tmp_path: Path, monkeypatch: Any) -> None:
    """docs/processes.md's first example, as written (its jobs run under /tmp/pydatatask/myapp),
    from a directory holding data/books/river.txt: every job succeeds."""
    if not os.access("/tmp", os.W_OK):
        pytest.skip("the example's LocalLinuxManager works under /tmp/pydatatask")
    code = _first_python_block((DOCS / "processes.md").read_text())
    assert 'FileRepository("data/books", ".txt")' in code and "{{ books | shell_quote }}" in code
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "books").mkdir(parents=True)
    (tmp_path / "data" / "books" / "river.txt").write_text(RIVER)
    (tmp_path / "data" / "books" / "lake.txt").write_text("still water\n")
    namespace: dict[str, Any] = {"__name__": "processes_md_example"}
    exec(compile(code, str(DOCS / "processes.md"), "exec"), namespace)
    pipeline = namespace["pipeline"]
    async with pipeline:
        await pipeline.run(timeout=60)
    done, counts = namespace["done"], namespace["counts"]
    for job, words in (("river", 6), ("lake", 2)):
        record = await done.info(job)
        assert record["result"] == "success" and record["exit_code"] == 0, record
        async with await counts.open(job) as fp:
            assert (await fp.read()).strip() == str(words)
