"""LocalLinuxManager: run a ProcessTask's jobs as processes on this Linux machine.

How a job runs
--------------
:meth:`LocalLinuxManager.spawn` starts a small ``/bin/sh`` *wrapper* in a new session. The wrapper
runs the job as a foreground command in a session of its own (``setsid``), and when it ends writes
the exit code to ``return_code`` with the shell's ``echo``. The wrapper is what the process
identifier names: once it has ended, the return code file is complete (the task reads it only
then; a wrapper killed before writing leaves the file missing or empty, which both read as "no
exit code"). The wrapper and the job both survive the pipeline process, so a pipeline killed
with SIGKILL leaves its jobs running and a restarted one finds their return codes.

A job costs the wrapper, ``setsid`` and the job's own program, and nothing more: earlier the
wrapper started the job with ``&`` (which makes ``sh`` ignore SIGINT and SIGQUIT in it, so an
``env --default-signal`` probe and ``env`` itself ran per job to undo that) and wrote the code to
a temporary file renamed with ``mv``: five more programs per job, which cost more CPU than the
rest of the job's handling put together. A foreground command keeps the wrapper's signal
handling, which is this process's: only if this process ignores SIGINT or SIGQUIT (started under
``nohup``, or with ``&`` by a script) is ``env --default-signal=INT,QUIT`` put before the job.

Process identifiers
-------------------
``"PID:START:BOOT"``: the wrapper's pid, its start time (field 22 of ``/proc/PID/stat``, clock
ticks since boot) and the first 8 characters of the kernel's boot id. A process is live only if
all three still match, so a pid recycled by the kernel, or a pid from before a reboot, is never
mistaken for the job. Identifiers are always strings (pydatatask 0.4.7 compared the bytes it
read from the wrapper with strings, so every live job looked dead each round). A bare ``"PID"``
(as pydatatask wrote) is read, but nothing proves that the process now holding that pid is the
job's: it is treated as ended, never as live, and never signalled.

Killing
-------
:meth:`LocalLinuxManager.kill` sends SIGKILL to the job's process group (the job and everything it
started that did not leave the group). The wrapper survives to record the exit code (137).

Completion
----------
:meth:`LocalLinuxManager.watch` watches the wrapper with a pidfd (Linux 5.3+), which works for
processes this pipeline did not start too, so a task is told the moment a job ends instead of
polling.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Set
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ..streams import StderrIsStdout as _StderrIsStdout
from .base import AbstractProcessManager, job_wrapper

__all__ = ["LocalLinuxManager", "LocalFile", "parse_identifier"]

log = logging.getLogger("pdtnb.managers")

_SETSID = shutil.which("setsid")
_boot_id: str | None = None


def _get_boot_id() -> str:
    global _boot_id
    if _boot_id is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as fp:
                _boot_id = fp.read().strip().replace("-", "")[:8]
        except OSError:
            _boot_id = "0"
    return _boot_id


def _read_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, starttime) of ``pid`` from /proc, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fp:
            data = fp.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces and parentheses.
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        return rest[0].decode(), int(rest[1]), int(rest[2]), int(rest[19])
    except (IndexError, ValueError):
        return None


def parse_identifier(ident: str) -> tuple[int, int | None, str | None]:
    """Split a process identifier into (pid, start time or None, boot id or None).

    Raises ValueError for anything that is not an identifier this manager could have written.
    """
    if isinstance(ident, bytes):  # tolerate what pydatatask 0.4.7 stored
        ident = ident.decode()
    parts = str(ident).strip().split(":")
    if len(parts) == 1:
        return int(parts[0]), None, None
    if len(parts) == 3:
        return int(parts[0]), int(parts[1]), parts[2]
    raise ValueError(f"not a local process identifier: {ident!r}")


def is_provable(ident: str) -> bool:
    """Whether ``ident`` carries the start time and boot id that prove which process it names."""
    try:
        _, start, boot = parse_identifier(ident)
    except ValueError:
        return False
    return start is not None and bool(boot)


class LocalLinuxManager(AbstractProcessManager):
    """Runs processes on the local Linux machine, keeping files under ``local_path/app``.

    ``app`` names this application's directory, so that several pipelines can share
    ``local_path`` (``/tmp/pydatatask`` by default, as in pydatatask). The small file operations
    of a job (its script, return code and output files) run on the event loop, as a local disk
    makes them cheap; ``offload=True`` runs each in a thread instead, for a ``local_path`` on a
    network filesystem.
    """

    def __init__(self, app: str, local_path: Path | str = "/tmp/pydatatask", *, offload: bool = False):
        if not isinstance(app, str) or not app or "/" in app or app in (".", ".."):
            raise ValueError(f"LocalLinuxManager: app must be a plain directory name, not {app!r}")
        self.app = app
        self.local_path = Path(local_path).expanduser() / app
        self.offload = offload
        # Wrappers this process started, by pid: reaped (waited for) as soon as they end, so they
        # never linger as zombies, and checked without reading /proc.
        self._children: dict[int, tuple[subprocess.Popen[bytes], int]] = {}

    def __repr__(self) -> str:
        return f"<LocalLinuxManager {self.local_path}>"

    @property
    def basedir(self) -> Path:
        return self.local_path

    # ---- liveness ----------------------------------------------------------------------------

    def _is_alive(self, ident: str) -> bool:
        try:
            pid, start, boot = parse_identifier(ident)
        except ValueError:
            log.warning("%r: ignoring malformed process identifier %r", self, ident)
            return False
        if start is None:
            return False  # a bare pid proves nothing: never taken as the job's process
        child = self._children.get(pid)
        if child is not None and start == child[1] and boot == _get_boot_id():
            # Our own child, not yet waited for: its pid cannot have been reused.
            if child[0].poll() is None:
                return True
            del self._children[pid]
            return False
        if boot is not None and boot != _get_boot_id():
            return False
        stat = _read_stat(pid)
        if stat is None:
            return False
        state, ppid, _pgrp, starttime = stat
        if start is not None and starttime != start:
            return False
        if state in ("Z", "X", "x"):
            if ppid == os.getpid():
                self._reap_zombie(pid)
            return False
        return True

    def _reap_zombie(self, pid: int) -> None:
        child = self._children.pop(pid, None)
        if child is not None:
            child[0].poll()
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    async def get_live_pids(self, hint: Set[str]) -> set[str]:
        """The identifiers in ``hint`` whose processes are still running (only those: listing every
        process on the machine would tell the task nothing more)."""
        return {ident for ident in hint if self._is_alive(ident)}

    # ---- starting ----------------------------------------------------------------------------

    async def spawn(
        self,
        args: list[str],
        environ: dict[str, str] | None,
        cwd: str,
        return_code: str,
        stdin: str | None,
        stdout: str | None,
        stderr: str | _StderrIsStdout | None,
    ) -> str:
        """Start ``args`` in ``cwd`` under the wrapper (see the module docstring); returns at once.

        The fork and exec run in a worker thread. With ``vfork`` (which subprocess uses on Linux)
        the calling thread is suspended until the child has exec'd the shell, which takes a
        millisecond on an idle machine but several when the CPUs are busy (the child waits for
        one): in a thread (the GIL is released meanwhile) the event loop goes on with other
        launches and reaps. The identifier is made, and the child noted, back on the loop.
        """
        if not args:
            raise ValueError("spawn: args must name a program")
        argv = [str(a) for a in args]
        script = job_wrapper(_launcher(), return_code, stdin, stdout, stderr, foreground=True, rename=False)
        env = None  # inherited as it is: nothing to copy or encode
        if environ:
            env = dict(os.environ)
            env.update({str(k): str(v) for k, v in environ.items()})
        proc, start = await asyncio.to_thread(self._start_wrapper, script, argv, cwd, env)
        self._children[proc.pid] = (proc, start)
        return f"{proc.pid}:{start}:{_get_boot_id()}"

    def _start_wrapper(
        self, script: str, args: list[str], cwd: str, env: dict[str, str] | None
    ) -> tuple[subprocess.Popen[bytes], int]:
        """Start the wrapper; (its Popen, its start time). Runs in a worker thread."""
        exe = args[0]
        if "/" in exe and os.path.isfile(exe) and not os.access(exe, os.X_OK):
            os.chmod(exe, 0o755)
        proc = subprocess.Popen(
            ["/bin/sh", "-c", script, "pdtnb-job", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )
        stat = _read_stat(proc.pid)
        if stat is None:  # cannot happen for an unreaped child, but never hand out a bad id
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{self!r}: the process {proc.pid} vanished as it started")
        return proc, stat[3]

    # ---- stopping ----------------------------------------------------------------------------

    def _job_groups(self, pid: int) -> list[int] | None:
        """The process groups of the wrapper's children that left its group (the job), or None
        if the wrapper is gone."""
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fp:
                children = [int(c) for c in fp.read().split()]
        except FileNotFoundError:
            return None
        except OSError:
            import psutil

            try:
                children = [c.pid for c in psutil.Process(pid).children()]
            except psutil.Error:
                return None
        groups = []
        for child in children:
            stat = _read_stat(child)
            if stat is not None and stat[2] != pid:
                groups.append(stat[2])
        return groups

    async def kill(self, pid: str) -> None:
        """SIGKILL the job's process group; the wrapper then records exit code 137. Nothing happens
        if the process has ended."""
        if not is_provable(pid):
            log.warning("%r: not signalling process %r: a bare pid cannot be proven to be the job's", self, pid)
            return
        if not self._is_alive(pid):
            return
        num = parse_identifier(pid)[0]
        if _SETSID:
            for _ in range(200):
                groups = self._job_groups(num)
                if groups is None or not self._is_alive(pid):
                    return
                if groups:
                    for group in groups:
                        try:
                            os.killpg(group, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            pass
                    return
                # The wrapper has not started the job yet (or is writing the code): look again.
                await asyncio.sleep(0.005)
        # No job group found: stop the wrapper's whole session (no return code gets written).
        log.warning("%r: killing process group %d, the job could not be found apart from its wrapper", self, num)
        try:
            os.killpg(num, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # ---- watching ----------------------------------------------------------------------------

    def watch(self, pid: str, callback: Callable[[], None]) -> Callable[[], None] | None:
        """Call ``callback`` on the running loop when ``pid`` ends (a pidfd watched by the loop)."""
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            return None
        loop = asyncio.get_running_loop()
        try:
            num = parse_identifier(pid)[0]
        except ValueError:
            return None
        try:
            fd = pidfd_open(num)
        except ProcessLookupError:
            loop.call_soon(callback)
            return _noop
        except OSError:
            return None  # no pidfd support in this kernel, or not allowed: the task polls
        # The pid may have been recycled between the caller's liveness check and pidfd_open.
        if not self._is_alive(pid):
            os.close(fd)
            loop.call_soon(callback)
            return _noop
        closed = False

        def cancel() -> None:
            nonlocal closed
            if not closed:
                closed = True
                loop.remove_reader(fd)
                os.close(fd)

        def ready() -> None:
            cancel()
            child = self._children.pop(num, None)
            if child is not None:
                child[0].poll()  # reap our own child now, not at the next liveness check
            callback()

        loop.add_reader(fd, ready)
        return cancel

    # ---- files -------------------------------------------------------------------------------

    async def open(self, path: Path, mode: Literal["r", "rb", "w", "wb"]) -> LocalFile:
        """A :class:`LocalFile`: its open, reads, writes and close run on the event loop (see the
        class), or in a thread each if the manager was made with ``offload=True``."""
        if mode not in ("r", "rb", "w", "wb"):
            raise ValueError(f"{self!r}: unsupported open mode {mode!r}; use 'r', 'rb', 'w' or 'wb'")
        if self.offload:
            return LocalFile(await asyncio.to_thread(open, path, mode), offload=True)
        return LocalFile(open(path, mode))  # noqa: ASYNC230 - inline on purpose (see LocalFile)

    async def mkdir(self, path: Path) -> None:
        _mkdir(Path(path))  # a couple of system calls: cheaper here than in a worker thread

    async def rmtree(self, path: Path) -> None:
        """Remove ``path`` and everything under it, in a thread (a job may leave a large tree);
        nothing to do, and no thread, when it does not exist."""
        if not os.path.lexists(path):  # noqa: ASYNC240 - one lstat: cheaper than a thread
            return

        def remove() -> None:
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass

        await asyncio.to_thread(remove)

    async def listdir(self, path: Path) -> list[str]:
        def names() -> list[str]:
            try:
                return os.listdir(path)
            except FileNotFoundError:
                return []

        return await asyncio.to_thread(names)

    async def mtime(self, path: Path) -> datetime | None:
        try:
            return datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc)
        except OSError:
            return None


class LocalFile:
    """What :meth:`LocalLinuxManager.open` returns: a stream over a local file whose ``read``,
    ``write`` and ``close`` are coroutines.

    The system calls run on the event loop itself: on a local disk each takes microseconds, while
    handing one to a thread and back costs tens of them (and a job's files are small: the script,
    the return code, usually short output), as the file repositories do. ``offload=True`` runs
    each call in a thread instead, for a directory on a network filesystem."""

    def __init__(self, fp: Any, offload: bool = False):
        self._fp = fp
        self.offload = offload

    async def read(self, n: int | None = None) -> Any:
        size = -1 if n is None else n
        if self.offload:
            return await asyncio.to_thread(self._fp.read, size)
        return self._fp.read(size)

    async def write(self, data: Any) -> int:
        if self.offload:
            await asyncio.to_thread(self._fp.write, data)
        else:
            self._fp.write(data)
        return len(data)

    async def close(self) -> None:
        if self.offload:
            await asyncio.to_thread(self._fp.close)
        else:
            self._fp.close()

    async def __aenter__(self) -> LocalFile:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close()


def _signals_ignored() -> bool:
    """Whether this process ignores SIGINT or SIGQUIT (started with ``&`` by a shell, or under
    ``nohup``): its children, the wrappers and so the jobs, would inherit that."""
    return any(signal.getsignal(sig) == signal.SIG_IGN for sig in (signal.SIGINT, signal.SIGQUIT))


_env_resets: bool | None = None


def _env_resets_signals() -> bool:
    """Whether ``env --default-signal`` works here (coreutils 8.31 and later); asked once."""
    global _env_resets
    if _env_resets is None:
        try:
            done = subprocess.run(
                ["env", "--default-signal=INT,QUIT", "true"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
            )
            _env_resets = done.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _env_resets = False
    return _env_resets


def _launcher() -> str:
    """What the wrapper starts the job with: ``setsid`` (a process group of its own, for kill),
    and ``env --default-signal=INT,QUIT`` only when this process ignores one of them (see the
    module docstring)."""
    parts = [shlex.quote(_SETSID)] if _SETSID else []
    if _signals_ignored() and _env_resets_signals():
        parts.append("env --default-signal=INT,QUIT")
    return " ".join(parts)


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _noop() -> None:
    return None
