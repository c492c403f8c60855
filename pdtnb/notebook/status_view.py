"""The status table: one :class:`~pdtnb.PipelineStatus` rendered as HTML and text, static or live.

:class:`StatusTable` is a plain object with ``_repr_html_`` (what ``%pdt status`` returns; it
renders in any frontend and in exported HTML). :class:`LiveStatus` is an ipywidgets HTML widget
that the controller's status feed (:mod:`pdtnb.notebook.feed`) refreshes in place, as Dask's
progress widgets do: the cell returns at once and the table keeps changing while the kernel is
idle. Each row has a progress bar (:mod:`pdtnb.notebook.progress`); the caption says what the
controller is doing, from the same moment as the counts.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

import ipywidgets

from ..status import PipelineStatus
from .controller import PipelineController
from .feed import RateTracker, RunState, StatusFeed, run_state
from .live import STALE_CSS, LiveView, stale_html
from .progress import progress_html, progress_lines, progress_table_html
from .style import STATE_COLOURS, STATES

__all__ = ["StatusTable", "LiveStatus", "Progress", "render_status_html", "caption_html"]

log = logging.getLogger("pdtnb.notebook")

STATUS_CSS = """
<style>
.pdtnb-status table {border-collapse: collapse; font-family: var(--jp-code-font-family, monospace); font-size: 12px;}
.pdtnb-status th, .pdtnb-status td {padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right;}
.pdtnb-status th:first-child, .pdtnb-status td:first-child {text-align: left;}
.pdtnb-status td.links, .pdtnb-status th.links {text-align: left; color: #555;}
.pdtnb-status td.pdtnb-progress-col, .pdtnb-status th.pdtnb-progress-col {text-align: left; white-space: nowrap;}
.pdtnb-status .zero {color: #aaa;}
.pdtnb-status .badge {display: inline-block; min-width: 1.5em; padding: 0 4px; border-radius: 3px; color: white;}
.pdtnb-status caption {text-align: left; color: #666; font-size: 11px; caption-side: top;}
</style>
""".replace("</style>", STALE_CSS + "</style>")


def _count(state: str, n: int) -> str:
    if not n:
        return '<span class="zero" style="color:#aaa">0</span>'
    text = "#222" if state == "outdated" else "white"  # white is not legible on the olive
    return (
        f'<span class="badge badge-{state}" style="background-color:{STATE_COLOURS[state]};color:{text};'
        f'border-radius:3px;padding:0 4px" title="{n} {state}">{n}</span>'
    )


def caption_html(
    controller: PipelineController | None,
    state: RunState | None,
    taken_at: Any,
    *,
    live: bool,
    interval: float = 1.0,
    note: str = "",
) -> str:
    """The caption of a status view: the pipeline's name, when the counts were taken, and what
    the controller was doing then (from the same moment: see :class:`~pdtnb.notebook.feed.RunState`).
    A live caption carries the notice the stale timer reveals (see :mod:`pdtnb.notebook.live`)."""
    bits = []
    if controller is not None and controller.name:
        bits.append(f"<b>{html.escape(controller.name)}</b>")
    when = f"{taken_at:%H:%M:%S} UTC" if taken_at is not None else "-"
    bits.append(f"{'live status' if live else 'status'} at {when}")
    markup = " · ".join(bits)
    if state is not None and state.line:
        text = html.escape(state.line)
        if state.phase == "running" and live:
            markup += f' <span class="pdtnb-live-marker">· {text}</span>'
        else:
            markup += f" · {text}"
    if live and state is not None and state.phase not in ("closed", "retired"):
        markup += stale_html(taken_at, interval)
    if note:
        markup += f' <i class="pdtnb-note">({html.escape(note)})</i>'
    return markup


def render_status_html(
    status: PipelineStatus,
    caption: str | None = None,
    *,
    caption_markup: str | None = None,
    rates: RateTracker | None = None,
    state: RunState | None = None,
    progress: bool = True,
) -> str:
    """The HTML table of a status or trace: per task its progress bar, its state counts and its
    links. ``caption`` is text; ``caption_markup`` is HTML (from :func:`caption_html`)."""
    rows = []
    trace = status.is_trace
    progress = progress and not trace
    # Inline alignments too: a sanitized copy (an untrusted notebook) loses the style sheet.
    left = ' style="text-align:left"'
    for t in status.tasks:
        if trace:
            links = "; ".join(
                f"{html.escape(link.name)}: {html.escape(' '.join(link.jobs or [])) or '-'}" for link in t.links
            )
            states = t.job_states or {}
            per_job = ", ".join(f"{html.escape(j)} {html.escape(s)}" for j, s in states.items())
            rows.append(
                f"<tr><td>{html.escape(t.name)}</td><td class='links'{left}>{per_job}</td>"
                f"<td class='links'{left}>{links}</td></tr>"
            )
        else:
            links = ", ".join(f"{html.escape(link.name)} {link.count}" for link in t.links)
            disabled = " <i>(disabled)</i>" if t.disabled else ""
            bar = f"<td class='pdtnb-progress-col'{left}>{progress_html(t, rates, state)}</td>" if progress else ""
            counts = "".join(f"<td>{_count(s, getattr(t, s))}</td>" for s in STATES)
            rows.append(
                f"<tr><td>{html.escape(t.name)}{disabled}</td>{bar}{counts}<td class='links'{left}>{links}</td></tr>"
            )
    if trace:
        head = f"<tr><th{left}>task</th><th{left}>jobs</th><th{left}>links holding them</th></tr>"
    else:
        bar_head = f"<th class='pdtnb-progress-col'{left}>progress</th>" if progress else ""
        head = (
            f"<tr><th{left}>task</th>"
            + bar_head
            + "".join(f"<th>{s}</th>" for s in STATES)
            + f"<th class='links'{left}>links (jobs)</th></tr>"
        )
    if caption_markup is None:
        cap = caption if caption is not None else f"status at {status.taken_at:%H:%M:%S} UTC"
        caption_markup = html.escape(cap)
    if status.controller is not None:
        # Another process acts on the pipeline: its in-process jobs look ready from here.
        caption_markup += (
            f' · <i class="pdtnb-note">controlled now by {html.escape(status.controller.describe())}'
            "; its in-process jobs count as ready here</i>"
        )
    return (
        f'{STATUS_CSS}<div class="pdtnb-status"><table><caption style="text-align:left">{caption_markup}</caption>'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def status_text(
    status: PipelineStatus | None, headline: str, rates: RateTracker | None = None, state: RunState | None = None
) -> str:
    """A live view's text rendering: a headline, then one progress line per task."""
    lines = [headline]
    if status is not None:
        lines += progress_lines(status, rates, state)
    return "\n".join(lines)


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


def _plain(markup: str) -> str:
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", markup)).strip()


class _FeedHTML(LiveView, ipywidgets.HTML, abstract=True):
    """An HTML widget that renders its controller's feed (the base of LiveStatus and Progress,
    which define ``_body(caption)``: the markup under the caption)."""

    REQUIRED = (*LiveView.REQUIRED, "_body")

    def __init__(self, controller: PipelineController, interval: float = 1.0, follow: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self._init_live(controller, interval, follow)
        self._status: PipelineStatus | None = None
        self._state: RunState | None = run_state(self.controller)
        self._taken_at: Any = None
        self._error: BaseException | None = None
        self._rates: RateTracker | None = None
        feed = self.controller.feed
        if feed.last is not None:
            self._status, self._taken_at, self._state = feed.last, feed.taken_at, feed.state
            self._rates = feed.rates
            self.value = self._markup(live=True)
        elif self.controller.tracker.last is not None:
            # The last counts known, until the feed's first snapshot; what the controller did
            # when they were taken is unknown, so the caption does not say.
            last = self.controller.tracker.last
            self._status, self._taken_at, self._state = last, last.taken_at, None
            self.value = self._markup(live=True)

    # ---- rendering -------------------------------------------------------------------------------

    def render(self, feed: StatusFeed) -> None:
        self._status = feed.last if feed.last is not None else self._status
        self._state = feed.state
        self._taken_at = feed.taken_at or (feed.last.taken_at if feed.last is not None else None)
        self._error = feed.error
        self._rates = feed.rates
        markup = self._markup(live=True)
        if markup != self.value:
            self.value = markup

    def _caption(self, live: bool, note: str = "") -> str:
        return caption_html(
            self.controller,
            self._state,
            self._taken_at,
            live=live,
            interval=self.interval,
            note=note or self.redefined_note,
        )

    if TYPE_CHECKING:  # defined by LiveStatus and Progress (checked in LiveView.__init_subclass__)

        def _body(self, caption: str) -> str: ...

    def _markup(self, live: bool, note: str = "") -> str:
        caption = self._caption(live, note)
        if self._error is not None and live:
            error = html.escape(" ".join(str(self._error).split()) or type(self._error).__name__)
            caption += f' <span class="pdtnb-error" style="color:#E15759">status refresh failed: {error}</span>'
        if self._status is None:
            return (
                f'{STATUS_CSS}<div class="pdtnb-status"><i>{caption}</i><br><i>waiting for the first status</i></div>'
            )
        return self._body(caption)

    def snapshot_html(self, note: str) -> str:
        return self._markup(live=False, note=note)

    def snapshot_text(self) -> str:
        headline = f"{type(self).__name__}({_plain(self._caption(False))})"
        return status_text(self._status, headline, self._rates, self._state)

    def on_stale(self) -> None:
        self.value = self._markup(live=False, note=self.stale_notice())
        self.add_class("pdtnb-retired")

    # ---- lifecycle -------------------------------------------------------------------------------

    async def refresh(self) -> PipelineStatus:
        """Refresh the feed now (every view of the pipeline updates) and return the status."""
        if self.controller.retired and self.follow:
            self._attach(self.controller.current())
        return await self.feed.refresh()

    def close(self) -> None:
        """Stop following the feed; the outputs showing the view become a static copy of its last
        state; then close the widget."""
        self.finalize(f"closed at {_now()}; the last state it showed")
        self._end_live()
        super().close()


def _now() -> str:
    from datetime import datetime, timezone

    return f"{datetime.now(timezone.utc):%H:%M:%S} UTC"


class LiveStatus(_FeedHTML):
    """A status table that follows the pipeline until closed: counts per state, a progress bar
    per task (with rate and time left while jobs move), and a caption that says what the
    controller is doing.

    It renders the controller's :class:`~pdtnb.notebook.feed.StatusFeed`, which refreshes every
    ``interval`` seconds (the shortest any view asked for) and at once after every action, on
    the pipeline's loop: it keeps going while no cell runs, pauses while the pipeline is closed,
    and follows a redefined pipeline (``follow=False``: greys out instead).
    """

    def __init__(self, controller: PipelineController, interval: float = 1.0, follow: bool = True, **kwargs: Any):
        super().__init__(controller, interval, follow, **kwargs)
        self.add_class("pdtnb-live-status")

    @property
    def last_refresh_seconds(self) -> float | None:
        """How long the feed's last refresh took."""
        return self.feed.last_refresh_seconds

    def _body(self, caption: str) -> str:
        assert self._status is not None
        return render_status_html(self._status, caption_markup=caption, rates=self._rates, state=self._state)


class Progress(_FeedHTML):
    """Progress bars alone, one per task, live like :class:`LiveStatus` (Dask's ``progress``)."""

    def __init__(self, controller: PipelineController, interval: float = 1.0, follow: bool = True, **kwargs: Any):
        super().__init__(controller, interval, follow, **kwargs)
        self.add_class("pdtnb-progress-view")

    def _body(self, caption: str) -> str:
        assert self._status is not None
        bars = progress_table_html(self._status, self._rates, self._state)
        return (
            f'{STATUS_CSS}<div class="pdtnb-status"><div style="color:#666;font-size:11px">{caption}</div>{bars}</div>'
        )
