"""Export a notebook as a standalone pipeline script (``%pdt export`` and ``python -m pdtnb export``).

A notebook is where a pipeline is built and repaired; a script is what runs it from a terminal,
cron or a Kubernetes pod (whose pods run ``python3 SCRIPT launch TASK JOB --force --sync``). The
export keeps the notebook's imports and pipeline-defining code and ends the script with
``pdtnb.main(pipeline)``. The rules are deliberately simple so that a user can predict them
(docs/notebook.md, "Exporting a notebook as a script", states them for users):

* cells tagged ``pdtnb-skip`` are dropped, and so are markdown and raw cells;
* magics and shell escapes are dropped: a cell magic (``%%...``) drops the whole cell, a line
  magic or ``!cmd`` (alone, or assigned: ``x = %pdt ls a.b``, ``y = !ls``) drops its statement.
  IPython's own :class:`~IPython.core.inputtransformer2.TransformerManager` finds them, so the
  export sees exactly what the kernel saw;
* display-only statements are dropped: a top-level expression statement without any call,
  ``await``, ``yield`` or ``:=`` (``pipeline``, ``repo.data``, ``x[0]``), and any expression
  statement or plain assignment that uses a name only the notebook provides (``display``,
  ``get_ipython``, ``In``/``Out``/``_``, anything imported from ``IPython``, ``ipywidgets``,
  ``ipykernel`` or ``pdtnb.notebook``, ``pdtnb.notebook.*``, and names assigned from those);
* each top-level ``name = literal`` in a cell tagged ``parameters`` (papermill's convention)
  becomes a parameter: ``--param name=VALUE`` before the subcommand, or the environment
  variable ``PDTNB_PARAM_NAME`` (the name upper-cased), parsed with the type of the default.

Whatever cannot be exported faithfully is an :class:`ExportError` naming the cell (its number as
Jupyter counts cells, from 1, and its first line): code using a name that only a dropped magic,
a ``pdtnb-skip`` cell or a cell magic defined, a magic inside a block, invalid Python, top-level
``await`` (the script opens the pipeline inside ``pdtnb.main``, on its own loop). The analysis
uses :mod:`ast` and :mod:`symtable`, never regular expressions over Python. This module imports
nothing from IPython or nbformat until it is used, so the command line can call it without a
kernel.
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import os
import stat
import symtable
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PdtnbError
from ..script import ENV_PREFIX, env_name  # what exported scripts use at run time

__all__ = [
    "ExportError",
    "SourceCell",
    "Parameter",
    "ExportPlan",
    "SKIP_TAG",
    "PARAMETERS_TAG",
    "ENV_PREFIX",
    "cells_from_notebook",
    "cells_from_history",
    "locate_notebook",
    "analyse",
    "render_script",
    "write_script",
    "export_in_kernel",
    "summary",
    "env_name",
    "main",
]

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
        raise ExportError(f"notebook {path} cannot be read as a Jupyter notebook: {_one_line(e)}") from None
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
            raise ExportError(f"notebook {path} cannot be read as a Jupyter notebook: {_one_line(e)}") from None
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


# ---- the analysis --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """A parameter of the script: a ``name = literal`` of a cell tagged ``parameters``."""

    name: str
    default: Any
    cell: str

    @property
    def env(self) -> str:
        """The environment variable that overrides it."""
        return env_name(self.name)


@dataclass
class ExportPlan:
    """What the script will contain: the kept code per cell, the parameters, the pipeline variable."""

    origin: str
    chunks: list[tuple[str, str]]
    parameters: list[Parameter]
    pipeline: str
    #: The name the kept code binds the pdtnb module to (``import pdtnb as pdt``), if any.
    pdtnb_alias: str | None
    #: Whether the kept code binds the name ``pdtnb`` to something else than the module.
    pdtnb_taken: bool
    future_imports: list[str] = field(default_factory=list)
    #: What was left out and why, one line each (``cell 3: %%capture cell magic``).
    dropped: list[str] = field(default_factory=list)


@dataclass
class _Scope:
    """What the script's module namespace holds, statement after statement."""

    #: Names a script will not have, with why: assigned by a magic, defined only in a skipped cell.
    unavailable: dict[str, str] = field(default_factory=dict)
    #: Names holding notebook-only objects (widgets, display helpers), with where they come from.
    notebook_only: dict[str, str] = field(default_factory=dict)
    #: Names bound by kept code, in order of first binding.
    bound: dict[str, str] = field(default_factory=dict)
    pdtnb_aliases: set[str] = field(default_factory=set)
    pipeline_classes: set[str] = field(default_factory=set)
    pipelines: dict[str, str] = field(default_factory=dict)
    pdtnb_taken: bool = False

    def __post_init__(self) -> None:
        for name in IPYTHON_NAMES:
            self.notebook_only[name] = "provided by IPython"

    def bind_kept(self, names: Iterable[str], where: str) -> None:
        for name in names:
            self.unavailable.pop(name, None)
            self.notebook_only.pop(name, None)
            self.bound.setdefault(name, where)
            self.pdtnb_aliases.discard(name)
            self.pipeline_classes.discard(name)
            self.pipelines.pop(name, None)
            if name == "pdtnb":
                self.pdtnb_taken = True

    def bind_unavailable(self, names: Iterable[str], why: str) -> None:
        for name in names:
            self.unavailable[name] = why
            self.notebook_only.pop(name, None)
            self.pdtnb_aliases.discard(name)
            self.pipeline_classes.discard(name)
            self.pipelines.pop(name, None)

    def bind_notebook_only(self, names: Iterable[str], why: str) -> None:
        for name in names:
            self.notebook_only[name] = why
            self.unavailable.pop(name, None)
            self.pdtnb_aliases.discard(name)
            self.pipeline_classes.discard(name)
            self.pipelines.pop(name, None)


