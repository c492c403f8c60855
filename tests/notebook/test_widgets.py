"""The notebook widgets in-process, with real ipywidgets objects and no kernel.

The pipeline is opened on the test's own event loop (as a cell opens it on the kernel's); button
clicks are made with ``Button.click()``, from the loop's thread and from other threads, and the
effects are checked on the real repositories.
"""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

ipywidgets = pytest.importorskip("ipywidgets")

from nbrun import status_rows  # noqa: E402

import pdtnb  # noqa: E402
from pdtnb.notebook import Dashboard, LiveStatus, StatusTable, controller_for  # noqa: E402
from pdtnb.notebook.controller import PipelineController  # noqa: E402

WAIT = 5.0


async def eventually(check: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.01)


@dataclass
class Demo:
    """``double`` (in-process: out = inp * 2) feeding ``plus`` (res = out + 1), and ``nap``, an
    executor task with its own input. Every body records the thread and loop it ran on."""

    pipeline: pdtnb.Pipeline
    controller: PipelineController
    inp: pdtnb.InProcessMetadataRepository
    out: pdtnb.InProcessMetadataRepository
    res: pdtnb.InProcessMetadataRepository
    nap_in: pdtnb.InProcessMetadataRepository
    nap_done: pdtnb.InProcessMetadataRepository
    calls: list[tuple[str, str, int, Any]] = field(default_factory=list)
    naps_finished: list[str] = field(default_factory=list)


@pytest.fixture
async def demo() -> AsyncIterator[Demo]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pdtnb-widget-test")
    inp = pdtnb.InProcessMetadataRepository({"1": 1, "2": 2, "3": 3})
    out = pdtnb.InProcessMetadataRepository()
    res = pdtnb.InProcessMetadataRepository()
    nap_in = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2})
    nap_done = pdtnb.InProcessMetadataRepository()
    calls: list[tuple[str, str, int, Any]] = []
    naps_finished: list[str] = []

    @pdtnb.InProcessSyncTask("double", pdtnb.InProcessMetadataRepository())
    async def double(job, inp, out):
        calls.append(("double", job, threading.get_ident(), asyncio.get_running_loop()))
        await out.dump(job, await inp.info(job) * 2)

    double.link("inp", inp, is_input=True)
    double.link("out", out, is_output=True)

    @pdtnb.InProcessSyncTask("plus", pdtnb.InProcessMetadataRepository())
    async def plus(job, out, res):
        calls.append(("plus", job, threading.get_ident(), asyncio.get_running_loop()))
        await res.dump(job, await out.info(job) + 1)

    plus.plug(double)
    plus.link("res", res, is_output=True)

    @pdtnb.ExecutorTask("nap", pool, nap_done)
    def nap(job, nap_in):
        time.sleep(0.05)
        naps_finished.append(job)

    nap.link("nap_in", nap_in, is_input=True)
    pipeline = pdtnb.Pipeline([double, plus, nap], pdtnb.Session())
    await pipeline.open()
    controller = controller_for(pipeline, "pipeline")
    try:
        yield Demo(pipeline, controller, inp, out, res, nap_in, nap_done, calls, naps_finished)
    finally:
        await controller.close()
        pool.shutdown(wait=True)


@pytest.fixture
async def dashboard(demo: Demo) -> AsyncIterator[Dashboard]:
    dash = Dashboard(demo.pipeline, graph=False).start()
    try:
        await eventually(lambda: dash.job_field.options, what="the first job suggestions")
        yield dash
    finally:
        dash.close()


async def click(dash: Dashboard, label: str) -> str:
    """Click a button and wait for its action to finish; return the result area's text."""
    before = dash.actions_done
    dash.buttons[label].click()
    await eventually(lambda: dash.actions_done > before, what=f"the {label!r} action")
    return result_text(dash)


def result_text(dash: Dashboard) -> str:
    return re.sub(r"<[^>]+>", "", dash.result.value).strip()


def is_error(dash: Dashboard) -> bool:
    return "color:" in dash.result.value


# ---- the launch panel ------------------------------------------------------------------------------


async def test_launch_button_runs_the_job(demo: Demo, dashboard: Dashboard):
    dashboard.task_picker.value = "double"
    dashboard.job_field.value = "2"
    text = await click(dashboard, "Launch")
    assert demo.out.data == {"2": 4}
    assert text == "double:2 launched and finished" and not is_error(dashboard)
    assert demo.res.data == {}, "launching double:2 must not start plus"


