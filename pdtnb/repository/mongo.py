"""Metadata in a MongoDB collection, one document per job.

Works with an async collection from either motor (``AsyncIOMotorCollection``) or pymongo's own
async API (``pymongo.AsyncMongoClient``, pymongo >= 4.9; motor is deprecated upstream): both have the
same method names, and this module only uses ``find``, ``find_one``, ``replace_one`` and
``delete_one`` plus a ``ping`` command in :meth:`MongoMetadataRepository.validate`.

Each job is one document ``{"_id": JOB, "data": VALUE}``. A value that BSON cannot store exactly
(datetimes, which BSON truncates to milliseconds and strips of their time zone; dates; non-string
dict keys; integers beyond 64 bits; tuples, sets...) is stored as ``{"_id": JOB, "yaml": TEXT}``
instead, the safe YAML that :class:`~pdtnb.YamlMetadataRepository` writes, so any YAML-able value
(done records with ``start_time``/``end_time`` included) reads back equal to what was dumped.

A document of any other shape is pydatatask 0.4's, which stored a dumped mapping as the document
itself: it reads as that mapping without ``_id`` (a pydatatask document holding only a ``data``
field, or only a string ``yaml`` field, cannot be told apart from pdtnb's and reads as pdtnb's).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from ..errors import PdtnbError
from .base import MetadataRepository
from .metadata import yaml_dump, yaml_load

if TYPE_CHECKING:
    from ..lease.mongo import MongoLease

__all__ = ["MongoMetadataRepository", "MongoError"]

_INT64 = 1 << 63


class MongoError(PdtnbError, ConnectionError):
    """MongoDB could not be reached or refused an operation: server down, bad credentials, timeout,
    not authorized. The message names the endpoint (``host:port``) and the repository."""


def _bson_exact(value: Any) -> bool:
    """Whether ``value`` is plain data that BSON stores and returns unchanged."""
    t = type(value)
    if value is None or t is str or t is bool or t is float:
        return True
    if t is int:
        return bool(-_INT64 <= value < _INT64)  # value is an int: bool() only types the result
    if t is list:
        return all(_bson_exact(v) for v in value)
    if t is dict:
        return all(
            type(k) is str and k and not k.startswith("$") and "\0" not in k and _bson_exact(v)
            for k, v in value.items()
        )
    return False


def _encode(job: str, value: Any) -> dict[str, Any]:
    if _bson_exact(value):
        return {"_id": job, "data": value}
    return {"_id": job, "yaml": yaml_dump(value).decode("utf-8")}


def endpoint_of(collection: Any) -> str:
    """``host:port[,host:port...]`` of the servers a collection's client talks to (best effort)."""
    try:
        client = collection.database.client
    except Exception:
        return "unknown MongoDB endpoint"
    try:
        addresses = list(client.topology_description.server_descriptions())
    except Exception:
        addresses = []
    if not addresses:
        with contextlib.suppress(Exception):
            addresses = list(client._topology_settings.seeds)  # motor before the first operation
    if not addresses:
        return "unknown MongoDB endpoint"
    return ",".join(f"{host}:{port}" for host, port in sorted(addresses, key=str))


