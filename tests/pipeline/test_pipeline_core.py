"""Pipeline: open/close, the update and launch phases, settings, graph, dependants, priority."""

from __future__ import annotations

import asyncio
import threading

import networkx
import pytest

import pdtnb

RUN_TIMEOUT = 1.5


def metadata(**jobs) -> pdtnb.InProcessMetadataRepository:
    return pdtnb.InProcessMetadataRepository(dict(jobs))


def copy_task(name: str, inp, out, done, calls: list | None = None) -> pdtnb.InProcessSyncTask:
    async def body(job, inp, out):
        if calls is not None:
            calls.append((name, job))
        await out.dump(job, await inp.info(job))

    task = pdtnb.InProcessSyncTask(name, done, func=body)
    task.link("inp", inp, is_input=True)
    task.link("out", out, is_output=True)
    return task


# ---- open / close ----------------------------------------------------------------------------


async def test_open_close_opens_and_closes_the_session():
    session = pdtnb.Session()
    events = []

    @session.resource
    async def conn():
        events.append("open")
        yield "live-connection"
        events.append("close")

    task = copy_task("t", metadata(), metadata(), metadata())
    pipeline = pdtnb.Pipeline([task], session)
    assert not pipeline.is_open
    with pytest.raises(pdtnb.SessionClosedError):
        conn()
    await pipeline.open()
    assert pipeline.is_open
    assert conn() == "live-connection"
    with pytest.raises(pdtnb.PipelineStateError):
        await pipeline.open()  # already open
    await pipeline.close()
    assert not pipeline.is_open
    assert events == ["open", "close"]
    await pipeline.close()  # closing twice is harmless
    assert events == ["open", "close"]


async def test_async_with_closes_on_error():
    session = pdtnb.Session()
    task = copy_task("t", metadata(), metadata(), metadata())
    pipeline = pdtnb.Pipeline([task], session)
    with pytest.raises(RuntimeError, match="boom"):
        async with pipeline as p:
            assert p is pipeline
            assert session.is_open
            raise RuntimeError("boom")
    assert not pipeline.is_open
    assert not session.is_open


async def test_pipeline_can_be_reopened_after_close():
    inp, out = metadata(j1=1), metadata()
    pipeline = pdtnb.Pipeline([copy_task("t", inp, out, metadata())], pdtnb.Session())
    async with pipeline:
        pass
    await inp.dump("j2", 2)
    async with pipeline:
        await pipeline.run(timeout=RUN_TIMEOUT)
    assert out.data == {"j1": 1, "j2": 2}


async def test_closed_pipeline_raises_pipeline_state_error():
    pipeline = pdtnb.Pipeline([copy_task("t", metadata(j1=1), metadata(), metadata())], pdtnb.Session())
    for attempt in ("never opened", "after close"):
        for call in (pipeline.update, pipeline.update_only_update, pipeline.update_only_launch, pipeline.run):
            with pytest.raises(pdtnb.PipelineStateError):
                await call()
        if attempt == "never opened":
            async with pipeline:
                pass
    assert issubclass(pdtnb.PipelineStateError, pdtnb.PdtnbError)


def test_duplicate_task_names_are_refused():
    a = copy_task("same", metadata(), metadata(), metadata())
    b = copy_task("same", metadata(), metadata(), metadata())
    with pytest.raises(ValueError, match="same"):
        pdtnb.Pipeline([a, b], pdtnb.Session())


async def test_open_validates_file_repositories(tmp_path):
    base = tmp_path / "not-yet"
    inp = pdtnb.FileRepository(base / "inp")
    task = copy_task("t", inp, metadata(), metadata())
    async with pdtnb.Pipeline([task], pdtnb.Session()):
        assert (base / "inp").is_dir()


# ---- phases and their return values ----------------------------------------------------------


