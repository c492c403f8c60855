"""Which statements of which cells go into the script, checked so that the script behaves like the
notebook: the rules are in the package docstring (:mod:`pdtnb.notebook.export`)."""

from __future__ import annotations

import ast
import os
import symtable
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import one_line
from ...script import env_name
from .cells import IPYTHON_NAMES, NOTEBOOK_MODULES, PARAMETERS_TAG, SKIP_TAG, ExportError, SourceCell, shorten

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
    #: The ``%pdt load FILE [as NAME]`` lines turned into ``NAME = pdtnb.load(...)``: (NAME, FILE).
    loads: list[tuple[str, str]] = field(default_factory=list)
    #: What the user is told when exporting, one line each: the cells left out for their
    #: top-level await (``left out cell 6: top-level await; it defines nothing the pipeline uses``).
    notices: list[str] = field(default_factory=list)


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
    #: Where a relative ``%pdt load FILE`` was found (see :func:`analyse`), and the script's directory.
    load_base: Path = field(default_factory=Path.cwd)
    script_dir: Path = field(default_factory=Path.cwd)
    loads: list[tuple[str, str]] = field(default_factory=list)
    #: Names defined only in a cell left out for its top-level await: (that cell, the await's
    #: line, the line binding the name). Kept code reading one is refused, naming that cell.
    awaited: dict[str, tuple[SourceCell, int, int]] = field(default_factory=dict)
    #: Names kept code read before kept code bound them (a function body reads them when the
    #: script calls it), with where: checked against ``awaited`` at the end.
    free_reads: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: Names assigned a Pipeline in cells left out for their top-level await (for messages).
    lost_pipelines: set[str] = field(default_factory=set)
    notices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in IPYTHON_NAMES:
            self.notebook_only[name] = "provided by IPython"

    def bind_kept(self, names: Iterable[str], where: str) -> None:
        for name in names:
            self.unavailable.pop(name, None)
            self.notebook_only.pop(name, None)
            self.awaited.pop(name, None)
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
            self.awaited.pop(name, None)
            self.pdtnb_aliases.discard(name)
            self.pipeline_classes.discard(name)
            self.pipelines.pop(name, None)

    def bind_notebook_only(self, names: Iterable[str], why: str) -> None:
        for name in names:
            self.notebook_only[name] = why
            self.unavailable.pop(name, None)
            self.awaited.pop(name, None)
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
    load_base: str | os.PathLike[str] | None = None,
    script_dir: str | os.PathLike[str] | None = None,
) -> ExportPlan:
    """Decide what of ``cells`` goes into the script; raise :class:`ExportError` naming the cell at
    fault when the result would not run like the notebook.

    ``pipeline`` names the Pipeline variable (``pipeline_flag`` is how the caller spelled the
    option, for messages); otherwise it is the only top-level assignment from ``Pipeline(...)``
    or ``%pdt load``, or the only name in ``known_pipelines`` (the Pipeline variables of a live
    kernel) that the kept code binds.

    ``%pdt load FILE [as NAME]`` becomes ``NAME = pdtnb.load(...)``. The magic read a relative
    ``FILE`` from the kernel's working directory; ``load_base`` is that directory (``%pdt
    export`` passes the kernel's, ``python -m pdtnb export`` the notebook's, where Jupyter starts
    its kernels; default: the current directory). The script finds the file **relative to its
    own location** (``script_dir``, default the current directory), as the two were placed at
    export time, and else at the absolute path the export resolved:
    ``pdtnb.load(_pdtnb_file("../pipelines/books.yaml", "/home/me/project/pipelines/books.yaml"))``.
    So it runs from any working directory, keeps working when the script and the pipeline file
    move together (a repository checked out elsewhere, a container image), and also when only the
    script is written elsewhere. An absolute ``FILE`` (or ``~/...``) is written as it was given.
    """
    scope = _Scope()
    if load_base is not None:
        scope.load_base = Path(load_base)
    if script_dir is not None:
        scope.script_dir = Path(script_dir)
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
    # Kept code that read a name before anything kept bound it (a function's body, run when the
    # script calls it) needs it at run time: a cell left out for its await must not be its source.
    for name, (label, line) in scope.free_reads.items():
        if name in scope.awaited:
            raise _awaited_error(name, scope.awaited[name], f"{label} line {line}")
    _check_parameters(parameters)
    chosen = _choose_pipeline(scope, pipeline, pipeline_flag, known_pipelines)
    alias = "pdtnb" if "pdtnb" in scope.pdtnb_aliases else min(scope.pdtnb_aliases, default=None)
    return ExportPlan(
        origin, chunks, parameters, chosen, alias, scope.pdtnb_taken, future, dropped, scope.loads, scope.notices
    )


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
        raise ExportError(f"{cell.where()}: invalid Python: {one_line(e)}") from None
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


