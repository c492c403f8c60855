"""The job record: one writer, one reader, readable YAML, bounded and encodable fields, and the
records of pydatatask 0.4.7 and earlier pdtnb releases still understood."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import pytest
import yaml

import pdtnb
from pdtnb.record import LIMITS, JobRecord, Outcome, read_record, record_from_exception
from pdtnb.repository.metadata import yaml_dump


def raise_in_user_code(message: str) -> BaseException:
    def inner():
        raise ValueError(message)

    try:
        inner()
    except ValueError as e:
        return e
    raise AssertionError("not reached")


def test_record_of_an_exception_has_type_message_frames_and_round_trips():
    exc = raise_in_user_code("bad input 7")
    record = record_from_exception(exc, datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert record.outcome is Outcome.FAILURE and record.failed and not record.retrying
    assert record.error_type == "ValueError" and record.message == "bad input 7"
    assert record.reason_line() == "ValueError: bad input 7"
    assert [f.function for f in record.frames][-1] == "inner"
    assert all(f.user for f in record.frames), "frames of this test file are the user's code"
    assert record.host
    data = record.to_dict()
    assert data["result"] == "failure" and data["attempt"] == 1
    back = JobRecord.from_dict(yaml.safe_load(yaml_dump(data)))
    assert back.outcome is Outcome.FAILURE
    assert back.error_type == "ValueError" and back.message == "bad input 7"
    assert [f.to_dict() for f in back.frames] == [f.to_dict() for f in record.frames]
    assert back.start_time == datetime(2026, 1, 1, tzinfo=timezone.utc)


async def test_yaml_record_shows_the_traceback_as_lines(tmp_path):
    repo = pdtnb.YamlMetadataFileRepository(tmp_path / "done")
    await repo.dump("j1", record_from_exception(raise_in_user_code('he said "no"\nthen left')).to_dict())
    text = (tmp_path / "done" / "j1.yaml").read_text()
    assert "traceback: |" in text
    assert "\\n" not in text and '\\"' not in text, text
    assert "  Traceback (most recent call last):" in text.splitlines()
    assert read_record(await repo.info("j1")).message == 'he said "no"\nthen left'


def test_huge_messages_are_cut_and_unencodable_text_is_kept_readable():
    huge = ValueError("x" * (20 << 20))
    record = record_from_exception(huge)
    assert len(record.message) < LIMITS["message"] + 100 and "characters cut" in record.message
    assert len(yaml_dump(record.to_dict())) < 64_000

    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")  # what os.listdir returns for latin-1 names
    record = record_from_exception(FileNotFoundError(f"no such file: {name}"))
    body = yaml_dump(record.to_dict())  # must not raise a codec error
    assert "caf\\xe9.txt" in read_record(yaml.safe_load(body)).message


def test_an_exception_whose_str_and_repr_raise_is_still_recorded():
    class Hostile(Exception):
        def __str__(self):
            raise RuntimeError("no str")

        def __repr__(self):
            raise RuntimeError("no repr")

    try:
        raise Hostile()
    except Hostile as e:
        record = record_from_exception(e)
    assert record.error_type.endswith("Hostile")
    assert "raise" in record.message
    yaml_dump(record.to_dict())


def test_output_tails_are_the_last_4_kib():
    data = b"".join(b"line %d\n" % i for i in range(5000))
    tail = pdtnb.record.tail_text(data)
    assert tail.endswith("line 4999\n")
    assert "earlier bytes cut" in tail.splitlines()[0]
    assert len(tail.encode()) <= LIMITS["tail"] + 100


@pytest.mark.parametrize(
    "stored, outcome, reason",
    [
        # pydatatask 0.4.7 function tasks: result, repr(exc), traceback.format_tb's list
        ({"result": "success", "start_time": datetime(2024, 1, 1)}, Outcome.SUCCESS, "succeeded"),
        (
            {"result": "exception", "exception": "KeyError('k')", "traceback": ['  File "x.py", line 3\n']},
            Outcome.FAILURE,
            "KeyError: k",
        ),
        # pydatatask 0.4.7 pod records: the phase as reason
        ({"reason": "Succeeded", "image": "busybox", "node": "n1"}, Outcome.SUCCESS, "succeeded"),
        ({"reason": "Failed", "image": "busybox", "node": "n1"}, Outcome.FAILURE, "Failed"),
        ({"reason": "Timeout", "image": "busybox", "node": "n1"}, Outcome.TIMEOUT, "Timeout"),
        # a formatted traceback as the exception (other writers)
        (
            {"success": False, "exception": "Traceback (most recent call last):\n  File \"x.py\"\nKeyError: 'k'"},
            Outcome.FAILURE,
            "KeyError: 'k'",
        ),
        # pydatatask 0.4.7 process tasks: a return code only
        ({"return_code": 0}, Outcome.SUCCESS, "succeeded"),
        ({"return_code": 2}, Outcome.FAILURE, "exit code 2"),
        # earlier pdtnb releases
        (
            {"result": "exception", "exception": "Boom('it broke')", "traceback": "Traceback..."},
            Outcome.FAILURE,
            "Boom: it broke",
        ),
        (
            {"result": "failure", "exit_code": 137, "timed_out": True, "reason": "timeout: ran longer than 1s"},
            Outcome.TIMEOUT,
            "timeout: ran longer than 1s (exit code 137)",
        ),
        ({"result": "success", "exit_code": 0}, Outcome.SUCCESS, "succeeded"),
        # not a record at all
        ("garbage", Outcome.FAILURE, "unreadable record: 'garbage'"),
    ],
)
def test_records_of_other_writers_are_read(stored, outcome, reason):
    record = read_record(stored)
    assert record.outcome is outcome
    assert record.reason_line() == reason
    assert pdtnb.record.is_failure_record(stored) == (outcome is not Outcome.SUCCESS)


def test_retry_policy_schedules_the_next_attempt_in_the_record():
    policy = pdtnb.Retry(attempts=3, delay=2.0, backoff=3.0, jitter=0, on=(ValueError, 3, "Evicted"))
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    failed = record_from_exception(ValueError("v"))
    assert policy.schedule(failed, ValueError("v"), now).retry_at == datetime(2026, 1, 1, 0, 0, 2, tzinfo=timezone.utc)
    second = record_from_exception(ValueError("v"), attempt=2)
    assert (policy.schedule(second, ValueError("v"), now).retry_at - now).total_seconds() == 6.0
    last = record_from_exception(ValueError("v"), attempt=3)
    assert policy.schedule(last, ValueError("v"), now).retry_at is None, "no fourth attempt"
    other = record_from_exception(KeyError("k"))
    assert policy.schedule(other, KeyError("k"), now).retry_at is None, "KeyError is not retried"
    assert policy.schedule(JobRecord(Outcome.FAILURE, exit_code=3), None, now).retry_at is not None
    assert policy.schedule(JobRecord(Outcome.FAILURE, exit_code=4), None, now).retry_at is None
    assert policy.schedule(JobRecord(Outcome.FAILURE, reason="Evicted"), None, now).retry_at is not None
    assert policy.schedule(JobRecord(Outcome.KILLED), None, now).retry_at is None, "a killed job stays killed"
    with pytest.raises(ValueError, match="attempts"):
        pdtnb.Retry(attempts=0)
    with pytest.raises(TypeError, match="on="):
        pdtnb.Retry(on=(object,))


def test_user_frames_are_told_from_library_frames():
    assert pdtnb.record.is_user_file("/home/me/pipeline.py")
    assert pdtnb.record.is_user_file("<ipython-input-3-abc>")
    assert not pdtnb.record.is_user_file(pdtnb.__file__)
    assert not pdtnb.record.is_user_file(yaml.__file__)
    assert not pdtnb.record.is_user_file(sys.modules["asyncio"].__file__)
