"""Progress bars: per task, its done / failed / live / ready jobs against its total, like Dask's
``progress``, with the rate and the time left while jobs are moving.

The bars are plain HTML (inline styles, so they survive a saved notebook, an HTML export and
JupyterLab's sanitizer) and text (``[####!!>>..    ] 12/40``) for terminals and frontends without
widgets. The status table of the live views puts one in each task's row; :class:`Progress` is a
live widget with the bars alone.
"""

from __future__ import annotations

import html
from typing import Any

from ..status import PipelineStatus, TaskStatus
from .feed import RateTracker, RunState, duration_text
from .style import STATE_COLOURS

__all__ = ["SEGMENTS", "progress_html", "progress_text", "progress_lines", "progress_table_html", "rate_note"]

#: The states a bar shows, in order from the left; what is left of the total is waiting.
SEGMENTS: tuple[str, ...] = ("done", "outdated", "failed", "retrying", "blocked", "live", "ready")

_TEXT_MARKS = {"done": "#", "outdated": "~", "failed": "!", "retrying": "r", "blocked": "x", "live": ">", "ready": "."}


def _finished(t: TaskStatus) -> int:
    return t.done + t.failed


def rate_note(t: TaskStatus, rates: RateTracker | None, state: RunState | None) -> str:
    """``1.5 jobs/s, about 12 s left`` while jobs move, else ``""``."""
    remaining = t.ready + t.live + t.waiting + t.retrying
    if rates is None or state is None or not state.active or not remaining:
        return ""
    rate = rates.rate(t.name)
    if rate is None or rate <= 0:
        return ""  # no job finished yet in the window: no rate to tell
    eta = rates.eta(t.name, remaining)
    speed = f"{rate:.1f}/s" if rate >= 0.1 else f"{rate * 60:.1f}/min"
    return f"{speed}, {duration_text(eta)} left" if eta is not None else speed


def progress_html(
    t: TaskStatus, rates: RateTracker | None = None, state: RunState | None = None, width: int = 160
) -> str:
    """One task's bar: coloured segments (done, outdated, failed, retrying, blocked, live, ready;
    the rest is waiting) on ``width`` pixels, ``done/total`` and, while jobs move, the rate and time left."""
    total = t.total
    parts = []
    if total:
        for s in SEGMENTS:
            n = t.count(s)
            if n:
                pct = 100.0 * n / total
                parts.append(
                    f'<span class="pdtnb-seg pdtnb-seg-{s}" title="{n} {s}" style="display:inline-block;'
                    f'height:10px;width:{pct:.3f}%;background-color:{STATE_COLOURS[s]}"></span>'
                )
    bar = (
        f'<span class="pdtnb-bar" style="display:inline-block;vertical-align:middle;width:{width}px;height:10px;'
        f"background-color:#EEF0F3;border-radius:2px;overflow:hidden;white-space:nowrap;line-height:0;"
        f'font-size:0">{"".join(parts)}</span>'
    )
    label = f"{_finished(t)}/{total}" if total else "no jobs"
    note = rate_note(t, rates, state)
    extra = f' <span class="pdtnb-rate" style="color:#666">· {html.escape(note)}</span>' if note else ""
    return f'{bar} <span class="pdtnb-frac">{label}</span>{extra}'


def progress_text(
    t: TaskStatus, rates: RateTracker | None = None, state: RunState | None = None, width: int = 24
) -> str:
    """One task's bar as text: ``[####!>>..      ] 6/14 finished (2 failed) · 1.5 jobs/s, ...``."""
    total = t.total
    cells = ""
    if total:
        used = 0
        for s in SEGMENTS:
            n = t.count(s)
            if not n:
                continue
            k = max(1, round(width * n / total))
            k = min(k, width - used)
            cells += _TEXT_MARKS[s] * k
            used += k
    bar = "[" + cells.ljust(width) + "]"
    bits = [f"{_finished(t)}/{total} finished" if total else "no jobs"]
    for s in ("outdated", "failed", "live"):
        if t.count(s):
            bits.append(f"{t.count(s)} {s}")
    note = rate_note(t, rates, state)
    return f"{bar} {', '.join(bits)}" + (f" · {note}" if note else "")


def progress_lines(
    status: PipelineStatus, rates: RateTracker | None = None, state: RunState | None = None
) -> list[str]:
    """One ``TASK [bar] ...`` line per task, names aligned."""
    width = max((len(t.name) for t in status.tasks), default=0)
    return [f"{t.name.ljust(width)} {progress_text(t, rates, state)}" for t in status.tasks]


def progress_table_html(status: PipelineStatus, rates: RateTracker | None = None, state: RunState | None = None) -> str:
    """Every task's bar, one per line (what :class:`Progress` shows)."""
    rows = "".join(
        f'<div style="white-space:nowrap;margin:1px 0"><span style="display:inline-block;min-width:8em;'
        f'font-family:var(--jp-code-font-family,monospace);font-size:12px">{html.escape(t.name)}</span> '
        f"{progress_html(t, rates, state, width=240)}</div>"
        for t in status.tasks
    )
    return f'<div class="pdtnb-progress">{rows}</div>'


def __getattr__(name: str) -> Any:
    # The widget needs ipywidgets: load it on first use, so the renderers work without it.
    if name == "Progress":
        from .status_view import Progress

        return Progress
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
