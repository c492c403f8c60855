"""Job hooks: code of the user's, called around each job's launch and outcome.

Kedro and Hamilton call lifecycle hooks around their nodes; bandsaw wraps each task execution in
"advice". pdtnb offers the same at the level of one job: a *hook* is any object (an instance, a
module) with some of these methods, each either a plain function or a coroutine function:

``before_launch(task, job)``
    Asked by the launch phase before it launches a ready job. Returning ``False`` or a string (the
    reason) *vetoes* the launch: the job is skipped this round, not failed; it stays ready, is
    asked about again in the next launch phase, and ``why TASK JOB`` shows the reason. ``None`` or
    ``True`` lets it go. Make it a question without side effects: ``why`` asks it too.
``on_launch(task, job, attempt)``
    The job passed every ``before_launch`` and is being launched now (a pdtnb extension, where a
    log writes its ``launch`` line). For an in-process task the body runs within the launch.
``after_job(task, job, record)``
    A job's outcome :class:`~pdtnb.JobRecord` was written (success or failure).
``on_failure(task, job, record)``
    The same, for failed attempts only (any outcome but success; ``record.retrying`` says whether
    another attempt is scheduled). Called after every ``after_job``.
``close()``
    The pipeline is closing: flush, drain, release.

Hooks come from ``Pipeline(..., hooks=[...])`` (every task) and ``Task(..., hooks=[...])`` (that
task); a task's own hooks are called first. They run on the pipeline's event loop and are awaited
in line, so a slow hook slows the pipeline: hand slow work to the background, as :class:`Webhook`
does. A hook that raises is logged once per hook and method, by name, and is otherwise ignored: it
never stops the pipeline and never changes a job's outcome (a raising ``before_launch`` lets the
job go). With no hooks at all, nothing here is on any job's path.

Two hooks ship with pdtnb: :class:`JsonLinesLog` (one JSON line per event, rotated by size) and
:class:`Webhook` (an HTTP POST per selected event, in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .record import host_name

if TYPE_CHECKING:
    from .record import JobRecord
    from .task.base import Task

__all__ = ["Hook", "HookSet", "JsonLinesLog", "Webhook", "hook_name", "job_event", "launch_event"]

log = logging.getLogger("pdtnb.hooks")


class Hook(Protocol):
    """What a hook may offer. Every method is optional and may be ``async``: a hook is any object
    with some of them. This Protocol documents the signatures for readers and type checkers;
    nothing needs to inherit it (and, every method being optional, ``isinstance`` is no test)."""

    def before_launch(self, task: Task, job: str) -> bool | str | None:
        """False or a reason: skip ``job`` this round (it stays ready); None or True: launch it.
        Asked by ``why`` too, so it should have no side effects."""

    def on_launch(self, task: Task, job: str, attempt: int) -> None:
        """``job`` passed every ``before_launch`` and is being launched (attempt ``attempt``)."""

    def after_job(self, task: Task, job: str, record: JobRecord) -> None:
        """``job``'s outcome record was written (success or failure)."""

    def on_failure(self, task: Task, job: str, record: JobRecord) -> None:
        """``job``'s attempt failed; its record was written."""

    def close(self) -> None:
        """The pipeline is closing."""


def hook_name(hook: Any) -> str:
    """How messages name a hook: its ``name`` attribute, a module's or function's name, or its
    class's name."""
    name = getattr(hook, "name", None)
    if isinstance(name, str) and name:
        return name
    name = getattr(hook, "__name__", None)
    if isinstance(name, str) and name:
        return name
    return type(hook).__name__


