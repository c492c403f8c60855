"""Running a whole example notebook on a real kernel from a test (tests/storage, tests/kube).

Imported by name (``from nbexec import execute``): ``tests/`` is on ``sys.path`` because pytest
imports ``tests/conftest.py`` from there. tests/notebook has its own cell-by-cell runner (nbrun.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest


def write_kernelspec(root: Path, name: str) -> str:
    """A kernelspec ``name`` running this interpreter, in ``root/kernels`` (put ``root`` first on
    JUPYTER_PATH); returns its name."""
    spec = root / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": f"pdtnb test: {name}",
                "language": "python",
            }
        )
    )
    return spec.name


def execute(path: Path, cwd: Path, kernel_name: str, timeout: float, explain: Callable[[], str] | None = None) -> Any:
    """Run the notebook at ``path`` top to bottom in ``cwd``; a failing cell fails the test (with
    ``explain()`` appended) and leaves the executed notebook in ``cwd`` for a look."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel_name, timeout=timeout, resources={"metadata": {"path": str(cwd)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        nbformat.write(nb, cwd / f"{path.stem}.executed.ipynb")
        pytest.fail(f"{path.name} failed in a cell:\n{e}{explain() if explain else ''}", pytrace=False)
    return nb


def cell_text(cell: Any) -> str:
    """Everything a code cell showed: streams, text/plain results, errors."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
    return "".join(parts)
