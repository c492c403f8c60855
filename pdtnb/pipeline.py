"""The Pipeline: tasks plus a session, kept moving by update and launch phases.

One round is the *update* phase (every task reaps its finished jobs) followed by the *launch*
phase (every ready job is started, highest priority first, within the quotas). :meth:`Pipeline.run`
repeats rounds without fixed sleeps: it starts the next round at once when the previous one
launched something or a job signalled its end, waits for such a signal (or a task's polling
interval) while jobs are live, and returns as soon as nothing is live or ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import networkx

from .errors import PipelineStateError
from .repository.base import Repository, listing_snapshot
from .resources import ResourceManager
from .session import Session
from .task.base import Task, make_waker

__all__ = ["Pipeline", "RunSummary", "LaunchReport"]

log = logging.getLogger("pdtnb.pipeline")

_BACKOFF_FIRST = 1.0
_BACKOFF_MAX = 300.0


@dataclass
class LaunchReport:
    """What one launch phase did."""

    launched: int = 0
    failed: int = 0
    refused: int = 0
    deferred: int = 0
    ready: int = 0

    @property
    def pending(self) -> int:
        """Ready jobs held back this round by a quota or by priority (not counting jobs whose
        launch failed recently and are backing off: those alone do not keep ``run`` going)."""
        return self.ready - self.launched - self.failed - self.deferred


@dataclass
class RunSummary:
    """What :meth:`Pipeline.run` did."""

    rounds: int = 0
    launched: int = 0
    failed_launches: int = 0
    elapsed: float = 0.0
    stopped: bool = False


class Pipeline:
    """A set of tasks, the session their resources come from, and the quotas they share.

    ``priority(task_name, job)`` returns an int; no job is started while a ready job of higher
    priority is still waiting. ``poll_interval`` is how often ``run --forever`` looks for new input
    when nothing is live; ``launch_concurrency`` bounds the launches in flight at once.
    """

    def __init__(
        self,
        tasks: Iterable[Task],
        session: Session,
        resources: Iterable[ResourceManager] = (),
        priority: Callable[[str, str], int] | None = None,
        *,
        poll_interval: float = 1.0,
        launch_concurrency: int = 16,
    ):
        self.tasks: dict[str, Task] = {}
        for task in tasks:
            if task.name in self.tasks:
                raise ValueError(f"two tasks are named {task.name!r}")
            self.tasks[task.name] = task
        self.session = session
        self.resources = list(resources)
        self.priority = priority
        self.poll_interval = poll_interval
        self.launch_concurrency = max(1, launch_concurrency)
        self._opened = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._backoff: dict[tuple[str, str], tuple[float, float]] = {}
        self._stop_requested = False

    def __repr__(self) -> str:
        state = "open" if self._opened else "closed"
        return f"<Pipeline {state} tasks={list(self.tasks)}>"

    @property
    def is_open(self) -> bool:
        """Whether the pipeline (and its session) is open."""
        return self._opened

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the pipeline was opened on (its resources live there)."""
        return self._loop

    def settings(self, synchronous: bool = False, metadata: bool = True) -> None:
        """Set run properties on every task: ``synchronous`` makes launches wait for the job to
        finish; ``metadata`` controls whether done records are written."""
        for task in self.tasks.values():
            task.synchronous = synchronous
            task.metadata = metadata

    # ---- open / close ----------------------------------------------------------------------

    async def __aenter__(self) -> Pipeline:
        await self.open()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the session and validate every task and repository (each exactly once).

        If validation fails the session is closed again and the error propagates.
        """
        if self._opened:
            raise PipelineStateError("the pipeline is already open")
        await self.session.open()
        try:
            await self._validate()
        except BaseException:
            await self.session.close()
            raise
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        wake = make_waker(self._loop, self._wakeup)
        for task in self.tasks.values():
            task._attach(wake)
        self._opened = True

    async def _validate(self) -> None:
        seen: set[int] = set()
        for task in self.tasks.values():
            await task.validate()
            for link in task.links.values():
                if id(link.repo) not in seen:
                    seen.add(id(link.repo))
                    await link.repo.validate()

    async def close(self) -> None:
        """Close the session. Closing a closed pipeline does nothing."""
        if not self._opened:
            return
        self._opened = False
        for task in self.tasks.values():
            task._attach(None)
        await self.session.close()

    def _check_open(self) -> None:
        if not self._opened:
            raise PipelineStateError("the pipeline is not open: use `async with pipeline:` or `await pipeline.open()`")

    def wake(self) -> None:
        """Make a running :meth:`run` start its next round now (thread-safe)."""
        if self._loop is not None and self._wakeup is not None:
            make_waker(self._loop, self._wakeup)()

    def stop(self) -> None:
        """Ask a running :meth:`run` to return after the round in progress (thread-safe).

        Unlike cancelling it, this never interrupts a launch half-way.
        """
        self._stop_requested = True
        self.wake()

    # ---- the two phases --------------------------------------------------------------------

    async def update(self) -> bool:
        """One round: the update phase, then the launch phase. True if anything is live or ready."""
        live = await self.update_only_update()
        report = await self._launch_phase()
        return live or report.ready > 0

    async def update_only_update(self) -> bool:
        """The update phase: every task reaps its finished jobs. True if any job is live."""
        return bool(await self._update_phase())

    async def update_phase(self) -> list[str]:
        """The update phase, reporting which tasks had live jobs or reaped some."""
        return [t.name for t in await self._update_phase()]

    async def launch_phase(self) -> LaunchReport:
        """The launch phase, reporting how many jobs were ready, launched, failed or held back."""
        return await self._launch_phase()

    async def _update_phase(self) -> list[Task]:
        self._check_open()
        tasks = list(self.tasks.values())
        results = await asyncio.gather(*(t.update() for t in tasks))
        for res in self.resources:
            await res.flush()
        return [t for t, busy in zip(tasks, results) if busy]

    async def update_only_launch(self) -> bool:
        """The launch phase: start ready jobs. True if any job was ready."""
        return (await self._launch_phase()).ready > 0

    async def gather_ready_jobs(self, task: Task) -> set[str]:
        """The jobs ``task`` could launch now (none if it is disabled)."""
        if task.disabled:
            return set()
        return set(await task.ready.job_ids())

    async def _launch_phase(self) -> LaunchReport:
        self._check_open()
        tasks = list(self.tasks.values())
        with listing_snapshot():
            ready_sets = await asyncio.gather(*(self.gather_ready_jobs(t) for t in tasks))
        report = LaunchReport(ready=sum(map(len, ready_sets)))
        if not report.ready:
            return report
        now = time.monotonic()
        if self._backoff:
            self._backoff = {k: v for k, v in self._backoff.items() if v[0] > now}
        groups = self._priority_groups(tasks, ready_sets)
        for group in groups:
            refused_any = await self._launch_group(group, report)
            if refused_any:
                break  # lower priorities wait until this one is fully scheduled
        for res in self.resources:
            await res.flush()
        return report

    def _priority_groups(self, tasks: list[Task], ready_sets: list[set[str]]) -> list[list[tuple[Task, Iterable[str]]]]:
        """Ready jobs grouped by descending priority; each group is a list of (task, jobs)."""
        if self.priority is None:
            return [[(t, jobs) for t, jobs in zip(tasks, ready_sets) if jobs]]
        by_priority: dict[int, dict[str, list[str]]] = {}
        for task, jobs in zip(tasks, ready_sets):
            for job in jobs:
                by_priority.setdefault(self.priority(task.name, job), {}).setdefault(task.name, []).append(job)
        return [
            [(self.tasks[name], sorted(jobs)) for name, jobs in sorted(by_priority[p].items())]
            for p in sorted(by_priority, reverse=True)
        ]

    async def _launch_group(self, group: list[tuple[Task, Iterable[str]]], report: LaunchReport) -> bool:
        """Launch a priority group's jobs, ``launch_concurrency`` at a time; True if a quota refused one."""
        refused = False
        backoff = self._backoff
        for task, jobs in group:
            it: Iterator[str] = iter(jobs)
            name = task.name
            task_refused = False

            async def worker() -> None:
                nonlocal task_refused
                launch = task.launch  # noqa: B023 - the workers are awaited within this iteration
                launched = 0
                try:
                    for job in it:  # noqa: B023
                        if task_refused:
                            return
                        if backoff and (name, job) in backoff:  # noqa: B023
                            report.deferred += 1
                            continue
                        try:
                            started = await launch(job)
                        except Exception as e:
                            report.failed += 1
                            await self._launch_failed(task, job, e)  # noqa: B023
                            continue
                        if started is False:
                            report.refused += 1
                            task_refused = True
                        else:
                            launched += 1
                finally:
                    report.launched += launched

            n = len(jobs) if isinstance(jobs, (set, list, frozenset)) else self.launch_concurrency
            await asyncio.gather(*(worker() for _ in range(min(self.launch_concurrency, n))))
            refused = refused or task_refused
        return refused

    async def _launch_failed(self, task: Task, job: str, exc: Exception) -> None:
        log.error("launching %s:%s failed: %r", task.name, job, exc, exc_info=exc)
        key = (task.name, job)
        previous = self._backoff.get(key)
        delay = _BACKOFF_FIRST if previous is None else min(previous[1] * 2, _BACKOFF_MAX)
        self._backoff[key] = (time.monotonic() + delay, delay)
        try:
            await task.record_failure(job, exc, phase="launch")
        except Exception:
            log.exception("could not record the failure of %s:%s", task.name, job)

    # ---- running until quiet ---------------------------------------------------------------

    async def run(self, forever: bool = False, launch_once: bool = False, timeout: float | None = None) -> RunSummary:
        """Run rounds until nothing is live or ready (or forever), without fixed sleeps.

        ``launch_once`` launches only in the first round, then only reaps. ``timeout`` (seconds)
        raises TimeoutError when exceeded.
        """
        self._check_open()
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = None if timeout is None else start + timeout
        summary = RunSummary()
        do_launch = True
        self._stop_requested = False
        while True:
            if self._stop_requested:
                summary.stopped = True
                break
            self._wakeup.clear()
            busy_tasks = await self._update_phase()
            report = await self._launch_phase() if do_launch else LaunchReport()
            if launch_once:
                do_launch = False
            summary.rounds += 1
            summary.launched += report.launched
            summary.failed_launches += report.failed
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"pipeline run timed out after {timeout} s ({summary.rounds} rounds)")
            if report.launched or report.failed:
                continue
            if self._wakeup.is_set():
                continue
            waiting = report.pending > 0
            if not busy_tasks and not waiting and not forever:
                break
            wait = self._wait_interval(busy_tasks, waiting, forever)
            if deadline is not None:
                remaining = deadline - loop.time()
                wait = remaining if wait is None else min(wait, remaining)
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except asyncio.TimeoutError:
                pass
        summary.elapsed = loop.time() - start
        return summary

    def _wait_interval(self, busy_tasks: list[Task], waiting: bool, forever: bool) -> float | None:
        intervals = [t.poll_interval for t in busy_tasks if t.poll_interval is not None]
        if waiting:
            # Ready jobs held back by a quota or a back-off: a job ending wakes us, but a rate
            # window or a back-off expiring does not, so look again after a while.
            intervals.append(min(self.poll_interval, _BACKOFF_FIRST))
        if forever:
            intervals.append(self.poll_interval)
        return min(intervals) if intervals else None

    # ---- structure -------------------------------------------------------------------------

    def graph(self) -> networkx.DiGraph:
        """The dependency graph: repositories and tasks as nodes; an edge repo -> task for links that
        gate or feed the task, task -> repo for links it writes. Edge attributes are the link's
        dispositions plus ``link_name``."""
        graph = networkx.DiGraph()
        for task in self.tasks.values():
            graph.add_node(task)
            for link_name, link in task.links.items():
                attrs = dict(vars(link))
                repo = attrs.pop("repo")
                attrs["link_name"] = link_name
                if link.is_input or link.required_for_start or link.inhibits_start:
                    graph.add_edge(repo, task, **attrs)
                    if link.is_output or link.is_status:
                        graph.add_edge(task, repo, **attrs)
                else:
                    graph.add_edge(task, repo, **attrs)
        return graph

    def dependants(self, node: Repository | Task, recursive: bool) -> Iterator[Repository | Task]:
        """``node`` and what depends on it: its direct successors, or everything reachable."""
        graph = self.graph()
        if node not in graph:
            raise KeyError(f"{node!r} is not part of this pipeline")
        if recursive:
            yield from networkx.dfs_preorder_nodes(graph, source=node)
        else:
            yield node
            yield from graph.successors(node)
