"""How a command-line run ends when asked to: Ctrl-C, SIGTERM, or its own ``--timeout``.

A run is asked to stop by cancelling its main coroutine: launching stops, in-process jobs are
cancelled (they stay ready, with no record), executor queues are dropped, and records being
written finish, since each write is atomic. That takes milliseconds when the event loop is free.
It is not free while a job body blocks it (synchronous code in an in-process task), and a thread
running an executor job cannot be stopped at all; so a watchdog thread ends the process anyway
``grace`` seconds later. Ending it there loses nothing: every record on disk is whole, and the
interrupted jobs are simply ready again. A second Ctrl-C ends the process at once.

The exit status is ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a
process killed by that signal, so systemd and Kubernetes see a clean stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["Stopping", "hard_exit"]

#: Seconds from the first Ctrl-C (or the timeout) to the end of the process, whatever the jobs do.
GRACE = 1.5


def hard_exit(status: int, message: str | None = None) -> None:
    """End the process now with ``status``, without waiting for threads (executor jobs that
    cannot be interrupted) or running atexit handlers; standard streams are flushed first."""
    try:
        if message:
            print(message, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


class Stopping:
    """Turns SIGINT and SIGTERM into a prompt, bounded stop of the coroutine :meth:`attach`\\ ed,
    and ``deadline`` (seconds from :meth:`watch`) into a bounded timeout.

    Use :meth:`installed` around the event loop's life (signal handlers can only be set from the
    main thread; elsewhere it does nothing), and :meth:`attach` from inside the loop.
    """

    def __init__(self, grace: float = GRACE):
        self.grace = grace
        self.signum: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._done = threading.Event()

    @property
    def status(self) -> int:
        """The exit status for the signal received (130 when none, as for Ctrl-C)."""
        return 128 + (self.signum or signal.SIGINT)

    def attach(self) -> None:
        """Make the current task the one a signal cancels (call it inside the loop)."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()

    @contextmanager
    def installed(self) -> Iterator[Stopping]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self._on_signal)
        try:
            yield self
        finally:
            self._done.set()  # no watchdog may end the process once we are back
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            hard_exit(128 + signum, "interrupted again: exiting now")
        self.signum = signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"# {name}: stopping (the interrupted jobs stay ready; {name} again exits at once)", file=sys.stderr)
        self._watchdog(self.grace, self.status, "interrupted: jobs did not stop in time; exiting without them")
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    def watch(self, seconds: float, status: int, message: str) -> None:
        """End the process with ``status`` after ``seconds`` unless the run is over by then
        (a timeout that must hold even while a job blocks the event loop)."""
        self._watchdog(seconds, status, message)

    def _watchdog(self, seconds: float, status: int, message: str) -> None:
        done = self._done

        def watchdog() -> None:
            if not done.wait(seconds):
                hard_exit(status, message)

        threading.Thread(target=watchdog, name="pdtnb watchdog", daemon=True).start()
