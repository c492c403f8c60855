"""Session: resources declared in sync code, opened and closed together."""

from __future__ import annotations

import logging

import pytest

from pdtnb import PdtnbError, Session, SessionClosedError


def make_session(events: list[str], fail_open: str | None = None, fail_close: str | None = None):
    """A session with two resources, ``database`` then ``bucket``, logging their life to ``events``."""
    session = Session()

    @session.resource
    async def database():
        if fail_open == "database":
            raise ConnectionError("db unreachable")
        events.append("open database")
        handle = {"name": "db", "open": True}
        try:
            yield handle
        finally:
            handle["open"] = False
            events.append("close database")
            if fail_close == "database":
                raise OSError("db close failed")

    @session.resource
    async def bucket():
        if fail_open == "bucket":
            raise ConnectionError("bucket unreachable")
        events.append("open bucket")
        yield {"name": "bucket", "db": database()}
        events.append("close bucket")
        if fail_close == "bucket":
            raise OSError("bucket close failed")

    return session, database, bucket


def test_resource_decorator_returns_a_callable():
    _, database, bucket = make_session([])
    assert callable(database) and callable(bucket)


def test_calling_a_resource_before_open_raises_naming_it():
    _, database, bucket = make_session([])
    with pytest.raises(SessionClosedError) as info:
        database()
    assert "database" in str(info.value)
    assert isinstance(info.value, PdtnbError)
    with pytest.raises(SessionClosedError, match="bucket"):
        bucket()


async def test_async_with_opens_and_closes_in_reverse_order():
    events: list[str] = []
    session, database, bucket = make_session(events)
    async with session as opened:
        assert opened is session
        assert session.is_open
        assert events == ["open database", "open bucket"]
        db = database()
        assert db == {"name": "db", "open": True}
        assert bucket()["name"] == "bucket"
        # a later resource can use an earlier one while opening
        assert bucket()["db"] is db
        # the same live object each call
        assert database() is db
    assert events == ["open database", "open bucket", "close bucket", "close database"]
    assert db["open"] is False
    assert not session.is_open
    with pytest.raises(SessionClosedError, match="database"):
        database()


async def test_open_and_close_methods():
    events: list[str] = []
    session, database, _ = make_session(events)
    await session.open()
    assert database()["open"]
    await session.close()
    assert events[-1] == "close database"
    with pytest.raises(SessionClosedError):
        database()


async def test_teardown_runs_when_the_block_raises():
    events: list[str] = []
    session, database, _ = make_session(events)
    with pytest.raises(KeyError):
        async with session:
            database()
            raise KeyError("inside")
    assert events[-2:] == ["close bucket", "close database"]
    assert not session.is_open


async def test_failing_second_resource_tears_down_the_first_and_names_itself():
    events: list[str] = []
    session, database, _ = make_session(events, fail_open="bucket")
    with pytest.raises(ConnectionError) as info:
        async with session:
            pytest.fail("the block must not run")
    assert "bucket" in str(info.value)
    assert "bucket unreachable" in str(info.value)
    assert events == ["open database", "close database"]
    assert not session.is_open
    with pytest.raises(SessionClosedError):
        database()


async def test_failing_first_resource_opens_nothing():
    events: list[str] = []
    session, _, _ = make_session(events, fail_open="database")
    with pytest.raises(ConnectionError, match="database"):
        await session.open()
    assert events == []
    assert not session.is_open


async def test_failing_resource_with_unusual_exception_still_propagates():
    class NeedsTwoArgs(Exception):
        def __init__(self, a, b):
            super().__init__(a, b)

    session = Session()

    @session.resource
    async def picky():
        raise NeedsTwoArgs(1, 2)
        yield  # pragma: no cover

    with pytest.raises(NeedsTwoArgs):
        await session.open()
    assert not session.is_open


async def test_resource_that_never_yields_is_an_error_naming_it():
    session = Session()

    @session.resource
    async def empty():
        return
        yield  # pragma: no cover

    with pytest.raises(RuntimeError, match="empty"):
        await session.open()
    assert not session.is_open


async def test_a_failing_teardown_does_not_leak_the_others(caplog):
    caplog.set_level(logging.ERROR)
    events: list[str] = []
    session, _, _ = make_session(events, fail_close="bucket")
    async with session:
        pass
    assert events == ["open database", "open bucket", "close bucket", "close database"]
    assert any("bucket" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert not session.is_open


async def test_session_can_be_opened_again_after_close():
    events: list[str] = []
    session, database, _ = make_session(events)
    async with session:
        first = database()
    async with session:
        second = database()
        assert second["open"]
    assert first is not second
    assert first["open"] is False and second["open"] is False
    assert events == ["open database", "open bucket", "close bucket", "close database"] * 2


async def test_session_can_be_opened_again_after_a_failed_open():
    events: list[str] = []
    fail = {"bucket": True}
    session = Session()

    @session.resource
    async def database():
        events.append("open database")
        yield "db"
        events.append("close database")

    @session.resource
    async def bucket():
        if fail["bucket"]:
            raise ConnectionError("down")
        yield "bucket"

    with pytest.raises(ConnectionError):
        await session.open()
    fail["bucket"] = False
    async with session:
        assert database() == "db" and bucket() == "bucket"
    assert events == ["open database", "close database", "open database", "close database"]


async def test_opening_an_open_session_twice_is_refused():
    session, database, _ = make_session([])
    async with session:
        with pytest.raises(RuntimeError):
            await session.open()
        assert database()["open"]


def test_two_resources_with_the_same_name_are_refused():
    session = Session()

    @session.resource
    async def thing():
        yield 1

    with pytest.raises(ValueError, match="thing"):

        @session.resource
        async def thing():
            yield 2


async def test_empty_session_opens_and_closes():
    session = Session()
    async with session:
        assert session.is_open
    assert not session.is_open
