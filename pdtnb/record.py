"""The job record: what a task's ``done`` repository holds for each finished attempt of a job.

Every task kind (in-process, executor, process, Kubernetes) builds its record here and every
reader (status, ``failed``, ``show``, ``why``, the live table) reads it here, so a record means
the same thing wherever it is written or shown. :class:`JobRecord` is the one typed form;
:meth:`JobRecord.to_dict` is the one writer's format and :meth:`JobRecord.from_dict` the one
reader, which also understands the records of pydatatask 0.4.7 (``success``, ``return_code``,
``exception`` as a formatted traceback) and of earlier pdtnb releases (``result: exception``).

Every field is bounded (:data:`LIMITS`), whoever filled it: :meth:`JobRecord.to_dict`, the one
writer, cuts the message, reason, traceback, tails, frames, ``fingerprint_parts``, ``extra`` (its
strings, and the size of its nested values as a whole) and each ``history`` entry, marking what it
cut. A whole record is then at most a few hundred kilobytes, whatever happened (MongoDB refuses a
document over 16 MB): a 20 MiB exception message or a file name that is not UTF-8 must not cost
the record that explains them.
"""

from __future__ import annotations

import enum
import os
import socket
import sys
import traceback as _tb
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .fingerprint import Fingerprint, parts_of

__all__ = [
    "Outcome",
    "Frame",
    "JobRecord",
    "LIMITS",
    "record_from_exception",
    "read_record",
    "is_failure_record",
    "tail_text",
    "as_time",
]

#: Upper bounds, in characters, of a record's text fields (and of the number of frames kept).
#: ``field``: host and error type; ``extra``: each string of ``extra`` (``extra_total``: all of
#: ``extra``, nested values included); ``history_entry``: each earlier attempt's summary;
#: ``fingerprint_parts``: the number of parts kept. A text already cut keeps its
#: ``[... N more characters cut]`` note: :meth:`JobRecord.to_dict` does not cut it again.
LIMITS = {
    "message": 2000,
    "traceback": 16000,
    "tail": 4096,
    "reason": 2000,
    "frames": 40,
    "history": 10,
    "field": 500,
    "extra": 4000,
    "extra_total": 64000,
    "history_entry": 16000,
    "fingerprint_parts": 500,
}

#: Room for the note a cut text ends with, so that bounding a record twice changes nothing.
_NOTE_ROOM = 100
#: How deep and how wide nested values of ``extra`` and ``history`` are kept.
_MAX_DEPTH = 6
_MAX_ITEMS = 100

_UTC = timezone.utc
_HOST = sys.intern(socket.gethostname())
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


class Outcome(str, enum.Enum):
    """How an attempt of a job ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    KILLED = "killed"
    LAUNCH_ERROR = "launch-error"

    def __str__(self) -> str:
        return self.value


# What earlier writers put under ``result`` for a failure.
_LEGACY_FAILURES = frozenset({"exception", "failure", "failed", "error"})

# The text fields of a record and their bounds (0: not text, kept as it is).
_TEXT_FIELDS = (
    ("exit_code", 0),
    ("error_type", LIMITS["field"]),
    ("message", LIMITS["message"]),
    ("reason", LIMITS["reason"]),
    ("retry_at", 0),
)


def clean_text(text: str, limit: int | None = None) -> str:
    """``text`` made safe for any store: encodable as UTF-8 (undecodable bytes of file names are
    shown as ``\\x..`` escapes instead of aborting the write), without trailing blanks on its
    lines (so YAML can show it as a block), and cut to ``limit`` characters, saying so."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:  # undecodable bytes of a file name (os.listdir's surrogateescape), shown as \xNN
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\n" in text:
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    if limit is not None and len(text) > limit:
        cut = len(text) - limit
        text = text[:limit] + f"\n[... {cut} more characters cut]"
    return text


def bounded_text(value: Any, limit: int) -> Any:
    """``value`` cut to ``limit`` characters (see :func:`clean_text`) when it is a longer string,
    unless it is within the room of an earlier cut's note; anything else unchanged."""
    if isinstance(value, str) and len(value) > limit + _NOTE_ROOM:
        return clean_text(value, limit)
    return value


