"""The dashboard: live table, launch panel, failure loop, graph and timeline in one widget.

State lives in the :class:`~pdtnb.notebook.controller.PipelineController`; the widget only renders
it and forwards clicks. Everything it shows comes from one snapshot of the controller's status
feed at a time (table, caption, counts, the job field's hint), so no part lags another.

The failure loop: every count in the table is a button; a click lists that task's jobs in that
state, failed, retrying, blocked and outdated ones with their one-line reasons; a click on a job
shows it (``%pdt show``) with **Retry**, **Kill** (live jobs), **Why** and the ``%pdt debug`` line
to run; **Retry failed** resets every failed job of the task, and **Retry outdated** (offered only
while the task has some) every job done by code that has changed since, so that it runs again.

A click may arrive on the kernel's main thread or, with ipykernel 7 comm subshells, on another
thread: every callback hands its coroutine to the pipeline's loop with
:func:`~pdtnb.notebook.kernel_loop.submit` and returns at once, so the kernel never blocks on a
button. Before acting, the dashboard makes sure it drives the notebook's current definition of the
pipeline (see :meth:`PipelineController.latest`): after the pipeline cell was edited and re-run, a
click acts on the new definition (``follow=False``: the dashboard greys out and refuses).
"""

from __future__ import annotations

import asyncio
import base64
import html
import inspect
import io
import logging
import re
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from typing import Any, Literal

import ipywidgets

from ..errors import one_line
from ..pipeline import Pipeline, RunSummary
from ..status import PipelineStatus, TaskStatus
from ..task.executor import dask_dashboard_link
from .controller import JobEntry, PipelineController, controller_for
from .feed import StatusFeed
from .kernel_loop import submit
from .live import LiveView, redefined_note
from .progress import progress_html
from .status_view import STATUS_CSS, caption_html, render_status_html, status_text
from .style import DARK_TEXT_STATES, STATE_COLOURS, STATE_TEXT_COLOURS, STATES

__all__ = ["Dashboard"]

log = logging.getLogger("pdtnb.notebook")

_MAX_SUGGESTIONS = 200
#: Jobs a list shows (the count says how many there are).
_LIST_LIMIT = 200
#: Seconds between two drawings of the timeline while its tab is open and jobs change.
_TIMELINE_EVERY = 5.0
#: Seconds at least between two drawings of the graph (the table follows every refresh).
_GRAPH_EVERY = 1.5

_DASHBOARD_CSS = """<style>
.pdtnb-dashboard .pdtnb-table {font-family: var(--jp-code-font-family, monospace); font-size: 12px;}
.pdtnb-dashboard .pdtnb-table .widget-html, .pdtnb-dashboard .pdtnb-table .widget-html-content {
  line-height: 22px; height: 22px; margin: 0 2px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;}
.pdtnb-dashboard .pdtnb-table button {height: 22px; line-height: 20px; padding: 0 6px; margin: 1px 2px;
  font-family: var(--jp-code-font-family, monospace); font-size: 12px; min-width: 3em;}
.pdtnb-dashboard .pdtnb-table button:disabled {opacity: 1; background: transparent; color: #aaa;
  box-shadow: none; cursor: default;}
.pdtnb-dashboard .pdtnb-table .pdtnb-task-name button, .pdtnb-dashboard button.pdtnb-task-name {
  background: transparent; box-shadow: none; text-align: left; font-weight: bold;}
.pdtnb-dashboard button.pdtnb-task-name.pdtnb-selected {background: #E8F1FB; outline: 1px solid #5DA5DA;}
.pdtnb-dashboard .pdtnb-head {color: #666; font-size: 11px;}
.pdtnb-dashboard .pdtnb-job-list select {font-family: var(--jp-code-font-family, monospace); font-size: 12px;}
.pdtnb-dashboard .pdtnb-panel {border-left: 3px solid #E2E6EB; padding-left: 8px; margin: 4px 0;}
.pdtnb-retired {opacity: 0.55; filter: grayscale(0.8);}
.pdtnb-dashboard .pdtnb-notice {color: #8C2D2D;}
.pdtnb-dashboard .pdtnb-graph svg {max-width: 100%; height: auto;}
</style>"""


def _counts(status: PipelineStatus, task: str) -> tuple[int, ...]:
    """``task``'s count in each job state: what, when it changes, may have moved one of its jobs."""
    row = status.task(task)
    return tuple(row.count(state) for state in STATES)


def _now() -> str:
    return f"{datetime.now(timezone.utc):%H:%M:%S} UTC"


def _graph_supports_form() -> bool:
    try:
        from .graph import PipelineGraph

        return "form" in inspect.signature(PipelineGraph).parameters
    except Exception:
        return False


