"""ExecutorTask and DaskTask on a real Dask cluster (worker processes; see conftest.py).

The bodies are pickled by value (cloudpickle), so that workers need not import this file; they
talk to the test through files in ``tmp_path`` (the workers run on this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import pdtnb
from pdtnb.record import Outcome, read_record

distributed = pytest.importorskip("distributed", reason="could not import distributed (the dask extra)")
import cloudpickle  # noqa: E402 - distributed's dependency

cloudpickle.register_pickle_by_value(sys.modules[__name__])


# ---- helpers ---------------------------------------------------------------------------------


async def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def all_workers(client: Any) -> dict[str, int]:
    """The worker processes' pids, once the cluster has its workers back (a test may kill one)."""
    if not os.environ.get("PDTNB_TEST_DASK_SCHEDULER"):
        await asyncio.to_thread(client.wait_for_workers, 2, 30)
    return await asyncio.to_thread(client.run, os.getpid)


def hanging(scratch: Path, seconds: float = 20.0) -> Any:
    """A body writing ``JOB.pid`` (its process) and then waiting for ``scratch/release``; a second
    attempt (``JOB.pid`` already there) returns at once. ``quick`` jobs return at once."""
    where = str(scratch)

    def body(job: str) -> None:
        pidfile = Path(where) / f"{job}.pid"
        if job.startswith("quick") or pidfile.exists():
            return
        pidfile.write_text(str(os.getpid()))
        deadline = time.time() + seconds
        while not (Path(where) / "release").exists() and time.time() < deadline:
            time.sleep(0.02)

    return body


def make_task(kind: str, client: Any, name: str, done: Any, func: Any, **kwargs: Any) -> pdtnb.ExecutorTask:
    if kind == "get_executor":
        return pdtnb.ExecutorTask(name, client.get_executor(), done, func=func, **kwargs)
    return pdtnb.DaskTask(name, client, done, func=func, **kwargs)


