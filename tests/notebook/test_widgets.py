"""The notebook widgets: in-process with real ipywidgets objects, and in real kernels.

In-process, the pipeline is opened on the test's own event loop (as a cell opens it on the
kernel's); button clicks are made with ``Button.click()``, from the loop's thread and from other
threads, and the effects are checked on the real repositories. Covered: the launch panel, the one
status feed per controller, the progress bars, captions that tell the truth about runs and stops,
the failure loop (counts as buttons, job lists with reasons, a job's view with Retry and Kill, Retry
failed), and following (or refusing) a redefined pipeline.

In kernels (ipykernel 6 and 7, through nbclient): how a live view is displayed (widget view,
``text/html`` snapshot, ``text/plain`` status text), that closing it leaves a static copy of its
last state in the saved notebook, that a kernel shutdown does the same for every live view, and
that a click on a dashboard after the pipeline cell was re-run acts on the new definition.
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

from nbrun import SHOW_HELPER, KernelInfo, KernelSession, shown, status_rows  # noqa: E402

import pdtnb  # noqa: E402
from pdtnb.notebook import Dashboard, LiveStatus, Progress, StatusTable, controller_for  # noqa: E402
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


def plain(markup: str) -> str:
    """The text of some HTML, without its style sheets and tags."""
    markup = re.sub(r"<style>.*?</style>", "", markup, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", markup).split())


def caption_text(dash: Dashboard) -> str:
    """The dashboard's caption, without the stale notice (hidden until updates stop)."""
    markup = re.sub(r'<span class="pdtnb-stale".*?</span>', "", dash.caption.value, flags=re.S)
    return plain(markup)


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
    assert text.startswith("run started at") and "Stop ends it" in text
    await eventually(lambda: len(demo.res.data) == 3 and len(demo.nap_done.data) == 2, what="the run")
    await eventually(lambda: not demo.controller.running, what="the run to end")
    # Once the run is over, nothing says it runs: the result line and the caption give its summary.
    await eventually(lambda: result_text(dashboard).startswith("run finished: "), what="the result line to follow")
    summary = demo.controller.last_run
    assert result_text(dashboard) == f"run {summary.describe()}"
    await eventually(
        lambda: "last run finished: 8 succeeded, 0 failed" in caption_text(dashboard),
        what="the caption to say the run finished",
    )
    assert "running" not in caption_text(dashboard) and "background" not in result_text(dashboard)


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
        await eventually(lambda: dash.graph_widget.value, timeout=30, what="the graph")
        value = dash.graph_widget.value
        if isinstance(value, str):  # PipelineGraph(form="auto"): an SVG that fits the cell's width
            assert "<svg" in value and 'width="100%"' in value
        else:
            assert bytes(value).startswith(b"\x89PNG")
    finally:
        dash.close()


async def test_a_slow_drawing_never_replaces_a_newer_one(demo: Demo, monkeypatch: pytest.MonkeyPatch):
    """The first drawing takes longer than the graph's refresh period while the counts change:
    the graph ends showing the newest counts, not the drawing that finished last."""
    from pdtnb.notebook.graph import PipelineGraph

    started: list[str] = []
    for method in ("to_svg", "to_png"):
        original = getattr(PipelineGraph, method)

        def slow_first(self: PipelineGraph, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            started.append(repr(self.status.task("double").done))
            if len(started) == 1:
                time.sleep(3)  # more than the dashboard's 1.5 s between drawings
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(PipelineGraph, method, slow_first)
    dash = Dashboard(demo.pipeline, interval=0.1).start()
    try:
        await eventually(lambda: started, what="the first drawing")
        await demo.controller.step()  # the counts change while the first drawing is under way
        await eventually(lambda: len(demo.out.data) == 3, what="double's jobs done")
        await demo.controller.step()  # their records reaped
        await asyncio.sleep(6)  # every drawing asked for has finished
        assert started[0] == "0" and started[-1] == "3", started
        value = dash.graph_widget.value
        if isinstance(value, str):
            assert "done 3" in value, "the graph shows older counts than the table"
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
    feed = demo.controller.feed
    live.close()
    await eventually(lambda: not feed.running, timeout=2, what="the feed to stop with its last subscriber")
    count = live.refreshes
    await demo.controller.launch("double", "1")
    await asyncio.sleep(0.3)
    assert live.refreshes == count
    assert feed.subscriptions == [] and live.ended


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
        await eventually(lambda: not demo.controller.feed.running, timeout=1, what="the feed to end")
        assert "running" not in plain(live.value) and 'class="pdtnb-stale"' not in live.value
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
        "ready": "2",
        "live": "0",
        "done": "1",
        "failed": "0",
    }
    assert rows["plus"]["ready"] == "1" and rows["nap"]["ready"] == "2"
    assert rows["double"]["links (jobs)"] == "inp 3, done 1, out 1"
    text = repr(table)
    assert text.startswith("double\ndouble.inp 3\ndouble.done 1\ndouble.out 1\n\nplus\n")


