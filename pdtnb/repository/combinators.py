"""Repositories computed from other repositories: AND, OR, "A unless B", mapped and translated views.

A task's default ``ready`` repository is built from these (``AND(required) - OR(inhibiting)``),
so their listings are set operations on the children's listings.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from collections.abc import Set as AbstractSet
from typing import Any

from .base import BlobRepository, MetadataRepository, Repository

__all__ = [
    "AggregateAndRepository",
    "AggregateOrRepository",
    "BlockingRepository",
    "MapRepository",
    "RelatedItemRepository",
]


def _union_of_changes(children: list[Repository], token: Any) -> set[str] | None:
    """The union of the children's changes since their tokens in ``token`` (a tuple of them)."""
    if not isinstance(token, tuple) or len(token) != len(children):
        return None
    changed: set[str] = set()
    for child, child_token in zip(children, token):
        part = child.changes_since(child_token)
        if part is None:
            return None
        changed |= part
    return changed


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _Computed(Repository):
    """A repository whose listing is computed from other repositories' listings.

    Those were filtered by their own repositories' rules (which may allow more characters than
    the default), so iteration walks the computed set without filtering it again.
    """

    async def unfiltered_iter(self) -> AsyncIterator[str]:
        for job in sorted(await self.job_ids()):
            yield job

    def __aiter__(self) -> AsyncIterator[str]:
        return self.unfiltered_iter()


class _Aggregate(_Computed):
    def __init__(self, **children: Repository):
        self.children = children

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.children.items())
        return f"<{type(self).__name__} {inner}>"

    def change_token(self) -> Hashable | None:
        tokens = tuple(c.change_token() for c in self.children.values())
        return None if any(t is None for t in tokens) else tokens

    def changes_since(self, token: Hashable) -> set[str] | None:
        return _union_of_changes(list(self.children.values()), token)

    async def _child_sets(self) -> list[AbstractSet[str]]:
        return list(await asyncio.gather(*(c.job_ids() for c in self.children.values())))

    async def info(self, job: str) -> dict[str, Any]:
        """Each child's info, by child name."""
        values = await asyncio.gather(*(c.info(job) for c in self.children.values()))
        return dict(zip(self.children, values))

    async def delete(self, job: str) -> None:
        """Delete ``job`` from every child."""
        await asyncio.gather(*(c.delete(job) for c in self.children.values()))


class AggregateAndRepository(_Aggregate):
    """Holds a job when every child holds it (and nothing when there are no children)."""

    async def _list_job_ids(self) -> AbstractSet[str]:
        sets = sorted(await self._child_sets(), key=len)
        if not sets:
            return frozenset()
        result = sets[0]  # listings are read-only: no copy is needed for one child
        for other in sets[1:]:
            result = result & other  # the operator form allocates once; intersection() twice
        return result

    async def contains(self, item: str) -> bool:
        if not self.children:
            return False
        results = await asyncio.gather(*(c.contains(item) for c in self.children.values()))
        return all(results)


class AggregateOrRepository(_Aggregate):
    """Holds a job when any child holds it."""

    async def _list_job_ids(self) -> AbstractSet[str]:
        sets = await self._child_sets()
        if not sets:
            return frozenset()
        result = sets[0]
        for other in sets[1:]:
            result = result | other
        return result

    async def contains(self, item: str) -> bool:
        for child in self.children.values():
            if await child.contains(item):
                return True
        return False


class BlockingRepository(_Computed):
    """Holds the jobs of ``source`` that ``unless`` does not hold.

    With ``enumerate_unless=False`` the ``unless`` repository is asked about each job of ``source``
    instead of being listed, for when it is large or expensive to list.
    """

    def __init__(self, source: Repository, unless: Repository, enumerate_unless: bool = True):
        self.source = source
        self.unless = unless
        self.enumerate_unless = enumerate_unless

    def __repr__(self) -> str:
        return f"<BlockingRepository {self.source!r} unless {self.unless!r}>"

    def change_token(self) -> Hashable | None:
        source, unless = self.source.change_token(), self.unless.change_token()
        return None if source is None or unless is None else (source, unless)

    def changes_since(self, token: Hashable) -> set[str] | None:
        return _union_of_changes([self.source, self.unless], token)

    async def _list_job_ids(self) -> AbstractSet[str]:
        if (
            self.enumerate_unless
            and type(self.source) is AggregateAndRepository
            and type(self.unless) is AggregateOrRepository
            and self.source.children
        ):
            # A task's default ready set, AND(required) - OR(inhibiting). Subtracting from the
            # smallest required set first, then intersecting what is left, touches far fewer ids
            # than building the full intersection and union (when most jobs are done, the
            # difference is nearly empty and the intersections cost nothing).
            required, inhibiting = await asyncio.gather(self.source._child_sets(), self.unless._child_sets())
            required.sort(key=len)
            result = required[0]
            for blocked in inhibiting:
                if blocked and result:
                    result = result - blocked
            for other in required[1:]:
                if not result:
                    break
                result = result & other
            return result
        if self.enumerate_unless:
            source, unless = await asyncio.gather(self.source.job_ids(), self.unless.job_ids())
            if not unless:
                return source
            return source - unless
        source = await self.source.job_ids()
        inhibited = await asyncio.gather(*(self.unless.contains(j) for j in source))
        return {j for j, b in zip(source, inhibited) if not b}

    async def contains(self, item: str) -> bool:
        return await self.source.contains(item) and not await self.unless.contains(item)

    async def info(self, job: str) -> Any:
        return await self.source.info(job)

    async def delete(self, job: str) -> None:
        await self.source.delete(job)


