"""What a file repository leaves on disk: interrupted writes cleaned when it is next opened, and
writes that survive a power loss when ``durable=True``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import pdtnb
from pdtnb.repository.filesystem import TMP_PREFIX


async def test_temporary_files_of_dead_writers_are_removed_when_the_repository_opens(tmp_path):
    repo_dir = tmp_path / "out"
    repo_dir.mkdir()
    # A writer that died (a process that has exited), one still alive, and an ancient one.
    dead = subprocess.run(  # noqa: ASYNC221 - a process that has exited, for its pid
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    (repo_dir / f"{TMP_PREFIX}{dead_pid}-aaaa").write_bytes(b"half a value")
    (repo_dir / f"{TMP_PREFIX}{os.getpid()}-bbbb").write_bytes(b"being written now")
    ancient = repo_dir / f"{TMP_PREFIX}{os.getpid()}-cccc"
    ancient.write_bytes(b"left long ago by a pid now reused")
    old = time.time() - 7200
    os.utime(ancient, (old, old))
    (repo_dir / "j1").write_bytes(b"a value")

    repo = pdtnb.FileRepository(repo_dir)
    await repo.validate()  # what opening a pipeline does
    assert sorted(p.name for p in repo_dir.iterdir()) == sorted(["j1", f"{TMP_PREFIX}{os.getpid()}-bbbb"])
    assert await repo.job_ids() == {"j1"}


@pytest.mark.parametrize("kind", ["blob", "yaml"])
async def test_durable_writes_fsync_the_file_and_its_directory(kind, tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd):
        synced.append(fd)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    if kind == "blob":
        repo = pdtnb.FileRepository(tmp_path / "d", durable=True)
        async with await repo.open("j", "w") as fp:
            await fp.write("value")
    else:
        repo = pdtnb.YamlMetadataFileRepository(tmp_path / "d", durable=True)
        await repo.dump("j", {"a": 1})
    assert len(synced) == 2, "the file, then the directory holding the rename"
    assert not any(p.name.startswith(TMP_PREFIX) for p in (tmp_path / "d").iterdir())

    synced.clear()
    plain = pdtnb.YamlMetadataFileRepository(tmp_path / "e")
    await plain.dump("j", {"a": 1})
    assert synced == [], "not durable by default"


def test_error_messages_shorten_long_job_ids():
    job = "x" * 10_000
    with pytest.raises(pdtnb.InvalidJobIdError) as info:
        pdtnb.InProcessMetadataRepository().check_job_id(job)
    message = str(info.value)
    assert len(message) < 400 and "10000 characters" in message