def _ipython_call(node: ast.AST | None) -> str | None:
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


def _top_level_await(stmt: ast.stmt) -> int | None:
    """The line of the first ``await``, ``async for``/``with`` or async comprehension that
    ``stmt`` runs at the top level (not inside a function it defines), or None."""
    todo: list[ast.AST] = [stmt]
    found: list[int] = []
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            found.append(node.lineno)
            continue
        if isinstance(node, ast.comprehension) and node.is_async:
            found.append(getattr(node.iter, "lineno", stmt.lineno))
            continue
        if node is not stmt and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # A def's decorators and defaults run at the top level; its body does not.
            todo.extend(node.decorator_list)
            todo.extend(node.args.defaults)
            todo.extend(d for d in node.args.kw_defaults if d is not None)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return min(found, default=None)


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
        keep = []
        gone = []
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


def _chunk(cell: SourceCell, scope: _Scope, parameters: list[Parameter], future: list[str], dropped: list[str]) -> str:
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
    # A cell with top-level await (waiting for outputs, running the pipeline on the kernel's loop)
    # is left out whole: the script cannot run it at import time.
    awaits = [line for line in map(_top_level_await, body) if line is not None]
    if awaits:
        _leave_out_awaiting(cell, body, min(awaits), scope, dropped)
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
    """What becomes of one top-level statement: None (dropped), True (kept as written) or its
    replacement text. The checks run in order, each step only seeing what the earlier ones let by."""
    line = stmt.lineno
    # 1. Magics and shell escapes, alone or assigned.
    value = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign)) else None
    if isinstance(value, ast.Call) and _ipython_call(value) is not None:
        assert isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign))
        return _decide_magic(stmt, value, cell, scope, dropped)
    nested = _uses_get_ipython(stmt)
    if nested is not None:
        _drop_nested_ipython(stmt, nested, cell, code, dropped)
        return None
    # 2. Imports of notebook-only modules.
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return _decide_import(stmt, cell, scope, future, dropped)
    # 3. Display-only expressions: nothing but a value to show.
    if isinstance(stmt, ast.Expr) and not _has_effects(stmt.value):
        dropped.append(f"{cell.label} line {line}: display of `{shorten(ast.unparse(stmt))}`")
        return None
    reads, binds = _statement_names(stmt)
    # 4. Code that needs what a magic, a skipped cell or a cell with top-level await defined cannot run.
    _refuse_unavailable_reads(reads, cell, line, scope)
    # 5. Code that works on widgets or display helpers is display code.
    notebook = _notebook_reference(stmt, reads, scope)
    if notebook is not None:
        _drop_display_code(stmt, notebook, cell, scope, dropped)
        return None
    # 6. Kept (top-level await never gets here: its cell is left out, see _chunk).
    return _keep(stmt, reads, binds, cell, code, scope, parameters)


