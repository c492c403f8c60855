"""MongoMetadataRepository against a real MongoDB-protocol server (SecantusDB, or
PDTNB_TEST_MONGODB_URL), with both async client kinds: motor and pymongo's AsyncMongoClient."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import date, datetime, timezone

import pytest
from mongoserver import free_port, mongo_auth_server, mongo_server

import pdtnb
from pdtnb.repository.mongo import MongoError, MongoMetadataRepository

pymongo = pytest.importorskip("pymongo")
from pymongo import monitoring  # noqa: E402

CLIENT_KINDS = ["motor", "pymongo"]
RUN_TIMEOUT = 10


@pytest.fixture(scope="module")
def mongo_url(service_unavailable):
    try:
        with mongo_server() as url:
            yield url
    except RuntimeError as e:
        service_unavailable("MongoDB (SecantusDB)", str(e))


class FindCounter(monitoring.CommandListener):
    """Counts the commands sent, by name."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def reads(self) -> int:
        return sum(1 for c in self.commands if c in ("find", "getMore", "aggregate", "count"))


def make_client(kind: str, url: str, **kwargs):
    kwargs.setdefault("serverSelectionTimeoutMS", 2000)
    kwargs.setdefault("tz_aware", False)
    if kind == "motor":
        motor_asyncio = pytest.importorskip("motor.motor_asyncio")
        return motor_asyncio.AsyncIOMotorClient(url, **kwargs)
    from pymongo import AsyncMongoClient

    return AsyncMongoClient(url, **kwargs)


async def close_client(client) -> None:
    result = client.close()
    if asyncio.iscoroutine(result):
        await result


@pytest.fixture(params=CLIENT_KINDS)
async def mongo(request, mongo_url):
    """(client, database, listener) for one client kind, on a fresh database dropped afterwards."""
    listener = FindCounter()
    client = make_client(request.param, mongo_url, event_listeners=[listener])
    db = client[f"pdtnb_test_{uuid.uuid4().hex[:12]}"]
    try:
        yield client, db, listener
    finally:
        try:
            await client.drop_database(db.name)
        finally:
            await close_client(client)


def repo_on(db, name: str = "jobs", subcollection: str | None = None) -> MongoMetadataRepository:
    coll = db[name]
    return MongoMetadataRepository(lambda: coll, subcollection)


async def test_dump_info_contains_delete(mongo, listed):
    _, db, _ = mongo
    repo = repo_on(db)
    await repo.validate()
    assert await listed(repo) == set()
    assert await repo.info("a") is None
    assert not await repo.contains("a")
    await repo.dump("a", {"x": 1, "nested": {"l": [1, "two", None, 3.5, True]}})
    await repo.dump("b", [1, 2, 3])
    await repo.dump("c", "just a string")
    await repo.dump("d", 42)
    await repo.dump("e", None)
    assert await listed(repo) == {"a", "b", "c", "d", "e"}
    assert await repo.info("a") == {"x": 1, "nested": {"l": [1, "two", None, 3.5, True]}}
    assert await repo.info("b") == [1, 2, 3]
    assert await repo.info("c") == "just a string"
    assert await repo.info("d") == 42
    assert await repo.info("e") is None
    assert await repo.contains("e")  # present, with a None value
    assert not await repo.contains("../x")
    await repo.delete("a")
    assert not await repo.contains("a")
    assert await repo.info("a") is None
    assert await listed(repo) == {"b", "c", "d", "e"}
    assert await repo.info_all() == {"b": [1, 2, 3], "c": "just a string", "d": 42, "e": None}


async def test_non_bson_values_round_trip(mongo):
    _, db, _ = mongo
    repo = repo_on(db)
    now = datetime.now(timezone.utc)  # microseconds and a time zone: BSON would lose both
    record = {"result": "success", "start_time": now, "end_time": now}
    await repo.dump("done1", record)
    await repo.dump("d2", {"day": date(2024, 2, 29), 3: "int key", "big": 1 << 70})
    await repo.dump("d3", {"$weird": 1})
    assert await repo.info("done1") == record
    assert (await repo.info("done1"))["start_time"].tzinfo is not None
    assert await repo.info("d2") == {"day": date(2024, 2, 29), 3: "int key", "big": 1 << 70}
    assert await repo.info("d3") == {"$weird": 1}
    assert (await repo.info_all())["done1"] == record


