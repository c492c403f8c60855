"""Fixtures for the failure tests: thread pools that are always shut down."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pdtnb-failure-test")
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)
