"""The storage servers as pytest fixtures, one per test module: a moto S3 server (``s3``), a
MongoDB-wire server without authentication (``mongo_url``) and Debian's docker-registry
(``registry_domain``). Where one cannot be started the test is skipped, or under
PDTNB_REQUIRE_SERVICES=1 (CI) fails. tests/storage/conftest.py and the other directories' tests
that need these servers import the fixtures from here, so each is written once."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from mongoserver import mongo_server
from registryserver import RegistryServer, registry_from_env
from s3server import s3_endpoint


@pytest.fixture(scope="module")
def s3(service_unavailable: Any) -> Iterator[Any]:
    try:
        ctx = s3_endpoint()
        endpoint = ctx.__enter__()
    except RuntimeError as e:
        service_unavailable("S3 (moto_server)", str(e))
    try:
        yield endpoint
    finally:
        ctx.__exit__(None, None, None)


@pytest.fixture(scope="module")
def mongo_url(service_unavailable: Any) -> Iterator[str]:
    try:
        ctx = mongo_server()
        url = ctx.__enter__()
    except RuntimeError as e:
        service_unavailable("SecantusDB", str(e))
    try:
        yield url
    finally:
        ctx.__exit__(None, None, None)


@pytest.fixture(scope="module")
def registry_domain(tmp_path_factory: pytest.TempPathFactory, service_unavailable: Any) -> Iterator[str]:
    env = registry_from_env()
    if env:
        yield env
        return
    if not shutil.which("docker-registry"):
        service_unavailable("docker-registry", "the Debian docker-registry package is not installed")
    server = RegistryServer(tmp_path_factory.mktemp("registry"))
    try:
        server.start()
    except RuntimeError as e:
        service_unavailable("docker-registry", str(e))
    try:
        yield server.domain
    finally:
        server.stop()
