"""A lease that is a kernel lock on a file: for pipelines whose data is on a local filesystem.

``flock`` is held by an open file, so the kernel releases it the moment the holding process
dies, however it dies, and never while it lives: a dead holder is replaced at once, and a slow one
is never replaced, which is all the fencing a launch needs. The holder writes who it is into the
file for the refusals of others, and removes the file as it lets go. (``flock`` is per open file,
not per process, so two pipelines in one process exclude each other too. On NFS, Linux maps it to
a POSIX lock held by the server.)
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from pathlib import Path

from ..errors import storage_fault
from .base import Holder, Lease

__all__ = ["FileLease"]

log = logging.getLogger("pdtnb.lease")

#: How often a holder checks that its lock file is still the one at the path (someone may have
#: removed it, letting another process lock a new file there).
_RECHECK = 0.5


class FileLease(Lease):
    """The lease of a pipeline as an exclusive ``flock`` on ``path`` (created if missing)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.where = f"file {self.path}"
        self._fd: int | None = None
        self._checked = 0.0
        self._lost = False

    def __repr__(self) -> str:
        return f"<FileLease {self.path}>"

    async def try_acquire(self, holder: Holder) -> tuple[bool, Holder | None]:
        if self._fd is not None:
            raise RuntimeError(f"{self!r} is already held by this process")
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as e:
                fault = storage_fault(OSError(e.errno, e.strerror, str(self.path)), note="the pipeline was not touched")
                raise fault or e from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    # The holder writes its name just after locking: give it a moment.
                    for _ in range(50):
                        current = Holder.from_json(os.pread(fd, 65536, 0))
                        if current is not None:
                            break
                        await asyncio.sleep(0.01)
                finally:
                    os.close(fd)
                return False, current
            except BaseException:
                os.close(fd)
                raise
            # The holder before us removes the file as it lets go: if we locked a file that is no
            # longer at the path, the lock means nothing; open the path again.
            try:
                current_file = os.stat(self.path)
            except FileNotFoundError:
                current_file = None
            if current_file is not None and os.path.samestat(os.fstat(fd), current_file):
                break
            os.close(fd)
        try:
            data = holder.to_json().encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        except OSError as e:
            # The lock is held all the same; others will be refused without the holder's name (a
            # full disk stops the run itself soon enough, with its own message).
            log.warning("could not write the holder into the lease %s: %s", self.where, e)
        except BaseException:
            os.close(fd)  # closing drops the lock
            raise
        self._fd = fd
        self._checked = time.monotonic()
        self._lost = False
        return True, None

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Removed while still locked, so that no directory keeps a lease file when idle; a
            # process that opened it meanwhile sees, once it gets the lock, that it is gone.
            if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                os.unlink(self.path)
                if self.path.parent.name == ".pdtnb-meta":
                    os.rmdir(self.path.parent)  # only if empty: nothing of pdtnb's left behind
        except OSError:
            pass
        os.close(fd)

    async def current_holder(self) -> Holder | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return Holder.from_json(os.pread(fd, 65536, 0))
            return None  # we could lock it: nobody holds it
        finally:
            os.close(fd)

    def valid(self) -> bool:
        if self._fd is None or self._lost:
            return False
        return time.monotonic() - self._checked < _RECHECK

    async def confirm(self) -> None:
        from .base import LeaseLostError

        if self._fd is None:
            raise LeaseLostError(f"the lease {self.where} is not held by this process")
        try:
            same = os.path.samestat(os.fstat(self._fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:
            self._lost = True
            raise LeaseLostError(
                f"the lease {self.where} was removed or replaced while this process held it; "
                "stopping so that two controllers never act at once"
            )
        self._checked = time.monotonic()