def _decide_magic(
    stmt: ast.Expr | ast.Assign | ast.AnnAssign, call: ast.Call, cell: SourceCell, scope: _Scope, dropped: list[str]
) -> str | None:
    """A magic or shell escape (``call``), alone or assigned: ``%pdt load`` becomes its Python
    equivalent, anything else is dropped. Names it assigns become unavailable, so that kept code
    using them is refused with a message naming the magic rather than failing in the script."""
    line = stmt.lineno
    description = _magic_description(call)
    loaded = _pdt_load(call, cell, line, scope)
    if loaded is not None:
        if not isinstance(stmt, ast.Expr):
            names = _simple_targets(stmt) or []
            scope.bind_unavailable(names, f"assigned by `{description}` in {cell.label}")
            dropped.append(f"{cell.label} line {line}: {', '.join(names)} = {description} (the load is kept)")
        return loaded
    if isinstance(stmt, ast.Expr):
        scope.bind_unavailable(_magic_bindings(call), f"assigned by `{description}` in {cell.label}")
        dropped.append(f"{cell.label} line {line}: {description.split(chr(10))[0]}")
        return None
    targets = _simple_targets(stmt)
    if targets is None:
        raise ExportError(
            f"{cell.where()}: line {line} stores the output of `{description}` in "
            f"{ast.unparse(stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target)}; a script cannot "
            f"run magics: compute it in Python, or tag the cell {SKIP_TAG}"
        )
    scope.bind_unavailable(targets, f"assigned by `{description}` in {cell.label}")
    dropped.append(f"{cell.label} line {line}: {', '.join(targets)} = {description}")
    return None


def _drop_nested_ipython(stmt: ast.stmt, nested: ast.AST, cell: SourceCell, code: str, dropped: list[str]) -> None:
    """Drop a statement using ``get_ipython()`` (``nested``) below the top level when it is only
    displayed; refuse it otherwise, since the script cannot run the part that needs IPython."""
    line = stmt.lineno
    if isinstance(stmt, ast.Expr):  # get_ipython() used directly in a displayed expression
        dropped.append(f"{cell.label} line {line}: uses get_ipython()")
        return
    shown = ast.get_source_segment(code, nested) or "get_ipython()"
    magic = next((n for n in ast.walk(stmt) if _ipython_call(n)), None)
    if isinstance(magic, ast.Call):
        shown = _magic_description(magic)
    raise ExportError(
        f"{cell.where()}: line {getattr(nested, 'lineno', line)} runs `{shown}` inside a block; a script cannot run "
        f"magics or get_ipython(): move it to its own top-level line, or tag the cell {SKIP_TAG}"
    )


def _decide_import(
    stmt: ast.Import | ast.ImportFrom, cell: SourceCell, scope: _Scope, future: list[str], dropped: list[str]
) -> bool | str | None:
    """An import: ``__future__`` imports move to the top of the script (``future``), notebook-only
    modules are cut out (what they bound becomes notebook-only), the rest is kept and noted."""
    if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
        text = ast.unparse(stmt)
        if text not in future:
            future.append(text)
        return None
    kept, gone = _split_notebook_imports(stmt)
    if gone:
        scope.bind_notebook_only(gone, f"imported from a notebook-only module in {cell.label}")
        dropped.append(f"{cell.label} line {stmt.lineno}: notebook-only import of {', '.join(gone)}")
    if kept is None:
        return None
    _, binds = _statement_names(kept)
    scope.bind_kept(binds, cell.label)
    _note_imports(kept, scope)
    return True if kept is stmt else ast.unparse(kept)


def _refuse_unavailable_reads(reads: set[str], cell: SourceCell, line: int, scope: _Scope) -> None:
    """Refuse a statement reading a name the script will not have (defined by a magic, a skipped
    cell or a cell left out for its top-level await): better an export error than a broken script."""
    for name in sorted(reads):
        if name in scope.awaited:
            raise _awaited_error(name, scope.awaited[name], f"{cell.label} line {line}")
        if name in scope.unavailable:
            raise ExportError(
                f"{cell.where()}: line {line} uses {name}, which is {scope.unavailable[name]}; the script would not "
                f"have it: compute it in Python, or tag this cell {SKIP_TAG}"
            )