def analyse(
    cells: Sequence[SourceCell],
    *,
    origin: str,
    pipeline: str | None = None,
    pipeline_flag: str = "--pipeline",
    known_pipelines: Collection[str] = (),
) -> ExportPlan:
    """Decide what of ``cells`` goes into the script; raise :class:`ExportError` naming the cell at
    fault when the result would not run like the notebook.

    ``pipeline`` names the Pipeline variable (``pipeline_flag`` is how the caller spelled the
    option, for messages); otherwise it is the only top-level assignment from ``Pipeline(...)``,
    or the only name in ``known_pipelines`` (the Pipeline variables of a live kernel) that the
    kept code binds.
    """
    scope = _Scope()
    chunks: list[tuple[str, str]] = []
    parameters: list[Parameter] = []
    future: list[str] = []
    dropped: list[str] = []
    for cell in cells:
        if SKIP_TAG in cell.tags:
            names = _python_bindings(cell.source)
            scope.bind_unavailable(names, f"defined only in {cell.label}, which is tagged {SKIP_TAG}")
            dropped.append(f"{cell.label}: tagged {SKIP_TAG}")
            continue
        code = _chunk(cell, scope, parameters, future, dropped)
        if code.strip():
            header = cell.label
            if PARAMETERS_TAG in cell.tags:
                header += " (parameters: --param NAME=VALUE before the subcommand, or PDTNB_PARAM_NAME)"
            chunks.append((header, code))
    _check_parameters(parameters)
    chosen = _choose_pipeline(scope, pipeline, pipeline_flag, known_pipelines)
    alias = "pdtnb" if "pdtnb" in scope.pdtnb_aliases else min(scope.pdtnb_aliases, default=None)
    return ExportPlan(origin, chunks, parameters, chosen, alias, scope.pdtnb_taken, future, dropped)


def _transform(cell: SourceCell) -> str:
    """The cell as the kernel runs it: IPython syntax turned into ``get_ipython()`` calls.

    IPython drops the leading blank lines; they are put back so that line numbers in messages
    are the cell's own.
    """
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError as e:  # pragma: no cover - IPython is in the notebook extra
        raise ExportError(f"exporting needs IPython: pip install 'pdtnb[notebook]' ({e})") from None
    try:
        code = TransformerManager().transform_cell(cell.source)
    except Exception as e:  # IPython's tokenizer raises a variety of errors on broken input
        raise ExportError(f"{cell.where()}: invalid Python: {_one_line(e)}") from None
    lines = cell.source.splitlines()
    blank = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    return "\n" * blank + code