async def test_replace_semantics(mongo):
    _, db, _ = mongo
    repo = repo_on(db)
    await repo.dump("j", {"a": 1, "b": 2})
    await repo.dump("j", {"c": 3})  # replaced whole, not merged
    assert await repo.info("j") == {"c": 3}
    await repo.dump("j", datetime(2020, 1, 1, tzinfo=timezone.utc))  # a yaml-stored value...
    await repo.dump("j", [1])  # ...replaced by a plain one leaves no stale field
    assert await repo.info("j") == [1]
    assert await db["jobs"].count_documents({}) == 1


async def test_subcollection_isolation(mongo, listed):
    _, db, _ = mongo
    parent = repo_on(db)
    sub1 = repo_on(db, subcollection="one")
    sub2 = repo_on(db, subcollection="two")
    await parent.dump("p", 0)
    await sub1.dump("s", 1)
    await sub2.dump("s", 2)
    assert await listed(parent) == {"p"}
    assert await listed(sub1) == {"s"}
    assert await sub1.info("s") == 1 and await sub2.info("s") == 2
    assert sub1.collection.full_name.endswith("jobs.one")
    await sub1.delete("s")
    assert await sub2.info("s") == 2
    assert not await parent.contains("s")


async def test_invalid_ids_refused_and_skipped(mongo, listed, repo_warnings):
    _, db, _ = mongo
    repo = repo_on(db)
    for bad in ["", "../etc", "a b", "x" * 201, "é"]:
        with pytest.raises(pdtnb.InvalidJobIdError):
            await repo.dump(bad, 1)
    assert await db["jobs"].count_documents({}) == 0
    await db["jobs"].insert_one({"_id": "not/valid", "data": 1})  # written behind pdtnb's back
    await db["jobs"].insert_one({"_id": 7, "data": 1})
    await repo.dump("ok", 2)
    assert await listed(repo) == {"ok"}
    assert await repo.info_all() == {"ok": 2}
    assert any("not valid job ids" in w for w in repo_warnings())


async def test_delete_missing_ok(mongo):
    _, db, _ = mongo
    repo = repo_on(db)
    await repo.delete("absent")
    await repo.delete("absent")
    assert not await repo.contains("absent")


async def test_info_all_is_one_query(mongo):
    _, db, listener = mongo
    repo = repo_on(db)
    for i in range(50):
        await repo.dump(f"j{i}", {"i": i})
    listener.commands.clear()
    everything = await repo.info_all()
    assert everything == {f"j{i}": {"i": i} for i in range(50)}
    assert listener.commands.count("find") == 1, listener.commands
    assert listener.reads() == 1, listener.commands


async def test_listing_5000_documents(mongo, listed):
    _, db, listener = mongo
    repo = repo_on(db)
    await db["jobs"].insert_many([{"_id": f"job{i}", "data": {"n": i}} for i in range(5000)])
    listener.commands.clear()
    t0 = time.monotonic()
    ids = await listed(repo)
    assert ids == {f"job{i}" for i in range(5000)}
    assert time.monotonic() - t0 < 30
    assert listener.commands.count("find") == 2  # one per listing interface, batches via getMore
    everything = await repo.info_all()
    assert len(everything) == 5000 and everything["job4999"] == {"n": 4999}