async def test_phase_return_values_for_in_process_tasks():
    inp, out, done = metadata(), metadata(), metadata()
    calls: list = []
    task = copy_task("t", inp, out, done, calls)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        # nothing to do at all
        assert await pipeline.gather_ready_jobs(task) == set()
        assert await pipeline.update_only_update() is False
        assert await pipeline.update_only_launch() is False
        assert await pipeline.update() is False

        await inp.dump("j1", 1)
        await inp.dump("j2", 2)
        ready = await pipeline.gather_ready_jobs(task)
        assert ready == {"j1", "j2"}
        assert isinstance(ready, set)
        # in-process jobs are never live between rounds
        assert await pipeline.update_only_update() is False
        assert await pipeline.update_only_launch() is True
        assert sorted(calls) == [("t", "j1"), ("t", "j2")]
        assert await pipeline.gather_ready_jobs(task) == set()
        assert await pipeline.update_only_launch() is False

        await inp.dump("j3", 3)
        assert await pipeline.update() is True
        assert out.data == {"j1": 1, "j2": 2, "j3": 3}
        assert await pipeline.update() is False
    assert len(calls) == 3


async def test_update_only_update_reports_live_executor_jobs(executor, release):
    inp, done = metadata(j1=1), metadata()
    started = threading.Event()

    @pdtnb.ExecutorTask("ex", executor, done)
    def ex(job, inp):
        started.set()
        assert release.wait(10)

    ex.link("inp", inp, is_input=True)
    async with pdtnb.Pipeline([ex], pdtnb.Session()) as pipeline:
        assert await pipeline.update_only_update() is False
        assert await pipeline.update_only_launch() is True
        assert await asyncio.to_thread(started.wait, 5)
        assert await pipeline.update_only_update() is True
        # the live job is neither ready nor launched again
        assert await pipeline.update_only_launch() is False
        assert await pipeline.update() is True  # activity: a live job
        release.set()
        for _ in range(200):
            await pipeline.update_only_update()
            if "j1" in done.data:
                break
            await asyncio.sleep(0.01)
        assert done.data["j1"]["result"] == "success"
        assert await pipeline.update_only_update() is False
        assert await pipeline.update() is False


# ---- settings --------------------------------------------------------------------------------


async def test_settings_synchronous_executor_launch_waits_for_the_job(executor):
    inp, out, done = metadata(j1=1, j2=2), metadata(), metadata()

    @pdtnb.ExecutorTask("ex", executor, done)
    async def ex(job, inp, out):
        await asyncio.sleep(0.05)
        await out.dump(job, await inp.info(job) * 3)

    ex.link("inp", inp, is_input=True)
    ex.link("out", out, is_output=True)
    pipeline = pdtnb.Pipeline([ex], pdtnb.Session())
    pipeline.settings(synchronous=True)
    async with pipeline:
        assert await pipeline.update_only_launch() is True
        # the launch phase returned only after the jobs completed and were recorded
        assert out.data == {"j1": 3, "j2": 6}
        assert {j: r["result"] for j, r in done.data.items()} == {"j1": "success", "j2": "success"}
        assert set(await ex.live.job_ids()) == set()
        assert await pipeline.update() is False


async def test_settings_metadata_false_writes_no_done_entry(executor):
    inp, out1, out2, done1, done2 = metadata(j1=1), metadata(), metadata(), metadata(), metadata()
    inproc = copy_task("inproc", inp, out1, done1)

    @pdtnb.ExecutorTask("ex", executor, done2)
    def ex(job, inp, out):
        asyncio.run(out.dump(job, "x"))

    ex.link("inp", inp, is_input=True)
    ex.link("out", out2, is_output=True)
    pipeline = pdtnb.Pipeline([inproc, ex], pdtnb.Session())
    pipeline.settings(synchronous=True, metadata=False)
    async with pipeline:
        await pipeline.update()
    assert out1.data == {"j1": 1}
    assert out2.data == {"j1": "x"}
    assert done1.data == {}
    assert done2.data == {}


async def test_settings_metadata_false_also_skips_failure_records():
    inp, done = metadata(j1=1), metadata()

    @pdtnb.InProcessSyncTask("bad", done)
    async def bad(job, inp):
        raise ValueError("nope")

    bad.link("inp", inp, is_input=True)
    pipeline = pdtnb.Pipeline([bad], pdtnb.Session())
    pipeline.settings(metadata=False)
    async with pipeline:
        await pipeline.update()
    assert done.data == {}


