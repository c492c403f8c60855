"""Notebook views of the failure loop and of runs: what ``%pdt failed``, ``show``, ``why``,
``retry``, ``kill``, ``debug``, ``wait``, ``stop`` and ``rm`` return.

Each view wraps the data class the core returns (:mod:`pdtnb.failures`, :class:`pdtnb.RunSummary`)
and displays as HTML in a notebook (``_repr_html_``) and as plain text elsewhere (``__repr__`` and
``_repr_pretty_``), so the command line and the notebook explain a job from the same data.

:class:`JobView` renders a failure's traceback the way IPython renders one: coloured with the
classes Jupyter gives terminal colours (``ansi-red-fg`` ...), the user's frames first (frames of
pdtnb and libraries folded away), and a frame of a notebook cell named by that cell
(``Cell In[12], line 4``) instead of the temporary file ipykernel compiled the cell into.
"""

from __future__ import annotations

import html
import inspect
import linecache
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from ..failures import Explanation, FailedJob, JobDetails, RetryResult, short_id
from ..record import Frame, JobRecord, read_record
from ..task.base import Task

__all__ = [
    "cell_label",
    "describe_file",
    "JobView",
    "FailedList",
    "WhyView",
    "RetryView",
    "RunResult",
    "DeletedSummary",
    "ProcessScript",
    "JobFailed",
    "call_arguments",
    "live_output",
]

#: Jupyter's terminal colours, used beside the ``ansi-*`` classes (which JupyterLab only styles
#: inside text outputs) so that the HTML is coloured wherever it is shown.
_COLOURS = {
    "red": "#e75c58",
    "green": "#00a250",
    "yellow": "#b8860b",
    "blue": "#208ffb",
    "magenta": "#d160c4",
    "cyan": "#60c6c8",
    "grey": "#888888",
}

#: Rows a list view shows before summarising the rest.
LIST_LIMIT = 50


def _c(colour: str, text: str, bold: bool = False) -> str:
    """``text`` (already escaped) in a span of IPython's class for ``colour``."""
    cls = f"ansi-{colour}-fg" + (" ansi-bold" if bold else "")
    style = f"color:{_COLOURS[colour]}" + (";font-weight:bold" if bold else "")
    return f'<span class="{cls}" style="{style}">{text}</span>'


def _e(text: Any) -> str:
    return html.escape(str(text), quote=False)


class _View(ABC):
    """A value that displays as HTML in a notebook and as text elsewhere."""

    @abstractmethod
    def text(self) -> str:
        """The view as plain text (terminals, and what ``html`` falls back to)."""

    def html(self) -> str:
        return f"<pre>{_e(self.text())}</pre>"

    def __repr__(self) -> str:
        return self.text()

    def __str__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text())

    def _repr_html_(self) -> str:
        return f'<div class="pdtnb-view">{self.html()}</div>'


# ---- naming cells ---------------------------------------------------------------------------

_IPYKERNEL_FILE = re.compile(r"ipykernel_\d+[/\\]\d+\.py$")
_IPYTHON_INPUT = re.compile(r"^<ipython-input-(\d+)-[0-9a-f]+>$")


def cell_label(file: str) -> str | None:
    """``"Cell In[12]"`` for a file a notebook cell of this kernel was compiled into (ipykernel's
    ``/tmp/ipykernel_1234/123456789.py``, or IPython's ``<ipython-input-12-...>``); None for any
    other file, or outside a kernel.

    Asks the kernel's compiler (``get_ipython().compile.format_code_name``, which IPython's own
    tracebacks use); failing that, hashes the inputs of this session as ipykernel names them.
    """
    match = _IPYTHON_INPUT.match(file)
    if match:
        return f"Cell In[{match.group(1)}]"
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - the notebook extra has IPython
        return None
    shell = get_ipython()
    if shell is None:
        return None
    compiler = getattr(shell, "compile", None)
    formatter = getattr(compiler, "format_code_name", None)
    if formatter is not None:
        try:
            named = formatter(file)
        except Exception:
            named = None
        if named:
            return f"{named[0]} {named[1]}"
    if not _IPYKERNEL_FILE.search(file):
        return None
    try:
        from ipykernel.compiler import get_file_name
    except ImportError:
        return None
    inputs = shell.user_ns.get("In") or []
    for number in range(len(inputs) - 1, 0, -1):
        try:
            if get_file_name(inputs[number]) == file:
                return f"Cell In[{number}]"
        except Exception:
            continue
    return None