def bounded_tail(value: Any, limit: int = LIMITS["tail"]) -> Any:
    """An output tail (a string) longer than ``limit`` cut to its last ``limit`` characters."""
    if isinstance(value, str) and len(value) > limit + _NOTE_ROOM:
        return f"[... {len(value) - limit} earlier characters cut]\n" + clean_text(value[-limit:])
    return value


class _Budget:
    """What is left of the characters a nested value may still use."""

    __slots__ = ("left",)

    def __init__(self, left: int):
        self.left = left


def bounded_value(value: Any, limit: int, budget: _Budget, depth: int = 0) -> Any:
    """``value`` (a part of ``extra`` or a history entry) with every string cut to ``limit``, at
    most ``_MAX_ITEMS`` entries per mapping or list and ``_MAX_DEPTH`` levels; once ``budget``
    characters are spent, strings are cut to 200 characters and nested values replaced by a note,
    so the whole stays within about the budget plus 200 characters per key. What is cut is marked.
    Scalars and unknown objects are kept as they are."""
    if isinstance(value, str):
        value = bounded_text(value, max(200, min(limit, budget.left)))
        budget.left -= len(value)
        return value
    if isinstance(value, (bytes, bytearray)):
        room = max(200, min(limit, budget.left))
        if len(value) > room:
            value = f"[{len(value)} bytes, cut to their first {room}] " + clean_text(repr(bytes(value[:room])))
        budget.left -= len(value)
        return value
    if isinstance(value, dict):
        if depth >= _MAX_DEPTH or budget.left <= 0:
            budget.left -= 50
            return f"[a mapping of {len(value)} entries, cut]"
        out: dict[Any, Any] = {}
        for i, (key, item) in enumerate(value.items()):
            # Every key is kept (up to _MAX_ITEMS): once the budget is spent, values are cut short
            # (strings to 200 characters, nested values to a note), so small fields survive.
            if i >= _MAX_ITEMS:
                out["..."] = f"[{len(value) - i} more entries cut]"
                break
            key = bounded_text(key, 200)
            budget.left -= len(key) if isinstance(key, str) else 8
            out[key] = bounded_value(item, limit, budget, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        if depth >= _MAX_DEPTH or budget.left <= 0:
            budget.left -= 50
            return f"[a list of {len(value)} items, cut]"
        items: list[Any] = []
        for i, item in enumerate(value):
            if i >= _MAX_ITEMS or budget.left <= 0:
                items.append(f"[{len(value) - i} more items cut]")
                break
            items.append(bounded_value(item, limit, budget, depth + 1))
        return items if isinstance(value, list) else tuple(items)
    budget.left -= 16
    return value


def bounded_parts(parts: dict[str, str]) -> dict[str, str]:
    """``fingerprint_parts`` with at most ``LIMITS["fingerprint_parts"]`` entries of bounded
    names and hashes (a body reaching more functions of its module keeps the first ones; the
    digest still covers them all)."""
    limit = LIMITS["fingerprint_parts"]
    if len(parts) <= limit and all(len(k) <= 300 and len(v) <= 300 for k, v in parts.items()):
        return dict(parts)
    out: dict[str, str] = {}
    for key, value in parts.items():
        if len(out) >= limit:
            break
        out[clean_text(str(key), 200)] = clean_text(str(value), 200)
    return out


def tail_text(data: bytes | str | None, limit: int = LIMITS["tail"]) -> str | None:
    """The last ``limit`` bytes of an output stream as text (None for no output at all)."""
    if data is None:
        return None
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if not data:
        return ""
    head = ""
    if len(data) > limit:
        head = f"[... {len(data) - limit} earlier bytes cut]\n"
        data = data[-limit:]
    return head + clean_text(data.decode("utf-8", "replace"))


@dataclass
class Frame:
    """One frame of a failure's traceback. ``user`` marks frames of the user's code (not pdtnb's,
    asyncio's or the standard library's), which ``show`` puts first."""

    file: str
    line: int
    function: str
    code: str = ""
    user: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": bounded_text(self.file, 500),
            "line": self.line,
            "function": bounded_text(self.function, 200),
            "code": bounded_text(self.code, 500),
            "user": self.user,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Frame | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                file=str(data.get("file", "?")),
                line=int(data.get("line") or 0),
                function=str(data.get("function", "?")),
                code=str(data.get("code") or ""),
                user=bool(data.get("user", True)),
            )
        except (TypeError, ValueError):
            return None