async def test_job_field_suggests_the_tasks_ready_jobs(demo: Demo, dashboard: Dashboard):
    assert dashboard.task_picker.options == ("double", "plus", "nap")
    assert dashboard.job_field.options == ("1", "2", "3")
    dashboard.task_picker.value = "nap"
    await eventually(lambda: dashboard.job_field.options == ("a", "b"), what="nap's ready jobs")
    dashboard.task_picker.value = "plus"
    await eventually(lambda: dashboard.job_field.options == (), what="plus has no ready job")
    dashboard.task_picker.value = "double"
    await eventually(lambda: dashboard.job_field.options == ("1", "2", "3"), what="double's ready jobs")
    dashboard.job_field.value = "1"
    await click(dashboard, "Launch")
    # After the action the suggestions follow the new ready set.
    await eventually(lambda: dashboard.job_field.options == ("2", "3"), what="double:1 no longer suggested")
    dashboard.task_picker.value = "plus"
    await eventually(lambda: dashboard.job_field.options == ("1",), what="plus:1 became ready")


@pytest.mark.parametrize(
    ("task", "job", "fragment"),
    [
        ("double", "nosuch", "double:nosuch is not ready"),  # a job no repository holds
        ("plus", "1", "plus:1 is not ready"),  # a real job whose upstream has not run
        ("double", "../x", "../x"),  # not a valid job id
    ],
)
async def test_launch_errors_are_one_line_and_name_the_job(
    demo: Demo, dashboard: Dashboard, task: str, job: str, fragment: str
):
    dashboard.task_picker.value = task
    dashboard.job_field.value = job
    text = await click(dashboard, "Launch")
    assert fragment in text, text
    assert "\n" not in text, text
    assert demo.out.data == {} and demo.res.data == {} and demo.calls == []


async def test_launch_without_a_job_says_so(demo: Demo, dashboard: Dashboard):
    dashboard.job_field.value = ""
    dashboard.buttons["Launch"].click()
    assert is_error(dashboard) and "job" in result_text(dashboard)
    await asyncio.sleep(0.05)
    assert demo.calls == []


async def test_step_buttons_run_one_phase_each(demo: Demo, dashboard: Dashboard):
    # Update phase alone: nothing is launched although double and nap have ready jobs.
    text = await click(dashboard, "Step update")
    assert text.startswith("update phase") and "launch phase" not in text
    assert demo.calls == [] and demo.out.data == {} and demo.naps_finished == []

    # Launch phase alone: every ready job starts; plus waits (its jobs were not ready yet).
    text = await click(dashboard, "Step launch")
    assert text.startswith("launch phase: 5 ready, 5 launched") and "update phase" not in text
    assert demo.out.data == {"1": 2, "2": 4, "3": 6} and demo.res.data == {}
    await eventually(lambda: len(demo.naps_finished) == 2, what="the executor jobs to end")
    await asyncio.sleep(0.05)
    assert demo.nap_done.data == {}, "finished executor jobs are recorded by the update phase, not before"

    # Update phase alone again: it reaps the executor jobs, and still launches nothing.
    text = await click(dashboard, "Step update")
    assert "nap" in text and "launch phase" not in text
    assert sorted(demo.nap_done.data) == ["a", "b"]
    assert demo.res.data == {}

    # Step: update then launch, so plus runs now.
    text = await click(dashboard, "Step")
    assert "update phase" in text and "launch phase: 3 ready, 3 launched" in text
    assert demo.res.data == {"1": 3, "2": 5, "3": 7}


async def test_run_button_runs_in_the_background(demo: Demo, dashboard: Dashboard):
    text = await click(dashboard, "Run")
    assert "background" in text
    await eventually(lambda: len(demo.res.data) == 3 and len(demo.nap_done.data) == 2, what="the run")
    await eventually(lambda: not demo.controller.running, what="the run to end")


async def test_click_from_another_thread_runs_on_the_pipeline_loop(demo: Demo, dashboard: Dashboard):
    loop_thread = threading.get_ident()
    dashboard.task_picker.value = "double"
    dashboard.job_field.value = "3"
    before = dashboard.actions_done
    clicker = threading.Thread(target=dashboard.buttons["Launch"].click, name="comm-subshell")
    clicker.start()
    clicker.join(5)
    await eventually(lambda: dashboard.actions_done > before, what="the launch clicked from a thread")
    assert demo.out.data == {"3": 6}
    assert [(task, job) for task, job, _, _ in demo.calls] == [("double", "3")]
    _, _, thread, loop = demo.calls[0]
    assert thread == loop_thread and loop is demo.pipeline.loop
    assert result_text(dashboard) == "double:3 launched and finished"

    before = dashboard.actions_done
    clicker = threading.Thread(target=dashboard.buttons["Step launch"].click, name="comm-subshell")
    clicker.start()
    clicker.join(5)
    await eventually(lambda: dashboard.actions_done > before, what="the launch phase clicked from a thread")
    assert demo.out.data == {"1": 2, "2": 4, "3": 6}
    assert all(thread == loop_thread and loop is demo.pipeline.loop for _, _, thread, loop in demo.calls)