def _drop_display_code(stmt: ast.stmt, notebook: str, cell: SourceCell, scope: _Scope, dropped: list[str]) -> None:
    """Drop a statement working on widgets or display helpers (``notebook`` says how) when it is an
    expression or a plain assignment (whose names become notebook-only); refuse it otherwise."""
    line = stmt.lineno
    if isinstance(stmt, ast.Expr):
        dropped.append(f"{cell.label} line {line}: display code ({notebook})")
        return
    targets = _simple_targets(stmt)
    if targets is not None:
        scope.bind_notebook_only(targets, f"assigned from notebook-only code in {cell.label}")
        dropped.append(f"{cell.label} line {line}: display code ({notebook})")
        return
    raise ExportError(
        f"{cell.where()}: line {line} {notebook}, which a script does not have; keep display code in expression "
        f"statements or plain assignments, or tag the cell {SKIP_TAG}"
    )


def _keep(
    stmt: ast.stmt,
    reads: set[str],
    binds: set[str],
    cell: SourceCell,
    code: str,
    scope: _Scope,
    parameters: list[Parameter],
) -> bool | str:
    """A statement the script keeps: note what it reads and binds (and the pipelines it creates);
    in the parameters cell, ``name = literal`` is rewritten to read its override."""
    line = stmt.lineno
    for name in sorted(reads - binds):
        if name not in scope.bound:
            scope.free_reads.setdefault(name, (cell.label, line))
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


def _leave_out_awaiting(cell: SourceCell, body: list[ast.stmt], line: int, scope: _Scope, dropped: list[str]) -> None:
    """Leave out ``cell``, whose line ``line`` awaits at the top level: what it defines becomes
    unavailable, and kept code using it later (or having read it earlier) is refused."""
    why = f"defined only in {cell.label}, which is left out for its top-level await (line {line})"
    for name, (where, imported) in _cell_bindings(body).items():
        if imported and name in scope.bound and name not in scope.unavailable and name not in scope.notebook_only:
            continue  # `import asyncio` again: kept code already imported it
        scope.bind_unavailable([name], why)
        scope.awaited[name] = (cell, line, where)
    for stmt in body:
        targets = _simple_targets(stmt)
        value = getattr(stmt, "value", None)
        if targets and isinstance(value, ast.Call):
            func = value.func
            if (isinstance(func, ast.Name) and func.id == "Pipeline") or (
                isinstance(func, ast.Attribute) and func.attr == "Pipeline"
            ):
                scope.lost_pipelines.update(targets)
        loaded = _load_target(value)
        if loaded is not None:
            scope.lost_pipelines.add(loaded)
    dropped.append(f"{cell.label}: top-level await (line {line})")
    scope.notices.append(f"left out {cell.label}: top-level await; it defines nothing the pipeline uses")


def _cell_bindings(body: list[ast.stmt]) -> dict[str, tuple[int, bool]]:
    """Every top-level name the statements bind (Python, magics given Python, ``%pdt load ... as
    NAME``): the line of its first binding, and whether only imports bind it."""
    found: dict[str, tuple[int, bool]] = {}
    for stmt in body:
        names = set(_statement_names(stmt)[1])
        value = getattr(stmt, "value", None)
        if _ipython_call(value) is not None:
            assert isinstance(value, ast.Call)
            names |= _magic_bindings(value)
            loaded = _load_target(value)
            if loaded is not None:
                names.add(loaded)
        imported = isinstance(stmt, (ast.Import, ast.ImportFrom))
        for name in names:
            first, only_imports = found.get(name, (stmt.lineno, True))
            found[name] = (first, only_imports and imported)
    return found


def _load_target(call: ast.AST | None) -> str | None:
    """NAME of a ``%pdt load FILE [as NAME]`` call (None for anything else, or a line not understood)."""
    if not isinstance(call, ast.Call) or _ipython_call(call) != "run_line_magic":
        return None
    args = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(args) < 2 or args[0] != "pdt" or args[1].split()[:1] != ["load"]:
        return None
    from ..loading import parse_load_line

    try:
        return parse_load_line(args[1]).name
    except ValueError:
        return None