async def test_settings_default_records_metadata():
    inp, out, done = metadata(j1=1), metadata(), metadata()
    pipeline = pdtnb.Pipeline([copy_task("t", inp, out, done)], pdtnb.Session())
    pipeline.settings()
    async with pipeline:
        await pipeline.update()
    assert done.data["j1"]["result"] == "success"


# ---- graph and dependants --------------------------------------------------------------------


def two_stage():
    inp, mid, out, done1, done2 = metadata(), metadata(), metadata(), metadata(), metadata()

    @pdtnb.InProcessSyncTask("first", done1)
    async def first(job, inp, mid):
        await mid.dump(job, await inp.info(job))

    first.link("inp", inp, is_input=True)
    first.link("mid", mid, is_output=True)

    @pdtnb.InProcessSyncTask("second", done2)
    async def second(job, mid, out):
        await out.dump(job, await mid.info(job))

    second.plug(first)
    second.link("out", out, is_output=True)
    pipeline = pdtnb.Pipeline([first, second], pdtnb.Session())
    return pipeline, first, second, dict(inp=inp, mid=mid, out=out, done1=done1, done2=done2)


def test_graph_has_repositories_and_tasks_with_link_edges():
    pipeline, first, second, r = two_stage()
    graph = pipeline.graph()
    assert isinstance(graph, networkx.DiGraph)
    assert set(graph.nodes) == {first, second, *r.values()}

    edge = graph.edges[r["inp"], first]
    assert edge["link_name"] == "inp"
    assert edge["is_input"] is True and edge["required_for_start"] is True and edge["is_output"] is False

    edge = graph.edges[first, r["mid"]]
    assert edge["link_name"] == "mid"
    assert edge["is_output"] is True and edge["required_for_output"] is True and edge["is_input"] is False

    edge = graph.edges[r["mid"], second]
    assert edge["link_name"] == "mid"
    assert edge["is_input"] is True

    # the upstream done repository gates the second task
    edge = graph.edges[r["done1"], second]
    assert edge["link_name"] == "first_done"
    assert edge["required_for_start"] is True

    # every edge carries all the dispositions
    for _, _, data in graph.edges(data=True):
        assert {
            "is_input",
            "is_output",
            "is_status",
            "inhibits_start",
            "required_for_start",
            "inhibits_output",
            "required_for_output",
            "link_name",
        } <= set(data)

    # data flows from the input to the final output
    assert networkx.has_path(graph, r["inp"], r["out"])
    assert not networkx.has_path(graph, r["out"], r["inp"])
    assert not graph.has_edge(r["out"], first)


def test_dependants_direct_and_recursive():
    pipeline, first, second, r = two_stage()
    direct = list(pipeline.dependants(r["inp"], False))
    assert set(direct) == {r["inp"], first}

    everything = list(pipeline.dependants(r["inp"], True))
    assert len(everything) == len(set(everything))
    assert set(everything) == {r["inp"], first, r["mid"], r["done1"], second, r["out"], r["done2"]}

    from_mid = set(pipeline.dependants(r["mid"], True))
    assert {second, r["out"], r["done2"]} <= from_mid
    assert r["inp"] not in from_mid and first not in from_mid

    assert set(pipeline.dependants(r["out"], True)) == {r["out"]}
    assert set(pipeline.dependants(first, False)) >= {first, r["mid"], r["done1"]}


# ---- priority with a resource quota ----------------------------------------------------------