# ---- one status feed per controller -----------------------------------------------------------------


async def test_every_view_of_a_pipeline_shares_one_feed(demo: Demo):
    first = LiveStatus(demo.controller, interval=0.2).start()
    second = LiveStatus(demo.controller, interval=0.05).start()
    bars = Progress(demo.controller, interval=0.2).start()
    dash = Dashboard(demo.pipeline, interval=0.2, graph=False).start()
    try:
        await eventually(
            lambda: min(first.refreshes, second.refreshes, bars.refreshes, dash.refreshes) >= 3,
            what="every view to be refreshed",
        )
        feeds = [task for task in asyncio.all_tasks() if task.get_name() == "pdtnb-status-feed"]
        assert len(feeds) == 1, "one refresh loop for the pipeline, whatever the number of views"
        others = [task.get_name() for task in asyncio.all_tasks() if task.get_name().startswith("pdtnb-live")]
        assert others == [], others
        feed = demo.controller.feed
        assert len(feed.subscriptions) == 4 and feed.interval == 0.05  # the shortest asked for
        # An action refreshes every view from the same snapshot.
        await demo.controller.launch("double", "1")
        await eventually(lambda: status_rows(first.value).get("double", {}).get("done") == "1", what="the first table")
        assert status_rows(second.value)["double"]["done"] == "1"
        assert dash.count_buttons[("double", "done")].description == "1"
        assert feed.refreshes < first.refreshes + second.refreshes, "each refresh serves every view"
    finally:
        for view in (first, second, bars, dash):
            view.close()
    await eventually(lambda: not demo.controller.feed.running, what="the feed to end with its last view")


async def test_dashboard_table_caption_and_hint_come_from_one_snapshot(demo: Demo, dashboard: Dashboard):
    feed = demo.controller.feed
    await feed.refresh()
    status = feed.last
    for t in status.tasks:
        for state in ("ready", "live", "done", "failed"):
            assert dashboard.count_buttons[(t.name, state)].description == str(t.count(state))
    assert f"{status.taken_at:%H:%M:%S}" in caption_text(dashboard) or f"{feed.taken_at:%H:%M:%S}" in caption_text(
        dashboard
    )
    dashboard.task_picker.value = "plus"
    await eventually(
        lambda: dashboard.job_field.placeholder == "no ready job of plus: type a job id",
        what="an exact hint for a task with no ready job",
    )
    dashboard.task_picker.value = "double"
    await eventually(lambda: dashboard.job_field.placeholder == "job id: 3 ready jobs of double", what="the hint")


# ---- progress bars ------------------------------------------------------------------------------------


def _task_status(name: str = "t", **counts: int) -> Any:
    from pdtnb.status import TaskStatus

    values = {"ready": 0, "live": 0, "done": 0, "failed": 0, **counts}
    return TaskStatus(name=name, links=[], **values)


def test_progress_bar_segments_add_up_to_the_total():
    from pdtnb.notebook.progress import progress_html, progress_text

    t = _task_status(done=5, failed=1, live=2, ready=2, waiting=10)
    markup = progress_html(t)
    widths = {s: float(w) for s, w in re.findall(r"pdtnb-seg-(\w+)\" [^>]*width:([\d.]+)%", markup)}
    assert widths == {"done": 25.0, "failed": 5.0, "live": 10.0, "ready": 10.0}  # the rest (50%) waits
    assert "6/20" in markup
    text = progress_text(t, width=20)
    assert text.startswith("[#####!>>..          ] 6/20 finished, 1 failed, 2 live"), text
    assert progress_text(_task_status()) == "[                        ] no jobs"