def _awaited_error(name: str, origin: tuple[SourceCell, int, int], user: str) -> ExportError:
    """Kept code (``user``: ``cell 8 line 2``) uses ``name``, defined only in a cell left out for its await."""
    cell, line, where = origin
    defined = "" if where == line else f" (line {where})"
    return ExportError(
        f"{cell.where()}: line {line} uses top-level await, which a script cannot run at import time (pdtnb.main "
        f"opens the pipeline on its own loop), so the cell would be left out; but it defines {name}{defined}, which "
        f"{user} uses: move the await into an async function, or define {name} in a cell without top-level await"
    )


def _pdt_load(call: ast.Call, cell: SourceCell, line: int, scope: _Scope) -> str | None:
    """The statement replacing ``%pdt load FILE [as NAME]`` (None for any other magic), binding
    NAME in ``scope`` as a pipeline; see :func:`analyse` for where the file is looked for."""
    if _ipython_call(call) != "run_line_magic":
        return None
    args = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(args) < 2 or args[0] != "pdt" or args[1].split()[:1] != ["load"]:
        return None
    from ..loading import parse_load_line

    text = args[1]
    where = f"{cell.where()}: line {line}"
    if "$" in text or "{" in text:
        raise ExportError(
            f"{where}: `%pdt {shorten(text)}` uses IPython's variable expansion ($name or {{expression}}), whose "
            "value the export cannot know: write the file's path in the line, or load it in Python: "
            "NAME = pdtnb.load(path)"
        )
    try:
        target = parse_load_line(text)
    except ValueError as e:
        raise ExportError(f"{where}: %pdt load: {one_line(e)}") from None
    file = target.file
    if file.startswith("~"):
        where_from = f"_PdtnbPath({file!r}).expanduser()"
    elif os.path.isabs(file):
        where_from = repr(file)
    else:
        found = os.path.normpath(os.path.join(os.path.abspath(scope.load_base), file))
        relative = Path(os.path.relpath(found, os.path.abspath(scope.script_dir))).as_posix()
        where_from = f"_pdtnb_file({relative!r}, {Path(found).as_posix()!r})"
    importing = ""
    if "pdtnb" in scope.pdtnb_aliases:
        module = "pdtnb"
    elif scope.pdtnb_aliases:
        module = min(scope.pdtnb_aliases)
    else:
        module = "_pdtnb" if scope.pdtnb_taken or "pdtnb" in scope.bound else "pdtnb"
        importing = f"import pdtnb as {module}\n" if module != "pdtnb" else "import pdtnb\n"
        scope.bind_kept([module], cell.label)
        scope.pdtnb_aliases.add(module)
    scope.bind_kept([target.name], cell.label)
    scope.pipelines[target.name] = cell.label
    scope.loads.append((target.name, file))
    return f"{importing}{target.name} = {module}.load({where_from})  # %pdt load {shorten(file)}"


def _assemble(body: list[ast.stmt], decisions: list[bool | str | None], lines: list[str]) -> str:
    """The kept statements, as written (comments included) where possible."""

    def start(stmt: ast.stmt) -> int:
        decorators: list[ast.expr] = getattr(stmt, "decorator_list", [])
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


def _choose_pipeline(scope: _Scope, requested: str | None, flag: str, known: Collection[str]) -> str:
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
        hidden = sorted(n for n in {*known, *scope.lost_pipelines} if n in scope.unavailable)
        extra = f" ({hidden[0]} is {scope.unavailable[hidden[0]]})" if hidden else ""
        raise ExportError(
            "no Pipeline is defined by the exported cells: assign one at the top level of a cell, "
            f"e.g. pipeline = pdtnb.Pipeline([...], session){extra}"
        )
    raise ExportError(f"several pipelines are defined ({listing}): choose one with {flag} NAME")