class QuotaTask(pdtnb.Task):
    """A task whose jobs stay live until the test finishes them, each reserving one CPU."""

    def __init__(self, name, quota: pdtnb.ResourceManager | None, inp, log: list):
        super().__init__(name)
        self.quota = quota
        self.log = log
        self.live = pdtnb.InProcessMetadataRepository()
        self.done = pdtnb.InProcessMetadataRepository()
        self.link("inp", inp, is_input=True)
        self.link("live", self.live, is_status=True, inhibits_start=True, inhibits_output=True)
        self.link("done", self.done, is_status=True, inhibits_start=True, required_for_output=True)
        if quota is not None:
            quota.register(self.usage)

    async def usage(self) -> pdtnb.Resources:
        return pdtnb.Resources(cpu=len(self.live.data))

    async def launch(self, job):
        if self.quota is not None and await self.quota.reserve(pdtnb.Resources(cpu=1)) is not None:
            return False
        await self.live.dump(job, "running")
        self.log.append((self.name, job))
        return True

    async def update(self):
        return bool(self.live.data)

    async def finish_all(self):
        for job in list(self.live.data):
            await self.live.delete(job)
            await self.done.dump(job, {"result": "success"})


async def test_priority_highest_first_under_a_one_job_quota():
    quota = pdtnb.ResourceManager(pdtnb.Resources(cpu=1))
    log: list = []
    prio = {("a", "a10"): 10, ("a", "a8"): 8, ("a", "a6"): 6, ("b", "b9"): 9, ("b", "b7"): 7, ("b", "b5"): 5}
    a = QuotaTask("a", quota, metadata(a10=0, a8=0, a6=0), log)
    b = QuotaTask("b", quota, metadata(b9=0, b7=0, b5=0), log)
    pipeline = pdtnb.Pipeline([b, a], pdtnb.Session(), resources=[quota], priority=lambda t, j: prio[(t, j)])
    async with pipeline:
        for _ in range(12):
            before = len(log)
            await pipeline.update()
            # the quota allows one job at a time
            assert len(log) - before <= 1
            assert len(a.live.data) + len(b.live.data) <= 1
            await a.finish_all()
            await b.finish_all()
            if len(log) == len(prio):
                break
    assert log == sorted(prio, key=prio.get, reverse=True)


async def test_priority_blocks_lower_jobs_of_unconstrained_tasks():
    """A lower-priority job never starts while a higher one waits, even if its own task could run it."""
    quota = pdtnb.ResourceManager(pdtnb.Resources(cpu=1))
    log: list = []
    prio = {("a", "a10"): 10, ("a", "a8"): 8, ("a", "a6"): 6, ("b", "b9"): 9, ("b", "b7"): 7, ("b", "b5"): 5}
    a = QuotaTask("a", quota, metadata(a10=0, a8=0, a6=0), log)
    b = QuotaTask("b", None, metadata(b9=0, b7=0, b5=0), log)  # b has no quota at all
    pipeline = pdtnb.Pipeline([a, b], pdtnb.Session(), resources=[quota], priority=lambda t, j: prio[(t, j)])
    async with pipeline:
        for _ in range(12):
            await pipeline.update()
            launched = set(log)
            for job in launched:
                higher = {k for k, p in prio.items() if p > prio[job]}
                assert higher <= launched, f"{job} launched while {higher - launched} still waited"
            assert len(a.live.data) <= 1
            await a.finish_all()
            await b.finish_all()
            if len(log) == len(prio):
                break
    assert set(log) == set(prio)
    assert log.index(("a", "a8")) < log.index(("b", "b7"))
    assert log.index(("a", "a6")) < log.index(("b", "b5"))


async def test_refused_jobs_are_launched_once_the_quota_frees():
    quota = pdtnb.ResourceManager(pdtnb.Resources(cpu=2))
    log: list = []
    t = QuotaTask("t", quota, metadata(j1=0, j2=0, j3=0, j4=0, j5=0), log)
    async with pdtnb.Pipeline([t], pdtnb.Session(), resources=[quota]) as pipeline:
        assert await pipeline.update() is True
        assert len(t.live.data) == 2
        await pipeline.update()
        assert len(t.live.data) == 2  # still full: nothing more started
        await t.finish_all()
        await pipeline.update()
        assert len(t.live.data) == 2
        await t.finish_all()
        await pipeline.update()
        assert len(t.live.data) == 1
        await t.finish_all()
        assert await pipeline.update() is False
    assert sorted(j for _, j in log) == ["j1", "j2", "j3", "j4", "j5"]
    assert len(log) == 5
