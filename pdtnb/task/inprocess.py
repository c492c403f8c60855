"""InProcessSyncTask: an async Python function run inside the pipeline's own event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..errors import StorageFaultError
from ..record import JobRecord, Outcome, host_name, record_from_exception, success_dict
from ..repository.base import MetadataRepository, Repository
from ..retry import Retry
from .base import _UTC, DEFAULT_LAUNCH, LaunchOptions, _now
from .function import FunctionBinding, FunctionTask

__all__ = ["InProcessSyncTask"]

log = logging.getLogger("pdtnb.task")


class InProcessSyncTask(FunctionTask):
    """Runs ``async def body(job, LINK...)`` to completion during the launch phase.

    Use it as a decorator::

        @InProcessSyncTask("summary", done_repo)
        async def summary(job, books, reports): ...

    Each attempt's outcome goes to ``done`` (linked as status, inhibiting restart) as a job record
    (:mod:`pdtnb.record`): success, or failure with the exception, its traceback and frames. Any
    exception the body raises is that job's failure, ``SystemExit`` and ``KeyboardInterrupt``
    included; a cancellation of the pipeline itself (Ctrl-C of the controller) is not, and leaves
    the job ready, nor is a storage fault (disk full, quota, read-only or I/O error, met by the body
    or by the writing of the record): the job stays ready and ``launch`` raises
    :class:`~pdtnb.StorageFaultError`, which stops the run. A failed job is tried again under
    ``retry``, else not until ``retry`` (the command) or ``rm`` clears its record.
    """

    poll_interval = None  # nothing outlives a launch

    def __init__(
        self,
        name: str,
        done: MetadataRepository,
        ready: Repository | None = None,
        func: Callable[..., Any] | None = None,
        *,
        retry: Retry | None = None,
    ):
        super().__init__(name, ready=ready, retry=retry)
        self.done = done
        self._binding = FunctionBinding(self, func)
        # The jobs whose body is running now (kill finds the asyncio task running each one).
        self._in_body: set[str] = set()
        self._killed: set[str] = set()
        self._kill_recorded: dict[str, asyncio.Event] = {}
        self.link("done", done, is_status=True, inhibits_start=True, required_for_output=True)

    async def update(self) -> bool:
        return False

    @property
    def running_jobs(self) -> set[str]:
        """The jobs whose body is running now."""
        return set(self._in_body)

    async def launch(self, job: str, options: LaunchOptions = DEFAULT_LAUNCH) -> None:
        try:
            start = _now(_UTC)
            binding = self._binding
            in_body = self._in_body
            in_body.add(job)
            try:
                # binding.call(job), inlined: this is the per-job hot path of in-process pipelines.
                await (binding.partial(job=job) if binding._wants_job else binding.partial())
            except asyncio.CancelledError:
                in_body.discard(job)
                if job not in self._killed:
                    raise  # the pipeline itself is being stopped: the job stays ready
                self._absorb_kill(job)
                await self._write_killed(job, start, options)
                return
            except BaseException as e:  # SystemExit, KeyboardInterrupt raised by the body: its failure
                in_body.discard(job)
                fault = self.storage_fault(job, e)
                if fault is not None:  # the disk failed, not the job: no record, and the run stops
                    raise fault from e
                log.info("in-process task %s:%s failed: %s", self.name, job, type(e).__name__)
                record = record_from_exception(e, start, attempt=options.attempt)
                await self.write_record(job, record, e, options)
                return
            in_body.discard(job)
            if self._killed and job in self._killed:
                self._absorb_kill(job)
                await self._write_killed(job, start, options)
                return
            # write_success, inlined for the common case: the per-job hot path of in-process pipelines.
            sink = self._sink
            if sink is not None and options is DEFAULT_LAUNCH and sink[0] is not None and self.metadata:
                await sink[0].dump(job, success_dict(start, _now(_UTC)))
                self.successes += 1
                if sink[1].loaded:  # type: ignore[union-attr]
                    sink[1].note_success(job)  # type: ignore[union-attr]
                return
            await self.write_success(job, start, _now(_UTC), options)
        except OSError as e:  # writing the record: a full disk is not the job's failure
            if isinstance(e, StorageFaultError):
                raise
            fault = self.storage_fault(job, e)
            if fault is None:
                raise
            raise fault from e

    async def _write_killed(self, job: str, start: Any, options: LaunchOptions) -> None:
        try:
            await self.write_record(job, _killed_record(start), None, options)
        finally:
            recorded = self._kill_recorded.pop(job, None)
            if recorded is not None:
                recorded.set()

    def _running_task(self, job: str) -> asyncio.Task[Any] | None:
        """The asyncio task whose await chain is inside this task's launch of ``job``. Found by
        walking the tasks' coroutines when a kill asks, so that launches need not record it."""
        code = InProcessSyncTask.launch.__code__
        for candidate in asyncio.all_tasks():
            coro: Any = candidate.get_coro()
            while coro is not None:
                frame = getattr(coro, "cr_frame", None)
                if (
                    getattr(coro, "cr_code", None) is code
                    and frame is not None
                    and frame.f_locals.get("self") is self
                    and frame.f_locals.get("job") == job
                ):
                    return candidate
                coro = getattr(coro, "cr_await", None)
        return None

    def _absorb_kill(self, job: str) -> None:
        self._killed.discard(job)
        task = asyncio.current_task()
        if task is not None and hasattr(task, "uncancel"):
            task.uncancel()

    async def kill(self, job: str) -> bool:
        """Cancel the running body of ``job`` and record it as killed; False if it is not running."""
        if job not in self._in_body:
            return False
        task = self._running_task(job)
        self._killed.add(job)
        if task is None or task is asyncio.current_task():
            return True  # killed from inside its own body: recorded when the body returns
        recorded = self._kill_recorded.setdefault(job, asyncio.Event())
        task.cancel()
        try:
            await asyncio.wait_for(recorded.wait(), 10)
        except asyncio.TimeoutError:
            log.warning("task %s: job %s was cancelled but its body has not stopped", self.name, job)
        return True


def _killed_record(start: Any) -> JobRecord:
    return JobRecord(
        outcome=Outcome.KILLED, start_time=start, end_time=_now(_UTC), host=host_name(), reason="killed by request"
    )
