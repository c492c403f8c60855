"""Success records that in-process tasks write into in-memory ``done`` repositories are stored
compactly (pdtnb.repository.memory); no way of reading them may tell: every read gives the dict
``success_dict`` builds, and from then on the same dict object, as for any stored value."""

from __future__ import annotations

import copy
import json
import pickle
import time
from datetime import datetime, timedelta, timezone

import pytest

import pdtnb
from pdtnb.record import is_failure_record, success_dict_ns, time_from_ns
from pdtnb.repository.memory import JobDict, _is_compact, success_writer

START = 1_790_000_000_123_456_789  # ns since the epoch
END = START + 2_500_000


def at(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)


def expected(start: int = START, end: int = END) -> dict:
    return {
        "result": "success",
        "attempt": 1,
        "start_time": at(start),
        "end_time": at(end),
        "host": pdtnb.record.host_name(),
    }


def compact_repo(jobs=("a", "b", "c")) -> pdtnb.InProcessMetadataRepository:
    repo = pdtnb.InProcessMetadataRepository()
    for i, job in enumerate(jobs):
        repo.record_success_ns(job, START + i, END + i)
    return repo


def raw_values(data: dict) -> list:
    return list(dict.values(data))


def test_time_from_ns_is_what_datetime_now_gives():
    before = datetime.now(timezone.utc)
    ns = time.time_ns()
    after = datetime.now(timezone.utc)
    t = time_from_ns(ns)
    assert before <= t <= after and t.tzinfo is timezone.utc
    assert time_from_ns(START) == expected()["start_time"]
    assert time_from_ns(START).microsecond == 123456  # cut, not rounded


async def test_a_compact_record_reads_as_the_dict_that_would_have_been_dumped():
    repo = compact_repo(["a"])
    assert _is_compact(raw_values(repo.data)[0])  # stored compactly...
    record = await repo.info("a")
    assert record == expected() == success_dict_ns(START, END)  # ...read as the dict
    assert list(record) == ["result", "attempt", "start_time", "end_time", "host"]
    assert type(record) is dict and not is_failure_record(record)
    assert pdtnb.record.read_record(record).succeeded


async def test_reads_give_one_object_and_keep_changes_as_for_any_stored_value():
    repo = compact_repo(["a"])
    token = repo.change_token()
    first = await repo.info("a")
    assert await repo.info("a") is first and repo.data["a"] is first and repo.data.get("a") is first
    assert repo.change_token() == token, "materialising a record is not a change"
    first["note"] = "kept"
    assert (await repo.info("a"))["note"] == "kept"
    # the same as a dict dumped by a caller: the repository keeps the object it was given
    await repo.dump("b", {"x": 1})
    (await repo.info("b"))["y"] = 2
    assert repo.data["b"] == {"x": 1, "y": 2}


async def test_every_way_of_reading_data_gives_dicts():
    for read in (
        lambda d: list(d.values()),
        lambda d: [v for _, v in d.items()],
        lambda d: list(dict(d).values()),
        lambda d: list({**d}.values()),
        lambda d: list(d.copy().values()),
        lambda d: list((d | {}).values()),
        lambda d: list(({} | d).values()),
        lambda d: [d[k] for k in d],
        lambda d: [d.get(k) for k in list(d)],
        lambda d: [d.setdefault(k) for k in list(d)],
        lambda d: list(pickle.loads(pickle.dumps(d)).values()),
        lambda d: list(copy.deepcopy(d).values()),
        lambda d: list(copy.copy(d).values()),
        lambda d: [json.loads(json.dumps(d, default=str))[k] for k in d],
        lambda d: [d.pop("a")],
        lambda d: [d.popitem()[1]],
    ):
        repo = compact_repo()
        values = read(repo.data)
        assert values and all(type(v) is dict and v["result"] == "success" for v in values), values
    repo = compact_repo(["a"])
    assert repo.data == {"a": expected()} and not repo.data != {"a": expected()}
    assert compact_repo(["a"]).data == compact_repo(["a"]).data
    assert "datetime.datetime(" in repr(compact_repo(["a"]).data)
    assert "'result': 'success'" in repr(compact_repo(["a"]).data.values())
    assert "object at" not in repr(compact_repo(["a"]).data.items())