def test_progress_shows_rate_and_time_left_only_while_jobs_move():
    from pdtnb.notebook.feed import RateTracker, RunState
    from pdtnb.notebook.progress import progress_text
    from pdtnb.status import PipelineStatus

    rates = RateTracker()
    running = RunState("running", "running for 4 s", 4.0)
    for second, done in enumerate((0, 2, 4, 6, 8)):
        rates.add(PipelineStatus([_task_status(done=done, live=2, ready=18 - done)]), now=100.0 + second)
    t = _task_status(done=8, live=2, ready=10)
    assert rates.rate("t") == pytest.approx(2.0)
    assert progress_text(t, rates, running).endswith("· 2.0/s, 6 s left")
    finished = RunState("finished", "last run finished: ...")
    assert "/s" not in progress_text(t, rates, finished)
    assert "/s" not in progress_text(_task_status(done=20), rates, running), "no rate for a task with nothing left"
    # A reset (retry, rm) starts the rate over rather than counting backwards.
    rates.add(PipelineStatus([_task_status(done=1, ready=19)]), now=106.0)
    assert rates.rate("t") is None


async def test_live_table_has_a_progress_bar_per_task_and_a_text_rendering(demo: Demo):
    live = LiveStatus(demo.controller, interval=0.05).start()
    try:
        await demo.controller.launch("double", "1")
        await eventually(
            lambda: status_rows(live.value).get("double", {}).get("done") == "1", what="the launch to show"
        )
        rows = status_rows(live.value)
        assert rows["double"]["progress"].startswith("1/3") and rows["plus"]["progress"].startswith("0/1")
        assert "pdtnb-seg-done" in live.value
        text = live.snapshot_text()
        assert text.startswith("LiveStatus(pipeline · status at ")
        assert "\ndouble [########" in text and "1/3 finished" in text
    finally:
        live.close()


# ---- captions that tell the truth --------------------------------------------------------------------


async def test_stop_says_what_the_run_did_and_leaves_no_job_live():
    gate = threading.Event()
    pool = ThreadPoolExecutor(4)
    inp = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(4)})

    @pdtnb.ExecutorTask("slow", pool, pdtnb.InProcessMetadataRepository())
    def slow(job, inp):
        gate.wait(10)

    slow.link("inp", inp, is_input=True)
    pipeline = pdtnb.Pipeline([slow], pdtnb.Session())
    await pipeline.open()
    controller = controller_for(pipeline, "pipeline")
    dash = Dashboard(controller, interval=0.1, graph=False).start()
    try:
        await click(dash, "Run")
        await eventually(lambda: dash.count_buttons[("slow", "live")].description == "4", what="four live jobs")
        assert "running for" in caption_text(dash)
        text = await click(dash, "Stop")
        summary = controller.last_run
        assert isinstance(summary, pdtnb.RunSummary) and summary.stopped
        assert "RunSummary(" not in text
        assert text == summary.describe() + "; 4 jobs are still live: recorded as they end, nothing new is launched"
        assert text.startswith("stopped: 0 succeeded, 0 failed")
        await eventually(
            lambda: (
                "last run stopped: " in caption_text(dash)
                and "recording the jobs still live as they end" in caption_text(dash)
            ),
            what="the caption",
        )
        assert "running" not in caption_text(dash)
        gate.set()
        # The jobs the run left live are reaped as they end: nothing stays "live" for jobs long over.
        await eventually(
            lambda: dash.count_buttons[("slow", "done")].description == "4" and not controller.draining,
            timeout=5,
            what="the live jobs to be recorded",
        )
        assert dash.count_buttons[("slow", "live")].description == "0"
        await eventually(lambda: "recording" not in caption_text(dash), what="the caption to drop the drain")
    finally:
        gate.set()
        dash.close()
        await controller.close()
        pool.shutdown(wait=True)


async def test_stop_without_a_run_says_so(demo: Demo, dashboard: Dashboard):
    assert await click(dashboard, "Stop") == "no background run to stop"


# ---- the failure loop ------------------------------------------------------------------------------


@dataclass
class Failing:
    """``parse`` raises on a negative input ("bad"); ``report`` (downstream, require_success) raises
    on job "2" and is blocked for "bad"; ``flaky`` always raises and is retried in an hour."""

    pipeline: pdtnb.Pipeline
    controller: PipelineController
    inp: pdtnb.InProcessMetadataRepository
    parse_done: pdtnb.InProcessMetadataRepository
    report_done: pdtnb.InProcessMetadataRepository
    reports: pdtnb.InProcessMetadataRepository


