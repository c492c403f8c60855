"""Fixtures for the notebook tests: real Jupyter kernels on ipykernel 6 and 7, driven by nbclient.

Each kernel runs from a kernelspec written to a temporary directory put first on ``JUPYTER_PATH``,
so no test depends on the machine's global kernelspecs:

* ``ipykernel7``: this interpreter (the main venv, ipykernel 7.x);
* ``ipykernel6``: ``$PDTNB_IPYKERNEL6_PYTHON`` (default ``.venv-ipk6/bin/python``, made by ``./dev test``).

A missing ipykernel-6 interpreter is a missing service (``service_unavailable``): skipped
locally, a failure under ``PDTNB_REQUIRE_SERVICES=1``. Every test using the ``kernel`` fixture
runs on both generations (ids ``ipykernel6`` and ``ipykernel7``). The cell-running helpers
(:class:`nbrun.KernelSession`, :func:`nbrun.run_cells`, :class:`nbrun.CellResult`) are in
``nbrun.py``; ``run_notebook`` and ``kernel_session`` are fixtures over them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from nbrun import CELL_TIMEOUT, CellResult, KernelInfo, KernelSession, run_cells

ROOT = Path(__file__).resolve().parents[2]
IPK6_DEFAULT = ROOT / ".venv-ipk6" / "bin" / "python"


def _load_service_unavailable() -> Any:
    # tests/ is not a package (and site-packages may hold an unrelated `tests`): load by path.
    spec = importlib.util.spec_from_file_location("_pdtnb_tests_conftest", ROOT / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.service_unavailable


service_unavailable = _load_service_unavailable()


# ---- kernelspecs -----------------------------------------------------------------------------


def _write_kernelspec(root: Path, name: str, python: str, display: str) -> None:
    spec_dir = root / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display,
        "language": "python",
        "interrupt_mode": "signal",
        "env": {"PYDEVD_DISABLE_FILE_VALIDATION": "1"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))


def _run_python(python: str, code: str) -> tuple[str | None, str]:
    """(stdout, "") of ``python -c code``, or (None, the error's last line)."""
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    if proc.returncode != 0:
        return None, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    return proc.stdout.strip(), ""


def _probe(python: str) -> tuple[str | None, str, str]:
    """(ipykernel version or None, why not, error importing the notebook layer or "")."""
    version, why = _run_python(python, "import ipykernel; print(ipykernel.__version__)")
    if version is None:
        return None, why, ""
    _, broken = _run_python(python, "import pdtnb.notebook.magics, pdtnb.notebook.extension")
    return version, "", broken


@pytest.fixture(scope="session")
def kernelspec_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary Jupyter data dir holding the test kernelspecs, first on ``JUPYTER_PATH``."""
    root = tmp_path_factory.mktemp("jupyter")
    _write_kernelspec(root, "pdtnb-test-ipk7", sys.executable, "pdtnb test (ipykernel 7)")
    ipk6 = os.environ.get("PDTNB_IPYKERNEL6_PYTHON") or str(IPK6_DEFAULT)
    _write_kernelspec(root, "pdtnb-test-ipk6", ipk6, "pdtnb test (ipykernel 6)")
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root), *([old] if old else [])])
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old


_probed: dict[str, tuple[str | None, str, str]] = {}


@pytest.fixture(scope="session", params=["ipykernel6", "ipykernel7"])
def kernel(request: pytest.FixtureRequest, kernelspec_dir: Path) -> KernelInfo:
    """The kernel to run notebooks on (every kernel test runs on both generations)."""
    if request.param == "ipykernel7":
        python, name, major = sys.executable, "pdtnb-test-ipk7", 7
    else:
        python = os.environ.get("PDTNB_IPYKERNEL6_PYTHON") or str(IPK6_DEFAULT)
        name, major = "pdtnb-test-ipk6", 6
        if not Path(python).exists():
            service_unavailable(
                "ipykernel 6 interpreter",
                f"{python} does not exist (./dev test creates .venv-ipk6; or set PDTNB_IPYKERNEL6_PYTHON)",
            )
    if python not in _probed:
        _probed[python] = _probe(python)
    version, why, broken = _probed[python]
    if version is None:
        if python == sys.executable:  # the test interpreter itself: the notebook extra is missing
            pytest.fail(f"ipykernel is not importable here: {why}", pytrace=False)
        service_unavailable(f"ipykernel {major} interpreter", f"{python} cannot import ipykernel: {why}")
    if broken:  # a bug, not a missing service
        pytest.fail(f"{python} cannot import pdtnb's notebook layer: {broken}", pytrace=False)
    if int(version.split(".")[0]) != major:
        pytest.fail(f"{python} has ipykernel {version}, expected {major}.x", pytrace=False)
    return KernelInfo(request.param, name, python, major)


# ---- running cells ---------------------------------------------------------------------------


@pytest.fixture
def run_notebook(kernel: KernelInfo, tmp_path: Path) -> Callable[..., list[CellResult]]:
    """``run_notebook(cells, timeout=...)``: run the cell sources on a fresh kernel of the
    parametrized generation (cwd ``tmp_path``, shut down afterwards); one result per cell."""

    def run(cells: Sequence[str], timeout: float = CELL_TIMEOUT) -> list[CellResult]:
        return run_cells(kernel, cells, tmp_path, timeout)

    run.kernel = kernel  # type: ignore[attr-defined]
    return run


@pytest.fixture
def kernel_session(kernel: KernelInfo, tmp_path: Path) -> Iterator[KernelSession]:
    """A running kernel of the parametrized generation, its version already checked."""
    with KernelSession(kernel, tmp_path) as session:
        session.version_check()
        yield session
