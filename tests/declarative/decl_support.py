"""Helpers of the declarative-pipeline tests: writing pipeline files, running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pdtnb

ROOT = Path(__file__).resolve().parents[2]
#: The pipeline files and task bodies these tests run (valid files: the schema test reads them).
FILES = Path(__file__).resolve().parent / "files"
EXAMPLE = ROOT / "examples" / "books"


def write(directory: Path, name: str, text: str) -> Path:
    """Write ``text`` (dedented, leading newline dropped) as ``directory/name``; ``@FILES@`` in it
    is this directory of bodies (for ``import_paths``)."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n").replace("@FILES@", str(FILES)), encoding="utf-8")
    return path


def refusal(path: Path, environ: dict[str, str] | None = None) -> pdtnb.DeclarationError:
    """The DeclarationError ``pdtnb.check(path)`` raises (with an empty environment unless given)."""
    with pytest.raises(pdtnb.DeclarationError) as info:
        pdtnb.check(path, environ=environ if environ is not None else {})
    return info.value


def assert_at(error: pdtnb.DeclarationError, file: Path | str, line: int, column: int, *fragments: str) -> None:
    """``error`` is at ``file:line:column``, says every fragment, and is one line."""
    assert error.where is not None, str(error)
    assert (error.where.file, error.where.line, error.where.column) == (str(file), line, column), str(error)
    text = str(error)
    assert text.startswith(f"{file}:{line}:{column}: ")
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in error.reason, f"{fragment!r} not in {error.reason!r}"


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m pdtnb ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "pdtnb", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
