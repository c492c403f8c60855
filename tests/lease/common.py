"""Running lease_pipeline.py and holder.py (beside this file) as an operator would."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
PIPELINE = HERE / "lease_pipeline.py"
HOLDER = HERE / "holder.py"


class Runner:
    """The pipeline script in a data directory, with ``env`` for its store."""

    def __init__(self, data: Path, **env: str):
        self.data = data
        self.env = {**os.environ, "DATA": str(data), **env}

    def __call__(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(PIPELINE), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, script: Path = PIPELINE, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(script), *args],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def runs(self) -> collections.Counter:
        """How many times each body ran (from the log)."""
        log = self.data / "log"
        lines = log.read_text().splitlines() if log.exists() else []
        return collections.Counter(line.split()[0] for line in lines if not line.endswith(" tick"))

    def wait_for_log(self, timeout: float = 30) -> None:
        """Until a body has started (the run is under way)."""
        deadline = time.monotonic() + timeout
        while not (self.data / "log").exists():
            assert time.monotonic() < deadline, "no body started"
            time.sleep(0.02)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=30)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]
