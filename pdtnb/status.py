"""Pipeline status: one computation of every job's state, shared by the command line, the magics
and the widgets.

Every job a task knows of (one its required links hold, or that it ran) is in exactly one state
for that task (:data:`JOB_STATES`):

- ``live``: running now;
- ``done``: its last attempt succeeded;
- ``outdated``: its last attempt succeeded, but by code that has changed since (its record's
  fingerprint is not the task's now: :mod:`pdtnb.outdated`);
- ``failed``: its last attempt failed, and no retry is scheduled;
- ``retrying``: its last attempt failed and another is scheduled (``retry_at`` in its record);
- ``blocked``: a job it depends on failed upstream (through a ``require_success`` link), so it
  will not start until that job is retried successfully;
- ``ready``: it can be launched now;
- ``waiting``: some required input is missing.

:func:`pipeline_status` lists every repository once (inside a listing snapshot), computes each
task's ready set, and takes failures from each done repository's :class:`~pdtnb.outcomes.OutcomeIndex`.
:class:`StatusTracker` does the same for repeated refreshes, redoing only what changed. The result
is plain data (:class:`PipelineStatus`) with renderers: text in pydatatask's format, JSON for
scripts, and HTML for notebooks (in :mod:`pdtnb.notebook`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import networkx

from .lease import Holder
from .outcomes import OutcomeIndex, base_of, outcome_index
from .repository.base import Repository, listing_snapshot
from .task.base import Link, Task

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger("pdtnb.status")

__all__ = [
    "LinkStatus",
    "TaskStatus",
    "PipelineStatus",
    "controller_of",
    "pipeline_status",
    "pipeline_trace",
    "StatusTracker",
    "shown_links",
    "JOB_STATES",
]

#: The states a job can be in for one task, in the order status shows them.
JOB_STATES = ("waiting", "ready", "live", "done", "outdated", "failed", "retrying", "blocked")


@dataclass
class LinkStatus:
    """One link of one task: its job count, and in a trace the traced jobs it holds."""

    name: str
    kind: str
    count: int
    jobs: list[str] | None = None


@dataclass
class TaskStatus:
    """One task: its links, and how many of its jobs are in each state (:data:`JOB_STATES`).

    The counts add up: ``total`` is every job the task knows of, each counted in one state.
    """

    name: str
    links: list[LinkStatus]
    ready: int
    live: int
    done: int
    failed: int
    disabled: bool = False
    #: In a trace: each traced job's state for this task (one of :data:`JOB_STATES`).
    job_states: dict[str, str] | None = None
    waiting: int = 0
    retrying: int = 0
    blocked: int = 0
    outdated: int = 0

    @property
    def total(self) -> int:
        """Every job of the task, in whatever state."""
        return (
            self.waiting
            + self.ready
            + self.live
            + self.done
            + self.outdated
            + self.failed
            + self.retrying
            + self.blocked
        )

    def count(self, state: str) -> int:
        """The number of jobs in ``state``."""
        if state not in JOB_STATES:
            raise ValueError(f"unknown job state {state!r}; states: {', '.join(JOB_STATES)}")
        return int(getattr(self, state))


@dataclass
class PipelineStatus:
    """A snapshot of the whole pipeline (or, with ``jobs``, a trace of some jobs)."""

    tasks: list[TaskStatus]
    taken_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    jobs: list[str] | None = None
    #: Another controller acting on the pipeline now (None: nobody, or this process itself). Its
    #: in-process and executor jobs run in its memory: here they count as ready, not live.
    controller: Holder | None = None

    @property
    def is_trace(self) -> bool:
        """Whether this is a trace of particular jobs."""
        return self.jobs is not None

    def task(self, name: str) -> TaskStatus:
        """The status of the task called ``name``."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_text(self) -> str:
        """pydatatask's format: per task its name, one ``TASK.LINK COUNT`` line per link (inputs,
        then status links, then the rest; job ids instead of counts in a trace), a blank line."""
        lines: list[str] = []
        for t in self.tasks:
            lines.append(t.name)
            for link in t.links:
                value = " ".join(link.jobs or []) if self.is_trace else str(link.count)
                lines.append(f"{t.name}.{link.name} {value}")
            lines.append("")
        return "\n".join(lines) + ("\n" if lines else "")

    def summary_lines(self) -> list[str]:
        """One ``# TASK: ready R, live L, done D, failed F, retrying T, blocked B, waiting W`` line
        per task (commented, so parsers of the pydatatask format can ignore them), with
        ``outdated O`` after ``done`` when some are."""
        out = []
        for t in self.tasks:
            extra = " (disabled)" if t.disabled else ""
            outdated = f", outdated {t.outdated}" if t.outdated else ""
            out.append(
                f"# {t.name}: ready {t.ready}, live {t.live}, done {t.done}{outdated}, failed {t.failed}, "
                f"retrying {t.retrying}, blocked {t.blocked}, waiting {t.waiting}{extra}"
            )
        if self.controller is not None:
            out.append(f"# controlled now by {self.controller.describe()}: its in-process jobs count as ready here")
        return out

    def trace_lines(self, reasons: dict[tuple[str, str], str] | None = None) -> list[str]:
        """In a trace, one ``# JOB: TASK state, TASK state`` line per traced job; ``reasons`` maps
        (task, job) to a failure's reason, shown after its state."""
        if self.jobs is None:
            return []
        reasons = reasons or {}
        lines = []
        for job in self.jobs:
            parts = []
            for t in self.tasks:
                part = f"{t.name} {(t.job_states or {}).get(job, 'waiting')}"
                if (t.name, job) in reasons:
                    part += f" ({reasons[(t.name, job)]})"
                parts.append(part)
            lines.append(f"# {job}: " + ", ".join(parts))
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: tasks with their links and counts."""
        data: dict[str, Any] = {"taken_at": self.taken_at.isoformat(), "tasks": []}
        if self.jobs is not None:
            data["jobs"] = list(self.jobs)
        for t in self.tasks:
            entry = asdict(t)
            entry["total"] = t.total
            if not self.is_trace:
                entry.pop("job_states")
                for link in entry["links"]:
                    link.pop("jobs")
            data["tasks"].append(entry)
        controller = None if self.controller is None else self.controller.to_dict()
        if controller is not None:
            controller.pop("token")
        data["controller"] = controller
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON document."""
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def __str__(self) -> str:
        return self.to_text()


