"""Which jobs of a ``done`` repository failed, kept cheaply: the outcome index.

The scheduler needs it every round (a job whose upstream attempt failed is not ready downstream;
a failed attempt whose retry is due is launched again) and so does every status view, so it must
not read every record each time. One :class:`OutcomeIndex` per done repository (shared by every
task and view in the process) remembers which jobs hold a failure record and when their retries
are due, and brings itself up to date as cheaply as the repository allows:

- repositories with change tokens (in memory): only the jobs changed since the last look are
  read, and the records this process wrote itself are known without reading them;
- others (files, S3, MongoDB): the listing (shared within a round) tells new and vanished jobs;
  new records are read, and the known failures are re-read every ``full_every`` refreshes so that
  a record rewritten in place by another process is seen within a few rounds.

:class:`SucceededView` is the view of a done repository that a ``require_success`` link reads: the
jobs whose last attempt succeeded.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Hashable
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

from .record import JobRecord, clean_text, read_record
from .repository.base import MetadataRepository, Repository
from .repository.combinators import RelatedItemRepository

__all__ = ["OutcomeIndex", "outcome_index", "SucceededView", "succeeded_view", "base_of"]


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
        self._noted: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def bad(self) -> set[str]:
        """Every job whose last recorded attempt did not succeed."""
        if not self.retrying and not self.corrupt:
            return self.failed
        return self.failed | self.retrying.keys() | self.corrupt.keys()

    def _classify(self, job: str, value: Any) -> None:
        if type(value) is dict and value.get("result") == "success":
            self.failed.discard(job)
            self.retrying.pop(job, None)
            self.corrupt.pop(job, None)
            return
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
        elif record.retrying:
            self.failed.discard(job)
            self.retrying[job] = record.retry_at
        else:
            self.retrying.pop(job, None)
            self.failed.add(job)

    def _drop(self, job: str) -> None:
        self._known.discard(job)
        self.failed.discard(job)
        self.retrying.pop(job, None)
        self.corrupt.pop(job, None)

    def note(self, job: str, value: Any) -> None:
        """Record what this process just wrote for ``job`` (so it need not be read back)."""
        self._known.add(job)
        self._noted.add(job)
        self._classify(job, value)

    def note_success(self, job: str) -> None:
        """:meth:`note` of a success record, for the hot path of in-process pipelines."""
        self._noted.add(job)
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
        if not self.loaded or full or token is not None:
            self._known = set()
            self.failed = set()
            self.retrying = {}
            self.corrupt = {}
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
        try:
            infos = await repo.info_all()
        except Exception:
            # One unreadable record must not hide the others: read them one by one.
            await self._reread(repo, set(ids))
            return
        for job, value in infos.items():
            if job in ids:
                self._known.add(job)
                self._classify(job, value)

    async def _reread(self, repo: Repository, jobs: AbstractSet[str]) -> None:
        if not jobs:
            return
        if len(jobs) > 1000:
            # Many changes (a round of a large in-memory pipeline written by other code, or a
            # first look): one bulk read beats a lookup per job.
            try:
                infos = await repo.info_all()
            except Exception:
                infos = None
            if infos is not None:
                for job in jobs:
                    if job in infos:
                        self._known.add(job)
                        self._classify(job, infos[job])
                    else:
                        self._drop(job)
                return
        jobs = list(jobs)
        present = await asyncio.gather(*(repo.contains(j) for j in jobs), return_exceptions=True)
        here = [j for j, p in zip(jobs, present) if p is True]
        for job, p in zip(jobs, present):
            if p is not True:
                self._drop(job)
        values = await asyncio.gather(*(repo.info(j) for j in here), return_exceptions=True)
        for job, value in zip(here, values):
            self._known.add(job)
            if isinstance(value, Exception):
                self.failed.discard(job)
                self.retrying.pop(job, None)
                self.corrupt[job] = f"{type(value).__name__}: {value}"
            else:
                self._classify(job, value)

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


def record_of(value: Any) -> JobRecord:
    """A stored done value as a :class:`~pdtnb.record.JobRecord`."""
    return read_record(value)