_PDTNB_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_LIB_DIRS = tuple(
    {
        os.path.dirname(os.__file__) + os.sep,
        *(p + os.sep for p in sys.path if p.endswith(("site-packages", "dist-packages"))),
    }
)


def is_user_file(filename: str) -> bool:
    """Whether a traceback frame's file is the user's code (not pdtnb, the standard library or an
    installed package). A notebook cell (``<ipython-input-...>`` or ipykernel's temporary files) is
    the user's."""
    path = os.path.abspath(filename) if not filename.startswith("<") else filename
    if path.startswith(_PDTNB_DIR) and os.sep + "tests" + os.sep not in path:
        return False
    return not path.startswith(_LIB_DIRS)


def _frames(exc: BaseException) -> list[Frame]:
    frames = [
        Frame(
            file=clean_text(fs.filename, 500),
            line=fs.lineno or 0,
            function=clean_text(fs.name, 200),
            code=clean_text((fs.line or "").strip(), 500),
            user=is_user_file(fs.filename),
        )
        for fs in _tb.extract_tb(exc.__traceback__)
    ]
    return _kept_frames(frames)


def _kept_frames(frames: list[Frame]) -> list[Frame]:
    """At most ``LIMITS["frames"]`` frames: the outermost few and the innermost (where it failed)."""
    limit = LIMITS["frames"]
    return frames if len(frames) <= limit else frames[:5] + frames[-(limit - 5) :]


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        try:
            return repr(exc)
        except Exception:
            return f"<{type(exc).__name__} whose str() and repr() raise>"


