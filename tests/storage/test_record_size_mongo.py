"""A failure over a huge value keeps its cause in MongoDB: a task body raising a
UnicodeDecodeError over 20 MiB of bytes (or an exception carrying them) is recorded in a
MongoMetadataRepository as its error type and a message cut and marked as cut, in a document far
below MongoDB's 16 MB limit, on a real MongoDB-wire server (SecantusDB, or PDTNB_TEST_MONGODB_URL)."""

from __future__ import annotations

import uuid

import pytest

import pdtnb
from pdtnb.record import LIMITS, read_record
from pdtnb.repository.mongo import MongoMetadataRepository

pymongo = pytest.importorskip("pymongo")
import bson  # noqa: E402  (pymongo's)

MiB = 1024 * 1024
BLOB = bytes(range(128, 256)) * (20 * MiB // 128)  # 20 MiB, none of it UTF-8


async def decode(job, inp):
    kind = await inp.info(job)
    if kind == "plain":  # what a body decoding a binary file does
        BLOB.decode("utf-8")
    if kind == "huge":  # a UnicodeDecodeError whose message holds the whole blob
        try:
            BLOB.decode("utf-8")
        except UnicodeDecodeError as e:
            error = UnicodeDecodeError("utf-8", BLOB, 0, len(BLOB), "not text: " + BLOB.decode("latin-1"))
            if hasattr(error, "add_note"):  # Python 3.11: notes are part of the formatted traceback
                error.add_note("the blob: " + BLOB.decode("latin-1"))
            raise error from e
    if kind == "args":  # an exception carrying the bytes: its str() is their repr, 80 MB of text
        raise ValueError("cannot decode", BLOB)


async def test_a_huge_decode_failure_keeps_its_cause_in_mongo(mongo_url: str) -> None:
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    name = f"pdtnb_test_{uuid.uuid4().hex[:12]}"
    session = pdtnb.Session()

    @session.resource
    async def database():
        yield client[name]

    inp = pdtnb.InProcessMetadataRepository({"plain": "plain", "huge": "huge", "args": "args"})
    done = MongoMetadataRepository(database, "done")
    task = pdtnb.InProcessSyncTask("decode", done)(decode)
    task.link("inp", inp, is_input=True)
    pipeline = pdtnb.Pipeline([task], session, [])
    try:
        async with pipeline:
            summary = await pipeline.run(timeout=120)
            assert summary.failed == 3, summary.describe()
            records = {job: read_record(await done.info(job)) for job in ("plain", "huge", "args")}
            status = await pdtnb.pipeline_status(pipeline)
            assert status.task("decode").failed == 3
        raw = {doc["_id"]: doc async for doc in client[name]["done"].find({})}
    finally:
        await client.drop_database(name)
        await client.close()

    for job, record in records.items():
        assert record.failed and record.outcome is pdtnb.Outcome.FAILURE, job
        assert record.error_type == ("ValueError" if job == "args" else "UnicodeDecodeError"), record.error_type
        assert "decode" in [f.function for f in record.frames], job
        assert record.traceback and record.traceback.startswith("Traceback"), job
        # the stored document is the record itself (not a DocumentTooLarge note), far below 16 MB
        size = len(bson.encode(raw[job]))
        assert size < 256 * 1024, (job, size)
        assert "DocumentTooLarge" not in str(raw[job])

    plain = records["plain"].message
    assert plain.startswith("'utf-8' codec can't decode byte 0x80 in position 0") and "cut" not in plain
    for job in ("huge", "args"):
        message = records[job].message
        assert len(message) <= LIMITS["message"] + 100, (job, len(message))
        assert message.rstrip().endswith("more characters cut]"), message[-200:]
    assert records["huge"].message.startswith("'utf-8' codec can't decode bytes in position 0-")
    assert "not text: " in records["huge"].message
    assert records["args"].message.startswith("('cannot decode', b'\\x80\\x81")
    assert "characters cut" in records["huge"].traceback
    assert records["huge"].reason_line().startswith("UnicodeDecodeError: 'utf-8' codec can't decode")


async def test_records_filled_by_hand_are_bounded_too(mongo_url: str) -> None:
    """A record whose reason, extra, tails and history a task kind filled itself (a pod's message,
    an output tail, a stored legacy attempt) with 20 MiB each is written to MongoDB, bounded,
    where the unbounded document would be refused (DocumentTooLarge)."""
    from pymongo import AsyncMongoClient

    from pdtnb.record import JobRecord, Outcome

    huge = BLOB.decode("latin-1")
    client = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    name = f"pdtnb_test_{uuid.uuid4().hex[:12]}"
    try:
        done = MongoMetadataRepository(lambda: client[name], "done")
        record = JobRecord(
            Outcome.FAILURE,
            exit_code=1,
            reason=huge,
            stdout_tail=huge,
            extra={"pod_message": huge, "blob": BLOB},
            history=[{"result": "failure", "message": huge}],
        )
        await done.dump("j", record.to_dict())
        raw = await client[name]["done"].find_one({"_id": "j"})
        assert len(bson.encode(raw)) < 256 * 1024
        back = read_record(await done.info("j"))
        assert back.exit_code == 1 and back.reason.endswith("more characters cut]")
        assert back.extra["pod_message"].endswith("more characters cut]")
        assert back.history[0]["message"].endswith("more characters cut]")
    finally:
        await client.drop_database(name)
        await client.close()
