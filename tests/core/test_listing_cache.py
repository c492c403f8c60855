"""A directory's listing is kept with the directory's stamp (device, inode, mtime, ctime) and in a
side file for the next process; it must never show a listing the directory no longer has: files
added, removed or renamed by another process or by hand, a directory's time set back by hand,
symbolic links whose targets come and go, changes within the file system's clock tick."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import pdtnb
from pdtnb.repository import listing

TICK = 0.15  # past the 100 ms in which a stamp is not trusted


@pytest.fixture
def scans(monkeypatch):
    """The directories scanned (``os.scandir`` calls)."""
    seen: list[str] = []
    real = os.scandir

    def counting(path):
        seen.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    return seen


def fill(directory, n, start=0):
    directory.mkdir(exist_ok=True)
    for i in range(start, start + n):
        (directory / f"j{i}").write_bytes(b"x")


async def test_an_unchanged_directory_is_not_read_again_and_any_change_is_seen(tmp_path, scans):
    fill(tmp_path / "d", 5)
    await asyncio.sleep(TICK)
    repo = pdtnb.FileRepository(tmp_path / "d")
    assert await repo.job_ids() == {f"j{i}" for i in range(5)}
    assert await repo.job_ids() == {f"j{i}" for i in range(5)}
    assert len(scans) == 1, "the second listing is a stat"
    (tmp_path / "d" / "j9").write_bytes(b"by another process")
    assert "j9" in await repo.job_ids()
    os.rename(tmp_path / "d" / "j9", tmp_path / "d" / "j10")
    assert "j10" in await repo.job_ids() and "j9" not in await repo.job_ids()
    (tmp_path / "d" / "j0").unlink()
    assert "j0" not in await repo.job_ids()


async def test_a_change_within_the_clock_tick_is_never_missed(tmp_path):
    repo = pdtnb.FileRepository(tmp_path / "d")
    fill(tmp_path / "d", 1)
    for i in range(1, 40):  # changes faster than any clock tick, each listed at once
        (tmp_path / "d" / f"j{i}").write_bytes(b"x")
        assert f"j{i}" in await repo.job_ids()


async def test_setting_the_directory_time_back_by_hand_does_not_hide_a_change(tmp_path):
    fill(tmp_path / "d", 3)
    old = time.time() - 3600
    os.utime(tmp_path / "d", (old, old))
    await asyncio.sleep(TICK)
    repo = pdtnb.FileRepository(tmp_path / "d")
    assert len(await repo.job_ids()) == 3
    before = os.stat(tmp_path / "d")
    (tmp_path / "d" / "j7").write_bytes(b"x")
    os.utime(tmp_path / "d", ns=(before.st_atime_ns, before.st_mtime_ns))  # as `rsync -t` or `touch -d` would
    assert os.stat(tmp_path / "d").st_mtime_ns == before.st_mtime_ns
    assert "j7" in await repo.job_ids()


async def test_symbolic_links_are_listed_afresh_as_their_targets_come_and_go(tmp_path):
    target = tmp_path / "elsewhere"
    (tmp_path / "d").mkdir()
    os.symlink(target, tmp_path / "d" / "j1")
    await asyncio.sleep(TICK)
    repo = pdtnb.FileRepository(tmp_path / "d")
    assert await repo.job_ids() == set(), "a dangling link holds no file"
    target.write_bytes(b"now it does")
    assert await repo.job_ids() == {"j1"}


async def test_a_directory_repository_discarding_empty_jobs_follows_their_contents(tmp_path):
    (tmp_path / "d" / "j1").mkdir(parents=True)
    await asyncio.sleep(TICK)
    repo = pdtnb.DirectoryRepository(tmp_path / "d", discard_empty=True)
    assert await repo.job_ids() == set()
    (tmp_path / "d" / "j1" / "result").write_bytes(b"x")  # the parent directory's stamp stays
    assert await repo.job_ids() == {"j1"}


async def keep_a_large_listing(directory):
    """A directory of KEEP_AT_LEAST files listed by one repository, which keeps the listing (its
    ``.pdtnb-meta/`` made on the way, which changes the stamp: it lists again to keep a current
    one). Returns the side file."""
    fill(directory, listing.KEEP_AT_LEAST)
    await asyncio.sleep(TICK)
    first = pdtnb.FileRepository(directory)
    assert len(await first.job_ids()) == listing.KEEP_AT_LEAST
    await first.keep_listing()
    side = directory / ".pdtnb-meta" / "listing"
    assert side.is_file()
    return side


async def test_the_next_process_takes_a_large_listing_from_the_side_file(tmp_path, scans):
    n = listing.KEEP_AT_LEAST
    await keep_a_large_listing(tmp_path / "d")
    scans.clear()
    fresh = pdtnb.FileRepository(tmp_path / "d")  # a new process's repository
    assert len(await fresh.job_ids()) == n
    assert scans == [], "taken from the side file"

    (tmp_path / "d" / "extra").write_bytes(b"x")  # the side file no longer matches the stamp
    again = pdtnb.FileRepository(tmp_path / "d")
    ids = await again.job_ids()
    assert len(ids) == n + 1 and "extra" in ids
    assert len(scans) == 1


@pytest.mark.parametrize(
    "damage",
    [b"", b"{not json", b'{"format": 1, "stamp": [1, 2, 3, 4], "count": 1}\n["j1"]', None],
)
async def test_a_damaged_or_foreign_side_file_is_ignored(tmp_path, damage):
    side = await keep_a_large_listing(tmp_path / "d")
    if damage is None:  # the right stamp, a wrong count
        head = side.read_bytes().split(b"\n", 1)[0]
        damage = head + b"\n" + b'["j1"]'
    side.write_bytes(damage)
    assert len(await pdtnb.FileRepository(tmp_path / "d").job_ids()) == listing.KEEP_AT_LEAST


def test_whole_second_times_mean_a_coarse_clock_and_a_longer_wait():
    now = time.time_ns()
    fine = now - 500_000_000 + 123
    coarse = (now // 1_000_000_000 - 1) * 1_000_000_000
    assert not listing.racy((1, 2, fine, fine), now)
    assert listing.racy((1, 2, coarse, coarse), now), "a second-granular file system's tick is up to 2 s"
    assert not listing.racy((1, 2, coarse - 3_000_000_000, coarse - 3_000_000_000), now)
