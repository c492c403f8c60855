"""ProcessTask: each job is a script rendered from a jinja2 template and run by a process manager.

Lifecycle of a job
------------------
1. **launch**: reserve ``job_resources`` from the ResourceManager (refused: ``launch`` returns
   False and the job stays ready); render the template (a failure raises
   :class:`~pdtnb.TaskConfigError` before anything exists on the target, and the reservation is
   given back); create ``BASEDIR/TASK/JOB/cwd``; copy the stdin blob to ``JOB/stdin``; write the
   script to ``JOB/exe``; spawn it; record ``{pid, start_time}`` in ``pids``. If any step fails,
   the process (if any) is killed, the job directory removed and the reservation returned.
2. **update** (every round): the jobs in ``pids`` whose processes have ended are *reaped*: their
   stdout and stderr files are copied into the linked repositories, ``done`` gets
   ``{result, exit_code, return_code, start_time, end_time}``, the reservation is returned, the
   ``pids`` entry deleted and the job directory removed, in that order (a crash part-way leaves the
   job in ``pids``, so the next pipeline reaps it again rather than losing it). Jobs past the
   task's ``timeout`` are killed and recorded as failed with the reason.

Because ``pids`` is the source of truth, a pipeline restarted after a crash picks up the jobs its
predecessor started: it watches them, counts them against the quota, reaps each when it ends
(at once if it ended meanwhile), and never launches them again (``pids`` inhibits start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidJobIdError, PdtnbError, SessionClosedError, short_job_id
from ..managers.local import is_provable
from ..record import LIMITS, JobRecord, Outcome, as_time, tail_text
from ..repository.base import BlobRepository, MetadataRepository, Repository
from ..resources import ResourceManager, Resources
from ..retry import Retry
from ..streams import StderrIsStdout, async_copyfile
from .base import (
    DEFAULT_LAUNCH,
    STDOUT,
    LaunchOptions,
    check_type,
    utcnow,
)
from .external import ExternalJobTask
from .template import JobTemplate

if TYPE_CHECKING:
    from ..managers.base import AbstractProcessManager
    from .base import Task

__all__ = ["ProcessTask"]

log = logging.getLogger("pdtnb.task")


async def read_tail(reader: Any, copy_to: Any = None, limit: int = LIMITS["tail"]) -> str | None:
    """Read a stream to its end, writing it to ``copy_to`` if given, and return its last ``limit``
    bytes as text (marking what was cut), without holding more than twice that in memory."""
    tail = bytearray()
    total = 0
    while True:
        chunk = await reader.read(1 << 16)
        if not chunk:
            break
        total += len(chunk)
        tail += chunk
        if len(tail) > 2 * limit:
            del tail[:-limit]
        if copy_to is not None:
            await copy_to.write(chunk)
    text = tail_text(bytes(tail[-limit:]))
    if total > limit and text is not None:
        text = f"[... {total - limit} earlier bytes cut]\n" + text
    return text


class ProcessTask(ExternalJobTask):
    """Runs a script per job through a process manager (pydatatask 0.4's signature, plus ``timeout``).

    ``manager`` is a callable returning the :class:`~pdtnb.AbstractProcessManager` (usually a
    session resource). ``template`` is jinja2 source, or the path of a file holding it; it is
    rendered with ``job``, ``task`` (this task's name) and, for every link the template mentions,
    the link's ``info(job)`` (a file repository's info is the job's file path). Values are inserted
    verbatim: quote anything that may hold shell metacharacters with ``{{ x | shell_quote }}``.
    A script starting with ``#!`` runs under that interpreter, any other under ``/bin/sh``.

    ``environ`` is added to the process environment. ``window`` is how long a launch counts against
    the quota's ``launches`` (a rate limit). ``pids`` holds the running jobs (linked ``is_status,
    inhibits_start, inhibits_output``); ``done`` their outcomes (``is_status, required_for_output,
    inhibits_start``); ``stdin`` is linked ``is_input``; ``stdout`` and ``stderr`` ``is_output``
    (``stderr=STDOUT`` interleaves it into stdout). ``timeout`` (a timedelta, or seconds) kills a
    job that runs longer and records it as failed with the reason.
    """

    #: Seconds between update rounds while jobs run. Managers that can watch processes (the local
    #: one) wake the pipeline the moment a job ends, so for them this is only a safety net.
    poll_interval: float | None = 1.0
    done_link = "done"
    live_link = "pids"
    #: Jobs are separate processes: they keep running if the pipeline process dies.
    jobs_outlive_process = True

    def __init__(
        self,
        name: str,
        manager: Callable[[], AbstractProcessManager],
        resource_manager: ResourceManager,
        job_resources: Resources,
        pids: MetadataRepository,
        template: str | os.PathLike[str],
        window: timedelta = timedelta(minutes=1),
        environ: dict[str, str] | None = None,
        done: MetadataRepository | None = None,
        stdin: BlobRepository | None = None,
        stdout: BlobRepository | None = None,
        stderr: BlobRepository | StderrIsStdout | None = None,
        ready: Repository | None = None,
        *,
        timeout: timedelta | float | None = None,
        retry: Retry | None = None,
        hooks: Iterable[Any] = (),
        rerun_outdated: bool = False,
    ):
        super().__init__(
            name,
            ready=ready,
            retry=retry,
            hooks=hooks,
            window=window,
            timeout=timeout,
            rerun_outdated=rerun_outdated,
        )
        if not callable(manager):
            raise TypeError(f"task {name!r}: manager must be a callable returning a process manager")
        check_type(name, "resource_manager", resource_manager, ResourceManager, "a ResourceManager", optional=False)
        check_type(name, "job_resources", job_resources, Resources, "a Resources", optional=False)
        check_type(name, "pids", pids, MetadataRepository, "a MetadataRepository", optional=False)
        check_type(name, "done", done, MetadataRepository, "a MetadataRepository")
        check_type(name, "stdin", stdin, BlobRepository, "a BlobRepository")
        check_type(name, "stdout", stdout, BlobRepository, "a BlobRepository")
        check_type(name, "stderr", stderr, (BlobRepository, StderrIsStdout), "a BlobRepository, STDOUT or None")

        self._manager = manager
        self.resource_manager = resource_manager
        self.job_resources = Resources(job_resources.cpu, job_resources.mem, job_resources.launches)
        self.pids = pids
        self.template = template
        self.environ = dict(environ or {})
        self.done = done
        self.stdin = stdin
        self.stdout = stdout
        self._stderr = stderr

        self._template = JobTemplate(name, template)

        # The running jobs as last read from ``pids`` (plus the ones launched since).
        self._live: dict[str, dict[str, Any]] = {}
        self._loaded = False
        self._launch_seq = 0
        self._fresh: dict[str, tuple[int, dict[str, Any]]] = {}
        self._launching: set[str] = set()
        self._starting = 0
        # Jobs recorded as failed whose pids entry could not be removed (a directory, a read-only
        # file): ignored until fixed by hand, so that they are reported once, not every round.
        self._given_up: set[str] = set()
        self._kills_sent: set[tuple[str, Any]] = set()  # (job, pid) signalled on a kill request
        self._swept = False  # job directories orphaned by a crash removed (once, by the controller)
        self._watches: dict[str, tuple[str, Callable[[], None] | None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._warned = False
        # Directories of reaped jobs being removed in the background (see _remove_later).
        self._removing: dict[str, asyncio.Task[None]] = {}

        resource_manager.register(self._get_load)

        self.link("pids", pids, is_status=True, inhibits_start=True, inhibits_output=True)
        if stdin is not None:
            self.link("stdin", stdin, is_input=True)
        if stdout is not None:
            self.link("stdout", stdout, is_output=True)
        if isinstance(stderr, BlobRepository):
            self.link("stderr", stderr, is_output=True)
        if done is not None:
            self.link("done", done, is_status=True, required_for_output=True, inhibits_start=True)

    # ---- properties --------------------------------------------------------------------------

    @property
    def manager(self) -> AbstractProcessManager:
        """The process manager (raises SessionClosedError if its session is not open)."""
        return self._manager()

    @property
    def stderr(self) -> BlobRepository | None:
        """The repository stderr goes to: its own, stdout's when it is STDOUT, or None."""
        if isinstance(self._stderr, BlobRepository):
            return self._stderr
        if isinstance(self._stderr, StderrIsStdout):
            return self.stdout
        return None

    @property
    def basedir(self) -> Path:
        """``manager.basedir / task name``: the task's directory on the target, one ``JOB``
        subdirectory per running job."""
        return Path(self.manager.basedir) / self.name

    def jobdir(self, job: str) -> Path:
        """The directory of ``job`` on the target: ``cwd/``, ``exe``, ``stdin``, ``stdout``,
        ``stderr`` and ``return_code``."""
        return self.basedir / job

    # ---- set-up ------------------------------------------------------------------------------

    async def validate(self) -> None:
        await super().validate()
        if self.done is None and self.stdout is None and self.stderr is None:
            log.warning(
                "task %r has neither done, stdout nor stderr: nothing records that a job ran once it ends, "
                "so it would be launched again",
                self.name,
            )
        try:
            manager = self.manager
        except SessionClosedError:
            return
        await manager.mkdir(self.basedir)

    def fingerprint_parts(self) -> dict[str, str]:
        """The template without its comments, and the environment the processes get."""
        return self._template.fingerprint_parts(self.environ)

    async def render(self, job: str) -> str:
        """The script for ``job``. Raises TaskConfigError (naming the task, the job and the cause)
        if the template refers to something that is neither a link, ``job`` nor ``task``, or
        fails to render."""
        return await self._template.render(job, self.links, {"job": job, "task": self.name})

    # ---- resources ---------------------------------------------------------------------------

    async def _get_load(self) -> Resources:
        """What this task holds: every running or starting job's resources, and the launches
        within ``window``."""
        if not self._loaded:
            try:
                await self._refresh()
            except Exception:
                log.exception("task %s: could not read its pids repository", self.name)
        running = sum(1 for job, e in self._live.items() if e.get("pid") is not None and job not in self._given_up)
        running += self._starting
        jr = self.job_resources
        launches = (self.recent_launches() + self._starting) * jr.launch_count
        return Resources(jr.cpu * running, jr.mem * running, launches)

    # ---- the pids view -----------------------------------------------------------------------

    def _normalize(self, job: str, entry: Any) -> dict[str, Any] | None:
        if not isinstance(entry, dict) or entry.get("pid") is None:
            return None
        ident = entry["pid"]
        if isinstance(ident, bytes):
            ident = ident.decode()
        out = dict(entry)
        out["pid"] = str(ident)
        out["start_time"] = as_time(entry.get("start_time")) or utcnow()
        return out

    async def _refresh(self) -> dict[str, dict[str, Any]]:
        """Read ``pids`` into the in-memory view; note jobs seen for the first time (adopted)."""
        seq = self._launch_seq
        raw = await self._read_pids()
        view: dict[str, dict[str, Any]] = {}
        for job, entry in raw.items():
            norm = self._normalize(job, entry)
            view[job] = norm if norm is not None else {"pid": None, "start_time": utcnow(), "malformed": entry}
        for job, (launched_at, entry) in list(self._fresh.items()):
            if job in view or launched_at <= seq:
                del self._fresh[job]
            else:
                view[job] = entry  # launched while pids was being read
        adopted = [
            job for job in view if job not in self._live and job not in self._fresh and job not in self._launching
        ]
        for job in adopted:
            self._adopt(job, view[job])
        if adopted:
            shown = ", ".join(sorted(adopted)[:5]) + (f" and {len(adopted) - 5} more" if len(adopted) > 5 else "")
            log.info(
                "task %s: found %d running jobs in pids that this process did not start: %s",
                self.name,
                len(adopted),
                shown,
            )
        self._live = view
        self._loaded = True
        return view

    async def _read_pids(self) -> dict[str, Any]:
        """Every ``pids`` record. One that cannot be read (malformed YAML, a directory in its place,
        permission denied) affects its job alone: it reads as a malformed entry, which the update
        phase records as that job's failure, instead of stopping the task."""
        try:
            return await self.pids.info_all()
        except Exception:
            pass
        out: dict[str, Any] = {}
        for job in sorted(await self.pids.job_ids()):
            try:
                out[job] = await self.pids.info(job)
            except Exception as e:
                log.error("task %s: the pids record of job %s cannot be read: %s", self.name, job, e)
                out[job] = f"unreadable: {e}"
        return out

    def _adopt(self, job: str, entry: dict[str, Any]) -> None:
        """A job found in ``pids`` that this process did not launch (a previous pipeline did)."""
        start = entry["start_time"]
        if start is not None:
            stamp = start.timestamp()
            self.note_launch(stamp)

    # ---- watching ----------------------------------------------------------------------------

    def _watch(self, job: str, ident: str) -> None:
        current = self._watches.get(job)
        if current is not None and current[0] == ident:
            return
        if current is not None and current[1] is not None:
            current[1]()
        try:
            cancel = self.manager.watch(ident, self.notify)
        except Exception:
            log.exception("task %s: could not watch the process of job %s", self.name, job)
            cancel = None
        self._watches[job] = (ident, cancel)

    def _unwatch(self, job: str) -> None:
        entry = self._watches.pop(job, None)
        if entry is not None and entry[1] is not None:
            entry[1]()
        timer = self._timers.pop(job, None)
        if timer is not None:
            timer.cancel()

    def _drop_watches(self) -> None:
        for job in list(self._watches):
            self._unwatch(job)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def attach(
        self, wake: Callable[[], None] | None, on_record: Callable[[Task, str, Outcome], None] | None = None
    ) -> None:
        super().attach(wake, on_record)
        if wake is None:
            # The pipeline closed: stop watching (a reopened pipeline re-reads pids and watches again).
            self._drop_watches()
            self._loaded = False

    def _arm_timer(self, job: str, deadline: datetime) -> None:
        timer = self._timers.get(job)
        loop = asyncio.get_running_loop()
        if timer is not None and not timer.cancelled() and timer.when() > loop.time():
            return
        delay = max(0.0, (deadline - utcnow()).total_seconds()) + 0.005
        self._timers[job] = loop.call_later(delay, self.notify)

    # ---- update ------------------------------------------------------------------------------

    async def update(self) -> bool:
        self._warned = False
        try:
            view = await self._refresh()
        except Exception:
            # A storage hiccup must not end the pipeline's run: look again at the next round.
            log.exception("task %s: could not read its pids repository", self.name)
            return True
        if not self._swept:
            self._swept = True
            await self._sweep_job_dirs(view)
        for job in [j for j in self._watches if j not in view]:
            self._unwatch(job)
        for job in [j for j in self._timers if j not in view]:
            self._timers.pop(job).cancel()
        if not view:
            await self._removed()  # a finished run leaves no job directory behind
            return False
        manager = self.manager
        malformed = [job for job, entry in view.items() if entry.get("pid") is None and job not in self._given_up]
        tracked = {job: entry["pid"] for job, entry in view.items() if entry.get("pid") is not None}
        try:
            live = await manager.get_live_pids(set(tracked.values()))
        except Exception:
            log.exception("task %s: could not list the live processes", self.name)
            return True
        now = utcnow()
        dead: list[str] = list(malformed)
        for job, ident in tracked.items():
            if self.is_reaping(job) or job in self._launching:
                continue
            if ident not in live:
                dead.append(job)
                continue
            await self._tend_live(job, ident, view[job], now)
        if dead:
            reaped = await asyncio.gather(*(self.reap_safely(job, view[job]) for job in dead))
            if any(reaped):
                # Reaping freed a quota or made jobs ready: the next round should come now. (A failed
                # reap is retried at the poll interval, not in a tight loop.)
                self.notify()
            self.raise_storage_fault()  # a reap met a full disk: the run stops, the job stays in pids
        return True

    async def _tend_live(self, job: str, ident: str, entry: dict[str, Any], now: datetime) -> None:
        """Look after a job whose process ``ident`` is alive: watch it, to hear of its end at once;
        stop it when another terminal asked (``kill``) or its timeout passed; else arm a timer
        for that timeout, so that the kill does not wait for the next poll."""
        self._watch(job, ident)
        if entry.get("killed") == "request" and (job, ident) not in self._kills_sent:
            # Asked from another terminal (`kill`): the controller, which can prove the
            # process is the job's, stops it; the reap records it as killed.
            self._kills_sent.add((job, ident))
            try:
                await self.manager.kill(ident)
            except Exception:
                log.exception("task %s: could not kill job %s on request", self.name, job)
            return
        deadline = self.deadline(entry.get("start_time"))
        if deadline is None or entry.get("killed"):
            return
        if now >= deadline:
            try:
                await self._kill_for_timeout(job, entry)
            except Exception:
                log.exception("task %s: could not kill job %s at its timeout", self.name, job)
        else:
            self._arm_timer(job, deadline)

    async def _sweep_job_dirs(self, view: dict[str, dict[str, Any]]) -> None:
        """Remove the job directories no ``pids`` entry refers to: left when a controller died
        between recording a job's outcome and removing its directory (or between making one and
        starting the job). Done once, by the controller (it holds the lease: nobody else is
        launching), before anything is launched."""
        try:
            names = await self.manager.listdir(self.basedir)
        except Exception:
            log.warning("task %s: could not list %s", self.name, self.basedir, exc_info=True)
            return
        for name in names or ():
            if name in view or name in self._launching or name in self._fresh or name in self._removing:
                continue
            try:
                await self.manager.rmtree(self.basedir / name)
            except Exception:
                log.warning("task %s: could not remove %s", self.name, self.basedir / name, exc_info=True)
            else:
                log.info("task %s: removed the directory of job %s, which no pids entry refers to", self.name, name)

    async def _kill_for_timeout(self, job: str, entry: dict[str, Any]) -> None:
        log.info("task %s: job %s ran longer than %s; killing it", self.name, job, self.timeout)
        entry = dict(entry)
        entry["killed"] = "timeout"
        entry["killed_at"] = utcnow()
        record = {k: v for k, v in entry.items() if k != "malformed"}
        # Recorded before the kill, so a pipeline restarted in between still knows why it died.
        await self.pids.dump(job, record)
        self._live[job] = entry
        await self.manager.kill(entry["pid"])

    # ---- reaping -----------------------------------------------------------------------------

    async def give_up(self, job: str, entry: dict[str, Any], exc: Exception) -> bool:
        try:
            record = self._new_record(
                Outcome.FAILURE, entry, reason=f"the job ended but its results could not be collected: {exc!r}"
            )
            await self._write(job, entry, record)
            await self._forget(job)
            await self.manager.rmtree(self.jobdir(job))
        except Exception as e:
            self._given_up.add(job)
            log.error(
                "task %s: job %s was recorded as failed but its pids entry cannot be removed (%s); "
                "it is ignored until that is fixed by hand",
                self.name,
                job,
                e,
            )
        return True

    async def _forget(self, job: str) -> None:
        """Return the job's reservation and drop it from pids (in this order: see ResourceManager)."""
        await self.resource_manager.relinquish(self.job_resources)
        self._unwatch(job)
        self._live.pop(job, None)
        self._fresh.pop(job, None)
        await self.pids.delete(job)

    async def _read_return_code(self, path: Path) -> int | None:
        try:
            async with await self.manager.open(path, "r") as fp:
                text = await fp.read()
        except FileNotFoundError:
            return None
        try:
            return int(str(text).strip())
        except ValueError:
            return None

    async def _copy_out(self, source: Path, repo: BlobRepository | None, job: str) -> str | None:
        """Copy an output file into ``repo`` (if any) and return its last bytes as text (None when
        the file does not exist): records keep the tail of every job's output."""
        try:
            reader = await self.manager.open(source, "rb")
        except FileNotFoundError:
            return None  # the job never got as far as opening it
        async with reader as fpr:
            if repo is None:
                return await read_tail(fpr)
            async with await repo.open(job, "wb") as fpw:
                return await read_tail(fpr, copy_to=fpw)

    async def output_so_far(self, job: str) -> dict[str, str]:
        """A live job's output so far: the last bytes of its ``stdout`` and ``stderr`` files (for
        ``show`` of a running job); empty when they cannot be read (the job ended meanwhile)."""
        out: dict[str, str] = {}
        for name in ("stdout", "stderr"):
            try:
                async with await self.manager.open(self.jobdir(job) / name, "rb") as fp:
                    text = await read_tail(fp)
            except Exception:
                continue
            if text is not None:
                out[name] = text
        return out

    def _new_record(self, outcome: Outcome, entry: dict[str, Any], **fields: Any) -> JobRecord:
        try:
            host = self.manager.host
        except Exception:
            host = None
        record = JobRecord(
            outcome,
            start_time=entry.get("start_time"),
            end_time=fields.pop("end_time", None) or utcnow(),
            host=host,
            **fields,
        )
        printed = entry.get("fingerprint")
        # The code the job was launched with ("" when its launcher kept none: not today's).
        record.fingerprint = printed if isinstance(printed, str) else ""
        parts = entry.get("fingerprint_parts")
        if isinstance(parts, dict):
            record.fingerprint_parts = {str(k): str(v) for k, v in parts.items()}
        return record

    async def _write(self, job: str, entry: dict[str, Any], record: JobRecord) -> None:
        """Write a reaped job's record through the one writer, with the attempt it was."""
        options = DEFAULT_LAUNCH if entry.get("meta", True) else LaunchOptions(metadata=False)
        attempt = entry.get("attempt")
        if isinstance(attempt, int) and attempt > 1:
            previous = await self.previous_record(job)
            if previous is not None:
                options = LaunchOptions(metadata=options.metadata, previous=previous)
        await self.write_record(job, record, None, options)

    async def reap(self, job: str, entry: dict[str, Any]) -> None:
        start = entry.get("start_time")
        if entry.get("pid") is None:
            log.error("task %s: pids entry of job %s has no process identifier: %r", self.name, job, entry)
            record = self._new_record(
                Outcome.FAILURE, entry, reason=f"its pids entry has no process identifier: {entry.get('malformed')!r}"
            )
            await self._write(job, entry, record)
            await self._forget(job)
            return
        manager = self.manager
        jobdir = self.jobdir(job)
        rc_path = jobdir / "return_code"
        code = await self._read_return_code(rc_path)
        end = (await manager.mtime(rc_path) if code is not None else None) or utcnow()
        if isinstance(start, datetime) and end < start:
            end = start  # file times come from a coarse clock, a few ms behind
        stdout_tail = await self._copy_out(jobdir / "stdout", self.stdout, job)
        stderr_tail = None
        if not isinstance(self._stderr, StderrIsStdout):
            stderr_repo = self._stderr if isinstance(self._stderr, BlobRepository) else None
            stderr_tail = await self._copy_out(jobdir / "stderr", stderr_repo, job)
        record = self._new_record(
            Outcome.SUCCESS if code == 0 else Outcome.FAILURE,
            entry,
            end_time=end,
            exit_code=code,
            stdout_tail=stdout_tail,
            stderr_tail=stderr_tail,
        )
        killed = entry.get("killed")
        if killed == "timeout":
            record.outcome = Outcome.TIMEOUT
            record.extra["timed_out"] = True
            record.reason = f"timeout: ran longer than {self.timeout} and was killed"
        elif killed == "request":
            record.outcome = Outcome.KILLED
            record.reason = "killed by request"
        elif code is None and not is_provable(str(entry["pid"])):
            record.reason = (
                f"its pids entry holds a bare process id ({entry['pid']}, pydatatask's format) that cannot be "
                "proven to be this job's process: the job was taken as ended and nothing was signalled"
            )
        elif code is None:
            record.reason = (
                "the process ended without recording an exit code (its wrapper was killed, or the machine restarted)"
            )
        await self._write(job, entry, record)
        log.debug("task %s: reaped job %s: %s", self.name, job, record.outcome)
        await self._forget(job)
        self._remove_later(job, manager, jobdir)

    def _remove_later(self, job: str, manager: AbstractProcessManager, jobdir: Path) -> None:
        """Remove a reaped job's directory in the background: the job is already recorded and out
        of ``pids``, so nothing waits for it, and removing directories is slow on some disks (an
        ``rmdir`` on ext4 mounted with ``discard`` takes about a millisecond). A relaunch of the
        job waits for it (:meth:`_start`); an update that finds nothing live waits for them all,
        so a finished run leaves no directories; a crash before it ends leaves one for the sweep."""

        async def remove() -> None:
            try:
                await manager.rmtree(jobdir)
            except Exception:
                log.warning("task %s: could not remove %s", self.name, jobdir, exc_info=True)

        task = asyncio.ensure_future(remove())
        self._removing[job] = task

        def done(_: Any) -> None:
            if self._removing.get(job) is task:
                del self._removing[job]

        task.add_done_callback(done)

    async def _removed(self, job: str | None = None) -> None:
        """Wait until the background removal of ``job``'s directory (of every one, if None) ended."""
        pending = list(self._removing.values()) if job is None else [self._removing.get(job)]
        pending = [t for t in pending if t is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ---- launch ------------------------------------------------------------------------------

    def _check_job(self, job: str) -> None:
        if not isinstance(job, str) or not job or "/" in job or "\0" in job or job in (".", ".."):
            raise InvalidJobIdError(job, f"task {self.name!r}")
        self.pids.check_job_id(job)

    async def launch(self, job: str, options: LaunchOptions = DEFAULT_LAUNCH) -> bool | None:
        """Start ``job``; False if the quota refused it. Errors leave nothing behind: no process,
        no pids entry, no job directory, no reservation. A storage fault (the pids record cannot
        be written: disk full...) raises :class:`~pdtnb.StorageFaultError`."""
        self.raise_storage_fault()
        self._check_job(job)
        if not self._loaded:
            await self._refresh()
        if job in self._live or job in self._launching:
            return None
        limit = await self.resource_manager.reserve(self.job_resources)
        if limit is not None:
            if not self._warned:
                log.debug("task %s: not launching %s: %s quota reached", self.name, job, limit.name)
                self._warned = True
            return False
        self._launching.add(job)
        self._starting += 1
        try:
            entry = await self._start(job, options)
        except OSError as e:  # nothing is left behind (see _start); a full disk stops the run
            fault = self.storage_fault(job, e)
            if fault is None or fault is e:
                raise
            raise fault from e
        finally:
            self._starting -= 1
            self._launching.discard(job)
        self._launch_seq += 1
        self._fresh[job] = (self._launch_seq, entry)
        self._live[job] = entry
        self.note_launch()
        try:
            self._watch(job, entry["pid"])
            deadline = self.deadline(entry.get("start_time"))
            if deadline is not None:
                self._arm_timer(job, deadline)
        except Exception:
            log.exception("task %s: could not watch job %s; it will be polled", self.name, job)
        if self.synchronous or options.sync:
            await self._wait_and_reap(job, entry)
        return None

    async def kill(self, job: str) -> bool:
        """Kill ``job``'s process group and record it as ``killed``; False if it is not live.

        The ``pids`` entry is marked first, so whichever pipeline reaps the job (this one, or a
        controller running elsewhere) records it as killed, not as failed.
        """
        entry = await self._mark_killed(job)
        if entry is None:
            return False
        self._kills_sent.add((job, entry["pid"]))
        await self.manager.kill(entry["pid"])
        await self._wait_gone(self.manager, entry["pid"])
        if self.is_reaping(job):
            return True
        await self.reap_safely(job, entry)
        await self._removed(job)  # this may be a short-lived process (`pdtnb kill`): finish here
        self.notify()
        return True

    async def request_kill(self, job: str) -> bool:
        """Mark ``job``'s ``pids`` entry ``killed: request``: the controller running the pipeline
        (another process, holding its lease) kills the process at its next round and records the
        job as killed. False if the job is not live."""
        return await self._mark_killed(job) is not None

    async def _mark_killed(self, job: str) -> dict[str, Any] | None:
        view = await self._refresh()
        entry = view.get(job)
        if entry is None or entry.get("pid") is None:
            return None
        if not is_provable(str(entry["pid"])):
            raise PdtnbError(
                f"{self.name} {short_job_id(job)}: its pids entry holds a bare process id ({entry['pid']}, "
                "pydatatask's format) that cannot be proven to be this job's process: nothing was signalled; "
                f"`rm {self.name}.pids {short_job_id(job)}` forgets the job if it has ended"
            )
        entry = dict(entry)
        entry["killed"] = "request"
        entry["killed_at"] = utcnow()
        await self.pids.dump(job, {k: v for k, v in entry.items() if k != "malformed"})
        self._live[job] = entry
        return entry

    async def _start(self, job: str, options: LaunchOptions = DEFAULT_LAUNCH) -> dict[str, Any]:
        ident: str | None = None
        made_dir = False
        manager: AbstractProcessManager | None = None
        try:
            printed = self.launch_print
            script = await self.render(job)  # before anything exists on the target
            manager = self.manager
            jobdir = self.jobdir(job)
            if job in self._removing:
                await self._removed(job)  # the previous attempt's directory, still being removed
            await manager.rmtree(jobdir)  # leftovers of an earlier attempt
            cwd = jobdir / "cwd"
            await manager.mkdir(cwd)
            made_dir = True
            stdin_path = None
            if self.stdin is not None:
                stdin_path = jobdir / "stdin"
                async with await self.stdin.open(job, "rb") as fpr, await manager.open(stdin_path, "wb") as fpw:
                    await async_copyfile(fpr, fpw)
            # Output always goes to files in the job directory, so that the record keeps its tail
            # even when the task has no stdout or stderr repository.
            stdout_path = str(jobdir / "stdout")
            if isinstance(self._stderr, StderrIsStdout):
                stderr_path: str | StderrIsStdout | None = STDOUT
            else:
                stderr_path = str(jobdir / "stderr")
            exe = jobdir / "exe"
            async with await manager.open(exe, "w") as fp:
                await fp.write(script)
            args = [str(exe)] if script.startswith("#!") else ["/bin/sh", str(exe)]
            spawned: list[str] = []

            async def spawn_and_record(manager: AbstractProcessManager = manager) -> dict[str, Any]:
                start = utcnow()
                spawned.append(
                    await manager.spawn(
                        args,
                        dict(self.environ),
                        str(cwd),
                        str(jobdir / "return_code"),
                        None if stdin_path is None else str(stdin_path),
                        stdout_path,
                        stderr_path,
                    )
                )
                entry: dict[str, Any] = {"pid": spawned[0], "start_time": start}
                if printed is not None:  # what the job runs: its record carries it when reaped
                    entry["fingerprint"] = printed.digest
                    entry["fingerprint_parts"] = dict(printed.parts)
                if options.attempt > 1:
                    entry["attempt"] = options.attempt
                if not options.metadata:
                    entry["meta"] = False
                await self.pids.dump(job, entry)
                return entry

            # Once the process may exist, an interruption (Ctrl-C, a timeout) must not leave it
            # running unrecorded, nor kill a job that started: finish recording it, and let the
            # next run adopt it, so that it never runs twice.
            critical = asyncio.ensure_future(spawn_and_record())
            try:
                return await asyncio.shield(critical)
            except asyncio.CancelledError:
                with contextlib.suppress(BaseException):
                    await critical
                ident = spawned[0] if spawned else None
                raise  # if it is in pids, the job is live: the next run adopts it
            except BaseException:
                ident = spawned[0] if spawned else None
                raise
        except asyncio.CancelledError:
            if ident is None or not await self._recorded(job, ident):
                await self._undo_start(job, manager, ident, made_dir)
            raise
        except BaseException:
            await self._undo_start(job, manager, ident, made_dir)
            raise

    async def _recorded(self, job: str, ident: str) -> bool:
        """Whether ``pids`` holds ``job`` with process ``ident`` (it started and was recorded)."""
        try:
            entry = await self.pids.info(job)
        except Exception:
            return False
        return isinstance(entry, dict) and str(entry.get("pid")) == str(ident)

    async def _undo_start(
        self, job: str, manager: AbstractProcessManager | None, ident: str | None, made: bool
    ) -> None:
        try:
            await self.resource_manager.relinquish(self.job_resources)
        except Exception:
            log.exception("task %s: could not return the reservation of job %s", self.name, job)
        if manager is None:
            return
        if ident is not None:
            try:
                await manager.kill(ident)
                await self._wait_gone(manager, ident)  # so that it cannot write into the directory removed below
            except Exception:
                log.exception("task %s: could not kill the process of job %s", self.name, job)
            try:
                await self.pids.delete(job)
            except Exception:
                log.exception("task %s: could not remove job %s from pids", self.name, job)
        if made:
            try:
                await manager.rmtree(self.jobdir(job))
            except Exception:
                log.exception("task %s: could not remove the directory of job %s", self.name, job)

    async def _wait_gone(self, manager: AbstractProcessManager, ident: str, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.002
        while ident in await manager.get_live_pids({ident}):
            if loop.time() > deadline:
                log.warning("task %s: process %s is still running %s s after it was killed", self.name, ident, timeout)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _wait_and_reap(self, job: str, entry: dict[str, Any]) -> None:
        """Synchronous mode: wait for ``job`` to end (killing it at its timeout), then reap it."""
        manager = self.manager
        ident = entry["pid"]
        ended = asyncio.Event()
        cancel = manager.watch(ident, ended.set)
        deadline = self.deadline(entry.get("start_time"))
        try:
            while ident in await manager.get_live_pids({ident}):
                wait = 1.0 if cancel is not None else 0.05
                if deadline is not None and not entry.get("killed"):
                    remaining = (deadline - utcnow()).total_seconds()
                    if remaining <= 0:
                        await self._kill_for_timeout(job, entry)
                        entry = self._live.get(job, entry)
                        continue
                    wait = min(wait, remaining + 0.005)
                try:
                    await asyncio.wait_for(ended.wait(), wait)
                except asyncio.TimeoutError:
                    pass
        finally:
            if cancel is not None:
                cancel()
        await self.reap_safely(job, self._live.get(job, entry))
