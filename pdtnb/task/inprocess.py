"""InProcessSyncTask: an async Python function run inside the pipeline's own event loop.

An in-process pipeline of a million jobs spends most of its time in what surrounds each body, so
the per-job path is kept short (issue 14):

- the pipeline's launch phase hands each of its ``launch_concurrency`` workers a stream of ready
  jobs (:meth:`InProcessSyncTask.launch_stream`, offered by :meth:`Task.stream_launcher`) instead
  of calling :meth:`~InProcessSyncTask.launch` once per job: one coroutine per worker, not one
  per job, with the look-ups done once. Each job does exactly what ``launch`` does (bodies of the
  same worker still run one after the other, and the workers concurrently); a subclass that
  overrides ``launch`` gets per-job calls as before;
- the body is called positionally when its parameters allow (``FunctionBinding.target``);
- start and end are ``time.time_ns()`` readings, made datetimes only when a record needs them
  (the same microsecond ``datetime.now`` would give), and a success in an in-memory ``done``
  repository is stored compactly (see :mod:`pdtnb.repository.memory`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..errors import StorageFaultError
from ..record import JobRecord, Outcome, host_name, record_from_exception, success_dict_ns, time_from_ns
from ..repository.base import MetadataRepository, Repository
from ..retry import Retry
from .base import DEFAULT_LAUNCH, LaunchOptions, utcnow
from .function import FunctionBinding, FunctionTask

__all__ = ["InProcessSyncTask"]

log = logging.getLogger("pdtnb.task")

_time_ns = time.time_ns


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
        hooks: Iterable[Any] = (),
        rerun_outdated: bool = False,
    ):
        super().__init__(name, ready=ready, retry=retry, hooks=hooks, rerun_outdated=rerun_outdated)
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
            start = _time_ns()  # a clock reading; a datetime only when a record needs one
            printed = self.launch_print  # the code this job runs, whatever is redefined meanwhile
            binding = self._binding
            in_body = self._in_body
            in_body.add(job)
            try:
                # binding.call(job), inlined for the positional shapes: this is the per-job hot path
                # of in-process pipelines.
                target = binding.target
                if target is None:
                    await binding.call(job)
                elif binding.leading_job:
                    await target(job, *binding.args)
                else:
                    await target(*binding.args)
            except BaseException as e:  # SystemExit, KeyboardInterrupt raised by the body: its failure
                in_body.discard(job)
                await self._body_raised(job, start, e, options)
                return
            in_body.discard(job)
            if self._killed and job in self._killed:
                self._absorb_kill(job)
                await self._write_killed(job, time_from_ns(start), options)
                return
            # write_success, inlined for the common case: the per-job hot path of in-process pipelines.
            sink = self._sink
            if (
                sink is not None
                and options is DEFAULT_LAUNCH
                and sink[0] is not None
                and self.metadata
                and self._hook_set is None  # hooks get the record: write_success builds it
            ):
                writer = sink[2]
                digest = printed.digest if printed is not None else None
                if writer is not None:  # an in-memory done repository: stored compactly
                    writer(job, start, _time_ns(), digest)
                else:
                    await sink[0].dump(job, success_dict_ns(start, _time_ns(), printed))
                self.successes += 1
                if sink[1].loaded:  # type: ignore[union-attr]
                    sink[1].note_success(job, digest)  # type: ignore[union-attr]
                return
            await self.write_success(job, time_from_ns(start), utcnow(), options)
        except OSError as e:  # writing the record: a full disk is not the job's failure
            error = self._storage_error(job, e)
            if error is e:
                raise
            raise error from e

    async def _body_raised(self, job: str, start: int, e: BaseException, options: LaunchOptions) -> None:
        """The body of ``job`` (started at clock reading ``start``) raised ``e``: record the
        failure, or the kill; raise when the pipeline itself is being stopped (the job stays
        ready) or the storage failed (StorageFaultError: no record, and the run stops)."""
        if isinstance(e, asyncio.CancelledError):
            if job not in self._killed:
                raise e  # the pipeline itself is being stopped: the job stays ready
            self._absorb_kill(job)
            await self._write_killed(job, time_from_ns(start), options)
            return
        fault = self.storage_fault(job, e)
        if fault is not None:  # the disk failed, not the job: no record, and the run stops
            raise fault from e
        log.info("in-process task %s:%s failed: %s", self.name, job, type(e).__name__)
        record = record_from_exception(e, time_from_ns(start), attempt=options.attempt)
        await self.write_record(job, record, e, options)

    def _storage_error(self, job: str, e: OSError) -> OSError:
        """What to raise for ``e``, met writing ``job``'s record: a storage fault (caused by
        ``e``), else ``e`` itself."""
        if isinstance(e, StorageFaultError):
            return e
        fault = self.storage_fault(job, e)
        if fault is None:
            return e
        fault.__cause__ = e
        return fault

    def stream_launcher(self) -> Callable[..., Awaitable[int]] | None:
        """:meth:`launch_stream` for the pipeline's launch phase; None when a subclass overrides
        :meth:`launch` (the pipeline then calls it for each job)."""
        if type(self).launch is not InProcessSyncTask.launch:
            return None
        return self.launch_stream

    async def launch_stream(self, jobs: Iterable[str], failed: Callable[[str, Exception], Awaitable[bool]]) -> int:
        """``await self.launch(job)`` for every job ``jobs`` yields, in turn, within this one
        coroutine: the pipeline's launch phase runs a stream of ready jobs this way (one per
        ``launch_concurrency`` worker), so that a job costs its body and its record but no
        coroutine or attribute look-ups of its own. Each job does exactly what :meth:`launch`
        does; an exception ``launch(job)`` would raise (a failed write of a record, a storage
        fault) is handed to ``failed(job, exc)``, which says whether to go on. A cancellation
        propagates. Returns how many launches completed."""
        binding = self._binding
        target, args, leading = binding.target, binding.args, binding.leading_job
        call = binding.call
        in_body, killed = self._in_body, self._killed
        time_ns = _time_ns
        printed = self.launch_print
        digest = printed.digest if printed is not None else None
        launched = 0
        for job in jobs:
            try:
                start = time_ns()
                in_body.add(job)
                try:
                    if target is None:
                        await call(job)
                    elif leading:
                        await target(job, *args)
                    else:
                        await target(*args)
                except BaseException as e:
                    in_body.discard(job)
                    await self._body_raised(job, start, e, DEFAULT_LAUNCH)
                    launched += 1
                    continue
                in_body.discard(job)
                if killed and job in killed:
                    self._absorb_kill(job)
                    await self._write_killed(job, time_from_ns(start), DEFAULT_LAUNCH)
                    launched += 1
                    continue
                sink = self._sink
                if sink is not None and sink[2] is not None and self.metadata:
                    sink[2](job, start, time_ns(), digest)  # an in-memory done repository: stored compactly
                    self.successes += 1
                    index = sink[1]
                    if index.loaded:  # type: ignore[union-attr]
                        index.note_success(job, digest)  # type: ignore[union-attr]
                elif sink is not None and sink[0] is not None and self.metadata:
                    await sink[0].dump(job, success_dict_ns(start, time_ns(), printed))
                    self.successes += 1
                    if sink[1].loaded:  # type: ignore[union-attr]
                        sink[1].note_success(job, digest)  # type: ignore[union-attr]
                else:
                    await self.write_success(job, time_from_ns(start), utcnow())
                launched += 1
            except Exception as e:  # what launch(job) would raise (CancelledError is not one)
                if isinstance(e, OSError):
                    e = self._storage_error(job, e)
                if not await failed(job, e):
                    break
        return launched

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
        codes = (InProcessSyncTask.launch.__code__, InProcessSyncTask.launch_stream.__code__)
        for candidate in asyncio.all_tasks():
            coro: Any = candidate.get_coro()
            while coro is not None:
                frame = getattr(coro, "cr_frame", None)
                if (
                    getattr(coro, "cr_code", None) in codes
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
        outcome=Outcome.KILLED, start_time=start, end_time=utcnow(), host=host_name(), reason="killed by request"
    )
