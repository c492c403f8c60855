"""The notebook's handle on one pipeline: open it on the kernel loop, act on it, remember what was done.

The magics and the widgets both go through a :class:`PipelineController`, which is itself a thin
layer over the core's public API (the same functions the command line calls). It adds what a
notebook session needs: opening on the kernel's loop, one background ``run`` at a time that can
be stopped, listeners that refresh widgets after an action, and a log of the actions taken (which
``%pdt export --actions`` replays in the exported script).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .. import admin, failures
from ..errors import PdtnbError
from ..outdated import outdated_jobs, outdated_reasons
from ..pipeline import LaunchReport, Pipeline, RunSummary
from ..record import JobRecord, read_record
from ..status import JOB_STATES, PipelineStatus, StatusTracker, pipeline_status, pipeline_trace
from .kernel_loop import remember_loop_thread

if TYPE_CHECKING:
    from .feed import StatusFeed

__all__ = ["PipelineController", "controller_for", "StepReport", "Action", "RetiredError", "JobEntry"]

log = logging.getLogger("pdtnb.notebook")


@dataclass
class Action:
    """One action taken on the pipeline from the notebook (for the export replay)."""

    kind: str
    args: dict[str, Any]
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class StepReport:
    """What a manual update phase, launch phase or step did."""

    busy_tasks: list[str] | None = None
    launch: LaunchReport | None = None

    def __str__(self) -> str:
        parts = []
        if self.busy_tasks is not None:
            busy = ", ".join(self.busy_tasks) if self.busy_tasks else "none"
            parts.append(f"update phase: tasks with live or reaped jobs: {busy}")
        if self.launch is not None:
            r = self.launch
            parts.append(
                f"launch phase: {r.ready} ready, {r.launched} launched, {r.failed} failed to launch, "
                f"{r.pending} held back"
            )
        return "\n".join(parts)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class RetiredError(PdtnbError):
    """An action was asked of a controller whose pipeline the notebook has redefined."""


@dataclass
class JobEntry:
    """One job of one task in one state, with a one-line reason when there is one (a failure's,
    the upstream failure that blocks it, or what changed in the code of an outdated one)."""

    task: str
    job: str
    state: str
    reason: str = ""
    attempt: int = 0

    def line(self) -> str:
        """``JOB: REASON`` (or the job alone)."""
        return f"{self.job}: {self.reason}" if self.reason else self.job


class PipelineController:
    """Drives one pipeline from a notebook. Get it with :func:`controller_for`."""

    def __init__(self, pipeline: Pipeline, name: str | None = None):
        self.pipeline = pipeline
        self.name = name
        if pipeline.controller == pipeline.default_controller():
            pipeline.controller = "notebook"  # as other controllers' refusals name it
        self.tracker = StatusTracker(pipeline)
        self.actions: list[Action] = []
        self.last_run: RunSummary | BaseException | None = None
        #: When this controller's definition was made current (for "redefined at" notices).
        self.created = datetime.now(timezone.utc)
        self.retired_at: datetime | None = None
        self._run_task: asyncio.Task[RunSummary] | None = None
        self._run_started: float | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._open_lock: asyncio.Lock | None = None
        self._phase_lock: asyncio.Lock | None = None
        self._feed: StatusFeed | None = None

    def __repr__(self) -> str:
        return f"<PipelineController {self.name or ''} {self.pipeline!r}>"

    #: The controller of the definition that replaced this one (the notebook's variable was
    #: rebound to a new Pipeline), or None while this one is current. Widgets of a retired
    #: controller must not act: they re-point to the successor or show that they are stale.
    successor: PipelineController | None = None
    #: Whether this definition was retired by the live views at the end of the cell that
    #: rebound its variable (:mod:`pdtnb.notebook.live`), and no ``%pdt`` line has said so yet.
    retired_unannounced: bool = False

    @property
    def retired(self) -> bool:
        """Whether a newer definition of the pipeline replaced this one."""
        return self.successor is not None

    async def retire(self, successor: PipelineController) -> None:
        """Hand over to ``successor``: stop a background run, close this pipeline, and tell the
        listeners (widgets), which then follow :attr:`successor` or grey themselves out."""
        if successor is self:
            return
        if self.successor is None:
            self.retired_at = datetime.now(timezone.utc)
        self.successor = successor
        if successor.name is None:
            successor.name = self.name
        await self.close()

    def current(self) -> PipelineController:
        """The controller of the newest definition: this one, or the end of its successors."""
        controller = self
        seen = {id(self)}
        while controller.successor is not None and id(controller.successor) not in seen:
            controller = controller.successor
            seen.add(id(controller))
        return controller

    def name_from_namespace(self) -> str | None:
        """Give this controller the name of the notebook variable holding its pipeline, if it has
        none (a widget made with ``Dashboard(pipeline)`` rather than by ``%pdt``), so that a
        redefinition of that variable can be noticed; returns the name."""
        if self.name:
            return self.name
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover
            return None
        shell = get_ipython()
        namespace = getattr(shell, "user_ns", {}) if shell is not None else {}
        names = [k for k, v in list(namespace.items()) if v is self.pipeline and not k.startswith("_")]
        if len(names) == 1:
            self.name = names[0]
        return self.name

    def rebound(self) -> Pipeline | None:
        """The Pipeline the notebook's variable :attr:`name` holds now, if it is another one than
        this controller's (the user re-ran the cell defining it); None otherwise, or outside IPython."""
        if not self.name:
            return None
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - the notebook extra installs IPython
            return None
        shell = get_ipython()
        value = getattr(shell, "user_ns", {}).get(self.name) if shell is not None else None
        if isinstance(value, Pipeline) and value is not self.pipeline:
            return value
        return None

    async def latest(self) -> PipelineController:
        """The controller widgets must act through: :meth:`current`, after retiring it in favour of
        the definition the notebook's variable holds now, if the user redefined the pipeline since
        (what the ``%pdt`` magics also do), so a click never runs code the notebook replaced."""
        controller = self.current()
        newer = controller.rebound()
        if newer is not None:
            successor = controller_for(newer, controller.name)
            if successor is not controller:
                await controller.retire(successor)
                controller = successor.current()
        return controller

    def _check_current(self) -> None:
        if self.retired:
            name = self.name or "the pipeline"
            raise RetiredError(
                f"this is an old definition of {name}, replaced when the notebook redefined it: "
                f"act on the new one (%pdt dashboard shows it)"
            )

    @property
    def feed(self) -> StatusFeed:
        """The one :class:`~pdtnb.notebook.feed.StatusFeed` every live view of this pipeline uses."""
        if self._feed is None:
            from .feed import StatusFeed

            self._feed = StatusFeed(self)
        return self._feed

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the pipeline is open on."""
        return self.pipeline.loop if self.pipeline.is_open else None

    async def open(self) -> bool:
        """Open the pipeline on the running loop, if it is not open; True if this call opened it.
        A retired controller (its pipeline was redefined) refuses: :class:`RetiredError`."""
        self._check_current()
        if self.pipeline.is_open:
            return False
        await self.pipeline.open()
        _opened.add(self)
        remember_loop_thread(asyncio.get_running_loop())
        self.tracker = StatusTracker(self.pipeline)
        try:  # a first snapshot, so a view displayed right after shows counts, not "waiting"
            await self.tracker.refresh()
        except Exception:
            log.debug("the first status after opening failed", exc_info=True)
        if self._feed is not None and self._feed.subscriptions:
            self._feed.start()  # live views of this pipeline resume
        return True

    async def close(self) -> None:
        """Stop a background run, then close the pipeline and its session."""
        await self.stop(drain=False)
        await self._cancel_drain()
        await self.pipeline.close()
        _opened.discard(self)
        self._changed()

    # ---- listeners -------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (on the loop) after every action that changes the pipeline."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _changed(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                log.exception("pdtnb listener failed")

    def _record(self, kind: str, **args: Any) -> None:
        self.actions.append(Action(kind, args))

    # ---- reading ---------------------------------------------------------------------------

    async def status(self, all_repos: bool = False) -> PipelineStatus:
        """The status (incrementally recomputed for the default view)."""
        await self.open()
        if all_repos:
            return await pipeline_status(self.pipeline, all_repos=True)
        return await self.tracker.refresh()

    async def trace(self, jobs: list[str], all_repos: bool = False) -> PipelineStatus:
        """Where the given jobs are."""
        await self.open()
        return await pipeline_trace(self.pipeline, jobs, all_repos)

    async def ls(self, expression: str) -> list[str]:
        """The jobs of a ``TASK.LINK`` set expression."""
        await self.open()
        return await admin.evaluate_listing(self.pipeline, expression)

    async def cat(self, data: str, job: str) -> bytes:
        """A job's value in ``TASK.LINK`` (metadata as YAML), as bytes."""
        await self.open()
        return b"".join([chunk async for chunk in admin.read_value(self.pipeline, data, job)])

    async def ready_jobs(self, task: str, limit: int | None = None) -> list[str]:
        """The jobs ``task`` could launch now, sorted (the first ``limit``)."""
        await self.open()
        jobs = sorted(await self.pipeline.gather_ready_jobs(admin.resolve_task(self.pipeline, task)))
        return jobs if limit is None else jobs[:limit]

    # ---- the failure loop ------------------------------------------------------------------

    async def failed(self, tasks: list[str] | None = None) -> list[failures.FailedJob]:
        """Every failed or retrying job (of ``tasks``), with its one-line reason."""
        await self.open()
        return await failures.failed_jobs(self.pipeline, tasks)

    async def show(self, task: str, job: str) -> failures.JobDetails:
        """Everything about one job of one task (:func:`pdtnb.failures.show_job`)."""
        await self.open()
        return await failures.show_job(self.pipeline, task, job)

    async def why(self, task: str, job: str) -> failures.Explanation:
        """Why a job is in its state (:func:`pdtnb.failures.why_job`)."""
        await self.open()
        return await failures.why_job(self.pipeline, task, job)

    async def retry(
        self,
        task: str,
        jobs: list[str] | None = None,
        *,
        failed: bool = False,
        outdated: bool = False,
        recursive: bool = False,
    ) -> failures.RetryResult:
        """Make failed (or outdated) jobs ready again (:func:`pdtnb.failures.retry_jobs`).
        Recorded for the export replay as what it does: deleting the jobs' records from the
        task's done link."""
        await self.open()
        result = await failures.retry_jobs(
            self.pipeline, task, jobs, failed=failed, outdated=outdated, recursive=recursive
        )
        if result.jobs:
            done = admin.resolve_task(self.pipeline, task).done_link
            self._record("rm", data=f"{result.task}.{done}", jobs=list(result.jobs), recursive=recursive)
        self._changed()
        return result

    async def kill(self, task: str, job: str) -> JobRecord | None:
        """Stop a live job and record it as killed (:func:`pdtnb.failures.kill_job`)."""
        await self.open()
        try:
            return await failures.kill_job(self.pipeline, task, job)
        finally:
            self._changed()

    async def jobs(self, task: str, state: str, limit: int | None = None) -> list[JobEntry]:
        """The jobs of ``task`` in ``state`` (one of :data:`pdtnb.JOB_STATES`), sorted, the first
        ``limit``; failed, retrying, blocked and outdated ones with their one-line reasons."""
        if state not in JOB_STATES:
            raise ValueError(f"unknown job state {state!r}; states: {', '.join(JOB_STATES)}")
        await self.open()
        the_task = admin.resolve_task(self.pipeline, task)
        name = the_task.name
        if state in ("failed", "retrying"):
            found = [
                f
                for f in await failures.failed_jobs(self.pipeline, [name])
                if f.state == state or (state == "failed" and f.state == "corrupt")
            ]
            entries = [JobEntry(name, f.job, state, f.reason, f.attempt) for f in found]
            return entries if limit is None else entries[:limit]
        if state == "blocked":
            return await self._blocked(name, limit)
        if state == "outdated":
            return await self._outdated(name, limit)
        if state == "ready":
            jobs = await self.ready_jobs(name)
        else:
            jobs = await self._jobs_by_trace(name, state)
        jobs = jobs if limit is None else jobs[:limit]
        return [JobEntry(name, j, state) for j in jobs]

    async def _jobs_by_trace(self, task: str, state: str) -> list[str]:
        """The jobs of ``task`` in ``state``, from its repositories' listings and a trace."""
        the_task = self.pipeline.tasks[task]
        candidates: set[str] = set()
        if state == "live":
            repos = [the_task.live_repository]
        elif state == "done":
            repos = [the_task.done_repository]
        else:  # waiting: jobs a required link holds
            repos = [link.repo for link in the_task.links.values() if link.required_for_start]
        for repo in repos:
            if repo is not None:
                candidates |= set(await repo.job_ids())
        if not candidates:
            return []
        trace = await pipeline_trace(self.pipeline, sorted(candidates))
        states = trace.task(task).job_states or {}
        return sorted(j for j, s in states.items() if s == state)

    async def _outdated(self, task: str, limit: int | None) -> list[JobEntry]:
        """The outdated jobs of ``task``, each with what changed in its task's code since it ran
        (``its body changed``; ``the function helper it calls changed``)."""
        the_task = self.pipeline.tasks[task]
        jobs = await outdated_jobs(the_task)
        jobs = jobs if limit is None else jobs[:limit]
        done = the_task.done_repository
        current = the_task.fingerprint()  # once, not once per job
        out = []
        for job in jobs:
            reason, attempt = "", 0
            if done is not None:
                try:
                    record = read_record(await done.info(job))
                except Exception:
                    record = None
                if record is not None:
                    attempt = record.attempt
                    reason = "; ".join(outdated_reasons(the_task, record, current) or [])
            out.append(JobEntry(task, job, "outdated", reason or "the task's code changed since it ran", attempt))
        return out

    async def _blocked(self, task: str, limit: int | None) -> list[JobEntry]:
        """The jobs of ``task`` held behind an upstream failure, each with that failure."""
        upstream: dict[str, failures.FailedJob] = {}
        pending = [self.pipeline.tasks[task]]
        seen: set[str] = {task}
        ancestors: list[str] = []
        while pending:
            for _, up in self.pipeline.upstream_tasks(pending.pop()):
                if up.name not in seen:
                    seen.add(up.name)
                    ancestors.append(up.name)
                    pending.append(up)
        if not ancestors:
            return []
        for f in await failures.failed_jobs(self.pipeline, ancestors):
            upstream.setdefault(f.job, f)
        if not upstream:
            return []
        trace = await pipeline_trace(self.pipeline, sorted(upstream))
        states = trace.task(task).job_states or {}
        jobs = sorted(j for j, s in states.items() if s == "blocked")
        jobs = jobs if limit is None else jobs[:limit]
        out = []
        for job in jobs:
            f = upstream[job]
            verdict = "will be retried" if f.state == "retrying" else "failed"
            out.append(JobEntry(task, job, "blocked", f"upstream {f.task} {verdict}: {f.reason}"))
        return out

    # ---- acting ----------------------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        # Manual phases and the drain after a stop never run at the same time (one reaps at a time).
        if self._phase_lock is None:
            self._phase_lock = asyncio.Lock()
        return self._phase_lock

    async def update(self) -> StepReport:
        """One update phase (reap finished jobs)."""
        await self.open()
        async with self._lock():
            busy = await self.pipeline.update_phase()
        self._record("update")
        self._changed()
        return StepReport(busy_tasks=busy)

    async def launch_phase(self) -> StepReport:
        """One launch phase (start ready jobs)."""
        await self.open()
        async with self._lock():
            report = await self.pipeline.launch_phase()
        self._record("launch_phase")
        self._changed()
        return StepReport(launch=report)

    async def step(self) -> StepReport:
        """One round: the update phase, then the launch phase."""
        await self.open()
        async with self._lock():
            busy = await self.pipeline.update_phase()
            report = await self.pipeline.launch_phase()
        self._record("step")
        self._changed()
        return StepReport(busy_tasks=busy, launch=report)

    async def launch(
        self, task: str, job: str, sync: bool = False, force: bool = False, meta: bool = True
    ) -> admin.LaunchOutcome:
        """Start one job by hand (it must be ready unless ``force``)."""
        await self.open()
        outcome = await admin.launch_job(self.pipeline, task, job, sync=sync, meta=meta, force=force)
        if outcome.state == "started":
            self._record("launch", task=task, job=job, sync=sync, force=force, meta=meta)
        self._changed()
        return outcome

    async def rm(self, data: str, jobs: list[str], recursive: bool = False) -> list[tuple[str, str]]:
        """Delete jobs from ``TASK.LINK`` (or a task), downstream too with ``recursive``."""
        await self.open()
        deleted = await admin.delete_jobs(self.pipeline, data, jobs, recursive)
        self._record("rm", data=data, jobs=list(jobs), recursive=recursive)
        self._changed()
        return deleted

    async def inject(self, data: str, job: str, value: Any) -> None:
        """Store ``value`` for ``job`` in ``TASK.LINK``: bytes or text for a blob repository; YAML
        text, or any object, for a metadata repository."""
        await self.open()
        repo = admin.resolve_repository(self.pipeline, data)
        from ..repository.base import MetadataRepository

        if isinstance(repo, MetadataRepository) and not isinstance(value, (str, bytes)):
            await admin.inject_value(self.pipeline, data, job, b"", parsed=value)
        else:
            await admin.inject_value(self.pipeline, data, job, value)
        # A copy: the replay must store what was stored now, even if the variable changes later.
        self._record("inject", data=data, job=job, value=_snapshot(value))
        self._changed()

    # ---- background run --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a background run is in progress."""
        return self._run_task is not None and not self._run_task.done()

    @property
    def run_elapsed(self) -> float | None:
        """Seconds since the background run started, while it runs."""
        if not self.running or self._run_started is None:
            return None
        return time.monotonic() - self._run_started

    @property
    def draining(self) -> bool:
        """Whether jobs left live by a run that ended are being reaped as they end."""
        return self._drain_busy and self._drain_task is not None and not self._drain_task.done()

    _drain_busy = False

    async def start_run(
        self, forever: bool = False, launch_once: bool = False, timeout: float | None = None
    ) -> asyncio.Task[RunSummary]:
        """Start :meth:`Pipeline.run` in the background on the loop; returns its task at once."""
        await self.open()
        if self.running:
            raise RuntimeError("the pipeline is already running: %pdt stop first")
        await self._cancel_drain()
        self._record("run", forever=forever, launch_once=launch_once, timeout=timeout)

        async def body() -> RunSummary:
            try:
                summary = await self.pipeline.run(forever=forever, launch_once=launch_once, timeout=timeout)
            except BaseException as e:
                self.last_run = e
                raise
            else:
                self.last_run = summary
                return summary
            finally:
                self._run_started = None
                self._start_drain()
                self._changed()

        self._run_started = time.monotonic()
        self._run_task = asyncio.get_running_loop().create_task(body(), name="pdtnb-run")
        self._run_task.add_done_callback(_consume)
        self._changed()
        return self._run_task

    # ---- after a run: record the jobs it left live ------------------------------------------

    def _start_drain(self) -> None:
        """A run that ended early (stopped, timed out, failed) may leave jobs live, and nobody
        would reap them: the table would show them live long after their processes ended. Reap
        them as they end (update phases only, nothing is launched) until none is live."""
        if not self.pipeline.is_open or self.draining or self._drain_disabled:
            return
        self._drain_task = asyncio.get_running_loop().create_task(self._drain(), name="pdtnb-drain")
        self._drain_task.add_done_callback(_consume)

    _drain_disabled = False

    async def _drain(self) -> None:
        interval = min([t.poll_interval for t in self.pipeline.tasks.values() if t.poll_interval] or [1.0])
        interval = min(max(interval, 0.1), 1.0)
        self._drain_busy = False
        try:
            while self.pipeline.is_open and not self.running:
                async with self._lock():
                    if not self.pipeline.is_open:
                        return
                    busy = await self.pipeline.update_phase()
                if not busy:
                    return
                self._drain_busy = True
                self._changed()
                await asyncio.sleep(interval)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("reaping the jobs a run left live failed")
        finally:
            was_busy, self._drain_busy = self._drain_busy, False
            if was_busy and self.pipeline.is_open:
                self._changed()

    async def _cancel_drain(self) -> None:
        task = self._drain_task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass

    async def wait(self, timeout: float | None = None) -> RunSummary | BaseException | None:
        """Wait until the background run ends (the pipeline is quiet, or it was stopped) and return
        :attr:`last_run`: its summary, or the exception it ended with. None if there was no run.
        ``timeout`` seconds passed first: TimeoutError; the run goes on (waiting never stops it)."""
        task = self._run_task
        if task is None:
            return None
        if not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(
                    f"the background run is still going after {timeout:g} s (it goes on: %pdt stop ends it)"
                ) from None
            except BaseException:
                if not task.done():  # the waiter itself was cancelled (interrupt): the run goes on
                    raise
        return self.last_run

    async def stop(self, drain: bool = True) -> RunSummary | None:
        """End a background run after its current round; returns its summary. The jobs it left
        live are then reaped as they end (no job is launched), unless ``drain`` is false."""
        task = self._run_task
        if task is None or task.done():
            return None
        self._drain_disabled = not drain
        self.pipeline.stop()
        try:
            return await asyncio.wait_for(asyncio.shield(task), 30)
        except asyncio.TimeoutError:
            task.cancel()
            return None
        except Exception:
            return None
        finally:
            self._drain_disabled = False