def describe_file(file: str, line: int | None = None) -> str:
    """How a traceback names a frame's file: ``Cell In[12], line 4`` for a notebook cell, else
    ``File "path", line 4``."""
    label = cell_label(file)
    where = f", line {line}" if line else ""
    if label is not None:
        return f"{label}{where}"
    return f'File "{file}"{where}'


_TB_FILE = re.compile(r'File "([^"]+)", line (\d+)')


def _name_cells_in(text: str) -> str:
    """A formatted traceback with the files of notebook cells named by their cells."""

    def replace(m: re.Match[str]) -> str:
        label = cell_label(m.group(1))
        return f"{label}, line {m.group(2)}" if label is not None else m.group(0)

    return _TB_FILE.sub(replace, text)


def _context(frame: Frame, before: int = 2) -> list[tuple[int, str]]:
    """The frame's line and up to ``before`` lines above it, from the cell or file if it can be
    read (notebook cells stay in ``linecache``), else the recorded line alone."""
    lines: list[tuple[int, str]] = []
    if frame.line > 0:
        for n in range(max(1, frame.line - before), frame.line + 1):
            text = linecache.getline(frame.file, n)
            if text:
                lines.append((n, text.rstrip("\n")))
    if not lines or lines[-1][0] != frame.line:
        return [(frame.line, frame.code)] if frame.code else []
    if frame.code and lines[-1][1].strip() != frame.code.strip():
        return [(frame.line, frame.code)]  # the file changed since: trust the record
    return lines


def _frame_text(frame: Frame) -> list[str]:
    lines = [f"{describe_file(frame.file, frame.line)}, in {frame.function}"]
    for n, code in _context(frame):
        arrow = "--->" if n == frame.line else "    "
        lines.append(f"{arrow} {n:>3} {code}" if code else f"{arrow} {n:>3}")
    return lines


def _frame_html(frame: Frame) -> str:
    label = cell_label(frame.file)
    if label is not None:
        head = f"{_e(label.split(' ', 1)[0])} {_c('green', _e(label.split(' ', 1)[1] + f', line {frame.line}'))}"
    else:
        head = f"File {_c('green', _e(frame.file) + f':{frame.line}')}"
    out = [f"{head}, in {_c('cyan', _e(frame.function))}"]
    for n, code in _context(frame):
        if n == frame.line:
            out.append(f"{_c('green', f'---&gt; {n:>3}')} {_e(code)}")
        else:
            out.append(f"{_c('green', f'     {n:>3}')} {_e(code)}")
    return "\n".join(out)


# ---- show ------------------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="milliseconds") if value is not None else "?"


def _took(record: JobRecord) -> str:
    if record.start_time is None or record.end_time is None:
        return ""
    return f"{(record.end_time - record.start_time).total_seconds():.3f} s"


def _attempts(record: JobRecord) -> list[JobRecord]:
    """Every attempt of the job, earliest first: the history, then the record itself."""
    earlier = []
    for entry in record.history:
        try:
            earlier.append(read_record(entry))
        except Exception:
            continue
    return [*earlier, record]


_STATE_COLOUR = {
    "failed": "red",
    "corrupt": "red",
    "retrying": "yellow",
    "live": "blue",
    "done": "green",
    "outdated": "yellow",
    "ready": "yellow",
    "blocked": "magenta",
    "waiting": "grey",
}

_OUTCOME_COLOUR = {
    "success": "green",
    "failure": "red",
    "timeout": "yellow",
    "killed": "magenta",
    "launch-error": "red",
}


