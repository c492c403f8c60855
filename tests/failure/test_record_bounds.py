"""Every field of a job record is bounded when written, however the record was filled: message,
reason, error type, host, traceback, frames, tails, ``fingerprint_parts``, ``extra`` (strings,
bytes and nested values) and each ``history`` entry; the whole record stays a few hundred KB."""

from __future__ import annotations

from datetime import datetime, timezone

import yaml

from pdtnb.record import LIMITS, Frame, JobRecord, Outcome, read_record, record_from_exception, success_dict
from pdtnb.repository.metadata import yaml_dump

MiB = 1024 * 1024
HUGE = "x" * (20 * MiB)
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def encoded_size(data: dict) -> int:
    try:
        import bson
    except ImportError:
        return len(yaml_dump(data))
    return len(bson.encode(data))


def hostile_record() -> JobRecord:
    nested: dict = {"leaf": HUGE}
    for i in range(20):
        nested = {f"level{i}": nested, "wide": list(range(10_000)), "text": HUGE}
    return JobRecord(
        outcome=Outcome.FAILURE,
        start_time=NOW,
        end_time=NOW,
        host=HUGE,
        error_type=HUGE,
        message=HUGE,
        traceback=HUGE,
        reason=HUGE,
        frames=[Frame(HUGE, i, HUGE, HUGE) for i in range(1000)],
        stdout_tail=HUGE + "the end\n",
        stderr_tail=HUGE,
        exit_code=1,
        fingerprint="f" * 32,
        fingerprint_parts={f"calls f{i}" + "y" * 1000: "z" * 1000 for i in range(5000)},
        extra={
            "pod_message": HUGE,
            "blob": HUGE.encode(),
            "nested": nested,
            "many": {str(i): HUGE[:5000] for i in range(10_000)},
            **{f"key{i}": HUGE[:10_000] for i in range(1000)},
        },
        history=[
            {"result": "failure", "message": HUGE, "reason": HUGE, "extra_thing": nested, "attempt": i}
            for i in range(50)
        ],
    )


def test_every_field_is_bounded_and_the_record_stays_small():
    data = hostile_record().to_dict()
    for key in ("message", "reason"):
        assert len(data[key]) <= LIMITS[key] + 100 and data[key].endswith("more characters cut]"), key
    for key in ("host", "error_type"):
        assert len(data[key]) <= LIMITS["field"] + 100, key
    assert len(data["traceback"]) <= LIMITS["traceback"] + 100
    assert len(data["frames"]) == LIMITS["frames"]
    assert [f["line"] for f in data["frames"]][:5] == [0, 1, 2, 3, 4] and data["frames"][-1]["line"] == 999
    assert all(len(f["file"]) <= 600 and len(f["function"]) <= 300 and len(f["code"]) <= 600 for f in data["frames"])
    for key in ("stdout_tail", "stderr_tail"):
        assert len(data[key]) <= LIMITS["tail"] + 100 and data[key].startswith("[... "), key
    assert data["stdout_tail"].endswith("the end\n")  # a tail keeps the end
    assert len(data["fingerprint_parts"]) == LIMITS["fingerprint_parts"]
    assert all(len(k) <= 300 and len(v) <= 300 for k, v in data["fingerprint_parts"].items())
    assert len(data["pod_message"]) <= LIMITS["extra"] + 100 and "characters cut" in data["pod_message"]
    assert isinstance(data["blob"], str) and "bytes, cut" in data["blob"] and len(data["blob"]) < 20_000
    assert len(data["history"]) == LIMITS["history"]
    assert [h["attempt"] for h in data["history"]] == list(range(40, 50))  # the most recent
    assert all(len(h["message"]) <= LIMITS["reason"] + 100 for h in data["history"])
    size = encoded_size(data)
    assert size < 1 * MiB, size  # MongoDB's limit is 16 MB
    # the cause is all there
    back = read_record(data)
    assert back.failed and back.exit_code == 1 and back.message.startswith("xxxx")


def test_bounding_twice_keeps_the_record_bounded_and_cut_texts_unchanged():
    first = hostile_record().to_dict()
    again = read_record(yaml.safe_load(yaml_dump(first))).to_dict()
    for key in ("message", "reason", "traceback", "stdout_tail", "host", "error_type"):
        assert again[key] == first[key], key  # a text already cut is not cut again
    assert encoded_size(again) < 1 * MiB


def test_ordinary_records_are_unchanged():
    try:
        raise ValueError("bad input 7")
    except ValueError as e:
        record = record_from_exception(e, NOW)
    record.extra = {
        "phase": "Failed",
        "image": "busybox",
        "node": "n1",
        "timed_out": False,
        "sizes": [1, 2, 3],
        "labels": {"a": "b"},
        "when": NOW,
    }
    record.reason = "OOMKilled"
    record.stdout_tail = "out\n"
    record.fingerprint_parts = {"body": "0123456789ab"}
    record.fingerprint = "abc"
    data = record.to_dict()
    assert data["message"] == "bad input 7" and data["reason"] == "OOMKilled" and data["stdout_tail"] == "out\n"
    for key, value in record.extra.items():
        assert data[key] == value, key
    assert data["fingerprint_parts"] == {"body": "0123456789ab"}
    assert data["traceback"] == record.traceback and data["frames"] == [f.to_dict() for f in record.frames]


def test_success_records_keep_at_most_the_limit_of_fingerprint_parts():
    class Printed:
        digest = "d" * 32
        parts = {f"calls f{i:05d}": "0123456789ab" for i in range(LIMITS["fingerprint_parts"] + 50)}

    data = success_dict(NOW, NOW, fingerprint=Printed())  # type: ignore[arg-type]
    assert len(data["fingerprint_parts"]) == LIMITS["fingerprint_parts"]
    few = {"body": "0123456789ab", "calls g": "ba9876543210"}
    Printed.parts = few
    assert success_dict(NOW, NOW, fingerprint=Printed())["fingerprint_parts"] == few  # type: ignore[arg-type]