class HookSet:
    """The hooks of one task (its own, then the pipeline's), with each method looked up once, so
    that dispatching an event to hooks that lack its method costs nothing.

    ``reported`` is the set of (hook id, method) whose failure was already logged, shared by the
    hook sets of one pipeline so that a pipeline hook raising for every job of every task is
    logged once, not once per job or per task.
    """

    __slots__ = ("_reported", "ended", "failures", "gates", "hooks", "launches")

    def __init__(self, hooks: Iterable[Any], reported: set[tuple[int, str]] | None = None):
        self.hooks = tuple(check_hooks(hooks))
        self.gates = self._methods("before_launch")
        self.launches = self._methods("on_launch")
        self.ended = self._methods("after_job")
        self.failures = self._methods("on_failure")
        self._reported = set() if reported is None else reported

    def _methods(self, name: str) -> tuple[tuple[Any, Any], ...]:
        found = []
        for hook in self.hooks:
            method = getattr(hook, name, None)
            if callable(method):
                found.append((hook, method))
        return tuple(found)

    @property
    def active(self) -> bool:
        """Whether any hook has a method a job's life calls."""
        return bool(self.gates or self.launches or self.ended or self.failures)

    def report(self, hook: Any, method: str, exc: BaseException) -> None:
        """Log a hook's exception: the first time for this hook and method with its traceback,
        later ones at debug level only (a hook failing for every job must not flood the log)."""
        key = (id(hook), method)
        if key in self._reported:
            log.debug("hook %s.%s raised again: %r", hook_name(hook), method, exc)
            return
        self._reported.add(key)
        log.error(
            "hook %s.%s raised %s (ignored: the job's outcome is unchanged; further errors of this hook "
            "method are logged at debug level)",
            hook_name(hook),
            method,
            type(exc).__name__,
            exc_info=exc,
        )

    async def _call(self, hook: Any, name: str, method: Any, *args: Any) -> Any:
        try:
            result = method(*args)
            if inspect.isawaitable(result):
                result = await result
            return result
        except Exception as e:  # a CancelledError (a BaseException) stops the caller, as it must
            self.report(hook, name, e)
            return None

    async def admit(self, task: Task, job: str) -> str | None:
        """Ask every ``before_launch`` in turn; the first veto's reason (naming the hook), or None
        when all let the job go (a hook that raises lets it go)."""
        for hook, method in self.gates:
            verdict = await self._call(hook, "before_launch", method, task, job)
            if verdict is False:
                return f"hook {hook_name(hook)} vetoed its launch"
            if isinstance(verdict, str):
                reason = verdict.strip() or "vetoed its launch"
                return f"hook {hook_name(hook)}: {reason}"
        return None

    async def launching(self, task: Task, job: str, attempt: int) -> None:
        """Tell every ``on_launch`` that ``job`` is being launched."""
        for hook, method in self.launches:
            await self._call(hook, "on_launch", method, task, job, attempt)

    async def job_ended(self, task: Task, job: str, record: JobRecord) -> None:
        """Tell every ``after_job``, then (for a failure) every ``on_failure``, of ``record``."""
        for hook, method in self.ended:
            await self._call(hook, "after_job", method, task, job, record)
        if record.failed:
            for hook, method in self.failures:
                await self._call(hook, "on_failure", method, task, job, record)


def check_hooks(hooks: Iterable[Any]) -> list[Any]:
    """``hooks`` as a list, refusing a class passed for an instance (``hooks=[JsonLinesLog]``,
    whose methods would be called unbound, failing for every job) and a lone string."""
    if isinstance(hooks, (str, bytes)):
        raise TypeError("hooks must be a list of hook objects, not a string")
    out = list(hooks)
    for hook in out:
        if isinstance(hook, type):
            raise TypeError(f"hook {hook.__name__} is a class: pass an instance ({hook.__name__}(...))")
        if hook is None:
            raise TypeError("a hook cannot be None")
    return out


async def close_hooks(hooks: Iterable[Any], reported: set[tuple[int, str]] | None = None) -> None:
    """Call every hook's ``close`` once (hooks shared by several tasks are closed once)."""
    seen: set[int] = set()
    dispatch = HookSet((), reported)
    for hook in hooks:
        if id(hook) in seen:
            continue
        seen.add(id(hook))
        method = getattr(hook, "close", None)
        if callable(method):
            await dispatch._call(hook, "close", method)


# ---- the events the shipped hooks write --------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _now_iso() -> str:
    from .task.base import utcnow  # the one clock of records

    return utcnow().isoformat()


