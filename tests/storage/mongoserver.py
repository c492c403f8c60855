"""Start a throwaway SecantusDB server (MongoDB wire protocol) for the MongoDB repository tests.

``pip install secantusdb`` provides ``secantusd-py``. When ``PDTNB_TEST_MONGODB_URL`` is set, the
tests use that server instead and nothing is started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servers import free_port, stop_process, wait_until_answers

STARTUP_TIMEOUT = 30.0


def secantus_executable() -> str | None:
    """Path of ``secantusd-py`` (next to this Python first, then on PATH), or None."""
    beside = Path(sys.executable).with_name("secantusd-py")
    if beside.exists():
        return str(beside)
    return shutil.which("secantusd-py")


def ping(url: str, timeout_ms: int = 1000) -> bool:
    """Whether a MongoDB server at ``url`` answers a ping."""
    from pymongo import MongoClient

    client = MongoClient(url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except Exception:
        return False
    finally:
        client.close()


@contextmanager
def _secantus(storage: str, *extra: str, port: int | None = None) -> Iterator[tuple[str, int]]:
    """Run ``secantusd-py`` on ``storage``; yield (url, port) once it answers a ping."""
    exe = secantus_executable()
    if exe is None:
        raise RuntimeError("secantusd-py not found: pip install secantusdb")
    port = port or free_port()
    url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    log = tempfile.TemporaryFile()
    command = [exe, "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage, "--standalone"]
    proc = subprocess.Popen([*command, "--log-level", "WARNING", *extra], stdout=log, stderr=subprocess.STDOUT)

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")[-2000:]

    try:
        # With --auth a ping still answers (pre-authentication commands are allowed).
        wait_until_answers(lambda: ping(url, 500), proc, f"SecantusDB on port {port}", STARTUP_TIMEOUT, output)
        yield url, port
    finally:
        stop_process(proc)
        log.close()


@contextmanager
def mongo_server() -> Iterator[str]:
    """Yield the URL of a MongoDB server: PDTNB_TEST_MONGODB_URL, or a SecantusDB started here.

    Raises RuntimeError (with the server's output) when secantusd-py is missing or does not answer.
    """
    url = os.environ.get("PDTNB_TEST_MONGODB_URL")
    if url:
        yield url
        return
    with _secantus(":memory:") as (url, _):
        yield url


@contextmanager
def mongo_auth_server(user: str, password: str) -> Iterator[tuple[str, int]]:
    """A SecantusDB started with ``--auth`` and one root user; yield (url without credentials, port).

    Users are provisioned the way SecantusDB documents it: start without auth, createUser, restart
    with ``--auth`` on the same storage directory.
    """
    from pymongo import MongoClient

    with tempfile.TemporaryDirectory() as storage:
        with _secantus(storage) as (url, _):
            client = MongoClient(url, serverSelectionTimeoutMS=5000)
            try:
                client.admin.command("createUser", user, pwd=password, roles=["root"])
            finally:
                client.close()
        with _secantus(storage, "--auth") as (url, port):
            yield url, port
