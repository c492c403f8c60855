"""Dask fixtures: a real ``distributed.LocalCluster`` with two worker *processes* (one thread
each), started once per module; or, when ``PDTNB_TEST_DASK_SCHEDULER`` names a scheduler address,
that scheduler (its workers must reach this machine's temporary directory, and run on it for the
test that kills a worker process: the tests share files with the bodies).

Without the ``dask`` extra the tests skip; under ``PDTNB_REQUIRE_SERVICES=1`` they fail instead
(see tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

SCHEDULER = os.environ.get("PDTNB_TEST_DASK_SCHEDULER")


@pytest.fixture(scope="module")
def dask_client(service_unavailable) -> Iterator[Any]:
    distributed = pytest.importorskip("distributed", reason="could not import distributed (the dask extra)")
    import dask

    if SCHEDULER:
        try:
            client = distributed.Client(SCHEDULER, set_as_default=False, timeout=10)
        except Exception as e:
            service_unavailable(f"Dask scheduler {SCHEDULER}", str(e))
        try:
            client.wait_for_workers(1, timeout=20)
            yield client
        finally:
            client.close()
        return
    # allowed-failures=0: a worker lost mid-job fails the job at once (KilledWorker) instead of
    # Dask running it again elsewhere, so that the test sees pdtnb record the failure.
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
    except Exception as e:
        service_unavailable("Dask LocalCluster", str(e))
    client = distributed.Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(2, timeout=30)
        yield client
    finally:
        client.close()
        cluster.close()