@pytest.fixture
async def failing() -> AsyncIterator[Failing]:
    inp = pdtnb.InProcessMetadataRepository({"1": 1, "2": 2, "bad": -1})
    parsed = pdtnb.InProcessMetadataRepository()
    parse_done = pdtnb.InProcessMetadataRepository()
    reports = pdtnb.InProcessMetadataRepository()
    report_done = pdtnb.InProcessMetadataRepository()
    flaky_in = pdtnb.InProcessMetadataRepository({"f": 1})

    @pdtnb.InProcessSyncTask("parse", parse_done)
    async def parse(job, inp, parsed):
        value = await inp.info(job)
        if value < 0:
            raise ValueError(f"negative input: {value}")
        await parsed.dump(job, value * 10)

    parse.link("inp", inp, is_input=True)
    parse.link("parsed", parsed, is_output=True)

    @pdtnb.InProcessSyncTask("report", report_done)
    async def report(job, parsed, reports):
        if job == "2":
            raise RuntimeError(f"report of {job} is too large")
        await reports.dump(job, await parsed.info(job))

    report.plug(parse)
    report.link("reports", reports, is_output=True)

    @pdtnb.InProcessSyncTask("flaky", pdtnb.InProcessMetadataRepository(), retry=pdtnb.Retry(attempts=3, delay=3600))
    async def flaky(job, flaky_in):
        raise OSError("the network is down")

    flaky.link("flaky_in", flaky_in, is_input=True)
    pipeline = pdtnb.Pipeline([parse, report, flaky], pdtnb.Session())
    await pipeline.open()
    controller = controller_for(pipeline, "pipeline")
    await controller.start_run(timeout=60)  # a timeout: the retry due in an hour does not keep it going
    await controller.wait(10)
    try:
        yield Failing(pipeline, controller, inp, parse_done, report_done, reports)
    finally:
        await controller.close()


@pytest.fixture
async def failing_dash(failing: Failing) -> AsyncIterator[Dashboard]:
    dash = Dashboard(failing.controller, interval=0.1, graph=False).start()
    try:
        await eventually(lambda: dash.count_buttons[("parse", "failed")].description == "1", what="the counts")
        yield dash
    finally:
        dash.close()


async def open_list(dash: Dashboard, task: str, state: str) -> list[tuple[str, str]]:
    dash.count_buttons[(task, state)].click()
    await eventually(
        lambda: dash._list_key == (task, state) and dash.jobs_panel.layout.display is None,
        what=f"the list of {state} jobs of {task}",
    )
    return [tuple(option) for option in dash.job_list.options]


async def test_failed_blocked_and_retrying_counts_are_buttons(failing: Failing, failing_dash: Dashboard):
    dash = failing_dash
    counts = {key: (b.description, b.disabled) for key, b in dash.count_buttons.items()}
    assert counts[("parse", "failed")] == ("1", False)
    assert counts[("report", "failed")] == ("1", False)
    assert counts[("report", "blocked")] == ("1", False)
    assert counts[("flaky", "retrying")] == ("1", False)
    assert counts[("parse", "retrying")] == ("0", True), "a zero is not a button one can press"
    assert dash.count_buttons[("parse", "failed")].style.button_color == "#E15759"

    assert await open_list(dash, "parse", "failed") == [("bad: ValueError: negative input: -1", "bad")]
    assert "1 failed" in plain(dash.jobs_title.value)
    assert (dash.task_picker.value, dash.state_picker.value) == ("parse", "failed")
    assert await open_list(dash, "report", "blocked") == [
        ("bad: upstream parse failed: ValueError: negative input: -1", "bad")
    ]
    ((label, job),) = await open_list(dash, "flaky", "retrying")
    assert job == "f" and "OSError: the network is down" in label
    # The job field offers the chosen task's jobs in the chosen state.
    await eventually(lambda: dash.job_field.options == ("f",), what="the retrying job offered")
    assert dash.job_field.placeholder == "job id: 1 retrying job of flaky"


