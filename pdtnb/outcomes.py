"""Which jobs of a ``done`` repository failed, kept cheaply: the outcome index.

The scheduler needs it every round (a job whose upstream attempt failed is not ready downstream;
a failed attempt whose retry is due is launched again) and so does every status view, so it must
not read every record each time. One :class:`OutcomeIndex` per done repository (shared by every
task and view in the process) remembers which jobs hold a failure record and when their retries
are due, and brings itself up to date as cheaply as the repository allows:

- repositories with change tokens (in memory): only the jobs changed since the last look are
  read, and the records this process wrote itself are known without reading them;
- repositories whose values have identities (files: inode and change time; S3: the ETag of
  the listing): the classification is kept between processes in a side file
  (``.pdtnb-meta/outcomes`` beside the records, JSON) with each record's identity, so that a
  cold ``status`` reads only the records that changed since. For files, a stamp of the directory
  (its mtime, which every file created, removed or renamed in changes) lets a cold look skip
  even the stat of every file when nothing changed; otherwise each file is stat'ed and only
  those whose identity differs are read. Within a process, the index follows the listing as
  below and knows the records it wrote or read, taking their identities when it next saves. A
  record edited in place, keeping its inode and within the directory's clock tick, can be
  missed; known failures are re-read every ``full_every`` refreshes all the same;
- others (MongoDB), and files and S3 within a process: the listing (shared within a round)
  tells new and vanished jobs; new records are read, and the known failures are re-read every
  ``full_every`` refreshes so that a record rewritten in place by another process is seen within
  a few rounds.

:class:`SucceededView` is the view of a done repository that a ``require_success`` link reads: the
jobs whose last attempt succeeded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator, Hashable, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

from .record import JobRecord, clean_text, read_record
from .repository.base import NO_RECORD, SUCCESS, MetadataRepository, Repository
from .repository.combinators import RelatedItemRepository

__all__ = ["OutcomeIndex", "outcome_index", "SucceededView", "succeeded_view", "base_of"]

log = logging.getLogger("pdtnb.outcomes")

#: The side file (see :meth:`Repository.read_sidecar`) keeping an index between processes.
CACHE_NAME = "outcomes"
_CACHE_FORMAT = 3
_ABSENT: Any = object()


class OutcomeIndex:
    """The failed and retrying jobs of one done repository, as last seen."""

    def __init__(self, full_every: int = 30):
        self.full_every = full_every
        self.loaded = False
        self.refreshes = 0
        self._token: Any = None
        self._known: set[str] = set()
        #: Jobs whose last attempt failed for good.
        self.failed: set[str] = set()
        #: Jobs whose last attempt failed and which will be tried again, with when.
        self.retrying: dict[str, datetime | None] = {}
        #: Jobs whose records could not be read (corrupt YAML, wrong type): failures too.
        self.corrupt: dict[str, str] = {}
        #: The fingerprint digest (:mod:`pdtnb.fingerprint`) of the first success classified,
        #: "" for none: the successes that carry it are not listed one by one.
        self.common_print: str | None = None
        #: The successes whose digest is not :attr:`common_print` ("" for a record without one).
        self.prints: dict[str, str] = {}
        self._noted: set[str] = set()
        self._lock = asyncio.Lock()
        #: Identity of the classified value of each job (repositories with identities only).
        self._idents: dict[str, Any] | None = None
        #: Whether the classification changed since the side file was written.
        self.dirty = False
        self._stamp: Any = None
        #: The listing of the last look, when the repository keeps it as an immutable set.
        self._listed: frozenset[str] | None = None
        #: Changes whenever the failed, retrying or corrupt jobs may have changed (for views that
        #: skip recomputing when nothing did).
        self.version = 0

    @property
    def bad(self) -> set[str]:
        """Every job whose last recorded attempt did not succeed."""
        if not self.retrying and not self.corrupt:
            return self.failed
        return self.failed | self.retrying.keys() | self.corrupt.keys()

    def _classify(self, job: str, value: Any) -> None:
        before = (job in self.failed, self.retrying.get(job, _ABSENT), self.corrupt.get(job))
        self._put(job, value)
        if before != (job in self.failed, self.retrying.get(job, _ABSENT), self.corrupt.get(job)):
            self.version += 1

    def _put(self, job: str, value: Any) -> None:
        if value is SUCCESS or (type(value) is dict and value.get("result") == "success"):
            self.failed.discard(job)
            self.retrying.pop(job, None)
            self.corrupt.pop(job, None)
            self._note_print(job, value.get("fingerprint"))
            return
        if self.prints:
            self.prints.pop(job, None)
        if type(value) is not dict and not isinstance(value, dict):
            # A list, a bare string, an empty file: nobody wrote this record correctly. It is a
            # corrupt record, reported as such (like malformed YAML), not an attempt that failed.
            self.failed.discard(job)
            self.retrying.pop(job, None)
            self.corrupt[job] = f"not a record: {clean_text(repr(value), 80)}"
            return
        record = read_record(value)
        self.corrupt.pop(job, None)
        if record.succeeded:
            self.failed.discard(job)
            self.retrying.pop(job, None)
            self._note_print(job, record.fingerprint)
        elif record.retrying:
            self.failed.discard(job)
            self.retrying[job] = record.retry_at
        else:
            self.retrying.pop(job, None)
            self.failed.add(job)

    def _note_print(self, job: str, digest: Any) -> None:
        """``job`` succeeded by the code whose fingerprint's digest is ``digest``."""
        if not isinstance(digest, str):
            digest = ""
        common = self.common_print
        if common is None:
            self.common_print = common = digest
        if digest == common:
            if self.prints and self.prints.pop(job, None) is not None:
                self.version += 1
        elif self.prints.get(job) != digest:
            self.prints[job] = digest
            self.version += 1

    def outdated(self, current: str | None, done: AbstractSet[str]) -> set[str]:
        """The jobs of ``done`` whose last attempt succeeded by code whose fingerprint was not
        ``current`` (records without a fingerprint are not outdated: nothing says what made
        them). Costs nothing while every success carries ``current``."""
        common = self.common_print
        if current is None or common is None:
            return set()
        prints = self.prints
        found = {j for j, d in prints.items() if d and d != current and j in done} if prints else set()
        if common and common != current:
            bad = self.bad
            found.update(j for j in done if j not in prints and j not in bad)
        return found

    def _drop(self, job: str) -> None:
        if self.prints and self.prints.pop(job, None) is not None:
            self.version += 1
        if job in self.failed or job in self.retrying or job in self.corrupt:
            self.version += 1
        if self._idents is not None and self._idents.pop(job, _ABSENT) is not _ABSENT:
            self.dirty = True
        self._known.discard(job)
        self.failed.discard(job)
        self.retrying.pop(job, None)
        self.corrupt.pop(job, None)

    def note(self, job: str, value: Any) -> None:
        """Record what this process just wrote for ``job`` (so it need not be read back)."""
        self._known.add(job)
        self._noted.add(job)
        self._classify(job, value)
        if self._idents is not None:
            self._idents[job] = None
            self.dirty = True

    def note_success(self, job: str, digest: str | None = None) -> None:
        """:meth:`note` of a success record (by the code whose fingerprint's digest is
        ``digest``), for the hot path of in-process pipelines."""
        self._noted.add(job)
        if digest != self.common_print or self.prints:
            self._note_print(job, digest)
        if self._idents is not None:
            self._idents[job] = None
            self.dirty = True
        if self._token is None:
            self._known.add(job)
        if (self.failed or self.retrying or self.corrupt) and (
            job in self.failed or job in self.retrying or job in self.corrupt
        ):
            self._drop(job)
            self._known.add(job)

    def note_deleted(self, job: str) -> None:
        """Record that this process just deleted ``job``'s record."""
        self._drop(job)
        self._noted.add(job)

    async def refresh(self, repo: Repository, full: bool = False) -> OutcomeIndex:
        """Bring the index up to date with ``repo`` (see the module's docstring)."""
        async with self._lock:
            await self._refresh(repo, full)
        return self

    async def _refresh(self, repo: Repository, full: bool) -> None:
        self.refreshes += 1
        token = repo.change_token()
        if token is None and (not self.loaded or full) and await self._refresh_identities(repo):
            return
        if self.loaded and not full and token is not None and self._token is not None:
            if token == self._token:
                self._noted.clear()
                return
            changed = repo.changes_since(self._token)
            if changed is not None:
                unseen = changed - self._noted if self._noted else changed
                self._noted.clear()
                self._token = token
                await self._reread(repo, unseen)
                return
        ids = await repo.job_ids()
        self._noted.clear()
        periodic = self.full_every > 0 and self.refreshes % self.full_every == 0
        if self.loaded and not full and not periodic and token is None and ids is self._listed:
            return  # the very listing of the last look (an immutable set kept while unchanged)
        self._listed = ids if isinstance(ids, frozenset) else None
        if not self.loaded or full or token is not None:
            self._known = set()
            self.failed = set()
            self.retrying = {}
            self.corrupt = {}
            self.common_print = None
            self.prints = {}
            self.version += 1
            await self._read_all(repo, ids)
        else:
            gone = self._known - ids
            for job in gone:
                self._drop(job)
            new = ids - self._known
            again = self.bad if periodic else set()
            await self._reread(repo, new | again)
        self._token = token
        self.loaded = True

    async def _read_all(self, repo: Repository, ids: AbstractSet[str]) -> None:
        jobs = list(ids)
        for job, value in zip(jobs, await _read_records(repo, jobs)):
            if value is NO_RECORD:
                continue  # gone since the listing
            self._known.add(job)
            self._seen(job)
            self._take(job, value)

    def _take(self, job: str, value: Any) -> None:
        """Classify what reading ``job``'s record gave: a value, or the exception it raised."""
        if isinstance(value, Exception):
            self.version += 1
            self.failed.discard(job)
            self.retrying.pop(job, None)
            self.corrupt[job] = f"{type(value).__name__}: {value}"
        else:
            self._classify(job, value)

    async def _reread(self, repo: Repository, jobs: AbstractSet[str]) -> None:
        if not jobs:
            return
        order = list(jobs)
        for job, value in zip(order, await _read_records(repo, order)):
            if value is NO_RECORD:
                self._drop(job)  # no record (any more)
                continue
            self._known.add(job)
            self._seen(job)
            self._take(job, value)

    def _seen(self, job: str) -> None:
        """``job`` was just read: its identity is pending (taken from the next identity listing)."""
        if self._idents is not None:
            self._idents[job] = None
            self.dirty = True

    # ---- repositories with identities (files, S3) ----------------------------------------------

    async def _refresh_identities(self, repo: Repository) -> bool:
        """Bring the index up to date by identities: read only the records whose identity differs
        from the one last classified (kept in the side file between processes). False when the
        repository has none (the caller lists and reads instead)."""
        self._listed = None
        if self._idents is None:
            self._idents = {}
            self._stamp = await self._load_cache(repo)
        result = await repo.identities(self._stamp)
        if result is None:
            self._idents = None
            return False
        idents, stamp = result
        if idents is None:  # nothing created, removed or renamed since the stamp
            self._known = set(self._idents)
            repo.adopt_listing(stamp, self._known)  # the side file's jobs are the listing: no scan
            self.loaded = True
            return True
        repo.adopt_listing(stamp, idents.keys())
        mine = self._idents
        to_read: list[str] = []
        for job, ident in idents.items():
            old = mine.get(job, _ABSENT)
            if old is None:
                mine[job] = ident  # classified in this process (written or read): adopt the identity
                self.dirty = True
            elif old != ident:
                to_read.append(job)
        if len(mine) > len(idents) - len(to_read):
            for job in [j for j in mine if j not in idents]:
                self._drop(job)
                self.dirty = True
        if to_read:
            await self._read_into(repo, to_read, idents)
            self.dirty = True
        self._stamp = stamp
        self._known = set(mine)
        self._noted.clear()
        self.loaded = True
        return True

    async def _read_into(self, repo: Repository, jobs: list[str], idents: Mapping[str, Any]) -> None:
        assert self._idents is not None
        for job, value in zip(jobs, await _read_records(repo, jobs)):
            self._idents[job] = idents[job]
            if value is NO_RECORD:
                # Listed with an identity a moment ago, gone now: its next identity listing
                # drops it. Until then it holds no record that could have failed.
                self._drop(job)
                self._idents[job] = idents[job]
                continue
            self._take(job, value)

    async def _load_cache(self, repo: Repository) -> Any:
        """Take the classification kept in the side file (a job whose identity still matches need
        not be read again); returns the listing stamp it was saved with.

        The file is three lines of JSON (see :meth:`save`): a header with the stamp and the jobs
        that did not succeed, then every job, then their identities in the same order. Arrays of
        strings parse at C speed: 100,000 jobs load in a few tens of milliseconds, where a map of
        per-job entries took most of a second."""
        try:
            data = await repo.read_sidecar(CACHE_NAME)
        except Exception as e:
            log.debug("%r: no outcome cache: %s", repo, e)
            return None
        if not data:
            return None
        try:
            head, jobs_line, idents_line = data.split(b"\n", 2)
            header = json.loads(head)
            if header.get("format") != _CACHE_FORMAT:
                return None
            jobs = json.loads(jobs_line)
            idents = json.loads(idents_line)
            failed = header["failed"]
            retrying = {job: datetime.fromisoformat(at) if at else None for job, at in header["retrying"].items()}
            corrupt = {job: str(why) for job, why in header["corrupt"].items()}
            common = header.get("common_print")
            prints = {str(job): str(d) for job, d in (header.get("prints") or {}).items()}
            if not (
                isinstance(jobs, list)
                and isinstance(idents, list)
                and isinstance(failed, list)
                and len(jobs) == len(idents) == header["count"]
            ):
                raise ValueError("inconsistent lengths")
            table = dict(zip(jobs, idents))
            if len(table) != len(jobs) or not failed_are_known(table, failed, retrying, corrupt, prints):
                raise ValueError("inconsistent entries")
        except Exception:
            log.info("%r: its outcome cache is unreadable: it will be rebuilt", repo)
            return None
        if not (isinstance(common, str) or common is None) or (
            common is not None and self.common_print not in (None, common)
        ):
            return None  # kept against another common fingerprint: read again what it says
        assert self._idents is not None
        if self._idents:
            self._idents.update(table)
        else:
            self._idents = table  # the usual case, a first look: no copy of 100,000 entries
        self.version += 1
        self.failed.update(failed)
        self.retrying.update(retrying)
        self.corrupt.update(corrupt)
        if common is not None:
            self.common_print = common
            self.prints.update(prints)
        return header.get("stamp")

    async def save(self, repo: Repository) -> None:
        """Keep the classification in the repository's side file for the next process (when it
        changed; a storage that refuses only costs the next process some reads)."""
        if not self.dirty or self._idents is None:
            return
        try:
            # The stamp vouches for the jobs saved with it (the next process trusts them as the
            # listing) only if they are exactly the listing the stamp was taken with.
            listed = await repo.stamped_listing()
            stamp = None
            if listed is not None:
                stamp, ids = listed
                for job in [j for j in self._idents if j not in ids]:
                    self._drop(job)  # gone since it was last seen
                if len(ids) != len(self._idents):
                    stamp = None  # jobs this index has not classified yet
            unknown = [job for job, ident in self._idents.items() if ident is None]
            if unknown:
                result = await repo.identities(jobs=unknown)
                if result is not None and result[0] is not None:
                    self._idents.update(result[0])
        except Exception as e:
            log.debug("%r: could not stamp the outcome cache: %s", repo, e)
            return
        kept = {job: ident for job, ident in self._idents.items() if ident is not None}  # None: gone meanwhile
        header = {
            "format": _CACHE_FORMAT,
            "stamp": stamp,
            "count": len(kept),
            "failed": [job for job in self.failed if job in kept],
            "retrying": {job: at.isoformat() if at else None for job, at in self.retrying.items() if job in kept},
            "corrupt": {job: why for job, why in self.corrupt.items() if job in kept},
            "common_print": self.common_print,
            "prints": {job: d for job, d in self.prints.items() if job in kept},
        }
        data = b"\n".join(
            json.dumps(part, separators=(",", ":")).encode() for part in (header, list(kept), list(kept.values()))
        )
        try:
            await repo.write_sidecar(CACHE_NAME, data)
        except Exception as e:
            log.debug("%r: could not write the outcome cache: %s", repo, e)
            return
        self._stamp = stamp
        self.dirty = False

    def due(self, now: datetime) -> list[str]:
        """The retrying jobs whose next attempt is due at ``now``."""
        return [j for j, at in self.retrying.items() if at is None or at <= now]

    def next_due(self) -> datetime | None:
        """When the earliest scheduled retry is due."""
        times = [at for at in self.retrying.values() if at is not None]
        return min(times) if times else None