class Unpicklable(Exception):
    """An exception that cannot cross to the client (it holds a lock)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.lock = threading.Lock()


class LockedRepository(pdtnb.InProcessMetadataRepository):
    """A repository that cannot be pickled to a worker."""

    def __init__(self, data: dict[str, Any]):
        super().__init__(data)
        self.lock = threading.Lock()


# ---- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["DaskTask", "get_executor"])
async def test_bodies_run_in_worker_processes_with_their_link_arguments(kind, dask_client, tmp_path):
    workers = await all_workers(dask_client)
    raw = pdtnb.FileRepository(tmp_path / "raw", extension=".txt")
    out = pdtnb.FileRepository(tmp_path / "out", extension=".txt")
    (tmp_path / "raw").mkdir()
    for i in range(6):
        (tmp_path / "raw" / f"j{i}.txt").write_text(f"text {i}")
    done = pdtnb.InProcessMetadataRepository()

    async def body(job, raw, out):  # an async body: its own loop on the worker's thread
        async with await raw.open(job, "r") as fp:
            text = await fp.read()
        async with await out.open(job, "w") as fp:
            await fp.write(f"{text.upper()} in {os.getpid()}")

    task = make_task(kind, dask_client, "upper", done, body)
    task.link("raw", raw, is_input=True)
    task.link("out", out, is_output=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        summary = await pipeline.run(timeout=30)
    assert summary.succeeded == 6 and summary.failed == 0
    for i in range(6):
        text = (tmp_path / "out" / f"j{i}.txt").read_text()
        assert text.startswith(f"TEXT {i} in ")
        assert int(text.rsplit(" ", 1)[1]) in workers.values(), "ran in a worker process"
        assert int(text.rsplit(" ", 1)[1]) != os.getpid()
        assert read_record(done.data[f"j{i}"]).succeeded


async def test_a_raising_body_is_recorded_and_retried(dask_client, tmp_path):
    where = str(tmp_path)

    def body(job):
        marker = Path(where) / job
        if not marker.exists():
            marker.write_text("tried")
            raise ValueError(f"first attempt of {job} fails")

    raw = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2})
    done = pdtnb.InProcessMetadataRepository()
    task = pdtnb.DaskTask("flaky", dask_client, done, func=body, retry=pdtnb.Retry(attempts=2, delay=0.05, jitter=0))
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        summary = await pipeline.run(timeout=30)
    assert summary.retried == 2 and summary.succeeded == 2 and summary.failed == 0
    for job in ("a", "b"):
        record = read_record(done.data[job])
        assert record.succeeded and record.attempt == 2
        first = read_record(record.history[0])
        assert first.error_type == "ValueError" and first.message == f"first attempt of {job} fails"
    # The worker's traceback came back: the failing line of the body is in the first record.
    first_a = read_record(done.data["a"]).history[0]
    assert first_a["result"] == "failure"


async def test_the_failure_record_carries_the_workers_traceback(dask_client, tmp_path):
    def body(job):
        raise KeyError(f"no such thing as {job}")

    raw = pdtnb.InProcessMetadataRepository({"x": 1})
    done = pdtnb.InProcessMetadataRepository()
    task = pdtnb.DaskTask("broken", dask_client, done, func=body)
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=30)
        failed = await pdtnb.failed_jobs(pipeline)
    record = read_record(done.data["x"])
    assert record.outcome is Outcome.FAILURE and record.error_type == "KeyError"
    # The worker's frames came back (the body's, pickled by value, is named "<dynamic-code>").
    assert "in _run_body" in (record.traceback or "") and "in body" in (record.traceback or ""), record.traceback
    assert [f.function for f in record.frames if f.user] == ["body"], record.frames
    assert [(f.job, f.state) for f in failed] == [("x", "failed")]


async def test_a_worker_killed_mid_job_is_that_jobs_failure_and_the_pipeline_goes_on(dask_client, tmp_path):
    workers = await all_workers(dask_client)
    allowed = await asyncio.to_thread(
        dask_client.run_on_scheduler, lambda dask_scheduler: dask_scheduler.allowed_failures
    )
    raw = pdtnb.InProcessMetadataRepository({"victim": 1, "quick1": 2, "quick2": 3})
    done = pdtnb.InProcessMetadataRepository()
    task = pdtnb.DaskTask(
        "fragile", dask_client, done, func=hanging(tmp_path), retry=pdtnb.Retry(attempts=2, delay=0.05, jitter=0)
    )
    task.link("raw", raw, is_input=True)
    pidfile = tmp_path / "victim.pid"
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        await pipeline.update()  # submits the three jobs
        await wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="the victim's body to start")
        pid = int(pidfile.read_text())
        assert pid in workers.values(), "the body runs in a worker process"
        os.kill(pid, signal.SIGKILL)
        summary = await pipeline.run(timeout=40)
    victim = read_record(done.data["victim"])
    assert victim.succeeded, "the second attempt (on a live worker) succeeded"
    if allowed == 0:  # our LocalCluster: the lost worker fails the job at once
        assert victim.attempt == 2
        first = read_record(victim.history[0])
        assert first.error_type == "distributed.scheduler.KilledWorker", first
        assert summary.retried >= 1
    else:  # a scheduler that re-runs the job itself before giving up
        assert victim.attempt >= 1
    for job in ("quick1", "quick2"):
        assert read_record(done.data[job]).succeeded, "the other jobs went on"


async def test_results_never_cross_and_what_cannot_be_pickled_is_a_named_failure(dask_client, tmp_path):
    done = pdtnb.InProcessMetadataRepository()

    def returns_a_lock(job):
        return threading.Lock()  # stays on the worker: pdtnb ignores a body's result

    def raises_unpicklable(job):
        raise Unpicklable(f"{job} holds a lock")

    def takes_locked(job, locked):
        return None

    ok = pdtnb.DaskTask("lock_result", dask_client, done, func=returns_a_lock)
    ok.link("raw", pdtnb.InProcessMetadataRepository({"r": 1}), is_input=True)
    bad_exc = pdtnb.DaskTask(
        "lock_exception", dask_client, pdtnb.InProcessMetadataRepository(), func=raises_unpicklable
    )
    bad_exc.link("raw", pdtnb.InProcessMetadataRepository({"e": 1}), is_input=True)
    bad_arg = pdtnb.DaskTask("lock_argument", dask_client, pdtnb.InProcessMetadataRepository(), func=takes_locked)
    bad_arg.link("locked", LockedRepository({"a": 1}), is_input=True)
    async with pdtnb.Pipeline([ok, bad_exc, bad_arg], pdtnb.Session()) as pipeline:
        await pipeline.run(timeout=30)
    assert read_record(done.data["r"]).succeeded
    exc_record = read_record(bad_exc.done.data["e"])
    assert exc_record.outcome is Outcome.FAILURE
    assert "Unpicklable" in (exc_record.message or "") and "e holds a lock" in (exc_record.message or "")
    arg_record = read_record(bad_arg.done.data["a"])
    assert arg_record.outcome is Outcome.LAUNCH_ERROR, arg_record
    assert "pickle" in f"{arg_record.message} {arg_record.traceback}".lower(), arg_record.message
    assert "lock" in f"{arg_record.message} {arg_record.traceback}".lower(), arg_record.message


async def test_kill_cancels_the_dask_future(dask_client, tmp_path):
    await all_workers(dask_client)
    raw = pdtnb.InProcessMetadataRepository({"running": 1, "quick": 2})
    done = pdtnb.InProcessMetadataRepository()
    task = pdtnb.DaskTask("slow", dask_client, done, func=hanging(tmp_path))
    task.link("raw", raw, is_input=True)
    try:
        first = lambda t, j: 2 if j == "running" else 1  # noqa: E731
        async with pdtnb.Pipeline([task], pdtnb.Session(), priority=first) as pipeline:
            await pipeline.update()
            await wait_for((tmp_path / "running.pid").exists, what="the running job's body to start")
            keys = {job: task.rev_jobs[job].dask_key for job in ("running", "quick") if job in task.rev_jobs}
            await pdtnb.kill_job(pipeline, "slow", "running")

            def on_scheduler() -> set[str]:
                return set(dask_client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)))

            await wait_for(lambda: keys["running"] not in on_scheduler(), 10, "the scheduler to drop the future")
            assert "running" not in task.rev_jobs
            await pipeline.run(timeout=30)
    finally:
        (tmp_path / "release").write_text("")
    record = read_record(done.data["running"])
    assert record.outcome is Outcome.KILLED
    assert record.reason == f"killed by request (Dask future {keys['running']} cancelled)"
    assert read_record(done.data["quick"]).succeeded, "the other job went on"


async def test_a_quota_limits_what_is_submitted(dask_client, tmp_path):
    where = str(tmp_path)

    def body(job):
        start = time.time()
        time.sleep(0.3)
        (Path(where) / f"{job}.span").write_text(f"{start} {time.time()}")

    quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=1, mem="1Gi"))
    raw = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(4)})
    done = pdtnb.InProcessMetadataRepository()
    task = pdtnb.DaskTask(
        "metered", dask_client, done, func=body, resource_manager=quota, job_resources=pdtnb.Resources.parse(cpu=1)
    )
    task.link("raw", raw, is_input=True)
    most = 0
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, len(task.jobs))
            await asyncio.sleep(0.005)

    async with pdtnb.Pipeline([task], pdtnb.Session(), [quota]) as pipeline:
        sampler = asyncio.create_task(sample())
        summary = await pipeline.run(timeout=30)
        stop.set()
        await sampler
    assert summary.succeeded == 4
    assert most == 1, "one job in flight at a time: the quota holds one cpu"
    spans = sorted(tuple(map(float, (tmp_path / f"j{i}.span").read_text().split())) for i in range(4))
    for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
        assert s2 >= e1, "the bodies never overlapped, though the cluster has two workers"


async def test_the_scheduler_going_away_is_each_live_jobs_failure(tmp_path):
    """Its own cluster (the shared one must survive), with a worker thread: only the scheduler goes."""
    cluster = await asyncio.to_thread(
        distributed.LocalCluster,
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        dashboard_address=None,
    )
    client = await asyncio.to_thread(distributed.Client, cluster, set_as_default=False, timeout=3)
    raw = pdtnb.InProcessMetadataRepository({"orphan": 1})
    done = pdtnb.InProcessMetadataRepository()
    task = pdtnb.DaskTask("stranded", client, done, func=hanging(tmp_path, seconds=10))
    task.link("raw", raw, is_input=True)
    try:
        async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
            await pipeline.update()
            await wait_for((tmp_path / "orphan.pid").exists, what="the body to start")
            await asyncio.to_thread(cluster.sync, cluster.scheduler.close)
            await pipeline.run(timeout=20)
    finally:
        (tmp_path / "release").write_text("")
        await asyncio.to_thread(client.close, 5)
        with contextlib.suppress(Exception):  # its scheduler is gone: closing it times out
            await asyncio.to_thread(cluster.close, 1)
    record = read_record(done.data["orphan"])
    assert record.outcome is Outcome.FAILURE
    assert record.error_type == "pdtnb.task.dask.DaskJobLost", record
    assert "scheduler-connection-lost" in (record.message or ""), record.message


async def test_the_dashboard_link_is_the_clients(dask_client):
    from pdtnb.task.executor import dask_dashboard_link

    done = pdtnb.InProcessMetadataRepository()
    thread_task = pdtnb.ExecutorTask("threads", None, done)  # type: ignore[arg-type]
    assert dask_dashboard_link(thread_task) is None
    task = pdtnb.DaskTask("t", dask_client, done)
    expected = None
    try:
        expected = dask_client.dashboard_link
    except Exception:
        pass
    link = dask_dashboard_link(task)
    if expected and expected.startswith("http"):
        assert link == expected
    else:  # our LocalCluster runs without a dashboard (dashboard_address=None)
        assert link is None


async def test_the_notebook_dashboard_links_to_the_dask_dashboard(dask_client, monkeypatch):
    pytest.importorskip("ipywidgets", reason="could not import ipywidgets (the notebook extra)")
    from pdtnb.notebook import Dashboard, controller_for
    from pdtnb.task import dask as dask_module

    # Our LocalCluster has no dashboard (no bokeh, dashboard_address=None): say it has one.
    url = "http://127.0.0.1:8787/status"
    monkeypatch.setattr(dask_module, "dashboard_link_of", lambda client: url if client is dask_client else None)
    on_dask = pdtnb.DaskTask("on_dask", dask_client, pdtnb.InProcessMetadataRepository(), func=lambda job: None)
    on_dask.link("raw", pdtnb.InProcessMetadataRepository({"a": 1}), is_input=True)
    on_threads = pdtnb.InProcessSyncTask("on_threads", pdtnb.InProcessMetadataRepository())
    on_threads.link("raw", pdtnb.InProcessMetadataRepository({"a": 1}), is_input=True)

    @on_threads
    async def nothing(job):
        pass

    pipeline = pdtnb.Pipeline([on_dask, on_threads], pdtnb.Session())
    await pipeline.open()
    controller = controller_for(pipeline, "dask-dashboard")
    dash = Dashboard(pipeline, interval=0.1, graph=False).start()
    try:
        await wait_for(lambda: "raw" in getattr(dash.link_cells.get("on_dask"), "value", ""), 10, "a rendered row")
        cell = dash.link_cells["on_dask"].value
        assert f'<a class="pdtnb-dask-link" href="{url}" target="_blank"' in cell and ">Dask dashboard</a>" in cell
        assert "Dask" not in dash.link_cells["on_threads"].value
    finally:
        dash.close()
        await controller.close()


async def test_run_timeout_cancels_the_outstanding_futures(dask_client, tmp_path):
    """``run(timeout=...)`` stops a run whose jobs hang: their futures are cancelled on the
    scheduler (not left to run and be recorded later), and the jobs are ready again, unrecorded."""
    await all_workers(dask_client)
    raw = pdtnb.InProcessMetadataRepository({"h1": 1, "h2": 2, "h3": 3})
    done = pdtnb.InProcessMetadataRepository()
    task = pdtnb.DaskTask("hangs", dask_client, done, func=hanging(tmp_path, seconds=30))
    task.link("raw", raw, is_input=True)

    def on_scheduler() -> set[str]:
        return set(dask_client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)))

    try:
        async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
            started = time.monotonic()
            with pytest.raises(TimeoutError, match=r"timed out after 1\.5 s"):
                await pipeline.run(timeout=1.5)
            assert time.monotonic() - started < 10
            await wait_for(
                lambda: not any(k.startswith("hangs") for k in on_scheduler()),
                10,
                "the scheduler to drop every future of the run",
            )
            assert task.jobs_here() == 0 and done.data == {}, "nothing recorded: the jobs stay ready"
            assert (await pdtnb.pipeline_status(pipeline)).task("hangs").ready == 3
    finally:
        (tmp_path / "release").write_text("")


CTRL_C_SCRIPT = """
import sys
from pathlib import Path
import pdtnb
sys.path.insert(0, {here!r})
from test_dask_executor import hanging

