"""InProcessMetadataRepository and InProcessBlobRepository: dict-backed repositories."""

from __future__ import annotations

import string

import pytest

import pdtnb
from pdtnb import InProcessBlobRepository, InProcessMetadataRepository, InvalidJobIdError
from pdtnb.errors import short_job_id

INVALID_IDS = ["../etc", "a/b", "", "a.b", "x" * 300, "a b", "..", "-a", "é"]


class DashMetadataRepository(InProcessMetadataRepository):
    """A user subclass that also allows '-' inside job ids (not at the ends)."""

    CHARSET = string.ascii_letters + string.digits + "-"


class DashBlobRepository(InProcessBlobRepository):
    CHARSET = string.ascii_letters + string.digits + "-"


# ---- the .data dict ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [InProcessMetadataRepository, InProcessBlobRepository])
def test_data_is_the_dict_passed_in(cls):
    for given in ({}, {"a": b"1"}):
        repo = cls(given)
        assert repo.data is given


@pytest.mark.parametrize("cls", [InProcessMetadataRepository, InProcessBlobRepository])
def test_default_data_is_a_fresh_dict_per_repository(cls):
    one, two = cls(), cls()
    assert one.data == {} and two.data == {}
    assert one.data is not two.data


async def test_metadata_dump_writes_into_the_callers_dict():
    store: dict = {}
    repo = InProcessMetadataRepository(store)
    await repo.dump("job1", {"x": [1, 2]})
    assert store == {"job1": {"x": [1, 2]}}


async def test_data_filled_directly_is_listed_and_removal_is_seen(listed):
    repo = InProcessMetadataRepository()
    repo.data["a1"] = 1
    assert await listed(repo) == {"a1"}
    repo.data["b2"] = 2
    assert await listed(repo) == {"a1", "b2"}
    del repo.data["a1"]
    assert await listed(repo) == {"b2"}
    assert not await repo.contains("a1")


# ---- metadata repository ---------------------------------------------------------------------


async def test_metadata_round_trip_listing_and_info_all(listed):
    repo = InProcessMetadataRepository()
    await repo.dump("alpha", {"n": 1})
    await repo.dump("beta", [1, 2, 3])
    await repo.dump("alpha", {"n": 2})  # replaces
    assert await repo.info("alpha") == {"n": 2}
    assert await repo.info("beta") == [1, 2, 3]
    assert await listed(repo) == {"alpha", "beta"}
    assert await repo.contains("alpha")
    assert not await repo.contains("gamma")
    assert await repo.info_all() == {"alpha": {"n": 2}, "beta": [1, 2, 3]}


async def test_metadata_info_of_absent_job_is_none():
    repo = InProcessMetadataRepository({"a": 1})
    assert await repo.info("zzz") is None


async def test_metadata_delete_and_delete_absent(listed):
    repo = InProcessMetadataRepository({"a": 1, "b": 2})
    await repo.delete("a")
    assert await listed(repo) == {"b"}
    assert not await repo.contains("a")
    await repo.delete("a")  # absent now: must not raise
    await repo.delete("neverthere")
    assert repo.data == {"b": 2}


async def test_metadata_falsy_values_still_count_as_present(listed):
    repo = InProcessMetadataRepository()
    await repo.dump("zero", 0)
    await repo.dump("empty", {})
    assert await listed(repo) == {"zero", "empty"}
    assert await repo.contains("zero")
    assert await repo.info("zero") == 0


@pytest.mark.parametrize("bad", INVALID_IDS)
async def test_metadata_dump_refuses_invalid_id(bad):
    repo = InProcessMetadataRepository()
    with pytest.raises(InvalidJobIdError) as info:
        await repo.dump(bad, {"v": 1})
    assert isinstance(info.value, ValueError)
    assert short_job_id(bad) in str(info.value)
    assert repo.data == {}


def test_invalid_job_id_error_is_catchable_as_value_error_and_pdtnb_error():
    assert issubclass(InvalidJobIdError, ValueError)
    assert issubclass(InvalidJobIdError, pdtnb.PdtnbError)


@pytest.mark.parametrize("cls", [InProcessMetadataRepository, InProcessBlobRepository])
async def test_invalid_keys_put_in_data_are_skipped_and_warned_once(cls, listed, repo_warnings):
    repo = cls({"good1": b"x", "a b": b"y", "../up": b"z"})
    assert await listed(repo) == {"good1"}
    assert not await repo.contains("a b")
    first = repo_warnings()
    assert len(first) == 1, first
    assert "'a b'" in first[0] and "'../up'" in first[0]
    # listing again, both ways, warns no more about the same ids
    assert await listed(repo) == {"good1"}
    assert [j async for j in repo] == ["good1"]
    assert repo_warnings() == first
    # a new bad id is warned about, once
    repo.data["c.d"] = b"w"
    assert await listed(repo) == {"good1"}
    assert await listed(repo) == {"good1"}
    later = repo_warnings()[len(first) :]
    assert len(later) == 1 and "'c.d'" in later[0] and "'a b'" not in later[0]


