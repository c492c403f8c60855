"""Repositories held in a Python dict, for tests, notebooks and small pipelines.

The dict is public as ``.data`` so a notebook user can look inside or fill it directly. Because
of that, listing cannot trust that every key went through :meth:`dump`; it re-checks only the
keys it has not seen before, which keeps a listing of 100,000 jobs to a few set operations.

**Compact success records.** A task's ``done`` repository in memory holds one record per job,
and almost all of them say the same thing: the first attempt succeeded, on this host, between
two instants. As a dict with two datetimes that costs about 300 bytes per job and stage (most of
the memory of a million-job pipeline). So when an in-process task records a success in a
repository using the dict it created itself (a :class:`JobDict`), it stores only the two clock
readings, packed into one int, in a pair marked as this module's (``(start_ns << 64 | end_ns,
_COMPACT)``, 112 bytes), via :meth:`InProcessMetadataRepository.record_success_ns`. A pair of
a plain tuple and ints, not an instance of a class of ours, because the garbage collector stops
tracking such a tuple at its first collection, as it does the dicts it replaces: millions of
tracked objects would make every full collection walk them all (a class instance of 64 bytes
cost the million-job run more time in the collector than its memory saved). The marker is a
private ``object()``: no value a caller stores can be mistaken for one.

Nothing outside this module sees that form: every read of a value (``info``, ``info_all``,
``data[job]``, ``data.get``, ``values()``, ``items()``, ``dict(data)``, ``==``, ``repr``,
pickling...) turns it into the very dict :func:`pdtnb.record.success_dict` would have built, and
stores that dict in its place (not a change: the change log and the version stay as they are).
From then on the job holds an ordinary dict, so reads behave exactly as before: reading twice
gives the same object, and a change made to it is kept, as with every value of an in-memory
repository. Reading every record (``info_all``, iterating ``data.items()``) therefore gives the
memory back to dicts. Records written by :meth:`dump` (any value, from any caller) are stored as
given.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, ItemsView, Iterator, ValuesView
from collections.abc import Set as AbstractSet
from typing import Any, Literal, overload

from ..record import success_dict_ns
from ..streams import AReadStream, AReadText, AWriteStream, AWriteText, CommitOnExit
from .base import VALID_ID_CACHE, BlobRepository, MetadataRepository, Repository, check_mode

__all__ = ["InProcessMetadataRepository", "InProcessBlobRepository", "InProcessBlobStream", "JobDict"]


#: The marker of a compact success record ``(start_ns << 64 | end_ns, _COMPACT)``. An ``object()``
#: is not tracked by the garbage collector, so neither is the pair once collected.
_COMPACT: Any = object()


def _is_compact(value: Any) -> bool:
    return type(value) is tuple and 2 <= len(value) <= 3 and value[1] is _COMPACT


def _record_of(value: tuple[Any, ...]) -> dict[str, Any]:
    """The dict of a compact record, as :func:`pdtnb.record.success_dict` builds it (a third
    item is the digest of the task's fingerprint, :mod:`pdtnb.fingerprint`)."""
    packed = value[0]
    return success_dict_ns(packed >> 64, packed & _NS_MASK, value[2] if len(value) == 3 else None)


_NS_MASK = (1 << 64) - 1
_MISSING: Any = object()
_dict_getitem = dict.__getitem__
_dict_get = dict.get
_dict_iter = dict.__iter__
_dict_items = dict.items


class JobDict(dict[str, Any]):
    """The dict of an in-process repository that was not given one.

    It keeps a version number and a log of the keys changed at each version, so that a status
    table can ask "what changed since I last looked?" and redo only that work
    (:meth:`Repository.changes_since`), and it notes when keys are added directly
    (``repo.data[k] = v``, ``update``...), so that a listing re-checks the keys only after such a
    change. Writes through the repository are checked as they happen.

    It may hold success records in a compact form (see the module's docstring); every way of
    reading a value gives the record as a dict.
    """

    __slots__ = ("__dict__", "__weakref__", "compact", "direct_writes", "log", "log_base", "log_cap", "version")

    #: How many changes the log remembers at least; it keeps as many as the dict has keys when
    #: that is more (8 bytes each), so that a reader one round of writes behind (the outcome
    #: index of a million-job pipeline) learns what changed without reading every value. A reader
    #: further behind recomputes from scratch.
    LOG_LIMIT = 1 << 16

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.direct_writes = True
        self.version = 0
        self.log_base = 0  # log[i] is the key changed at version log_base + i + 1
        self.log: list[str] = []
        self.log_cap = 2 * self.LOG_LIMIT  # trim() when the log is longer
        self.compact = False  # whether a compact record may be stored (see _COMPACT)

    def note(self, key: str) -> None:
        """Record that ``key`` changed."""
        self.version += 1
        self.log.append(key)
        if len(self.log) > self.log_cap:
            self.trim()

    def trim(self) -> None:
        """Forget the oldest changes when the log holds more than twice what it keeps: at least
        LOG_LIMIT changes, and as many as the dict has keys."""
        keep = max(self.LOG_LIMIT, len(self))
        cut = len(self.log) - keep
        if cut > keep:
            del self.log[:cut]
            self.log_base += cut
        self.log_cap = 2 * keep

    # ---- compact records ---------------------------------------------------------------------

    def _inflate(self, key: str, packed: tuple[int, Any]) -> dict[str, Any]:
        """Replace the compact record of ``key`` by its dict (the same record: not a change)."""
        record = _record_of(packed)
        _dict_setitem(self, key, record)
        return record

    def inflate_all(self) -> None:
        """Replace every compact record by its dict (before handing out the raw storage)."""
        if self.compact:
            packed = [(k, v) for k, v in _dict_items(self) if type(v) is tuple and _is_compact(v)]
            for key, value in packed:
                _dict_setitem(self, key, _record_of(value))
            self.compact = False

    def __getitem__(self, key: str) -> Any:
        value = _dict_getitem(self, key)
        if type(value) is tuple and _is_compact(value):
            return self._inflate(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = _dict_get(self, key, _MISSING)
        if value is _MISSING:
            return default
        if type(value) is tuple and _is_compact(value):
            return self._inflate(key, value)
        return value

    def __iter__(self) -> Iterator[str]:
        # Defined so that C code copying a dict subclass (dict(d), {**d}, f(**d), other.update(d))
        # reads the values through __getitem__ instead of the raw storage.
        return _dict_iter(self)

    def values(self) -> _JobDictValues:  # type: ignore[override]
        return _JobDictValues(self)

    def items(self) -> _JobDictItems:  # type: ignore[override]
        return _JobDictItems(self)

    def copy(self) -> dict[str, Any]:
        self.inflate_all()
        return dict.copy(self)

    def __eq__(self, other: object) -> bool:
        self.inflate_all()
        if isinstance(other, JobDict):
            other.inflate_all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self.inflate_all()
        if isinstance(other, JobDict):
            other.inflate_all()
        return dict.__ne__(self, other)

    __hash__ = None

    def __repr__(self) -> str:
        self.inflate_all()
        return dict.__repr__(self)

    def __or__(self, other: Any) -> Any:
        self.inflate_all()
        return dict.__or__(self, other)

    def __ror__(self, other: Any) -> Any:
        self.inflate_all()
        return dict.__ror__(self, other)

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
        value = super().pop(key, *default)
        return _record_of(value) if _is_compact(value) else value

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self.note(key)
        return key, _record_of(value) if _is_compact(value) else value

    def clear(self) -> None:
        super().clear()
        self.compact = False
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

    # dict's `|` may widen the key type and an in-place `|=` cannot, so mypy flags any __ior__ of a
    # dict[str, ...] subclass against dict.__or__; this one behaves as dict's own (and notes keys).
    def __ior__(self, other: Any) -> JobDict:  # type: ignore[override]
        self.update(other)
        return self

    def __reduce__(self) -> Any:
        return (JobDict, (dict(self),))


class _JobDictValues(ValuesView[Any]):
    """``JobDict.values()``: a live view, like dict's, giving compact records as dicts."""

    _mapping: JobDict

    def __iter__(self) -> Iterator[Any]:
        data = self._mapping
        for key, value in _dict_items(data):  # replacing a value does not disturb the iteration
            yield data._inflate(key, value) if type(value) is tuple and _is_compact(value) else value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class _JobDictItems(ItemsView[str, Any]):
    """``JobDict.items()``: a live view, like dict's, giving compact records as dicts."""

    _mapping: JobDict

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        data = self._mapping
        for key, value in _dict_items(data):  # replacing a value does not disturb the iteration
            yield key, data._inflate(key, value) if type(value) is tuple and _is_compact(value) else value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


_dict_setitem = dict.__setitem__
_dict_pop = dict.pop


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
        data = self.data
        if type(data) is JobDict:
            value = _dict_get(data, job)
            if type(value) is tuple and _is_compact(value):
                return data._inflate(job, value)
            return value
        return data.get(job)

    async def info_all(self) -> dict[str, Any]:
        ids = await self.job_ids()
        data = self.data
        if type(data) is JobDict:
            data.inflate_all()
            if len(ids) == len(data):
                return dict.copy(data)
            return {job: _dict_getitem(data, job) for job in ids if job in data}
        if len(ids) == len(data):  # every key is a valid job id (ids is a subset of the keys)
            return dict(data)
        return {job: data[job] for job in ids if job in data}

    async def dump(self, job: str, data: Any) -> None:
        # check_job_id and _store, inlined: this is the innermost call of an in-process pipeline.
        if job not in VALID_ID_CACHE or not self._pdtnb_default_ids:
            self.check_job_id(job)
        store = self.data
        if type(store) is JobDict:
            _dict_setitem(store, job, data)
            store.version += 1  # JobDict.note, inlined
            log = store.log
            log.append(job)
            if len(log) > store.log_cap:
                store.trim()
        else:
            store[job] = data

    def record_success_ns(self, job: str, start_ns: int, end_ns: int, fingerprint: str | None = None) -> None:
        """Store ``success_dict_ns(start_ns, end_ns, fingerprint)`` for ``job`` (a first attempt
        that succeeded on this host between two ``time.time_ns()`` readings, by the code whose
        fingerprint's digest is given), compactly when the dict is this repository's own (see the
        module's docstring). Synchronous: nothing here waits."""
        if job not in VALID_ID_CACHE or not self._pdtnb_default_ids:
            self.check_job_id(job)
        store = self.data
        if type(store) is JobDict and 0 <= start_ns <= _NS_MASK and 0 <= end_ns <= _NS_MASK:
            store.compact = True
            packed = start_ns << 64 | end_ns
            _dict_setitem(store, job, (packed, _COMPACT) if fingerprint is None else (packed, _COMPACT, fingerprint))
            store.version += 1  # JobDict.note, inlined
            log = store.log
            log.append(job)
            if len(log) > store.log_cap:
                store.trim()
        else:
            self._store(job, success_dict_ns(start_ns, end_ns, fingerprint))


def success_writer(repo: Any) -> Any:
    """``repo.record_success_ns`` when ``repo`` is an in-process metadata repository whose writes
    are this module's (a subclass overriding ``dump`` or ``_store`` gets dicts through ``dump``),
    else None."""
    cls = type(repo)
    if (
        isinstance(repo, InProcessMetadataRepository)
        and cls.dump is InProcessMetadataRepository.dump
        and cls._store is _DictListing._store
        and cls.record_success_ns is InProcessMetadataRepository.record_success_ns
    ):
        return repo.record_success_ns
    return None


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

    @overload
    async def open(self, job: str, mode: Literal["r"] = "r") -> AReadText: ...
    @overload
    async def open(self, job: str, mode: Literal["rb"]) -> AReadStream: ...
    @overload
    async def open(self, job: str, mode: Literal["w"]) -> AWriteText: ...
    @overload
    async def open(self, job: str, mode: Literal["wb"]) -> AWriteStream: ...

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