@pytest.mark.parametrize("kind", CLIENT_KINDS)
async def test_pipeline_run_with_mongo_repositories(kind, mongo_url):
    session = pdtnb.Session()
    dbname = f"pdtnb_pipe_{uuid.uuid4().hex[:12]}"

    @session.resource
    async def jobs_collection():
        client = make_client(kind, mongo_url)
        try:
            yield client[dbname]["pipeline"]
        finally:
            await client.drop_database(dbname)
            await close_client(client)

    inputs = MongoMetadataRepository(jobs_collection, "inputs")
    outputs = MongoMetadataRepository(jobs_collection, "outputs")
    done = MongoMetadataRepository(jobs_collection, "done")

    @pdtnb.InProcessSyncTask("double", done)
    async def double(job, inp, out):
        await out.dump(job, {"doubled": (await inp.info(job))["n"] * 2})

    double.link("inp", inputs, is_input=True)
    double.link("out", outputs, is_output=True)
    async with pdtnb.Pipeline([double], session) as pipeline:
        for i in range(5):
            await inputs.dump(f"j{i}", {"n": i})
        status = await pdtnb.pipeline_status(pipeline)
        assert status.task("double").ready == 5
        await pipeline.run(timeout=RUN_TIMEOUT)
        assert await outputs.info_all() == {f"j{i}": {"doubled": 2 * i} for i in range(5)}
        records = await done.info_all()
        assert set(records) == {f"j{i}" for i in range(5)}
        for record in records.values():
            assert record["result"] == "success"
            assert isinstance(record["start_time"], datetime)
            assert record["start_time"] <= record["end_time"]
        status = await pdtnb.pipeline_status(pipeline)
        task = status.task("double")
        assert (task.ready, task.live, task.done, task.failed) == (0, 0, 5, 0)
        counts = {link.name: link.count for link in task.links}
        assert counts["inp"] == 5 and counts["out"] == 5


@pytest.mark.parametrize("kind", CLIENT_KINDS)
async def test_unreachable_server_fails_clearly_at_validate(kind):
    port = free_port()  # nothing listens there
    client = make_client(kind, f"mongodb://127.0.0.1:{port}/?directConnection=true")
    try:
        coll = client["db"]["jobs"]
        repo = MongoMetadataRepository(lambda: coll)
        t0 = time.monotonic()
        with pytest.raises(MongoError) as info:
            await asyncio.wait_for(repo.validate(), 15)
        assert time.monotonic() - t0 < 10
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message
        assert "MongoMetadataRepository" in message and "db.jobs" in message
        assert isinstance(info.value, pdtnb.PdtnbError)
    finally:
        await close_client(client)


@pytest.mark.parametrize("kind", CLIENT_KINDS)
async def test_unreachable_server_fails_pipeline_open(kind):
    port = free_port()
    session = pdtnb.Session()

    @session.resource
    async def coll():
        client = make_client(kind, f"mongodb://127.0.0.1:{port}/?directConnection=true")
        try:
            yield client["db"]["jobs"]
        finally:
            await close_client(client)

    done = MongoMetadataRepository(coll)
    inp = pdtnb.InProcessMetadataRepository()

    @pdtnb.InProcessSyncTask("t", done)
    async def t(job):
        pass

    t.link("inp", inp, is_input=True)
    with pytest.raises(MongoError, match=f"127.0.0.1:{port}"):
        async with pdtnb.Pipeline([t], session):
            pass


@pytest.fixture(scope="module")
def auth_server(service_unavailable):
    if os.environ.get("PDTNB_TEST_MONGODB_URL"):
        pytest.skip("the credentials test starts its own SecantusDB with --auth")
    try:
        with mongo_auth_server("pdtnb", "right-password") as server:
            yield server
    except RuntimeError as e:
        service_unavailable("MongoDB (SecantusDB --auth)", str(e))


@pytest.mark.parametrize("kind", CLIENT_KINDS)
async def test_refused_credentials_fail_clearly_at_validate(kind, auth_server):
    url, port = auth_server
    good = make_client(kind, url, username="pdtnb", password="right-password")
    try:
        repo = MongoMetadataRepository(lambda: good["db"]["jobs"])
        await repo.validate()
        await repo.dump("a", 1)
        assert await repo.info("a") == 1
    finally:
        await close_client(good)
    bad = make_client(kind, url, username="pdtnb", password="wrong")
    try:
        repo = MongoMetadataRepository(lambda: bad["db"]["jobs"])
        t0 = time.monotonic()
        with pytest.raises(MongoError, match=f"127.0.0.1:{port}") as info:
            await asyncio.wait_for(repo.validate(), 15)
        assert time.monotonic() - t0 < 10
        assert "db.jobs" in str(info.value)
    finally:
        await close_client(bad)
    anonymous = make_client(kind, url)  # ping is allowed without credentials; reading is not
    try:
        repo = MongoMetadataRepository(lambda: anonymous["db"]["jobs"])
        with pytest.raises(MongoError, match=f"127.0.0.1:{port}"):
            await asyncio.wait_for(repo.validate(), 15)
    finally:
        await close_client(anonymous)
