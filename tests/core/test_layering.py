"""The layering of pdtnb's modules, checked on their source (issue 17, "Code health").

1. The lower layers (``pdtnb.managers``, ``pdtnb.repository``, ``pdtnb.lease``) never import an
   upper one: ``pdtnb.task``, ``pdtnb.pipeline``, ``pdtnb.notebook``, ``pdtnb.cli``, nor any module
   that imports one of those when it is loaded. Every import counts: relative ones, those inside
   functions and those under ``if TYPE_CHECKING:`` (a repository that needs something of a task
   owns a ``typing.Protocol`` for it, as ``pdtnb.repository.live`` and ``pdtnb.repository.kube``
   do).
2. Nothing outside ``pdtnb.notebook`` imports IPython, ipywidgets or ``pdtnb.notebook`` when it is
   loaded; only the few entry points listed in ``NOTEBOOK_ENTRY_POINTS`` import them, inside the
   function that needs them, so that the core runs without the ``notebook`` extra.
3. No module imports another module's private (``_name``) names, nor reaches them through a
   module alias (``from . import base; base._name``): what is shared is public in the module
   that owns it.

Imports made from strings (``importlib.import_module``) are not seen.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pdtnb

PACKAGE = Path(pdtnb.__file__).parent

LOWER_LAYERS = ("pdtnb.managers", "pdtnb.repository", "pdtnb.lease")
UPPER_LAYERS = ("pdtnb.task", "pdtnb.pipeline", "pdtnb.notebook", "pdtnb.cli")
NOTEBOOK_ONLY = ("IPython", "ipywidgets", "pdtnb.notebook")

#: (module, function) -> why it may import the notebook layer (inside that function only).
NOTEBOOK_ENTRY_POINTS = {
    ("pdtnb", "load_ipython_extension"): "`%load_ext pdtnb` must find its hook on the package",
    ("pdtnb", "unload_ipython_extension"): "`%unload_ext pdtnb` likewise",
    ("pdtnb.__main__", "main"): "`python -m pdtnb export` runs the notebook exporter",
    ("pdtnb.shell", "interact"): "`pdtnb shell` looks for IPython, falling back to a plain console",
    ("pdtnb.shell", "_ipython"): "`pdtnb shell` runs an IPython shell",
    ("pdtnb.declarative.command", "_graph"): "`pdtnb graph` draws with the notebook layer's PipelineGraph",
}


@dataclass(frozen=True)
class Import:
    """One name (or module) one module imports."""

    module: str  #: the importing module
    target: str  #: the module imported (a submodule named by ``from pkg import sub`` is the submodule)
    name: str | None  #: the name imported from ``target`` (None: the module itself)
    line: int
    function: str | None  #: the innermost enclosing function (None: the module's top level)
    type_checking: bool  #: under ``if TYPE_CHECKING:``

    @property
    def at_load(self) -> bool:
        """Whether importing ``module`` runs this import."""
        return self.function is None and not self.type_checking

    def where(self) -> str:
        inside = f" (in {self.function})" if self.function else ""
        guarded = " (under TYPE_CHECKING)" if self.type_checking else ""
        what = self.target if self.name is None else f"{self.target}.{self.name}"
        return f"{self.module} line {self.line}{inside}{guarded}: imports {what}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def sources() -> dict[str, tuple[str, bool]]:
    """Every module of the package: name -> (source, whether it is a package's ``__init__``)."""
    return {
        module_name(path): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, modules: set[str]) -> None:
        self.module, self.is_package, self.modules = module, is_package, modules
        self.found: list[Import] = []
        self.functions: list[str] = []
        self.type_checking = 0

    def _add(self, target: str, name: str | None, line: int) -> None:
        if name is not None and f"{target}.{name}" in self.modules:
            target, name = f"{target}.{name}", None  # `from pkg import submodule`
        function = ".".join(self.functions) or None
        self.found.append(Import(self.module, target, name, line, function, self.type_checking > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, None, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        target = _absolute(self.module, self.is_package, node)
        for alias in node.names:
            self._add(target, alias.name, node.lineno)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        # A class body runs at import: only the functions inside it count as functions.
        if self.functions:
            self._function(node)
            return
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        self.type_checking += 1
        for stmt in node.body:
            self.visit(stmt)
        self.type_checking -= 1
        for stmt in node.orelse:
            self.visit(stmt)


def imports_of(module: str, source: str, is_package: bool, modules: set[str]) -> list[Import]:
    visitor = _Imports(module, is_package, modules)
    visitor.visit(ast.parse(source))
    return visitor.found


def all_imports(found: dict[str, tuple[str, bool]]) -> list[Import]:
    modules = set(found)
    return [
        imp for name, (source, is_package) in found.items() for imp in imports_of(name, source, is_package, modules)
    ]


@functools.cache
def pdtnb_imports() -> list[Import]:
    """Every import of the package (parsed once for all the tests)."""
    return all_imports(sources())


def upper_modules(imports: list[Import]) -> set[str]:
    """The upper layers' modules, and every pdtnb module that imports one of them when it is loaded
    (directly or through other modules)."""
    loads: dict[str, set[str]] = {}
    for imp in imports:
        if imp.at_load and within(imp.target, ("pdtnb",)):
            loads.setdefault(imp.module, set()).add(imp.target)
    upper = {m for m in {*loads, *(t for ts in loads.values() for t in ts)} if within(m, UPPER_LAYERS)}
    changed = True
    while changed:
        changed = False
        for module, targets in loads.items():
            if module not in upper and targets & upper:
                upper.add(module)
                changed = True
    return upper


def layering_violations(imports: list[Import]) -> list[str]:
    """Rule 1: imports of an upper layer (or of a module built on one) by a lower layer."""
    upper = upper_modules(imports)
    return [
        imp.where()
        for imp in imports
        if within(imp.module, LOWER_LAYERS)
        and not within(imp.target, LOWER_LAYERS)
        and (within(imp.target, UPPER_LAYERS) or imp.target in upper)
    ]


def notebook_violations(imports: list[Import]) -> list[str]:
    """Rule 2: imports of IPython, ipywidgets or the notebook layer outside it."""
    bad = []
    for imp in imports:
        if within(imp.module, ("pdtnb.notebook",)) or not within(imp.target, NOTEBOOK_ONLY):
            continue
        top = imp.function.split(".")[0] if imp.function else None
        if imp.function is None or (imp.module, top) not in NOTEBOOK_ENTRY_POINTS:
            bad.append(imp.where())
    return bad


def _private(name: str | None) -> bool:
    return name is not None and name.startswith("_") and not name.startswith("__")


def private_import_violations(imports: list[Import]) -> list[str]:
    """Rule 3a: ``from pdtnb.x import _name`` in another module than pdtnb.x."""
    return [
        imp.where()
        for imp in imports
        if within(imp.target, ("pdtnb",)) and imp.target != imp.module and _private(imp.name)
    ]


def private_attribute_violations(module: str, source: str, is_package: bool, modules: set[str]) -> list[str]:
    """Rule 3b: ``alias._name`` where ``alias`` is another pdtnb module (``import pdtnb.x as alias``,
    ``from pdtnb import x``, ``import pdtnb`` then ``pdtnb.x._name``)."""
    aliases: dict[str, str] = {}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if within(alias.name, ("pdtnb",)):
                    aliases[alias.asname or "pdtnb"] = alias.name if alias.asname else "pdtnb"
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, is_package, node)
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
    bad = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        chain: list[str] = []
        value = node.value
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        if not (isinstance(value, ast.Name) and value.id in aliases):
            continue
        owner = ".".join([aliases[value.id], *chain])
        if owner in modules and owner != module:
            bad.append(f"{module} line {node.lineno}: reads {owner}.{node.attr}")
    return bad


# ---- the rules, on pdtnb ---------------------------------------------------------------------


def test_the_lower_layers_do_not_import_the_upper_ones() -> None:
    imports = pdtnb_imports()
    assert any(within(imp.module, LOWER_LAYERS) for imp in imports)  # the scan sees them
    assert layering_violations(imports) == []


def test_only_the_notebook_layer_imports_ipython_and_widgets() -> None:
    imports = pdtnb_imports()
    assert notebook_violations(imports) == []
    # Every listed entry point still imports the notebook layer (else it is no longer needed).
    used = {
        (imp.module, imp.function.split(".")[0])
        for imp in imports
        if imp.function and within(imp.target, NOTEBOOK_ONLY) and not within(imp.module, ("pdtnb.notebook",))
    }
    assert set(NOTEBOOK_ENTRY_POINTS) <= used, set(NOTEBOOK_ENTRY_POINTS) - used


def test_no_module_imports_another_modules_private_names() -> None:
    assert private_import_violations(pdtnb_imports()) == []


def test_no_module_reaches_private_names_through_a_module_alias() -> None:
    found = sources()
    modules = set(found)
    bad = [
        line
        for name, (source, is_package) in found.items()
        for line in private_attribute_violations(name, source, is_package, modules)
    ]
    assert bad == []


# ---- the checks see a violation ----------------------------------------------------------------

_MODULES = {
    "pdtnb",
    "pdtnb.pipeline",
    "pdtnb.task",
    "pdtnb.task.base",
    "pdtnb.repository",
    "pdtnb.repository.base",
    "pdtnb.session",
}


def _imports(module: str, source: str, is_package: bool = False) -> list[Import]:
    return imports_of(module, source, is_package, _MODULES)


def test_a_lower_layer_importing_a_task_is_caught_however_it_imports() -> None:
    for source in (
        "from ..task.base import Task\n",
        "from pdtnb.task import base\n",
        "import pdtnb.task.base as b\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..task.base import Task\n",
        "def f():\n    from ..task import base\n",
        "class C:\n    def m(self):\n        from .. import pipeline\n",
    ):
        assert layering_violations(_imports("pdtnb.repository.live", source)), source
    assert layering_violations(_imports("pdtnb.repository", "from ..task import base\n", is_package=True))
    assert not layering_violations(_imports("pdtnb.repository.live", "from .base import Repository\n"))


def test_a_module_built_on_an_upper_layer_counts_as_upper() -> None:
    imports = [
        *_imports("pdtnb.session", "from .task.base import Task\n"),
        *_imports("pdtnb.repository.live", "from ..session import Session\n"),
    ]
    assert layering_violations(imports) == [
        "pdtnb.repository.live line 1: imports pdtnb.session.Session",
    ]
    lazy = _imports("pdtnb.session", "def f():\n    from .task.base import Task\n")
    assert not layering_violations([*lazy, *_imports("pdtnb.repository.live", "from ..session import Session\n")])


def test_notebook_imports_outside_the_notebook_layer_are_caught() -> None:
    assert notebook_violations(_imports("pdtnb.status", "import IPython\n"))
    assert notebook_violations(_imports("pdtnb.status", "def f():\n    from ipywidgets import HTML\n"))
    assert notebook_violations(_imports("pdtnb.shell", "from .notebook.live import LiveView\n"))
    assert not notebook_violations(_imports("pdtnb.shell", "def _ipython():\n    from IPython import start_ipython\n"))
    assert not notebook_violations(_imports("pdtnb.notebook.live", "import ipywidgets\n"))


def test_private_names_of_another_module_are_caught() -> None:
    assert private_import_violations(_imports("pdtnb.repository.memory", "from .base import _VALID_IDS\n"))
    assert not private_import_violations(_imports("pdtnb.repository.memory", "from .base import Repository\n"))
    assert not private_import_violations(_imports("pdtnb.repository.memory", "from asyncio import _x\n"))
    for source in (
        "from . import base\nbase._x\n",
        "import pdtnb.repository.base as b\nb._x\n",
        "import pdtnb\npdtnb.repository.base._x\n",
    ):
        assert private_attribute_violations("pdtnb.repository.memory", source, False, _MODULES), source
    assert not private_attribute_violations("pdtnb.repository.memory", "self._x\nbase._x\n", False, _MODULES)
