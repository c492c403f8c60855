"""``%pdt timeline``: a Gantt chart of the jobs' attempts, one bar per attempt, coloured by outcome.

Each finished attempt comes from its job's record in the task's ``done`` repository (the record's
``start_time`` and ``end_time``, and those of the earlier attempts in its ``history``); jobs running
now are drawn up to now. :func:`timeline_figure` gives the :class:`matplotlib.figure.Figure` (the
dashboard draws it in a tab); :func:`timeline` a :class:`Timeline` that displays itself in a
notebook (SVG) with a one-paragraph text summary.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..admin import resolve_task
from ..record import as_time, read_record
from ..repository.base import MetadataRepository

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..pipeline import Pipeline

__all__ = ["Attempt", "Timeline", "timeline_attempts", "timeline_figure", "timeline", "OUTCOME_COLOURS"]

#: Bar colour of each outcome (``live``: running now).
OUTCOME_COLOURS: dict[str, str] = {
    "success": "#7BC67B",
    "failure": "#E15759",
    "timeout": "#F28E2B",
    "killed": "#B07AA1",
    "launch-error": "#8C2D2D",
    "live": "#5DA5DA",
}

#: At most this many jobs (rows) are drawn: the ones that started last.
ROW_LIMIT = 80


@dataclass(frozen=True)
class Attempt:
    """One attempt of one job: when it ran and how it ended (``outcome`` ``live`` while running)."""

    task: str
    job: str
    attempt: int
    outcome: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())


async def timeline_attempts(pipeline: Pipeline, tasks: Sequence[str] | None = None) -> list[Attempt]:
    """Every recorded attempt of the given tasks' jobs (all tasks by default) that has a start
    time, and every job running now, sorted by start."""
    chosen = [resolve_task(pipeline, t) for t in tasks] if tasks else list(pipeline.tasks.values())
    now = datetime.now(timezone.utc)
    out: list[Attempt] = []
    for task in chosen:
        done = task.done_repository
        if done is not None:
            for job, data in (await done.info_all()).items():
                try:
                    record = read_record(data)
                except Exception:
                    continue
                for entry in [*record.history, None]:
                    r = record if entry is None else read_record(entry)
                    if r.start_time is None:
                        continue
                    end = r.end_time if r.end_time is not None and r.end_time >= r.start_time else r.start_time
                    out.append(Attempt(task.name, job, r.attempt, str(r.outcome), r.start_time, end))
        out.extend(await _live_attempts(task, now))
    out.sort(key=lambda a: (a.start, a.task, a.job, a.attempt))
    return out


async def _live_attempts(task: Any, now: datetime) -> list[Attempt]:
    found: list[Attempt] = []
    running = getattr(task, "jobs", None)  # ExecutorTask: future -> (job, start, options)
    if isinstance(running, dict):
        for entry in list(running.values()):
            if isinstance(entry, tuple) and len(entry) >= 2 and isinstance(entry[1], datetime):
                found.append(Attempt(task.name, entry[0], 0, "live", entry[1], now))
        return found
    live = task.live_repository
    if isinstance(live, MetadataRepository):  # a ProcessTask's pids: {pid, start_time}
        try:
            entries = await live.info_all()
        except Exception:
            return found
        for job, entry in entries.items():
            start = as_time(entry.get("start_time")) if isinstance(entry, dict) else None
            if start is not None:
                found.append(Attempt(task.name, job, int(entry.get("attempt") or 0), "live", start, now))
    return found


def draw(attempts: Sequence[Attempt], title: str | None = None, row_limit: int = ROW_LIMIT) -> Figure:
    """The Gantt chart of ``attempts``: one row per (task, job), one bar per attempt."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    first: dict[tuple[str, str], datetime] = {}
    task_order: dict[str, int] = {}
    for a in attempts:
        task_order.setdefault(a.task, len(task_order))
        key = (a.task, a.job)
        if key not in first or a.start < first[key]:
            first[key] = a.start
    dropped = 0
    keys = list(first)
    if len(keys) > row_limit:  # the jobs that started last
        keys = sorted(keys, key=lambda k: first[k])[-row_limit:]
        dropped = len(first) - row_limit
    # one row per job, grouped by task (in the pipeline's order), each task's jobs by start
    keys.sort(key=lambda k: (task_order[k[0]], first[k], k[1]))
    rows = {key: i for i, key in enumerate(keys)}
    attempts = [a for a in attempts if (a.task, a.job) in rows]
    height = min(2.0 + 0.28 * max(len(rows), 1), 24.0)
    fig = Figure(figsize=(9, height), layout="constrained")
    ax = fig.add_subplot()
    if not attempts:
        ax.text(0.5, 0.5, "no attempt recorded yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    origin = min(a.start for a in attempts)
    span = max((a.end - origin).total_seconds() for a in attempts) or 1.0
    minimum = span / 400  # an instant attempt still shows as a sliver
    outcomes: list[str] = []
    for a in attempts:
        left = (a.start - origin).total_seconds()
        colour = OUTCOME_COLOURS.get(a.outcome, "#9C9C9C")
        ax.barh(
            rows[(a.task, a.job)],
            max(a.seconds, minimum),
            left=left,
            height=0.7,
            color=colour,
            edgecolor="#333333",
            linewidth=0.4,
            label=f"_pdtnb_attempt:{a.task}:{a.job}:{a.attempt}",
        )
        if a.outcome not in outcomes:
            outcomes.append(a.outcome)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{task} {job if len(job) <= 24 else job[:20] + '...'}" for task, job in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"seconds since {origin.astimezone(timezone.utc).isoformat(timespec='seconds')}")
    ax.grid(axis="x", alpha=0.3)
    order = [o for o in OUTCOME_COLOURS if o in outcomes] + [o for o in outcomes if o not in OUTCOME_COLOURS]
    ax.legend(
        handles=[Patch(color=OUTCOME_COLOURS.get(o, "#9C9C9C"), label=o) for o in order],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title="outcome",
        title_fontsize=8,
    )
    heading = title or "job attempts"
    if dropped:
        heading += f" (the {len(rows)} jobs that started last; {dropped} earlier not drawn)"
    ax.set_title(heading, fontsize=10)
    return fig


async def timeline_figure(pipeline: Pipeline, tasks: Sequence[str] | None = None) -> Figure:
    """The Gantt chart of ``pipeline``'s job attempts (of ``tasks``, default all) as a figure."""
    return draw(await timeline_attempts(pipeline, tasks))


def summarise(attempts: Iterable[Attempt]) -> str:
    """One paragraph: how many attempts of how many jobs, when, and how they ended."""
    attempts = list(attempts)
    if not attempts:
        return "timeline: no attempt recorded yet"
    jobs = {(a.task, a.job) for a in attempts}
    tasks = {a.task for a in attempts}
    counts: dict[str, int] = {}
    for a in attempts:
        counts[a.outcome] = counts.get(a.outcome, 0) + 1
    first = min(a.start for a in attempts)
    last = max(a.end for a in attempts)
    outcome_text = ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    noun = "attempt" if len(attempts) == 1 else "attempts"
    return (
        f"timeline: {len(attempts)} {noun} of {len(jobs)} jobs in {len(tasks)} tasks, "
        f"{first.isoformat(timespec='seconds')} to {last.isoformat(timespec='seconds')} "
        f"({(last - first).total_seconds():.1f} s): {outcome_text}"
    )


class Timeline:
    """A Gantt chart of attempts that displays itself (SVG in a notebook, a summary as text).
    ``figure`` is the :class:`matplotlib.figure.Figure`; ``attempts`` the :class:`Attempt` list."""

    def __init__(self, attempts: Sequence[Attempt], title: str | None = None):
        self.attempts = list(attempts)
        self.title = title
        self._figure: Figure | None = None
        self._svg: str | None = None

    @property
    def figure(self) -> Figure:
        if self._figure is None:
            self._figure = draw(self.attempts, self.title)
        return self._figure

    def to_svg(self) -> str:
        if self._svg is None:
            buf = io.StringIO()
            self.figure.savefig(buf, format="svg")
            self._svg = buf.getvalue()
        return self._svg

    def to_png(self) -> bytes:
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=100)
        return buf.getvalue()

    def text(self) -> str:
        return summarise(self.attempts)

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text())

    def _repr_svg_(self) -> str:
        return self.to_svg()


async def timeline(pipeline: Pipeline, tasks: Sequence[str] | None = None) -> Timeline:
    """The displayable :class:`Timeline` of ``pipeline``'s attempts (of ``tasks``, default all)."""
    return Timeline(await timeline_attempts(pipeline, tasks))
