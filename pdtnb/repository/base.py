"""The repository model: key-value stores keyed by job id.

A repository answers one question for the scheduler, "which jobs do you hold?", plus ``info``
(a value used in templates) and ``delete``. Subclasses add the value interface: streams for
:class:`BlobRepository`, structured data for :class:`MetadataRepository`.

Listing is the hot path of a pipeline: every round computes, for every task, which jobs are
ready. pdtnb therefore lists whole repositories as sets (:meth:`Repository.job_ids`) and lets the
combinators intersect, unite and subtract those sets, instead of streaming job ids one by one
through nested async generators. Inside a :func:`listing_snapshot`, each repository is listed at
most once however many tasks and combinators ask for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
)
from collections.abc import Set as AbstractSet
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from ..errors import InvalidJobIdError
from ..streams import AReadStream, AReadText, AWriteStream, AWriteText

if TYPE_CHECKING:
    from ..lease import Lease
    from .combinators import MapRepository

__all__ = [
    "Repository",
    "BlobRepository",
    "MetadataRepository",
    "listing_snapshot",
]

#: Names starting with this are pdtnb's own objects (temporary files, the lease), never jobs.
RESERVED_PREFIX = ".pdtnb-"
#: The name, under a repository's directory or prefix, of a pipeline's lease.
LEASE_NAME = RESERVED_PREFIX + "lease"

log = logging.getLogger("pdtnb.repository")

_DEFAULT_CHARSET = string.ascii_letters + string.digits
# Job ids already found valid under the default character set. Most ids are written by one
# repository and read back by several, so checking each id once per process, not once per write,
# keeps validation off the hot path. Bounded: cleared (and rebuilt as ids are seen) past the limit.
# Shared with the repository implementations: memory.py inlines the check on its hottest paths.
VALID_ID_CACHE: set[str] = set()
T = TypeVar("T")
_R = TypeVar("_R", bound="Repository")
_VALID_IDS_LIMIT = 4_000_000
# Each entry: the repository (kept alive while its id is the key) and its listing's future, a job
# id set for job_ids(), whatever `make` gives for _shared().
_SNAPSHOT: ContextVar[dict[Hashable, tuple[Repository, asyncio.Future[Any]]] | None] = ContextVar(
    "pdtnb_listing_snapshot", default=None
)


@contextlib.contextmanager
def listing_snapshot() -> Iterator[None]:
    """Within this block (and the tasks it starts), each repository is listed at most once.

    The pipeline uses it around the gathering of ready jobs and the status computation, so that a
    repository shared by several tasks is read once per round. Listings returned inside the block
    are shared and, for in-memory repositories, live views of their keys: combine or count them
    there, and do not write to the repositories inside the block.
    """
    token = _SNAPSHOT.set({})
    try:
        yield
    finally:
        _SNAPSHOT.reset(token)


class Repository(ABC):
    """A key-value store whose keys are job ids.

    Iterate it with ``async for job in repo`` (filtered by :meth:`is_valid_job_id`), or get the
    whole listing at once with ``await repo.job_ids()``.
    """

    CHARSET: str = _DEFAULT_CHARSET
    CHARSET_START_END: str = _DEFAULT_CHARSET
    #: Longest job id accepted (a SHA-256 hex digest, 64 characters, fits comfortably).
    MAX_JOB_ID_LENGTH: int = 200

    # ---- job ids ---------------------------------------------------------------------------

    @classmethod
    def is_valid_job_id(cls, job: str) -> bool:
        """Whether ``job`` is a valid job id: 1 to MAX_JOB_ID_LENGTH characters of CHARSET, starting
        and ending with a CHARSET_START_END character."""
        if type(job) is not str or not 0 < len(job) <= cls.MAX_JOB_ID_LENGTH:
            return False
        if cls.CHARSET is _DEFAULT_CHARSET and cls.CHARSET_START_END is _DEFAULT_CHARSET:
            return job.isalnum() and job.isascii()  # the same test, at C speed
        charset = cls.CHARSET
        return all(c in charset for c in job) and job[0] in cls.CHARSET_START_END and job[-1] in cls.CHARSET_START_END

    #: Whether the ids of a listing are remembered as valid, so that writing to them later skips
    #: the check (:meth:`check_job_id`). Repositories whose writes never consult that memory
    #: (files: :meth:`FileRepositoryBase.fullpath` checks each id itself) turn it off: for them
    #: it only costs time at every listing.
    _remember_listed_ids: bool = True

    #: Whether the class uses the default job id rules, so the shared validity cache applies.
    #: Computed for every class when it is defined: set CHARSET in the class body.
    _pdtnb_default_ids: bool = True

    def __new__(cls: type[_R], *args: Any, **kwargs: Any) -> _R:
        # Kept so that a Python-defined pipeline can be written as a file (pdtnb.dump): the
        # arguments say what the repository is, whatever its attributes are named.
        self = super().__new__(cls)
        self.__dict__["constructed_with"] = (args, kwargs)
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._pdtnb_default_ids = (
            cls.CHARSET is _DEFAULT_CHARSET
            and cls.CHARSET_START_END is _DEFAULT_CHARSET
            and cls.MAX_JOB_ID_LENGTH == Repository.MAX_JOB_ID_LENGTH
            and getattr(cls.is_valid_job_id, "__func__", None) is vars(Repository)["is_valid_job_id"].__func__
        )

    @classmethod
    def _default_charset(cls) -> bool:
        return cls._pdtnb_default_ids

    def check_job_id(self, job: str) -> str:
        """Return ``job`` if valid, else raise :class:`InvalidJobIdError` naming it and this repository.

        Every write path calls this, so an id like ``../../etc`` can never reach a path or a template.
        """
        if job in VALID_ID_CACHE and self._pdtnb_default_ids:
            return job
        if not self.is_valid_job_id(job):
            raise InvalidJobIdError(job, self, self.MAX_JOB_ID_LENGTH)
        if self._default_charset():
            _remember_valid((job,))
        return job

    def _all_known_valid(self, ids: Iterable[str]) -> bool:
        """Whether every id in ``ids`` is already known to be valid (cheap, no allocation)."""
        return self._default_charset() and VALID_ID_CACHE.issuperset(ids)

    def _warn_invalid(self, bad: Iterable[str]) -> None:
        """Log one warning per listing for ids that are not valid, each id only the first time."""
        warned: set[str] = self.__dict__.setdefault("_pdtnb_warned_ids", set())
        new = [b for b in bad if b not in warned]
        if new:
            warned.update(new)
            shown = ", ".join(repr(b) for b in sorted(new, key=str)[:5])
            more = f" and {len(new) - 5} more" if len(new) > 5 else ""
            log.warning("%s: skipping %d entries that are not valid job ids: %s%s", self, len(new), shown, more)

    def _valid_subset(self, ids: Iterable[str]) -> set[str]:
        """The valid job ids among ``ids``, warning once about the others.

        With the default rules a whole listing is checked at once (its ids joined, tested by C
        string methods): checking 100,000 ids one call at a time took most of a cold status."""
        if self._pdtnb_default_ids:
            listed = ids if isinstance(ids, (list, tuple, set, frozenset)) else list(ids)
            if _all_default_valid(listed, self.MAX_JOB_ID_LENGTH):
                if self._remember_listed_ids:
                    _remember_valid(listed)
                return set(listed)
            ids = listed
        check = self.is_valid_job_id
        good: set[str] = set()
        bad: list[str] = []
        for job in ids:
            (good.add if check(job) else bad.append)(job)
        if bad:
            self._warn_invalid(bad)
        if self._default_charset():
            _remember_valid(good)
        return good

    async def filter_jobs(self, iterator: AsyncIterator[str]) -> AsyncGenerator[str, None]:
        """Apply :meth:`is_valid_job_id` to an async iterator, warning once about invalid entries."""
        bad: list[str] = []
        try:
            async for job in iterator:
                if self.is_valid_job_id(job):
                    yield job
                else:
                    bad.append(job)
        finally:
            if bad:
                self._warn_invalid(bad)

    # ---- membership ------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[str]:
        return self.filter_jobs(self.unfiltered_iter())

    @abstractmethod
    def unfiltered_iter(self) -> AsyncIterator[str]:
        """Yield every name that may be a job id held here; iteration filters it by validity."""

    async def contains(self, item: str) -> bool:
        """Whether ``item`` is a job held here. Override when a direct lookup is cheaper than listing."""
        return self.is_valid_job_id(item) and item in await self.job_ids()

    async def job_ids(self) -> AbstractSet[str]:
        """All valid job ids held here, as a set the caller must not modify.

        Inside :func:`listing_snapshot` the listing is shared with every other caller, and may be a
        live view of an in-memory repository's keys: combine or count it, do not keep it.
        """
        memo = _SNAPSHOT.get()
        if memo is None:
            ids = await self._list_job_ids()
            return ids if isinstance(ids, (set, frozenset)) else set(ids)
        entry = memo.get(id(self))
        future: asyncio.Future[AbstractSet[str]]
        if entry is None:
            future = asyncio.ensure_future(self._list_job_ids())
            memo[id(self)] = (self, future)
        else:
            future = entry[1]
        return await future

    async def _list_job_ids(self) -> AbstractSet[str]:
        """List the repository; override with a bulk listing where the storage has one."""
        return {job async for job in self}

    # ---- identities and side files ----------------------------------------------------------

    async def identities(
        self, unchanged_since: Any = None, jobs: Iterable[str] | None = None
    ) -> tuple[Mapping[str, Hashable] | None, Any] | None:
        """Every valid job held here (or just ``jobs``) mapped to an identity of its stored value
        that changes whenever the value is replaced (a file's inode and change time; an S3
        object's ETag), and a stamp of the whole listing. ``(None, stamp)`` when the listing has
        not changed since the stamp ``unchanged_since``; None when the storage has no identities.
        The outcome index uses them to read only the records that changed since a side file
        (:meth:`read_sidecar`) was written, in this process or an earlier one."""
        return None

    async def stamped_listing(self) -> tuple[Any, AbstractSet[str]] | None:
        """The listing as it is now with a stamp of it (see :meth:`identities`) that any later
        change is sure to alter; None when the storage has no such stamp. Side files saved with
        the stamp can then vouch for the listing itself."""
        return None

    def adopt_listing(self, stamp: Any, jobs: AbstractSet[str]) -> None:
        """Take ``jobs`` as the listing, known from a side file saved with ``stamp`` (see
        :meth:`stamped_listing`), if the storage's stamp is still ``stamp``; otherwise nothing."""

    async def keep_listing(self) -> None:
        """Keep the current listing where the next process can take it instead of listing again
        (a large directory's side file); nothing for storages that cannot vouch for one. Status
        and a run's end call it."""

    def _shared(self, key: str, make: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        """``make()``, awaited once per :func:`listing_snapshot` under ``key`` for this repository
        (for listings other than :meth:`job_ids` that several readers of a round need)."""
        memo = _SNAPSHOT.get()
        if memo is None:
            return make()
        entry = memo.get((id(self), key))
        if entry is None:
            entry = memo[(id(self), key)] = (self, asyncio.ensure_future(make()))
        return entry[1]

    async def sweep(self) -> None:
        """Remove what interrupted writes left behind (a file repository's temporary files of
        writers that died). A pipeline calls it on each repository when it first takes control;
        nothing to do for storages whose writes leave nothing half-done."""

    async def read_sidecar(self, name: str) -> bytes | None:
        """The content of this repository's side file ``name`` (pdtnb's own data kept beside the
        jobs, such as the outcome cache), None if absent or if the storage keeps none."""
        return None

    async def write_sidecar(self, name: str, data: bytes) -> bool:
        """Store side file ``name`` atomically; False when the storage keeps none."""
        return False

    # ---- change tracking -------------------------------------------------------------------

    def change_token(self) -> Hashable | None:
        """A value that changes whenever this repository's jobs or values change, or None when the
        repository cannot tell (then readers must assume it changed).

        Status tables use it to skip the work for a repository that did not change since the last
        refresh. In-memory repositories (with the dict they created), combinators over such
        repositories, and live repositories of in-process tasks have tokens.
        """
        return None

    def changes_since(self, token: Hashable) -> set[str] | None:
        """The jobs whose presence or value changed after ``token`` was taken (from
        :meth:`change_token`), or None when this cannot be told."""
        return None

    # ---- values ----------------------------------------------------------------------------

    @abstractmethod
    async def info(self, job: str) -> Any:
        """A value describing ``job`` for templates; meaningful even when the job is absent."""

    @abstractmethod
    async def delete(self, job: str) -> None:
        """Remove ``job``; succeeds when it is absent."""

    async def info_all(self) -> dict[str, Any]:
        """Every job held here mapped to its info; override when one query can load them all."""
        jobs = sorted(await self.job_ids())
        values = await asyncio.gather(*(self.info(job) for job in jobs))
        return dict(zip(jobs, values))

    async def validate(self) -> None:
        """Raise if the repository is misconfigured; called once when the pipeline opens."""

    def lease_place(self) -> Lease | None:
        """Where a pipeline whose records live here keeps its lease (one controller at a time),
        or None when this storage cannot hold one shared between processes (memory, computed
        repositories). A pipeline asks its done repositories, in task order."""
        return None

    def map(
        self,
        func: Callable[[Any], Any],
        filt: Callable[[str], Awaitable[bool]] | None = None,
        allow_deletes: bool = False,
    ) -> MapRepository:
        """A view of this repository whose info passes through ``func`` and whose jobs pass ``filt``."""
        from .combinators import MapRepository

        return MapRepository(self, func, filt, allow_deletes=allow_deletes)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class BlobRepository(Repository, ABC):
    """A repository whose values are byte blobs, read and written as streams."""

    @overload
    async def open(self, job: str, mode: Literal["r"] = "r") -> AReadText: ...
    @overload
    async def open(self, job: str, mode: Literal["rb"]) -> AReadStream: ...
    @overload
    async def open(self, job: str, mode: Literal["w"]) -> AWriteText: ...
    @overload
    async def open(self, job: str, mode: Literal["wb"]) -> AWriteStream: ...

    @abstractmethod
    async def open(self, job: str, mode: str = "r") -> Any:
        """Open ``job``'s blob in mode r, rb, w or wb. A write becomes visible only when the stream is
        closed without error."""


class MetadataRepository(Repository, ABC):
    """A repository whose values are small structured objects, loaded whole into memory."""

    @abstractmethod
    async def info(self, job: str) -> Any:
        """The value stored for ``job`` (None when absent)."""

    @abstractmethod
    async def dump(self, job: str, data: Any) -> None:
        """Store ``data`` under ``job``, replacing any previous value atomically."""

    async def read_records(self, jobs: list[str]) -> list[Any]:
        """Each of ``jobs``' values for the outcome index, in order: the value, the exception
        reading it raised, or :data:`NO_RECORD` for a job that has none. A storage that can tell
        a plain success record without parsing it may return :data:`SUCCESS` for it (YAML files
        do: parsing is most of a cold look's cost)."""
        if len(jobs) > 1000:
            try:
                # One bulk read (one query in MongoDB) beats a lookup per job.
                infos = await self.info_all()
            except Exception:
                infos = None  # one unreadable record: read them one by one below
            if infos is not None:
                return [infos.get(job, NO_RECORD) for job in jobs]
        present = await asyncio.gather(*(self.contains(j) for j in jobs), return_exceptions=True)
        here = [j for j, p in zip(jobs, present) if p is True]
        values = dict(zip(here, await asyncio.gather(*(self.info(j) for j in here), return_exceptions=True)))
        return [values.get(job, NO_RECORD) for job in jobs]


#: What :meth:`MetadataRepository.read_records` returns for a job without a record.
NO_RECORD: Any = type("NoRecord", (), {"__repr__": lambda self: "NO_RECORD"})()

#: What :meth:`MetadataRepository.read_records` may return for a plain success record: all the
#: outcome index looks at. Never modify it.
SUCCESS: Mapping[str, Any] = MappingProxyType({"result": "success"})


def _all_default_valid(ids: Collection[Any], longest: int) -> bool:
    """Whether every one of ``ids`` is valid under the default rules (non-empty ASCII letters and
    digits, at most ``longest`` characters), tested in bulk; False also when unsure."""
    if not ids:
        return True
    try:
        joined = "".join(ids)  # TypeError for anything but strings
    except TypeError:
        return False
    if not (joined.isascii() and joined.isalnum()):
        return False
    lengths = list(map(len, ids))
    return min(lengths) > 0 and max(lengths) <= longest


def _remember_valid(ids: Iterable[str]) -> None:
    if len(VALID_ID_CACHE) > _VALID_IDS_LIMIT:
        VALID_ID_CACHE.clear()
    VALID_ID_CACHE.update(ids)


def check_mode(mode: str, where: object) -> None:
    """Raise ValueError for a stream mode other than r, rb, w, wb."""
    if mode not in ("r", "rb", "w", "wb"):
        raise ValueError(f"{where}: unsupported open mode {mode!r}; use 'r', 'rb', 'w' or 'wb'")
