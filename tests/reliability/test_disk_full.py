"""Disk full and I/O errors: ``run`` stops launching with one error line naming the path and the
errno, exits non-zero, records no job as failed and loses nothing already recorded; once there is
room again, the next ``run`` finishes every job.

The command-line tests mount a 256 KiB tmpfs (they need root), put one stage's output, done
records or pids records on it, fill it, and run the pipeline script as a real program. The
in-process tests at the end need nothing special.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

import pdtnb
from pdtnb.errors import StorageFaultError, storage_fault
from pdtnb.repository.filesystem import TMP_PREFIX

# ---- a small tmpfs -------------------------------------------------------------------------------


def _mount(directory: Path, options: str = "size=256k") -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], check=True, capture_output=True, timeout=30
    )


def remount(directory: Path, mode: str) -> None:
    """Make the tmpfs at ``directory`` read-only (``ro``) or writable again (``rw``)."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True, capture_output=True, timeout=30)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted at ``tmp_path / "disk"``, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    try:
        _mount(mountpoint)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


def fill(disk: Path) -> Path:
    """Write a file on ``disk`` until it is full (ENOSPC); returns the file, to delete for room."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    block = b"\0" * 4096
    try:
        while True:
            os.write(fd, block)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


def records_in(directory: Path) -> dict[str, bytes]:
    """The job records in a YamlMetadataFileRepository's directory (not its dot files: a lease)."""
    return {p.name: p.read_bytes() for p in directory.iterdir() if not p.name.startswith(".")}


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{TMP_PREFIX}*")]


# ---- the pipeline script ----------------------------------------------------------------------

SCRIPT = textwrap.dedent(
    '''
    """Stage ``first`` (in-process, executor or process: KIND) copies each input and 1000 bytes
    more into ``stdout``; stage ``second`` (in-process) copies its first 100 bytes into ``final``.
    The repository named WHERE (output, done or pids: first's) lives on the tmpfs DISK."""

    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import pdtnb

    KIND = {kind!r}
    WHERE = {where!r}
    DATA = Path({data!r})
    DISK = Path({disk!r})


    def place(name):
        return (DISK if name == WHERE else DATA) / name


    inp = pdtnb.FileRepository(DATA / "inp")
    out = pdtnb.FileRepository(place("output"))
    done = pdtnb.YamlMetadataFileRepository(place("done"))
    final = pdtnb.FileRepository(DATA / "final")
    done2 = pdtnb.YamlMetadataFileRepository(DATA / "done2")
    session = pdtnb.Session()
    resources = []

    if KIND == "process":
        @session.resource
        async def procman():
            yield pdtnb.LocalLinuxManager("app", DATA / "procs")

        quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=4))
        resources.append(quota)
        first = pdtnb.ProcessTask(
            "first", procman, quota, pdtnb.Resources.parse(cpu=1),
            pdtnb.YamlMetadataFileRepository(place("pids")),
            "echo {{{{ job }}}} >> " + str(DATA / "calls.log") + " && cat {{{{ inp }}}} && printf '%01000d' 0\\n",
            done=done, stdout=out,
        )
        first.poll_interval = 0.05
    else:
        async def body(job, inp, stdout):
            with open(DATA / "calls.log", "a") as fp:
                fp.write(job + "\\n")
            async with await inp.open(job, "rb") as fp:
                data = await fp.read()
            async with await stdout.open(job, "wb") as fp:
                await fp.write(data + b"0" * 1000)

        if KIND == "inprocess":
            first = pdtnb.InProcessSyncTask("first", done, func=body)
        else:
            first = pdtnb.ExecutorTask("first", ThreadPoolExecutor(4), done, func=body)
        first.link("stdout", out, is_output=True)
    first.link("inp", inp, is_input=True)


    @pdtnb.InProcessSyncTask("second", done2)
    async def second(job, stdout, final):
        async with await stdout.open(job, "rb") as fp:
            data = await fp.read()
        async with await final.open(job, "wb") as fp:
            await fp.write(data[:100])


    second.plug(first)
    second.link("final", final, is_output=True)

    # second listed first: the pipeline's lease lives beside the first task's done records, here on
    # the data disk, so that what fills up is the jobs' storage alone.
    pipeline = pdtnb.Pipeline([second, first], session, resources)

    if __name__ == "__main__":
        pdtnb.main(pipeline)
    '''
)


