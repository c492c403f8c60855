"""One status feed per controller: a single refresh loop that every live view subscribes to.

A notebook may show several live views of one pipeline at once (the table ``%pdt run`` returned,
a ``%pdt status --live``, a dashboard, progress bars). They must agree, and they must not each
recompute the status: :class:`StatusFeed` refreshes it (through the controller's
:class:`~pdtnb.status.StatusTracker`) on the pipeline's loop, at the shortest interval any
subscriber asked for and at once after every action, and hands each snapshot to every subscriber.
With it comes :class:`RunState`, the controller's run state at the moment the snapshot was taken,
so that a caption never pairs an old table with a newer verdict ("finished" over "live 4").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..pipeline import RunSummary
from ..status import PipelineStatus

if TYPE_CHECKING:
    from .controller import PipelineController

__all__ = ["StatusFeed", "RunState", "RateTracker", "Subscription"]

log = logging.getLogger("pdtnb.notebook")


@dataclass(frozen=True)
class RunState:
    """What the controller was doing when a status snapshot was taken, in words."""

    #: "idle", "running", "finished", "stopped", "failed", "closed" or "retired".
    phase: str
    #: One line for people, e.g. "running for 12 s" or "last run finished: 6 succeeded, ...".
    line: str
    #: Seconds since the background run started (while running).
    elapsed: float | None = None
    #: Jobs still live after a run ended, being reaped as they end (see ``PipelineController.stop``).
    draining: bool = False

    @property
    def active(self) -> bool:
        """Whether jobs may still change state on their own (a run or a drain is going on)."""
        return self.phase == "running" or self.draining


def run_state(controller: PipelineController) -> RunState:
    """The controller's run state now (see :class:`RunState`)."""
    if controller.retired:
        name = controller.name or "the pipeline"
        return RunState("retired", f"replaced: the notebook redefined {name}")
    if not controller.pipeline.is_open:
        return RunState("closed", "pipeline closed: live updates stopped")
    draining = controller.draining
    if controller.running:
        elapsed = controller.run_elapsed or 0.0
        return RunState("running", f"running for {duration_text(elapsed)}", elapsed)
    last = controller.last_run
    if isinstance(last, RunSummary):
        line = f"last run {last.describe()}"
        phase = "stopped" if last.stopped else "finished"
    elif isinstance(last, BaseException):
        line = f"last run failed: {' '.join(str(last).split()) or type(last).__name__}"
        phase = "failed"
    else:
        line, phase = "", "idle"
    if draining:
        drain = "recording the jobs still live as they end"
        line = f"{line}; {drain}" if line else drain
    return RunState(phase, line, draining=draining)


