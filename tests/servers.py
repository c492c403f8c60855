"""What every test server helper needs: a free port, waiting for a server to answer, stopping it.

Imported by name (``from servers import free_port``): ``tests/`` is on ``sys.path`` because
pytest imports ``tests/conftest.py`` from there (the test directories are not packages).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answers(
    answers: Callable[[], bool],
    proc: subprocess.Popen,
    what: str,
    timeout: float = 30.0,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``answers()`` until it is true; raise RuntimeError naming ``what`` (with the server's
    ``output()``) if ``proc`` exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not answers():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before answering: {output()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout} s: {output()}")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps the process."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
