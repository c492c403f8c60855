"""A MongoDB collection written by pydatatask 0.4 (which stored a dumped mapping as the document
itself, beside ``_id``) reads in pdtnb as pydatatask read it, minus ``_id``; pdtnb's own layouts
(``data`` / ``yaml``) are unchanged. Real MongoDB-wire server (SecantusDB, or PDTNB_TEST_MONGODB_URL)."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

import pdtnb
from pdtnb.record import is_failure_record, read_record
from pdtnb.repository.mongo import MongoMetadataRepository

pytest.importorskip("pymongo")


async def test_documents_of_pydatatask_read_as_their_fields(mongo_url: str) -> None:
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    name = f"pdtnb_test_{uuid.uuid4().hex[:12]}"
    coll = client[name]["done"]
    try:
        # what pydatatask 0.4.7's MongoMetadataRepository.dump left: replace_one({"_id": job}, data)
        when = datetime(2024, 5, 1, 12, 0, 0)
        await coll.insert_many(
            [
                {"_id": "ok", "result": "success", "start_time": when, "end_time": when},
                {
                    "_id": "bad",
                    "result": "exception",
                    "exception": "ValueError('boom')",
                    "traceback": ['  File "x.py", line 3\n'],
                },
                {"_id": "empty"},
                {"_id": "mine", "data": {"n": 1}},  # pdtnb's own layout
            ]
        )
        repo = MongoMetadataRepository(lambda: client[name], "done")
        ok = await repo.info("ok")
        assert ok == {"result": "success", "start_time": when, "end_time": when}
        assert not is_failure_record(ok)
        bad = await repo.info("bad")
        assert "_id" not in bad and is_failure_record(bad)
        assert read_record(bad).reason_line() == "ValueError: boom"
        assert await repo.info("empty") == {}
        assert await repo.info("mine") == {"n": 1}
        assert await repo.info("absent") is None
        everything = await repo.info_all()
        assert everything["ok"] == ok and everything["bad"] == bad and everything["mine"] == {"n": 1}
        # rewriting a job stores pdtnb's layout, read back the same
        await repo.dump("ok", {"result": "success", "note": "rewritten"})
        assert await repo.info("ok") == {"result": "success", "note": "rewritten"}
        assert set(await coll.find_one({"_id": "ok"})) == {"_id", "data"}
        # and a pipeline counts them: "bad" failed, the others done
        inp = pdtnb.InProcessMetadataRepository({"ok": 1, "bad": 1})
        task = pdtnb.InProcessSyncTask("t", repo)(_noop)
        task.link("inp", inp, is_input=True)
        pipeline = pdtnb.Pipeline([task], pdtnb.Session(), [])
        async with pipeline:
            status = (await pdtnb.pipeline_status(pipeline)).task("t")
        assert (status.done, status.failed, status.ready) == (3, 1, 0)  # ok, empty, mine; bad
    finally:
        await client.drop_database(name)
        await client.close()


async def _noop(job: str, inp: object) -> None:
    pass
