"""A cold `status` of a file pipeline reads no record it has seen before: the outcomes are kept in
a side file (``.pdtnb-meta/outcomes``) keyed by each record's identity (its inode), and only records
whose identity changed are read. It stays right when records are rewritten, added or removed by
another process or by hand, and when the side file itself is damaged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import pdtnb
from pdtnb.repository.metadata import YamlMetadataFileRepository

N = 40
BAD = {"j3", "j17"}


def build(data: Path) -> pdtnb.Pipeline:
    """A 2-task file pipeline, built anew as a fresh process would (new repositories, new indexes)."""
    inputs = pdtnb.FileRepository(data / "in")
    first_out = pdtnb.FileRepository(data / "a_out")
    first_done = pdtnb.YamlMetadataFileRepository(data / "a_done")
    second_done = pdtnb.YamlMetadataFileRepository(data / "b_done")

    @pdtnb.InProcessSyncTask("a", first_done)
    async def a(job, inputs, out):
        if job in BAD:
            raise ValueError(f"bad input {job}")
        async with await inputs.open(job, "rb") as fp, await out.open(job, "wb") as fo:
            await fo.write(await fp.read() + b"a")

    a.link("inputs", inputs, is_input=True)
    a.link("out", first_out, is_output=True)

    @pdtnb.InProcessSyncTask("b", second_done)
    async def b(job):
        pass

    b.plug(a)
    return pdtnb.Pipeline([a, b], pdtnb.Session())


@pytest.fixture
def data(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(N):
        (tmp_path / "in" / f"j{i}").write_bytes(b"x")
    return tmp_path


@pytest.fixture
def reads(monkeypatch):
    """How many done records were read (parsed from their files)."""
    count = {"n": 0}
    for name in ("_read", "_read_record"):  # info(), and the outcome index's bulk reads
        original = getattr(YamlMetadataFileRepository, name)

        def counting(self, job, original=original):
            count["n"] += 1
            return original(self, job)

        monkeypatch.setattr(YamlMetadataFileRepository, name, counting)
    return count


async def counts(data: Path) -> dict[str, tuple[int, int, int]]:
    async with build(data) as pipeline:
        status = await pdtnb.pipeline_status(pipeline)
    return {t.name: (t.done, t.failed, t.blocked) for t in status.tasks}


async def test_a_cold_status_after_a_run_reads_no_record(data, reads):
    async with build(data) as pipeline:
        summary = await pipeline.run()
    assert summary.failed == 2
    assert (data / "a_done" / ".pdtnb-meta" / "outcomes").is_file()
    reads["n"] = 0
    assert await counts(data) == {"a": (N - 2, 2, 0), "b": (N - 2, 0, 2)}
    assert reads["n"] == 0, "every outcome came from the side file"


async def test_records_changed_by_hand_or_by_another_process_are_seen(data, reads):
    async with build(data) as pipeline:
        await pipeline.run()
    await counts(data)  # the side file is current
    done = data / "a_done"
    # Another process turns a success into a failure (written as every writer does: a new file).
    record = yaml.safe_load((done / "j5.yaml").read_text())
    record.update(result="failure", error_type="RuntimeError", message="rewritten elsewhere")
    (done / "j5.tmp").write_text(yaml.safe_dump(record))
    os.replace(done / "j5.tmp", done / "j5.yaml")
    # A failure is fixed by hand (rm + a success record), one record removed, one added.
    (done / "j3.yaml").unlink()
    (done / "j3.yaml").write_text("result: success\n")
    (done / "j7.yaml").unlink()
    (done / "j99.yaml").write_text("result: failure\nmessage: from pydatatask\n")
    reads["n"] = 0
    got = await counts(data)
    assert got["a"] == (N - 2 + 1 - 1 - 1 + 1 - 1, 3, 0)  # done: j99 added, j7 gone; failed: j5, j17, j99
    assert reads["n"] == 3, "only the three changed records were read"


async def test_a_damaged_side_file_is_rebuilt(data, reads):
    async with build(data) as pipeline:
        await pipeline.run()
    side = data / "a_done" / ".pdtnb-meta" / "outcomes"
    good = side.read_bytes()
    head, jobs, idents = good.split(b"\n")
    damages = [
        b"{not json",
        b'{"format": 1, "jobs": {"j3": ["x"], "j4": 5}}',  # an earlier format
        b'{"format":2,"stamp":null,"count":0,"failed":[],"retrying":{},"corrupt":{}}\n[]\n[]',  # before fingerprints
        b'{"format": 99}',
        good[: len(good) // 2],  # cut short
        b"\n".join([head, jobs, b"[]"]),  # identities missing
        b"\n".join([head.replace(b'"j3"', b'"j999"'), jobs, idents]),  # a failure that is not a job
    ]
    for damage in damages:
        side.write_bytes(damage)
        assert (await counts(data))["a"] == (N - 2, 2, 0), damage
        assert side.read_bytes().startswith(b'{"format":3'), "rewritten whole"
