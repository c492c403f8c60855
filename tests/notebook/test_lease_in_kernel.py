"""The notebook takes part in "one controller at a time" (ipykernel 6 and 7): it holds the
pipeline's lease only while an action or a background run is going, so a notebook left open never
locks out cron; while it runs, a terminal's `run` is refused naming the notebook; while a
terminal runs, a magic is refused in one line naming the terminal's command, and `%pdt status`
says who is acting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from nbrun import KernelSession, usage_error

LEASE_TESTS = Path(__file__).parents[1] / "lease"
PIPELINE = LEASE_TESTS / "lease_pipeline.py"


def cli(data: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PIPELINE), *args],
        env={**os.environ, "DATA": str(data), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_notebook_holds_the_lease_only_while_it_acts(kernel_session: KernelSession, tmp_path):
    data = tmp_path / "data"
    ks = kernel_session
    ks.run(
        "import os, sys\n"
        f"os.environ.update(DATA={str(data)!r}, SLEEP='0.1')\n"
        f"sys.path.insert(0, {str(LEASE_TESTS)!r})\n"
        "import lease_pipeline\n"
        "from lease_pipeline import pipeline\n"
        "%load_ext pdtnb"
    ).check()
    ks.run("%pdt step").check()
    # Idle notebook: a terminal (cron) can act.
    assert cli(data, "run").returncode == 0

    ks.run("%pdt rm work.done __all__\nlease_pipeline.SLEEP = 4\n%pdt run").check()
    refused = cli(data, "run")
    assert refused.returncode == 75, refused.stderr
    assert "controlled by notebook run (pid " in refused.stderr, refused.stderr
    ks.run("%pdt wait", timeout=30).check()
    assert cli(data, "run").returncode == 0, "the lease was given back when the run ended"

    ks.run("%pdt rm work.done __all__").check()
    terminal = subprocess.Popen(
        [sys.executable, str(PIPELINE), "run"],
        env={**os.environ, "DATA": str(data), "SLEEP": "4"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (data / "done" / ".pdtnb-meta" / "lease").exists():
            assert time.monotonic() < deadline and terminal.poll() is None, terminal.communicate()
            time.sleep(0.05)
        shown = ks.run("%pdt status").check()
        assert f"controlled now by lease_pipeline.py run (pid {terminal.pid} " in shown.html, shown.describe()
        message = usage_error(ks.run("%pdt step"))
        assert message.startswith("%pdt step: the pipeline is controlled by lease_pipeline.py run (pid "), message
        assert f"pid {terminal.pid} " in message, message
    finally:
        terminal.communicate(timeout=30)
    assert terminal.returncode == 0
