"""Repositories held in a Python dict, for tests, notebooks and small pipelines.

The dict is public as ``.data`` so a notebook user can look inside or fill it directly. Because
of that, listing cannot trust that every key went through :meth:`dump`; it re-checks only the
keys it has not seen before, which keeps a listing of 100,000 jobs to a few set operations.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from collections.abc import Set as AbstractSet
from typing import Any

from ..streams import AReadText, AWriteText, CommitOnExit
from .base import _VALID_IDS, BlobRepository, MetadataRepository, Repository, check_mode

__all__ = ["InProcessMetadataRepository", "InProcessBlobRepository", "InProcessBlobStream", "JobDict"]


class JobDict(dict):
    """The dict of an in-process repository that was not given one.

    It keeps a version number and a log of the keys changed at each version, so that a status
    table can ask "what changed since I last looked?" and redo only that work
    (:meth:`Repository.changes_since`), and it notes when keys are added directly
    (``repo.data[k] = v``, ``update``...), so that a listing re-checks the keys only after such a
    change. Writes through the repository are checked as they happen.
    """

    #: How many changes the log remembers; a reader further behind recomputes from scratch.
    LOG_LIMIT = 1 << 16

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.direct_writes = True
        self.version = 0
        self.log_base = 0  # log[i] is the key changed at version log_base + i + 1
        self.log: list[str] = []

    def note(self, key: str) -> None:
        """Record that ``key`` changed."""
        self.version += 1
        self.log.append(key)
        if len(self.log) > 2 * self.LOG_LIMIT:
            self.trim()

    def trim(self) -> None:
        """Forget the oldest half of the log."""
        del self.log[: self.LOG_LIMIT]
        self.log_base += self.LOG_LIMIT

    def changes_since(self, version: int) -> set[str] | None:
        """The keys changed after ``version``, or None when the log no longer reaches back."""
        if version == self.version:
            return set()
        if version < self.log_base or version > self.version:
            return None
        return set(self.log[version - self.log_base :])

    def _forget(self) -> None:
        self.version += 1
        self.log.clear()
        self.log_base = self.version

    def __setitem__(self, key: str, value: Any) -> None:
        self.direct_writes = True
        super().__setitem__(key, value)
        self.note(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.note(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.note(key)
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self.note(key)
        return key, value

    def clear(self) -> None:
        super().clear()
        self._forget()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.direct_writes = True
        other = dict(*args, **kwargs)
        super().update(other)
        for key in other:
            self.note(key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.direct_writes = True
            super().__setitem__(key, default)
            self.note(key)
        return self[key]

    def __ior__(self, other: Any) -> JobDict:
        self.update(other)
        return self

    def __reduce__(self) -> Any:
        return (JobDict, (dict(self),))


_dict_setitem = dict.__setitem__
_dict_pop = dict.pop
_LOG_TRIM = 2 * JobDict.LOG_LIMIT


class _DictListing(Repository):
    """Listing, deletion and change tracking shared by the dict-backed repositories."""

    data: dict[str, Any]

    def _store(self, job: str, value: Any) -> None:
        """Store a value whose job id was checked, without flagging a direct write."""
        data = self.data
        if type(data) is JobDict:
            _dict_setitem(data, job, value)
            data.note(job)
        else:
            data[job] = value

    def change_token(self) -> tuple[int, int] | None:
        data = self.data
        return (id(data), data.version) if type(data) is JobDict else None

    def changes_since(self, token: Any) -> set[str] | None:
        data = self.data
        if type(data) is not JobDict or not isinstance(token, tuple) or token[0] != id(data):
            return None
        return data.changes_since(token[1])

    async def _list_job_ids(self) -> AbstractSet[str]:
        # The keys view is returned as is: job_ids() copies it for callers outside a listing
        # snapshot, and inside one (the scheduler, status) it is only combined or counted.
        data = self.data
        if type(data) is JobDict:
            if not data.direct_writes:
                return data.keys()
            data.direct_writes = False
        if self._all_known_valid(data):
            return data.keys()
        return self._valid_subset(list(data))

    async def unfiltered_iter(self) -> AsyncIterator[str]:
        for job in list(self.data):
            yield job

    async def contains(self, item: str) -> bool:
        return item in self.data and self.is_valid_job_id(item)

    async def delete(self, job: str) -> None:
        data = self.data
        if type(data) is JobDict:
            if job in data:
                _dict_pop(data, job)
                data.note(job)
        else:
            data.pop(job, None)


class InProcessMetadataRepository(_DictListing, MetadataRepository):
    """Metadata in a dict; gone when the process ends."""

    def __init__(self, data: dict[str, Any] | None = None):
        self.data: dict[str, Any] = data if data is not None else JobDict()

    def __repr__(self) -> str:
        return f"<InProcessMetadataRepository {len(self.data)} jobs>"

    async def info(self, job: str) -> Any:
        return self.data.get(job)

    async def info_all(self) -> dict[str, Any]:
        ids = await self.job_ids()
        data = self.data
        if len(ids) == len(data):  # every key is a valid job id (ids is a subset of the keys)
            return dict(data)
        return {job: data[job] for job in ids if job in data}

    async def dump(self, job: str, data: Any) -> None:
        # check_job_id and _store, inlined: this is the innermost call of an in-process pipeline.
        if job not in _VALID_IDS or not self._pdtnb_default_ids:
            self.check_job_id(job)
        store = self.data
        if type(store) is JobDict:
            _dict_setitem(store, job, data)
            store.version += 1  # JobDict.note, inlined
            log = store.log
            log.append(job)
            if len(log) > _LOG_TRIM:
                store.trim()
        else:
            store[job] = data


class InProcessBlobStream(CommitOnExit):
    """A stream over one blob of an :class:`InProcessBlobRepository`; use ``repo.open`` to get one.

    A write stream buffers and stores its blob when closed, so readers never see a partial value.
    """

    def __init__(self, repo: InProcessBlobRepository, job: str, writing: bool = False):
        self.repo = repo
        self.job = job
        self._writing = writing
        if writing:
            self._buf = io.BytesIO()
        else:
            try:
                self._buf = io.BytesIO(repo.data[job])
            except KeyError:
                raise FileNotFoundError(f"{repo}: no blob for job {job!r}") from None
        self._closed = False

    async def read(self, n: int | None = None) -> bytes:
        """Read up to ``n`` bytes (all remaining when None)."""
        return self._buf.read(-1 if n is None else n)

    async def write(self, data: bytes) -> int:
        """Append ``data`` to the blob being written."""
        return self._buf.write(data)

    async def close(self) -> None:
        """Store the written blob (write mode) and release the stream."""
        if not self._closed:
            self._closed = True
            if self._writing:
                self.repo._store(self.job, self._buf.getvalue())

    async def abort(self) -> None:
        """Discard what was written; the previous value, if any, stays."""
        self._closed = True


class InProcessBlobRepository(_DictListing, BlobRepository):
    """Blobs (bytes) in a dict; gone when the process ends."""

    def __init__(self, data: dict[str, bytes] | None = None):
        self.data: dict[str, bytes] = data if data is not None else JobDict()

    def __repr__(self) -> str:
        return f"<InProcessBlobRepository {len(self.data)} jobs>"

    async def info(self, job: str) -> None:
        """An in-memory blob has nothing to put in a template."""
        return None

    async def open(self, job: str, mode: str = "r") -> Any:
        check_mode(mode, self)
        writing = mode.startswith("w")
        if writing:
            self.check_job_id(job)
        stream = InProcessBlobStream(self, job, writing)
        if mode == "r":
            return AReadText(stream)
        if mode == "w":
            return AWriteText(stream)
        return stream
