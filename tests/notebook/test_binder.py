"""The Binder set-up in ``binder/``: a fresh environment built from those files alone runs the quickstart.

SLOW: the first run on a machine builds a virtual environment with pip (about 40-90 s, mostly
downloads); later runs reuse it while the files it was built from are unchanged.

It does what repo2docker does, minus Docker: a new virtual environment (``python -m venv``,
without the system's site-packages), then, from the repository root with the environment's
``bin`` first on PATH, ``pip install -r binder/requirements.txt`` and ``binder/postBuild``. Then
``notebooks/quickstart.ipynb`` is executed with nbclient on a kernel running that environment's
Python, and its outputs are checked as in ``test_example_notebooks_local.py``. The environment is
kept in ``.venv-binder/`` (git-ignored) with the hash of ``binder/*`` and ``pyproject.toml``; any
change to them rebuilds it from scratch. pip needs the package index: when it cannot be reached the
test fails (it never skips).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_example_notebooks_local import check_quickstart, execute

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"
VENV = ROOT / ".venv-binder"
STAMP = VENV / ".pdtnb-binder-key"
KERNEL_NAME = "pdtnb-test-binder"

pytestmark = pytest.mark.slow


def binder_key() -> str:
    """The hash of what the environment is built from: every file in binder/, and pyproject.toml
    (binder/requirements.txt installs the package with its notebook extra)."""
    digest = hashlib.sha256()
    for path in [*sorted(p for p in BINDER.iterdir() if p.is_file()), ROOT / "pyproject.toml"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def runtime_python() -> str:
    """The interpreter binder/runtime.txt names (``python-3.11`` -> python3.11), when this machine
    has it; otherwise the one running the tests."""
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", runtime)
    assert match, f"binder/runtime.txt should be python-X.Y, not {runtime!r}"
    return shutil.which(f"python{match.group(1)}") or sys.executable


def build_env() -> dict[str, str]:
    """The environment repo2docker's build steps see: the new environment's bin first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(VENV)
    return env


def run_step(args: list[str]) -> str:
    proc = subprocess.run(args, cwd=ROOT, env=build_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def binder_venv() -> Iterator[Path]:
    """``.venv-binder``, built from binder/ if it is missing or was built from other files."""
    key = binder_key()
    lock_path = Path(tempfile.gettempdir()) / f"pdtnb-venv-binder-{hashlib.sha256(bytes(VENV)).hexdigest()[:12]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        if not (STAMP.exists() and STAMP.read_text() == key and (VENV / "bin" / "python").exists()):
            shutil.rmtree(VENV, ignore_errors=True)
            run_step([runtime_python(), "-m", "venv", str(VENV)])
            run_step([str(VENV / "bin" / "pip"), "install", "-r", "binder/requirements.txt"])
            run_step(["binder/postBuild"])
            STAMP.write_text(key)
    yield VENV


def test_binder_files_are_what_repo2docker_runs() -> None:
    """requirements.txt installs this checkout with the notebook extra; postBuild is an executable
    script; both say what they are for."""
    requirements = (BINDER / "requirements.txt").read_text()
    assert requirements.startswith("# Binder")
    assert [line for line in requirements.splitlines() if line and not line.startswith("#")] == ["-e .[notebook]"]
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK) and post_build.read_text().startswith("#!/bin/bash\n# Binder")


def test_binder_environment(binder_venv: Path) -> None:
    """The environment is isolated, consistent, has the notebook layer, and no JupyterLab news pop-up."""
    config = (binder_venv / "pyvenv.cfg").read_text()
    assert re.search(r"^include-system-site-packages = false$", config, re.M), config
    run_step([str(binder_venv / "bin" / "python"), "-m", "pip", "check"])
    probe = run_step(
        [
            str(binder_venv / "bin" / "python"),
            "-c",
            "import sys, ipykernel, ipywidgets, pdtnb, pdtnb.notebook.magics; "
            "print(sys.prefix); print(pdtnb.__file__); print(ipywidgets.__version__)",
        ]
    ).splitlines()
    assert probe[0] == str(binder_venv)
    assert probe[1] == str(ROOT / "pdtnb" / "__init__.py")  # editable: this checkout's code
    assert int(probe[2].split(".")[0]) >= 8
    overrides = json.loads((binder_venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false", "checkForUpdates": False}


def test_quickstart_runs_in_the_binder_environment(binder_venv: Path, kernelspec_dir: Path, tmp_path: Path) -> None:
    spec = kernelspec_dir / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(binder_venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "pdtnb Binder environment",
                "language": "python",
            }
        )
    )
    ex = execute(
        "quickstart.ipynb",
        KERNEL_NAME,
        tmp_path / "notebooks",
        extra_cells=("import sys, pdtnb\nprint(sys.prefix)\nprint(pdtnb.__file__)",),
    )
    assert ex.stdout("extra-0").splitlines() == [str(binder_venv), str(ROOT / "pdtnb" / "__init__.py")]
    check_quickstart(ex)