class MongoMetadataRepository(MetadataRepository):
    """Metadata stored in a MongoDB collection.

    :param collection: a callable returning an async collection (a session resource), from motor
        or from ``pymongo.AsyncMongoClient``.
    :param subcollection: when given, use ``collection()[subcollection]`` instead.
    """

    def __init__(self, collection: Callable[[], Any], subcollection: str | None = None):
        self._collection = collection
        self._subcollection = subcollection

    @property
    def collection(self) -> Any:
        """The live collection (the session must be open)."""
        result = self._collection()
        if self._subcollection is not None:
            result = result[self._subcollection]
        return result

    def lease_place(self) -> MongoLease:
        """The document ``_id: <this collection's full name>`` in the database's ``pdtnb_leases``
        collection."""
        from ..lease.mongo import MongoLease

        def leases() -> Any:
            return self.collection.database["pdtnb_leases"]

        try:
            name = self.collection.full_name
        except Exception:
            name = self._subcollection or "pipeline"
        return MongoLease(leases, name)

    def __repr__(self) -> str:
        try:
            name = self.collection.full_name
        except Exception:
            name = f"<unopened>{'.' + self._subcollection if self._subcollection else ''}"
        return f"<MongoMetadataRepository {name}>"

    @contextlib.contextmanager
    def _errors(self, collection: Any, doing: str) -> Iterator[None]:
        """Turn pymongo's connection, timeout and authorization errors into a :class:`MongoError`."""
        from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

        try:
            yield
        except PyMongoError as e:
            where = endpoint_of(collection)
            if isinstance(e, ConnectionFailure):
                what = "cannot reach MongoDB server (down, wrong address, or timed out)"
            elif isinstance(e, OperationFailure) and e.code in (13, 18):
                what = "MongoDB refused the credentials or the operation (authentication/authorization failed)"
            else:
                what = "MongoDB error"
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise MongoError(f"{self!r}: {what} at {where} while {doing}: {first[:300]}") from None

    # ---- listing ---------------------------------------------------------------------------

    async def unfiltered_iter(self) -> AsyncIterator[str]:
        coll = self.collection
        with self._errors(coll, "listing jobs"):
            async for doc in coll.find({}, {"_id": 1}):
                yield doc["_id"]

    async def _list_job_ids(self) -> AbstractSet[str]:
        coll = self.collection
        with self._errors(coll, "listing jobs"):
            ids = [doc["_id"] async for doc in coll.find({}, {"_id": 1})]
        if self._all_known_valid(ids):
            return set(ids)
        return self._valid_subset(ids)

    async def contains(self, item: str) -> bool:
        if not self.is_valid_job_id(item):
            return False
        coll = self.collection
        with self._errors(coll, f"looking up job {item!r}"):
            return await coll.find_one({"_id": item}, {"_id": 1}) is not None

    # ---- values ----------------------------------------------------------------------------

    def _decode(self, doc: dict[str, Any] | None) -> Any:
        if doc is None:
            return None
        if len(doc) == 2 and isinstance(doc.get("yaml"), str):
            return yaml_load(doc["yaml"], f"{self!r} job {doc['_id']!r}")
        if len(doc) == 2 and "data" in doc:
            return doc["data"]
        # pydatatask 0.4's layout: the value's own fields beside _id (it stored dump's mapping as
        # the document itself), so a collection it wrote reads as it did, minus _id.
        return {k: v for k, v in doc.items() if k != "_id"}

    async def info(self, job: str) -> Any:
        """The value stored for ``job``, or None when absent."""
        if type(job) is not str:
            return None
        coll = self.collection
        with self._errors(coll, f"reading job {job!r}"):
            doc = await coll.find_one({"_id": job})
        return self._decode(doc)

    async def info_all(self) -> dict[str, Any]:
        """Every valid job mapped to its value, in one query."""
        coll = self.collection
        with self._errors(coll, "reading all jobs"):
            docs = [doc async for doc in coll.find({})]
        valid = self._valid_subset([doc["_id"] for doc in docs])
        return {doc["_id"]: self._decode(doc) for doc in docs if doc["_id"] in valid}

    async def dump(self, job: str, data: Any) -> None:
        """Store ``data`` under ``job``, replacing the previous document atomically."""
        self.check_job_id(job)
        doc = _encode(job, data)
        coll = self.collection
        with self._errors(coll, f"writing job {job!r}"):
            await coll.replace_one({"_id": job}, doc, upsert=True)

    async def delete(self, job: str) -> None:
        """Remove ``job``; succeeds when it is absent."""
        coll = self.collection
        with self._errors(coll, f"deleting job {job!r}"):
            await coll.delete_one({"_id": job})

    async def validate(self) -> None:
        """Check that the server answers and lets us read the collection.

        A server that is down, refuses the credentials or does not answer within the client's
        ``serverSelectionTimeoutMS`` raises :class:`MongoError` naming ``host:port`` and this
        repository, instead of failing later in the middle of a pipeline round.
        """
        coll = self.collection
        with self._errors(coll, "validating the repository (ping)"):
            await coll.database.command("ping")
        with self._errors(coll, "validating the repository (reading the collection)"):
            await coll.find_one({}, {"_id": 1})
