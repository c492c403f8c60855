"""The one status and trace computation, shared by the command line, the magics and the widgets.

:func:`pipeline_status` lists every repository once (inside a listing snapshot), computes each
task's ready set, and reads each task's done records to tell successes from failures. The result
is plain data (:class:`PipelineStatus`) with renderers: text in pydatatask's format, JSON for
scripts, and HTML for notebooks (in :mod:`pdtnb.notebook`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .repository.base import listing_snapshot
from .task.base import Link, Task, is_failure_record

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = [
    "LinkStatus",
    "TaskStatus",
    "PipelineStatus",
    "pipeline_status",
    "pipeline_trace",
    "StatusTracker",
    "shown_links",
    "JOB_STATES",
]

#: The states a job can be in for one task, as :func:`pipeline_trace` reports them.
JOB_STATES = ("waiting", "ready", "live", "done", "failed")


@dataclass
class LinkStatus:
    """One link of one task: its job count, and in a trace the traced jobs it holds."""

    name: str
    kind: str
    count: int
    jobs: list[str] | None = None


@dataclass
class TaskStatus:
    """One task: its links, and how many jobs are ready, live, done (succeeded) and failed."""

    name: str
    links: list[LinkStatus]
    ready: int
    live: int
    done: int
    failed: int
    disabled: bool = False
    #: In a trace: each traced job's state for this task (one of :data:`JOB_STATES`).
    job_states: dict[str, str] | None = None


@dataclass
class PipelineStatus:
    """A snapshot of the whole pipeline (or, with ``jobs``, a trace of some jobs)."""

    tasks: list[TaskStatus]
    taken_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    jobs: list[str] | None = None

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
        """One ``# TASK: ready R, live L, done D, failed F`` line per task (commented, so parsers of
        the pydatatask format can ignore them)."""
        out = []
        for t in self.tasks:
            extra = " (disabled)" if t.disabled else ""
            out.append(f"# {t.name}: ready {t.ready}, live {t.live}, done {t.done}, failed {t.failed}{extra}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: tasks with their links and counts."""
        data: dict[str, Any] = {"taken_at": self.taken_at.isoformat(), "tasks": []}
        if self.jobs is not None:
            data["jobs"] = list(self.jobs)
        for t in self.tasks:
            entry = asdict(t)
            if not self.is_trace:
                entry.pop("job_states")
                for link in entry["links"]:
                    link.pop("jobs")
            data["tasks"].append(entry)
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
    """Each task's shown links, and every distinct repository status must count (the shown
    links' plus each task's done and live repositories)."""
    per_task = [shown_links(t, all_repos) for t in tasks]
    repos: dict[int, Any] = {}
    for task, links in zip(tasks, per_task):
        for _, link in links:
            repos[id(link.repo)] = link.repo
        for extra in (task.done_repository, task.live_repository):
            if extra is not None:
                repos[id(extra)] = extra
    return per_task, list(repos.values())


async def pipeline_status(pipeline: Pipeline, all_repos: bool = False) -> PipelineStatus:
    """Count every shown link's jobs and each task's ready, live, done and failed jobs."""
    return await _compute(pipeline, all_repos, None)


class StatusTracker:
    """Recomputes a pipeline's status repeatedly, cheaply: for live tables and dashboards.

    It remembers, per repository, the :meth:`~pdtnb.Repository.change_token` it last saw and
    the count that went with it; per task, its ready count and its failed jobs. A refresh redoes
    only what changed: nothing at all for an idle pipeline of in-memory repositories, and for done
    records only the jobs in :meth:`~pdtnb.Repository.changes_since`. Repositories without
    tokens (files, remote stores) are listed at every refresh; their done records are read when
    new, and the failed ones re-read each time (a failed job is usually retried), with a full
    re-read every ``full_every`` refreshes so that no verdict stays stale for long.
    """

    def __init__(self, pipeline: Pipeline, all_repos: bool = False, full_every: int = 30):
        self.pipeline = pipeline
        self.all_repos = all_repos
        self.full_every = full_every
        self.refreshes = 0
        self.last: PipelineStatus | None = None
        self._counts: dict[int, tuple[Any, int]] = {}
        self._ready: dict[str, tuple[Any, set[str]]] = {}
        self._failures: dict[str, _Failures] = {}

    async def refresh(self) -> PipelineStatus:
        """The current status."""
        self.refreshes += 1
        full = self.full_every > 0 and self.refreshes % self.full_every == 0
        tasks = list(self.pipeline.tasks.values())
        with listing_snapshot():
            per_task, repo_list = _links_and_repositories(tasks, self.all_repos)
            counts_list, ready_counts, failed_sets = await asyncio.gather(
                asyncio.gather(*(self._count(r) for r in repo_list)),
                asyncio.gather(*(self._ready_count(t) for t in tasks)),
                asyncio.gather(*(self._failed(t, full) for t in tasks)),
            )
        counts = {id(r): c for r, c in zip(repo_list, counts_list)}
        result = []
        for task, links, ready, failed in zip(tasks, per_task, ready_counts, failed_sets):
            done_repo, live_repo = task.done_repository, task.live_repository
            done = counts[id(done_repo)] if done_repo is not None else 0
            result.append(
                TaskStatus(
                    name=task.name,
                    links=[LinkStatus(name, link.kind, counts[id(link.repo)]) for name, link in links],
                    ready=ready,
                    live=counts[id(live_repo)] if live_repo is not None else 0,
                    done=done - len(failed),
                    failed=len(failed),
                    disabled=task.disabled,
                )
            )
        self.last = PipelineStatus(tasks=result)
        return self.last

    async def _count(self, repo: Any) -> int:
        token = repo.change_token()
        cached = self._counts.get(id(repo))
        if token is not None and cached is not None and cached[0] == token:
            return cached[1]
        count = len(await repo.job_ids())
        self._counts[id(repo)] = (token, count)
        return count

    async def _ready_count(self, task: Task) -> int:
        if task.disabled:
            return 0
        ready = task.ready
        token = ready.change_token()
        cached = self._ready.get(task.name)
        if token is not None and cached is not None:
            old_token, jobs = cached
            if old_token == token:
                return len(jobs)
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
                return len(jobs)
        jobs = set(await ready.job_ids())
        self._ready[task.name] = (token, jobs)
        return len(jobs)

    async def _failed(self, task: Task, full: bool) -> set[str]:
        repo = task.done_repository
        if repo is None:
            return set()
        state = self._failures.get(task.name)
        token = repo.change_token()
        if state is not None and token is not None:
            if state.token == token:
                return state.failed
            changed = repo.changes_since(state.token) if state.token is not None else None
            if changed is not None:
                await state.reread(repo, changed)
                state.token = token
                return state.failed
        ids = await repo.job_ids()
        if state is None or token is not None or full:
            state = _Failures(token)
            await state.reread_all(repo, ids)
        else:
            # No token: read the new records, and re-read the failed ones.
            state.known &= set(ids)
            state.failed &= state.known
            await state.reread(repo, (set(ids) - state.known) | state.failed)
        state.token = token
        self._failures[task.name] = state
        return state.failed