class Rig:
    def __init__(self, tmp_path: Path, disk: Path, kind: str, where: str):
        self.data = tmp_path / "data"
        self.disk = disk
        self.script = tmp_path / "pipeline.py"
        self.script.write_text(SCRIPT.format(kind=kind, where=where, data=str(self.data), disk=str(disk)))
        self.where = where
        (self.data / "inp").mkdir(parents=True)

    def seed(self, jobs: range) -> list[str]:
        names = [f"j{i}" for i in jobs]
        for job in names:
            (self.data / "inp" / job).write_text(f"input of {job}\n")
        return names

    def run(self, *args: str) -> tuple[subprocess.CompletedProcess, float]:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(self.script), *args],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            cwd=self.script.parent,
        )
        return result, time.monotonic() - started

    def place(self, name: str) -> Path:
        return (self.disk if name == self.where else self.data) / name

    def repos(self) -> list[Path]:
        return [self.place("output"), self.place("done"), self.place("pids"), self.data / "final", self.data / "done2"]

    def snapshot(self, jobs: list[str]) -> dict[str, bytes]:
        """Every file the jobs have in the pipeline's repositories, by path."""
        out = {}
        for repo in self.repos():
            for job in jobs:
                for path in (repo / job, repo / f"{job}.yaml"):
                    if path.is_file():
                        out[str(path)] = path.read_bytes()
        return out

    def records(self, name: str) -> dict[str, dict[str, Any]]:
        directory = self.place(name) if name == "done" else self.data / name
        return (
            {
                p.name[: -len(".yaml")]: yaml.safe_load(p.read_bytes())
                for p in directory.glob("*.yaml")
                if not p.name.startswith(TMP_PREFIX)
            }
            if directory.is_dir()
            else {}
        )

    def calls(self) -> list[str]:
        path = self.data / "calls.log"
        return path.read_text().split() if path.exists() else []


CASES = [
    ("inprocess", "output"),
    ("inprocess", "done"),
    ("executor", "output"),
    ("executor", "done"),
    ("process", "output"),
    ("process", "done"),
    ("process", "pids"),
]


@pytest.mark.parametrize(("kind", "where"), CASES, ids=[f"{k}-{w}" for k, w in CASES])
def test_a_full_disk_stops_the_run_with_one_line_and_loses_nothing(tmp_path: Path, disk: Path, kind: str, where: str):
    rig = Rig(tmp_path, disk, kind, where)
    before = rig.seed(range(4))
    result, _ = rig.run("run")
    assert result.returncode == 0, result.stderr
    recorded = rig.snapshot(before)
    assert len(recorded) == 4 * 4, "output, done, final and done2 of every job"  # pids are gone once reaped

    filler = fill(disk)
    later = rig.seed(range(4, 24))  # all 24 jobs' files take about a third of the disk once it has room
    calls_before = len(rig.calls())
    result, elapsed = rig.run("run")

    assert result.returncode != 0, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert "(ENOSPC)" in line and "nothing was lost" in line, line
    path = Path(line.split(" writing ", 1)[1].split(";", 1)[0])
    assert path.is_relative_to(disk / where), line
    job = line.split("nothing was lost: first ", 1)[1].split()[0]
    assert job in later and not (rig.place("done") / f"{job}.yaml").exists(), "the job is not recorded"
    if kind == "process" and where != "pids":
        assert (rig.place("pids") / f"{job}.yaml").exists(), "the ended process job stays in pids, to be reaped"
        assert "stays live: the next run reaps it" in line
    else:
        assert line.endswith("stays ready") or "stays ready (" in line, line
    assert len(result.stderr) < 1000 and len(result.stderr.splitlines()) <= 2, f"a flood:\n{result.stderr}"
    assert elapsed < 30, f"took {elapsed:.1f} s"
    if kind == "inprocess":
        # At most one launch phase's worth of bodies (launch_concurrency) started, not every ready job.
        assert 1 <= len(rig.calls()) - calls_before <= 16

    assert rig.snapshot(before) == recorded, "what was recorded before the disk filled is intact"
    for name in ("done", "done2"):
        for job, record in rig.records(name).items():
            assert record["result"] == "success", f"{name} {job} recorded as {record['result']}: {record}"

    # An executor job's thread cannot be stopped, so the run may end past it mid-write: its
    # temporary file stays, owned by a process that is gone. Listings ignore it, a status deletes
    # nothing, and the next run sweeps it.
    left = temporaries(disk) + temporaries(rig.data)
    assert all(not psutil.pid_exists(int(p.name[len(TMP_PREFIX) :].split("-")[0])) for p in left), left
    if kind != "executor":
        assert left == [], "only an abandoned thread leaves a temporary"
    status, _ = rig.run("status")
    assert status.returncode == 0, status.stderr

    filler.unlink()
    result, _ = rig.run("run")
    assert result.returncode == 0, result.stderr
    assert temporaries(disk) == [] and temporaries(rig.data) == [], "the run swept the interrupted writes"
    for name in ("done", "done2"):
        records = rig.records(name)
        assert sorted(records) == sorted(before + later), name
        assert all(r["result"] == "success" for r in records.values())
    assert sorted(p.name for p in (rig.data / "final").iterdir()) == sorted(before + later)
    assert rig.snapshot(before) == recorded, "jobs done before were not run again"


