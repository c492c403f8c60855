"""The process manager interface: how a :class:`~pdtnb.ProcessTask` reaches the machine its jobs run on.

A manager knows how to start a process, tell whether it is still running, stop it, and read and
write files on the target. Everything else (templates, quotas, the ``pids`` and ``done``
records, moving standard streams in and out) is the task's business, so one task works unchanged
on the local machine (:class:`~pdtnb.LocalLinuxManager`) or over SSH.

Processes are named by *process identifiers*: opaque strings chosen by the manager, stored in the
task's ``pids`` repository, and handed back to :meth:`get_live_pids` and :meth:`kill`, possibly
by a later pipeline process after a crash. A manager should make them unambiguous over time (the
local manager encodes the process start time, so a recycled pid is never taken for the old job).
"""

from __future__ import annotations

import shlex
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Set
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from ..streams import StderrIsStdout as _StderrIsStdout

__all__ = ["AbstractProcessManager", "job_wrapper"]


def job_wrapper(
    launcher: str,
    return_code: str,
    stdin: str | None,
    stdout: str | None,
    stderr: str | _StderrIsStdout | None,
    *,
    foreground: bool = False,
    rename: bool = True,
) -> str:
    """The ``sh -c`` script every manager runs a job under, as ``sh -c SCRIPT pdtnb-job ARGS...``.

    It runs ``ARGS`` (``launcher`` first, e.g. ``setsid``: its own process group, so a kill
    reaches the whole job) with the standard streams redirected to the given paths (``/dev/null``
    when None; ``STDOUT`` sends stderr to stdout), waits, and writes the exit code to
    ``return_code``. The paths are quoted here and the command arrives as ``"$@"``: nothing the
    task passes is ever parsed as shell code by the wrapper.

    By default (the SSH manager) the job is started with ``&`` and waited for. A command started
    with ``&`` by a non-interactive shell begins with SIGINT and SIGQUIT ignored, and a process
    inherits ignored signals (a Python job would never see Ctrl-C or a SIGINT from ``kill``):
    where ``env --default-signal`` exists (coreutils 8.31 and later) the job starts with their
    default handling. That check and ``env`` cost two more programs per job. ``foreground=True``
    runs the job as an ordinary foreground command instead, which leaves its signals as the
    wrapper's are: for a caller that knows the wrapper starts with SIGINT and SIGQUIT at their
    defaults (the local manager, which otherwise puts ``env --default-signal=INT,QUIT`` in
    ``launcher`` itself).

    ``rename=True`` writes the code to ``return_code.tmp`` and renames it (one more program,
    ``mv``), so that even a reader racing the wrapper never sees a half-written code.
    ``rename=False`` writes it in place with the shell's own ``echo`` (one ``write`` of at most
    four bytes): for a caller that reads the file only once the wrapper has ended, when it is
    complete; if the wrapper is killed before it writes, the file is missing or empty, which
    reads as no code either way.
    """
    q_in = shlex.quote(str(stdin)) if stdin is not None else "/dev/null"
    q_out = shlex.quote(str(stdout)) if stdout is not None else "/dev/null"
    if isinstance(stderr, _StderrIsStdout):
        q_err = "&1"
    else:
        q_err = shlex.quote(str(stderr)) if stderr is not None else "/dev/null"
    q_rc = shlex.quote(str(return_code))
    q_tmp = shlex.quote(str(return_code) + ".tmp")
    runner = f"{launcher} " if launcher else ""
    write_code = f"echo $c >{q_tmp} && mv -f {q_tmp} {q_rc}\n" if rename else f"echo $c >{q_rc}\n"
    if foreground:
        return f'{runner}"$@" <{q_in} >{q_out} 2>{q_err}\nc=$?\n{write_code}'
    restore = 'if env --default-signal=INT,QUIT true 2>/dev/null; then set -- env --default-signal=INT,QUIT "$@"; fi\n'
    return f'{restore}{runner}"$@" <{q_in} >{q_out} 2>{q_err} &\nwait $!\nc=$?\n{write_code}'


class AbstractProcessManager(ABC):
    """The base class of process managers (pydatatask 0.4's interface, plus two optional hooks).

    Required: :meth:`get_live_pids`, :meth:`spawn`, :meth:`kill`, :attr:`basedir`, :meth:`open`,
    :meth:`mkdir`, :meth:`rmtree`. Optional: :meth:`watch` (tell the task at once when a process
    ends, instead of it polling) and :meth:`mtime` (when a file was last written, used as a job's
    end time).
    """

    @abstractmethod
    async def get_live_pids(self, hint: Set[str]) -> Set[str]:
        """The live process identifiers. May include processes that are not in ``hint``, but MUST
        include every identifier in ``hint`` whose process is still running."""

    @abstractmethod
    async def spawn(
        self,
        args: list[str],
        environ: dict[str, str],
        cwd: str,
        return_code: str,
        stdin: str | None,
        stdout: str | None,
        stderr: str | _StderrIsStdout | None,
    ) -> str:
        """Start ``args`` on the target and return its process identifier, without waiting for it.

        ``environ`` is added to the target's environment; ``cwd`` is the working directory; when the
        process ends, its exit code is written to the file ``return_code`` as an ASCII integer.
        ``stdin``, ``stdout`` and ``stderr`` are file paths on the target or None for the null
        device; ``stderr`` may be :data:`~pdtnb.STDOUT` to interleave it into ``stdout``.
        """

    @abstractmethod
    async def kill(self, pid: str) -> None:
        """Stop the process ``pid``; nothing happens if it is not running. Killing must not stop the
        ``return_code`` file from being written."""

    @property
    @abstractmethod
    def basedir(self) -> Path:
        """A directory on the target that the app may use freely."""

    @abstractmethod
    async def open(self, path: Path, mode: Literal["r", "rb", "w", "wb"]) -> Any:
        """Open a file on the target; the result is an async stream usable with ``async with``."""

    @abstractmethod
    async def mkdir(self, path: Path) -> None:
        """Create a directory like ``mkdir -p``: parents too, and no error if it exists."""

    @abstractmethod
    async def rmtree(self, path: Path) -> None:
        """Remove a directory and everything in it."""

    # ---- optional hooks (pdtnb extensions) --------------------------------------------------

    def watch(self, pid: str, callback: Callable[[], None]) -> Callable[[], None] | None:
        """Arrange for ``callback`` to be called on the running event loop once process ``pid`` has
        ended, and return a function that cancels the arrangement. Return None when the manager
        cannot watch processes; the task then polls :meth:`get_live_pids`.

        Must be called from a coroutine running on the pipeline's loop.
        """
        return None

    async def listdir(self, path: Path) -> list[str] | None:
        """The names in directory ``path`` ([] if it does not exist), or None when the manager
        cannot list directories (then job directories orphaned by a crash are not swept)."""
        return None

    async def mtime(self, path: Path) -> datetime | None:
        """When ``path`` was last modified (timezone-aware), or None if unknown. The task uses the
        return code file's time as the job's end time, which stays right for jobs reaped late."""
        return None

    @property
    def host(self) -> str:
        """The name of the machine jobs run on, as job records give it."""
        return socket.gethostname()