class Dashboard(LiveView, ipywidgets.VBox):
    """Live status, launch controls, the failure loop, the dependency graph and the timeline of a
    pipeline.

    Create it on the pipeline's loop (in a cell, after the pipeline is open, or through
    ``%pdt dashboard``, which opens it first); :meth:`start` begins the live updates. ``follow``
    (default True): when the notebook redefines the pipeline, drive the new definition; False:
    grey out and refuse to act.
    """

    def __init__(
        self,
        pipeline: Pipeline | PipelineController,
        interval: float = 1.0,
        graph: bool = True,
        follow: bool = True,
    ):
        controller = pipeline if isinstance(pipeline, PipelineController) else controller_for(pipeline)
        super().__init__()
        self._init_live(controller, interval, follow)
        self._show_graph = graph
        self._graph_key: Any = None
        self._graph_markup = ""  # the last drawing, for the static copy
        self._graph_at = -1e9
        self._graph_drawing = False  # a drawer runs (see _redraw)
        self._graph_wanted = False  # newer counts came since the drawer last looked
        self._graph_base: Any = None
        self._timeline_at = 0.0
        self._timeline_key: Any = None
        self._status: PipelineStatus | None = None
        self._feed_state = self.controller.feed.state
        self._taken_at: Any = None
        self._rates: Any = None
        self._home_loop: asyncio.AbstractEventLoop | None = None
        self._suggest_key: Any = None
        self._run_pending = False
        self._list_key: tuple[str, str] | None = None
        self._dask_links: dict[int, tuple[Any, str | None]] = {}  # task id: (task, Dask dashboard)
        self._job_key: tuple[str, str] | None = None
        self._job_state: str | None = None
        self.actions_done = 0

        self.caption = ipywidgets.HTML(value=_DASHBOARD_CSS)
        self.caption.add_class("pdtnb-caption")

        # ---- the table: one row of widgets per task; every count is a button ----
        self.table = ipywidgets.GridBox(
            layout=ipywidgets.Layout(
                grid_template_columns=f"max-content 300px repeat({len(STATES)}, max-content) minmax(8em, 1fr)",
                align_items="center",
                width="100%",
            )
        )
        self.table.add_class("pdtnb-table")
        self.status_widget = self.table
        self.task_buttons: dict[str, ipywidgets.Button] = {}
        self.count_buttons: dict[tuple[str, str], ipywidgets.Button] = {}
        self.progress_cells: dict[str, ipywidgets.HTML] = {}
        self.link_cells: dict[str, ipywidgets.HTML] = {}
        self._rows_for: tuple[str, ...] = ()

        # ---- the launch panel ----
        names = list(self.controller.pipeline.tasks)
        self.task_picker = ipywidgets.Dropdown(
            options=names,
            value=names[0] if names else None,
            description="task",
            layout=ipywidgets.Layout(width="auto"),
            style={"description_width": "initial"},
        )
        self.state_picker = ipywidgets.Dropdown(
            options=list(STATES),
            value="ready",
            description="jobs",
            layout=ipywidgets.Layout(width="auto"),
            style={"description_width": "initial"},
        )
        self.state_picker.add_class("pdtnb-state-picker")
        self.job_field = ipywidgets.Combobox(
            placeholder="job id",
            description="job",
            ensure_option=False,
            layout=ipywidgets.Layout(width="24em"),
            style={"description_width": "initial"},
        )
        self.force_box = ipywidgets.Checkbox(
            value=False, description="force", indent=False, layout=ipywidgets.Layout(width="auto")
        )
        self.buttons: dict[str, ipywidgets.Button] = {}
        for label, css, handler, tip in (
            ("Launch", "pdtnb-launch", self._on_launch, "start this job of this task"),
            ("Step update", "pdtnb-step-update", self._on_update, "run one update phase: reap finished jobs"),
            ("Step launch", "pdtnb-step-launch", self._on_launch_phase, "run one launch phase: start ready jobs"),
            ("Step", "pdtnb-step", self._on_step, "one round: update, then launch"),
            ("Run", "pdtnb-run", self._on_run, "run until quiet, in the background"),
            ("Stop", "pdtnb-stop", self._on_stop, "stop the background run after its round"),
            (
                "Retry failed",
                "pdtnb-retry-failed",
                self._on_retry_failed,
                "make every failed job of this task ready again",
            ),
            (
                "Retry outdated",
                "pdtnb-retry-outdated",
                self._on_retry_outdated,
                "run again every job of this task done by code that has changed since",
            ),
        ):
            button = ipywidgets.Button(description=label, tooltip=tip, layout=ipywidgets.Layout(width="auto"))
            button.add_class(css)
            button.on_click(handler)
            self.buttons[label] = button
        self.buttons["Retry outdated"].layout.display = "none"  # offered while the task has some
        self.result = ipywidgets.HTML(value="")
        self.result.add_class("pdtnb-result")
        self.task_picker.observe(self._task_changed, names="value")
        self.state_picker.observe(lambda change: self._request_quietly(self._suggest), names="value")

        panel = ipywidgets.VBox(
            [
                ipywidgets.HBox([self.task_picker, self.state_picker, self.job_field, self.force_box]),
                ipywidgets.HBox(list(self.buttons.values()), layout=ipywidgets.Layout(flex_flow="row wrap")),
                self.result,
            ]
        )

        # ---- the failure loop: a list of jobs, then one job ----
        self.jobs_title = ipywidgets.HTML()
        self.job_list = ipywidgets.Select(options=[], rows=8, layout=ipywidgets.Layout(width="calc(100% - 16px)"))
        self.job_list.add_class("pdtnb-job-list")
        self.job_list.observe(self._job_picked, names="value")
        self.list_buttons: dict[str, ipywidgets.Button] = {}
        for label, css, handler in (
            ("Retry failed", "pdtnb-list-retry-failed", self._on_retry_failed),
            ("Retry outdated", "pdtnb-list-retry-outdated", self._on_retry_outdated),
            ("Close", "pdtnb-list-close", self._on_close_list),
        ):
            button = ipywidgets.Button(description=label, layout=ipywidgets.Layout(width="auto"))
            button.add_class(css)
            button.on_click(handler)
            self.list_buttons[label] = button
        self.jobs_panel = ipywidgets.VBox(
            [self.jobs_title, self.job_list, ipywidgets.HBox(list(self.list_buttons.values()))],
            layout=ipywidgets.Layout(display="none"),
        )
        self.jobs_panel.add_class("pdtnb-jobs")
        self.jobs_panel.add_class("pdtnb-panel")

        self.job_view = ipywidgets.HTML()
        self.job_view.add_class("pdtnb-job-view")
        self.job_buttons: dict[str, ipywidgets.Button] = {}
        for label, css, handler, tip in (
            ("Retry", "pdtnb-job-retry", self._on_retry_job, "make this failed (or outdated) job ready again"),
            ("Kill", "pdtnb-job-kill", self._on_kill_job, "stop this live job and record it as killed"),
            ("Why", "pdtnb-job-why", self._on_why_job, "why is this job in its state"),
            ("Refresh", "pdtnb-job-refresh", self._on_refresh_job, "show the job again"),
            ("Close", "pdtnb-job-close", self._on_close_job, "hide the job"),
        ):
            button = ipywidgets.Button(description=label, tooltip=tip, layout=ipywidgets.Layout(width="auto"))
            button.add_class(css)
            button.on_click(handler)
            self.job_buttons[label] = button
        self.job_buttons["Kill"].button_style = "danger"
        self.debug_hint = ipywidgets.HTML()
        self.debug_hint.add_class("pdtnb-debug-hint")
        self.job_panel = ipywidgets.VBox(
            [ipywidgets.HBox(list(self.job_buttons.values())), self.debug_hint, self.job_view],
            layout=ipywidgets.Layout(display="none"),
        )
        self.job_panel.add_class("pdtnb-job")
        self.job_panel.add_class("pdtnb-panel")

        # ---- graph and timeline ----
        self._graph_svg = _graph_supports_form()
        if self._graph_svg:
            self.graph_widget: ipywidgets.DOMWidget = ipywidgets.HTML(
                layout=ipywidgets.Layout(width="100%", display="none", overflow="auto")
            )
        else:  # hidden until the first drawing arrives (an empty image shows as a broken icon)
            self.graph_widget = ipywidgets.Image(
                format="png", layout=ipywidgets.Layout(max_width="min(100%, 900px)", display="none")
            )
        self.graph_widget.add_class("pdtnb-graph")
        self.graph_picker = ipywidgets.ToggleButtons(
            options=names,
            value=self.task_picker.value,
            style={"button_width": "auto"},
            tooltips=[f"select {n} in the launch panel" for n in names],
        )
        self.graph_picker.add_class("pdtnb-graph-picker")
        self.graph_picker.observe(self._graph_task_picked, names="value")
        self.timeline_widget = ipywidgets.HTML(value="<i>the timeline is drawn when this tab is open</i>")
        self.timeline_widget.add_class("pdtnb-timeline")
        below: list[ipywidgets.Widget] = []
        self.views: ipywidgets.Tab | None = None
        if graph:
            picker_row = ipywidgets.HBox(
                [ipywidgets.HTML('<span style="color:#666">select a task:</span>'), self.graph_picker],
                layout=ipywidgets.Layout(align_items="center"),
            )
            self.views = ipywidgets.Tab(
                children=[ipywidgets.VBox([picker_row, self.graph_widget]), self.timeline_widget]
            )
            self.views.set_title(0, "graph")
            self.views.set_title(1, "timeline")
            self.views.observe(self._tab_changed, names="selected_index")
            below = [self.views]

        self.children = [self.caption, self.table, panel, self.jobs_panel, self.job_panel, *below]
        self.add_class("pdtnb-dashboard")
        self._build_rows(names)

    def __repr__(self) -> str:
        return f"Dashboard({self.controller.name or 'pipeline'})"

    # ---- live updates ----------------------------------------------------------------------

    def start(self) -> Dashboard:
        """Start following the pipeline (call on the pipeline's loop)."""
        self._home_loop = asyncio.get_running_loop()
        super().start()
        self._request_quietly(self._suggest)
        return self

    def render(self, feed: StatusFeed) -> None:
        status = feed.last
        if status is None:
            self._set_caption(feed)
            return
        self._status, self._feed_state, self._rates = status, feed.state, feed.rates
        self._taken_at = feed.taken_at or status.taken_at
        names = tuple(t.name for t in status.tasks)
        if names != self._rows_for:
            self._build_rows(list(names))
        for t in status.tasks:
            self._render_row(t)
        self._set_caption(feed)
        self._hint()
        if self._run_pending and feed.state.phase in ("finished", "stopped", "failed"):
            self._run_pending = False
            self.result.value = f"<pre>{html.escape(feed.state.line.replace('last run ', 'run ', 1))}</pre>"
        key = (
            self.task_picker.value,
            self.state_picker.value,
            status.task(self.task_picker.value).count(self.state_picker.value)
            if self.task_picker.value in names
            else None,
        )
        if key != self._suggest_key:
            self._request_quietly(self._suggest)
        if self._list_key is not None:
            task, state = self._list_key
            if task in names and status.task(task).count(state) != self._listed_count:
                self._request_quietly(lambda: self.open_list(task, state, quiet=True))
        if self._job_key is not None:  # the open job's view follows its task, as the list does
            job_task, job = self._job_key
            if job_task in names and _counts(status, job_task) != self._job_counts:
                self._job_counts = _counts(status, job_task)
                self._request_quietly(lambda: self.open_job(job_task, job, refresh=True))
        if self._show_graph:
            self._request_quietly(lambda: self._redraw(status))
            if self.views is not None and self.views.selected_index == 1:
                self._request_quietly(self._draw_timeline)

    _listed_count = -1
    #: The counts of the open job's task when its view was last drawn.
    _job_counts: tuple[int, ...] | None = None

    def _set_caption(self, feed: StatusFeed) -> None:
        markup = caption_html(
            self.controller, feed.state, self._taken_at, live=True, interval=self.interval, note=self.redefined_note
        )
        if feed.error is not None:
            markup += (
                f' <span class="pdtnb-error" style="color:#E15759">status refresh failed: '
                f"{html.escape(one_line(feed.error))}</span>"
            )
        self.caption.value = (
            f'{_DASHBOARD_CSS}{STATUS_CSS}<div class="pdtnb-status" style="color:#666;font-size:11px">{markup}</div>'
        )

    def _build_rows(self, names: list[str]) -> None:
        cells: list[ipywidgets.Widget] = []
        for head in ("task", "progress", *STATES, "links (jobs)"):
            cell = ipywidgets.HTML(f'<span class="pdtnb-head">{head}</span>')
            cells.append(cell)
        self.task_buttons, self.count_buttons, self.progress_cells, self.link_cells = {}, {}, {}, {}
        for name in names:
            button = ipywidgets.Button(
                description=name, tooltip=f"select {name}", layout=ipywidgets.Layout(width="auto")
            )
            button.add_class("pdtnb-task-name")
            button.on_click(lambda _b, name=name: self._select_task(name))
            self.task_buttons[name] = button
            cells.append(button)
            progress = ipywidgets.HTML()
            progress.add_class("pdtnb-progress-cell")
            self.progress_cells[name] = progress
            cells.append(progress)
            for state in STATES:
                count = ipywidgets.Button(description="0", disabled=True, layout=ipywidgets.Layout(width="auto"))
                count.add_class("pdtnb-count")
                count.add_class(f"pdtnb-count-{state}")
                count.on_click(lambda _b, name=name, state=state: self._on_count(name, state))
                self.count_buttons[(name, state)] = count
                cells.append(count)
            links = ipywidgets.HTML()
            links.add_class("pdtnb-links")
            self.link_cells[name] = links
            cells.append(links)
        self.table.children = cells
        self._rows_for = tuple(names)
        if list(self.task_picker.options) != names:
            current = self.task_picker.value
            self.task_picker.options = names
            self.graph_picker.options = names
            self.graph_picker.tooltips = [f"select {n} in the launch panel" for n in names]
            if current in names:
                self.task_picker.value = current
        self._mark_selected()

    def _dask_link(self, name: str) -> str:
        """A link to the Dask dashboard of the cluster running task ``name``'s bodies ("" if none)."""
        task = self.controller.pipeline.tasks.get(name)
        if task is None:
            return ""
        cache = self._dask_links
        if id(task) not in cache:
            cache[id(task)] = (task, dask_dashboard_link(task))  # the task is kept: its id stays its own
        url = cache[id(task)][1]
        if not url:
            return ""
        return (
            f' · <a class="pdtnb-dask-link" href="{html.escape(url, quote=True)}" target="_blank" '
            f'rel="noopener" title="this task runs on a Dask cluster: its dashboard">Dask dashboard</a>'
        )

    def _render_row(self, t: TaskStatus) -> None:
        self.progress_cells[t.name].value = progress_html(t, self._rates, self._feed_state, width=130)
        self.link_cells[t.name].value = (
            '<span style="color:#555">'
            + html.escape(", ".join(f"{link.name} {link.count}" for link in t.links))
            + "</span>"
            + self._dask_link(t.name)
        )
        self.task_buttons[t.name].description = t.name + (" (disabled)" if t.disabled else "")
        for state in STATES:
            n = t.count(state)
            button = self.count_buttons[(t.name, state)]
            button.description = str(n)
            noun = "job" if n == 1 else "jobs"
            button.tooltip = f"{n} {state} {noun} of {t.name}" + (": click to list them" if n else "")
            if n and not self.stale:
                button.disabled = False
                button.style.button_color = STATE_COLOURS[state]
                button.style.text_color = "#222" if state in DARK_TEXT_STATES else "white"
                button.style.font_weight = "bold"
            else:
                button.disabled = True
                button.style.button_color = "transparent"
                button.style.text_color = "#aaa"
                button.style.font_weight = "normal"

    def _hint(self) -> None:
        """The job field's hint: how many jobs of the chosen task are in the chosen state, from
        the same snapshot as the table (never a stale or capped count)."""
        status, task, state = self._status, self.task_picker.value, self.state_picker.value
        if status is None or task not in self._rows_for:
            return
        self._offer_outdated(status.task(task))
        n = status.task(task).count(state)
        if n == 0:
            hint = f"no {state} job of {task}: type a job id"
        else:
            noun = "job" if n == 1 else "jobs"
            hint = f"job id: {n} {state} {noun} of {task}" + (
                f" (the first {_MAX_SUGGESTIONS} offered)" if n > _MAX_SUGGESTIONS else ""
            )
        if self.job_field.placeholder != hint:
            self.job_field.placeholder = hint

    def _offer_outdated(self, t: TaskStatus) -> None:
        """Show **Retry outdated** in the launch panel only while the chosen task has outdated
        jobs, saying how many."""
        button = self.buttons["Retry outdated"]
        n = t.outdated
        display = None if n and not self.stale else "none"
        if n:
            label = f"Retry {n} outdated"
            if button.description != label:
                button.description = label
            noun = "job" if n == 1 else "jobs"
            button.tooltip = f"run again the {n} {noun} of {t.name} done by code that has changed since"
        if button.layout.display != display:
            button.layout.display = display

    async def _suggest(self) -> None:
        task, state = self.task_picker.value, self.state_picker.value
        if task is None or self.stale or not self.controller.pipeline.is_open:
            return
        try:
            entries = await self.controller.jobs(task, state, limit=_MAX_SUGGESTIONS)
        except Exception:
            return
        status = self._status
        count = status.task(task).count(state) if status is not None and task in self._rows_for else None
        self._suggest_key = (task, state, count)
        self.job_field.options = tuple(e.job for e in entries)
        self._hint()

    async def _redraw(self, status: PipelineStatus) -> None:
        """Have the graph show the newest counts. One drawer at a time draws, from the newest
        status, at most once every ``_GRAPH_EVERY`` s (drawing costs); a request while it sleeps
        or draws makes it look again when done. So no count is lost to a request that came
        during a drawing, and an older drawing never lands after a newer one."""
        self._graph_wanted = True
        if self._graph_drawing:
            return
        self._graph_drawing = True
        try:
            loop = asyncio.get_running_loop()
            while self._graph_wanted:
                self._graph_wanted = False
                wait = self._graph_at + _GRAPH_EVERY - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                newest = self._status if self._status is not None else status
                key = (
                    tuple(
                        (t.name, *(t.count(s) for s in STATES), tuple(link.count for link in t.links))
                        for t in newest.tasks
                    ),
                    id(self.controller),
                )
                if key != self._graph_key:
                    await self._draw_graph(newest, key)
        finally:
            self._graph_drawing = False

    async def _draw_graph(self, status: PipelineStatus, key: Any) -> None:
        """Draw ``status`` into the graph view (SVG where the front end shows it, else PNG)."""
        loop = asyncio.get_running_loop()
        self._graph_key = key
        self._graph_at = loop.time()
        from .graph import PipelineGraph

        pipeline = self.controller.pipeline
        try:
            if self._graph_svg:
                if self._graph_base is None or self._graph_base.pipeline is not pipeline:
                    self._graph_base = PipelineGraph(pipeline, status, form="auto")
                graph = self._graph_base.with_status(status)  # the layout is computed once
                svg = await asyncio.to_thread(graph.to_svg)
                markup = svg[svg.find("<svg") :] if "<svg" in svg else svg
                # The drawing may trail the table by up to _GRAPH_EVERY seconds: say which counts it shows.
                when = (
                    f'<div class="pdtnb-graph-when" style="color:#666;font-size:11px">counts on the graph as of '
                    f"{status.taken_at:%H:%M:%S} UTC</div>"
                )
                self.graph_widget.value = f'{when}<div class="pdtnb-graph-svg" style="max-width:100%">{markup}</div>'
                self._graph_markup = self.graph_widget.value
            else:
                graph = PipelineGraph(pipeline, status)
                png = await asyncio.to_thread(graph.to_png)
                self.graph_widget.value = png
                self._graph_markup = (
                    f'<img alt="the dependency graph" style="max-width:min(100%,900px)" '
                    f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                )
        except Exception as e:  # drawn, not raised: a background task has no cell to fail
            log.exception("drawing the graph failed")
            self._graph_key = None
            self._graph_markup = f"<i>the graph could not be drawn: {html.escape(one_line(e))}</i>"
            return
        self.graph_widget.layout.display = None

    def _tab_changed(self, change: dict[str, Any]) -> None:
        if change.get("new") == 1:
            self._timeline_at = 0.0
            self._request_quietly(self._draw_timeline)

    async def _draw_timeline(self) -> None:
        loop = asyncio.get_running_loop()
        status = self._status
        key = None if status is None else tuple((t.name, t.live, t.done, t.failed) for t in status.tasks)
        if key == self._timeline_key and status is not None and not any(t.live for t in status.tasks):
            return
        if loop.time() - self._timeline_at < _TIMELINE_EVERY and self._timeline_key is not None:
            return
        self._timeline_at = loop.time()
        self._timeline_key = key
        try:
            from .timeline import timeline_figure
        except ImportError:
            self.timeline_widget.value = "<i>the timeline needs pdtnb.notebook.timeline</i>"
            return
        try:
            figure = await timeline_figure(self.controller.pipeline)

            def to_png() -> bytes:
                buf = io.BytesIO()
                figure.savefig(buf, format="png", dpi=100, facecolor="white")
                return buf.getvalue()

            png = await asyncio.to_thread(to_png)
        except Exception as e:
            self.timeline_widget.value = f"<i>the timeline could not be drawn: {html.escape(one_line(e))}</i>"
            return
        self.timeline_widget.value = (
            f'<img alt="timeline" style="max-width:min(100%,1000px)" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        )

    # ---- redefinition ----------------------------------------------------------------------

    def on_redefined(self, old: PipelineController, new: PipelineController) -> None:
        self._graph_key = None
        self._timeline_key = None
        names = list(new.pipeline.tasks)
        if tuple(names) != self._rows_for:
            self._build_rows(names)
        self.result.value = f'<pre class="pdtnb-notice">{html.escape(self.redefined_note)}</pre>'
        self._hide_panels()

    def on_stale(self) -> None:
        notice = self.stale_notice()
        self.add_class("pdtnb-retired")
        for button in self._all_buttons():
            button.disabled = True
        for field in (
            self.task_picker,
            self.state_picker,
            self.job_field,
            self.force_box,
            self.job_list,
            self.graph_picker,
        ):
            field.disabled = True
        self.result.value = f'<pre class="pdtnb-notice pdtnb-error" style="color:#8C2D2D">{html.escape(notice)}</pre>'
        self.caption.value += f'<div class="pdtnb-notice" style="color:#8C2D2D">{html.escape(notice)}</div>'

    def _all_buttons(self) -> list[ipywidgets.Button]:
        return [
            *self.buttons.values(),
            *self.list_buttons.values(),
            *self.job_buttons.values(),
            *self.count_buttons.values(),
            *self.task_buttons.values(),
        ]

    # ---- the static copy -------------------------------------------------------------------

    def snapshot_html(self, note: str) -> str:
        caption = caption_html(self.controller, self._feed_state, self._taken_at, live=False, note=note)
        if self._status is None:
            return f"<div><i>{caption}</i></div>"
        table = render_status_html(self._status, caption_markup=caption, rates=self._rates, state=self._feed_state)
        return f'<div class="pdtnb-dashboard-copy">{table}{self._graph_markup}</div>'

    def snapshot_text(self) -> str:
        caption = caption_html(self.controller, self._feed_state, self._taken_at, live=False)
        headline = f"Dashboard({html.unescape(re.sub(r'<[^>]+>', '', caption))})"
        return status_text(self._status, headline, self._rates, self._feed_state)

    def close(self) -> None:
        """Stop the live updates; the outputs showing the dashboard become a static copy of its
        last state; close the widgets."""
        self.finalize(f"closed at {_now()}; the last state it showed")
        self._end_live()
        for child in [*self._all_buttons(), *self.progress_cells.values(), *self.link_cells.values()]:
            child.close()
        super().close()

    # ---- choosing a task -------------------------------------------------------------------

    def _task_changed(self, change: dict[str, Any]) -> None:
        if change.get("new") is not None and self.graph_picker.value != change["new"]:
            if change["new"] in self.graph_picker.options:
                self.graph_picker.value = change["new"]
        self._mark_selected()
        self._hint()
        self._request_quietly(self._suggest)

    def _graph_task_picked(self, change: dict[str, Any]) -> None:
        if change.get("new") is not None and self.task_picker.value != change["new"]:
            self._select_task(change["new"])

    def _select_task(self, name: str) -> None:
        """Select ``name`` in the launch panel (from the table or the graph), and in the open list."""
        if name in self.task_picker.options:
            self.task_picker.value = name
        if self._list_key is not None and self._list_key[0] != name:
            state = self._list_key[1]
            self._request_quietly(lambda: self.open_list(name, state))

    def _mark_selected(self) -> None:
        for name, button in self.task_buttons.items():
            if name == self.task_picker.value:
                button.add_class("pdtnb-selected")
            else:
                button.remove_class("pdtnb-selected")

    # ---- the failure loop ------------------------------------------------------------------

    def _on_count(self, task: str, state: str) -> None:
        if task in self.task_picker.options:
            self.task_picker.value = task
        if state in self.state_picker.options:
            self.state_picker.value = state
        self._request_quietly(lambda: self.open_list(task, state))

    async def open_list(self, task: str, state: str, quiet: bool = False) -> None:
        """List the jobs of ``task`` in ``state`` below the table (what a click on the count
        does), with their one-line reasons for failed, retrying and blocked jobs."""
        try:
            entries = await self.controller.jobs(task, state, limit=_LIST_LIMIT)
        except Exception as e:
            if not quiet:
                self._show_error(f"listing the {state} jobs of {task}: {one_line(e)}")
            return
        status = self._status
        total = status.task(task).count(state) if status is not None and task in self._rows_for else len(entries)
        self._listed_count = total
        self._list_key = (task, state)
        colour = STATE_TEXT_COLOURS.get(state) or STATE_COLOURS.get(state, "#666")
        noun = "job" if total == 1 else "jobs"
        shown = f" (the first {len(entries)} shown)" if total > len(entries) else ""
        if entries:
            self.jobs_title.value = (
                f'<b>{html.escape(task)}</b>: <span style="color:{colour};font-weight:bold">{total} {state}</span> '
                f"{noun}{shown} · click one to see it"
            )
        else:
            self.jobs_title.value = f"<b>{html.escape(task)}</b>: no {state} job now"
        options = [(_entry_label(e), e.job) for e in entries]
        previous = self.job_list.value
        self._picking = True
        try:
            self.job_list.options = options
            self.job_list.value = previous if previous in {e.job for e in entries} else None
        finally:
            self._picking = False
        self.list_buttons["Retry failed"].layout.display = (
            None if state in ("failed", "retrying") and entries else "none"
        )
        self.list_buttons["Retry outdated"].layout.display = None if state == "outdated" and entries else "none"
        self.job_list.rows = max(2, min(8, len(entries)))
        self.job_list.layout.display = None if entries else "none"
        self.jobs_panel.layout.display = None

    _picking = False

    def _job_picked(self, change: dict[str, Any]) -> None:
        job = change.get("new")
        if self._picking or not job or self._list_key is None:
            return
        task = self._list_key[0]
        self._request_quietly(lambda: self.open_job(task, job))

    async def open_job(self, task: str, job: str, refresh: bool = False) -> None:
        """Show one job (what a click on it in the list does): its ``%pdt show`` view, with Retry
        for a failed job, Kill for a live one, Why, and the ``%pdt debug`` line to run. The view
        is shown again whenever its task's counts change (``refresh``: then the job field, which
        the user may be typing in, is left alone), so it never says a state the job has left."""
        try:
            details = await self.controller.show(task, job)
        except Exception as e:
            if not refresh:
                self._show_error(f"show {task} {job}: {one_line(e)}")
            return
        if refresh and self._job_key != (task, job):
            return  # closed, or another job opened, meanwhile
        self._job_key = (task, job)
        self._job_state = details.state
        if self._status is not None and task in self._rows_for:
            self._job_counts = _counts(self._status, task)
        if not refresh:
            self.job_field.value = job
        output: dict[str, str] = {}
        markup = ""
        try:
            from .job_views import JobView, live_output

            if details.state == "live":
                output = await live_output(self.controller.pipeline.tasks[task], job)
            markup = JobView(details, output)._repr_html_()
        except ImportError:
            markup = f"<pre>{html.escape(details.to_text())}</pre>"
        self.job_view.value = markup
        failed = details.state in ("failed", "retrying", "corrupt")
        retryable = failed or details.state == "outdated"
        self.job_buttons["Retry"].disabled = not retryable or self.stale
        self.job_buttons["Kill"].disabled = details.state != "live" or self.stale
        self.job_buttons["Kill"].layout.display = None if details.state == "live" else "none"
        killed = details.record is not None and str(details.record.outcome) == "killed"
        if details.state == "outdated":
            self.debug_hint.value = _outdated_hint(details.changed)
        elif failed and not killed:
            self.debug_hint.value = (
                f'<span style="color:#555">to debug it, run <code>%pdt debug {html.escape(task)} '
                f"{html.escape(job)}</code> in a cell</span>"
            )
        else:
            self.debug_hint.value = ""
        self.job_panel.layout.display = None

    def _hide_panels(self) -> None:
        self.jobs_panel.layout.display = "none"
        self.job_panel.layout.display = "none"
        self._list_key = None
        self._job_key = None

    def _on_close_list(self, _button: Any = None) -> None:
        self._hide_panels()

    def _on_close_job(self, _button: Any = None) -> None:
        self.job_panel.layout.display = "none"
        self._job_key = None

    def _on_refresh_job(self, _button: Any = None) -> None:
        if self._job_key is not None:
            task, job = self._job_key
            self._request_quietly(lambda: self.open_job(task, job))

    def _on_retry_job(self, _button: Any = None) -> None:
        if self._job_key is None:
            return
        task, job = self._job_key
        outdated = self._job_state == "outdated"
        self._request(
            f"retry {task} {job}", lambda c: c.retry(task, [job], outdated=outdated), after=self._after_job_action
        )

    def _on_kill_job(self, _button: Any = None) -> None:
        if self._job_key is None:
            return
        task, job = self._job_key
        self._request(f"kill {task} {job}", lambda c: _kill(c, task, job), after=self._after_job_action)

    def _on_why_job(self, _button: Any = None) -> None:
        if self._job_key is None:
            return
        task, job = self._job_key
        self._request(f"why {task} {job}", lambda c: c.why(task, job))

    def _on_retry_failed(self, _button: Any = None) -> None:
        self._retry_all(_button, "failed")

    def _on_retry_outdated(self, _button: Any = None) -> None:
        self._retry_all(_button, "outdated")

    def _retry_all(self, button: Any, which: Literal["failed", "outdated"]) -> None:
        """Retry every ``which`` (failed or outdated) job of a task: the open list's task when the
        button is the list's, else the launch panel's."""
        task = (
            self._list_key[0]
            if self._list_key is not None and button in self.list_buttons.values()
            else self.task_picker.value
        )
        if not task:
            self._show_error("choose a task")
            return
        self._request(
            f"retry {which} {task}",
            lambda c: c.retry(task, failed=which == "failed", outdated=which == "outdated"),
            after=self._after_job_action,
        )

    async def _after_job_action(self) -> None:
        await self.controller.feed.refresh()
        if self._job_key is not None:
            await self.open_job(*self._job_key)
        if self._list_key is not None:
            await self.open_list(*self._list_key, quiet=True)

    # ---- actions ---------------------------------------------------------------------------

    def _action_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop to act on: the pipeline's; for a definition the notebook replaced, the loop
        the dashboard lives on (the new definition opens there)."""
        controller = self.controller
        if controller.retired or controller.current().rebound() is not None:
            loop = controller.current().loop or self._home_loop
        else:
            loop = controller.loop
        return loop if loop is not None and not loop.is_closed() else None

    def _request_quietly(self, action: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        loop = self._action_loop()
        if loop is not None and not self.ended:
            submit(self._quietly(action), loop)

    async def _quietly(self, action: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        try:
            await action()
        except Exception:
            log.debug("dashboard update failed", exc_info=True)

    def _request(
        self,
        label: str,
        action: Callable[[PipelineController], Coroutine[Any, Any, Any]],
        after: Callable[[], Coroutine[Any, Any, Any]] | None = None,
    ) -> None:
        """Run ``action(controller)`` on the pipeline's loop, showing its outcome; returns at once."""
        if self.stale:
            self._show_error(self.stale_notice())
            return
        loop = self._action_loop()
        if loop is None:
            self._show_error("the pipeline is not open: run %pdt open")
            return
        submit(self._act(label, action, after), loop)

    async def _acting_controller(self) -> PipelineController | None:
        """The controller to act through: the notebook's current definition (following a
        redefinition), or None when this dashboard refuses (``follow=False``)."""
        old = self.controller
        if self.follow:
            newest = await old.latest()
            if newest is not old:
                if not self.redefined_note:
                    self.redefined_note = redefined_note(old)
                self._attach(newest)
                self.on_redefined(old, newest)
            return newest
        if old.retired or old.rebound() is not None:
            self._go_stale()
            return None
        return old

    async def _act(
        self,
        label: str,
        action: Callable[[PipelineController], Coroutine[Any, Any, Any]],
        after: Callable[[], Coroutine[Any, Any, Any]] | None = None,
    ) -> None:
        self.result.value = f"<i>{html.escape(label)}…</i>"
        try:
            controller = await self._acting_controller()
            if controller is None:
                self._show_error(self.stale_notice())
                return
            outcome = await action(controller)
        except Exception as e:
            self._show_error(f"{label}: {one_line(e)}")
        else:
            text, failed = _describe(label, outcome)
            if label == "run" and not failed:
                self._run_pending = True
            if failed:
                self._show_error(text)
            else:
                self.result.value = f"<pre>{html.escape(text)}</pre>"
            if after is not None:
                try:
                    await after()
                except Exception:
                    log.debug("refreshing after %s failed", label, exc_info=True)
        finally:
            self.actions_done += 1
        await self._suggest()

    def _show_error(self, message: str) -> None:
        self.result.value = f'<pre class="pdtnb-error" style="color:#E15759">{html.escape(message)}</pre>'

    def _on_launch(self, _button: Any = None) -> None:
        task, job = self.task_picker.value, (self.job_field.value or "").strip()
        if not task or not job:
            self._show_error("choose a task and type (or pick) a job id")
            return
        force = self.force_box.value
        self._request(f"launch {task} {job}", lambda c: c.launch(task, job, force=force))

    def _on_update(self, _button: Any = None) -> None:
        self._request("update phase", lambda c: c.update())

    def _on_launch_phase(self, _button: Any = None) -> None:
        self._request("launch phase", lambda c: c.launch_phase())

    def _on_step(self, _button: Any = None) -> None:
        self._request("step", lambda c: c.step())

    def _on_run(self, _button: Any = None) -> None:
        self._request("run", lambda c: c.start_run())

    def _on_stop(self, _button: Any = None) -> None:
        self._request("stop", _stop)


async def _stop(controller: PipelineController) -> Any:
    summary = await controller.stop()
    if summary is None:
        return "no background run to stop"
    live = 0
    try:
        status = await controller.feed.refresh()
        live = sum(t.live for t in status.tasks)
    except Exception:
        pass
    line = summary.describe()
    if live:
        noun = "job is" if live == 1 else "jobs are"
        line += f"; {live} {noun} still live: recorded as they end, nothing new is launched"
    return line


async def _kill(controller: PipelineController, task: str, job: str) -> Any:
    """Kill a live job; its record, or a line when a concurrent reap is still writing it."""
    record = await controller.kill(task, job)
    for _ in range(40):  # a run's update phase may be recording the end of the job right now
        if record is not None:
            return record
        await asyncio.sleep(0.05)
        details = await controller.show(task, job)
        if details.state != "live" and details.record is not None:
            record = details.record
    return f"{task} {job}: killed"


def _outdated_hint(changes: list[str] | None) -> str:
    """The line over an outdated job's view: what changed in its task's code since it ran (what
    ``show`` found, :attr:`pdtnb.failures.JobDetails.changed`)."""
    what = "; ".join(changes or ["the task's code changed"])
    return (
        f'<span style="color:#555">done by code that has changed since: <b>{html.escape(what)}</b>; '
        "Retry runs it again with the code as it is now</span>"
    )


def _entry_label(e: JobEntry) -> str:
    text = e.line() if e.reason else e.job
    if e.attempt > 1:
        text = f"{e.job} (attempt {e.attempt}): {e.reason}"
    return text if len(text) <= 160 else text[:157] + "..."


def _describe(label: str, outcome: Any) -> tuple[str, bool]:
    """A one-line account of an action's outcome, and whether it is a failure."""
    from ..admin import LaunchOutcome
    from ..failures import Explanation, RetryResult
    from ..record import JobRecord

    if isinstance(outcome, LaunchOutcome):
        where = f"{outcome.task}:{outcome.job}"
        refusal = outcome.refusal()
        if refusal is not None:
            return refusal + (" (tick force to launch anyway)" if outcome.forcible else ""), True
        done = outcome.done
        if isinstance(done, dict) and done.get("result") not in (None, "success"):
            return f"{where} failed: {done.get('exception', done)}", True
        return f"{where} launched" + (" and finished" if done else ""), False
    if isinstance(outcome, asyncio.Task):
        return f"run started at {_now()}: the caption above follows it; Stop ends it", False
    if isinstance(outcome, RunSummary):
        return outcome.describe(), False
    if isinstance(outcome, RetryResult):
        return outcome.to_text().strip(), False
    if isinstance(outcome, Explanation):
        return outcome.to_text().strip(), False
    if isinstance(outcome, JobRecord):
        return f"{label.removeprefix('kill ')}: attempt {outcome.attempt} {outcome.outcome}", False
    if outcome is None:
        return f"{label}: done", False
    return str(outcome), False
