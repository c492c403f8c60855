"""Tasks and links: how a unit of work is wired to the repositories it reads and writes.

A :class:`Link` records a repository's role for a task (input, output, status) and how it gates
the task (``required_for_start``, ``inhibits_start``) and the tasks plugged after it
(``required_for_output``, ``inhibits_output``). The scheduler never looks at anything else: a job
is ready for a task when every ``required_for_start`` repository holds it and no
``inhibits_start`` repository does.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import StorageFaultError, TaskConfigError, short_job_id, storage_fault
from ..fingerprint import Fingerprint, combine
from ..hooks import HookSet, check_hooks
from ..outcomes import OutcomeIndex, outcome_index, succeeded_view
from ..record import (
    LIMITS,
    JobRecord,
    Outcome,
    host_name,
    is_failure_record,
    read_record,
    record_from_exception,
    success_dict,
)
from ..repository.base import MetadataRepository, Repository
from ..repository.combinators import (
    AggregateAndRepository,
    AggregateOrRepository,
    BlockingRepository,
    RelatedItemRepository,
)
from ..repository.memory import success_writer
from ..retry import Retry
from ..streams import STDOUT

__all__ = [
    "Link",
    "Task",
    "STDOUT",
    "LaunchOptions",
    "DEFAULT_LAUNCH",
    "launch_with",
    "is_failure_record",
    "utcnow",
]

log = logging.getLogger("pdtnb.task")


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


def check_type(
    task: str, label: str, value: Any, kinds: type | tuple[type, ...], what: str, optional: bool = True
) -> None:
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


@dataclass(frozen=True)
class LaunchOptions:
    """How one launch of one job is done: arguments of that launch, never task attributes.

    ``sync`` waits for the job to end (in this process where the task can); ``metadata=False``
    writes no done record; ``force`` launches a job that is not ready; ``previous`` is the record
    of the failed attempt this launch retries (its attempt number and history carry over).
    """

    sync: bool = False
    metadata: bool = True
    force: bool = False
    previous: JobRecord | None = None

    @property
    def attempt(self) -> int:
        """The attempt number this launch makes."""
        return 1 if self.previous is None else self.previous.attempt + 1


#: The options of an ordinary launch by the scheduler.
DEFAULT_LAUNCH = LaunchOptions()


async def launch_with(task: Task, job: str, options: LaunchOptions) -> bool | None:
    """``task.launch(job, options)``, also for task classes written before launch options existed
    (pydatatask's ``launch(self, job)``), as long as the options are the defaults."""
    if options is DEFAULT_LAUNCH:
        return await task.launch(job)
    params = inspect.signature(task.launch).parameters
    if len(params) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in params.values()):
        raise TaskConfigError(
            f"task {task.name!r} ({type(task).__name__}) takes no launch options: its launch(job) cannot "
            "run a job synchronously, without metadata or as a retry"
        )
    return await task.launch(job, options)


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
    #: Whether a job is ready only when this repository's record of it is a success (links to
    #: another task's ``done``; None: decided when the pipeline is built).
    require_success: bool | None = None

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
    #: A storage fault met while reaping a job in the background, raised to the pipeline by the
    #: task's next :meth:`update` or :meth:`launch` (see :meth:`hold_storage_fault`).
    _storage_fault: StorageFaultError | None = None
    #: The fingerprint the records of jobs launched now carry (:meth:`stamp_fingerprint`).
    launch_print: Fingerprint | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # Kept for pdtnb.dump, as Repository does: the arguments say what the task is.
        self = super().__new__(cls)
        self.__dict__["constructed_with"] = (args, kwargs)
        return self

    def __init__(
        self,
        name: str,
        ready: Repository | None = None,
        disabled: bool = False,
        *,
        retry: Retry | None = None,
        hooks: Iterable[Any] = (),
        rerun_outdated: bool = False,
    ):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a task name must be a non-empty string, not {name!r}")
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"task {name!r}: retry must be a pdtnb.Retry, not {type(retry).__name__}")
        self.name = name
        #: When a failed attempt is tried again (None: never, as in pydatatask).
        self.retry = retry
        self._ready = ready
        self.links: dict[str, Link] = {}
        #: Every :meth:`plug` call: (the upstream task's name, its options, the links it made).
        self.plugs: list[tuple[str, dict[str, Any], list[str]]] = []
        self.synchronous = False
        self.metadata = True
        self.disabled = disabled
        self._wake: Callable[[], None] | None = None
        self._on_record: Callable[[Task, str, Outcome], None] | None = None
        # The done repository, its outcome index and its compact success writer (see
        # pdtnb.repository.memory; None for other repositories), looked up once (reset when links
        # change).
        self._sink: tuple[MetadataRepository | None, OutcomeIndex | None, Any] | None = None
        #: Successful attempts recorded by this task object (a counter, so that the hot path calls
        #: nothing: the pipeline's run summary takes the difference).
        self.successes = 0
        #: This task's own hooks (:mod:`pdtnb.hooks`); a pipeline adds its own when it opens.
        self.hooks: list[Any] = check_hooks(hooks)
        #: The hooks in effect, dispatched (None when there are none: nothing on the job path).
        self._hook_set: HookSet | None = self.own_hook_set()
        #: Whether the pipeline runs this task's outdated jobs again by itself (:mod:`pdtnb.fingerprint`):
        #: a done job whose task's code changed since is reset at the next launch phase, as
        #: ``retry TASK --outdated`` would. Off by default: code changes re-run nothing unasked.
        self.rerun_outdated = bool(rerun_outdated)

    # ---- what produced a job's result ------------------------------------------------------

    def fingerprint_parts(self) -> dict[str, str] | None:
        """The hashed parts of this task's code as it is now (:mod:`pdtnb.fingerprint`); None for
        a task kind whose records carry no fingerprint (its jobs are never outdated)."""
        return None

    def fingerprint(self) -> Fingerprint | None:
        """This task's fingerprint as its code is now (looked up afresh: a notebook may have
        redefined a function the body calls). A task whose code cannot be inspected has none,
        and is logged: its records then carry no fingerprint rather than a wrong one."""
        try:
            parts = self.fingerprint_parts()
        except Exception as e:
            log.warning("task %s: cannot fingerprint its code: %s", self.name, e)
            return None
        return combine(parts) if parts else None

    def stamp_fingerprint(self) -> Fingerprint | None:
        """Take :meth:`fingerprint` as the one the records of the jobs launched from now on carry
        (the pipeline does at each launch phase); returns it."""
        self.launch_print = printed = self.fingerprint()
        return printed

    @property
    def hook_set(self) -> HookSet | None:
        """The hooks in effect around this task's jobs, dispatched: its own, and while a pipeline
        has it open, the pipeline's after them (None when none has a method a job's life calls)."""
        return self._hook_set

    @hook_set.setter
    def hook_set(self, hooks: HookSet | None) -> None:
        self._hook_set = hooks

    def own_hook_set(
        self, pipeline_hooks: Iterable[Any] = (), reported: set[tuple[int, str]] | None = None
    ) -> HookSet | None:
        """The :class:`~pdtnb.hooks.HookSet` of this task's hooks then ``pipeline_hooks``; None
        when none of them has a method a job's life calls."""
        hooks = [*self.hooks, *pipeline_hooks]
        if not hooks:
            return None
        dispatch = HookSet(hooks, reported)
        return dispatch if dispatch.active else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # ---- readiness -------------------------------------------------------------------------

    @property
    def ready_is_derived(self) -> bool:
        """Whether :attr:`ready` follows from the links alone (no ``ready`` repository given to
        the constructor): then nothing but the linked repositories decides which jobs are ready,
        and a view may reuse a ready set while none of them changed."""
        return self._ready is None

    @property
    def ready(self) -> Repository:
        """The jobs this task may launch: the override given to the constructor, or
        ``AND(required_for_start) - OR(inhibits_start)``."""
        if self._ready is not None:
            return self._ready
        required = {
            name: succeeded_view(link.repo) if link.require_success else link.repo
            for name, link in self.links.items()
            if link.required_for_start
        }
        return BlockingRepository(
            AggregateAndRepository(**required),
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
        *,
        require_success: bool | None = None,
    ) -> None:
        """Link ``repo`` to this task under ``name``.

        ``required_for_start`` defaults to ``is_input`` and ``required_for_output`` to ``is_output``.
        ``require_success`` (for a required link to another task's ``done``) makes a job ready only
        when that record is a success; by default it is on for such links (decided when the
        pipeline is built), so a failed upstream job never feeds this task. Pass False for a
        task that must see failures (a clean-up or a report).
        """
        if not isinstance(repo, Repository):
            raise TypeError(f"task {self.name!r}: link {name!r} must be a Repository, not {type(repo).__name__}")
        self._sink = None
        previous = self.links.get(name)
        if previous is not None and previous.repo is not repo:
            # pydatatask replaced it silently; a plug followed by a link of the same name (both
            # called "out") loses the plugged input this way, so say so.
            log.warning(
                "task %r: link %r is linked again, to %r; the link to %r is replaced",
                self.name,
                name,
                repo,
                previous.repo,
            )
        self.links[name] = Link(
            repo=repo,
            is_input=is_input,
            is_output=is_output,
            is_status=is_status,
            inhibits_start=inhibits_start,
            required_for_start=is_input if required_for_start is None else required_for_start,
            inhibits_output=inhibits_output,
            required_for_output=is_output if required_for_output is None else required_for_output,
            require_success=require_success,
        )

    def plug(
        self,
        output: Task,
        output_links: Iterable[str] | None = None,
        meta: bool = True,
        translator: Repository | None = None,
        translate_allow_deletes: bool = False,
        translate_prefetch_lookup: bool = True,
        *,
        require_success: bool = True,
    ) -> None:
        """Link ``output``'s outputs as this task's inputs.

        With ``meta``, its ``required_for_output`` links become ``required_for_start`` here and its
        ``inhibits_output`` links become ``inhibits_start``, so this task waits for ``output`` to
        finish a job, not merely to start writing it. Non-output links are named
        ``OUTPUTTASK_LINK``. With ``translator``, job ``j`` here reads ``output``'s job
        ``await translator.info(j)``. With ``require_success`` (the default) a job is ready here only
        when ``output``'s attempt at it succeeded: a failed job is *blocked* downstream.
        """
        allow = None if output_links is None else set(output_links)
        made: list[str] = []
        options = {
            "output_links": None if output_links is None else list(output_links),
            "meta": meta,
            "translator": translator,
            "translate_allow_deletes": translate_allow_deletes,
            "translate_prefetch_lookup": translate_prefetch_lookup,
            "require_success": require_success,
        }
        self.plugs.append((output.name, options, made))
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
            if attrs.get("required_for_start") and link.repo is output.done_repository:
                attrs["require_success"] = require_success
            self.link(link_name, repo, **attrs)
            made.append(link_name)

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
    async def launch(self, job: str, options: LaunchOptions = DEFAULT_LAUNCH) -> bool | None:
        """Start ``job`` as ``options`` say. Return False if a quota refused it (it stays ready);
        errors are recorded by the pipeline, except a :class:`~pdtnb.StorageFaultError`, which
        stops the run and leaves the job ready. Write the outcome with :meth:`write_record`."""

    def stream_launcher(self) -> Callable[..., Awaitable[int]] | None:
        """For the pipeline's launch phase: a coroutine function ``f(jobs, failed)`` that launches
        every job the iterable ``jobs`` yields as ``launch(job)`` would, handing an exception
        ``launch`` would raise to ``await failed(job, exc)`` (False: stop), and returns how many
        it launched; or None (the default), to have ``launch`` called for each job. For task kinds
        whose launches are cheap enough that the per-job calls matter (in-process bodies)."""
        return None

    async def interrupt(self) -> None:
        """The run driving this task was interrupted (Ctrl-C, a timeout): stop starting work that
        was queued but has not begun. Jobs already running are left to their kind: cancelled with
        the run (in-process), abandoned (executor threads), or kept and adopted by the next run
        (processes, pods). Never records a failure."""

    async def request_kill(self, job: str) -> bool:
        """Ask the controller running the pipeline in another process to kill ``job`` (``kill``
        from a second terminal): mark it so that the controller kills it at its next round and
        records it as killed. False if it is not live. Kinds whose jobs run inside the
        controller's own process (in-process, executor) cannot be reached from outside."""
        raise TaskConfigError(
            f"task {self.name!r} ({type(self).__name__}) runs its jobs inside the controlling process: "
            "only that process can kill them (its notebook, or Ctrl-C)"
        )

    def jobs_here(self) -> int:
        """How many live jobs of this task exist only in this process (executor threads, finished
        or not, until reaped): while any does, the pipeline keeps its lease, since another
        controller would see them as ready and run them again."""
        return 0

    def threads_running(self) -> int:
        """How many of this task's job bodies are running in threads of this process now (they
        cannot be interrupted: a command-line run that was interrupted exits without them)."""
        return 0

    async def kill(self, job: str) -> bool:
        """Stop the live ``job`` and record it as ``killed``; False if it is not live here.

        Task kinds that can stop their jobs override it; the default says the kind cannot.
        """
        raise TaskConfigError(f"task {self.name!r} ({type(self).__name__}) cannot kill its jobs")

    # ---- the job record --------------------------------------------------------------------

    async def write_record(
        self,
        job: str,
        record: JobRecord,
        exc: BaseException | None = None,
        options: LaunchOptions = DEFAULT_LAUNCH,
        repo: MetadataRepository | None = None,
    ) -> None:
        """The one writer of job records: numbers the attempt, carries the history of the earlier
        ones, schedules a retry under the task's policy, stores the record in ``done`` (or
        ``repo``) and tells the pipeline. Without a done repository, or with ``metadata=False``,
        nothing is stored but the pipeline still counts the outcome."""
        previous = options.previous
        if previous is not None and previous.failed:
            record.attempt = previous.attempt + 1
            record.history = [*previous.history, previous.summary()][-LIMITS["history"] :]
        if record.failed and self.retry is not None:
            self.retry.schedule(record, exc, utcnow())
        if record.fingerprint is None:
            printed = self.launch_print
            if printed is not None:
                record.fingerprint = printed.digest
                record.fingerprint_parts = dict(printed.parts)
        target = repo if repo is not None else self.done_repository
        if target is not None and options.metadata and self.metadata:
            data = record.to_dict()
            await target.dump(job, data)
            index = outcome_index(target)
            if index.loaded:
                index.note(job, data)
        if record.succeeded:
            self.successes += 1
        else:
            listener = self._on_record
            if listener is not None:
                listener(self, job, record.outcome)
        hooks = self._hook_set
        if hooks is not None and repo is None:  # a record of the task's own done (not a pod's body)
            await hooks.job_ended(self, job, record)

    async def write_success(
        self, job: str, start: datetime | None, end: datetime | None, options: LaunchOptions = DEFAULT_LAUNCH
    ) -> None:
        """:meth:`write_record` of a successful attempt, without building the record object when
        there is no history to carry (the hot path of in-process pipelines)."""
        if (options is not DEFAULT_LAUNCH and options.previous is not None) or self._hook_set is not None:
            # Hooks get the record object; without them the hot path builds none.
            record = JobRecord(Outcome.SUCCESS, start_time=start, end_time=end, host=host_name())
            await self.write_record(job, record, None, options)
            return
        target, index, _ = self.record_sink()
        if target is not None and options.metadata and self.metadata:
            printed = self.launch_print
            await target.dump(job, success_dict(start, end, fingerprint=printed))
            if index.loaded:  # type: ignore[union-attr]
                index.note_success(job, printed.digest if printed is not None else None)  # type: ignore[union-attr]
        self.successes += 1

    def record_sink(self) -> tuple[MetadataRepository | None, OutcomeIndex | None, Any]:
        """The done repository, its outcome index, and its compact success writer
        (``record_success_ns(job, start_ns, end_ns)`` of an in-memory repository, else None);
        looked up once, reset by :meth:`link`."""
        sink = self._sink
        if sink is None:
            target = self.done_repository
            if target is None:
                sink = self._sink = (None, None, None)
            else:
                sink = self._sink = (target, outcome_index(target), success_writer(target))
        return sink

    async def previous_record(self, job: str, repo: MetadataRepository | None = None) -> JobRecord | None:
        """The record of ``job``'s last attempt when it failed (read for a retry), else None."""
        target = repo if repo is not None else self.done_repository
        if target is None or not await target.contains(job):
            return None
        try:
            record = read_record(await target.info(job))
        except Exception:
            return None
        return record if record.failed else None

    async def record_failure(
        self, job: str, exc: BaseException, phase: str = "launch", options: LaunchOptions = DEFAULT_LAUNCH
    ) -> bool:
        """Record that launching ``job`` raised ``exc`` (a ``launch-error``); False if there is
        no done repository to hold it."""
        outcome = Outcome.LAUNCH_ERROR if phase == "launch" else Outcome.FAILURE
        record = record_from_exception(exc, outcome=outcome)
        await self.write_record(job, record, exc, options)
        return self.done_repository is not None and options.metadata and self.metadata

    # ---- storage faults --------------------------------------------------------------------

    def storage_fault(self, job: str, exc: BaseException, state: str = "stays ready") -> StorageFaultError | None:
        """The :class:`~pdtnb.StorageFaultError` to raise when ``exc`` (met running or recording
        ``job``) says the storage cannot take writes (disk full, quota, read-only, I/O error);
        None otherwise. Such a job is not recorded as failed: the environment failed, not the job,
        which ``state`` says (it stays ready, or live to be reaped again)."""
        shown = job if len(job) <= 100 else short_job_id(job)
        return storage_fault(exc, note=f"nothing was lost: {self.name} {shown} {state}")

    def hold_storage_fault(self, fault: StorageFaultError) -> None:
        """Keep a storage fault met in the background (a job reaped after its launch) for
        :meth:`raise_storage_fault`, keeping the first one, and wake the pipeline."""
        if self._storage_fault is None:
            self._storage_fault = fault
        self.notify()

    def raise_storage_fault(self) -> None:
        """Raise the storage fault held by :meth:`hold_storage_fault`, if any (once)."""
        fault = self._storage_fault
        if fault is not None:
            self._storage_fault = None
            raise fault

    # ---- waking the pipeline ---------------------------------------------------------------

    def attach(
        self, wake: Callable[[], None] | None, on_record: Callable[[Task, str, Outcome], None] | None = None
    ) -> None:
        """Connect the task to the pipeline that opened it, or disconnect it (``wake`` None).

        ``wake`` starts the pipeline's next round now (see :meth:`notify`; safe from any thread);
        ``on_record`` is told of every failed attempt the task records (the pipeline counts them
        for its run summary). Called by :meth:`Pipeline.open <pdtnb.Pipeline.open>` and
        :meth:`~pdtnb.Pipeline.close`; a task kind that keeps state only while a pipeline runs it
        (watches, timers) extends it to drop that state when it is disconnected."""
        self._wake = wake
        self._on_record = on_record
        self._sink = None
        if wake is not None:
            self.record_sink()

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