async def test_metadata_info_all_skips_invalid_keys():
    repo = InProcessMetadataRepository({"ok": 1, "not ok": 2})
    assert await repo.info_all() == {"ok": 1}


async def test_custom_charset_subclass_accepts_its_extra_character(listed):
    repo = DashMetadataRepository()
    await repo.dump("a-b", 1)
    assert await listed(repo) == {"a-b"}
    assert await repo.contains("a-b")
    # the start/end characters are still the default ones
    with pytest.raises(InvalidJobIdError):
        await repo.dump("-ab", 1)
    # and the base class still refuses it
    with pytest.raises(InvalidJobIdError):
        await InProcessMetadataRepository().dump("a-b", 1)

    blobs = DashBlobRepository()
    async with await blobs.open("x-1", "w") as fp:
        await fp.write("dash")
    assert await listed(blobs) == {"x-1"}


def test_is_valid_job_id_default_charset():
    valid = ["a", "Z", "0", "abc123", "A" * 64]
    for job in valid:
        assert InProcessMetadataRepository.is_valid_job_id(job), job
    for job in INVALID_IDS:
        assert not InProcessMetadataRepository.is_valid_job_id(job), job


# ---- blob repository -------------------------------------------------------------------------


async def test_blob_text_and_binary_round_trip(listed):
    repo = InProcessBlobRepository()
    async with await repo.open("t", "w") as fp:
        await fp.write("héllo ")
        await fp.write("wörld €")
    async with await repo.open("b", "wb") as fp:
        await fp.write(b"\x00\x01\xff")
    assert repo.data["t"] == "héllo wörld €".encode()
    async with await repo.open("t") as fp:
        assert await fp.read() == "héllo wörld €"
    async with await repo.open("b", "rb") as fp:
        assert await fp.read() == b"\x00\x01\xff"
    assert await listed(repo) == {"t", "b"}
    assert await repo.contains("t")
    assert not await repo.contains("nope")


async def test_blob_info_is_none_and_info_all_covers_every_job():
    repo = InProcessBlobRepository({"a": b"1", "b": b"2"})
    assert await repo.info("a") is None
    assert await repo.info("absent") is None
    assert await repo.info_all() == {"a": None, "b": None}


async def test_blob_open_absent_job_for_reading_raises_file_not_found():
    repo = InProcessBlobRepository()
    with pytest.raises(FileNotFoundError, match="missing"):
        await repo.open("missing", "r")
    with pytest.raises(FileNotFoundError):
        await repo.open("missing", "rb")


async def test_blob_open_rejects_unknown_mode():
    repo = InProcessBlobRepository({"a": b""})
    with pytest.raises(ValueError, match="'a\\+'"):
        await repo.open("a", "a+")


async def test_blob_delete_and_delete_absent(listed):
    repo = InProcessBlobRepository({"a": b"1", "b": b"2"})
    await repo.delete("a")
    assert await listed(repo) == {"b"}
    await repo.delete("a")
    await repo.delete("neverthere")
    assert repo.data == {"b": b"2"}


@pytest.mark.parametrize("mode", ["w", "wb"])
@pytest.mark.parametrize("bad", INVALID_IDS)
async def test_blob_open_for_writing_refuses_invalid_id(bad, mode):
    repo = InProcessBlobRepository()
    with pytest.raises(InvalidJobIdError) as info:
        await repo.open(bad, mode)
    assert short_job_id(bad) in str(info.value)
    assert repo.data == {}


async def test_blob_write_visible_only_after_close():
    repo = InProcessBlobRepository({"old": b"previous"})
    fp = await repo.open("new", "w")
    await fp.write("partial")
    assert not await repo.contains("new")
    assert "new" not in await repo.job_ids()
    await fp.write(" and rest")
    await fp.close()
    assert await repo.contains("new")
    assert repo.data["new"] == b"partial and rest"

    fp = await repo.open("old", "wb")
    await fp.write(b"replacement")
    async with await repo.open("old", "rb") as reader:
        assert await reader.read() == b"previous"
    await fp.close()
    assert repo.data["old"] == b"replacement"


@pytest.mark.parametrize("mode", ["w", "wb"])
async def test_blob_exception_inside_write_block_keeps_previous_value(mode):
    repo = InProcessBlobRepository({"old": b"previous"})
    payload = "half" if mode == "w" else b"half"
    with pytest.raises(RuntimeError, match="boom"):
        async with await repo.open("old", mode) as fp:
            await fp.write(payload)
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        async with await repo.open("fresh", mode) as fp:
            await fp.write(payload)
            raise RuntimeError("boom")
    assert repo.data == {"old": b"previous"}


async def test_blob_reading_in_pieces():
    repo = InProcessBlobRepository({"j": b"0123456789"})
    async with await repo.open("j", "rb") as fp:
        assert await fp.read(4) == b"0123"
        assert await fp.read(4) == b"4567"
        assert await fp.read() == b"89"
        assert await fp.read(4) == b""