def _parse(cell: SourceCell, code: str) -> ast.Module:
    """The cell's syntax tree; the compiler also runs, for what parses but cannot run (``return``
    outside a function). Top-level ``await`` compiles here: it gets its own message later."""
    try:
        tree = ast.parse(code, filename=cell.label)
        compile(code, cell.label, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as e:
        raise ExportError(f"{cell.where()}: invalid Python at line {e.lineno}: {e.msg}") from None
    return tree


def _ipython_call(node: ast.AST) -> str | None:
    """``run_line_magic``/``run_cell_magic``/``system``/``getoutput``... for ``get_ipython().X(...)``."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Name)
        and node.func.value.func.id == "get_ipython"
    ):
        return node.func.attr
    return None


def _uses_get_ipython(node: ast.AST) -> ast.AST | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "get_ipython":
            return sub
    return None


def _magic_description(call: ast.Call) -> str:
    kind = _ipython_call(call)
    args = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if kind == "run_line_magic" and args:
        return f"%{args[0]} {args[1] if len(args) > 1 else ''}".strip()
    if kind == "run_cell_magic" and args:
        return f"%%{args[0]} {args[1] if len(args) > 1 else ''}".strip()
    if kind in ("system", "getoutput") and args:
        return f"!{args[0]}"
    return ast.unparse(call)


def _python_bindings(text: str) -> set[str]:
    """Top-level names ``text`` binds if it is Python (a ``%%time`` body, a ``%time`` argument)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        tree = ast.parse(TransformerManager().transform_cell(text))
    except Exception:
        return set()
    names: set[str] = set()
    for stmt in tree.body:
        names |= _statement_names(stmt)[1]
    return names


def _magic_bindings(call: ast.Call) -> set[str]:
    """Names a magic may bind: Python given to it (``%time x = f()``, a ``%%time`` body) and the
    output variable of ``%%capture``. Best effort: ``%run`` or ``%store -r`` cannot be known."""
    args = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    names: set[str] = set()
    kind = _ipython_call(call)
    if kind == "run_cell_magic" and len(args) >= 3:
        names |= _python_bindings(args[2])
        words = args[1].split()
        if args[0] == "capture" and words and words[-1].isidentifier():
            names.add(words[-1])
    elif kind == "run_line_magic" and len(args) >= 2:
        names |= _python_bindings(args[1])
    return names


def _statement_names(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    """(names the statement reads from the module namespace, names it binds there), by symtable.

    Reads include names used inside the functions and classes it defines (they run later, in the
    script's namespace); binds include ``global`` names assigned in them.
    """
    source = ast.unparse(stmt)
    try:
        table = symtable.symtable(source, "<cell>", "exec")
    except SyntaxError:
        return _names_by_ast(stmt)
    reads: set[str] = set()
    binds: set[str] = set()
    for sym in table.get_symbols():
        if sym.is_referenced():
            reads.add(sym.get_name())
        if sym.is_assigned() or sym.is_imported() or sym.is_namespace():
            binds.add(sym.get_name())
    todo = list(table.get_children())
    while todo:
        child = todo.pop()
        todo.extend(child.get_children())
        for sym in child.get_symbols():
            if sym.is_global() and sym.is_referenced():
                reads.add(sym.get_name())
            if sym.is_declared_global() and sym.is_assigned():
                binds.add(sym.get_name())
    return reads, binds


def _names_by_ast(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    # symtable refuses a few things ast accepts (``await`` in some places); a coarse answer is
    # enough there, since such statements are refused or dropped anyway.
    reads = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    binds = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return reads, binds


def _has_effects(expr: ast.AST) -> bool:
    """Whether evaluating ``expr`` can do anything besides producing a value to display."""
    return any(isinstance(n, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)) for n in ast.walk(expr))


def _top_level_await(stmt: ast.stmt) -> bool:
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return True
        if isinstance(node, ast.comprehension) and node.is_async:
            return True
        if node is not stmt and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # A def's decorators and defaults run at the top level; its body does not.
            todo.extend(node.decorator_list)
            todo.extend(node.args.defaults)
            todo.extend(d for d in node.args.kw_defaults if d is not None)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return False


def _is_notebook_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in NOTEBOOK_MODULES)


def _simple_targets(stmt: ast.stmt) -> list[str] | None:
    """The names of ``a = ...`` / ``a, b = ...`` / ``a: T = ...``; None for any other target."""
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets = [stmt.target]
    else:
        return None
    names: list[str] = []
    for target in targets:
        elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        for element in elements:
            if not isinstance(element, ast.Name):
                return None
            names.append(element.id)
    return names


def _notebook_reference(stmt: ast.stmt, reads: set[str], scope: _Scope) -> str | None:
    """How ``stmt`` depends on the notebook (``display``, a widget, ``pdtnb.notebook``), or None."""
    for name in sorted(reads):
        if name in scope.notebook_only:
            return f"uses {name} ({scope.notebook_only[name]})"
        numbered = name[2:] if name.startswith("_i") else name[1:] if name.startswith("_") else ""
        if numbered.isdigit() and name not in scope.bound:
            return f"uses {name} (an output or input of the IPython session)"
    for node in ast.walk(stmt):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "notebook"
            and isinstance(node.value, ast.Name)
            and node.value.id in scope.pdtnb_aliases
        ):
            return f"uses {node.value.id}.notebook (the notebook layer)"
    return None


