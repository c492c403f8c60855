"""The servers the storage tests share, one per test module: a moto S3 server (``s3``) and a
MongoDB-wire server without authentication (``mongo_url``). Where one cannot be started the
test is skipped, or under PDTNB_REQUIRE_SERVICES=1 (CI) fails."""

from __future__ import annotations

import pytest
from mongoserver import mongo_server
from s3server import s3_endpoint


@pytest.fixture(scope="module")
def s3(service_unavailable):
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
def mongo_url(service_unavailable):
    try:
        ctx = mongo_server()
        url = ctx.__enter__()
    except RuntimeError as e:
        service_unavailable("SecantusDB", str(e))
    try:
        yield url
    finally:
        ctx.__exit__(None, None, None)
