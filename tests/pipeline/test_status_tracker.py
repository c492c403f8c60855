"""StatusTracker (the live table's incremental status) must always agree with pipeline_status."""

from __future__ import annotations

import random

import pytest

import pdtnb
import pdtnb.admin


def build(kind: str, tmp_path, n: int = 40):
    def meta(name: str) -> pdtnb.MetadataRepository:
        if kind == "files":
            return pdtnb.YamlMetadataFileRepository(tmp_path / name)
        return pdtnb.InProcessMetadataRepository()

    inp = meta("inp")
    out1, done1, out2, done2 = meta("out1"), meta("done1"), meta("out2"), meta("done2")
    fail = set()

    @pdtnb.InProcessSyncTask("first", done1)
    async def first(job, inp, out1):
        if job in fail:
            raise RuntimeError(f"job {job} fails")
        await out1.dump(job, await inp.info(job))

    first.link("inp", inp, is_input=True)
    first.link("out1", out1, is_output=True)

    @pdtnb.InProcessSyncTask("second", done2)
    async def second(job, out1, out2):
        await out2.dump(job, await out1.info(job))

    second.plug(first)
    second.link("out2", out2, is_output=True)
    return pdtnb.Pipeline([first, second], pdtnb.Session(), []), inp, done1, fail


def counts(status: pdtnb.PipelineStatus) -> list[tuple]:
    return [
        (t.name, t.ready, t.live, t.done, t.failed, [(link.name, link.count) for link in t.links]) for t in status.tasks
    ]


@pytest.mark.parametrize("kind", ["memory", "files"])
async def test_tracker_agrees_with_full_status_through_random_changes(kind, tmp_path):
    pipeline, inp, done1, fail = build(kind, tmp_path)
    rng = random.Random(7)
    async with pipeline:
        tracker = pdtnb.StatusTracker(pipeline, full_every=0 if kind == "memory" else 1000)
        for step in range(60):
            action = rng.choice(["inject", "round", "fail", "retry", "refresh"])
            job = f"j{rng.randrange(40)}"
            if action == "inject":
                await inp.dump(job, step)
            elif action == "round":
                await pipeline.update()
            elif action == "fail":
                fail.add(job)
            elif action == "retry" and await done1.contains(job):
                # The stale-verdict trap: the done record is removed and written again (now
                # succeeding) between two refreshes, so the count does not change.
                fail.discard(job)
                await pdtnb.admin.delete_jobs(pipeline, "first.done", [job])
                await pipeline.update()
            if kind == "files" and action != "refresh":
                continue  # tokenless repositories are checked at refresh points only
            assert counts(await tracker.refresh()) == counts(await pdtnb.pipeline_status(pipeline)), step


async def test_idle_refresh_of_in_memory_pipeline_reads_nothing(tmp_path):
    pipeline, inp, done1, fail = build("memory", tmp_path)
    for i in range(20):
        await inp.dump(f"j{i}", i)
    fail.add("j3")
    async with pipeline:
        await pipeline.run()
        tracker = pdtnb.StatusTracker(pipeline)
        first = await tracker.refresh()
        assert first.task("first").failed == 1

        calls = 0
        original = done1.info

        async def counting(job):
            nonlocal calls
            calls += 1
            return await original(job)

        done1.info = counting
        again = await tracker.refresh()
        assert counts(again) == counts(first)
        assert calls == 0, "an unchanged done repository must not be read again"

        fail.discard("j3")
        await pdtnb.admin.delete_jobs(pipeline, "first.done", ["j3"])
        await pipeline.run()
        after = await tracker.refresh()
        assert after.task("first").failed == 0
        assert calls <= 1, "only the job that changed is re-read (none: this process wrote it)"


async def test_an_idle_file_pipeline_refreshes_from_stats_and_sees_changes_made_elsewhere(tmp_path):
    """The live table of a file pipeline: with nothing changed a refresh reuses the last counts
    (each directory's stamp unchanged); a record replaced, an output removed or an input added by
    another process shows at the next refresh."""
    import asyncio
    import os

    pipeline, inp, _, fail = build("files", tmp_path)
    for i in range(20):
        await inp.dump(f"j{i}", i)
    fail.add("j3")
    async with pipeline:
        await pipeline.run()
        tracker = pdtnb.StatusTracker(pipeline)
        first = await tracker.refresh()
        await asyncio.sleep(0.15)  # past the file system's clock tick
        await tracker.refresh()
        scans = []
        real = os.scandir
        os.scandir = lambda path: scans.append(path) or real(path)
        try:
            assert counts(await tracker.refresh()) == counts(first)
            assert scans == [], "an idle refresh lists no directory"
        finally:
            os.scandir = real

        # Another process turns j5's success into a failure (a new file renamed into place, the
        # same name): seen at the tracker's next full refresh (every `full_every`), which
        # compares every record's identity.
        (tmp_path / "done1" / "j5.tmp").write_text("result: failure\nmessage: elsewhere\n")
        os.replace(tmp_path / "done1" / "j5.tmp", tmp_path / "done1" / "j5.yaml")
        tracker.refreshes = tracker.full_every - 1
        after = await tracker.refresh()
        assert after.task("first").failed == 2
        assert counts(after) == counts(await pdtnb.pipeline_status(pipeline))

        (tmp_path / "out2" / "j7.yaml").unlink()
        (tmp_path / "inp" / "j99.yaml").write_text("99\n")
        after = await tracker.refresh()
        assert after.task("first").ready == 1
        assert [link.count for link in after.task("second").links if link.name == "out2"] == [19 - 1]
        assert counts(after) == counts(await pdtnb.pipeline_status(pipeline))