class MapRepository(_Computed):
    """A view of ``base`` whose info is ``func(base info)`` and whose jobs pass ``filt``.

    ``func`` may be a plain function or a coroutine function; ``filt`` is an async predicate on the
    job id. Deletion reaches ``base`` only when ``allow_deletes`` is set.
    """

    def __init__(
        self,
        base: Repository,
        func: Callable[[Any], Any],
        filt: Callable[[str], Awaitable[bool]] | None = None,
        allow_deletes: bool = False,
    ):
        self.base = base
        self.func = func
        self.filter = filt
        self.allow_deletes = allow_deletes

    def __repr__(self) -> str:
        return f"<MapRepository of {self.base!r}>"

    async def _list_job_ids(self) -> AbstractSet[str]:
        ids = await self.base.job_ids()
        if self.filter is None:
            return ids
        keep = await asyncio.gather(*(_maybe_await(self.filter(j)) for j in ids))
        return {j for j, k in zip(ids, keep) if k}

    async def contains(self, item: str) -> bool:
        if self.filter is not None and not await _maybe_await(self.filter(item)):
            return False
        return await self.base.contains(item)

    async def info(self, job: str) -> Any:
        return await _maybe_await(self.func(await self.base.info(job)))

    async def info_all(self) -> dict[str, Any]:
        ids = await self.job_ids()
        base = await self.base.info_all()
        return {j: await _maybe_await(self.func(v)) for j, v in base.items() if j in ids}

    async def delete(self, job: str) -> None:
        if self.allow_deletes:
            await self.base.delete(job)


class RelatedItemRepository(_Computed):
    """Follows a translation: job ``j`` is here when ``base`` holds ``await translator.info(j)``.

    The result behaves like ``base``: if ``base`` is a blob repository, ``open(j)`` opens the
    translated blob; if it is a metadata repository, ``info(j)`` and ``dump(j, ...)`` use the
    translated id. With ``prefetch_lookup`` a listing reads the translator whole (``info_all``)
    instead of once per job; single lookups always ask the translator.
    """

    def __new__(cls, base_repository: Repository, *args: Any, **kwargs: Any) -> RelatedItemRepository:
        if cls is RelatedItemRepository:
            blob = isinstance(base_repository, BlobRepository)
            meta = isinstance(base_repository, MetadataRepository)
            if blob and meta:
                cls = _RelatedItemBlobMetadataRepository
            elif blob:
                cls = _RelatedItemBlobRepository
            elif meta:
                cls = _RelatedItemMetadataRepository
        return super().__new__(cls, base_repository, *args, **kwargs)

    def __init__(
        self,
        base_repository: Repository,
        translator_repository: Repository,
        allow_deletes: bool = False,
        prefetch_lookup: bool = True,
    ):
        self.base_repository = base_repository
        self.translator_repository = translator_repository
        self.allow_deletes = allow_deletes
        self.prefetch_lookup = prefetch_lookup

    def __repr__(self) -> str:
        return f"<RelatedItemRepository {self.base_repository!r} by {self.translator_repository!r}>"

    async def _translate(self, job: str) -> str | None:
        # Always asked afresh: the prefetched table serves listings, and a translation deleted or
        # changed since must not be followed.
        target = await self.translator_repository.info(job)
        return target if isinstance(target, str) else None

    async def _require(self, job: str) -> str:
        target = await self._translate(job)
        if target is None:
            raise KeyError(f"{self!r}: job {job!r} has no related item in {self.translator_repository!r}")
        return target

    async def _list_job_ids(self) -> set[str]:
        base_ids = await self.base_repository.job_ids()
        if self.prefetch_lookup:
            mapping = await self.translator_repository.info_all()
        else:
            jobs = list(await self.translator_repository.job_ids())
            mapping = dict(zip(jobs, await asyncio.gather(*(self.translator_repository.info(j) for j in jobs))))
        return {j for j, t in mapping.items() if isinstance(t, str) and t in base_ids}

    async def contains(self, item: str) -> bool:
        target = await self._translate(item)
        return target is not None and await self.base_repository.contains(target)

    async def info(self, job: str) -> Any:
        return await self.base_repository.info(await self._require(job))

    async def delete(self, job: str) -> None:
        """Deletes the related item from ``base`` only when ``allow_deletes`` is set."""
        if not self.allow_deletes:
            return
        target = await self._translate(job)
        if target is not None:
            await self.base_repository.delete(target)

    def __getattr__(self, name: str) -> Any:
        # A back end's own plain attributes (``basedir``, ``extension``...) come from the base.
        # Its methods do not: they would take an untranslated job id.
        if name.startswith("_") or name in ("base_repository", "translator_repository"):
            raise AttributeError(name)
        value = getattr(self.base_repository, name)
        if callable(value):
            raise AttributeError(
                f"{type(self).__name__} does not forward method {name!r} of {self.base_repository!r}: "
                "it would bypass the job id translation"
            )
        return value


class _RelatedItemBlobRepository(RelatedItemRepository, BlobRepository):
    async def open(self, job: str, mode: str = "r") -> Any:
        assert isinstance(self.base_repository, BlobRepository)
        # `mode` is passed on as it came, for the base repository to accept or refuse
        return await self.base_repository.open(await self._require(job), mode)  # type: ignore[call-overload]


class _RelatedItemMetadataRepository(RelatedItemRepository, MetadataRepository):
    async def info(self, job: str) -> Any:
        target = await self._translate(job)
        return None if target is None else await self.base_repository.info(target)

    async def dump(self, job: str, data: Any) -> None:
        assert isinstance(self.base_repository, MetadataRepository)
        await self.base_repository.dump(await self._require(job), data)


class _RelatedItemBlobMetadataRepository(_RelatedItemMetadataRepository, _RelatedItemBlobRepository):
    """For bases that are both (YAML metadata stored as blobs)."""