def _split_notebook_imports(stmt: ast.stmt) -> tuple[ast.stmt | None, list[str]]:
    """An import without its notebook-only modules (None if nothing is left), and the names those
    would have bound. ``import pdtnb.notebook`` becomes ``import pdtnb`` (it binds ``pdtnb``)."""
    if isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module:
        if _is_notebook_module(stmt.module) or (
            stmt.module == "pdtnb" and any(a.name == "notebook" for a in stmt.names)
        ):
            if stmt.module == "pdtnb":
                keep = [a for a in stmt.names if a.name != "notebook"]
                gone = [a.asname or a.name for a in stmt.names if a.name == "notebook"]
                if keep:
                    return ast.ImportFrom(module="pdtnb", names=keep, level=0), gone
                return None, gone
            return None, [a.asname or a.name for a in stmt.names]
        return stmt, []
    if isinstance(stmt, ast.Import):
        keep: list[ast.alias] = []
        gone: list[str] = []
        for alias in stmt.names:
            if not _is_notebook_module(alias.name):
                keep.append(alias)
            elif alias.asname:
                gone.append(alias.asname)
            elif alias.name.startswith("pdtnb."):
                keep.append(ast.alias(name="pdtnb"))
            else:
                gone.append(alias.name.split(".")[0])
        if len(keep) == len(stmt.names) and all(k is a for k, a in zip(keep, stmt.names)):
            return stmt, gone
        return (ast.Import(names=keep) if keep else None), gone
    return stmt, []


def _note_imports(stmt: ast.stmt, scope: _Scope) -> None:
    """Remember what the kept import binds to pdtnb (module aliases, the Pipeline class)."""
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            if alias.name == "pdtnb" or (alias.name.startswith("pdtnb.") and not alias.asname):
                scope.pdtnb_aliases.add(alias.asname or "pdtnb")
    elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module in ("pdtnb", "pdtnb.pipeline"):
        for alias in stmt.names:
            if alias.name == "Pipeline":
                scope.pipeline_classes.add(alias.asname or alias.name)


def _is_pipeline_call(value: ast.AST | None, scope: _Scope) -> bool:
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    if isinstance(func, ast.Name):
        return func.id in scope.pipeline_classes
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "Pipeline"
        and isinstance(func.value, ast.Name)
        and func.value.id in scope.pdtnb_aliases
    )