def shown_links(task: Task, all_repos: bool) -> list[tuple[str, Link]]:
    """The links status shows for ``task``, in order: inputs, status links, the rest.

    Without ``all_repos``, links that are neither input, output nor status are hidden.
    """
    links = [
        (name, link)
        for name, link in task.links.items()
        if all_repos or link.is_input or link.is_output or link.is_status
    ]
    order = {"input": 0, "status": 1}
    return sorted(links, key=lambda nl: order.get(nl[1].kind, 2))


def _links_and_repositories(tasks: list[Task], all_repos: bool) -> tuple[list[list[tuple[str, Link]]], list[Any]]:
    """Each task's shown links, and every distinct repository status must list (the shown
    links', each task's done and live repositories, and its required links')."""
    per_task = [shown_links(t, all_repos) for t in tasks]
    repos: dict[int, Any] = {}
    for task, links in zip(tasks, per_task):
        for _, link in links:
            repos[id(link.repo)] = link.repo
        for link in task.links.values():
            if link.required_for_start:
                repos[id(link.repo)] = link.repo
        for extra in (task.done_repository, task.live_repository):
            if extra is not None:
                repos[id(extra)] = extra
    return per_task, list(repos.values())


def task_order(pipeline: Pipeline) -> list[Task]:
    """The tasks with every task after the tasks whose success it requires (ties in definition order)."""
    graph: networkx.DiGraph[str] = networkx.DiGraph()
    tasks = list(pipeline.tasks.values())
    graph.add_nodes_from(t.name for t in tasks)
    for task in tasks:
        for _, upstream in pipeline.upstream_tasks(task):
            graph.add_edge(upstream.name, task.name)
    position = {t.name: i for i, t in enumerate(tasks)}
    try:
        names = list(networkx.lexicographical_topological_sort(graph, key=position.__getitem__))
    except networkx.NetworkXUnfeasible:
        return tasks  # a cycle of require_success links: blocked counts see one pass only
    return [pipeline.tasks[n] for n in names]


