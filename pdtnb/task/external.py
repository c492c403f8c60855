"""What the tasks whose jobs run outside the pipeline's process share: processes and pods.

Their jobs outlive a launch (and the pipeline itself), so each such task keeps the same books:
the launches of the last ``window`` (a quota's rate limit), the jobs being reaped, how often
reaping a job failed (so that one job whose results cannot be collected never keeps a pipeline
busy forever), and when a job passes its ``timeout``. :class:`ExternalJobTask` holds that
lifecycle once; :class:`~pdtnb.ProcessTask` and :class:`~pdtnb.KubeTask` say how to start, find,
reap and give up on their kind of job.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import time
from abc import abstractmethod
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from .base import ReapAttempts, Task, as_timeout, as_window

__all__ = ["ExternalJobTask"]

log = logging.getLogger("pdtnb.task")


class ExternalJobTask(Task):
    """A task whose jobs run outside the pipeline (processes, pods): launch window, reaping with
    retries and give-up, timeouts. Subclasses implement :meth:`reap` and :meth:`give_up` and may
    override :meth:`reap_error`, which decides whether a failure counts against the attempts."""

    #: Jobs are separate processes or pods: they keep running if the pipeline process dies.
    jobs_outlive_process = True

    def __init__(self, *args: Any, window: timedelta | float, timeout: timedelta | float | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Seconds or a timedelta, checked here once for every kind (a bad value names the task).
        self.window = as_window(window)
        self.timeout: timedelta | None = as_timeout(self.name, timeout)
        self._launch_times: list[float] = []  # wall-clock times of launches, sorted
        self._reaping: set[str] = set()
        self._reap_attempts = ReapAttempts(self.name)

    # ---- the launch window -------------------------------------------------------------------

    def note_launch(self, when: float | None = None) -> None:
        """Count a launch (now, or at ``when``, a job adopted after a restart) in the window."""
        stamp = time.time() if when is None else when
        if stamp >= time.time() - self.window.total_seconds():
            bisect.insort(self._launch_times, stamp)

    def recent_launches(self) -> int:
        """The launches within ``window`` (what a quota's ``launches`` limits)."""
        cutoff = time.time() - self.window.total_seconds()
        times = self._launch_times
        cut = bisect.bisect_left(times, cutoff)
        if cut:
            del times[:cut]
        return len(times)

    # ---- timeouts ----------------------------------------------------------------------------

    def deadline(self, start: datetime | None) -> datetime | None:
        """When a job started at ``start`` passes the task's timeout (None: no timeout)."""
        if self.timeout is None or start is None:
            return None
        return start + self.timeout

    # ---- reaping -----------------------------------------------------------------------------

    @abstractmethod
    async def reap(self, job: str, handle: Any) -> None:
        """Collect a finished job (its outputs, its record) and forget it; raise to retry later."""

    @abstractmethod
    async def give_up(self, job: str, handle: Any, exc: Exception) -> bool:
        """Record ``job`` as failed after the last reap attempt failed with ``exc``; True if the
        job left the task's books (False: try again at a later round)."""

    def reap_error(self, job: str, exc: Exception) -> bool:
        """Whether a reap failure counts against the job's attempts (a subclass returns False for
        failures that say nothing about the job, such as an unreachable API server)."""
        return True

    def is_reaping(self, job: str) -> bool:
        """Whether ``job`` is being reaped (or killed, or timed out) now: it must not be twice."""
        return job in self._reaping

    @contextlib.contextmanager
    def handling(self, job: str) -> Iterator[None]:
        """Mark ``job`` as being handled (reaped, killed, timed out) for the duration."""
        self._reaping.add(job)
        try:
            yield
        finally:
            self._reaping.discard(job)

    def forget_attempts(self, job: str) -> None:
        """``job`` left the books another way (killed, deleted): drop its reap-failure count."""
        self._reap_attempts.done(job)

    async def reap_safely(self, job: str, handle: Any) -> bool:
        """Reap ``job``; True if it left the books (reaped, or recorded as failed after the last
        attempt). A failure is logged and retried at a later round; after ``REAP_ATTEMPTS`` of
        them the job is given up on. A storage fault (disk full...) is no attempt: it is held for
        the task's update to raise (:meth:`~pdtnb.Task.raise_storage_fault`), and the job stays."""
        if job in self._reaping:
            return False
        self._reaping.add(job)
        try:
            await self.reap(job, handle)
        except Exception as e:
            fault = self.storage_fault(job, e, "stays live: the next run reaps it")
            if fault is not None:
                # Not an attempt against the job: the storage failed. It stays in the books, and
                # the task's update raises the fault (the run stops) once every reap has ended.
                self.hold_storage_fault(fault)
                return False
            if not self.reap_error(job, e):
                return False
            if self._reap_attempts.failed(job, e):
                done = await self.give_up(job, handle, e)
                if done:
                    self._reap_attempts.done(job)
                return done
            return False
        else:
            self._reap_attempts.done(job)
            return True
        finally:
            self._reaping.discard(job)