async def test_info_all_gives_the_stored_dicts():
    repo = compact_repo()
    await repo.dump("d", [1, 2])
    everything = await repo.info_all()
    assert everything == {
        "a": expected(START, END),
        "b": expected(START + 1, END + 1),
        "c": expected(START + 2, END + 2),
        "d": [1, 2],
    }
    assert everything["a"] is await repo.info("a")
    assert not any(_is_compact(v) for v in raw_values(repo.data))


async def test_overwrite_delete_and_listing_of_compact_records(listed):
    repo = compact_repo()
    assert await listed(repo) == {"a", "b", "c"}
    token = repo.change_token()
    await repo.dump("a", {"result": "failure"})
    await repo.delete("b")
    assert repo.changes_since(token) == {"a", "b"}
    assert await repo.info("a") == {"result": "failure"} and await repo.info("b") is None
    assert await listed(repo) == {"a", "c"}
    repo.data.clear()
    assert await listed(repo) == set() and repo.data == {}


async def test_a_dict_given_by_the_caller_gets_plain_records():
    store: dict = {}
    repo = pdtnb.InProcessMetadataRepository(store)
    repo.record_success_ns("a", START, END)
    assert store == {"a": expected()} and type(store["a"]) is dict


def test_invalid_job_id_is_refused():
    with pytest.raises(pdtnb.InvalidJobIdError):
        pdtnb.InProcessMetadataRepository().record_success_ns("../x", START, END)


def test_a_subclass_that_overrides_dump_gets_dicts_through_dump():
    class Audited(pdtnb.InProcessMetadataRepository):
        async def dump(self, job, data):
            await super().dump(job, data)

    assert success_writer(Audited()) is None
    assert success_writer(pdtnb.InProcessMetadataRepository()) is not None
    assert success_writer(pdtnb.YamlMetadataFileRepository("/tmp/nowhere")) is None


async def test_the_change_log_covers_as_many_changes_as_the_dict_has_keys(monkeypatch):
    monkeypatch.setattr(JobDict, "LOG_LIMIT", 4)
    repo = pdtnb.InProcessMetadataRepository()
    token = repo.change_token()
    for i in range(20):  # a round writing every job: a reader one round behind still sees it
        repo.record_success_ns(f"j{i}", START, END)
    assert repo.changes_since(token) == {f"j{i}" for i in range(20)}
    token = repo.change_token()
    for _ in range(3):
        for i in range(20):
            await repo.dump(f"j{i}", i)
    assert repo.changes_since(token) is None  # further behind than the log: recompute
    assert len(repo.data.log) <= 2 * 20


async def test_a_pipeline_of_in_process_tasks_records_compactly_and_reads_back_dicts():
    inp = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(50)})
    out, done = pdtnb.InProcessMetadataRepository(), pdtnb.InProcessMetadataRepository()

    @pdtnb.InProcessSyncTask("t", done)
    async def body(job, inp, out):
        await out.dump(job, await inp.info(job) + 1)

    body.link("inp", inp, is_input=True)
    body.link("out", out, is_output=True)
    before = datetime.now(timezone.utc)
    async with pdtnb.Pipeline([body], pdtnb.Session()) as pipeline:
        summary = await pipeline.run(timeout=5)
        status = await pdtnb.pipeline_status(pipeline)
    after = datetime.now(timezone.utc)
    assert summary.succeeded == 50 and status.tasks[0].done == 50 and status.tasks[0].failed == 0
    assert all(_is_compact(v) for v in raw_values(done.data))
    for job, record in done.data.items():
        assert set(record) == {
            "result",
            "attempt",
            "start_time",
            "end_time",
            "host",
            "fingerprint",
            "fingerprint_parts",
        }, job
        assert record["fingerprint"] == body.fingerprint().digest, "the code that made it, kept in the compact form"
        assert record["fingerprint_parts"] == dict(body.fingerprint().parts)
        assert record["result"] == "success" and record["attempt"] == 1
        assert before <= record["start_time"] <= record["end_time"] <= after


async def test_a_record_written_while_values_are_being_iterated_reads_as_a_dict():
    repo = compact_repo(["a", "b"])
    await repo.dump("a", {"plain": 1})
    values = iter(repo.data.values())
    assert next(values) == {"plain": 1}
    repo.record_success_ns("a", START, END)  # rewritten in place, compactly, meanwhile
    items = iter(repo.data.items())
    assert next(values) == expected(START + 1, END + 1)
    assert next(items) == ("a", expected())
