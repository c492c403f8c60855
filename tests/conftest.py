"""Shared fixtures for the pdtnb test suite."""

from __future__ import annotations

import logging
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