@dataclass
class _States:
    """One task's jobs by state (sets), from which counts and a trace's states are taken."""

    ready: AbstractSet[str]
    live: AbstractSet[str]
    done_ids: AbstractSet[str]
    failed: set[str]
    retrying: set[str]
    blocked: set[str]
    #: The listings of the task's required links: every job they hold is one of the task's.
    required: list[AbstractSet[str]]
    outdated: set[str] = field(default_factory=set)

    def _waiting(self, ready: int) -> int:
        live, done_ids, blocked = self.live, self.done_ids, self.blocked
        # Only the few required jobs not yet recorded matter: no union of whole listings, and
        # one pass over each (a finished pipeline leaves nothing).
        known: set[str] = set()
        for s in self.required:
            known |= s - done_ids if isinstance(s, (set, frozenset)) else {j for j in s if j not in done_ids}
        if not known:
            return 0
        return max(0, len(known - live - blocked) - ready)

    def counts(self) -> dict[str, int]:
        live, done_ids = self.live, self.done_ids
        recorded = len(done_ids) - (len(done_ids & live) if live else 0)
        ready = len(self.ready) if not (live or done_ids) else len(self.ready - live - done_ids)
        other = self._waiting(ready) if self.required else 0
        return {
            "ready": ready,
            "live": len(live),
            "done": recorded - len(self.failed) - len(self.retrying) - len(self.outdated),
            "outdated": len(self.outdated),
            "failed": len(self.failed),
            "retrying": len(self.retrying),
            "blocked": len(self.blocked),
            "waiting": max(0, other),
        }

    def state_of(self, job: str) -> str:
        if job in self.live:
            return "live"
        if job in self.failed:
            return "failed"
        if job in self.retrying:
            return "retrying"
        if job in self.outdated:
            return "outdated"
        if job in self.done_ids:
            return "done"
        if job in self.blocked:
            return "blocked"
        if job in self.ready:
            return "ready"
        return "waiting"


def _task_states(
    task: Task,
    pipeline: Pipeline,
    listings: dict[int, AbstractSet[str]],
    ready: AbstractSet[str],
    index: OutcomeIndex | None,
    failed_or_blocked: dict[str, set[str]],
    current: str | None = None,
) -> _States:
    """The one rule that puts each of ``task``'s jobs in one state (``current``: the digest of
    the task's fingerprint now)."""
    done_repo, live_repo = task.done_repository, task.live_repository
    done_ids = listings[id(done_repo)] if done_repo is not None else frozenset()
    live = listings[id(live_repo)] if live_repo is not None else frozenset()
    failed: set[str] = set()
    retrying: set[str] = set()
    if index is not None:
        bad_failed = index.failed | index.corrupt.keys() if index.corrupt else index.failed
        failed = {j for j in bad_failed if j in done_ids and j not in live}
        retrying = {j for j in index.retrying if j in done_ids and j not in live}
    outdated: set[str] = set()
    if index is not None and current is not None:
        outdated = index.outdated(current, done_ids)
        if outdated and live:
            outdated -= set(live)
    blocked: set[str] = set()
    for name, upstream in pipeline.upstream_tasks(task):
        if base_of(task.links[name].repo) is not task.links[name].repo:
            continue  # a translated link: its job ids are not the upstream's
        source = failed_or_blocked.get(upstream.name)
        if source:
            blocked |= source
    if blocked:
        blocked = {j for j in blocked if j not in done_ids and j not in live}
    required = [listings.get(id(link.repo), frozenset()) for link in task.links.values() if link.required_for_start]
    failed_or_blocked[task.name] = failed | blocked
    return _States(ready, live, done_ids, failed, retrying, blocked, required, outdated)


async def controller_of(pipeline: Pipeline) -> Holder | None:
    """Who else holds the pipeline's lease now: None when nobody does, when this pipeline object
    holds it, or when its store cannot be read (status must work regardless)."""
    lease = pipeline.lease_place()
    if lease is None or pipeline.holds_lease:
        return None
    try:
        return await lease.current_holder()
    except Exception as e:
        log.debug("could not read the lease %s: %s", lease.where, e)
        return None


async def pipeline_status(pipeline: Pipeline, all_repos: bool = False) -> PipelineStatus:
    """Count every shown link's jobs and each task's jobs in each state."""
    return await _compute(pipeline, all_repos, None)


