"""The dashboard: dependency graph, live status table and launch panel in one widget.

State lives in the :class:`~pdtnb.notebook.controller.PipelineController`; the widget only renders
it and forwards clicks. A click may arrive on the kernel's main thread or, with ipykernel 7 comm
subshells, on another thread: every callback hands its coroutine to the pipeline's loop with
:func:`~pdtnb.notebook.kernel_loop.submit` and returns at once, so the kernel never blocks on a
button.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import ipywidgets

from ..pipeline import Pipeline
from ..status import PipelineStatus
from .controller import PipelineController, controller_for
from .kernel_loop import submit
from .status_view import LiveStatus

__all__ = ["Dashboard"]

log = logging.getLogger("pdtnb.notebook")

_MAX_SUGGESTIONS = 200


class Dashboard(ipywidgets.VBox):
    """Live status, launch controls and the dependency graph of a pipeline.

    Create it on the pipeline's loop (in a cell, after the pipeline is open, or through
    ``%pdt dashboard``, which opens it first); :meth:`start` begins the live updates.
    """

    def __init__(self, pipeline: Pipeline | PipelineController, interval: float = 1.0, graph: bool = True):
        self.controller = pipeline if isinstance(pipeline, PipelineController) else controller_for(pipeline)
        self.interval = interval
        self.status_widget = LiveStatus(self.controller, interval=interval)
        # Hidden until the first drawing arrives (an empty image shows as a broken icon).
        self.graph_widget = ipywidgets.Image(
            format="png", layout=ipywidgets.Layout(max_width="min(100%, 900px)", display="none")
        )
        self.graph_widget.add_class("pdtnb-graph")
        self._show_graph = graph
        self._graph_key: Any = None

        names = list(self.controller.pipeline.tasks)
        self.task_picker = ipywidgets.Dropdown(options=names, value=names[0] if names else None, description="task")
        self.job_field = ipywidgets.Combobox(placeholder="job id", description="job", ensure_option=False)
        self.force_box = ipywidgets.Checkbox(value=False, description="force", indent=False)
        self.buttons: dict[str, ipywidgets.Button] = {}
        for label, css, handler, tip in (
            ("Launch", "pdtnb-launch", self._on_launch, "start this job of this task"),
            ("Step update", "pdtnb-step-update", self._on_update, "run one update phase: reap finished jobs"),
            ("Step launch", "pdtnb-step-launch", self._on_launch_phase, "run one launch phase: start ready jobs"),
            ("Step", "pdtnb-step", self._on_step, "one round: update, then launch"),
            ("Run", "pdtnb-run", self._on_run, "run until quiet, in the background"),
            ("Stop", "pdtnb-stop", self._on_stop, "stop the background run after its round"),
        ):
            button = ipywidgets.Button(description=label, tooltip=tip, layout=ipywidgets.Layout(width="auto"))
            button.add_class(css)
            button.on_click(handler)
            self.buttons[label] = button
        self.result = ipywidgets.HTML(value="")
        self.result.add_class("pdtnb-result")
        self.task_picker.observe(lambda change: self._request_quietly(self._suggest), names="value")

        panel = ipywidgets.VBox(
            [
                ipywidgets.HBox([self.task_picker, self.job_field, self.force_box]),
                ipywidgets.HBox(list(self.buttons.values())),
                self.result,
            ]
        )
        below = [self.graph_widget] if graph else []
        super().__init__(children=[self.status_widget, panel, *below])
        self.add_class("pdtnb-dashboard")
        self._task: asyncio.Task[None] | None = None
        self.actions_done = 0

    # ---- live updates ----------------------------------------------------------------------

    def start(self) -> Dashboard:
        """Start the live table and graph updates (call on the pipeline's loop)."""
        self.status_widget.start()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="pdtnb-dashboard")
        return self

    async def _follow(self) -> None:
        try:
            await self.controller.open()
            await self._suggest()
            while self.controller.pipeline.is_open:
                status = self.controller.tracker.last
                if status is not None and self._show_graph:
                    await self._redraw(status)
                await asyncio.sleep(self.interval)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("dashboard updates stopped")

    async def _redraw(self, status: PipelineStatus) -> None:
        key = tuple((t.name, t.ready, t.live, t.done, t.failed, tuple(link.count for link in t.links))
                    for t in status.tasks)
        if key == self._graph_key:
            return
        self._graph_key = key
        from .graph import PipelineGraph

        graph = PipelineGraph(self.controller.pipeline, status)
        self.graph_widget.value = await asyncio.to_thread(graph.to_png)
        self.graph_widget.layout.display = None

    async def _suggest(self) -> None:
        task = self.task_picker.value
        if task is None:
            return
        jobs = await self.controller.ready_jobs(task, limit=_MAX_SUGGESTIONS)
        self.job_field.options = tuple(jobs)
        if not self.job_field.value and jobs:
            self.job_field.placeholder = f"job id, e.g. {jobs[0]} ({len(jobs)} ready)"

    def close(self) -> None:
        """Stop the live updates and close the widgets."""
        if self._task is not None and not self._task.done():
            self._task.get_loop().call_soon_threadsafe(self._task.cancel)
        self.status_widget.close()
        super().close()

    # ---- actions ---------------------------------------------------------------------------

    def _request_quietly(self, action: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        loop = self.controller.loop
        if loop is not None and not loop.is_closed():
            submit(action(), loop)

    def _request(self, label: str, action: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``action()`` on the pipeline's loop, showing its outcome; returns at once."""
        loop = self.controller.loop
        if loop is None or loop.is_closed():
            self._show_error("the pipeline is not open: run %pdt open")
            return
        submit(self._act(label, action), loop)

    async def _act(self, label: str, action: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self.result.value = f"<i>{html.escape(label)}…</i>"
        try:
            outcome = await action()
        except Exception as e:
            self._show_error(f"{label}: {' '.join(str(e).split()) or type(e).__name__}")
        else:
            text, failed = _describe(label, outcome)
            if failed:
                self._show_error(text)
            else:
                self.result.value = f"<pre>{html.escape(text)}</pre>"
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
        self._request(f"launch {task} {job}", lambda: self.controller.launch(task, job, force=force))

    def _on_update(self, _button: Any = None) -> None:
        self._request("update phase", self.controller.update)

    def _on_launch_phase(self, _button: Any = None) -> None:
        self._request("launch phase", self.controller.launch_phase)

    def _on_step(self, _button: Any = None) -> None:
        self._request("step", self.controller.step)

    def _on_run(self, _button: Any = None) -> None:
        self._request("run", self.controller.start_run)

    def _on_stop(self, _button: Any = None) -> None:
        self._request("stop", self.controller.stop)


def _describe(label: str, outcome: Any) -> tuple[str, bool]:
    """A one-line account of an action's outcome, and whether it is a failure."""
    from ..admin import LaunchOutcome

    if isinstance(outcome, LaunchOutcome):
        where = f"{outcome.task}:{outcome.job}"
        if outcome.state == "not_ready":
            return f"{where} is not ready (tick force to launch anyway)", True
        if outcome.state == "refused":
            return f"{where} was refused by a resource quota", True
        done = outcome.done
        if isinstance(done, dict) and done.get("result") not in (None, "success"):
            return f"{where} failed: {done.get('exception', done)}", True
        return f"{where} launched" + (" and finished" if done else ""), False
    if isinstance(outcome, asyncio.Task):
        return "running in the background (Stop ends it)", False
    if outcome is None:
        return f"{label}: done", False
    return str(outcome), False