def _parameter(stmt: ast.stmt) -> tuple[str, Any, ast.expr] | None:
    """``(name, default, value node)`` when ``stmt`` is ``name = literal`` (or ``name: T = literal``)."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        name, value = stmt.targets[0].id, stmt.value
    elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        name, value = stmt.target.id, stmt.value
    else:
        return None
    try:
        default = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return name, default, value


def _chunk(
    cell: SourceCell, scope: _Scope, parameters: list[Parameter], future: list[str], dropped: list[str]
) -> str:
    """The code of ``cell`` that goes into the script (updating ``scope``)."""
    code = _transform(cell)
    tree = _parse(cell, code)
    body = tree.body
    # A cell magic is the whole cell: drop it, and remember what its body may have defined.
    if len(body) == 1 and isinstance(body[0], ast.Expr) and _ipython_call(body[0].value) == "run_cell_magic":
        call = body[0].value
        assert isinstance(call, ast.Call)
        description = _magic_description(call).split("\n")[0]
        scope.bind_unavailable(
            _magic_bindings(call), f"defined only by the {description.split()[0]} cell magic of {cell.label}"
        )
        dropped.append(f"{cell.label}: {description.split()[0]} cell magic")
        return ""
    lines = code.splitlines(keepends=True)
    # Each statement: None (dropped), True (kept as written) or replacement text.
    decisions: list[bool | str | None] = []
    for stmt in body:
        decisions.append(_decide(stmt, cell, code, scope, parameters, future, dropped))
    return _assemble(body, decisions, lines)


def _decide(
    stmt: ast.stmt,
    cell: SourceCell,
    code: str,
    scope: _Scope,
    parameters: list[Parameter],
    future: list[str],
    dropped: list[str],
) -> bool | str | None:
    where = cell.where()
    line = stmt.lineno
    # 1. Magics and shell escapes, alone or assigned.
    value = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign)) else None
    kind = _ipython_call(value) if value is not None else None
    if kind is not None:
        assert isinstance(value, ast.Call)
        description = _magic_description(value)
        if isinstance(stmt, ast.Expr):
            scope.bind_unavailable(_magic_bindings(value), f"assigned by `{description}` in {cell.label}")
            dropped.append(f"{cell.label} line {line}: {description.split(chr(10))[0]}")
            return None
        targets = _simple_targets(stmt)
        if targets is None:
            raise ExportError(
                f"{where}: line {line} stores the output of `{description}` in "
                f"{ast.unparse(stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target)}; a script cannot "
                f"run magics: compute it in Python, or tag the cell {SKIP_TAG}"
            )
        scope.bind_unavailable(targets, f"assigned by `{description}` in {cell.label}")
        dropped.append(f"{cell.label} line {line}: {', '.join(targets)} = {description}")
        return None
    nested = _uses_get_ipython(stmt)
    if nested is not None:
        if isinstance(stmt, ast.Expr):  # get_ipython() used directly in a displayed expression
            dropped.append(f"{cell.label} line {line}: uses get_ipython()")
            return None
        shown = ast.get_source_segment(code, nested) or "get_ipython()"
        magic = next((n for n in ast.walk(stmt) if _ipython_call(n)), None)
        if isinstance(magic, ast.Call):
            shown = _magic_description(magic)
        raise ExportError(
            f"{where}: line {getattr(nested, 'lineno', line)} runs `{shown}` inside a block; a script cannot run "
            f"magics or get_ipython(): move it to its own top-level line, or tag the cell {SKIP_TAG}"
        )
    # 2. Imports of notebook-only modules.
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            text = ast.unparse(stmt)
            if text not in future:
                future.append(text)
            return None
        kept, gone = _split_notebook_imports(stmt)
        if gone:
            scope.bind_notebook_only(gone, f"imported from a notebook-only module in {cell.label}")
            dropped.append(f"{cell.label} line {line}: notebook-only import of {', '.join(gone)}")
        if kept is None:
            return None
        _, binds = _statement_names(kept)
        scope.bind_kept(binds, cell.label)
        _note_imports(kept, scope)
        return True if kept is stmt else ast.unparse(kept)
    # 3. Display-only expressions: nothing but a value to show.
    if isinstance(stmt, ast.Expr) and not _has_effects(stmt.value):
        dropped.append(f"{cell.label} line {line}: display of `{_short(ast.unparse(stmt))}`")
        return None
    reads, binds = _statement_names(stmt)
    # 4. Code that needs what a magic or a skipped cell defined cannot run.
    for name in sorted(reads):
        if name in scope.unavailable:
            raise ExportError(
                f"{where}: line {line} uses {name}, which is {scope.unavailable[name]}; the script would not "
                f"have it: compute it in Python, or tag this cell {SKIP_TAG}"
            )
    # 5. Code that works on widgets or display helpers is display code.
    notebook = _notebook_reference(stmt, reads, scope)
    if notebook is not None:
        if isinstance(stmt, ast.Expr):
            dropped.append(f"{cell.label} line {line}: display code ({notebook})")
            return None
        targets = _simple_targets(stmt)
        if targets is not None:
            scope.bind_notebook_only(targets, f"assigned from notebook-only code in {cell.label}")
            dropped.append(f"{cell.label} line {line}: display code ({notebook})")
            return None
        raise ExportError(
            f"{where}: line {line} {notebook}, which a script does not have; keep display code in expression "
            f"statements or plain assignments, or tag the cell {SKIP_TAG}"
        )
    # 6. Top-level await runs on the kernel's loop; a script has none at import time.
    if _top_level_await(stmt):
        raise ExportError(
            f"{where}: line {line} uses top-level await, which a script cannot run at import time (pdtnb.main "
            f"opens the pipeline on its own loop): move it into an async function, or tag the cell {SKIP_TAG}"
        )
    # 7. Kept. Parameters are rewritten to read their overrides.
    scope.bind_kept(binds, cell.label)
    targets = _simple_targets(stmt)
    if targets and isinstance(stmt, (ast.Assign, ast.AnnAssign)) and _is_pipeline_call(stmt.value, scope):
        for name in targets:
            scope.pipelines.setdefault(name, cell.label)
    if PARAMETERS_TAG in cell.tags:
        found = _parameter(stmt)
        if found is not None:
            name, default, node = found
            parameters.append(Parameter(name, default, cell.label))
            literal = ast.get_source_segment(code, node) or repr(default)
            if isinstance(stmt, ast.AnnAssign):
                return f"{name}: {ast.unparse(stmt.annotation)} = _pdtnb_param({name!r}, {literal})"
            return f"{name} = _pdtnb_param({name!r}, {literal})"
    return True


def _assemble(body: list[ast.stmt], decisions: list[bool | str | None], lines: list[str]) -> str:
    """The kept statements, as written (comments included) where possible."""

    def start(stmt: ast.stmt) -> int:
        decorators = getattr(stmt, "decorator_list", [])
        return min([stmt.lineno, *(d.lineno for d in decorators)])

    # Statements sharing a line (``a = 1; b``) form one group.
    groups: list[list[int]] = []
    for i, stmt in enumerate(body):
        if groups and start(stmt) <= (body[groups[-1][-1]].end_lineno or 0):
            groups[-1].append(i)
        else:
            groups.append([i])
    out: list[str] = []
    previous_end = 0
    for group in groups:
        first, last = start(body[group[0]]), body[group[-1]].end_lineno or body[group[-1]].lineno
        gap = lines[previous_end : first - 1]
        previous_end = last
        chosen = [decisions[i] for i in group]
        if all(d is None for d in chosen):
            continue
        out.extend(gap)
        if all(d is True for d in chosen):
            out.extend(lines[first - 1 : last])
            continue
        for i in group:
            decision = decisions[i]
            if decision is None:
                continue
            if isinstance(decision, str):
                comment = _trailing_comment(lines[last - 1], body[i]) if len(group) == 1 else ""
                out.append(decision.rstrip("\n") + comment + "\n")
            elif len(group) == 1:
                out.extend(lines[first - 1 : last])
            else:
                out.append(ast.unparse(body[i]) + "\n")
    if out:
        out.extend(line for line in lines[previous_end:] if line.strip().startswith("#"))
    text = "".join(out)
    if text and not text.endswith("\n"):
        text += "\n"
    return text.strip("\n") + "\n" if text.strip() else ""


def _trailing_comment(line: str, stmt: ast.stmt) -> str:
    """The ``  # comment`` after ``stmt`` on its last line (column offsets count UTF-8 bytes)."""
    rest = line.encode("utf-8")[stmt.end_col_offset or 0 :].decode("utf-8", "replace").rstrip("\n")
    return "  " + rest.strip() if rest.strip().startswith("#") else ""