async def pipeline_trace(pipeline: Pipeline, jobs: Iterable[str], all_repos: bool = False) -> PipelineStatus:
    """Where the given jobs are: which links hold them, and each job's state for each task."""
    return await _compute(pipeline, all_repos, list(jobs))


async def _refresh_index(task: Task, full: bool) -> OutcomeIndex | None:
    repo = task.done_repository
    if repo is None:
        return None
    index = await outcome_index(repo).refresh(repo, full=full and repo.change_token() is None)
    if full:
        await index.save(repo)  # a cold status in the next process then reads only what changed
    return index


async def _compute(pipeline: Pipeline, all_repos: bool, jobs: list[str] | None) -> PipelineStatus:
    return await _status(pipeline, all_repos, jobs, pipeline.gather_ready_jobs, True)


async def _status(
    pipeline: Pipeline,
    all_repos: bool,
    jobs: list[str] | None,
    ready_of: Callable[[Task], Awaitable[AbstractSet[str]]],
    full: bool,
    memo: dict[str, Any] | None = None,
) -> PipelineStatus:
    """The one status computation: list every repository once, take each task's ready set (from
    ``ready_of``) and outcome index, and put every job of every task in one state.

    With ``memo`` (a :class:`StatusTracker`'s), when every listing and outcome index is what it
    was at the last computation (the same change token, or the very same immutable listing), the
    last counts are taken as they are: a refresh of an idle pipeline of 100,000 file jobs then
    costs a ``stat`` per directory instead of set operations over every job."""
    controller_now = asyncio.ensure_future(controller_of(pipeline))  # a read of its own: meanwhile
    try:
        tasks = task_order(pipeline)
        # What each task's code is now (a notebook may have redefined a body since the last look).
        prints = {t.name: t.fingerprint() for t in tasks}
        digests = {name: (p.digest if p is not None else None) for name, p in prints.items()}
        with listing_snapshot():
            per_task, repo_list = _links_and_repositories(tasks, all_repos)
            # The outcome indexes first: one kept in a side file can vouch for its done repository's
            # listing (Repository.adopt_listing), which then need not be read again. The other
            # repositories are listed meanwhile (one wait for a remote store, not two).
            dones = {id(r) for t in tasks for r in _done_and_base(t)}
            indexes: list[OutcomeIndex | None]
            indexes, _ = await asyncio.gather(
                asyncio.gather(*(_refresh_index(t, full) for t in tasks)),
                asyncio.gather(*(r.job_ids() for r in repo_list if id(r) not in dones)),
            )
            if memo is not None and jobs is None:
                every = _every_repository(tasks, repo_list)
                listed = await asyncio.gather(*(r.job_ids() for r in every))
                key = _unchanged_key(every, listed, indexes, tasks, digests)
                last = memo.get("key")
                if key is not None and last is not None and _same_key(key, last):
                    return PipelineStatus(tasks=memo["tasks"], controller=await controller_now)
            else:
                key = None
            listings_list, ready_sets = await asyncio.gather(
                asyncio.gather(*(r.job_ids() for r in repo_list)),
                asyncio.gather(*(ready_of(t) for t in tasks)),
            )
        listings = {id(r): ids for r, ids in zip(repo_list, listings_list)}
        if full:  # the next process's status can then take the large listings from side files
            await asyncio.gather(*(r.keep_listing() for r in repo_list))
        failed_or_blocked: dict[str, set[str]] = {}
        by_name: dict[str, TaskStatus] = {}
        for task, links, ready, index in zip(tasks, per_task, ready_sets, indexes):
            link_rows = []
            for name, link in links:
                ids = listings[id(link.repo)]
                present = None if jobs is None else [j for j in jobs if j in ids]
                link_rows.append(LinkStatus(name=name, kind=link.kind, count=len(ids), jobs=present))
            states = _task_states(task, pipeline, listings, ready, index, failed_or_blocked, digests[task.name])
            job_states = None if jobs is None else {j: states.state_of(j) for j in jobs}
            by_name[task.name] = TaskStatus(
                name=task.name, links=link_rows, disabled=task.disabled, job_states=job_states, **states.counts()
            )
        controller = await controller_now
        result = PipelineStatus(tasks=[by_name[n] for n in pipeline.tasks], jobs=jobs, controller=controller)
        if memo is not None:
            memo["key"], memo["tasks"] = key, result.tasks
        return result
    finally:
        if not controller_now.done():
            controller_now.cancel()


