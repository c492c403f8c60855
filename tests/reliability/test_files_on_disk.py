"""What a file repository leaves on disk: interrupted writes cleaned when a pipeline next acts, and
writes that survive a power loss when ``durable=True``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

import pdtnb
from pdtnb.repository.filesystem import TMP_PREFIX


def leave_temporaries(repo_dir):
    """A writer that died (a process that has exited), one still alive, and an ancient one."""
    dead = subprocess.run(  # a process that has exited, for its pid
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (repo_dir / f"{TMP_PREFIX}{int(dead.stdout)}-aaaa").write_bytes(b"half a value")
    (repo_dir / f"{TMP_PREFIX}{os.getpid()}-bbbb").write_bytes(b"being written now")
    ancient = repo_dir / f"{TMP_PREFIX}{os.getpid()}-cccc"
    ancient.write_bytes(b"left long ago by a pid now reused")
    old = time.time() - 7200
    os.utime(ancient, (old, old))


async def test_temporary_files_of_dead_writers_are_removed_when_a_pipeline_first_acts(tmp_path):
    repo_dir = tmp_path / "out"
    repo_dir.mkdir()
    (repo_dir / "j1").write_bytes(b"a value")
    leave_temporaries(repo_dir)
    everything = sorted(p.name for p in repo_dir.iterdir())
    survivors = sorted(["j1", f"{TMP_PREFIX}{os.getpid()}-bbbb"])

    repo = pdtnb.FileRepository(repo_dir)
    done = pdtnb.YamlMetadataFileRepository(tmp_path / "done")

    @pdtnb.InProcessSyncTask("t", done)
    async def t(job, out):
        pass

    t.link("out", repo, is_input=True)
    async with pdtnb.Pipeline([t], pdtnb.Session()) as pipeline:
        await pdtnb.pipeline_status(pipeline)
        assert sorted(p.name for p in repo_dir.iterdir()) == everything, "a status deletes nothing"
        await pipeline.run()
        assert sorted(p.name for p in repo_dir.iterdir()) == survivors
    assert await repo.job_ids() == {"j1"}


async def test_a_sweep_after_a_listing_that_saw_no_temporary_file_scans_nothing(tmp_path, monkeypatch):
    repo_dir = tmp_path / "out"
    repo_dir.mkdir()
    (repo_dir / "j1").write_bytes(b"a value")
    await asyncio.sleep(0.15)  # the directory's stamp past the file system's clock tick
    repo = pdtnb.FileRepository(repo_dir)
    assert await repo.job_ids() == {"j1"}
    scans = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: scans.append(path) or real_scandir(path))
    await repo.sweep()
    assert scans == []
    # A temporary file appears (the directory's stamp changes): the next sweep looks.
    leave_temporaries(repo_dir)
    await repo.sweep()
    assert len(scans) == 1
    assert sorted(p.name for p in repo_dir.iterdir()) == sorted(["j1", f"{TMP_PREFIX}{os.getpid()}-bbbb"])


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