def launch_event(task: Task, job: str, attempt: int) -> dict[str, Any]:
    """The ``launch`` event of ``job`` as plain JSON-ready data."""
    return {
        "event": "launch",
        "time": _now_iso(),
        "task": task.name,
        "job": job,
        "attempt": attempt,
        "host": host_name(),
        "pid": os.getpid(),
    }


def job_event(task: Task, job: str, record: JobRecord) -> dict[str, Any]:
    """The ``outcome`` event of ``job`` (its record, flattened: outcome, attempt, times, duration
    in seconds, host, the one-line reason of a failure) as plain JSON-ready data."""
    start, end = record.start_time, record.end_time
    duration = (end - start).total_seconds() if start is not None and end is not None else None
    event: dict[str, Any] = {
        "event": "outcome",
        "time": _now_iso(),
        "task": task.name,
        "job": job,
        "outcome": record.outcome.value,
        "attempt": record.attempt,
        "start": _iso(start),
        "end": _iso(end),
        "duration": duration,
        "host": record.host or host_name(),
    }
    if record.failed:
        event["reason"] = record.reason_line()
        event["error_type"] = record.error_type
        event["exit_code"] = record.exit_code
        event["retrying"] = record.retrying
        event["retry_at"] = _iso(record.retry_at)
    return event


# ---- JsonLinesLog ------------------------------------------------------------------------------


