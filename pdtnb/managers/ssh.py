"""SSHLinuxManager: run a ProcessTask's jobs on a remote Linux machine over one SSH connection.

The process model is :class:`~pdtnb.LocalLinuxManager`'s, run remotely: :meth:`SSHLinuxManager.spawn`
starts a ``/bin/sh`` wrapper in a new session (``setsid``), detached from the SSH channel; the
wrapper starts the job in a session (and process group) of its own, waits for it, and writes the
exit code to ``return_code.tmp`` then renames it to ``return_code``. Identifiers are
``"PID:START:BOOT"`` read from the *remote* ``/proc`` (the wrapper's pid, its start time in clock
ticks since boot, and the first 8 characters of the remote boot id), so a recycled remote pid is
never taken for the job. :meth:`SSHLinuxManager.kill` SIGKILLs the job's process group; the
wrapper survives and records 137. Jobs survive the pipeline process and the SSH connection.

Files go over SFTP (one SFTP session per connection). The connection itself comes from the user's
session resource; :func:`connect` opens one with host key verification on by default and turns
connection failures into :class:`~pdtnb.errors.SSHConnectionError`.

Needs the ``ssh`` extra (asyncssh).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import AsyncIterator, Callable, Set
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import asyncssh

from ..errors import SSHConnectionError
from ..streams import AsyncFile
from ..streams import StderrIsStdout as _StderrIsStdout
from .base import AbstractProcessManager, job_wrapper
from .local import parse_identifier

__all__ = ["SSHLinuxManager", "SSHFile", "connect"]

log = logging.getLogger("pdtnb.managers")

_DEFAULT: Any = object()

# Prints "PID:START:BOOT" of the process $p (start time: field 22 of /proc/$p/stat; the command
# name, which may hold spaces, is cut off at its last ") ").
_IDENT = (
    "s=$(sed 's/.*) //' /proc/$p/stat | awk '{print $20}')\n"
    "b=$(tr -d - </proc/sys/kernel/random/boot_id | cut -c1-8)\n"
    'echo "$p:$s:$b"\n'
)

# Succeeds while the process $1 with start time $2 on boot $3 is running (not a zombie).
_ALIVE_FN = (
    "alive() {\n"
    '  [ "$(tr -d - </proc/sys/kernel/random/boot_id | cut -c1-8)" = "$3" ] || return 1\n'
    "  want=$2\n"
    "  st=$(sed 's/.*) //' /proc/$1/stat 2>/dev/null) || return 1\n"
    "  set -- $st\n"
    '  case "$1" in Z|X|x) return 1;; esac\n'
    "  shift 19\n"
    '  [ "$1" = "$want" ]\n'
    "}\n"
)


@asynccontextmanager
async def connect(
    host: str,
    port: int = 22,
    username: str | None = None,
    known_hosts: Any = _DEFAULT,
    client_keys: Any = _DEFAULT,
    connect_timeout: float = 10.0,
    **kwargs: Any,
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """Open an SSH connection for a session resource, verifying the server's host key.

    ``known_hosts`` is a known_hosts file path, explicit keys, or anything else asyncssh accepts;
    left out, ``~/.ssh/known_hosts`` is used. Host key checking is off only when ``known_hosts=None``
    is passed explicitly. ``client_keys`` (key files or keys) defaults to asyncssh's (the user's
    ``~/.ssh`` keys and agent). An unreachable host, a refused login, an unknown host key or a
    connection that takes longer than ``connect_timeout`` seconds raises
    :class:`~pdtnb.errors.SSHConnectionError` naming ``host:port``. Other keyword arguments go to
    :func:`asyncssh.connect`::

        @session.resource
        async def ssh():
            async with pdtnb.managers.ssh.connect("build1", username="ci", known_hosts="hosts") as conn:
                yield conn
    """
    options: dict[str, Any] = dict(kwargs)
    if known_hosts is not _DEFAULT:
        options["known_hosts"] = known_hosts
    if client_keys is not _DEFAULT:
        options["client_keys"] = client_keys
    if username is not None:
        options["username"] = username
    where = f"{host}:{port}"
    try:
        conn = await asyncio.wait_for(asyncssh.connect(host, port, **options), connect_timeout)
    except asyncio.TimeoutError:
        raise SSHConnectionError(f"SSH connection to {where} timed out after {connect_timeout} s") from None
    except asyncssh.HostKeyNotVerifiable as exc:
        raise SSHConnectionError(
            f"SSH server {where}: host key not verified ({exc.reason}); add the server's key to known_hosts"
        ) from exc
    except asyncssh.PermissionDenied as exc:
        who = f" as {username}" if username else ""
        raise SSHConnectionError(f"SSH server {where} refused the login{who}: {exc.reason}") from exc
    except asyncssh.DisconnectError as exc:
        raise SSHConnectionError(f"SSH server {where} closed the connection: {exc.reason}") from exc
    except asyncssh.Error as exc:
        raise SSHConnectionError(f"SSH connection to {where} failed: {exc.reason}") from exc
    except OSError as exc:
        if exc.filename:  # a known_hosts or key file that cannot be read
            raise SSHConnectionError(f"SSH connection to {where}: cannot read {exc.filename}: {exc.strerror}") from exc
        raise SSHConnectionError(f"cannot reach SSH server {where}: {exc.strerror or exc}") from exc
    try:
        yield conn
    finally:
        conn.close()
        await conn.wait_closed()


class SSHLinuxManager(AbstractProcessManager):
    """Runs processes on a remote Linux machine reached over SSH, keeping files under
    ``remote_path/app`` there.

    ``ssh`` is a callable returning an :class:`asyncssh.SSHClientConnection`, normally a session
    resource (see :func:`connect`). ``max_sessions`` is the server's ``MaxSessions`` (channels open
    at once on one connection, 10 by default in OpenSSH): the manager never opens more. At most
    ``max_watches`` of them watch running jobs; the task polls for the others.
    """

    def __init__(
        self,
        app: str,
        ssh: Callable[[], asyncssh.SSHClientConnection],
        remote_path: PurePosixPath | Path | str = "/tmp/pydatatask",
        max_sessions: int = 10,
        max_watches: int = 4,
    ):
        if not isinstance(app, str) or not app or "/" in app or app in (".", ".."):
            raise ValueError(f"SSHLinuxManager: app must be a plain directory name, not {app!r}")
        self.app = app
        self._ssh = ssh
        self.remote_path = PurePosixPath(str(remote_path)) / app
        self._sftp: tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient] | None = None
        self._sftp_lock = asyncio.Lock()
        # Every command and the SFTP session hold an SSH channel, and OpenSSH allows 10 open at once
        # per connection by default (MaxSessions): watches get max_watches of them, SFTP one, and
        # the short commands (spawn, kill, liveness, rmtree) share the rest.
        if max_sessions < 3:
            raise ValueError(f"SSHLinuxManager: max_sessions must be at least 3, not {max_sessions}")
        self.max_watches = max(0, min(max_watches, max_sessions - 2))
        self._watching = 0
        self._channels = asyncio.Semaphore(max_sessions - 1 - self.max_watches)

    def __repr__(self) -> str:
        return f"<SSHLinuxManager {self.remote_path}>"

    @property
    def ssh(self) -> asyncssh.SSHClientConnection:
        """The connection (raises SessionClosedError if its session is not open)."""
        return self._ssh()

    @property
    def basedir(self) -> Path:
        return Path(str(self.remote_path))

    @property
    def host(self) -> str:
        """The SSH server's host name (as connected to)."""
        try:
            peer = self.ssh.get_extra_info("peername")
        except Exception:
            return "ssh"
        return f"{peer[0]}:{peer[1]}" if peer else "ssh"

    async def _exec(self, script: str) -> asyncssh.SSHCompletedProcess:
        """Run ``script`` with the remote /bin/sh, on one of the channels left to short commands."""
        conn = self.ssh
        command = f"/bin/sh -c {shlex.quote(script)}"
        async with self._channels:
            for attempt in range(5):
                try:
                    return await conn.run(command, check=False)
                except asyncssh.ChannelOpenError:
                    # Someone else shares the connection, or the server frees channels late.
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    async def _run(self, script: str, check: bool = True) -> str:
        result = await self._exec(script)
        if check and result.exit_status != 0:
            raise RuntimeError(f"{self!r}: remote command failed ({result.exit_status}): {result.stderr!s}".strip())
        out = result.stdout
        return out.decode() if isinstance(out, bytes) else str(out or "")

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        conn = self.ssh
        async with self._sftp_lock:
            if self._sftp is None or self._sftp[0] is not conn:
                self._sftp = (conn, await conn.start_sftp_client())
            return self._sftp[1]

    # ---- liveness ----------------------------------------------------------------------------

    async def get_live_pids(self, hint: Set[str]) -> set[str]:
        """The identifiers in ``hint`` whose remote processes are still running (one round trip)."""
        parsed: dict[str, tuple[int, int | None, str | None]] = {}
        for ident in hint:
            try:
                parsed[ident] = parse_identifier(ident)
            except ValueError:
                log.warning("%r: ignoring malformed process identifier %r", self, ident)
        if not parsed:
            return set()
        pids = " ".join(sorted({str(p[0]) for p in parsed.values()}))
        out = await self._run(
            "tr -d - </proc/sys/kernel/random/boot_id | cut -c1-8\n"
            f"for p in {pids}; do printf '%s ' $p; sed 's/.*) //' /proc/$p/stat 2>/dev/null || echo; done\n"
        )
        lines = out.splitlines()
        boot = lines[0].strip() if lines else ""
        stats: dict[int, list[str]] = {}
        for line in lines[1:]:
            fields = line.split()
            if len(fields) > 20:
                stats[int(fields[0])] = fields[1:]
        live = set()
        for ident, (pid, start, ident_boot) in parsed.items():
            stat = stats.get(pid)
            if stat is None or stat[0] in ("Z", "X", "x"):
                continue
            if ident_boot is not None and ident_boot != boot:
                continue
            if start is None or int(stat[19]) != start:
                continue  # a bare pid proves nothing: never taken as the job's process
            live.add(ident)
        return live

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
        """Start ``args`` in ``cwd`` on the remote machine under the wrapper; returns at once."""
        if not args:
            raise ValueError("spawn: args must name a program")
        args = [str(a) for a in args]
        wrapper = job_wrapper("setsid", return_code, stdin, stdout, stderr)
        lines = [f"cd {shlex.quote(str(cwd))} || exit 1"]
        for key, value in (environ or {}).items():
            if not str(key).isidentifier():
                raise ValueError(f"{self!r}: invalid environment variable name {key!r}")
            lines.append(f"export {key}={shlex.quote(str(value))}")
        exe = shlex.quote(args[0])
        if "/" in args[0]:
            lines.append(f"if [ -f {exe} ] && [ ! -x {exe} ]; then chmod 755 {exe}; fi")
        command = " ".join(shlex.quote(a) for a in ["/bin/sh", "-c", wrapper, "pdtnb-job", *args])
        # Not a process group leader (no job control here), so setsid execs in place: $! is the wrapper.
        lines.append(f"setsid {command} </dev/null >/dev/null 2>&1 &")
        lines.append("p=$!")
        out = (await self._run("\n".join(lines) + "\n" + _IDENT)).strip()
        try:
            pid, start, boot = parse_identifier(out.splitlines()[-1])
            if start is None or not boot:
                raise ValueError(out)
        except (ValueError, IndexError):
            raise RuntimeError(f"{self!r}: could not start {args!r}: the remote side answered {out!r}") from None
        return f"{pid}:{start}:{boot}"

    # ---- stopping ----------------------------------------------------------------------------

    async def kill(self, pid: str) -> None:
        """SIGKILL the job's process group on the remote machine; the wrapper then records 137.
        Nothing happens if the process has ended."""
        try:
            num, start, boot = parse_identifier(pid)
        except ValueError:
            log.warning("%r: not killing malformed process identifier %r", self, pid)
            return
        if start is None or boot is None:
            log.warning("%r: not signalling process %r: a bare pid cannot be proven to be the job's", self, pid)
            return
        check = f"alive {num} {start} {boot} || exit 0\n"
        script = (
            _ALIVE_FN
            + "i=0\n"
            + "while [ $i -lt 400 ]; do\n"
            + check
            + "  found=\n"
            + f"  for c in $(cat /proc/{num}/task/{num}/children 2>/dev/null); do\n"
            + "    cs=$(sed 's/.*) //' /proc/$c/stat 2>/dev/null) || continue\n"
            + "    set -- $cs\n"
            + f'    if [ "$3" != {num} ]; then kill -9 -$3 2>/dev/null; found=1; fi\n'
            + "  done\n"
            + '  [ -n "$found" ] && exit 0\n'
            + "  sleep 0.01; i=$((i+1))\n"
            + "done\n"
            + f"kill -9 -{num} 2>/dev/null\n"
            + "exit 3\n"
        )
        out = await self._exec(script)
        if out.exit_status == 3:
            log.warning("%r: killed process group %d, the job could not be found apart from its wrapper", self, num)

    # ---- watching ----------------------------------------------------------------------------

    def watch(self, pid: str, callback: Callable[[], None]) -> Callable[[], None] | None:
        """Call ``callback`` when ``pid`` ends: a remote shell loop on its own SSH channel that
        exits when the process does (checked every 50 ms there, with no traffic meanwhile)."""
        try:
            num, start, boot = parse_identifier(pid)
        except ValueError:
            return None
        if start is None or boot is None or self._watching >= self.max_watches:
            return None
        try:
            conn = self.ssh
        except Exception:
            return None
        script = _ALIVE_FN + f"while alive {num} {start} {boot}; do sleep 0.05; done\n"

        async def wait() -> None:
            process = None
            try:
                process = await conn.create_process(f"/bin/sh -c {shlex.quote(script)}")
                await process.wait(check=False)
            except asyncio.CancelledError:
                if process is not None:
                    process.close()  # give the channel back now, not when the job ends
                raise
            except Exception:
                pass  # the connection went away: the task's next poll finds out
            callback()

        def finished(_: asyncio.Task[None]) -> None:
            self._watching -= 1

        self._watching += 1
        task = asyncio.get_running_loop().create_task(wait())
        task.add_done_callback(finished)

        def cancel() -> None:
            task.cancel()

        return cancel

    # ---- files -------------------------------------------------------------------------------

    async def open(self, path: Path, mode: Literal["r", "rb", "w", "wb"]) -> Any:
        if mode not in ("r", "rb", "w", "wb"):
            raise ValueError(f"{self!r}: unsupported open mode {mode!r}; use 'r', 'rb', 'w' or 'wb'")
        sftp = await self._sftp_client()
        try:
            handle = await sftp.open(str(path), mode)
        except asyncssh.SFTPNoSuchFile as exc:
            raise FileNotFoundError(2, f"no such file on the remote machine: {exc.reason}", str(path)) from None
        except asyncssh.SFTPPermissionDenied as exc:
            raise PermissionError(13, f"permission denied on the remote machine: {exc.reason}", str(path)) from None
        return SSHFile(handle)

    async def mkdir(self, path: Path) -> None:
        sftp = await self._sftp_client()
        await sftp.makedirs(str(path), exist_ok=True)

    async def rmtree(self, path: Path) -> None:
        await self._run(f"rm -rf -- {shlex.quote(str(path))}")

    async def listdir(self, path: Path) -> list[str]:
        quoted = shlex.quote(str(path))
        out = await self._run(f"if [ -d {quoted} ]; then ls -A1 -- {quoted}; fi")
        return [name for name in out.split("\n") if name]

    async def mtime(self, path: Path) -> datetime | None:
        out = await self._run(f"stat -c %.9Y -- {shlex.quote(str(path))}", check=False)
        try:
            return datetime.fromtimestamp(float(out.strip()), timezone.utc)
        except ValueError:
            return None


SSHFile = AsyncFile  # what SSHLinuxManager.open returns