async def test_a_read_only_file_system_stops_the_run(tmp_path: Path, disk: Path):
    """The output's file system turns read-only under an open pipeline (what ext4's
    ``errors=remount-ro`` does after an I/O error): EROFS stops the run as a full disk does."""
    inp = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2})
    out = pdtnb.FileRepository(disk / "out")
    done = pdtnb.YamlMetadataFileRepository(tmp_path / "done")

    @pdtnb.InProcessSyncTask("t", done)
    async def task(job, inp, out):
        async with await out.open(job, "w") as fp:
            await fp.write(f"value of {job}")

    task.link("inp", inp, is_input=True)
    task.link("out", out, is_output=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=10)
        recorded = records_in(disk / "out"), records_in(tmp_path / "done")
        assert sorted(recorded[0]) == ["a", "b"] and sorted(recorded[1]) == ["a.yaml", "b.yaml"]
        await inp.dump("c", 3)
        remount(disk, "ro")
        try:
            with pytest.raises(StorageFaultError) as info:
                await pipeline.run(timeout=10)
            fault = info.value
            assert fault.errno == errno.EROFS and fault.filename == str(disk / "out" / "c")
            assert str(fault) == (
                f"read-only file system (EROFS) writing {disk / 'out' / 'c'}; nothing was lost: t c stays ready"
            )
            assert (records_in(disk / "out"), records_in(tmp_path / "done")) == recorded
            assert await pipeline.gather_ready_jobs(task) == {"c"}
        finally:
            remount(disk, "rw")
        summary = await pipeline.run(timeout=10)
        assert summary.succeeded == 1 and summary.ok
    assert sorted(records_in(tmp_path / "done")) == ["a.yaml", "b.yaml", "c.yaml"]
    assert temporaries(disk) == []


# ---- in process, without a real disk -------------------------------------------------------------


def test_storage_fault_classifies_the_errno_and_names_the_path():
    fault = storage_fault(OSError(errno.ENOSPC, "No space left on device", "/mnt/x/done/j3.yaml"))
    assert isinstance(fault, StorageFaultError) and isinstance(fault, OSError) and isinstance(fault, pdtnb.PdtnbError)
    assert (fault.errno, fault.filename) == (errno.ENOSPC, "/mnt/x/done/j3.yaml")
    assert str(fault) == "no space left on device (ENOSPC) writing /mnt/x/done/j3.yaml"
    for code, name in ((errno.EDQUOT, "EDQUOT"), (errno.EROFS, "EROFS"), (errno.EIO, "EIO")):
        assert f"({name})" in str(storage_fault(OSError(code, os.strerror(code), "/p")))
    assert storage_fault(OSError(errno.ENOENT, "No such file", "/p")) is None
    assert storage_fault(PermissionError(errno.EACCES, "denied", "/p")) is None
    assert storage_fault(RuntimeError("no errno")) is None
    assert storage_fault(OSError("disk full (simulated)")) is None, "an errno, not a message, says it"

    # A body's exception may wrap it (raise ... from e, or raised while handling it).
    try:
        try:
            raise OSError(errno.EIO, "Input/output error", "/data/x")
        except OSError as e:
            raise RuntimeError("could not save") from e
    except RuntimeError as wrapped:
        fault = storage_fault(wrapped, note="nothing was lost: t j stays ready")
    assert fault is not None and fault.errno == errno.EIO
    assert str(fault) == "input/output error (EIO) writing /data/x; nothing was lost: t j stays ready"
    assert isinstance(fault.__cause__, OSError)
    assert "(the error names no file)" in str(storage_fault(OSError(errno.ENOSPC, "No space left on device")))


