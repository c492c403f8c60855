"""Tasks and links: how a unit of work is wired to the repositories it reads and writes.

A :class:`Link` records a repository's role for a task (input, output, status) and how it gates
the task (``required_for_start``, ``inhibits_start``) and the tasks plugged after it
(``required_for_output``, ``inhibits_output``). The scheduler never looks at anything else: a job
is ready for a task when every ``required_for_start`` repository holds it and no
``inhibits_start`` repository does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import TaskConfigError
from ..repository.base import MetadataRepository, Repository
from ..repository.combinators import (
    AggregateAndRepository,
    AggregateOrRepository,
    BlockingRepository,
    RelatedItemRepository,
)

__all__ = ["Link", "Task", "STDOUT", "failure_record", "is_failure_record", "utcnow"]

log = logging.getLogger("pdtnb.task")


class _StderrIsStdout:
    """The type of :data:`STDOUT`."""

    def __repr__(self) -> str:
        return "STDOUT"


#: Pass as a ProcessTask's ``stderr`` to interleave standard error into the stdout repository.
STDOUT = _StderrIsStdout()


_now = datetime.now
_UTC = timezone.utc


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (what done records store)."""
    return _now(_UTC)


#: How many times a task tries to collect a finished job's results before recording it as failed.
REAP_ATTEMPTS = 3


class ReapAttempts:
    """Counts the failed attempts to collect (reap) each finished job of a task that runs jobs
    outside the pipeline (processes, pods). A failure is retried on the next rounds; after
    ``limit`` failures the task records the job as failed instead, so one job whose results
    cannot be collected never keeps a pipeline busy forever."""

    def __init__(self, task: str, limit: int = REAP_ATTEMPTS):
        self.task = task
        self.limit = limit
        self._failures: dict[str, int] = {}

    def failed(self, job: str, exc: BaseException) -> bool:
        """Log this failure; True when it was the last attempt (the caller gives up on the job)."""
        count = self._failures.get(job, 0) + 1
        self._failures[job] = count
        log.error("task %s: could not reap job %s (attempt %d of %d)", self.task, job, count, self.limit, exc_info=exc)
        return count >= self.limit

    def done(self, job: str) -> None:
        """The job was reaped, or given up on: forget its count."""
        self._failures.pop(job, None)


def check_type(task: str, label: str, value: Any, kinds: type | tuple[type, ...], what: str,
               optional: bool = True) -> None:
    """Refuse a constructor argument of the wrong kind with a message naming the task and the
    argument (a pydatatask script passing, say, a Resources for a ResourceManager otherwise fails
    much later, far from the mistake)."""
    if value is None and optional:
        return
    if not isinstance(value, kinds):
        raise TypeError(f"task {task!r}: {label} must be {what}")


def as_timeout(task: str, timeout: timedelta | float | None) -> timedelta | None:
    """A task's ``timeout`` argument (a timedelta or seconds) as a positive timedelta, or None."""
    if timeout is None:
        return None
    if not isinstance(timeout, timedelta):
        timeout = timedelta(seconds=float(timeout))
    if timeout <= timedelta(0):
        raise ValueError(f"task {task!r}: timeout must be positive, not {timeout}")
    return timeout


def as_window(window: timedelta | float) -> timedelta:
    """A launch-rate ``window`` argument (a timedelta or seconds) as a timedelta."""
    return window if isinstance(window, timedelta) else timedelta(seconds=float(window))