raw = pdtnb.InProcessMetadataRepository({{"h1": 1, "h2": 2}})
done = pdtnb.YamlMetadataFileRepository(Path({scratch!r}) / "done")
task = pdtnb.DaskTask("hangs", {address!r}, done, func=hanging(Path({scratch!r}), seconds=30))
task.link("raw", raw, is_input=True)
pipeline = pdtnb.Pipeline([task], pdtnb.Session())
if __name__ == "__main__":
    sys.exit(pdtnb.main(pipeline))
"""


def test_ctrl_c_of_a_command_line_run_cancels_its_futures_and_records_nothing(dask_client, tmp_path):
    """``python pipeline.py run`` on a scheduler address, interrupted while its bodies run on the
    workers: it exits 130 within seconds, the scheduler drops its futures, nothing is recorded."""
    asyncio.run(all_workers(dask_client))
    script = tmp_path / "pipeline.py"
    script.write_text(
        CTRL_C_SCRIPT.format(
            here=str(Path(__file__).parent), scratch=str(tmp_path), address=dask_client.scheduler.address
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )

    def on_scheduler() -> set[str]:
        return set(dask_client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)))

    def until(predicate: Any, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    try:
        until(lambda: (tmp_path / "h1.pid").exists() or (tmp_path / "h2.pid").exists(), "a body to start on a worker")
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert time.monotonic() - sent < 5, "stopped within the grace period"
        until(lambda: not any(k.startswith("hangs") for k in on_scheduler()), "the scheduler to drop the futures", 10)
        assert not list((tmp_path / "done").glob("*.yaml")), "nothing recorded"
    finally:
        (tmp_path / "release").write_text("")
        if proc.poll() is None:
            proc.kill()


def test_a_pipeline_file_declares_a_dask_task_by_its_scheduler_address(dask_client, tmp_path, monkeypatch):
    """``kind: dask`` with ``client_or_address: ${DASK_SCHEDULER}``, run by ``python -m pdtnb -f``."""
    (tmp_path / "raw").mkdir()
    for i in range(3):
        (tmp_path / "raw" / f"j{i}").write_text(str(i * 7))
    (tmp_path / "dask_bodies.py").write_text(
        "import os\n"
        "from pathlib import Path\n\n\n"
        "def square(job, raw, out):\n"
        "    value = int(Path(raw.fullpath(job)).read_text())\n"
        "    Path(out.fullpath(job)).write_text(f'{value * value} on {os.getpid()}')\n"
    )
    (tmp_path / "pipeline.yaml").write_text(
        "version: 1\n"
        "import_paths: [.]\n"
        "repositories:\n"
        "  raw: {kind: FileRepository, basedir: raw}\n"
        "  out: {kind: FileRepository, basedir: out}\n"
        "  done: {kind: YamlMetadataFileRepository, filename: done}\n"
        "tasks:\n"
        "  square:\n"
        "    kind: dask\n"
        "    client_or_address: ${DASK_SCHEDULER}\n"
        "    func: dask_bodies:square\n"
        "    done: done\n"
        "    links:\n"
        "      raw: {repo: raw, kind: input}\n"
        "      out: {repo: out, kind: output}\n"
    )
    (tmp_path / "out").mkdir()
    # The bodies' module must be importable on the cluster, as an installed package is (they are
    # pickled by reference): here, the scheduler and the workers run on this machine.
    where = str(tmp_path)

    def add_path(dask_scheduler: Any = None) -> None:
        sys.path.insert(0, where)

    def remove_path(dask_scheduler: Any = None) -> None:
        sys.path.remove(where)

    dask_client.run(add_path)
    dask_client.run_on_scheduler(add_path)
    try:
        env = {**os.environ, "DASK_SCHEDULER": dask_client.scheduler.address}
        run = subprocess.run(
            [sys.executable, "-m", "pdtnb", "-f", str(tmp_path / "pipeline.yaml"), "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    finally:
        dask_client.run(remove_path)
        dask_client.run_on_scheduler(remove_path)
    assert run.returncode == 0, run.stderr
    workers = set(dask_client.run(os.getpid).values())
    for i in range(3):
        value, _, pid = (tmp_path / "out" / f"j{i}").read_text().partition(" on ")
        assert int(value) == (i * 7) ** 2 and int(pid) in workers, "run on a worker process"
        assert yaml_record(tmp_path / "done" / f"j{i}.yaml")["result"] == "success"


def yaml_record(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())
