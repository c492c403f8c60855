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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import admin
from ..pipeline import LaunchReport, Pipeline, RunSummary
from ..status import PipelineStatus, StatusTracker, pipeline_status, pipeline_trace
from .kernel_loop import remember_loop_thread

__all__ = ["PipelineController", "controller_for", "StepReport", "Action"]

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


class PipelineController:
    """Drives one pipeline from a notebook. Get it with :func:`controller_for`."""

    def __init__(self, pipeline: Pipeline, name: str | None = None):
        self.pipeline = pipeline
        self.name = name
        self.tracker = StatusTracker(pipeline)
        self.actions: list[Action] = []
        self.last_run: RunSummary | BaseException | None = None
        self._run_task: asyncio.Task[RunSummary] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._open_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"<PipelineController {self.name or ''} {self.pipeline!r}>"

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the pipeline is open on."""
        return self.pipeline.loop if self.pipeline.is_open else None

    async def open(self) -> bool:
        """Open the pipeline on the running loop, if it is not open; True if this call opened it."""
        if self.pipeline.is_open:
            return False
        await self.pipeline.open()
        remember_loop_thread(asyncio.get_running_loop())
        self.tracker = StatusTracker(self.pipeline)
        return True

    async def close(self) -> None:
        """Stop a background run, then close the pipeline and its session."""
        await self.stop()
        await self.pipeline.close()
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

    # ---- acting ----------------------------------------------------------------------------

    async def update(self) -> StepReport:
        """One update phase (reap finished jobs)."""
        await self.open()
        busy = await self.pipeline.update_phase()
        self._record("update")
        self._changed()
        return StepReport(busy_tasks=busy)

    async def launch_phase(self) -> StepReport:
        """One launch phase (start ready jobs)."""
        await self.open()
        report = await self.pipeline.launch_phase()
        self._record("launch_phase")
        self._changed()
        return StepReport(launch=report)

    async def step(self) -> StepReport:
        """One round: the update phase, then the launch phase."""
        await self.open()
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

    async def start_run(
        self, forever: bool = False, launch_once: bool = False, timeout: float | None = None
    ) -> asyncio.Task[RunSummary]:
        """Start :meth:`Pipeline.run` in the background on the loop; returns its task at once."""
        await self.open()
        if self.running:
            raise RuntimeError("the pipeline is already running: %pdt stop first")
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
                self._changed()

        self._run_task = asyncio.get_running_loop().create_task(body(), name="pdtnb-run")
        self._run_task.add_done_callback(_consume)
        self._changed()
        return self._run_task

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

    async def stop(self) -> RunSummary | None:
        """End a background run after its current round; returns its summary."""
        task = self._run_task
        if task is None or task.done():
            return None
        self.pipeline.stop()
        try:
            return await asyncio.wait_for(asyncio.shield(task), 30)
        except asyncio.TimeoutError:
            task.cancel()
            return None
        except Exception:
            return None


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


_controllers: dict[int, PipelineController] = {}


def controller_for(pipeline: Pipeline, name: str | None = None) -> PipelineController:
    """The controller of ``pipeline`` (one per pipeline, created on first use)."""
    controller = _controllers.get(id(pipeline))
    if controller is None or controller.pipeline is not pipeline:
        controller = PipelineController(pipeline, name)
        _controllers[id(pipeline)] = controller
    elif name and not controller.name:
        controller.name = name
    return controller


def all_controllers() -> list[PipelineController]:
    """Every controller created in this process."""
    return list(_controllers.values())
