"""Where the exported cells come from (a saved notebook, or a kernel's input history), the
error every export problem raises, and the names of the tags that steer an export."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import PdtnbError, one_line

#: Cells with this tag are left out of the script.
SKIP_TAG = "pdtnb-skip"
#: Cells with this tag (papermill's convention) hold the parameters.
PARAMETERS_TAG = "parameters"

#: Modules whose objects only make sense in a notebook (widgets, display, the kernel).
NOTEBOOK_MODULES = ("IPython", "ipywidgets", "ipykernel", "pdtnb.notebook")
#: Names IPython puts in the user namespace (or builtins) that a script does not have.
IPYTHON_NAMES = frozenset(
    {"display", "get_ipython", "In", "Out", "_", "__", "___", "_i", "_ii", "_iii", "_ih", "_oh", "_dh"}
    | {"__session__", "__vsc_ipynb_file__"}
)


class ExportError(PdtnbError, ValueError):
    """The notebook cannot be exported as a script; the message names the cell or argument at fault."""


# ---- where the cells come from ----------------------------------------------------------------


@dataclass(frozen=True)
class SourceCell:
    """One code cell to export: its number as the user sees it, its source and its tags."""

    number: int
    source: str
    tags: frozenset[str] = frozenset()
    #: "cell" for a saved notebook (position from 1, all cell types counted), "In" for history.
    kind: str = "cell"

    @property
    def label(self) -> str:
        """``cell 4`` (a notebook's fourth cell) or ``In[4]`` (the fourth input of a session)."""
        return f"cell {self.number}" if self.kind == "cell" else f"In[{self.number}]"

    @property
    def first_line(self) -> str:
        """The cell's first non-blank line, shortened, for messages."""
        for line in self.source.splitlines():
            if line.strip():
                line = line.strip()
                return line if len(line) <= 60 else line[:57] + "..."
        return ""

    def where(self) -> str:
        """``cell 4 (`x = %pdt ls a.b`)``: how an error names this cell."""
        return f"{self.label} (`{self.first_line}`)"


def cells_from_notebook(path: str | os.PathLike[str]) -> list[SourceCell]:
    """The code cells of a saved ``.ipynb`` file, numbered by position (from 1, every cell counted).

    A version-4 notebook (every current one) is read as the JSON it is; only older versions go
    through nbformat's converter. Importing nbformat costs 1.5 to 2.5 s (jsonschema), which a
    shell command pays on every export, and the export needs no schema validation: it reads the
    cells' sources and tags, and reports a file it cannot read as such."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fp:
            raw = json.load(fp)
    except FileNotFoundError:
        raise ExportError(f"notebook {path}: no such file") from None
    except (OSError, ValueError) as e:
        raise ExportError(f"notebook {path} cannot be read as a Jupyter notebook: {one_line(e)}") from None
    if isinstance(raw, dict) and raw.get("nbformat") == 4 and isinstance(raw.get("cells"), list):
        nb = raw
    else:
        try:
            import nbformat
        except ImportError as e:  # pragma: no cover - nbformat is in the notebook extra
            raise ExportError(f"reading a notebook needs nbformat: pip install 'pdtnb[notebook]' ({e})") from None
        try:
            nb = nbformat.read(os.fspath(path), as_version=4)
        except Exception as e:  # nbformat raises jsonschema's ValidationError, among others
            raise ExportError(f"notebook {path} cannot be read as a Jupyter notebook: {one_line(e)}") from None
    metadata = nb.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ExportError(f"notebook {path} cannot be read as a Jupyter notebook: its metadata is not a mapping")
    language = (metadata.get("kernelspec") or {}).get("language") or (metadata.get("language_info") or {}).get("name")
    if language and str(language).lower() != "python":
        raise ExportError(f"notebook {path} is a {language} notebook: only Python notebooks can be exported")
    cells = []
    for number, cell in enumerate(nb.get("cells") or [], 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):  # nbformat normally joins them; be lenient with hand-made files
            source = "".join(source)
        tags = frozenset(str(t) for t in (cell.get("metadata", {}).get("tags") or []))
        cells.append(SourceCell(number, source, tags, "cell"))
    return cells


def cells_from_history(inputs: Sequence[str]) -> list[SourceCell]:
    """The inputs of a kernel session (``history_manager.input_hist_raw``: index 0 is empty, then
    one entry per execution), numbered like ``In[n]``. Tags do not exist there."""
    return [SourceCell(n, source, frozenset(), "In") for n, source in enumerate(inputs) if n > 0 and source.strip()]


def locate_notebook(
    explicit: str | None, user_ns: Mapping[str, Any], environ: Mapping[str, str], cwd: Path | None = None
) -> tuple[Path, str] | None:
    """The saved notebook a kernel runs, and how it was found; None when no file can be found.

    In order: ``explicit`` (``--notebook``, which must exist); ``JPY_SESSION_NAME`` (jupyter-server
    2 sets it to the notebook's path when it starts the kernel; ipykernel copies it to
    ``__session__``); ``__vsc_ipynb_file__`` (set by VS Code). Relative paths are taken from ``cwd``.
    """
    cwd = Path.cwd() if cwd is None else cwd
    if explicit:
        path = cwd / Path(explicit).expanduser()
        if not path.is_file():
            raise ExportError(f"--notebook {explicit}: no such file")
        return path, "--notebook"
    candidates = [
        (environ.get("JPY_SESSION_NAME"), "JPY_SESSION_NAME"),
        (user_ns.get("__session__"), "__session__"),
        (user_ns.get("__vsc_ipynb_file__"), "__vsc_ipynb_file__"),
    ]
    for value, how in candidates:
        if isinstance(value, str) and value.endswith(".ipynb"):
            path = cwd / Path(value).expanduser()
            if path.is_file():
                return path, how
    return None


def shorten(text: str, width: int = 60) -> str:
    """``text`` on one line, cut to ``width`` characters (for messages quoting code)."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
