"""What every lease shares: who holds it, the errors, and waiting for it.

A lease makes one controller at a time act on a pipeline: ``run``, ``update``, ``launch``,
``retry``, ``kill``, ``rm``, ``inject`` and the notebook's actions take it; reading (``status``,
``show``, ...) never does. Two kinds exist because storage offers two kinds of guarantee:

* :class:`~pdtnb.lease.files.FileLease` is a kernel lock (``flock``) on a file beside the
  pipeline's data. The kernel drops it the instant its holder dies, and a holder that is merely
  slow keeps it, so nothing needs timing and nothing can run twice.
* :class:`~pdtnb.lease.record.RecordLease` (S3, MongoDB) is a record replaced only by
  compare-and-swap and renewed by its holder every few seconds. A holder that stops renewing
  (dead, or frozen) loses it after ``ttl`` seconds; before starting each job a holder checks, by
  its own monotonic clock, that it renewed within ``ttl / 2``, so a frozen holder that wakes up
  finds it has lost the lease before it can start anything (fencing).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from ..errors import PdtnbError

__all__ = ["Holder", "Lease", "LeaseHeldError", "LeaseLostError", "LEASE_HELD_EXIT", "acting"]

#: The exit status of a command refused because another controller holds the lease
#: (sysexits' EX_TEMPFAIL: "try again later"), so a cron wrapper can tell it from a failure.
LEASE_HELD_EXIT = 75


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: enough to name it in a refusal and to tell, on the same host, whether
    it is still alive (a process id is proven by its start time, never trusted alone)."""

    host: str
    pid: int
    started: float | None
    command: str
    since: float
    token: str = field(default_factory=lambda: os.urandom(8).hex())

    @classmethod
    def me(cls, command: str) -> Holder:
        """This process, about to run ``command``."""
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_start(pid), command, time.time())

    def describe(self) -> str:
        """``run (pid 4242 on host1, since 2026-11-30 13:02:11 UTC)``."""
        since = datetime.fromtimestamp(self.since, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.command} (pid {self.pid} on {self.host}, since {since})"

    def is_dead_here(self) -> bool:
        """True only when the holder ran on this host and its process is gone (or its pid now
        belongs to a process started at another time). A holder on another host is never
        judged from here."""
        if self.host != socket.gethostname():
            return False
        now = _process_start(self.pid)
        if now is None:
            return True
        return self.started is not None and abs(now - self.started) > 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Holder | None:
        """The holder a lease record names, or None when it names none readable."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                str(data["host"]),
                int(data["pid"]),
                None if data.get("started") is None else float(data["started"]),
                str(data["command"]),
                float(data["since"]),
                str(data.get("token", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None

    @classmethod
    def from_json(cls, text: str | bytes) -> Holder | None:
        try:
            return cls.from_dict(json.loads(text))
        except ValueError:
            return None


class LeaseHeldError(PdtnbError):
    """Another controller holds the pipeline's lease. ``holder`` is None when the lease is held
    but its record could not be read (being written at that instant)."""

    exit_status = LEASE_HELD_EXIT

    def __init__(self, holder: Holder | None, where: str, waited: float | None = None):
        self.holder = holder
        self.where = where
        who = holder.describe() if holder is not None else "a process whose record is being written"
        tail = f" (waited {waited:.1f} s)" if waited else ""
        super().__init__(f"the pipeline is controlled by {who}, lease {where}{tail}")


class LeaseLostError(PdtnbError):
    """This controller's lease was taken over (it stopped renewing it for longer than its time to
    live): it must stop acting at once."""


class Lease(ABC):
    """The right to act on one pipeline, held by at most one controller at a time.

    Subclasses implement :meth:`try_acquire` and :meth:`release`; a lease that must be renewed
    also overrides :meth:`valid` and :meth:`confirm`. ``poll`` is how often :meth:`acquire` looks
    again when asked to wait.
    """

    poll: float = 0.5

    #: Where the lease lives, for messages (``file /data/done/.pdtnb-meta/lease``).
    where: str = "?"

    @abstractmethod
    async def try_acquire(self, holder: Holder) -> tuple[bool, Holder | None]:
        """Take the lease for ``holder`` if it is free (or its holder is dead): ``(True, None)``;
        else ``(False, current holder)``, the holder None when its record cannot be read."""

    @abstractmethod
    async def release(self) -> None:
        """Give the lease up (safe to call when it was lost)."""

    async def current_holder(self) -> Holder | None:
        """Who holds the lease now, None when nobody does (read-only; for ``status``)."""
        return None

    def valid(self) -> bool:
        """Whether this controller may act now without asking the store (the fast fencing test,
        called before every launch)."""
        return True

    async def confirm(self) -> None:
        """Make sure the lease is still ours (renewing it); raise :class:`LeaseLostError` if not."""

    async def acquire(self, holder: Holder, wait: float | None = None) -> None:
        """Take the lease, or raise :class:`LeaseHeldError` naming its holder. ``wait`` seconds
        (``inf`` for as long as it takes) are spent waiting for it to become free first."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            taken, current = await self.try_acquire(holder)
            if taken:
                return
            waited = loop.time() - start
            if wait is None or waited >= wait:
                raise LeaseHeldError(current, self.where, waited if wait else None)
            await asyncio.sleep(min(self.poll, max(0.0, wait - waited)))


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def acting(command: str) -> Callable[[F], F]:
    """Make an administration coroutine ``f(pipeline, ...)`` hold the pipeline's lease while it
    runs (``Pipeline.control``), so the command line, the magics and the widgets, which all call
    it, are refused alike while another controller acts."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        async def wrapper(pipeline: Any, *args: Any, **kwargs: Any) -> Any:
            async with pipeline.control(command):
                return await func(pipeline, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