async def test_an_in_process_body_meeting_a_storage_fault_stops_the_launches():
    inp = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2, "c": 3})
    done = pdtnb.InProcessMetadataRepository()
    calls: list[str] = []
    faulty = {"b"}

    @pdtnb.InProcessSyncTask("t", done)
    async def task(job, inp):
        calls.append(job)
        if job in faulty:
            try:
                raise OSError(errno.EIO, "Input/output error", "/data/b.out")
            except OSError as e:
                raise ValueError("could not write the output") from e

    task.link("inp", inp, is_input=True)
    # One launch at a time, in job order (a priority sorts each group's jobs).
    pipeline = pdtnb.Pipeline([task], pdtnb.Session(), priority=lambda t, j: 0, launch_concurrency=1)
    async with pipeline:
        with pytest.raises(
            StorageFaultError,
            match=r"^input/output error \(EIO\) writing /data/b.out; "
            r"nothing was lost: t b stays ready$",
        ):
            await pipeline.run(timeout=10)
        assert calls == ["a", "b"], "no launch after the fault"
        assert set(done.data) == {"a"} and done.data["a"]["result"] == "success"
        assert await pipeline.gather_ready_jobs(task) == {"b", "c"}
        assert not pipeline._backoff, "no back-off: the job did not fail"
        calls.clear()
        faulty.clear()  # the storage is back
        summary = await pipeline.run(timeout=10)
    assert summary.ok and calls == ["b", "c"] and set(done.data) == {"a", "b", "c"}


class FullDone(pdtnb.InProcessMetadataRepository):
    """A done repository on a full disk: every write raises ENOSPC naming the record's path."""

    full = True

    async def dump(self, job: str, data: Any) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device", f"/full/done/{job}.yaml")
        await super().dump(job, data)


async def test_a_done_record_that_cannot_be_written_is_not_a_failure():
    inp = pdtnb.InProcessMetadataRepository({"a": 1})
    done = FullDone()

    @pdtnb.InProcessSyncTask("t", done)
    async def task(job, inp):
        pass

    task.link("inp", inp, is_input=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        with pytest.raises(StorageFaultError, match=r"\(ENOSPC\) writing /full/done/a.yaml; nothing was lost"):
            await pipeline.run(timeout=10)
        assert done.data == {} and await pipeline.gather_ready_jobs(task) == {"a"}
        done.full = False
        assert (await pipeline.run(timeout=10)).ok
    assert done.data["a"]["result"] == "success"


async def test_a_launch_failure_whose_record_meets_a_full_disk_stops_the_run(caplog):
    class Broken(pdtnb.Task):
        launches = 0

        async def update(self) -> bool:
            return False

        async def launch(self, job: str, options: Any = None) -> None:
            Broken.launches += 1
            raise ValueError("bad job")

    task = Broken("t")
    task.link("inp", pdtnb.InProcessMetadataRepository({"a": 1, "b": 2}), is_input=True)
    task.link("done", FullDone(), is_status=True, inhibits_start=True)
    async with pdtnb.Pipeline([task], pdtnb.Session(), launch_concurrency=1) as pipeline:
        with pytest.raises(StorageFaultError) as info:
            await pipeline.run(timeout=10)
    assert Broken.launches == 1
    assert "failed to launch (ValueError) and stays ready: its record could not be written" in str(info.value)
    assert not [r for r in caplog.records if "could not record" in r.getMessage()]


async def test_an_executor_job_meeting_a_storage_fault_is_raised_by_the_next_update():
    inp = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2})
    done = pdtnb.InProcessMetadataRepository()
    pool = ThreadPoolExecutor(2)

    def body(job):
        if job == "b":
            time.sleep(0.2)  # a is reaped first
            raise OSError(errno.EDQUOT, "Disk quota exceeded", "/home/q/b.out")

    task = pdtnb.ExecutorTask("t", pool, done, func=body)
    task.link("inp", inp, is_input=True)
    try:
        async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
            with pytest.raises(StorageFaultError, match=r"disk quota exceeded \(EDQUOT\) writing /home/q/b.out"):
                await pipeline.run(timeout=10)
            assert "b" not in done.data, "not recorded as failed"
            assert done.data["a"]["result"] == "success", "the other job finished is recorded"
            assert await pipeline.gather_ready_jobs(task) == {"b"}
    finally:
        pool.shutdown(wait=True)


async def test_other_os_errors_are_still_the_jobs_failures():
    inp = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2})
    done = pdtnb.InProcessMetadataRepository()

    @pdtnb.InProcessSyncTask("t", done)
    async def task(job, inp):
        if job == "a":
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/missing")
        raise PermissionError(errno.EACCES, "Permission denied", "/data/locked")

    task.link("inp", inp, is_input=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        summary = await pipeline.run(timeout=10)
    assert summary.failed == 2
    assert {job: record["error_type"] for job, record in done.data.items()} == {
        "a": "FileNotFoundError",
        "b": "PermissionError",
    }