def _snapshot(value: Any) -> Any:
    """A deep copy of ``value``, or ``value`` itself when it cannot be copied."""
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


def _consume(task: asyncio.Task[Any]) -> None:
    # The outcome is kept in last_run; this only stops asyncio warning about an unretrieved error.
    if not task.cancelled():
        task.exception()


#: Every controller whose pipeline still exists (weakly: a pipeline the notebook no longer
#: holds goes, with its controller, its views' state and its in-memory data).
_controllers: weakref.WeakSet[PipelineController] = weakref.WeakSet()
#: The controllers that opened their pipeline, held until they close it, so that the kernel's
#: exit closes every pipeline the notebook opened (:func:`pdtnb.notebook.extension.close_all`).
_opened: set[PipelineController] = set()


def controller_for(pipeline: Pipeline, name: str | None = None) -> PipelineController:
    """The controller of ``pipeline`` (one per pipeline, created on first use, kept on the
    pipeline itself: it lives as long as the pipeline does)."""
    controller = pipeline.front_ends.get("notebook")
    if controller is None:
        controller = PipelineController(pipeline, name)
        pipeline.front_ends["notebook"] = controller
        _controllers.add(controller)
    elif name and not controller.name:
        controller.name = name
    return controller


def all_controllers() -> list[PipelineController]:
    """Every controller whose pipeline still exists in this process, the open ones first."""
    opened = list(_opened)
    return opened + [c for c in list(_controllers) if c not in _opened]
