"""A lease kept as a record in shared storage (S3, MongoDB), renewed by compare-and-swap.

The store gives one primitive, "replace this record only if it is still the version I read"; on
it:

* taking a free lease creates the record (only if absent) or replaces a released one;
* the holder renews it every ``ttl / 4`` seconds from a background task, and counts itself
  entitled to act only within ``ttl / 2`` of the moment it *sent* its last successful renewal
  (its own monotonic clock, so no two clocks are compared);
* another controller takes the lease over when its holder is proven dead on this host (process
  gone), or when the record has not changed for ``ttl`` by the taker's clock or by its renewal
  time. A holder that froze for longer finds, on waking, that its window has closed; its next
  renewal fails against the new version and it stops before starting anything.

A holder that cannot reach the store for ``ttl / 2`` stops acting too: it cannot prove the lease
is still its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import abstractmethod
from typing import Any

from .base import Holder, Lease, LeaseLostError

__all__ = ["RecordLease"]

log = logging.getLogger("pdtnb.lease")


class RecordLease(Lease):
    """A lease as one record in a store with compare-and-swap; subclasses give the store."""

    #: Seconds a holder's silence lasts before its lease can be taken over.
    ttl: float = 10.0

    def __init__(self, ttl: float | None = None):
        if ttl is not None:
            self.ttl = float(ttl)
        self._version: Any = None
        self._doc: dict[str, Any] | None = None
        self._valid_until = 0.0
        self._lost: str | None = None
        self._beat: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._seen: tuple[Any, float] | None = None  # (version, first seen) of another's record

    # ---- what a store provides ---------------------------------------------------------------

    @abstractmethod
    async def _read(self) -> tuple[dict[str, Any] | None, Any]:
        """The record and its version, ``(None, None)`` when there is none."""

    @abstractmethod
    async def _create(self, doc: dict[str, Any]) -> Any:
        """Create the record if there is none: its version, or None if one exists."""

    @abstractmethod
    async def _replace(self, doc: dict[str, Any], version: Any) -> Any:
        """Replace the record if it is still at ``version``: the new version, or None."""

    # ---- the protocol ------------------------------------------------------------------------

    def _stale(self, doc: dict[str, Any], version: Any) -> bool:
        if doc.get("released"):
            return True
        holder = Holder.from_dict(doc.get("holder"))
        if holder is None or holder.is_dead_here():
            return True
        now = time.monotonic()
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, now)
        if now - self._seen[1] >= self.ttl:
            return True
        renewed = doc.get("renewed")
        return isinstance(renewed, (int, float)) and time.time() - renewed >= self.ttl

    async def try_acquire(self, holder: Holder) -> tuple[bool, Holder | None]:
        if self._beat is not None:
            raise RuntimeError(f"{self!r} is already held by this process")
        doc, version = await self._read()
        mine = {"holder": holder.to_dict(), "renewed": time.time(), "ttl": self.ttl, "released": False}
        sent = time.monotonic()
        if doc is None:
            new = await self._create(mine)
        elif self._stale(doc, version):
            if not doc.get("released"):
                old = Holder.from_dict(doc.get("holder"))
                log.warning(
                    "taking over the lease %s from %s, which stopped renewing it",
                    self.where,
                    old.describe() if old else "an unreadable holder",
                )
            new = await self._replace(mine, version)
        else:
            return False, Holder.from_dict(doc.get("holder"))
        if new is None:  # someone else got there first
            doc, _ = await self._read()
            return False, Holder.from_dict((doc or {}).get("holder"))
        self._doc, self._version = mine, new
        self._valid_until = sent + self.ttl / 2
        self._lost = None
        self._seen = None
        self._lock = asyncio.Lock()
        self._beat = asyncio.create_task(self._heartbeat(), name=f"pdtnb lease {self.where}")
        return True, None

    async def _heartbeat(self) -> None:
        while self._lost is None:
            await asyncio.sleep(self.ttl / 4)
            try:
                await self._renew()
            except LeaseLostError:
                return
            except Exception as e:  # the store is unreachable: the window closes by itself
                log.warning("could not renew the lease %s: %s", self.where, e)

    async def _renew(self) -> None:
        assert self._lock is not None and self._doc is not None
        async with self._lock:
            if self._lost is not None:
                raise LeaseLostError(self._lost)
            doc = dict(self._doc, renewed=time.time())
            sent = time.monotonic()
            new = await self._replace(doc, self._version)
            if new is None:
                current, _ = await self._read()
                other = Holder.from_dict((current or {}).get("holder"))
                self._lost = (
                    f"the lease {self.where} was taken over by "
                    f"{other.describe() if other else 'another controller'} while this process "
                    "was not renewing it; stopping so that two controllers never act at once"
                )
                raise LeaseLostError(self._lost)
            self._doc, self._version = doc, new
            self._valid_until = sent + self.ttl / 2

    def valid(self) -> bool:
        return self._lost is None and self._beat is not None and time.monotonic() < self._valid_until

    async def confirm(self) -> None:
        if self._beat is None:
            raise LeaseLostError(self._lost or f"the lease {self.where} is not held by this process")
        deadline = time.monotonic() + self.ttl / 2
        while True:
            try:
                await self._renew()
                return
            except LeaseLostError:
                raise
            except Exception as e:
                if time.monotonic() >= deadline:
                    self._lost = f"could not renew the lease {self.where} for {self.ttl / 2:g} s: {e}"
                    raise LeaseLostError(self._lost) from e
                await asyncio.sleep(min(1.0, self.ttl / 8))

    async def release(self) -> None:
        beat, self._beat = self._beat, None
        if beat is None:
            return
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await beat
        if self._lost is None and self._doc is not None:
            try:
                await self._replace(dict(self._doc, released=True, renewed=time.time()), self._version)
            except Exception as e:  # it expires by itself
                log.warning("could not release the lease %s: %s", self.where, e)
        self._doc = self._version = None

    async def current_holder(self) -> Holder | None:
        doc, _ = await self._read()
        if doc is None or doc.get("released"):
            return None
        return Holder.from_dict(doc.get("holder"))
