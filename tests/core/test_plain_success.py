"""The outcome index tells a plain success record from its text without parsing it
(``plain_success``); it must never call a record a success that the YAML loader reads otherwise,
or cannot read at all."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest
import yaml

from pdtnb.record import success_dict
from pdtnb.repository.metadata import plain_success, quick_success, yaml_dump


def loads_as_success(text: bytes) -> bool:
    try:
        value = yaml.load(text, Loader=yaml.CSafeLoader)
    except Exception:
        return False
    return type(value) is dict and value.get("result") == "success"


def test_the_records_pdtnb_and_pydatatask_write_are_recognised():
    start = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=timezone.utc)
    end = datetime(2026, 11, 30, 12, 0, 1, tzinfo=timezone.utc)
    ours = yaml_dump(success_dict(start, end))
    assert plain_success(ours) and loads_as_success(ours)
    theirs = yaml.safe_dump({"result": "success", "start_time": start.replace(tzinfo=None), "end_time": end})
    assert plain_success(theirs.encode())


@pytest.mark.parametrize(
    "text",
    [
        b"result: failure\n",
        b"result: success",  # no final newline: not the writers' form, parse it
        b"result: success\nresult: failure\n",  # a duplicate key
        b"result: 'success'\n",
        b"result: success # fixed by hand\n",
        b"result: success\nnote: more\n",
        b"result: success\nstart_time: 2026-02-30 12:00:00\n",  # no 30th of February: the loader fails
        b"result: success\nstart_time: 2026-01-01 24:00:00\n",
        b"result: success\nend_time: 2026-01-01 12:00:00+25:00\n",
        b"result: success\nhost: 0x_\n",  # an int the loader cannot build
        b"result: success\nhost: a: b\n",
        b"result: success\nattempt: -1\n",
        b"- result: success\n",
        b"---\nresult: success\n",
        b"%YAML 1.1\nresult: success\n",
        b"result:  success\n",
        b" result: success\n",
        b"result: success\r\n",
        b"\xef\xbb\xbfresult: success\n",
        b"",
    ],
)
def test_anything_else_is_left_to_the_yaml_loader(text):
    assert not plain_success(text)


def test_every_text_called_a_success_loads_as_one():
    """Random mutations of a success record: whatever the check accepts, the loader agrees."""
    rng = random.Random(14)
    day = datetime(2026, 11, 30, tzinfo=timezone.utc)
    base = yaml_dump(success_dict(day, day.replace(day=1, month=12)))
    alphabet = b"019:- .\nTZ+abx#'\"_"
    accepted = 0
    for _ in range(20000):
        text = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text))
            op = rng.random()
            if op < 0.4:
                text[i] = rng.choice(alphabet)
            elif op < 0.7:
                del text[i]
            else:
                text.insert(i, rng.choice(alphabet))
        if plain_success(bytes(text)):
            accepted += 1
            assert loads_as_success(bytes(text)), bytes(text)
    assert accepted > 100, "the mutations kept some records plain successes"


def fingerprinted(digest: str = "d29e07acd4f6c411") -> bytes:
    from pdtnb.fingerprint import Fingerprint

    day = datetime(2026, 11, 30, tzinfo=timezone.utc)
    printed = Fingerprint(digest, {"body": "d9b373474675", "calls clean_title": "bbde0a5060f6"})
    return yaml_dump(success_dict(day, day.replace(second=1), fingerprint=printed))


def test_a_success_with_a_fingerprint_gives_its_digest_without_parsing():
    text = fingerprinted()
    assert quick_success(text) == {"result": "success", "fingerprint": "d29e07acd4f6c411"}
    assert yaml.safe_load(text)["fingerprint"] == "d29e07acd4f6c411"
    # A digest of digits only is an int to YAML: the dumper quotes it, and the parser reads it.
    quoted = fingerprinted("1234567890123456")
    assert b"'1234567890123456'" in quoted and quick_success(quoted) is None
    assert quick_success(b"result: success\nfingerprint: 1234567890123456\n") is None


def test_every_fingerprinted_text_given_a_digest_loads_with_that_digest():
    """Random mutations of a fingerprinted record: what the quick reader accepts, the loader
    reads as a success with the same fingerprint."""
    rng = random.Random(16)
    base = fingerprinted()
    alphabet = b"019:- .\nabfx#'\"_"
    accepted = 0
    for _ in range(20000):
        text = bytearray(base)
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(text))
            op = rng.random()
            if op < 0.4:
                text[i] = rng.choice(alphabet)
            elif op < 0.7:
                del text[i]
            else:
                text.insert(i, rng.choice(alphabet))
        quick = quick_success(bytes(text))
        if quick is not None:
            accepted += 1
            value = yaml.load(bytes(text), Loader=yaml.CSafeLoader)
            assert type(value) is dict and value.get("result") == "success", bytes(text)
            assert quick.get("fingerprint") == value.get("fingerprint"), bytes(text)
    assert accepted > 100