def _check_parameters(parameters: list[Parameter]) -> None:
    seen: dict[str, Parameter] = {}
    for p in parameters:
        other = seen.get(p.env)
        if other is not None and other.name != p.name:
            raise ExportError(
                f"{p.cell}: parameters {other.name!r} ({other.cell}) and {p.name!r} would share the environment "
                f"variable {p.env}: rename one"
            )
        seen[p.env] = p


def _choose_pipeline(
    scope: _Scope, requested: str | None, flag: str, known: Collection[str]
) -> str:
    found = dict(scope.pipelines)
    for name in known:
        if name in scope.bound and name not in scope.unavailable and name not in scope.notebook_only:
            found.setdefault(name, scope.bound[name])
    listing = ", ".join(sorted(found)) or "none"
    if requested is not None:
        if not requested.isidentifier():
            raise ExportError(f"{flag} {requested!r}: not a Python variable name")
        if requested in scope.unavailable:
            why = scope.unavailable[requested]
            raise ExportError(f"{flag} {requested}: {requested} is {why} (pipelines: {listing})")
        if requested not in scope.bound or requested in scope.notebook_only:
            raise ExportError(
                f"{flag} {requested}: the exported cells never assign {requested} at the top level "
                f"(pipelines found: {listing})"
            )
        return requested
    if len(found) == 1:
        return next(iter(found))
    if not found:
        hidden = sorted(n for n in known if n in scope.unavailable)
        extra = f" ({hidden[0]} is {scope.unavailable[hidden[0]]})" if hidden else ""
        raise ExportError(
            "no Pipeline is defined by the exported cells: assign one at the top level of a cell, "
            f"e.g. pipeline = pdtnb.Pipeline([...], session){extra}"
        )
    raise ExportError(f"several pipelines are defined ({listing}): choose one with {flag} NAME")


# ---- the script ---------------------------------------------------------------------------------

_PRELUDE = """\
# ---- added by pdtnb export: parameters (--param NAME=VALUE before the subcommand, or {env_prefix}NAME)
from pdtnb.script import Parameters as _PdtnbParameters

_pdtnb_param = _PdtnbParameters({parameters}, main=__name__ == "__main__")
"""

_REPLAY = """\
# ---- added by pdtnb export --actions: `python {script} replay` performs these, in order ----------
_PDTNB_ACTIONS = [
{actions}]
"""


def _literal(value: Any) -> str | None:
    """``repr(value)`` when it reads back as an equal literal, else None."""
    text = repr(value)
    try:
        back = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return text if back == value and type(back) is type(value) else None