_INDEXES: weakref.WeakKeyDictionary[Repository, OutcomeIndex] = weakref.WeakKeyDictionary()


def outcome_index(repo: Repository) -> OutcomeIndex:
    """The process-wide outcome index of the done repository ``repo``."""
    index = _INDEXES.get(repo)
    if index is None:
        index = _INDEXES[repo] = OutcomeIndex()
    return index


def base_of(repo: Repository) -> Repository:
    """The repository a translated link reads (``repo`` itself for a direct link)."""
    while isinstance(repo, (RelatedItemRepository, SucceededView)):
        repo = repo.base_repository
    return repo


class SucceededView(MetadataRepository):
    """The jobs of a done repository whose last attempt succeeded.

    A task plugged after another reads the other's ``done`` through this view, so a job whose
    upstream attempt failed (or will be retried) is not ready downstream, whatever outputs the
    failed attempt left behind. Values, deletes and writes go to the done repository itself.
    """

    def __init__(self, base_repository: Repository):
        self.base_repository = base_repository
        self.index = outcome_index(base_repository)

    def __repr__(self) -> str:
        return f"<succeeded jobs of {self.base_repository!r}>"

    def check_job_id(self, job: str) -> str:
        return self.base_repository.check_job_id(job)

    async def _list_job_ids(self) -> AbstractSet[str]:
        ids = await self.base_repository.job_ids()
        await self.index.refresh(self.base_repository)
        bad = self.index.bad
        if not bad:
            return ids
        return ids - bad

    async def job_ids(self) -> AbstractSet[str]:
        return await self._list_job_ids()

    def unfiltered_iter(self) -> AsyncIterator[str]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[str]:
        for job in sorted(await self.job_ids()):
            yield job

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iter()

    async def contains(self, item: str) -> bool:
        if not await self.base_repository.contains(item):
            return False
        await self.index.refresh(self.base_repository)
        return item not in self.index.bad

    def change_token(self) -> Hashable | None:
        return self.base_repository.change_token()

    def changes_since(self, token: Hashable) -> set[str] | None:
        return self.base_repository.changes_since(token)

    async def info(self, job: str) -> Any:
        return await self.base_repository.info(job)

    async def dump(self, job: str, data: Any) -> None:
        await self.base_repository.dump(job, data)  # type: ignore[attr-defined]

    async def delete(self, job: str) -> None:
        await self.base_repository.delete(job)


def succeeded_view(repo: Repository) -> Repository:
    """``repo`` read through :class:`SucceededView`, inside a translation if it has one."""
    if isinstance(repo, SucceededView):
        return repo
    if isinstance(repo, RelatedItemRepository):
        return RelatedItemRepository(
            succeeded_view(repo.base_repository),
            repo.translator_repository,
            allow_deletes=repo.allow_deletes,
            prefetch_lookup=repo.prefetch_lookup,
        )
    return SucceededView(repo)


async def _read_records(repo: Repository, jobs: list[str]) -> list[Any]:
    """``repo``'s records of ``jobs`` (values, exceptions, or NO_RECORD)."""
    if not jobs:
        return []
    if isinstance(repo, MetadataRepository):
        return await repo.read_records(jobs)
    return await MetadataRepository.read_records(repo, jobs)  # type: ignore[arg-type]


def failed_are_known(table: Mapping[str, Any], *groups: Any) -> bool:
    """Whether every job named in ``groups`` (the cache's failed, retrying and corrupt jobs) has
    an identity in ``table``."""
    return all(job in table for group in groups for job in group)


def record_of(value: Any) -> JobRecord:
    """A stored done value as a :class:`~pdtnb.record.JobRecord`."""
    return read_record(value)