def duration_text(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class RateTracker:
    """Per task, how fast jobs finish (done or failed), from the snapshots a feed sees: the rate
    over the last ``window`` seconds, and the time left at that rate."""

    def __init__(self, window: float = 60.0):
        self.window = window
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def add(self, status: PipelineStatus, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for t in status.tasks:
            samples = self._samples.setdefault(t.name, deque())
            finished = t.done + t.failed
            if samples and finished < samples[-1][1]:
                samples.clear()  # jobs were reset (retry, rm): start over
            samples.append((now, finished))
            while len(samples) > 2 and samples[0][0] < now - self.window:
                samples.popleft()

    def rate(self, task: str) -> float | None:
        """Jobs finished per second over the window (None before two snapshots a second apart)."""
        samples = self._samples.get(task)
        if not samples or len(samples) < 2:
            return None
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        if t1 - t0 < 1.0:
            return None
        return (n1 - n0) / (t1 - t0)

    def eta(self, task: str, remaining: int) -> float | None:
        """Seconds until ``remaining`` jobs finish at the current rate (None if unknown)."""
        rate = self.rate(task)
        if not rate or rate <= 0 or remaining <= 0:
            return None
        return remaining / rate


@dataclass(eq=False)
class Subscription:
    """A subscriber of a feed: ``callback(feed)`` after every snapshot, and the interval it wants."""

    callback: Callable[[StatusFeed], None]
    interval: float
    since: float = field(default_factory=time.monotonic)


class StatusFeed:
    """The status of one controller's pipeline, refreshed by one task on its loop for every view.

    Subscribers are called (on the loop) after each refresh and when the controller is closed or
    retired; they read :attr:`last`, :attr:`state`, :attr:`error` and :attr:`rates`. The loop
    runs while the pipeline is open and someone subscribes; it opens the pipeline when started
    before it was (as ``%pdt`` actions do), never a retired one.
    """

    def __init__(self, controller: PipelineController):
        self.controller = controller
        self.subscriptions: list[Subscription] = []
        #: The latest snapshot, and the controller's run state when it was taken.
        self.last: PipelineStatus | None = None
        self.state: RunState = run_state(controller)
        #: The exception the last refresh raised (None after a good one).
        self.error: BaseException | None = None
        self.refreshes = 0
        self.last_refresh_seconds: float | None = None
        self.taken_at: datetime | None = None
        self.rates = RateTracker()
        self._task: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        controller.add_listener(self._on_change)

    def __repr__(self) -> str:
        return f"<StatusFeed of {self.controller!r}: {len(self.subscriptions)} subscribers, {self.refreshes} refreshes>"

    # ---- subscribing -------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[StatusFeed], None], interval: float = 1.0) -> Subscription:
        """Call ``callback(feed)`` after every refresh; refresh at least every ``interval`` s."""
        sub = Subscription(callback, max(0.05, float(interval)))
        self.subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop calling ``sub``; the loop ends with the last subscriber."""
        if sub in self.subscriptions:
            self.subscriptions.remove(sub)
        if not self.subscriptions:
            self._wake()

    @property
    def interval(self) -> float:
        """The shortest interval a subscriber asked for."""
        return min((s.interval for s in self.subscriptions), default=1.0)

    @property
    def running(self) -> bool:
        """Whether the refresh loop is going."""
        return self._task is not None and not self._task.done()

    def start(self) -> StatusFeed:
        """Start the refresh loop on the running loop (which must be the pipeline's), if it is
        not going; does nothing for a retired controller."""
        if self.controller.retired or self.running:
            return self
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._kick = asyncio.Event()
        self._task = loop.create_task(self._run(), name="pdtnb-status-feed")
        return self

    def stop(self) -> None:
        """End the refresh loop (from any thread)."""
        task = self._task
        if task is not None and not task.done():
            loop = task.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)

    def kick(self) -> None:
        """Refresh now rather than at the next interval (from any thread)."""
        self._wake()

    def _wake(self) -> None:
        event, loop = self._kick, self._loop
        if event is None or loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    def _on_change(self) -> None:
        # Called by the controller after every action, and when it closes or is retired.
        if self.controller.retired or not self.controller.pipeline.is_open:
            self.state = run_state(self.controller)
            self._notify()
        self._wake()

    # ---- refreshing --------------------------------------------------------------------------

    async def refresh(self) -> PipelineStatus:
        """Compute the status now, tell every subscriber, and return it."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        state = run_state(self.controller)  # taken before: the status is at least this new
        try:
            status = await self.controller.status()
        except BaseException as e:
            if not isinstance(e, Exception):
                raise
            self.error = e
            self.state = run_state(self.controller)
            self._notify()
            raise
        self.error = None
        self.last = status
        self.state = state
        self.taken_at = datetime.now(timezone.utc)
        self.rates.add(status)
        self.refreshes += 1
        self.last_refresh_seconds = loop.time() - started
        self._notify()
        return status

    def _notify(self) -> None:
        for sub in list(self.subscriptions):
            try:
                sub.callback(self)
            except Exception:
                log.exception("a pdtnb live view failed to update")

    async def _run(self) -> None:
        controller = self.controller
        kick = self._kick
        assert kick is not None
        try:
            if not controller.pipeline.is_open and not controller.retired:
                try:
                    await controller.open()  # a view started before the pipeline was opened opens it
                except Exception as e:
                    self.error = e
                    self._notify()
                    return
            while self.subscriptions and controller.pipeline.is_open and not controller.retired:
                kick.clear()
                try:
                    await self.refresh()
                except Exception:
                    pass  # shown by the subscribers (self.error); a background task has no cell to fail
                if not self.subscriptions:
                    break
                try:
                    await asyncio.wait_for(kick.wait(), self.interval)
                except asyncio.TimeoutError:
                    pass
            self.state = run_state(controller)
            self._notify()
        except asyncio.CancelledError:
            pass

    def close(self) -> None:
        """Forget every subscriber and end the loop."""
        self.subscriptions.clear()
        self.stop()
        self.controller.remove_listener(self._on_change)