def _render_action(number: int, action: Any) -> str:
    """One entry of ``_PDTNB_ACTIONS`` for a controller :class:`~pdtnb.notebook.controller.Action`."""
    kind: str = action.kind
    args: dict[str, Any] = dict(action.args)
    entry: dict[str, str] = {"kind": repr(kind)}
    if kind == "inject":
        value = args.pop("value")
        text = _literal(value)
        entry.update({k: repr(v) for k, v in args.items()})
        if text is not None:
            entry["value"] = text
        else:
            from ..repository.metadata import yaml_dump

            try:
                entry["yaml"] = repr(yaml_dump(value).decode("utf-8"))
            except Exception:
                raise ExportError(
                    f"--actions: action {number} (inject {args.get('data')} {args.get('job')}) stored a "
                    f"{type(value).__name__}, which can be written neither as a Python literal nor as YAML"
                ) from None
    else:
        if kind == "run":
            args.pop("forever", None)  # a --forever run is replayed until the pipeline is quiet
        for key, value in args.items():
            text = _literal(value)
            if text is None:
                raise ExportError(f"--actions: action {number} ({kind}) has an argument {key} that is not a literal")
            entry[key] = text
    body = ", ".join(f"{k!r}: {v}" for k, v in entry.items())
    at = getattr(action, "at", None)
    stamp = f"  # {at.astimezone(_dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC" if isinstance(at, _dt.datetime) else ""
    return f"    {{{body}}},{stamp}\n"


def render_script(plan: ExportPlan, actions: Sequence[Any] | None = None, script_name: str = "SCRIPT") -> str:
    """The text of the script for ``plan``; with ``actions`` (controller actions, possibly empty)
    it also has the ``replay`` subcommand."""
    params = ", ".join(f"{p.name!r}: {_literal(p.default) or repr(p.default)}" for p in plan.parameters)
    doc = [
        f"Exported from {plan.origin} by `pdtnb export`: the notebook's pipeline as a command-line tool.",
        "",
        f"    python {script_name} [--param NAME=VALUE]... {{update,run,status,trace,rm,ls,cat,inject,launch,shell"
        + (",replay" if actions is not None else "")
        + "} ...",
        "",
    ]
    if plan.parameters:
        doc.append("Parameters (--param NAME=VALUE before the subcommand, or the environment variable):")
        doc.extend(f"    {p.name} = {_short(repr(p.default))}  ({p.env}; {p.cell})" for p in plan.parameters)
    else:
        doc.append("Parameters: none (tag a notebook cell 'parameters' to have some).")
    if actions is not None:
        doc += ["", f"`replay` performs the {len(actions)} actions taken in the notebook session, in order."]
    lines = ["#!/usr/bin/env python3", '"""' + "\n".join(doc).replace('"""', "'''").replace("\\", "\\\\") + '\n"""']
    lines.extend(plan.future_imports)
    lines.append("")
    lines.append(_PRELUDE.format(parameters="{" + params + "}", env_prefix=ENV_PREFIX))
    for header, code in plan.chunks:
        lines.append(f"# %% {header}")
        lines.append(code)
    instrument = ""
    if actions is not None:
        entries = "".join(_render_action(n, a) for n, a in enumerate(actions, 1))
        lines.append(_REPLAY.format(script=script_name, actions=entries))
        instrument = ", instrument=_pdtnb_replay_command(_PDTNB_ACTIONS)"
    if plan.pdtnb_alias is not None:
        module, importing = plan.pdtnb_alias, ""
    elif plan.pdtnb_taken:
        module, importing = "_pdtnb", "    import pdtnb as _pdtnb\n\n"
    else:
        module, importing = "pdtnb", "    import pdtnb\n\n"
    if instrument:
        importing += "    from pdtnb.script import replay_command as _pdtnb_replay_command\n\n"
    lines.append(f'\nif __name__ == "__main__":\n{importing}    {module}.main({plan.pipeline}{instrument})\n')
    text = "\n".join(lines)
    try:
        compile(text, script_name, "exec")
    except SyntaxError as e:  # the kept code compiled cell by cell; a failure here is a statement
        raise ExportError(  # that only compiles inside a function, such as `return` at the top level
            f"the exported script is not valid Python at line {e.lineno} ({_short(e.text or '')}): {e.msg}"
        ) from None
    return text


def write_script(text: str, output: str | os.PathLike[str], *, notebook: Path | None = None) -> Path:
    """Write ``text`` to ``output`` (executable, since it starts with ``#!``), refusing to
    overwrite the notebook it came from."""
    path = Path(output).expanduser()
    if notebook is not None and path.exists() and path.resolve() == notebook.resolve():
        raise ExportError(f"output {output}: that is the notebook being exported; choose another path")
    if path.is_dir():
        raise ExportError(f"output {output}: is a directory; give the script's file name")
    try:
        path.write_text(text, encoding="utf-8")
        mode = path.stat().st_mode
        path.chmod(mode | ((mode & 0o444) >> 2) | stat.S_IXUSR)
    except OSError as e:
        raise ExportError(f"output {output}: cannot write it: {e.strerror or e}") from None
    return path


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# ---- %pdt export ----------------------------------------------------------------------------------


