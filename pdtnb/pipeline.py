"""The Pipeline: tasks plus a session, kept moving by update and launch phases.

One round is the *update* phase (every task reaps its finished jobs) followed by the *launch*
phase (every ready job is started, highest priority first, within the quotas). :meth:`Pipeline.run`
repeats rounds without fixed sleeps: it starts the next round at once when the previous one
launched something or a job signalled its end, waits for such a signal (or a task's polling
interval) while jobs are live, and returns as soon as nothing is live or ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import networkx

from .errors import PipelineStateError, StorageFaultError, storage_fault
from .hooks import HookSet, check_hooks, close_hooks
from .lease import Holder, Lease
from .outcomes import base_of, outcome_index
from .outdated import reset_outdated
from .record import Outcome, read_record
from .repository.base import Repository, listing_snapshot
from .resources import ResourceManager
from .session import Session
from .task.base import LaunchOptions, Task, launch_with, make_waker, utcnow

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
    #: Failed jobs launched again because their retry was due.
    retried: int = 0
    #: Ready jobs a hook's ``before_launch`` skipped this round (see :mod:`pdtnb.hooks`).
    vetoed: int = 0
    #: Due retries a hook skipped this round (asked again after ``poll_interval``, not at once).
    vetoed_retries: int = 0

    @property
    def pending(self) -> int:
        """Ready jobs held back this round by a quota or by priority (not counting jobs whose
        launch failed recently and are backing off, nor jobs a hook vetoed: those alone do not
        keep ``run`` going)."""
        return self.ready - self.launched - self.failed - self.deferred - self.vetoed


@dataclass
class RunSummary:
    """What :meth:`Pipeline.run` did: rounds, launches, and the outcomes of the attempts that
    ended during it (``failed`` counts attempts that failed for good, killed ones included;
    ``retrying`` those that failed and will be tried again; ``retried`` the retries launched;
    ``blocked`` the jobs held, at the end, behind an upstream failure)."""

    rounds: int = 0
    launched: int = 0
    failed_launches: int = 0
    elapsed: float = 0.0
    stopped: bool = False
    succeeded: int = 0
    failed: int = 0
    retrying: int = 0
    retried: int = 0
    blocked: int = 0
    #: Records of the tasks' done repositories that cannot be read (corrupt), at the end.
    corrupt: int = 0

    @property
    def ok(self) -> bool:
        """Whether no job failed for good during the run."""
        return self.failed == 0

    def describe(self) -> str:
        """One line for people: what ran and how it ended."""
        parts = [f"{self.succeeded} succeeded", f"{self.failed} failed"]
        if self.retried or self.retrying:
            parts.append(f"{self.retried} retried")
        if self.blocked:
            parts.append(f"{self.blocked} blocked")
        if self.failed_launches:
            parts.append(f"{self.failed_launches} failed to launch")
        if self.corrupt:
            parts.append(f"{self.corrupt} unreadable records")
        state = "stopped" if self.stopped else "finished"
        return f"{state}: {', '.join(parts)} ({self.launched} launched in {self.rounds} rounds, {self.elapsed:.1f} s)"


class Pipeline:
    """A set of tasks, the session their resources come from, and the quotas they share.

    ``priority(task_name, job)`` returns an int; no job is started while a ready job of higher
    priority is still waiting. ``poll_interval`` is how often ``run --forever`` looks for new input
    when nothing is live; ``launch_concurrency`` bounds the launches in flight at once.

    ``lease`` is where the pipeline's lease lives (one controller at a time, see
    :mod:`pdtnb.lease`): by default the first done repository, in task order, that can hold one
    (a file beside local records, an object beside S3 ones, a document beside MongoDB ones); a
    :class:`~pdtnb.lease.Lease` to choose the place; ``False`` for none (only when nothing else
    will ever act on these repositories). ``controller`` names this program in a refusal.

    ``hooks`` are called around every task's jobs (after each task's own): see :mod:`pdtnb.hooks`.
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
        lease: Lease | bool | None = None,
        controller: str | None = None,
        hooks: Iterable[Any] = (),
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
        self._summary: RunSummary | None = None
        if lease is True:
            lease = None
        self._lease_choice: Lease | bool | None = lease
        self._lease: Lease | None = None
        self._lease_depth = 0
        self._lease_gate: asyncio.Lock | None = None
        self._linger: asyncio.Task[None] | None = None
        self._indexes_ready = False
        #: How this program is named in the refusals other controllers print (``pipeline.py``).
        self.controller = controller or self.default_controller()
        #: The pipeline file this pipeline was loaded from (:func:`pdtnb.load`), or None.
        self.declared_in: Path | None = None
        #: What a front end keeps for this pipeline, by front end (the notebook layer keeps its
        #: controller under ``"notebook"``): kept here so that it goes when the pipeline goes,
        #: where a registry by ``id()`` would keep every redefined pipeline of a notebook alive.
        self.front_ends: dict[str, Any] = {}
        #: Hooks called around the jobs of every task (:mod:`pdtnb.hooks`).
        self.hooks: list[Any] = check_hooks(hooks)
        self._hook_errors: set[tuple[int, str]] = set()
        #: (task, job) -> (reason, when) of the last veto of a hook, until the job is launched.
        self._vetoes: dict[tuple[str, str], tuple[str, datetime]] = {}
        self._resolve_require_success()

    def _resolve_require_success(self) -> None:
        """Links to another task's ``done`` that gate a start require that task's success unless
        they say otherwise (``require_success=False``)."""
        done_repos = {id(t.done_repository) for t in self.tasks.values() if t.done_repository is not None}
        for task in self.tasks.values():
            own = id(task.done_repository)
            for link in task.links.values():
                if link.require_success is None:
                    base = base_of(link.repo)
                    link.require_success = bool(link.required_for_start and id(base) in done_repos and id(base) != own)

    def upstream_tasks(self, task: Task) -> list[tuple[str, Task]]:
        """The (link name, task) pairs whose success ``task``'s jobs require."""
        owners = {id(t.done_repository): t for t in self.tasks.values() if t.done_repository is not None}
        out = []
        for name, link in task.links.items():
            if link.require_success:
                owner = owners.get(id(base_of(link.repo)))
                if owner is not None and owner is not task:
                    out.append((name, owner))
        return out

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

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
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
        await self._load_outcome_indexes()
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        wake = make_waker(self._loop, self._wakeup)
        for task in self.tasks.values():
            task.attach(wake, self._count_outcome)
            task.hook_set = self.hooks_for(task)
            task.stamp_fingerprint()
        self._opened = True

    async def _load_outcome_indexes(self) -> None:
        """Load the outcome index of every in-memory done repository now, while it is cheap (its
        records are in memory), so that the writes of the run keep it current and a status at the
        end reads nothing. Other repositories' indexes load when first needed."""
        for task in self.tasks.values():
            done = task.done_repository
            if done is not None and done.change_token() is not None:
                index = outcome_index(done)
                if not index.loaded:
                    await index.refresh(done)

    async def _prepare_to_act(self) -> None:
        """The first time this pipeline takes control: sweep what interrupted writes left in its
        repositories (:meth:`Repository.sweep`), then load the outcome indexes of identity
        repositories (:meth:`_load_identity_indexes`)."""
        seen: set[int] = set()
        for task in self.tasks.values():
            for link in task.links.values():
                if id(link.repo) not in seen:
                    seen.add(id(link.repo))
                    await link.repo.sweep()
        await self._load_identity_indexes()

    async def _load_identity_indexes(self) -> None:
        """Before acting, load the outcome index of every done repository whose listing gives
        identities (files, S3): from its side file, reading only what changed. Its jobs written
        from then on are known without being read back, so the run's end and the next status
        read none of them."""
        self._indexes_ready = True
        for task in self.tasks.values():
            done = task.done_repository
            if done is None or done.change_token() is not None:
                continue
            base = base_of(done)
            if type(base).identities is Repository.identities:
                continue
            index = outcome_index(base)
            if not index.loaded:
                await index.refresh(base)

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
        linger, self._linger = self._linger, None
        if linger is not None and not linger.done():
            linger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await linger
        if self._lease_depth == 0:
            await self._release_lease()
        for task in self.tasks.values():
            task.attach(None)
            task.hook_set = task.own_hook_set()
        try:
            await close_hooks([*(h for t in self.tasks.values() for h in t.hooks), *self.hooks], self._hook_errors)
        finally:
            await self.session.close()

    # ---- one controller at a time ---------------------------------------------------------

    @staticmethod
    def default_controller() -> str:
        """The program's name (``pipeline.py``): what ``controller`` is unless given."""
        return Path(sys.argv[0] or "python").name or "python"

    def lease_place(self) -> Lease | None:
        """The lease this pipeline's acting commands take (None: no shared place, see ``lease``)."""
        if self._lease_choice is False:
            return None
        if isinstance(self._lease_choice, Lease):
            return self._lease_choice
        for task in self.tasks.values():
            done = task.done_repository
            if done is not None:
                place = base_of(done).lease_place()
                if place is not None:
                    self._lease_choice = place
                    return place
        self._lease_choice = False
        return None

    def act_without_lease(self) -> None:
        """Take no lease from now on: for a process that is itself one job of the controller
        holding it (a KubeFunctionTask's pod running its body, see :func:`pdtnb.cli.main`)."""
        self._lease_choice = False

    @property
    def holds_lease(self) -> bool:
        """Whether this pipeline object is acting now (holding its lease, if it has a place)."""
        return self._lease_depth > 0

    @contextlib.asynccontextmanager
    async def control(self, command: str, wait: float | None = None) -> AsyncIterator[None]:
        """Hold the pipeline's lease for the block: acting methods (``update``, ``run``, the
        launch and update phases, ``retry``, ``kill``, ``rm``, ``inject``, ``launch``) take it
        themselves, so wrap several of them to hold it across. Re-entrant within this object.

        Raises :class:`~pdtnb.lease.LeaseHeldError` naming the holder when another controller
        holds it (after waiting up to ``wait`` seconds, ``inf`` for ever). When the block ends
        with jobs still live only in this process (executor threads), the lease is kept, and
        those jobs reaped as they end, until none is left (see :meth:`Task.jobs_here`).
        """
        if self._lease_gate is None:
            self._lease_gate = asyncio.Lock()
        async with self._lease_gate:
            if self._lease_depth == 0 and self._lease is None:
                lease = self.lease_place()
                if lease is not None:
                    await lease.acquire(Holder.me(f"{self.controller} {command}".strip()), wait)
                self._lease = lease
                if not self._indexes_ready and self._opened:
                    await self._prepare_to_act()
            self._lease_depth += 1
        try:
            yield
        finally:
            self._lease_depth -= 1
            if self._lease_depth == 0 and self._lease is not None:
                if self._opened and self._jobs_here():
                    if self._linger is None or self._linger.done():
                        self._linger = asyncio.get_running_loop().create_task(self._reap_then_release())
                else:
                    await asyncio.shield(self._release_lease())

    def _jobs_here(self) -> bool:
        return any(task.jobs_here() for task in self.tasks.values())

    async def _reap_then_release(self) -> None:
        """Keep the lease while jobs live only in this process, reaping them as they end (no
        launches), then let it go. An action started meanwhile shares the lease."""
        try:
            while self._opened and self._jobs_here():
                if self._wakeup is not None:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), 0.5)
                if self._lease_depth == 0 and self._opened:
                    await asyncio.gather(*(t.update() for t in self.tasks.values() if t.jobs_here()))
        except Exception:
            log.exception("reaping the jobs left live in this process failed")
        finally:
            if self._lease_depth == 0:
                await self._release_lease()

    async def _release_lease(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.release()

    async def _fence(self) -> None:
        """Before acting: make sure the lease is still ours (fast unless a renewal is due)."""
        lease = self._lease
        if lease is not None and not lease.valid():
            await lease.confirm()

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

    def _count_outcome(self, task: Task, job: str, outcome: Outcome) -> None:
        """Count a failed attempt (successes are counted by the tasks themselves)."""
        summary = self._summary
        if summary is None:
            return
        if self._will_retry(task, job):
            summary.retrying += 1
        else:
            summary.failed += 1

    @staticmethod
    def _will_retry(task: Task, job: str) -> bool:
        done = task.done_repository
        return done is not None and job in outcome_index(done).retrying

    # ---- hooks -----------------------------------------------------------------------------

    def hooks_for(self, task: Task) -> HookSet | None:
        """The hooks around ``task``'s jobs: its own, then the pipeline's (None: none)."""
        return task.own_hook_set(self.hooks, self._hook_errors)

    def last_veto(self, task_name: str, job: str) -> tuple[str, datetime] | None:
        """The reason a hook gave for skipping ``job`` of ``task_name`` in this pipeline's last
        launch phase that asked, and when; None if it was not skipped (or was launched since)."""
        return self._vetoes.get((task_name, job))

    async def admit(
        self, task: Task, job: str, attempt: int = 1, report: LaunchReport | None = None, ask: bool = True
    ) -> str | None:
        """Ask the hooks in effect (:attr:`Task.hook_set`) whether ``job`` of ``task`` may launch
        now: the reason of a veto, or None, after telling their ``on_launch`` that it goes ahead.
        A launch phase passes its ``report``: a veto is counted there and kept for ``why``. A
        launch by hand passes none, and ``ask=False`` when it is forced (not asked, only told)."""
        hooks = task.hook_set
        if hooks is None:
            return None
        if ask and hooks.gates:
            reason = await hooks.admit(task, job)
            if reason is not None:
                if report is not None:
                    self._vetoes[(task.name, job)] = (reason, utcnow())
                    if attempt > 1:
                        report.vetoed_retries += 1
                    else:
                        report.vetoed += 1
                return reason
            if self._vetoes:
                self._vetoes.pop((task.name, job), None)
        if hooks.launches:
            await hooks.launching(task, job, attempt)
        return None

    # ---- the two phases --------------------------------------------------------------------

    async def update(self) -> bool:
        """One round: the update phase, then the launch phase. True if anything is live or ready."""
        async with self.control("update"):
            live = await self.update_only_update()
            report = await self._launch_phase()
            quiet = not live and report.ready == 0
            if quiet:
                # A loop of update() ends here: keep what this process knows for the next one,
                # as the end of run() does, so its first status reads no record.
                await self._keep_side_files()
        return not quiet

    async def update_only_update(self) -> bool:
        """The update phase: every task reaps its finished jobs. True if any job is live."""
        async with self.control("update"):
            return bool(await self._update_phase())

    async def update_phase(self) -> list[str]:
        """The update phase, reporting which tasks had live jobs or reaped some."""
        async with self.control("update"):
            return [t.name for t in await self._update_phase()]

    async def launch_phase(self) -> LaunchReport:
        """The launch phase, reporting how many jobs were ready, launched, failed or held back."""
        async with self.control("launch"):
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
        async with self.control("launch"):
            return (await self._launch_phase()).ready > 0

    async def gather_ready_jobs(self, task: Task) -> set[str]:
        """The jobs ``task`` could launch now (none if it is disabled)."""
        if task.disabled:
            return set()
        return set(await task.ready.job_ids())

    async def _launch_phase(self) -> LaunchReport:
        self._check_open()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.stamp_fingerprint()  # a notebook may have redefined what a body calls since
            if task.rerun_outdated and not task.disabled:
                await reset_outdated(self, task)
        with listing_snapshot():
            ready_sets = await asyncio.gather(*(self.gather_ready_jobs(t) for t in tasks))
        report = LaunchReport(ready=sum(map(len, ready_sets)))
        if any(t.retry is not None for t in tasks):
            await self._launch_retries(report)
        if not report.ready:
            return report
        now = time.monotonic()
        if self._backoff:
            self._backoff = {k: v for k, v in self._backoff.items() if v[0] > now}
        groups = self._priority_groups(tasks, ready_sets)
        for group in groups:
            await self._fence()
            refused_any = await self._launch_group(group, report)
            if refused_any:
                break  # lower priorities wait until this one is fully scheduled
        for res in self.resources:
            await res.flush()
        return report

    async def due_retries(self, task: Task) -> list[str]:
        """The failed jobs of ``task`` whose next attempt is due now (and that are not live)."""
        done = task.done_repository
        if task.retry is None or done is None or task.disabled:
            return []
        index = await outcome_index(done).refresh(done)
        if not index.retrying:
            return []
        due = index.due(utcnow())
        live = task.live_repository
        if due and live is not None:
            live_ids = await live.job_ids()
            due = [j for j in due if j not in live_ids]
        return sorted(due)

    def next_retry(self) -> float | None:
        """Seconds until the earliest scheduled retry of any task (None: none is scheduled)."""
        times = []
        for task in self.tasks.values():
            done = task.done_repository
            if task.retry is not None and done is not None:
                at = outcome_index(done).next_due()
                if at is not None:
                    times.append(at)
        if not times:
            return None
        return max(0.0, (min(times) - utcnow()).total_seconds())

    async def _launch_retries(self, report: LaunchReport) -> None:
        for task in self.tasks.values():
            for job in await self.due_retries(task):
                done = task.done_repository
                assert done is not None
                try:
                    previous = read_record(await done.info(job))
                except Exception as e:
                    log.error("task %s: cannot read the record of job %s to retry it: %s", task.name, job, e)
                    continue
                if not previous.retrying:
                    continue
                options = LaunchOptions(previous=previous)
                if task.hook_set is not None and await self.admit(task, job, options.attempt, report) is not None:
                    continue
                try:
                    started = await launch_with(task, job, options)
                except Exception as e:
                    report.failed += 1
                    await self._launch_failed(task, job, e, options)
                    continue
                if started is False:
                    report.refused += 1
                    break
                report.launched += 1
                report.retried += 1

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
        """Launch a priority group's jobs, ``launch_concurrency`` at a time; True if a quota refused one.

        A :class:`~pdtnb.StorageFaultError` (the disk is full...) stops the launch phase at once:
        no further launch, no failure record, no back-off; the launches in flight end, and the
        first fault is raised, so ``run`` stops with it. Before each launch the lease is checked
        (:meth:`~pdtnb.lease.Lease.valid`: a clock reading, unless a renewal is due)."""
        refused = False
        for task, jobs in group:
            launch = _TaskLaunch(self, task, jobs, report)
            n = len(jobs) if isinstance(jobs, (set, list, frozenset)) else self.launch_concurrency
            await launch.run(min(self.launch_concurrency, n))
            refused = refused or launch.refused
        return refused

    async def _launch_failed(self, task: Task, job: str, exc: Exception, options: LaunchOptions | None = None) -> None:
        """Log and record a failed launch, and back the job off. A storage fault, in the launch
        or in the writing of its record, is raised instead (:class:`~pdtnb.StorageFaultError`):
        the job is not recorded as failed, and the run stops."""
        note = f"nothing was lost: {task.name} {job} stays ready"
        fault = storage_fault(exc, note=note)
        if fault is not None:
            raise fault
        log.error("launching %s:%s failed: %r", task.name, job, exc, exc_info=exc)
        key = (task.name, job)
        previous = self._backoff.get(key)
        delay = _BACKOFF_FIRST if previous is None else min(previous[1] * 2, _BACKOFF_MAX)
        self._backoff[key] = (time.monotonic() + delay, delay)
        try:
            if options is None:
                await task.record_failure(job, exc, phase="launch")
            else:
                await task.record_failure(job, exc, phase="launch", options=options)
        except Exception as e:
            fault = storage_fault(
                e,
                note=f"{task.name} {job} failed to launch ({type(exc).__name__}) "
                "and stays ready: its record could not be written",
            )
            if fault is not None:
                raise fault from e
            log.exception("could not record the failure of %s:%s", task.name, job)

    # ---- running until quiet ---------------------------------------------------------------

    async def run(self, forever: bool = False, launch_once: bool = False, timeout: float | None = None) -> RunSummary:
        """Run rounds until nothing is live or ready (or forever), without fixed sleeps.

        ``launch_once`` launches only in the first round, then only reaps. ``timeout`` (seconds)
        raises TimeoutError when exceeded, whatever the jobs are doing: a launch phase still busy
        (an in-process body that hangs) is cancelled, leaving its jobs ready, and every task is
        interrupted (:meth:`Task.interrupt`: queued executor jobs are dropped). A cancellation of
        ``run`` (Ctrl-C) interrupts the tasks the same way.
        """
        self._check_open()
        async with self.control("run"):
            return await self._run(forever, launch_once, timeout)

    async def _run(self, forever: bool, launch_once: bool, timeout: float | None) -> RunSummary:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = None if timeout is None else start + timeout
        summary = RunSummary()
        self._summary = summary
        successes = sum(t.successes for t in self.tasks.values())
        try:
            if timeout is None:
                await self._run_rounds(summary, forever, launch_once, deadline, timeout)
            else:
                try:
                    await asyncio.wait_for(
                        self._run_rounds(summary, forever, launch_once, deadline, timeout), timeout + 0.05
                    )
                except asyncio.TimeoutError:
                    raise TimeoutError(f"pipeline run timed out after {timeout} s ({summary.rounds} rounds)") from None
        except BaseException:
            await self._interrupt_tasks()
            raise
        finally:
            self._summary = None
            summary.succeeded = sum(t.successes for t in self.tasks.values()) - successes
        summary.elapsed = loop.time() - start
        await self._settle_outcomes()
        corrupt = self._corrupt_records()
        summary.corrupt = len(corrupt)
        for where in corrupt[:5]:
            log.warning("unreadable record: %s", where)
        if summary.failed or summary.corrupt:
            summary.blocked = await self._count_blocked()
        return summary

    async def _interrupt_tasks(self) -> None:
        for task in self.tasks.values():
            try:
                await task.interrupt()
            except Exception:
                log.exception("task %s: could not be interrupted", task.name)

    async def _settle_outcomes(self) -> None:
        """Read the outcomes of the done repositories the run never needed (those of the last
        tasks: nothing downstream asked whether they succeeded), so that an unreadable record
        there is reported by this run too; keep every index's side file current."""
        pending = []
        for task in self.tasks.values():
            done = task.done_repository
            if done is not None:
                pending.append(self._settle(done))
        results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("could not read the outcomes of a done repository: %s", result)
        await self._keep_side_files()

    async def _keep_side_files(self) -> None:
        """Save the loaded outcome indexes that changed, and the large listings (side files)."""
        repos = {id(link.repo): link.repo for task in self.tasks.values() for link in task.links.values()}
        saves = []
        for task in self.tasks.values():
            done = task.done_repository
            if done is not None and outcome_index(base_of(done)).loaded:
                saves.append(outcome_index(base_of(done)).save(base_of(done)))
        await asyncio.gather(*saves, *(repo.keep_listing() for repo in repos.values()), return_exceptions=True)

    @staticmethod
    async def _settle(done: Repository) -> None:
        index = outcome_index(done)
        if not index.loaded:
            await index.refresh(done)
        await index.save(done)  # what this run wrote, for the next process's status

    def _corrupt_records(self) -> list[str]:
        """``TASK JOB: problem`` for every done record known to be unreadable."""
        out: list[str] = []
        for task in self.tasks.values():
            done = task.done_repository
            if done is not None:
                index = outcome_index(done)
                out.extend(f"{task.name} {job}: {problem}" for job, problem in sorted(index.corrupt.items()))
        return out

    async def _count_blocked(self) -> int:
        from .status import pipeline_status  # status reads the pipeline: imported when needed

        status = await pipeline_status(self)
        return sum(t.blocked for t in status.tasks)

    async def _run_rounds(
        self, summary: RunSummary, forever: bool, launch_once: bool, deadline: float | None, timeout: float | None
    ) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        do_launch = True
        self._stop_requested = False
        while True:
            if self._stop_requested:
                summary.stopped = True
                break
            await self._fence()
            self._wakeup.clear()
            busy_tasks = await self._update_phase()
            report = await self._launch_phase() if do_launch else LaunchReport()
            if launch_once:
                do_launch = False
            summary.rounds += 1
            summary.launched += report.launched
            summary.failed_launches += report.failed
            summary.retried += report.retried
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"pipeline run timed out after {timeout} s ({summary.rounds} rounds)")
            if report.launched or report.failed:
                continue
            if self._wakeup.is_set():
                continue
            waiting = report.pending > 0
            retry_in = self.next_retry() if do_launch else None
            if retry_in is not None and report.vetoed_retries:
                retry_in = max(retry_in, self.poll_interval)  # a hook holds a due retry: ask again later
            if deadline is not None and retry_in is not None and loop.time() + retry_in > deadline:
                retry_in = None  # not due within this run's lifetime
            if not busy_tasks and not waiting and retry_in is None and not forever:
                break
            wait = self._wait_interval(busy_tasks, waiting, forever)
            if retry_in is not None:
                wait = retry_in + 0.001 if wait is None else min(wait, retry_in + 0.001)
            if deadline is not None:
                remaining = deadline - loop.time()
                wait = remaining if wait is None else min(wait, remaining)
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except asyncio.TimeoutError:
                pass

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

    def graph(self) -> networkx.DiGraph[Task | Repository]:
        """The dependency graph: repositories and tasks as nodes; an edge repo -> task for links that
        gate or feed the task, task -> repo for links it writes. Edge attributes are the link's
        dispositions plus ``link_name``."""
        graph: networkx.DiGraph[Task | Repository] = networkx.DiGraph()
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