@pytest.mark.parametrize("label", ["Launch", "Step"])
async def test_buttons_on_a_closed_pipeline_say_so(demo: Demo, dashboard: Dashboard, label: str):
    dashboard.job_field.value = "1"
    await demo.controller.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dashboard.buttons[label].click()
        gc.collect()
    assert is_error(dashboard) and "not open" in result_text(dashboard)
    never_awaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert not never_awaited, f"the refused click left coroutines un-awaited: {never_awaited}"
    assert demo.calls == []


async def test_dashboard_draws_the_graph(demo: Demo):
    dash = Dashboard(demo.pipeline, interval=0.1).start()
    try:
        await eventually(lambda: dash.graph_widget.value, timeout=30, what="the graph image")
        assert bytes(dash.graph_widget.value).startswith(b"\x89PNG")
    finally:
        dash.close()


# ---- live status and the static table --------------------------------------------------------------


async def test_live_status_refreshes_when_an_action_changes_jobs(demo: Demo):
    live = LiveStatus(demo.controller, interval=60).start()  # the timer alone would not refresh
    try:
        await eventually(lambda: live.refreshes >= 1, what="the first refresh")
        assert status_rows(live.value)["double"]["ready"] == "3"
        count, before = live.refreshes, live.value
        await demo.controller.launch("double", "1")
        await eventually(lambda: live.refreshes > count, timeout=2, what="a refresh after the launch")
        assert live.value != before
        rows = status_rows(live.value)
        assert (rows["double"]["ready"], rows["double"]["done"], rows["plus"]["ready"]) == ("2", "1", "1")
    finally:
        live.close()


async def test_live_status_follows_repository_changes(demo: Demo):
    live = LiveStatus(demo.controller, interval=0.1).start()
    try:
        await eventually(lambda: live.refreshes >= 1, what="the first refresh")
        await demo.inp.dump("4", 4)
        await eventually(lambda: status_rows(live.value)["double"]["ready"] == "4", what="the new job to show")
    finally:
        live.close()


async def test_live_status_stops_when_closed(demo: Demo):
    live = LiveStatus(demo.controller, interval=0.05).start()
    await eventually(lambda: live.refreshes >= 2, what="refreshes")
    live.close()
    await asyncio.sleep(0.1)
    count = live.refreshes
    await demo.controller.launch("double", "1")
    await asyncio.sleep(0.3)
    assert live.refreshes == count
    assert live._task is not None and live._task.done()


@pytest.mark.parametrize("how", ["controller", "pipeline"])
async def test_live_status_stops_when_the_pipeline_closes(demo: Demo, how: str):
    live = LiveStatus(demo.controller, interval=0.2).start()
    try:
        await eventually(lambda: live.refreshes >= 1, what="the first refresh")
        if how == "controller":  # what %pdt close does
            await demo.controller.close()
        else:  # a cell doing `await pipeline.close()`
            await demo.pipeline.close()
        await eventually(lambda: "live updates stopped" in live.value, timeout=2, what="the stop notice")
        assert live._task is not None
        await eventually(live._task.done, timeout=1, what="the refresh task to end")
        count = live.refreshes
        await asyncio.sleep(0.5)
        assert live.refreshes == count
    finally:
        live.close()


async def test_status_table_html_has_each_task_and_its_counts(demo: Demo):
    await demo.controller.launch("double", "1")
    table = StatusTable(await demo.controller.status())
    rows = status_rows(table._repr_html_())
    assert set(rows) == {"double", "plus", "nap"}
    assert {k: rows["double"][k] for k in ("ready", "live", "done", "failed")} == {
        "ready": "2", "live": "0", "done": "1", "failed": "0"
    }
    assert rows["plus"]["ready"] == "1" and rows["nap"]["ready"] == "2"
    assert rows["double"]["links (jobs)"] == "inp 3, done 1, out 1"
    text = repr(table)
    assert text.startswith("double\ndouble.inp 3\ndouble.done 1\ndouble.out 1\n\nplus\n")