class _Failures:
    """The failed jobs of one task's done repository, as last read."""

    def __init__(self, token: Any):
        self.token = token
        self.known: set[str] = set()
        self.failed: set[str] = set()

    async def reread_all(self, repo: Any, ids: Any) -> None:
        infos = await repo.info_all()
        self.known = set(ids)
        self.failed = _failed_among(infos, self.known)

    async def reread(self, repo: Any, jobs: Any) -> None:
        jobs = list(jobs)
        present = await asyncio.gather(*(repo.contains(j) for j in jobs))
        here = [j for j, p in zip(jobs, present) if p]
        records = await asyncio.gather(*(repo.info(j) for j in here))
        for job, p in zip(jobs, present):
            if not p:
                self.known.discard(job)
                self.failed.discard(job)
        for job, record in zip(here, records):
            self.known.add(job)
            if is_failure_record(record):
                self.failed.add(job)
            else:
                self.failed.discard(job)


async def pipeline_trace(pipeline: Pipeline, jobs: Iterable[str], all_repos: bool = False) -> PipelineStatus:
    """Where the given jobs are: which links hold them, and each job's state for each task."""
    return await _compute(pipeline, all_repos, list(jobs))


async def _compute(pipeline: Pipeline, all_repos: bool, jobs: list[str] | None) -> PipelineStatus:
    tasks = list(pipeline.tasks.values())
    with listing_snapshot():
        per_task, repo_list = _links_and_repositories(tasks, all_repos)
        listings_list, ready_sets, done_infos = await asyncio.gather(
            asyncio.gather(*(r.job_ids() for r in repo_list)),
            asyncio.gather(*(pipeline.gather_ready_jobs(t) for t in tasks)),
            asyncio.gather(*(_done_infos(t, jobs) for t in tasks)),
        )
    listings = {id(r): ids for r, ids in zip(repo_list, listings_list)}

    result = []
    for task, links, ready, infos in zip(tasks, per_task, ready_sets, done_infos):
        link_rows = []
        for name, link in links:
            ids = listings[id(link.repo)]
            present = None if jobs is None else [j for j in jobs if j in ids]
            link_rows.append(LinkStatus(name=name, kind=link.kind, count=len(ids), jobs=present))
        done_repo, live_repo = task.done_repository, task.live_repository
        done_ids = listings[id(done_repo)] if done_repo is not None else set()
        live_ids = listings[id(live_repo)] if live_repo is not None else set()
        failed_ids = _failed_among(infos, done_ids)
        states = None
        if jobs is not None:
            states = {j: _state(j, ready, live_ids, done_ids, failed_ids) for j in jobs}
        result.append(
            TaskStatus(
                name=task.name,
                links=link_rows,
                ready=len(ready),
                live=len(live_ids),
                done=len(done_ids) - len(failed_ids),
                failed=len(failed_ids),
                disabled=task.disabled,
                job_states=states,
            )
        )
    return PipelineStatus(tasks=result, jobs=jobs)


def _failed_among(infos: dict[str, Any], present: Any) -> set[str]:
    """The jobs of ``present`` whose done record in ``infos`` is a failure."""
    return {
        j
        for j, rec in infos.items()
        if not (type(rec) is dict and rec.get("result") == "success")  # the common case, fast
        and j in present
        and is_failure_record(rec)
    }


async def _done_infos(task: Task, jobs: list[str] | None) -> dict[str, Any]:
    repo = task.done_repository
    if repo is None:
        return {}
    if jobs is None:
        return await repo.info_all()
    present = [j for j in jobs if await repo.contains(j)]
    return dict(zip(present, await asyncio.gather(*(repo.info(j) for j in present))))


def _state(job: str, ready: set[str], live: Any, done: Any, failed: set[str]) -> str:
    if job in failed:
        return "failed"
    if job in done:
        return "done"
    if job in live:
        return "live"
    if job in ready:
        return "ready"
    return "waiting"
