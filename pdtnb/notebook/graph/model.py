"""What the graph shows: its nodes and edges in either form, each task's state and colour from a
:class:`~pdtnb.status.PipelineStatus`, and the text of each node. No geometry, no matplotlib.

The **full** form is :meth:`Pipeline.graph`: tasks and repositories as nodes, an edge per link. The
**compact** form has tasks only: an edge from a task to each task that reads, or waits for, a
repository it writes, labelled with that repository's link name (``parse → count`` labelled
``parsed``); repositories no other task uses are left out.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import networkx

from ...status import LinkStatus, PipelineStatus, TaskStatus
from ...task.base import Link, Task
from ..style import STATE_COLOURS

if TYPE_CHECKING:
    from ...pipeline import Pipeline
    from ...repository.base import Repository

__all__ = [
    "FORMS",
    "COMPACT_PAST_TASKS",
    "DISPOSITIONS",
    "GraphModel",
    "TextLine",
    "node_state",
    "edge_kind",
    "is_flow",
    "compact_graph",
    "repository_names",
]

#: The forms a graph is drawn in; ``auto`` is compact past :data:`COMPACT_PAST_TASKS` tasks.
FORMS = ("auto", "compact", "full")
COMPACT_PAST_TASKS = 6

#: The link flags an edge of ``Pipeline.graph()`` carries (every field of Link but its repository).
DISPOSITIONS = tuple(f.name for f in fields(Link) if f.name != "repo")

#: Which kinds of task-to-task edge win when one task feeds another in several ways (compact form).
_PRECEDENCE = ("input", "requires", "inhibits", "other")
#: At most this many repository names label one compact edge.
_MAX_LABEL_NAMES = 2
#: The job count of every task and link in :meth:`GraphModel.nominal_status`.
_NOMINAL_COUNT = 88


def node_state(task_status: TaskStatus | None) -> str:
    """The state a task is drawn in: ``failed`` if any job failed, else ``live`` if any is running,
    else ``ready`` if any could start, else ``outdated`` if any was done by code that has changed
    since (it wants a ``retry --outdated``), else ``done`` if any finished, else ``idle``."""
    if task_status is None:
        return "idle"
    if task_status.failed > 0:
        return "failed"
    if task_status.live > 0:
        return "live"
    if task_status.ready > 0:
        return "ready"
    if task_status.outdated > 0:
        return "outdated"
    if task_status.done > 0:
        return "done"
    return "idle"


def _read_kind(attrs: dict[str, Any]) -> str | None:
    """The kind of a repository-to-task edge with these link flags; None if the task only writes it."""
    if attrs.get("is_input"):
        return "input"
    if attrs.get("required_for_start"):
        return "requires"
    if attrs.get("inhibits_start"):
        return "inhibits"
    return None


def edge_kind(source: Any, target: Any, attrs: dict[str, Any]) -> str:
    """The kind of a :meth:`Pipeline.graph` edge: ``input``, ``requires`` (required to start but
    not an input, e.g. an upstream task's ``done``), ``inhibits`` (repository to task), ``output``,
    ``status`` (task to repository) or ``other``. A compact-form edge carries its kind."""
    if "kind" in attrs:
        kind: str = attrs["kind"]
        return kind
    if isinstance(target, Task) and not isinstance(source, Task):
        return _read_kind(attrs) or "other"
    if attrs.get("is_output"):
        return "output"
    if attrs.get("is_status"):
        return "status"
    return "other"


def is_flow(source: Any, target: Any, attrs: dict[str, Any]) -> bool:
    """Whether an edge carries data forward (the edges the layers are computed from)."""
    if not any(k in attrs for k in DISPOSITIONS):
        return True  # a plain DiGraph, or the compact form: every edge counts
    if isinstance(target, Task) and not isinstance(source, Task):
        return bool(attrs.get("is_input") or attrs.get("required_for_start"))
    if isinstance(source, Task) and not isinstance(target, Task):
        return bool(attrs.get("is_output"))
    return False


def repository_names(pipeline: Pipeline) -> dict[int, list[tuple[str, str]]]:
    """For each repository (by id): the (task, link) names linking it, writers first."""
    names: dict[int, list[tuple[int, str, str]]] = {}
    for task in pipeline.tasks.values():
        for link_name, link in task.links.items():
            rank = 0 if (link.is_output or link.is_status) else 1
            names.setdefault(id(link.repo), []).append((rank, task.name, link_name))
    return {k: [(t, ln) for _, t, ln in sorted(v, key=lambda e: e[0])] for k, v in names.items()}


def _shared(pipeline: Pipeline) -> dict[tuple[Task, Task], dict[str, list[str]]]:
    """For each (writer, reader) pair of distinct tasks: the link names (the writer's) of the
    repositories passed between them, by kind of use."""
    writers: dict[int, list[tuple[Task, str]]] = {}
    readers: dict[int, list[tuple[Task, str]]] = {}
    for task in pipeline.tasks.values():
        for link_name, link in task.links.items():
            if link.is_output or link.is_status:
                writers.setdefault(id(link.repo), []).append((task, link_name))
            kind = _read_kind(vars(link))
            if kind is not None:
                readers.setdefault(id(link.repo), []).append((task, kind))
    shared: dict[tuple[Task, Task], dict[str, list[str]]] = {}
    for repo, written in writers.items():
        for writer, name in written:
            for reader, kind in readers.get(repo, []):
                if reader is not writer:
                    names = shared.setdefault((writer, reader), {}).setdefault(kind, [])
                    if name not in names:
                        names.append(name)
    return shared


def edge_label(names: Iterable[str]) -> str:
    """A compact edge's label: its repositories' link names, at most two and a count of the rest."""
    names = list(names)
    shown = ", ".join(names[:_MAX_LABEL_NAMES])
    return shown if len(names) <= _MAX_LABEL_NAMES else f"{shown} +{len(names) - _MAX_LABEL_NAMES}"


def compact_graph(pipeline: Pipeline) -> networkx.DiGraph[Task | Repository]:
    """The compact form: the tasks, and an edge writer -> reader for the repositories one task
    writes and another reads or waits for. Its ``kind`` is the strongest use (an input over a
    ``done`` required to start, which a plug always adds beside it) and ``label`` the repositories'
    link names, that kind's first; ``names`` lists them all."""
    graph: networkx.DiGraph[Task | Repository] = networkx.DiGraph()
    graph.add_nodes_from(pipeline.tasks.values())
    for (writer, reader), by_kind in _shared(pipeline).items():
        kind = next(k for k in _PRECEDENCE if k in by_kind)
        names = list(by_kind[kind])
        for other in _PRECEDENCE:
            if other not in (kind, "requires"):
                names += [n for n in by_kind.get(other, []) if n not in names]
        graph.add_edge(writer, reader, kind=kind, label=edge_label(names), names=names)
    return graph


@dataclass(frozen=True)
class TextLine:
    """One line of a node's text; its ``role`` (``name``, ``count``, ``note``, ``link``, ``jobs``)
    picks its font (:data:`~pdtnb.notebook.graph.theme.FONT_SIZES`)."""

    text: str
    role: str


class GraphModel:
    """What is drawn for ``pipeline`` in ``form`` (``compact`` or ``full``): :attr:`graph` (nodes
    and edges), and given a status, each task's state and colour and each node's text."""

    def __init__(self, pipeline: Pipeline, form: str):
        if form not in ("compact", "full"):
            raise ValueError(f"form must be 'compact' or 'full', not {form!r}")
        self.pipeline = pipeline
        self.form = form
        self.graph: networkx.DiGraph[Task | Repository] = (
            compact_graph(pipeline) if form == "compact" else pipeline.graph()
        )
        self.repository_names = repository_names(pipeline)

    @property
    def tasks(self) -> list[Task]:
        return [n for n in self.graph if isinstance(n, Task)]

    @property
    def repositories(self) -> list[Hashable]:
        return [n for n in self.graph if not isinstance(n, Task)]

    def edges(self) -> list[tuple[Any, Any, str, str | None]]:
        """Each edge drawn: (source, target, kind, label); only the compact form has labels."""
        return [
            (u, v, edge_kind(u, v, attrs), attrs.get("label"))
            for u, v, attrs in self.graph.edges(data=True)
            if u is not v
        ]

    # ---- from a status -------------------------------------------------------------------------

    def nominal_status(self) -> PipelineStatus:
        """A status with two-digit counts everywhere: the form is chosen by the size of the
        drawing with it, so a pipeline's form does not change as its counts grow."""
        n = _NOMINAL_COUNT
        return PipelineStatus(
            tasks=[
                TaskStatus(
                    name=task.name,
                    links=[LinkStatus(name, link.kind, n) for name, link in task.links.items()],
                    ready=n,
                    live=n,
                    done=n,
                    failed=n,
                )
                for task in self.pipeline.tasks.values()
            ]
        )

    @staticmethod
    def task_status(status: PipelineStatus | None, task: Task) -> TaskStatus | None:
        if status is None:
            return None
        try:
            return status.task(task.name)
        except KeyError:
            return None

    def node_states(self, status: PipelineStatus | None) -> dict[str, str]:
        """Each task's name and the state it is drawn in (see :func:`node_state`)."""
        return {t.name: node_state(self.task_status(status, t)) for t in self.tasks}

    def node_colours(self, status: PipelineStatus | None) -> dict[str, str]:
        """Each task's name and the fill of its node."""
        return {name: STATE_COLOURS[state] for name, state in self.node_states(status).items()}

    def is_disabled(self, status: PipelineStatus | None, task: Task) -> bool:
        ts = self.task_status(status, task)
        return bool(task.disabled or (ts is not None and ts.disabled))

    def repository_label(self, repo: Hashable) -> str | None:
        """``TASK.LINK``: the first name a repository is linked by (writers first)."""
        names = self.repository_names.get(id(repo))
        return f"{names[0][0]}.{names[0][1]}" if names else None

    def repository_count(self, status: PipelineStatus | None, repo: Hashable) -> int | None:
        """How many jobs a repository holds, from the status of the first link to it that has one."""
        if status is None:
            return None
        for task_name, link_name in self.repository_names.get(id(repo), []):
            try:
                task_status = status.task(task_name)
            except KeyError:
                continue
            for link in task_status.links:
                if link.name == link_name:
                    return link.count
        return None

    def node_lines(self, status: PipelineStatus | None, max_names: int = 3) -> dict[Any, list[TextLine]]:
        """Each node's text, top to bottom: a task's name, its counts given a status, and
        ``(disabled)``; a repository's ``TASK.LINK`` names (at most ``max_names``) and job count."""
        return {
            n: self._task_lines(status, n) if isinstance(n, Task) else self._repo_lines(status, n, max_names)
            for n in self.graph
        }

    def _task_lines(self, status: PipelineStatus | None, task: Task) -> list[TextLine]:
        lines = [TextLine(task.name, "name")]
        ts = self.task_status(status, task)
        if ts is not None:
            lines.append(TextLine(f"ready {ts.ready} · live {ts.live}", "count"))
            lines.append(TextLine(f"done {ts.done} · failed {ts.failed}", "count"))
            held = [
                f"{label} {n}"
                for label, n in (("outdated", ts.outdated), ("retrying", ts.retrying), ("blocked", ts.blocked))
                if n
            ]
            if held:  # only when there are some: most nodes keep two count lines
                lines.append(TextLine(" · ".join(held), "count"))
        if self.is_disabled(status, task):
            lines.append(TextLine("(disabled)", "note"))
        return lines

    def _repo_lines(self, status: PipelineStatus | None, repo: Hashable, max_names: int) -> list[TextLine]:
        names = self.repository_names.get(id(repo), [])
        shown = [f"{t}.{ln}" for t, ln in names[:max_names]]
        if len(names) > max_names:
            shown[-1] = f"+{len(names) - max_names + 1} more"
        lines = [TextLine(s, "link") for s in shown or [type(repo).__name__]]
        count = self.repository_count(status, repo)
        if count is not None:
            lines.append(TextLine(f"{count} job" + ("" if count == 1 else "s"), "jobs"))
        return lines
