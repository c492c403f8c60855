"""Retry policies: when a failed attempt of a job is tried again.

The decision is taken once, when the attempt fails and the exception (or exit code, or reason) is
at hand, and written into the job record as ``retry_at``. So it survives a restart of the
controller, every process that reads the record agrees on the job's state (``retrying`` until
``retry_at``, then due), and nothing has to re-derive it from a type name read back from disk.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .record import JobRecord, Outcome

__all__ = ["Retry"]

#: The reasons a process or pod attempt can name in ``Retry(on=...)``, besides exit codes.
KNOWN_REASONS = ("timeout", "Evicted", "OOMKilled", "launch-error", "killed")


@dataclass(frozen=True)
class Retry:
    """Try a failed job again, up to ``attempts`` attempts in all, waiting ``delay`` seconds before
    the second, ``delay * backoff`` before the third, and so on (at most ``max_delay``), each wait
    varied by up to ``jitter`` (a fraction) so that retries of many jobs do not arrive together.

    ``on`` says which failures are retried: exception classes (an attempt that raised an instance
    of one), and for process and pod tasks exit codes (ints) and reasons (``"timeout"``,
    ``"Evicted"``, ``"OOMKilled"``, ``"launch-error"``). The default retries every exception and,
    for processes and pods, every failure. A job killed by hand (``kill``) is never retried.
    """

    attempts: int = 3
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.1
    on: tuple[Any, ...] = field(default=(Exception,))

    def __init__(
        self,
        attempts: int = 3,
        delay: float = 1.0,
        backoff: float = 2.0,
        max_delay: float = 300.0,
        jitter: float = 0.1,
        on: Iterable[Any] | type[BaseException] | int | str = (Exception,),
    ):
        if not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"Retry(attempts=...) must be a whole number >= 1, not {attempts!r}")
        for name, value in (("delay", delay), ("backoff", backoff), ("max_delay", max_delay), ("jitter", jitter)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"Retry({name}=...) must be a number >= 0, not {value!r}")
        if isinstance(on, (type, int, str)):
            on = (on,)
        on = tuple(on)
        for item in on:
            ok = (isinstance(item, type) and issubclass(item, BaseException)) or isinstance(item, (int, str))
            if not ok or isinstance(item, bool):
                raise TypeError(
                    f"Retry(on=...) takes exception classes, exit codes (int) and reasons (str), not {item!r}"
                )
        object.__setattr__(self, "attempts", attempts)
        object.__setattr__(self, "delay", float(delay))
        object.__setattr__(self, "backoff", float(backoff))
        object.__setattr__(self, "max_delay", float(max_delay))
        object.__setattr__(self, "jitter", float(jitter))
        object.__setattr__(self, "on", on)

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2 for the first retry)."""
        base = min(self.delay * self.backoff ** max(0, attempt - 2), self.max_delay)
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def applies(self, record: JobRecord, exc: BaseException | None = None) -> bool:
        """Whether this failure is one the policy retries (ignoring the attempt count)."""
        if record.outcome is Outcome.KILLED or record.succeeded:
            return False
        for item in self.on:
            if isinstance(item, type):
                if exc is not None and isinstance(exc, item):
                    return True
                if exc is None and record.error_type is None and item in (Exception, BaseException):
                    return True  # a process or pod failure: "every failure" by default
            elif isinstance(item, int):
                if record.exit_code == item:
                    return True
            elif _reason_matches(item, record):
                return True
        return False

    def schedule(self, record: JobRecord, exc: BaseException | None, now: datetime) -> JobRecord:
        """Set ``record.retry_at`` when another attempt is due under this policy."""
        if record.attempt < self.attempts and self.applies(record, exc):
            record.retry_at = now + timedelta(seconds=self.wait_before(record.attempt + 1))
        return record


def _reason_matches(reason: str, record: JobRecord) -> bool:
    if reason == "timeout":
        return record.outcome is Outcome.TIMEOUT
    if reason == "launch-error":
        return record.outcome is Outcome.LAUNCH_ERROR
    texts = [record.reason or "", str(record.extra.get("pod_reason") or ""), str(record.extra.get("phase") or "")]
    return any(reason == t or reason in t.split() for t in texts if t)
