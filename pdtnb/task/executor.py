"""ExecutorTask: a Python function run in a :class:`concurrent.futures.Executor`.

For CPU-bound or blocking bodies that must not stall the pipeline's event loop. Each job runs in
a worker thread; an ``async def`` body gets its own event loop there. Completion is signalled to
the pipeline at once (no polling), so ``run`` reaps a job the moment it ends.

The executor may also be a Dask cluster's: ``distributed.Client.get_executor()`` (or a
:class:`~pdtnb.task.dask.DaskExecutor`), whose bodies run in worker processes, perhaps on other
machines. Such an executor is driven through :class:`~pdtnb.task.dask.DaskExecutor`, which makes
every attempt a fresh Dask task and turns a future Dask itself cancelled (its scheduler went away)
into that job's failure instead of a silent cancellation; :mod:`pdtnb.task.dask` says why.

Quotas: with ``resource_manager`` and ``job_resources`` a job's resources are reserved before it is
submitted (a full quota leaves it ready, as for process tasks) and count while it is in flight, so
the quota bounds what is handed to the executor, not merely what runs.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Executor, Future
from datetime import datetime
from typing import Any

from ..errors import SessionClosedError, StorageFaultError
from ..record import JobRecord, Outcome, host_name, record_from_exception
from ..repository.base import MetadataRepository, Repository
from ..repository.live import ExecutorLiveRepo
from ..resources import ResourceManager, Resources
from ..retry import Retry
from .base import DEFAULT_LAUNCH, LaunchOptions, check_type, utcnow
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


def _is_dask_executor(executor: Executor) -> bool:
    """Whether ``executor`` is ``distributed.Client.get_executor()``'s (checked without importing
    distributed, which only a Dask user has)."""
    return type(executor).__module__ == "distributed.cfexecutor" and hasattr(executor, "_client")


def dask_dashboard_link(task: Any) -> str | None:
    """The Dask dashboard of the cluster running ``task``'s bodies, or None (not a Dask executor,
    no dashboard, not connected)."""
    try:
        executor = getattr(task, "executor", None)
    except SessionClosedError:  # a session resource's pool, its pipeline not open
        return None
    if executor is None:
        return None
    if type(executor).__module__ == "pdtnb.task.dask":  # a DaskExecutor says it itself
        link: str | None = executor.dashboard_link
        return link
    if not _is_dask_executor(executor):
        return None
    from .dask import dashboard_link_of

    return dashboard_link_of(executor._client)


class ExecutorTask(FunctionTask):
    """Runs the body in ``executor`` (tested with ThreadPoolExecutor and with a Dask cluster's
    ``Client.get_executor()``, see :mod:`pdtnb.task.dask`).

    Links ``live`` (the running jobs) and ``done`` (outcomes, as for
    :class:`~pdtnb.InProcessSyncTask`). The executor bounds the concurrency; ``resource_manager``
    with ``job_resources`` (CPU and memory per job) also bounds what is submitted. ``executor`` may
    also be a session resource giving one (``session.resource``), started when the pipeline opens
    and shut down when it closes, as a pipeline file's ``executor:`` is. A job that meets a
    storage fault (disk full, quota, read-only or I/O error) is not recorded: it stays ready, and
    the next :meth:`update` raises :class:`~pdtnb.StorageFaultError`, which stops the run.
    """

    poll_interval = None  # completion callbacks wake the pipeline
    jobs_outlive_process = False  # worker threads end with this process

    def __init__(
        self,
        name: str,
        executor: Executor | Callable[[], Executor],
        done: MetadataRepository,
        ready: Repository | None = None,
        func: Callable[..., Any] | None = None,
        *,
        retry: Retry | None = None,
        resource_manager: ResourceManager | None = None,
        job_resources: Resources | None = None,
        hooks: Iterable[Any] = (),
        rerun_outdated: bool = False,
    ):
        super().__init__(name, ready=ready, retry=retry, hooks=hooks, rerun_outdated=rerun_outdated)
        check_type(name, "resource_manager", resource_manager, ResourceManager, "a ResourceManager")
        check_type(name, "job_resources", job_resources, Resources, "a Resources")
        if (resource_manager is None) != (job_resources is None):
            raise TypeError(f"task {name!r}: resource_manager and job_resources go together")
        self._executor = executor
        self.resource_manager = resource_manager
        self.job_resources = job_resources
        if resource_manager is not None:
            resource_manager.register(self._get_load)
        self._dask: Executor | None = None  # the DaskExecutor driving a Client.get_executor()
        self.done = done
        self._binding = FunctionBinding(self, func)
        # A body's result is whatever the user's function returns: Future[Any].
        self.jobs: dict[Future[Any], tuple[str, datetime, LaunchOptions]] = {}
        self.rev_jobs: dict[str, Future[Any]] = {}
        self._finished: collections.deque[Future[Any]] = collections.deque()
        self.live_version = 0  # bumped whenever the set of running jobs changes
        self.live = ExecutorLiveRepo(self)
        self.link("live", self.live, is_status=True, inhibits_output=True, inhibits_start=True)
        self.link("done", done, is_status=True, required_for_output=True, inhibits_start=True)

    @property
    def executor(self) -> Executor:
        """Where the bodies run: the executor given, or the live one of the session resource given
        (a pool opened with the pipeline and shut down when it closes, as a pipeline file's
        ``executor:`` declares, so that reopening a pipeline in a notebook leaks no pool)."""
        given = self._executor
        if isinstance(given, Executor) or not callable(given):
            return given
        return given()

    async def _get_load(self) -> Resources:
        """What this task holds of its quota: every submitted job not yet reaped (a rate quota's
        ``launches`` is not counted over time here: executor tasks have no launch window)."""
        jr = self.job_resources
        if jr is None:
            return Resources(launches=0)
        n = len(self.jobs)
        return Resources(jr.cpu * n, jr.mem * n, 0)

    def _submit(self, kwargs: dict[str, Any]) -> Future[Any]:
        executor = self.executor
        if _is_dask_executor(executor):
            if self._dask is None:
                from .dask import DaskExecutor

                options = {k: v for k, v in getattr(executor, "_kwargs", {}).items() if k != "pure"}
                self._dask = DaskExecutor(executor._client, **options)  # type: ignore[attr-defined]
            executor = self._dask
        submit_named = getattr(executor, "submit_named", None)
        if submit_named is not None and type(executor).__module__ == "pdtnb.task.dask":
            future: Future[Any] = submit_named(self.name, _run_body, self._binding.func, kwargs)
            return future
        return executor.submit(_run_body, self._binding.func, kwargs)  # type: ignore[arg-type]

    def _on_done(self, future: Future[Any]) -> None:
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
        self, future: Future[Any], job: str, start: datetime, options: LaunchOptions
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

    async def launch(self, job: str, options: LaunchOptions = DEFAULT_LAUNCH) -> bool | None:
        self.raise_storage_fault()
        if job in self.rev_jobs:
            return None
        kwargs = self._binding.kwargs(job)
        rm, jr = self.resource_manager, self.job_resources
        if rm is not None and jr is not None:
            limit = await rm.reserve(jr)
            if limit is not None:
                log.debug("task %s: not submitting %s: %s quota reached", self.name, job, limit.name)
                return False  # stays ready; the pipeline tries it again in a later round
        start = utcnow()
        try:
            future = self._submit(kwargs)
        except BaseException:
            if rm is not None and jr is not None:
                await rm.relinquish(jr)
            raise  # recorded by the pipeline: a launch-error naming, say, what could not be pickled
        if self.synchronous or options.sync:
            try:
                await asyncio.wrap_future(future)
            except BaseException:
                pass  # recorded below
            finally:
                if rm is not None and jr is not None:
                    await rm.relinquish(jr)
            fault = await self._record(future, job, start, options)
            if fault is not None:
                raise fault
            return None
        self.jobs[future] = (job, start, options)
        self.rev_jobs[job] = future
        self.live_version += 1
        future.add_done_callback(self._on_done)
        return None

    @property
    def running_jobs(self) -> Collection[str]:
        """The jobs submitted and not yet reaped (a live view of :attr:`rev_jobs`' keys), for the
        ``live`` repository (:class:`~pdtnb.repository.live.RunningJobs`)."""
        return self.rev_jobs.keys()

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
        notebook); a command-line run exits without waiting for them, and they are ready again.
        A Dask future can always be cancelled, so on Dask every outstanding job is dropped (a body
        already running on a worker finishes there, unrecorded) and is ready again."""
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
        if getattr(future, "dask_key", None) is not None:
            # A Dask future can always be cancelled: a queued job never starts, a running body
            # finishes on its worker and its outcome is dropped.
            reason = f"killed by request (Dask future {future.dask_key} cancelled)"  # type: ignore[attr-defined]
        else:
            reason = "killed by request" + (" (its thread was abandoned)" if started else " before it started")
        record = JobRecord(Outcome.KILLED, start_time=start, end_time=utcnow(), host=host_name(), reason=reason)
        await self.write_record(job, record, None, options)
        self.notify()
        return True