async def test_a_job_opens_with_retry_and_retry_resets_it(failing: Failing, failing_dash: Dashboard):
    dash = failing_dash
    await open_list(dash, "parse", "failed")
    dash.job_list.value = "bad"
    await eventually(
        lambda: dash.job_panel.layout.display is None and "negative input" in dash.job_view.value, what="the job's view"
    )
    assert "ValueError" in plain(dash.job_view.value)
    assert not dash.job_buttons["Retry"].disabled and dash.job_buttons["Kill"].layout.display == "none"
    assert "%pdt debug parse bad" in plain(dash.debug_hint.value)
    assert dash.job_field.value == "bad"

    await failing.inp.dump("bad", 3)  # fix the input, then retry
    before = dash.actions_done
    dash.job_buttons["Retry"].click()
    await eventually(lambda: dash.actions_done > before, what="the retry")
    assert result_text(dash) == "parse: reset 1 job (bad)"
    assert "bad" not in failing.parse_done.data
    await eventually(lambda: dash.count_buttons[("parse", "failed")].description == "0", what="the count to drop")
    assert dash.count_buttons[("parse", "ready")].description == "1"
    # Retry is recorded for the export replay as what it did: the record deleted.
    assert failing.controller.actions[-1].kind == "rm"
    assert failing.controller.actions[-1].args == {"data": "parse.done", "jobs": ["bad"], "recursive": False}


async def test_retry_failed_resets_every_failed_job_of_the_task(failing: Failing, failing_dash: Dashboard):
    dash = failing_dash
    await open_list(dash, "report", "failed")
    before = dash.actions_done
    dash.list_buttons["Retry failed"].click()
    await eventually(lambda: dash.actions_done > before, what="retry failed")
    assert result_text(dash) == "report: reset 1 job (2)"
    assert "2" not in failing.report_done.data
    text = await click(dash, "Retry failed")  # from the launch panel, for the chosen task: none left
    assert text == "report: nothing to retry"


async def test_why_explains_the_job(failing: Failing, failing_dash: Dashboard):
    dash = failing_dash
    await open_list(dash, "report", "blocked")
    dash.job_list.value = "bad"
    await eventually(lambda: dash._job_key == ("report", "bad"), what="the job's view")
    assert dash.job_buttons["Retry"].disabled, "a blocked job has nothing to retry"
    before = dash.actions_done
    dash.job_buttons["Why"].click()
    await eventually(lambda: dash.actions_done > before, what="why")
    assert "upstream parse bad failed: ValueError: negative input: -1" in result_text(dash)


async def test_kill_stops_a_live_process_job(tmp_path):
    session = pdtnb.Session()

    @session.resource
    async def procman():
        yield pdtnb.LocalLinuxManager("widgets", tmp_path)

    inp = pdtnb.InProcessMetadataRepository({"slow": 1, "quick": 2})
    pids = pdtnb.InProcessMetadataRepository()
    done = pdtnb.InProcessMetadataRepository()
    quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=4, mem="1Gi"))
    task = pdtnb.ProcessTask(
        "sleeper",
        procman,
        quota,
        pdtnb.Resources.parse(cpu=1, mem="1Mi"),
        pids,
        'if [ "{{ job }}" = "slow" ]; then sleep 60; fi\n',
        done=done,
    )
    task.link("inp", inp, is_input=True)
    pipeline = pdtnb.Pipeline([task], session, [quota], poll_interval=0.1)
    await pipeline.open()
    controller = controller_for(pipeline, "pipeline")
    dash = Dashboard(controller, interval=0.1, graph=False).start()
    try:
        await controller.start_run()
        await eventually(
            lambda: (
                dash.count_buttons[("sleeper", "live")].description == "1"
                and dash.count_buttons[("sleeper", "done")].description == "1"
            ),
            timeout=10,
            what="the slow job to be the only live one",
        )
        await open_list(dash, "sleeper", "live")
        dash.job_list.value = "slow"
        await eventually(
            lambda: dash._job_key == ("sleeper", "slow") and dash._job_state == "live", what="the live job's view"
        )
        assert dash.job_buttons["Kill"].layout.display is None and not dash.job_buttons["Kill"].disabled
        before = dash.actions_done
        dash.job_buttons["Kill"].click()
        await eventually(lambda: dash.actions_done > before, timeout=10, what="the kill")
        assert result_text(dash) == "sleeper slow: attempt 1 killed", result_text(dash)
        await eventually(
            lambda: dash.count_buttons[("sleeper", "failed")].description == "1",
            timeout=10,
            what="the killed job to count as failed",
        )
        assert dash.count_buttons[("sleeper", "live")].description == "0"
        await controller.wait(10)
    finally:
        dash.close()
        await controller.close()


# ---- redefinition ------------------------------------------------------------------------------------


