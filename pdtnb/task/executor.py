"""ExecutorTask: a Python function run in a :class:`concurrent.futures.Executor`.

For CPU-bound or blocking bodies that must not stall the pipeline's event loop. Each job runs in
a worker thread; an ``async def`` body gets its own event loop there. Completion is signalled to
the pipeline at once (no polling), so ``run`` reaps a job the moment it ends.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import datetime
from typing import Any

from ..errors import StorageFaultError
from ..record import JobRecord, Outcome, host_name, record_from_exception
from ..repository.base import MetadataRepository, Repository
from ..repository.live import ExecutorLiveRepo
from ..retry import Retry
from .base import DEFAULT_LAUNCH, LaunchOptions, utcnow
from .function import FunctionBinding, FunctionTask

__all__ = ["ExecutorTask"]

log = logging.getLogger("pdtnb.task")


def _run_body(func: Callable[..., Any], kwargs: dict[str, Any]) -> datetime:
    result = func(**kwargs)
    if inspect.isawaitable(result):
        # A loop of this worker thread's own, closed afterwards (not asyncio.run, which a
        # notebook's patched asyncio may replace with a version that reuses loops).
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(_await(result))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    return utcnow()


async def _await(awaitable: Any) -> Any:
    return await awaitable


class ExecutorTask(FunctionTask):
    """Runs the body in ``executor`` (tested with ThreadPoolExecutor).

    Links ``live`` (the running jobs) and ``done`` (outcomes, as for
    :class:`~pdtnb.InProcessSyncTask`). The executor bounds the concurrency. A job that meets a
    storage fault (disk full, quota, read-only or I/O error) is not recorded: it stays ready, and
    the next :meth:`update` raises :class:`~pdtnb.StorageFaultError`, which stops the run.
    """

    poll_interval = None  # completion callbacks wake the pipeline
    jobs_outlive_process = False  # worker threads end with this process

    def __init__(
        self,
        name: str,
        executor: Executor,
        done: MetadataRepository,
        ready: Repository | None = None,
        func: Callable[..., Any] | None = None,
        *,
        retry: Retry | None = None,
    ):
        super().__init__(name, ready=ready, retry=retry)
        self.executor = executor
        self.done = done
        self._binding = FunctionBinding(self, func)
        self.jobs: dict[Future, tuple[str, datetime, LaunchOptions]] = {}
        self.rev_jobs: dict[str, Future] = {}
        self._finished: collections.deque[Future] = collections.deque()
        self.live_version = 0  # bumped whenever the set of running jobs changes
        self.live = ExecutorLiveRepo(self)
        self.link("live", self.live, is_status=True, inhibits_output=True, inhibits_start=True)
        self.link("done", done, is_status=True, required_for_output=True, inhibits_start=True)

    def _on_done(self, future: Future) -> None:
        # Runs in the worker thread (or here, if already finished): hand over and wake the loop.
        self._finished.append(future)
        self.notify()

    async def update(self) -> bool:
        reaped = False
        while self._finished:
            future = self._finished.popleft()
            entry = self.jobs.pop(future, None)
            if entry is None:
                continue  # cancelled: its outcome is not recorded
            job, start, options = entry
            self.rev_jobs.pop(job, None)
            self.live_version += 1
            fault = await self._record(future, job, start, options)
            if fault is not None:
                self.hold_storage_fault(fault)  # the other finished jobs are still recorded if they can be
            reaped = True
        if reaped:
            # What was reaped may have made other jobs ready, or the pipeline quiet: either way
            # the next round must come now, not when some other job happens to end.
            self.notify()
        self.raise_storage_fault()
        return reaped or bool(self.jobs)

    async def _record(
        self, future: Future, job: str, start: datetime, options: LaunchOptions
    ) -> StorageFaultError | None:
        """Record a finished job; a storage fault (met by the body or by the writing of the
        record) is returned instead, and nothing is recorded: the job stays ready."""
        if future.cancelled():
            return None
        exc = future.exception()
        try:
            if exc is not None:
                fault = self.storage_fault(job, exc)
                if fault is not None:
                    return fault
                log.info("executor task %s:%s failed: %s", self.name, job, type(exc).__name__)
                await self.write_record(job, record_from_exception(exc, start), exc, options)
            else:
                await self.write_success(job, start, future.result(), options)
        except OSError as e:
            fault = self.storage_fault(job, e)
            if fault is None:
                raise
            return fault
        return None

    async def launch(self, job: str, options: LaunchOptions = DEFAULT_LAUNCH) -> None:
        self.raise_storage_fault()
        if job in self.rev_jobs:
            return
        kwargs = self._binding.kwargs(job)
        start = utcnow()
        future = self.executor.submit(_run_body, self._binding.func, kwargs)  # type: ignore[arg-type]
        if self.synchronous or options.sync:
            try:
                await asyncio.wrap_future(future)
            except BaseException:
                pass  # recorded below
            fault = await self._record(future, job, start, options)
            if fault is not None:
                raise fault
            return
        self.jobs[future] = (job, start, options)
        self.rev_jobs[job] = future
        self.live_version += 1
        future.add_done_callback(self._on_done)

    async def cancel(self, job: str) -> None:
        """Stop ``job`` if it has not started; a body already running in a thread cannot be
        interrupted, and its outcome is discarded. Does nothing for a job that is not live."""
        future = self.rev_jobs.pop(job, None)
        if future is None:
            return
        self.jobs.pop(future, None)
        self.live_version += 1
        future.cancel()

    async def interrupt(self) -> None:
        """Drop the queued jobs (they stay ready, with no record). Bodies already running in a
        thread cannot be stopped: they stay live here, and are reaped if this process goes on (a
        notebook); a command-line run exits without waiting for them, and they are ready again."""
        for future, (job, _start, _options) in list(self.jobs.items()):
            if future.cancel():
                self.jobs.pop(future, None)
                self.rev_jobs.pop(job, None)
                self.live_version += 1

    def jobs_here(self) -> int:
        return len(self.jobs)

    def threads_running(self) -> int:
        return sum(1 for future in self.jobs if future.running())

    async def kill(self, job: str) -> bool:
        """Stop ``job`` (not started if queued; abandoned if its body is running in a thread, whose
        outcome is then discarded) and record it as killed. False if it is not live."""
        future = self.rev_jobs.get(job)
        if future is None:
            return False
        entry = self.jobs.get(future)
        await self.cancel(job)
        start, options = (entry[1], entry[2]) if entry is not None else (None, DEFAULT_LAUNCH)
        started = not future.cancelled()
        reason = "killed by request" + (" (its thread was abandoned)" if started else " before it started")
        record = JobRecord(Outcome.KILLED, start_time=start, end_time=utcnow(), host=host_name(), reason=reason)
        await self.write_record(job, record, None, options)
        self.notify()
        return True