def _format_traceback(exc: BaseException) -> str:
    try:
        text = "".join(_tb.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # a __str__ that raises inside the formatter
        text = "".join(_tb.format_tb(exc.__traceback__)) + f"{type(exc).__name__}: {_safe_str(exc)}\n"
    return clean_text(text.rstrip("\n"), LIMITS["traceback"])


def as_time(value: Any) -> datetime | None:
    """A stored time (a datetime, naive meaning UTC, or an ISO 8601 string, ``Z`` allowed) as an
    aware datetime; None for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
    if isinstance(value, str):
        try:
            return as_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


@dataclass
class JobRecord:
    """One attempt of one job, as recorded in the task's ``done`` repository.

    ``extra`` holds what only one task kind records (a pod's ``phase``, ``image`` and ``node``; a
    process's ``timed_out``); it is written beside the common fields and read back into ``extra``.
    ``history`` is the records of the earlier attempts (most recent last, at most
    ``LIMITS["history"]``), each without a history of its own.
    """

    outcome: Outcome
    attempt: int = 1
    start_time: datetime | None = None
    end_time: datetime | None = None
    host: str | None = None
    error_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    frames: list[Frame] = field(default_factory=list)
    exit_code: int | None = None
    reason: str | None = None
    stdout_tail: str | None = None
    stderr_tail: str | None = None
    retry_at: datetime | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: The digest of what produced the attempt (:mod:`pdtnb.fingerprint`); None: not known.
    fingerprint: str | None = None
    #: The hash of each part of that fingerprint, by part name (what ``why`` compares).
    fingerprint_parts: dict[str, str] = field(default_factory=dict)

    # ---- verdicts ----------------------------------------------------------------------------

    @property
    def succeeded(self) -> bool:
        """Whether the attempt succeeded."""
        return self.outcome is Outcome.SUCCESS

    @property
    def failed(self) -> bool:
        """Whether the attempt failed (any outcome but success)."""
        return self.outcome is not Outcome.SUCCESS

    @property
    def retrying(self) -> bool:
        """Whether another attempt is scheduled (``retry_at`` is set on a failed attempt)."""
        return self.failed and self.retry_at is not None

    def reason_line(self) -> str:
        """One line saying why the attempt failed: the exception's last line, or the exit code and
        the last line of output, or the recorded reason (first, for a timeout or a kill)."""
        if self.succeeded:
            return "succeeded"
        if self.error_type:
            first = (self.message or "").strip().splitlines()
            text = f"{self.error_type}: {first[0]}" if first else self.error_type
        elif self.exit_code is not None:
            text = f"exit code {self.exit_code}"
            if self.reason and self.outcome is Outcome.FAILURE and len(self.reason) <= 40:
                text += f" ({self.reason})"  # a pod's reason: OOMKilled, Evicted, Error
            last = _last_line(self.stderr_tail) or _last_line(self.stdout_tail)
            if last and self.outcome not in (Outcome.TIMEOUT, Outcome.KILLED):
                text += f": {last}"
        else:
            text = ""
        if self.reason and self.outcome in (Outcome.TIMEOUT, Outcome.KILLED):
            text = f"{self.reason} ({text})" if text else self.reason
        elif self.reason and not text:
            text = self.reason
        if not text:
            text = str(self.outcome)
        return clean_text(text.replace("\n", " "), 300)

    # ---- the writer --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The stored form: plain data any metadata repository holds (``result`` is the outcome,
        under the key pydatatask 0.4.7's function tasks use). Every field is bounded
        (:data:`LIMITS`), however the record was filled."""
        data: dict[str, Any] = {
            "result": self.outcome.value,
            "attempt": self.attempt,
            "start_time": self.start_time,
            "end_time": self.end_time,
        }
        if self.host:
            data["host"] = bounded_text(self.host, LIMITS["field"])
        for key, limit in _TEXT_FIELDS:
            value = getattr(self, key)
            if value is not None:
                data[key] = bounded_text(value, limit) if limit else value
        if self.exit_code is not None:
            data["return_code"] = self.exit_code  # pydatatask's name
        if self.traceback is not None:
            data["traceback"] = bounded_text(self.traceback, LIMITS["traceback"])
        if self.frames:
            data["frames"] = [f.to_dict() for f in _kept_frames(self.frames)]
        for key in ("stdout_tail", "stderr_tail"):
            value = getattr(self, key)
            if value:
                data[key] = bounded_tail(value)
        if self.fingerprint:  # "": known to be unknown (a job launched by code that kept none)
            data["fingerprint"] = bounded_text(self.fingerprint, LIMITS["field"])
            if self.fingerprint_parts:
                data["fingerprint_parts"] = bounded_parts(self.fingerprint_parts)
        if self.extra:
            _add_extra(data, self.extra)
        if self.history:
            data["history"] = [
                bounded_value(entry, LIMITS["reason"], _Budget(LIMITS["history_entry"]))
                for entry in self.history[-LIMITS["history"] :]
            ]
        return data

    def summary(self) -> dict[str, Any]:
        """The record as one entry of a later attempt's history (no frames, tails or history)."""
        data = self.to_dict()
        for key in ("frames", "history", "traceback", "stdout_tail", "stderr_tail", "return_code", "fingerprint_parts"):
            data.pop(key, None)
        return data

    # ---- the reader --------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any) -> JobRecord:
        """Read a stored record of any writer (this one, earlier pdtnb, pydatatask 0.4.7).

        A value that is not a mapping is a record nobody wrote correctly: it reads as a failure
        whose reason says so, so that the job is neither counted as done nor launched again
        silently.
        """
        if not isinstance(data, dict):
            return cls(outcome=Outcome.FAILURE, reason=f"unreadable record: {clean_text(repr(data), 200)}")
        outcome = _outcome_of(data)
        exit_code = data.get("exit_code", data.get("return_code"))
        if not isinstance(exit_code, int) or isinstance(exit_code, bool):
            exit_code = None
        error_type = data.get("error_type")
        message = data.get("message")
        tb = data.get("traceback")
        if isinstance(tb, list):  # pydatatask 0.4.7: traceback.format_tb's list of strings
            tb = "".join(str(line) for line in tb).rstrip("\n")
        legacy_exception = data.get("exception")
        if error_type is None and isinstance(legacy_exception, str) and outcome is not Outcome.SUCCESS:
            error_type, message, tb = _parse_legacy_exception(legacy_exception, message, tb)
        frames = [f for f in (Frame.from_dict(x) for x in data.get("frames") or []) if f is not None]
        known = {
            "result",
            "attempt",
            "start_time",
            "end_time",
            "host",
            "exit_code",
            "return_code",
            "error_type",
            "message",
            "reason",
            "retry_at",
            "traceback",
            "frames",
            "stdout_tail",
            "stderr_tail",
            "history",
            "exception",
            "fingerprint",
            "fingerprint_parts",
        }
        attempt = data.get("attempt")
        history = data.get("history")
        return cls(
            outcome=outcome,
            attempt=attempt if isinstance(attempt, int) and attempt > 0 else 1,
            start_time=as_time(data.get("start_time")),
            end_time=as_time(data.get("end_time")),
            host=data.get("host") if isinstance(data.get("host"), str) else None,
            error_type=error_type if isinstance(error_type, str) else None,
            message=str(message) if message is not None else None,
            traceback=str(tb) if tb is not None else None,
            frames=frames,
            exit_code=exit_code,
            reason=str(data["reason"]) if data.get("reason") is not None else None,
            stdout_tail=data.get("stdout_tail") if isinstance(data.get("stdout_tail"), str) else None,
            stderr_tail=data.get("stderr_tail") if isinstance(data.get("stderr_tail"), str) else None,
            retry_at=as_time(data.get("retry_at")),
            history=[h for h in history if isinstance(h, dict)] if isinstance(history, list) else [],
            extra={k: v for k, v in data.items() if k not in known},
            fingerprint=_fingerprint_of(data),
            fingerprint_parts=_parts_of(data),
        )


def _add_extra(data: dict[str, Any], extra: dict[str, Any]) -> None:
    """Add a record's ``extra`` fields to its stored form ``data``: at most ``_MAX_ITEMS`` of them
    (a marker says how many were cut), within one shared size budget, and never over a key the
    record itself wrote, so that no extra field can pass for the outcome or the attempt."""
    budget = _Budget(LIMITS["extra_total"])
    for i, (key, value) in enumerate(extra.items()):
        if i >= _MAX_ITEMS:
            data.setdefault("extra_cut", f"[{len(extra) - i} more fields cut]")
            break
        if key not in data:
            data[bounded_text(key, 200)] = bounded_value(value, LIMITS["extra"], budget)


def _fingerprint_of(data: dict[str, Any]) -> str | None:
    value = data.get("fingerprint")
    return value if isinstance(value, str) and value else None


def _parts_of(data: dict[str, Any]) -> dict[str, str]:
    parts = data.get("fingerprint_parts")
    if isinstance(parts, dict):
        return {str(k): str(v) for k, v in parts.items()}
    digest = _fingerprint_of(data)
    known = parts_of(digest) if digest is not None else None  # a compact in-memory record's
    return dict(known) if known else {}


def _outcome_of(data: dict[str, Any]) -> Outcome:
    result = data.get("result")
    if isinstance(result, str):
        if result == "failure" and data.get("timed_out"):  # earlier pdtnb process records
            return Outcome.TIMEOUT
        try:
            return Outcome(result)
        except ValueError:
            if result in _LEGACY_FAILURES:
                return Outcome.TIMEOUT if data.get("timed_out") else Outcome.FAILURE
    if data.get("success") is False:  # some writers' flag
        return Outcome.FAILURE
    if data.get("success") is True:
        return Outcome.SUCCESS
    code = data.get("exit_code", data.get("return_code"))
    if isinstance(code, int) and not isinstance(code, bool):
        return Outcome.SUCCESS if code == 0 else Outcome.FAILURE
    if "exception" in data:  # an old failure record without result
        return Outcome.FAILURE
    if data.get("phase") == "Failed":  # earlier pdtnb pod records
        return Outcome.FAILURE
    reason = data.get("reason")
    if "image" in data and "node" in data and isinstance(reason, str):  # pydatatask 0.4.7's pod records
        if reason == "Timeout":
            return Outcome.TIMEOUT
        return Outcome.SUCCESS if reason == "Succeeded" else Outcome.FAILURE
    return Outcome.SUCCESS


def _parse_legacy_exception(text: str, message: Any, tb: Any) -> tuple[str | None, Any, Any]:
    """Earlier writers stored ``repr(exc)`` (pdtnb) or a formatted traceback (pydatatask)."""
    text = text.strip()
    if text.startswith("Traceback"):
        last = text.splitlines()[-1] if text else ""
        etype, _, msg = last.partition(":")
        return etype.strip() or None, msg.strip() if message is None else message, text if tb is None else tb
    etype, paren, rest = text.partition("(")
    if paren and etype.isidentifier():
        inner = rest[:-1] if rest.endswith(")") else rest
        if len(inner) >= 2 and inner[0] in "'\"" and inner[-1] == inner[0]:
            inner = inner[1:-1]
        return etype, inner if message is None else message, tb
    return None, text if message is None else message, tb


def record_from_exception(
    exc: BaseException,
    start_time: datetime | None = None,
    *,
    outcome: Outcome = Outcome.FAILURE,
    attempt: int = 1,
    host: str | None = None,
    end_time: datetime | None = None,
) -> JobRecord:
    """The record of an attempt that raised ``exc`` (any exception, ``SystemExit`` included)."""
    return JobRecord(
        outcome=outcome,
        attempt=attempt,
        start_time=start_time,
        end_time=end_time or datetime.now(_UTC),
        host=host or _HOST,
        error_type=type(exc).__qualname__
        if type(exc).__module__ in ("builtins", "__main__")
        else f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=clean_text(_safe_str(exc), LIMITS["message"]),
        traceback=_format_traceback(exc),
        frames=_frames(exc),
    )


def _last_line(text: str | None) -> str:
    if not text:
        return ""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def read_record(value: Any) -> JobRecord:
    """:meth:`JobRecord.from_dict`, as a function."""
    return JobRecord.from_dict(value)


def is_failure_record(value: Any) -> bool:
    """Whether a stored ``done`` value describes a failed attempt (fast for the common success)."""
    if type(value) is dict:
        result = value.get("result")
        if result == "success":
            return False
        if result is not None and result in _FAILURE_RESULTS:
            return True
    return JobRecord.from_dict(value).failed


_FAILURE_RESULTS = frozenset({o.value for o in Outcome if o is not Outcome.SUCCESS}) | _LEGACY_FAILURES


def host_name() -> str:
    """This machine's name, as records of jobs run here give it."""
    return _HOST


def success_dict(
    start: datetime | None,
    end: datetime | None,
    attempt: int = 1,
    host: str | None = None,
    fingerprint: Fingerprint | None = None,
) -> dict[str, Any]:
    """``JobRecord(outcome=SUCCESS, ...).to_dict()``, built directly: the per-job hot path of
    in-process pipelines writes millions of these."""
    data = {
        "result": "success",
        "attempt": attempt,
        "start_time": start,
        "end_time": end,
        "host": host or _HOST,
    }
    if fingerprint is not None:
        data["fingerprint"] = fingerprint.digest
        data["fingerprint_parts"] = _parts_dict(fingerprint.parts)
    return data


def _parts_dict(parts: Any) -> dict[str, str]:
    """A fingerprint's parts as stored: all of them, unless there are more than the limit."""
    return dict(parts) if len(parts) <= LIMITS["fingerprint_parts"] else bounded_parts(dict(parts))


def time_from_ns(ns: int) -> datetime:
    """The aware UTC datetime of ``ns`` nanoseconds since the epoch (``time.time_ns()``), cut to
    whole microseconds: for the same clock reading, exactly what ``datetime.now(timezone.utc)``
    gives (both floor the system clock to the microsecond)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def success_dict_ns(start_ns: int, end_ns: int, fingerprint: Fingerprint | str | None = None) -> dict[str, Any]:
    """:func:`success_dict` of a first attempt on this host, from ``time.time_ns()`` readings
    (``fingerprint`` may be given by its digest alone, when this process combined it)."""
    data = {
        "result": "success",
        "attempt": 1,
        "start_time": _EPOCH + timedelta(microseconds=start_ns // 1000),
        "end_time": _EPOCH + timedelta(microseconds=end_ns // 1000),
        "host": _HOST,
    }
    if fingerprint is not None:
        if isinstance(fingerprint, str):
            data["fingerprint"] = fingerprint
            parts = parts_of(fingerprint)
            if parts:
                data["fingerprint_parts"] = _parts_dict(parts)
        else:
            data["fingerprint"] = fingerprint.digest
            data["fingerprint_parts"] = _parts_dict(fingerprint.parts)
    return data