def failure_record(exc: BaseException, start_time: datetime | None = None, phase: str = "run") -> dict[str, Any]:
    """The ``done`` entry of a job that raised: the exception, its traceback, and when."""
    return {
        "result": "exception",
        "phase": phase,
        "exception": repr(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "start_time": start_time or utcnow(),
        "end_time": utcnow(),
    }


_FAILED_RESULTS = frozenset({"exception", "failure", "failed", "error", "timeout"})


def is_failure_record(record: Any) -> bool:
    """Whether a ``done`` entry describes a failed job (every pdtnb task writes ``result``; process
    and pod records also carry a non-zero ``exit_code``)."""
    if not isinstance(record, dict):
        return False
    if record.get("result") in _FAILED_RESULTS:
        return True
    code = record.get("exit_code")
    return isinstance(code, int) and code != 0


@dataclass
class Link:
    """A repository's role for one task. Create links with :meth:`Task.link`, not directly."""

    repo: Repository
    is_input: bool = False
    is_output: bool = False
    is_status: bool = False
    inhibits_start: bool = False
    required_for_start: bool = False
    inhibits_output: bool = False
    required_for_output: bool = False

    @property
    def kind(self) -> str:
        """``input``, ``status``, ``output`` or ``other``: the order in which status lists links."""
        if self.is_input:
            return "input"
        if self.is_status:
            return "status"
        if self.is_output:
            return "output"
        return "other"


class Task(ABC):
    """One stage of a pipeline: something that can be launched for a job and later reaped.

    Subclasses implement :meth:`update` (reap finished jobs; return whether anything is live or
    happened) and :meth:`launch` (start one job). ``launch`` may return ``False`` to say the job
    was not started because a quota is full; the pipeline then retries it in a later round.
    """

    #: Seconds between update rounds while this task has live jobs, for tasks that cannot tell the
    #: pipeline when a job ends. Tasks that call :meth:`notify` on completion set it to None.
    poll_interval: float | None = 1.0
    #: The name of the link whose repository records finished jobs (success or failure).
    done_link: str = "done"
    #: The name of the link whose repository holds the running jobs, if any.
    live_link: str | None = "live"

    def __init__(self, name: str, ready: Repository | None = None, disabled: bool = False):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a task name must be a non-empty string, not {name!r}")
        self.name = name
        self._ready = ready
        self.links: dict[str, Link] = {}
        self.synchronous = False
        self.metadata = True
        self.disabled = disabled
        self._wake: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # ---- readiness -------------------------------------------------------------------------

    @property
    def ready(self) -> Repository:
        """The jobs this task may launch: the override given to the constructor, or
        ``AND(required_for_start) - OR(inhibits_start)``."""
        if self._ready is not None:
            return self._ready
        return BlockingRepository(
            AggregateAndRepository(**self.required_for_start),
            AggregateOrRepository(**self.inhibits_start),
        )

    # ---- links -----------------------------------------------------------------------------

    def link(
        self,
        name: str,
        repo: Repository,
        is_input: bool = False,
        is_output: bool = False,
        is_status: bool = False,
        inhibits_start: bool = False,
        required_for_start: bool | None = None,
        inhibits_output: bool = False,
        required_for_output: bool | None = None,
    ) -> None:
        """Link ``repo`` to this task under ``name``.

        ``required_for_start`` defaults to ``is_input`` and ``required_for_output`` to ``is_output``.
        """
        if not isinstance(repo, Repository):
            raise TypeError(f"task {self.name!r}: link {name!r} must be a Repository, not {type(repo).__name__}")
        previous = self.links.get(name)
        if previous is not None and previous.repo is not repo:
            # pydatatask replaced it silently; a plug followed by a link of the same name (both
            # called "out") loses the plugged input this way, so say so.
            log.warning("task %r: link %r is linked again, to %r; the link to %r is replaced",
                        self.name, name, repo, previous.repo)
        self.links[name] = Link(
            repo=repo,
            is_input=is_input,
            is_output=is_output,
            is_status=is_status,
            inhibits_start=inhibits_start,
            required_for_start=is_input if required_for_start is None else required_for_start,
            inhibits_output=inhibits_output,
            required_for_output=is_output if required_for_output is None else required_for_output,
        )

    def plug(
        self,
        output: Task,
        output_links: Iterable[str] | None = None,
        meta: bool = True,
        translator: Repository | None = None,
        translate_allow_deletes: bool = False,
        translate_prefetch_lookup: bool = True,
    ) -> None:
        """Link ``output``'s outputs as this task's inputs.

        With ``meta``, its ``required_for_output`` links become ``required_for_start`` here and its
        ``inhibits_output`` links become ``inhibits_start``, so this task waits for ``output`` to
        finish a job, not merely to start writing it. Non-output links are named
        ``OUTPUTTASK_LINK``. With ``translator``, job ``j`` here reads ``output``'s job
        ``await translator.info(j)``.
        """
        allow = None if output_links is None else set(output_links)
        for name, link in output.links.items():
            attrs: dict[str, bool] = {}
            if link.inhibits_output and meta:
                attrs["inhibits_start"] = True
            if link.is_output and (allow is None or name in allow):
                attrs["is_input"] = True
            if link.required_for_output and meta:
                attrs["required_for_start"] = True
            if not attrs:
                continue
            link_name = name if link.is_output else f"{output.name}_{name}"
            repo = link.repo
            if translator is not None:
                repo = RelatedItemRepository(
                    repo,
                    translator,
                    allow_deletes=translate_allow_deletes,
                    prefetch_lookup=translate_prefetch_lookup,
                )
            self.link(link_name, repo, **attrs)

    def _links_where(self, flag: str) -> dict[str, Repository]:
        return {name: link.repo for name, link in self.links.items() if getattr(link, flag)}

    @property
    def input(self) -> dict[str, Repository]:
        """Link name to repository, for links marked ``is_input``."""
        return self._links_where("is_input")

    @property
    def output(self) -> dict[str, Repository]:
        """Link name to repository, for links marked ``is_output``."""
        return self._links_where("is_output")

    @property
    def status(self) -> dict[str, Repository]:
        """Link name to repository, for links marked ``is_status``."""
        return self._links_where("is_status")

    @property
    def inhibits_start(self) -> dict[str, Repository]:
        """Link name to repository, for links marked ``inhibits_start``."""
        return self._links_where("inhibits_start")

    @property
    def required_for_start(self) -> dict[str, Repository]:
        """Link name to repository, for links marked ``required_for_start``."""
        return self._links_where("required_for_start")

    @property
    def inhibits_output(self) -> dict[str, Repository]:
        """Link name to repository, for links marked ``inhibits_output``."""
        return self._links_where("inhibits_output")

    @property
    def required_for_output(self) -> dict[str, Repository]:
        """Link name to repository, for links marked ``required_for_output``."""
        return self._links_where("required_for_output")

    @property
    def done_repository(self) -> MetadataRepository | None:
        """The repository where finished jobs are recorded, if the task has one."""
        link = self.links.get(self.done_link)
        return link.repo if link is not None and isinstance(link.repo, MetadataRepository) else None

    @property
    def live_repository(self) -> Repository | None:
        """The repository holding the task's running jobs, if the task has one."""
        link = self.links.get(self.live_link) if self.live_link else None
        return link.repo if link is not None else None

    # ---- lifecycle -------------------------------------------------------------------------

    async def validate(self) -> None:
        """Raise :class:`TaskConfigError` if the task is misconfigured; called once when the
        pipeline opens, so subclasses may also do async set-up here."""
        if self._ready is None and not self.required_for_start:
            raise TaskConfigError(
                f"task {self.name!r} has no link with required_for_start (usually an is_input link), "
                "so it could never have a ready job; link an input or pass ready=..."
            )

    @abstractmethod
    async def update(self) -> bool:
        """Reap finished jobs. Return True if anything happened or any job is still live."""

    @abstractmethod
    async def launch(self, job: str) -> bool | None:
        """Start ``job``. Return False if a quota refused it (it stays ready); errors are recorded
        by the pipeline."""

    async def record_failure(self, job: str, exc: BaseException, phase: str = "launch") -> bool:
        """Write a failure record for ``job`` into the done repository; False if there is none."""
        repo = self.done_repository
        if repo is None or not self.metadata:
            return False
        await repo.dump(job, failure_record(exc, phase=phase))
        return True

    # ---- waking the pipeline ---------------------------------------------------------------

    def _attach(self, wake: Callable[[], None] | None) -> None:
        self._wake = wake

    def notify(self) -> None:
        """Tell the pipeline a job of this task ended, so ``run`` starts a round now.

        Safe to call from any thread.
        """
        wake = self._wake
        if wake is not None:
            wake()


def make_waker(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> Callable[[], None]:
    """A function that sets ``event`` on ``loop`` from any thread."""
    loop_thread = threading.get_ident()

    def wake() -> None:
        if threading.get_ident() == loop_thread:
            event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    return wake