def _single_task_pipeline(marker: list[str], label: str) -> pdtnb.Pipeline:
    inp = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2})

    @pdtnb.InProcessSyncTask("work", pdtnb.InProcessMetadataRepository())
    async def work(job, inp):
        marker.append(f"{label}:{job}")

    work.link("inp", inp, is_input=True)
    return pdtnb.Pipeline([work], pdtnb.Session())


async def test_a_dashboard_follows_the_redefined_pipeline():
    ran: list[str] = []
    old = _single_task_pipeline(ran, "old")
    await old.open()
    old_controller = controller_for(old, "pipeline")
    dash = Dashboard(old_controller, interval=0.1, graph=False).start()
    live = LiveStatus(old_controller, interval=0.1).start()
    try:
        await eventually(lambda: dash.count_buttons[("work", "ready")].description == "2", what="the first counts")
        new = _single_task_pipeline(ran, "new")
        new_controller = controller_for(new, "pipeline")
        await old_controller.retire(new_controller)  # what %pdt does when the variable is rebound
        await eventually(
            lambda: dash.controller is new_controller and live.controller is new_controller,
            what="the views to move to the new definition",
        )
        assert not old.is_open
        await eventually(
            lambda: new.is_open and "redefined pipeline" in caption_text(dash), what="the new definition shown"
        )
        text = await click(dash, "Run")
        assert text.startswith(("run started", "run finished: 2 succeeded")), text
        await eventually(lambda: sorted(ran) == ["new:a", "new:b"], what="the new code to run")
        assert not any(r.startswith("old") for r in ran)
        assert old_controller.feed.subscriptions == [] and len(new_controller.feed.subscriptions) == 2
        await new_controller.wait(5)
    finally:
        dash.close()
        live.close()
        await controller_for(new, "pipeline").close()


async def test_a_dashboard_that_does_not_follow_greys_out_and_refuses():
    ran: list[str] = []
    old = _single_task_pipeline(ran, "old")
    await old.open()
    old_controller = controller_for(old, "pipeline")
    dash = Dashboard(old_controller, interval=0.1, graph=False, follow=False).start()
    try:
        await eventually(lambda: dash.count_buttons[("work", "ready")].description == "2", what="the first counts")
        new_controller = controller_for(_single_task_pipeline(ran, "new"), "pipeline")
        await old_controller.retire(new_controller)
        await eventually(lambda: dash.stale, what="the dashboard to grey out")
        assert "pdtnb-retired" in dash._dom_classes
        assert all(b.disabled for b in dash.buttons.values())
        assert "old definition of pipeline" in result_text(dash)
        dash._on_run()  # a click that slipped through (a disabled button sends none)
        assert "old definition" in result_text(dash) and is_error(dash)
        await asyncio.sleep(0.2)
        assert ran == [] and not old.is_open and not new_controller.pipeline.is_open
        with pytest.raises(Exception, match="old definition"):
            await old_controller.open()
    finally:
        dash.close()


# ---- in real kernels: display, static copies, shutdown, redefinition ----------------------------------

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

KERNEL_SETUP = (
    SHOW_HELPER.lstrip("\n")
    + """
import asyncio
from concurrent.futures import ThreadPoolExecutor
import pdtnb
from pdtnb.notebook import controller_for

LABEL = "first"
ran = globals().get("ran", [])
inp = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(4)})
out = pdtnb.InProcessMetadataRepository()

@pdtnb.ExecutorTask("work", ThreadPoolExecutor(2), pdtnb.InProcessMetadataRepository())
async def work(job, inp, out):
    ran.append(f"{LABEL}:{job}")
    await out.dump(job, await inp.info(job) * 2)

work.link("inp", inp, is_input=True)
work.link("out", out, is_output=True)
pipeline = pdtnb.Pipeline([work], pdtnb.Session())
"""
)


def _outputs(session: KernelSession, index: int) -> list[dict[str, Any]]:
    """The outputs of cell ``index`` as the notebook holds them now (display updates applied)."""
    return [dict(o) for o in session.nb.cells[index].get("outputs", [])]


