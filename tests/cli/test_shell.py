"""``python pipeline.py shell``: the pipeline is open in it and top-level ``await`` works, in
Python's own shell (IPython hidden) and in IPython; the banner shows in both. Real subprocesses
fed on standard input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LINES = """\
print("open:", pipeline.is_open)
await pipeline.update()
print("status:", (await pdtnb.pipeline_status(pipeline)).task("stage1").done)
x = 40 + 2
print("sync code too:", x)
"""


def run_shell(script: Path, tmp_path: Path, text: str, hide_ipython: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"), TERM="dumb")
    if hide_ipython:
        fake = tmp_path / "no-ipython"
        (fake / "IPython").mkdir(parents=True, exist_ok=True)
        (fake / "IPython" / "__init__.py").write_text('raise ImportError("IPython hidden by the test")\n')
        env["PYTHONPATH"] = os.pathsep.join([str(fake), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, str(script), "shell"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=script.parent,
        env=env,
    )


def test_plain_shell_opens_the_pipeline_and_awaits(script: Path, seed, data_dir: Path, tmp_path: Path) -> None:
    seed(j1="hello")
    result = run_shell(script, tmp_path, LINES, hide_ipython=True)
    out, err = result.stdout, result.stderr
    assert result.returncode == 0, (out, err)
    assert "pdtnb shell: `pipeline` (tasks: stage1, stage2) is open" in err  # code.interact's banner: stderr
    assert "await pipeline.update()" in err
    assert "open: True" in out
    assert "status: 1" in out
    assert "sync code too: 42" in out
    assert "Traceback" not in err, err
    assert "closing the pipeline" in err
    assert (data_dir / "a" / "j1").read_text() == "HELLO"


def test_plain_shell_exit_and_errors(script: Path, seed, data_dir: Path, tmp_path: Path) -> None:
    seed(j1="hello")
    text = "await pipeline.nosuch()\nprint('still here')\nawait asyncio.sleep(0)\nexit()\nprint('not run')\n"
    result = run_shell(script, tmp_path, text, hide_ipython=True)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "AttributeError" in result.stderr and "nosuch" in result.stderr
    assert "still here" in result.stdout and "not run" not in result.stdout


def test_ipython_shell_opens_the_pipeline_and_awaits(script: Path, seed, data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    seed(j1="hello")
    result = run_shell(script, tmp_path, LINES, hide_ipython=False)
    out, err = result.stdout, result.stderr
    assert result.returncode == 0, (out, err)
    assert "IPython" in out  # IPython's own banner, then the pipeline's
    assert "pdtnb shell: `pipeline` (tasks: stage1, stage2) is open" in out
    assert "open: True" in out
    assert "status: 1" in out
    assert "sync code too: 42" in out
    assert "Error" not in out and "Traceback" not in out + err, (out, err)
    assert (data_dir / "a" / "j1").read_text() == "HELLO"