class JobView(_View):
    """``%pdt show TASK JOB``: a job's state, its failure rendered like an IPython traceback (your
    frames first, cells named ``Cell In[N]``), its output (so far, for a live process job), its
    timings, its attempts and its inputs. ``details`` is :class:`pdtnb.JobDetails`."""

    def __init__(self, details: JobDetails, output: dict[str, str] | None = None):
        self.details = details
        #: A live job's output so far, by stream name (``stdout``, ``stderr``).
        self.output = output or {}

    @property
    def record(self) -> JobRecord | None:
        return self.details.record

    def _frames(self) -> tuple[list[Frame], list[Frame]]:
        user, other = self.details.user_frames_first()
        return list(user), list(other)

    def text(self) -> str:
        d, r = self.details, self.details.record
        lines = [f"{d.task} {short_id(d.job)}: {d.state}"]
        if d.live is not None:
            lines.append(f"  running: {d.live}")
        if d.changed:
            lines.append(f"  outdated: since it ran, {'; '.join(d.changed)}")
        for name, tail in self.output.items():
            if not tail:
                continue
            lines.append(f"  {name} so far:")
            lines.extend("    " + line for line in tail.splitlines()[-20:])
        if r is not None:
            lines.append(f"  attempt {r.attempt}: {r.outcome}" + (f" on {r.host}" if r.host else ""))
            if r.start_time is not None:
                took = _took(r)
                lines.append(f"  started {_when(r.start_time)}" + (f", took {took}" if took else ""))
            if r.failed:
                lines.append(f"  reason: {r.reason_line()}")
                if r.retry_at is not None:
                    lines.append(f"  next attempt due at {r.retry_at.isoformat(timespec='seconds')}")
                lines.extend(self._traceback_text(r))
            for label, record_tail in (("stdout", r.stdout_tail), ("stderr", r.stderr_tail)):
                if record_tail:
                    lines.append(f"  {label} (last lines):")
                    lines.extend("    " + line for line in record_tail.splitlines()[-20:])
            attempts = _attempts(r)
            if len(attempts) > 1:
                lines.append("  attempts:")
                for a in attempts:
                    took = _took(a)
                    lines.append(
                        f"    {a.attempt}: {a.outcome}: {a.reason_line()}"
                        + (f" (started {_when(a.start_time)}, took {took})" if took else "")
                    )
        if d.inputs:
            shown = ", ".join(f"{name} {'present' if present else 'MISSING'}" for name, present in d.inputs)
            lines.append(f"  inputs: {shown}")
        return "\n".join(lines)

    def _traceback_text(self, r: JobRecord) -> list[str]:
        user, other = self._frames()
        lines: list[str] = []
        if user or other:
            lines.append("  traceback (your code first; innermost last):")
            for f in user:
                lines.extend("    " + line for line in _frame_text(f))
            if other:
                noun = "frame" if len(other) == 1 else "frames"
                lines.append(f"    ({len(other)} {noun} of pdtnb and libraries not shown)")
            if r.error_type:
                lines.append(f"  {r.error_type}: {r.message or ''}".rstrip())
        elif r.traceback:
            lines.append("  traceback:")
            lines.extend("    " + line for line in _name_cells_in(r.traceback).splitlines())
        elif r.error_type:
            lines.append(f"  {r.error_type}: {r.message or ''}".rstrip())
        return lines

    # ---- HTML --------------------------------------------------------------------------------

    def html(self) -> str:
        d, r = self.details, self.details.record
        colour = _STATE_COLOUR.get(d.state, "grey")
        parts = [
            f'<div class="pdtnb-job"><b>{_e(d.task)}</b> <code>{_e(short_id(d.job))}</code>: '
            f"{_c(colour, _e(d.state), bold=True)}</div>"
        ]
        facts = self._facts_html()
        if facts:
            rows = "".join(
                f'<tr><th style="text-align:left">{k}</th><td style="text-align:left">{v}</td></tr>' for k, v in facts
            )
            parts.append(f'<table class="pdtnb-facts">{rows}</table>')
        if r is not None and r.failed and (r.frames or r.traceback or r.error_type):
            parts.append(self._traceback_html(r))  # a process or pod failure has no traceback
        for name, tail in self.output.items():
            if not tail:
                continue
            parts.append(f'<div><b>{_e(name)} so far</b></div><pre class="pdtnb-output">{_e(tail)}</pre>')
        if r is not None:
            parts.extend(_record_tails_html(r))
        return "\n".join(parts)

    def _facts_html(self) -> list[tuple[str, str]]:
        """The (label, HTML) rows of the facts table under the heading: what runs it, why it is
        outdated, its last attempt (when, how long, why it failed, when the next is due), its inputs."""
        d, r = self.details, self.details.record
        facts: list[tuple[str, str]] = []
        if d.live is not None:
            facts.append(("running", _e(d.live)))
        if d.changed:
            facts.append(("outdated", "since it ran, " + _e("; ".join(d.changed))))
        if r is not None:
            facts.append(
                (
                    "attempt",
                    f"{r.attempt}: {_c(_OUTCOME_COLOUR.get(str(r.outcome), 'red'), _e(r.outcome))}"
                    + (f" on {_e(r.host)}" if r.host else ""),
                )
            )
            if r.start_time is not None:
                facts.append(("started", _e(_when(r.start_time))))
            if r.end_time is not None:
                facts.append(("ended", _e(_when(r.end_time)) + (f" (took {_e(_took(r))})" if _took(r) else "")))
            if r.failed:
                facts.append(("reason", _c("red", _e(r.reason_line()))))
                if r.retry_at is not None:
                    facts.append(("next attempt", _e(r.retry_at.isoformat(timespec="seconds"))))
        if d.inputs:
            facts.append(
                (
                    "inputs",
                    ", ".join(
                        _e(name) + " " + ("present" if present else _c("red", "MISSING")) for name, present in d.inputs
                    ),
                )
            )
        return facts

    def _traceback_html(self, r: JobRecord) -> str:
        user, other = self._frames()
        etype = r.error_type or str(r.outcome)
        rule = _c("red", "-" * 75)
        head = f"{rule}\n{_c('red', _e(etype))}{' ' * max(1, 42 - len(etype))}Traceback (your code first)"
        body: list[str] = []
        if user or other:
            body.extend(_frame_html(f) for f in user)
            if not user:
                body.append(_c("grey", "(no frame of your code: the failure is inside pdtnb or a library)"))
        elif r.traceback:
            body.append(_e(_name_cells_in(r.traceback)))
        last = f"{_c('red', _e(etype))}: {_e(r.message or '')}" if r.error_type else _c("red", _e(r.reason_line()))
        block = f'<pre class="pdtnb-traceback">{head}\n' + "\n\n".join(body) + f"\n\n{last}</pre>"
        if other:
            noun = "frame" if len(other) == 1 else "frames"
            folded = "\n\n".join(_frame_html(f) for f in other)
            block += (
                f'<details class="pdtnb-library-frames"><summary>{len(other)} {noun} of pdtnb and libraries'
                f"</summary><pre>{folded}</pre></details>"
            )
        return block


