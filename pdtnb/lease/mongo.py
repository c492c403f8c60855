"""The lease of a pipeline whose records are in MongoDB: one document, replaced by a filtered
``find_one_and_replace`` on its generation number (MongoDB's compare-and-swap)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .record import RecordLease

__all__ = ["MongoLease"]


class MongoLease(RecordLease):
    """A :class:`RecordLease` kept as the document ``_id: name`` of the collection ``collection()``
    returns (motor or pymongo's async client)."""

    def __init__(self, collection: Callable[[], Any], name: str, ttl: float | None = None):
        super().__init__(ttl)
        self._collection = collection
        self.name = name
        try:
            where = collection().full_name
        except Exception:  # the session is not open yet
            where = "mongodb"
        self.where = f"{where} _id={name!r}"

    def __repr__(self) -> str:
        return f"<MongoLease {self.where}>"

    async def _read(self) -> tuple[dict[str, Any] | None, Any]:
        doc = await self._collection().find_one({"_id": self.name})
        if doc is None:
            return None, None
        return dict(doc.get("lease") or {}), doc.get("generation")

    async def _create(self, doc: dict[str, Any]) -> Any:
        from pymongo.errors import DuplicateKeyError

        try:
            await self._collection().insert_one({"_id": self.name, "generation": 1, "lease": doc})
        except DuplicateKeyError:
            return None
        return 1

    async def _replace(self, doc: dict[str, Any], version: Any) -> Any:
        new = (version or 0) + 1
        found = await self._collection().find_one_and_replace(
            {"_id": self.name, "generation": version}, {"generation": new, "lease": doc}
        )
        return None if found is None else new
