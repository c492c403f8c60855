"""Start a throwaway moto S3 server for the S3 repository tests and benchmarks.

``pip install 'moto[server]'`` provides ``moto_server``. When ``PDTNB_TEST_S3_ENDPOINT`` is set, the
tests use that endpoint (with ``PDTNB_TEST_S3_ACCESS_KEY`` / ``PDTNB_TEST_S3_SECRET_KEY``) instead
and nothing is started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers import free_port, stop_process, wait_until_answers

STARTUP_TIMEOUT = 30.0


@dataclass
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str
    external: bool = False


def moto_executable() -> str | None:
    """Path of ``moto_server`` (next to this Python first, then on PATH), or None."""
    beside = Path(sys.executable).with_name("moto_server")
    if beside.exists():
        return str(beside)
    return shutil.which("moto_server")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/moto-api/", timeout=1) as r:
            return r.status < 500
    except Exception:
        return False


@contextmanager
def moto_server(auth: bool = False) -> Iterator[S3Endpoint]:
    """Run ``moto_server`` on a free port of 127.0.0.1; with ``auth``, it checks credentials
    (``INITIAL_NO_AUTH_ACTION_COUNT=0``). Raises RuntimeError when it cannot be started."""
    exe = moto_executable()
    if exe is None:
        raise RuntimeError("moto_server not found: pip install 'moto[server]'")
    port = free_port()
    env = dict(os.environ)
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(lambda: _answers(url), proc, f"moto_server on {url}", STARTUP_TIMEOUT)
        yield S3Endpoint(url, "testing", "testing")
    finally:
        stop_process(proc)


@contextmanager
def s3_endpoint() -> Iterator[S3Endpoint]:
    """The endpoint of ``PDTNB_TEST_S3_ENDPOINT`` if set, else a fresh moto server."""
    url = os.environ.get("PDTNB_TEST_S3_ENDPOINT")
    if url:
        yield S3Endpoint(
            url,
            os.environ.get("PDTNB_TEST_S3_ACCESS_KEY", ""),
            os.environ.get("PDTNB_TEST_S3_SECRET_KEY", ""),
            external=True,
        )
        return
    with moto_server() as endpoint:
        yield endpoint


@asynccontextmanager
async def s3_client(url: str, access_key: str, secret_key: str, connect_timeout: float = 2.0) -> Any:
    """An aiobotocore S3 client with short timeouts and a single attempt, so failures show quickly."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(
        connect_timeout=connect_timeout,
        read_timeout=30,
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"},
        max_pool_connections=50,
    )
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=config,
    ) as client:
        yield client
