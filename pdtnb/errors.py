"""The exceptions pdtnb raises on purpose.

Every error a user can cause by bad input derives from :class:`PdtnbError`, and its message names the
thing at fault (the job id, the repository, the file, the task, the resource), so that a pipeline
operator can act on a one-line message without reading a traceback. Each one also derives from the
built-in exception a pydatatask user would have caught before (``ValueError``, ``KeyError``...), so
ported ``except`` clauses keep working.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "one_line",
    "PdtnbError",
    "InvalidJobIdError",
    "JobLaunchError",
    "SessionClosedError",
    "MetadataParseError",
    "TaskConfigError",
    "PipelineStateError",
    "UnknownNameError",
    "SSHConnectionError",
    "KubeConnectionError",
    "StorageFaultError",
    "STORAGE_ERRNOS",
    "storage_fault",
    "short_job_id",
]


class PdtnbError(Exception):
    """Base class of every error pdtnb raises deliberately."""


def short_job_id(job: str, limit: int = 100) -> str:
    """``repr(job)``, cut in the middle past ``limit`` characters: messages name a job id without
    echoing a hostile 10,000-character one in full."""
    if len(job) <= limit:
        return repr(job)
    return f"{job[: limit - 20]!r}...{job[-10:]!r} ({len(job)} characters)"


class InvalidJobIdError(PdtnbError, ValueError):
    """A job id that the repository's character set does not allow was used on a write path."""

    def __init__(self, job: object, where: object, max_length: int = 200) -> None:
        self.job = job
        self.where = where
        shown = short_job_id(job) if isinstance(job, str) else repr(job)
        super().__init__(
            f"invalid job id {shown} for {where}: a job id is 1 to {max_length} characters from the "
            "repository's CHARSET (letters and digits by default), starting and ending with a "
            "CHARSET_START_END character"
        )


class JobLaunchError(PdtnbError):
    """Launching a job by hand raised: the job's failure (recorded as ``launch-error`` when the
    task has a done repository), not a mistake in the command. ``__cause__`` is the exception."""

    def __init__(self, task: str, job: str, cause: BaseException) -> None:
        self.task = task
        self.job = job
        first = (str(cause).strip().splitlines() or [""])[0]
        super().__init__(
            f"{task} {job if len(job) <= 100 else short_job_id(job)} failed to launch: {type(cause).__name__}"
            + (f": {first}" if first else "")
        )


class SessionClosedError(PdtnbError, RuntimeError):
    """A session resource was requested while its session is not open."""


class MetadataParseError(PdtnbError, ValueError):
    """A stored metadata value (YAML or JSON) could not be parsed."""


class TaskConfigError(PdtnbError, ValueError):
    """A task is misconfigured; raised when the pipeline validates its tasks on open."""


class PipelineStateError(PdtnbError, RuntimeError):
    """The pipeline was used in a state that does not allow the operation (for example not opened)."""


class UnknownNameError(PdtnbError, KeyError):
    """A task, link or repository name given by the user does not exist in the pipeline."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class SSHConnectionError(PdtnbError, ConnectionError):
    """An SSH connection could not be opened: unreachable host, refused login, unknown host key or
    timeout. The message names ``host:port``."""


class KubeConnectionError(PdtnbError, ConnectionError):
    """The Kubernetes API server could not be reached, or no kube config could be loaded. The message
    names the server (its URL) and what pdtnb was doing."""


#: The errnos that say the storage failed, not the job: disk full, quota exceeded, read-only file
#: system, I/O error.
STORAGE_ERRNOS = frozenset(
    code for code in (_errno.ENOSPC, getattr(_errno, "EDQUOT", None), _errno.EROFS, _errno.EIO) if code is not None
)


class StorageFaultError(PdtnbError, OSError):
    """The storage under the pipeline cannot take writes: disk full, quota, read-only, I/O error.

    A job that meets one (its body, or the writing of its record) is not recorded as failed, since
    the environment failed, not the job: it stays ready, and ``run`` stops launching and raises
    this error, whose one-line message names the errno and the path, for example ``no space left
    on device (ENOSPC) writing /data/done/j3.yaml; nothing was lost: stage2 j3 stays ready``.
    ``errno``, ``strerror`` and ``filename`` are those of the ``OSError`` it was made from (its
    ``__cause__``); ``filename`` is None when that error named no file.
    """

    errno: int  # always set: the constructor takes the code

    def __init__(self, code: int, filename: str | None = None, note: str | None = None) -> None:
        strerror = os.strerror(code)
        if filename is None:
            super().__init__(code, strerror)
        else:
            super().__init__(code, strerror, filename)
        self.note = note
        name = _errno.errorcode.get(code, f"errno {code}")
        where = f" writing {filename}" if filename is not None else " (the error names no file)"
        self.message = f"{strerror[:1].lower()}{strerror[1:]} ({name}){where}" + (f"; {note}" if note else "")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[StorageFaultError], tuple[int, str | None, str | None]]:
        return (type(self), (self.errno, self.filename, self.note))


def storage_fault(exc: BaseException, note: str | None = None, depth: int = 3) -> StorageFaultError | None:
    """The :class:`StorageFaultError` to raise for ``exc`` when it is, or wraps (through
    ``__cause__`` or ``__context__``, up to ``depth`` levels), an ``OSError`` whose errno is in
    ``STORAGE_ERRNOS`` (ENOSPC, EDQUOT, EROFS, EIO); None for any other exception. ``note`` ends
    the message (what became of the job). A StorageFaultError is returned as it is (with ``note``
    if it had none)."""
    seen: set[int] = set()
    todo: list[tuple[BaseException, int]] = [(exc, 0)]
    while todo:
        current, level = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, StorageFaultError):
            if note and not current.note:
                fault = StorageFaultError(current.errno, current.filename, note)
                fault.__cause__ = current.__cause__
                return fault
            return current
        if isinstance(current, OSError) and current.errno is not None and current.errno in STORAGE_ERRNOS:
            filename = current.filename
            fault = StorageFaultError(current.errno, None if filename is None else os.fsdecode(filename), note)
            fault.__cause__ = current
            return fault
        if level < depth:
            for inner in (current.__cause__, current.__context__):
                if inner is not None:
                    todo.append((inner, level + 1))
    return None


def one_line(exc: BaseException) -> str:
    """An exception as the one line every front end prints: its message with whitespace folded
    (a KeyError's key without the quotes str() adds), or its type's name when it has none."""
    text = str(exc) if not isinstance(exc, KeyError) or not exc.args else str(exc.args[0])
    return " ".join(text.split()) or type(exc).__name__