def _bundle(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    (shown_output,) = [o for o in outputs if o["output_type"] in ("display_data", "execute_result")]
    return dict(shown_output["data"])


def test_live_views_display_a_snapshot_and_leave_a_static_copy_when_closed(kernel_session: KernelSession):
    session = kernel_session
    session.run("%load_ext pdtnb").check()
    session.run(KERNEL_SETUP).check()
    live_cell = session.run("live = %pdt status --live --interval 0.2\nlive")
    live_index = len(session.nb.cells) - 1
    data = _bundle(live_cell.check().outputs)
    # One output, three representations: the widget, an HTML snapshot and the status as text.
    assert set(data) == {WIDGET_VIEW, "text/html", "text/plain"}, data.keys()
    assert data["text/plain"].startswith("LiveStatus(pipeline · status at ")
    assert "\nwork [" in data["text/plain"] and "0/4 finished" in data["text/plain"]
    assert "LiveStatus(value=" not in data["text/plain"]
    assert status_rows(data["text/html"])["work"]["ready"] == "4"
    assert "a snapshot" in data["text/html"]

    session.run("await controller_for(pipeline).start_run()\nawait controller_for(pipeline).wait(20)").check()
    facts = shown(session.run("await asyncio.sleep(0.5)\nshow(value=live.value, refreshes=live.refreshes)").check())
    assert status_rows(facts["value"])["work"]["done"] == "4"
    assert "last run finished: 4 succeeded, 0 failed" in facts["value"]

    session.run("live.close()").check()
    session.run("await asyncio.sleep(0.3)").check()  # the display update is applied by then
    final = _bundle(_outputs(session, live_index))
    assert WIDGET_VIEW not in final, "a closed view leaves a static copy, not a widget that would not render"
    rows = status_rows(final["text/html"])
    assert rows["work"]["done"] == "4" and rows["work"]["ready"] == "0"
    assert "closed at" in final["text/html"] and "last run finished: 4 succeeded" in final["text/html"]
    assert final["text/plain"].startswith("LiveStatus(pipeline · status at ")


def test_a_click_after_the_pipeline_cell_is_rerun_runs_the_new_code(kernel_session: KernelSession):
    session = kernel_session
    session.run("%load_ext pdtnb").check()
    session.run(KERNEL_SETUP).check()
    session.run("dash = %pdt dashboard\ndash").check()
    session.run("await asyncio.sleep(0.5)").check()
    # The user edits the pipeline cell and runs it again: a new Pipeline in the same variable.
    session.run(KERNEL_SETUP.replace('LABEL = "first"', 'LABEL = "second"')).check()
    # No %pdt line ran since: the old dashboard's Run must still act on the new definition.
    facts = shown(
        session.run("""
before = dash.actions_done
dash.buttons["Run"].click()
for _ in range(200):
    if dash.actions_done > before:
        break
    await asyncio.sleep(0.05)
await controller_for(pipeline).wait(20)
await asyncio.sleep(0.3)
show(ran=sorted(ran), follows=dash.controller.pipeline is pipeline, result=dash.result.value,
     caption=dash.caption.value[-600:])
""").check()
    )
    assert facts["ran"] == [f"second:j{i}" for i in range(4)], facts
    assert facts["follows"] is True
    assert "redefined pipeline" in facts["caption"]


def test_a_kernel_shutdown_replaces_live_views_by_static_copies(kernel: KernelInfo, kernelspec_dir: Any, tmp_path):
    from queue import Empty

    from jupyter_client.manager import start_new_kernel

    km, client = start_new_kernel(kernel_name=kernel.name, cwd=str(tmp_path))
    try:
        for code in (
            "%load_ext pdtnb",
            KERNEL_SETUP,
            "await controller_for(pipeline).open()",
            "%pdt status --live",
            "dash = %pdt dashboard\ndash",
            "await asyncio.sleep(1)",
        ):
            reply = client.execute_interactive(code, timeout=60, output_hook=lambda msg: None)
            assert reply["content"]["status"] == "ok", reply["content"]
        while True:  # drain what the cells sent
            try:
                client.get_iopub_msg(timeout=0.5)
            except Empty:
                break
        km.shutdown_kernel(now=False)
        updates = []
        while True:
            try:
                msg = client.get_iopub_msg(timeout=2)
            except Empty:
                break
            if msg["msg_type"] == "update_display_data":
                updates.append(msg["content"]["data"])
    finally:
        client.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
    assert len(updates) == 2, updates  # the live table and the dashboard
    for data in updates:
        assert WIDGET_VIEW not in data
        assert "the kernel shut down at" in data["text/html"]
        assert status_rows(data["text/html"])["work"]["ready"] == "4"
    assert sorted(d["text/plain"].split("(")[0] for d in updates) == ["Dashboard", "LiveStatus"]