def export_in_kernel(
    shell: Any,
    output: str,
    *,
    notebook: str | None = None,
    pipeline: str | None = None,
    selected: str | None = None,
    actions: bool = False,
    live_pipelines: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = print,
) -> str:
    """``%pdt export``: export the notebook a kernel runs; returns the one-line summary.

    The saved file is preferred (see :func:`locate_notebook`); without one, the session's input
    history is exported. ``selected`` is the ``%pdt use`` choice, used when ``pipeline`` is not
    given; ``live_pipelines`` the kernel's Pipeline variables (they help find the pipeline, and
    ``actions`` takes the chosen one's controller log). ``say`` prints the notes about the source.
    """
    from .controller import controller_for

    live = dict(live_pipelines or {})
    located = locate_notebook(notebook, shell.user_ns, os.environ)
    if located is not None:
        path, how = located
        cells = cells_from_notebook(path)
        origin = path.name
        say(
            f"pdtnb export: reading the saved notebook {path} (from {how}); "
            "edits not saved in the browser are not included"
        )
    else:
        cells = cells_from_history(shell.history_manager.input_hist_raw)
        origin = "the input history of a kernel session"
        say(
            "pdtnb export: no saved notebook found (no --notebook, JPY_SESSION_NAME or __vsc_ipynb_file__): "
            f"exporting this session's input history (In[1] to In[{len(shell.history_manager.input_hist_raw) - 1}]); "
            "cell tags are unavailable there, so no cell is skipped and there are no parameters"
        )
    requested, flag = (pipeline, "--pipeline") if pipeline else (selected, "%pdt use")
    plan = analyse(cells, origin=origin, pipeline=requested, pipeline_flag=flag, known_pipelines=list(live))
    recorded: list[Any] | None = None
    if actions:
        target = live.get(plan.pipeline)
        if target is None:
            raise ExportError(
                f"--actions: {plan.pipeline} holds no Pipeline in this kernel, so it has no actions: "
                "run the cells defining it first"
            )
        recorded = list(controller_for(target, plan.pipeline).actions)
    text = render_script(plan, recorded, Path(output).name)
    written = write_script(text, Path.cwd() / Path(output).expanduser(), notebook=located[0] if located else None)
    line = f"wrote {written}: {summary(plan, recorded)}"
    if recorded is not None:
        line += f" (python {written.name} replay)"
    return line


# ---- python -m pdtnb export ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m pdtnb export") -> int:
    """``python -m pdtnb export NOTEBOOK.ipynb -o SCRIPT.py [--pipeline NAME]``; returns the exit status
    (2 and one ``error: ...`` line for anything that cannot be exported)."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # type: ignore[override]
            self.print_usage(sys.stderr)
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2)

    parser = Parser(
        prog=prog,
        description="Write a notebook's pipeline as a standalone script ending with pdtnb.main(pipeline).",
    )
    parser.add_argument("notebook", help="the .ipynb file (its saved contents are exported)")
    parser.add_argument("-o", "--output", required=True, help="the script to write ('-' for standard output)")
    parser.add_argument("--pipeline", metavar="NAME", help="the Pipeline variable, when several are defined")
    parser.add_argument(
        "--actions",
        action="store_true",
        help="only for %%pdt export in a notebook: a saved notebook holds no session actions",
    )
    args = parser.parse_args(argv)
    try:
        if args.actions:
            raise ExportError(
                "--actions: the actions of a notebook session live in its kernel, not in the saved notebook; "
                "run `%pdt export PATH --actions` in the notebook instead"
            )
        notebook = Path(args.notebook)
        cells = cells_from_notebook(notebook)
        plan = analyse(cells, origin=notebook.name, pipeline=args.pipeline)
        name = "SCRIPT" if args.output == "-" else Path(args.output).name
        text = render_script(plan, None, name)
        if args.output == "-":
            sys.stdout.write(text)
        else:
            path = write_script(text, args.output, notebook=notebook)
            print(f"wrote {path}: {summary(plan, None)}", file=sys.stderr)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def summary(plan: ExportPlan, actions: Sequence[Any] | None) -> str:
    """One line saying what the script holds."""
    parts = [f"pipeline {plan.pipeline!r}"]
    if plan.parameters:
        parts.append(f"parameters {', '.join(p.name for p in plan.parameters)}")
    else:
        parts.append("no parameters")
    if actions is not None:
        parts.append(f"{len(actions)} actions to replay")
    return "; ".join(parts)
