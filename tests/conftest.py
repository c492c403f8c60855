"""Shared fixtures for the pdtnb test suite."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import pytest

from pdtnb import Repository


@pytest.fixture
def listed() -> Callable[[Repository], Awaitable[set[str]]]:
    """Return an async helper listing a repository both ways (``async for`` and ``job_ids()``).

    It asserts that the two agree and that iteration yields no job twice, then returns the set,
    so every test that checks a listing also checks that the two listing interfaces match.
    """

    async def _listed(repo: Repository) -> set[str]:
        iterated = [job async for job in repo]
        assert len(iterated) == len(set(iterated)), f"{repo!r} yielded a job twice: {iterated}"
        ids = await repo.job_ids()
        assert set(iterated) == set(ids), f"{repo!r}: async iteration {iterated} != job_ids() {set(ids)}"
        return set(ids)

    return _listed


@pytest.fixture
def repo_warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Return a function giving the messages of the WARNING records logged so far by pdtnb."""
    caplog.set_level(logging.WARNING, logger="pdtnb")

    def _warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("pdtnb")]

    return _warnings


def service_unavailable(name: str, why: str) -> None:
    """Skip the calling test because a server it needs is missing, printing why; under
    ``PDTNB_REQUIRE_SERVICES=1`` (CI) fail instead, so a missing server can never pass silently."""
    message = f"service unavailable: {name}: {why}"
    if os.environ.get("PDTNB_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (PDTNB_REQUIRE_SERVICES=1 makes this a failure)", pytrace=False)
    pytest.skip(message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Under PDTNB_REQUIRE_SERVICES=1 a skip for a missing server, however it was raised (a
    fixture, ``importorskip``), is reported as a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("PDTNB_REQUIRE_SERVICES") == "1":
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "service unavailable" in reason or "could not import" in reason:
            report.outcome = "failed"
            report.longrepr = f"required service missing in CI: {reason}"


@pytest.fixture(scope="session", name="service_unavailable")
def service_unavailable_fixture() -> Callable[[str, str], None]:
    """:func:`service_unavailable` as a fixture, for test modules that cannot import conftest."""
    return service_unavailable
