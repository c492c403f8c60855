"""The status table: one :class:`~pdtnb.PipelineStatus` rendered as HTML and text, static or live.

:class:`StatusTable` is a plain object with ``_repr_html_`` (what ``%pdt status`` returns; it
renders in any frontend and in exported HTML). :class:`LiveStatus` is an ipywidgets HTML widget
that a task on the pipeline's loop refreshes in place, as Dask's progress widgets do: the cell
returns at once and the table keeps changing while the kernel is idle.
"""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Any

import ipywidgets

from ..pipeline import RunSummary
from ..status import PipelineStatus
from .controller import PipelineController
from .style import STATE_COLOURS, STATES

__all__ = ["StatusTable", "LiveStatus", "render_status_html"]

log = logging.getLogger("pdtnb.notebook")

_CSS = """
<style>
.pdtnb-status table {border-collapse: collapse; font-family: var(--jp-code-font-family, monospace); font-size: 12px;}
.pdtnb-status th, .pdtnb-status td {padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right;}
.pdtnb-status th:first-child, .pdtnb-status td:first-child {text-align: left;}
.pdtnb-status td.links {text-align: left; color: #555;}
.pdtnb-status .zero {color: #aaa;}
.pdtnb-status .badge {display: inline-block; min-width: 1.5em; padding: 0 4px; border-radius: 3px; color: white;}
.pdtnb-status caption {text-align: left; color: #666; font-size: 11px;}
</style>
"""


def _count(state: str, n: int) -> str:
    if not n:
        return '<span class="zero">0</span>'
    return f'<span class="badge" style="background:{STATE_COLOURS[state]}">{n}</span>'


def render_status_html(status: PipelineStatus, caption: str | None = None) -> str:
    """The HTML table of a status or trace: per task its state counts and its links."""
    rows = []
    trace = status.is_trace
    for t in status.tasks:
        if trace:
            links = "; ".join(
                f"{html.escape(link.name)}: {html.escape(' '.join(link.jobs or [])) or '-'}" for link in t.links
            )
            states = t.job_states or {}
            per_job = ", ".join(f"{html.escape(j)} {html.escape(s)}" for j, s in states.items())
            rows.append(
                f"<tr><td>{html.escape(t.name)}</td><td class='links'>{per_job}</td>"
                f"<td class='links'>{links}</td></tr>"
            )
        else:
            links = ", ".join(f"{html.escape(link.name)} {link.count}" for link in t.links)
            disabled = " <i>(disabled)</i>" if t.disabled else ""
            counts = "".join(f"<td>{_count(s, getattr(t, s))}</td>" for s in STATES)
            rows.append(f"<tr><td>{html.escape(t.name)}{disabled}</td>{counts}<td class='links'>{links}</td></tr>")
    if trace:
        head = "<tr><th>task</th><th>jobs</th><th>links holding them</th></tr>"
    else:
        head = "<tr><th>task</th>" + "".join(f"<th>{s}</th>" for s in STATES) + "<th>links (jobs)</th></tr>"
    cap = caption if caption is not None else f"status at {status.taken_at:%H:%M:%S} UTC"
    return (
        f'{_CSS}<div class="pdtnb-status"><table><caption>{html.escape(cap)}</caption>'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


class StatusTable:
    """A status snapshot that displays as an HTML table in a notebook and as text elsewhere."""

    def __init__(self, status: PipelineStatus):
        self.status = status

    def _repr_html_(self) -> str:
        return render_status_html(self.status)

    def __repr__(self) -> str:
        text = self.status.to_text()
        if not self.status.is_trace:
            text += "\n".join(self.status.summary_lines()) + "\n"
        return text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


class LiveStatus(ipywidgets.HTML):
    """A status table that refreshes itself every ``interval`` seconds until closed.

    The refresh runs on the pipeline's loop, so it keeps going while no cell runs; it stops when
    the widget is closed or the pipeline closes.
    """

    def __init__(self, controller: PipelineController, interval: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_class("pdtnb-live-status")
        self.controller = controller
        self.interval = interval
        self.refreshes = 0
        self.last_refresh_seconds: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._listener = self._kick.set
        controller.add_listener(self._listener)

    def start(self) -> LiveStatus:
        """Start refreshing (on the running loop, which must be the pipeline's)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="pdtnb-live-status")
        return self

    async def refresh(self) -> PipelineStatus:
        """Recompute the status now and show it."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        status = await self.controller.status()
        markup = render_status_html(status, self._caption(status))
        if markup != self.value:
            self.value = markup
        self.refreshes += 1
        self.last_refresh_seconds = loop.time() - started
        return status

    def _caption(self, status: PipelineStatus) -> str:
        controller = self.controller
        if controller.running:
            run = " · running"
        elif isinstance(controller.last_run, RunSummary):
            run = f" · last run {controller.last_run.describe()}"
        elif isinstance(controller.last_run, BaseException):
            error = controller.last_run
            run = f" · last run failed: {' '.join(str(error).split()) or type(error).__name__}"
        else:
            run = ""
        return f"live status at {status.taken_at:%H:%M:%S} UTC{run}"

    async def _loop(self) -> None:
        try:
            await self.controller.open()  # a widget started before the pipeline was opened opens it
            while self.controller.pipeline.is_open:
                try:
                    await self.refresh()
                except Exception as e:  # shown, not raised: a background task has no cell to fail
                    self.value = f"<pre>status refresh failed: {html.escape(repr(e))}</pre>"
                self._kick.clear()
                try:
                    await asyncio.wait_for(self._kick.wait(), self.interval)
                except asyncio.TimeoutError:
                    pass
            self.value += "<div><i>pipeline closed: live updates stopped</i></div>"
        except asyncio.CancelledError:
            pass

    def close(self) -> None:
        """Stop refreshing and close the widget."""
        self.controller.remove_listener(self._listener)
        if self._task is not None and not self._task.done():
            self._task.get_loop().call_soon_threadsafe(self._task.cancel)
        super().close()