def _record_tails_html(r: JobRecord) -> list[str]:
    """The end of the record's HTML: the last lines of stdout and stderr it kept, then the table of
    its attempts when there was more than one (a single attempt is already in the facts)."""
    parts: list[str] = []
    for label, tail in (("stdout", r.stdout_tail), ("stderr", r.stderr_tail)):
        if tail:
            parts.append(f'<div><b>{label}</b> (last lines)</div><pre class="pdtnb-{label}">{_e(tail)}</pre>')
    attempts = _attempts(r)
    if len(attempts) > 1:
        rows = "".join(
            f"<tr><td>{a.attempt}</td><td>{_c(_OUTCOME_COLOUR.get(str(a.outcome), 'red'), _e(a.outcome))}</td>"
            f"<td>{_e(_when(a.start_time))}</td><td>{_e(_took(a))}</td><td>{_e(a.reason_line())}</td></tr>"
            for a in attempts
        )
        parts.append(
            '<div><b>attempts</b></div><table class="pdtnb-attempts"><tr><th>#</th><th>outcome</th>'
            f"<th>started</th><th>took</th><th>reason</th></tr>{rows}</table>"
        )
    return parts


# ---- failed, why, retry ------------------------------------------------------------------------


class FailedList(_View):
    """``%pdt failed``: the failed and retrying jobs with their reasons (a list of
    :class:`pdtnb.FailedJob`, also reachable as ``.jobs``)."""

    def __init__(self, jobs: Sequence[FailedJob]):
        self.jobs = list(jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Any:
        return iter(self.jobs)

    def text(self) -> str:
        if not self.jobs:
            return "no failed or retrying jobs"
        lines = [f.line() for f in self.jobs[:LIST_LIMIT]]
        if len(self.jobs) > LIST_LIMIT:
            lines.append(f"... and {len(self.jobs) - LIST_LIMIT} more")
        lines.append(f"({len(self.jobs)} failed or retrying jobs; %pdt show TASK JOB explains one)")
        return "\n".join(lines)

    def html(self) -> str:
        if not self.jobs:
            return _c("green", "no failed or retrying jobs")
        rows = []
        for f in self.jobs[:LIST_LIMIT]:
            colour = _STATE_COLOUR.get(f.state, "red")
            retry = f" (retry at {f.retry_at.isoformat(timespec='seconds')})" if f.retry_at else ""
            rows.append(
                f"<tr><td>{_e(f.task)}</td><td><code>{_e(short_id(f.job))}</code></td>"
                f"<td>{_c(colour, _e(f.state))}</td><td>{f.attempt}</td>"
                f'<td style="text-align:left">{_e(f.reason)}{_e(retry)}</td></tr>'
            )
        more = ""
        if len(self.jobs) > LIST_LIMIT:
            more = f"<div>... and {len(self.jobs) - LIST_LIMIT} more</div>"
        return (
            '<table class="pdtnb-failed"><tr><th>task</th><th>job</th><th>state</th><th>attempt</th>'
            f'<th style="text-align:left">reason</th></tr>{"".join(rows)}</table>{more}'
            f"<div>{len(self.jobs)} failed or retrying jobs; <code>%pdt show TASK JOB</code> explains one</div>"
        )


class WhyView(_View):
    """``%pdt why TASK JOB``: :class:`pdtnb.Explanation` as a list of reasons."""

    def __init__(self, explanation: Explanation):
        self.explanation = explanation

    def text(self) -> str:
        return self.explanation.to_text().rstrip("\n")

    def html(self) -> str:
        x = self.explanation
        items = "".join(f"<li>{_e(r)}</li>" for r in x.reasons)
        colour = _STATE_COLOUR.get(x.state, "grey")
        return (
            f"<div><b>{_e(x.task)}</b> <code>{_e(short_id(x.job))}</code>: {_c(colour, _e(x.state), bold=True)}"
            f"</div><ul>{items}</ul>"
        )


class RetryView(_View):
    """``%pdt retry``: what was reset (:class:`pdtnb.RetryResult`)."""

    def __init__(self, result: RetryResult):
        self.result = result

    def text(self) -> str:
        return self.result.to_text().rstrip("\n")


# ---- runs ------------------------------------------------------------------------------------


class RunResult(_View):
    """A background run's end (``%pdt wait``, ``%pdt stop``): displays as
    :meth:`pdtnb.RunSummary.describe`'s line; its attributes are the summary's (``.launched``,
    ``.failed`` ...), and ``.summary`` is the summary itself."""

    def __init__(self, summary: Any):
        self.summary = summary

    def __getattr__(self, name: str) -> Any:
        if name == "summary":
            raise AttributeError(name)
        return getattr(self.summary, name)

    def text(self) -> str:
        line: str = self.summary.describe()
        if not self.summary.ok:
            line += "\n%pdt failed lists the failed jobs; %pdt show TASK JOB explains one"
        return line

    def html(self) -> str:
        line = self.summary.describe()
        if self.summary.ok:
            return _c("green", _e(line))
        return f"{_c('red', _e(line))}<br><code>%pdt failed</code> lists the failed jobs"


class DeletedSummary(_View):
    """``%pdt rm``: every ``(job, TASK.LINK)`` deleted, shown whole when short, else counted by
    repository with the first few jobs. ``.deleted`` is the complete list."""

    def __init__(self, deleted: Iterable[tuple[str, str]], limit: int = 20, first: int = 5):
        self.deleted = list(deleted)
        self.limit = limit
        self.first = first

    def __len__(self) -> int:
        return len(self.deleted)

    def text(self) -> str:
        n = len(self.deleted)
        if n <= self.limit:
            lines = [f"{job} {repo}" for job, repo in self.deleted]
            return "\n".join([*lines, f"({n} deleted)"])
        per_repo: dict[str, int] = {}
        jobs: list[str] = []
        seen: set[str] = set()
        for job, repo in self.deleted:
            per_repo[repo] = per_repo.get(repo, 0) + 1
            if job not in seen:
                seen.add(job)
                jobs.append(job)
        repos = ", ".join(f"{repo} {count}" for repo, count in per_repo.items())
        shown = ", ".join(short_id(j, 40) for j in jobs[: self.first])
        more = f" and {len(jobs) - self.first} more" if len(jobs) > self.first else ""
        return f"{n} entries of {len(jobs)} jobs deleted from {repos}\njobs: {shown}{more}\n({n} deleted)"


class ProcessScript(_View):
    """``%pdt debug`` of a process task: the script a job would run, its environment and where it
    would run (a process cannot run in the kernel's foreground: run the script yourself)."""

    def __init__(self, task: str, job: str, script: str, environ: dict[str, str], jobdir: str | None = None):
        self.task = task
        self.job = job
        self.script = script
        self.environ = dict(environ)
        self.jobdir = jobdir

    def text(self) -> str:
        lines = [f"{self.task} {short_id(self.job)}: the script it runs (rendered now; nothing was started)"]
        if self.jobdir:
            lines.append(f"  job directory: {self.jobdir} (cwd/ beneath it)")
        if self.environ:
            lines.append("  environment added:")
            lines.extend(f"    {k}={v}" for k, v in sorted(self.environ.items()))
        else:
            lines.append("  environment added: none")
        lines.append("  script:")
        lines.extend("    " + line for line in self.script.splitlines())
        return "\n".join(lines)

    def html(self) -> str:
        env = "".join(
            f"<tr><td><code>{_e(k)}</code></td><td><code>{_e(v)}</code></td></tr>"
            for k, v in sorted(self.environ.items())
        )
        parts = [
            f"<div><b>{_e(self.task)}</b> <code>{_e(short_id(self.job))}</code>: the script it runs "
            "(rendered now; nothing was started)</div>"
        ]
        if self.jobdir:
            parts.append(f"<div>job directory: <code>{_e(self.jobdir)}</code></div>")
        parts.append(
            f"<div>environment added:</div><table>{env}</table>" if env else "<div>environment added: none</div>"
        )
        parts.append(f'<pre class="pdtnb-script">{_e(self.script)}</pre>')
        return "\n".join(parts)


class JobFailed(Exception):
    """A job launched by ``%pdt launch`` failed: shown as that job's failure with its reason (the
    record's :meth:`~pdtnb.JobRecord.reason_line`), not as a traceback of the magic."""

    def __init__(self, task: str, job: str, record: JobRecord):
        self.task = task
        self.job = job
        self.record = record
        super().__init__(f"{task} {short_id(job)} failed (attempt {record.attempt}): {record.reason_line()}")

    def _render_traceback_(self) -> list[str]:
        red, reset = "\x1b[0;31m", "\x1b[0m"
        return [
            f"{red}JobFailed{reset}: {self}",
            f"%pdt show {self.task} {self.job} shows the traceback; %pdt debug {self.task} {self.job} "
            "runs it again in the foreground",
        ]


# ---- helpers for the magics ---------------------------------------------------------------------


def call_arguments(task: Task, job: str) -> dict[str, Any]:
    """The keyword arguments a function task's body gets for ``job``, bound as the task binds them
    (``job``, and each parameter named after a link receives that link's repository). Raises
    ValueError naming a parameter that is neither."""
    func = getattr(task, "func", None)
    if func is None:
        raise ValueError(f"task {task.name!r} has no function body")
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(func, follow_wrapped=True).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name == "job":
            kwargs["job"] = job
        elif name in task.links:
            kwargs[name] = task.links[name].repo
        elif param.default is param.empty:
            links = ", ".join(sorted(task.links)) or "none"
            raise ValueError(f"task {task.name!r}: its function takes {name!r}, which is no link (links: {links})")
    return kwargs


async def live_output(task: Task, job: str) -> dict[str, str]:
    """A live process job's output so far (:meth:`pdtnb.ProcessTask.output_so_far`); empty for
    other tasks or when nothing can be read."""
    output_so_far = getattr(task, "output_so_far", None)
    if output_so_far is None:
        return {}
    try:
        return dict(await output_so_far(job))
    except Exception:  # no manager, or its session is closed
        return {}