class JsonLinesLog:
    """A hook writing one JSON object per line to ``path`` for each job event: ``launch`` (task,
    job, attempt, host, pid) and ``outcome`` (outcome, attempt, start, end, duration in seconds,
    host, and for a failure its reason, error type, exit code and retry time). Every line has
    ``event``, ``time`` (ISO 8601, UTC), ``task`` and ``job``; ``jq`` and
    ``pandas.read_json(path, lines=True)`` read the file as it is.

    Each line is written whole by one ``write`` on a file opened with ``O_APPEND``: a crash (or a
    second process appending) never leaves a half line in the middle of the file. Should a power
    loss cut the last line, the next writer starts on a fresh line, so only that one line is lost.

    When the file would pass ``max_bytes`` it is rotated as the logging module does: ``path``
    becomes ``path.1``, ``path.1`` becomes ``path.2`` ... and ``backups`` old files are kept
    (0: the file is emptied instead). A writer notices a rotation done by another process (the
    file at ``path`` is not the one it holds) and reopens.

    Writes are synchronous (a few microseconds for a line on a local disk): the log is exact at
    every moment, which is what an event log is for.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 10 * 1024 * 1024, backups: int = 5):
        if max_bytes <= 0:
            raise ValueError(f"JsonLinesLog: max_bytes must be positive, not {max_bytes}")
        if backups < 0:
            raise ValueError(f"JsonLinesLog: backups cannot be negative ({backups})")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.backups = int(backups)
        self.name = f"JsonLinesLog({self.path})"
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._lock = threading.Lock()  # hooks run on the loop, but a user may call write() from threads

    def __repr__(self) -> str:
        return f"JsonLinesLog({str(self.path)!r}, max_bytes={self.max_bytes}, backups={self.backups})"

    # hook methods

    def on_launch(self, task: Task, job: str, attempt: int) -> None:
        self.write(launch_event(task, job, attempt))

    def after_job(self, task: Task, job: str, record: JobRecord) -> None:
        self.write(job_event(task, job, record))

    def close(self) -> None:
        with self._lock:
            self._close_fd()

    # writing

    def write(self, event: dict[str, Any]) -> None:
        """Append ``event`` as one line (values JSON cannot hold are written as strings)."""
        data = (json.dumps(event, separators=(",", ":"), default=str, ensure_ascii=False) + "\n").encode(
            "utf-8", "backslashreplace"
        )
        with self._lock:
            fd = self._open()
            size = os.fstat(fd).st_size
            if size and size + len(data) > self.max_bytes:
                self._rotate()
                fd = self._open()
            _write_all(fd, data)

    def _open(self) -> int:
        """The descriptor of ``path``, reopened when another writer rotated the file away."""
        fd = self._fd
        if fd is not None:
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._ino:
                    return fd
            except FileNotFoundError:
                pass
            self._close_fd()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        st = os.fstat(fd)
        self._fd, self._ino = fd, (st.st_dev, st.st_ino)
        if st.st_size and not _ends_with_newline(self.path, st.st_size):
            _write_all(fd, b"\n")  # a line cut by a power loss: start ours on a line of its own
        return fd

    def _rotate(self) -> None:
        self._close_fd()
        base = str(self.path)
        if self.backups == 0:
            with contextlib.suppress(FileNotFoundError):
                os.truncate(base, 0)
            return
        for i in range(self.backups - 1, 0, -1):
            src = f"{base}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{base}.{i + 1}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(base, f"{base}.1")

    def _close_fd(self) -> None:
        fd, self._fd, self._ino = self._fd, None, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):  # only on a full disk or a signal: finish the line if we can
        written += os.write(fd, data[written:])


def _ends_with_newline(path: Path, size: int) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(size - 1)
            return f.read(1) == b"\n"
    except OSError:
        return True


# ---- Webhook -----------------------------------------------------------------------------------

#: The events a :class:`Webhook` can post.
WEBHOOK_EVENTS = ("launch", "success", "failure")


def redact_url(url: str) -> str:
    """``url`` as logs may show it: scheme, host and port only. User names, passwords, paths
    and queries often carry the secret (a Slack or Teams webhook's path is its key)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


class Webhook:
    """A hook posting a JSON body to ``url`` for each selected event, in the background.

    ``on`` selects the events: ``"failure"`` (any failed attempt; the default), ``"success"``,
    ``"launch"``. The body is the event as :class:`JsonLinesLog` writes it (``event``, ``task``,
    ``job``, ``outcome``, ``attempt``, times, ``duration``, ``host``, a failure's ``reason``...);
    ``headers`` are added to each request (an ``Authorization``, say).

    The hook never makes the pipeline wait: an event is put on a bounded queue (``queue_size``;
    when full, events are dropped and counted, and the first drop is logged) and posted by a
    background task on the pipeline's loop. Each post has ``timeout`` seconds; a connection error,
    a timeout, a 429 or a 5xx answer is tried again up to ``retries`` more times, after 0.5 s,
    1 s, 2 s ... (capped at 10 s). When the pipeline closes, what is queued is still posted for up
    to ``drain`` seconds, then given up (and counted in :attr:`dropped`).

    Logs name the URL by scheme, host and port only (:func:`redact_url`): a webhook URL is a
    secret. Needs aiohttp (``pip install aiohttp``).
    """

    def __init__(
        self,
        url: str,
        on: Iterable[str] = ("failure",),
        *,
        timeout: float = 10.0,
        retries: int = 3,
        headers: dict[str, str] | None = None,
        queue_size: int = 1000,
        drain: float = 10.0,
        concurrency: int = 4,
    ):
        try:
            import aiohttp  # noqa: F401 - fail at construction, not at the first failed job
        except ImportError as e:  # pragma: no cover - aiohttp is installed with the tests
            raise ImportError("pdtnb.Webhook needs aiohttp: pip install aiohttp") from e
        events = (on,) if isinstance(on, str) else tuple(on)
        unknown = [e for e in events if e not in WEBHOOK_EVENTS]
        if unknown or not events:
            raise ValueError(f"Webhook: on must name events among {WEBHOOK_EVENTS}, not {events!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Webhook: not an http(s) URL: {redact_url(url)}")
        if timeout <= 0:
            raise ValueError("Webhook: timeout must be positive")
        self.url = url
        self.on = frozenset(events)
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.headers = dict(headers or {})
        self.queue_size = max(1, int(queue_size))
        self.drain = float(drain)
        self.concurrency = max(1, int(concurrency))
        self.name = f"Webhook({redact_url(url)})"
        #: Events posted (a 2xx/3xx answer), events given up after their last attempt or at close,
        #: and events dropped because the queue was full.
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._session: Any = None
        self._warned_full = False
        self._pending = 0

    def __repr__(self) -> str:
        return f"Webhook({redact_url(self.url)!r}, on={tuple(sorted(self.on))!r})"

    # hook methods: each only queues

    def on_launch(self, task: Task, job: str, attempt: int) -> None:
        if "launch" in self.on:
            self.send(launch_event(task, job, attempt))

    def after_job(self, task: Task, job: str, record: JobRecord) -> None:
        kind = "failure" if record.failed else "success"
        if kind in self.on:
            event = job_event(task, job, record)
            event["event"] = kind
            self.send(event)

    def send(self, body: dict[str, Any]) -> None:
        """Queue ``body`` for posting (from the loop's thread, within a running loop)."""
        queue = self._ready_queue()
        try:
            queue.put_nowait(body)
            self._pending += 1
        except asyncio.QueueFull:
            self.dropped += 1
            if not self._warned_full:
                self._warned_full = True
                log.warning(
                    "%s: %d events queued already; dropping events until it catches up", self.name, self.queue_size
                )

    @property
    def pending(self) -> int:
        """Events queued or being posted."""
        return self._pending

    def _ready_queue(self) -> asyncio.Queue[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._queue is None:
            # First use, or a new loop (a notebook's later run, a second CLI command): start afresh.
            self._loop = loop
            self._queue = asyncio.Queue(self.queue_size)
            self._session = None
            self._workers = [loop.create_task(self._worker()) for _ in range(self.concurrency)]
        return self._queue

    async def _worker(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            body = await queue.get()
            try:
                if await self._post(body):
                    self.delivered += 1
                else:
                    self.failed += 1
            except asyncio.CancelledError:
                self.failed += 1
                self._pending -= 1
                queue.task_done()
                raise
            except Exception as e:  # never let a worker die: the next event is posted
                self.failed += 1
                log.error("%s: posting failed: %s", self.name, self._scrub(repr(e)))
            self._pending -= 1
            queue.task_done()

    async def _post(self, body: dict[str, Any]) -> bool:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        data = json.dumps(body, default=str).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        what = f"{body.get('event')} {body.get('task')} {body.get('job')}"
        for attempt in range(self.retries + 1):
            problem: str
            try:
                async with self._session.post(self.url, data=data, headers=headers) as response:
                    await response.read()
                    if response.status < 400:
                        return True
                    problem = f"HTTP {response.status}"
                    if response.status != 429 and response.status < 500:
                        log.error("%s: %s refused: %s (not retried)", self.name, what, problem)
                        return False
            except asyncio.TimeoutError:
                problem = f"no answer within {self.timeout} s"
            except aiohttp.ClientError as e:
                problem = self._scrub(f"{type(e).__name__}: {e}")
            if attempt < self.retries:
                delay = min(10.0, 0.5 * 2**attempt) * (0.75 + random.random() / 2)
                log.info("%s: %s: %s; trying again in %.1f s", self.name, what, problem, delay)
                await asyncio.sleep(delay)
            else:
                log.error("%s: %s not delivered after %d attempts: %s", self.name, what, attempt + 1, problem)
        return False

    def _scrub(self, text: str) -> str:
        """``text`` (an exception's message) without the secret parts of the URL."""
        parts = urlsplit(self.url)
        for secret in (self.url, parts.netloc, parts.path, parts.query, parts.password or ""):
            if secret and secret not in ("/",) and len(secret) > 1:
                text = text.replace(secret, redact_url(self.url) if secret == self.url else "…")
        return text

    async def close(self) -> None:
        """Post what is queued, for up to ``drain`` seconds, then stop the workers and give up the
        rest (counted in :attr:`failed`)."""
        queue, workers, loop = self._queue, self._workers, self._loop
        if queue is None or loop is not asyncio.get_running_loop():
            return
        start = time.monotonic()
        try:
            await asyncio.wait_for(queue.join(), self.drain)
        except asyncio.TimeoutError:
            log.warning(
                "%s: %d events not delivered within the %.1f s drain at close", self.name, self._pending, self.drain
            )
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        left = queue.qsize()
        self.failed += left
        self._pending = 0
        self._queue, self._workers, self._loop = None, [], None
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        log.debug("%s closed in %.2f s", self.name, time.monotonic() - start)