def _done_and_base(task: Task) -> tuple[Repository, ...]:
    done = task.done_repository
    return () if done is None else (done, base_of(done))


def _every_repository(tasks: list[Task], shown: list[Repository]) -> list[Repository]:
    """Every repository a task's states depend on: the shown ones and every link's."""
    repos = {id(r): r for r in shown}
    for task in tasks:
        for link in task.links.values():
            repos.setdefault(id(link.repo), link.repo)
    return list(repos.values())


def _unchanged_key(
    repos: list[Repository],
    listed: list[AbstractSet[str]],
    indexes: list[OutcomeIndex | None],
    tasks: list[Task],
    digests: dict[str, str | None],
) -> tuple[Any, ...] | None:
    """What a status depends on, comparable with :func:`_same_key`; None when some part cannot
    be compared (a repository without a change token whose listing is not an immutable set, a
    task with its own ``ready`` repository)."""
    parts: list[Any] = []
    for repo, ids in zip(repos, listed):
        token = repo.change_token()
        if token is not None:
            parts.append(("token", token))
        elif isinstance(ids, frozenset):
            parts.append(ids)  # compared by identity: the repository keeps it while unchanged
        else:
            return None
    for task in tasks:
        if not task.ready_is_derived:
            return None
        parts.append((task.name, task.disabled, digests.get(task.name)))
    parts.extend((id(i), i.version) if i is not None else None for i in indexes)
    return tuple(parts)


def _same_key(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, frozenset) or isinstance(y, frozenset):
            if x is not y:
                return False
        elif x != y:
            return False
    return True


class StatusTracker:
    """Recomputes a pipeline's status repeatedly, cheaply: for live tables and dashboards.

    It remembers, per task, its ready set and the change token that went with it, and takes
    failures from the done repositories' outcome indexes (which read only what changed). A refresh
    redoes only what changed: nothing at all for an idle pipeline of in-memory repositories.
    Repositories without tokens (files, remote stores) are listed at every refresh; their new done
    records are read, and the failed ones re-read every ``full_every`` refreshes.
    """

    def __init__(self, pipeline: Pipeline, all_repos: bool = False, full_every: int = 30):
        self.pipeline = pipeline
        self.all_repos = all_repos
        self.full_every = full_every
        self.refreshes = 0
        self.last: PipelineStatus | None = None
        self._ready: dict[str, tuple[Any, set[str]]] = {}
        self._memo: dict[str, Any] = {}

    async def refresh(self) -> PipelineStatus:
        """The current status."""
        self.refreshes += 1
        full = self.full_every > 0 and self.refreshes % self.full_every == 0
        self.last = await _status(self.pipeline, self.all_repos, None, self._ready_set, full, self._memo)
        return self.last

    async def _ready_set(self, task: Task) -> AbstractSet[str]:
        if task.disabled:
            return frozenset()
        ready = task.ready
        token = ready.change_token()
        cached = self._ready.get(task.name)
        if token is not None and cached is not None:
            old_token, jobs = cached
            if old_token == token:
                return jobs
            changed = ready.changes_since(old_token)
            if changed is not None and len(changed) <= max(1000, len(jobs) // 8):
                # Only the changed jobs can have entered or left the ready set.
                verdicts = await asyncio.gather(*(ready.contains(j) for j in changed))
                for job, is_ready in zip(changed, verdicts):
                    if is_ready:
                        jobs.add(job)
                    else:
                        jobs.discard(job)
                self._ready[task.name] = (token, jobs)
                return jobs
        jobs = set(await ready.job_ids())
        self._ready[task.name] = (token, jobs)
        return jobs


def repository_of(pipeline: Pipeline, repo: Repository) -> str | None:
    """``TASK.LINK`` of the first link holding ``repo``, for messages."""
    for task in pipeline.tasks.values():
        for name, link in task.links.items():
            if link.repo is repo:
                return f"{task.name}.{name}"
    return None