class _TaskLaunch:
    """One task's part of a priority group's launch (:meth:`Pipeline._launch_group`).

    Its workers draw jobs from one shared iterator and must all see at once that a quota refused a
    job (this task launches no more) or that the storage failed (the launch phase stops): that
    shared state lives here rather than in closures over the group's loop."""

    def __init__(self, pipeline: Pipeline, task: Task, jobs: Iterable[str], report: LaunchReport) -> None:
        self.pipeline = pipeline
        self.task = task
        self.jobs: Iterator[str] = iter(jobs)
        self.report = report
        self.lease = pipeline._lease
        self.backoff = pipeline._backoff
        self.hooks = task.hook_set
        #: A quota refused a job: this task's workers stop.
        self.refused = False
        #: The first storage fault: every worker stops, and :meth:`run` raises it.
        self.fault: StorageFaultError | None = None
        # A task that can launch a stream of jobs in one call (in-process bodies) gets the
        # jobs this loop would launch one by one, minus the same checks (without a lease to
        # confirm: that needs an await between jobs), unless hooks must see each job.
        self.stream = task.stream_launcher() if self.lease is None and self.hooks is None else None

    async def run(self, workers: int) -> None:
        """Launch the jobs with ``workers`` concurrent workers; raise the first storage fault."""
        await asyncio.gather(*(self.worker() for _ in range(workers)))
        if self.fault is not None:
            raise self.fault

    def deferred(self, job: str) -> bool:
        """Whether ``job`` is backing off after a failed launch: it is counted and skipped."""
        if self.backoff and (self.task.name, job) in self.backoff:
            self.report.deferred += 1
            return True
        return False

    def admitted(self) -> Iterator[str]:
        """The jobs a stream launcher gets: those not backing off, until a storage fault."""
        for job in self.jobs:
            if self.fault is not None:
                return
            if self.deferred(job):
                continue
            yield job

    async def failed(self, job: str, e: Exception) -> bool:
        """Record the failed launch of ``job``; False (stop launching) if the storage failed."""
        try:
            await self.pipeline._launch_failed(self.task, job, e)
        except StorageFaultError as stop:  # the storage failed, not the job
            if self.fault is None:
                self.fault = stop
            return False
        self.report.failed += 1
        return True

    async def worker(self) -> None:
        """Launch jobs one by one until they run out, a quota refuses one or the storage fails."""
        if self.stream is not None:
            self.report.launched += await self.stream(self.admitted(), self.failed)
            return
        launch = self.task.launch
        launched = 0
        try:
            for job in self.jobs:
                if self.refused or self.fault is not None:
                    return
                if self.deferred(job) or not await self.admit(job):
                    continue
                try:
                    started = await launch(job)
                except Exception as e:
                    if not await self.failed(job, e):
                        return
                    continue
                if started is False:
                    self.report.refused += 1
                    self.refused = True
                else:
                    launched += 1
        finally:
            self.report.launched += launched

    async def admit(self, job: str) -> bool:
        """Whether ``job`` may launch now: the lease confirmed when its renewal is due (raising
        LeaseLostError, to stop before acting), then the hooks' ``before_launch`` asked."""
        if self.lease is not None and not self.lease.valid():
            await self.lease.confirm()  # raises LeaseLostError: stop before acting
        return self.hooks is None or await self.pipeline.admit(self.task, job, report=self.report) is None
