"""pipeline_status and pipeline_trace: the data behind `status`, `trace` and the widgets."""

from __future__ import annotations

import asyncio
import json
import threading

import pdtnb

RUN_TIMEOUT = 1.0


def metadata(**jobs) -> pdtnb.InProcessMetadataRepository:
    return pdtnb.InProcessMetadataRepository(dict(jobs))


def build(executor, release: threading.Event):
    """first (in-process, fails on 'bad') -> second (executor, holds job 'slow' until release)."""
    inp, mid, out, done1, done2 = metadata(a=1, b=2, bad=3, slow=4), metadata(), metadata(), metadata(), metadata()
    started = threading.Event()

    @pdtnb.InProcessSyncTask("first", done1)
    async def first(job, inp, mid):
        if job == "bad":
            raise RuntimeError("bad input")
        await mid.dump(job, await inp.info(job))

    # links deliberately declared out of display order: output, status-ish, input
    first.link("mid", mid, is_output=True)
    first.link("extra", metadata(z=0))  # no disposition: hidden unless all_repos
    first.link("inp", inp, is_input=True)

    @pdtnb.ExecutorTask("second", executor, done2)
    def second(job, mid, out):
        if job == "slow":
            started.set()
            release.wait(10)
        asyncio.run(out.dump(job, "x"))

    second.plug(first)
    second.link("out", out, is_output=True)
    pipeline = pdtnb.Pipeline([first, second], pdtnb.Session())
    return pipeline, started, dict(inp=inp, mid=mid, out=out, done1=done1, done2=done2)


async def settle(pipeline, started):
    """Run rounds until 'slow' is running in `second` and everything else is finished."""
    await pipeline.update()
    await pipeline.update()
    assert await asyncio.to_thread(started.wait, 5)
    for _ in range(100):
        await pipeline.update()
        status = await pdtnb.pipeline_status(pipeline)
        if status.task("second").done == 2:
            return
        await asyncio.sleep(0.01)


async def test_status_counts_ready_live_done_failed(executor, release):
    pipeline, started, _ = build(executor, release)
    async with pipeline:
        status = await pdtnb.pipeline_status(pipeline)
        first = status.task("first")
        assert (first.ready, first.live, first.done, first.failed) == (4, 0, 0, 0)
        assert status.task("second").ready == 0

        await settle(pipeline, started)
        status = await pdtnb.pipeline_status(pipeline)
        first, second = status.task("first"), status.task("second")
        assert (first.ready, first.live, first.done, first.failed) == (0, 0, 3, 1)
        assert (second.ready, second.live, second.done, second.failed) == (0, 1, 2, 0)
        assert not status.is_trace

        release.set()
        await pipeline.run(timeout=RUN_TIMEOUT)
        status = await pdtnb.pipeline_status(pipeline)
        second = status.task("second")
        assert (second.ready, second.live, second.done, second.failed) == (0, 0, 3, 0)


async def test_status_link_order_inputs_then_status_then_rest(executor, release):
    pipeline, _, _ = build(executor, release)
    async with pipeline:
        status = await pdtnb.pipeline_status(pipeline)
        full = await pdtnb.pipeline_status(pipeline, all_repos=True)
    assert [link.name for link in status.task("first").links] == ["inp", "done", "mid"]
    assert [link.kind for link in status.task("first").links] == ["input", "status", "output"]
    # second: plugged input first, then its status links (live, done), then its output;
    # first_done only gates it and are hidden without all_repos
    assert [link.name for link in status.task("second").links] == ["mid", "live", "done", "out"]
    assert [link.name for link in full.task("first").links] == ["inp", "done", "mid", "extra"]
    # first is in-process (no live link), so only its done repository gates second
    assert {link.name for link in full.task("second").links} == {"mid", "live", "done", "out", "first_done"}
    assert [link.name for link in full.task("second").links][:3] == ["mid", "live", "done"]


async def test_status_link_counts_and_text(executor, release):
    pipeline, started, _ = build(executor, release)
    async with pipeline:
        await settle(pipeline, started)
        status = await pdtnb.pipeline_status(pipeline)
    counts = {(t.name, link.name): link.count for t in status.tasks for link in t.links}
    assert counts == {
        ("first", "inp"): 4,
        ("first", "done"): 4,
        ("first", "mid"): 3,
        ("second", "mid"): 3,
        ("second", "live"): 1,
        ("second", "done"): 2,
        ("second", "out"): 2,
    }
    assert status.to_text() == (
        "first\nfirst.inp 4\nfirst.done 4\nfirst.mid 3\n\n"
        "second\nsecond.mid 3\nsecond.live 1\nsecond.done 2\nsecond.out 2\n\n"
    )
    data = json.loads(status.to_json())
    by_name = {t["name"]: t for t in data["tasks"]}
    assert {k: by_name["first"][k] for k in ("ready", "live", "done", "failed")} == {
        "ready": 0,
        "live": 0,
        "done": 3,
        "failed": 1,
    }
    assert [link["name"] for link in by_name["second"]["links"]] == ["mid", "live", "done", "out"]


async def test_trace_reports_job_states_and_links(executor, release):
    pipeline, started, r = build(executor, release)
    async with pipeline:
        await settle(pipeline, started)
        await r["inp"].dump("fresh", 5)
        trace = await pdtnb.pipeline_trace(pipeline, ["a", "bad", "slow", "fresh", "nosuch"])
    assert trace.is_trace
    assert trace.jobs == ["a", "bad", "slow", "fresh", "nosuch"]
    assert trace.task("first").job_states == {
        "a": "done",
        "bad": "failed",
        "slow": "done",
        "fresh": "ready",
        "nosuch": "waiting",
    }
    assert trace.task("second").job_states == {
        "a": "done",
        "bad": "blocked",  # its upstream attempt failed
        "slow": "live",
        "fresh": "waiting",
        "nosuch": "waiting",
    }
    jobs = {(t.name, link.name): link.jobs for t in trace.tasks for link in t.links}
    assert jobs[("first", "inp")] == ["a", "bad", "slow", "fresh"]
    assert jobs[("first", "done")] == ["a", "bad", "slow"]
    assert jobs[("first", "mid")] == ["a", "slow"]
    assert jobs[("second", "live")] == ["slow"]
    assert jobs[("second", "out")] == ["a"]
    text_lines = trace.to_text().splitlines()
    assert text_lines[:4] == ["first", "first.inp a bad slow fresh", "first.done a bad slow", "first.mid a slow"]
    data = json.loads(trace.to_json())
    assert data["jobs"] == ["a", "bad", "slow", "fresh", "nosuch"]
    assert data["tasks"][0]["job_states"]["bad"] == "failed"


async def test_status_of_a_disabled_task():
    inp, done = metadata(j1=1, j2=2), metadata()

    @pdtnb.InProcessSyncTask("t", done)
    async def t(job, inp):
        pass

    t.link("inp", inp, is_input=True)
    t.disabled = True
    async with pdtnb.Pipeline([t], pdtnb.Session()) as pipeline:
        status = await pdtnb.pipeline_status(pipeline)
    assert status.task("t").ready == 0
    assert status.task("t").disabled is True
    assert status.task("t").links[0].count == 2
