"""Checking a :class:`~pdtnb.declarative.document.Document` completely, building nothing: every
name that must be declared elsewhere, import paths, templates, quantities, retry policies, cycles
among tasks, missing extras. :func:`check` reads the file first (:func:`read_document`).

Why all of it comes before the first constructor runs: a file is reviewed and run unattended, so
a mistake in its last task must not leave its first repository's directories or connections
behind (see :mod:`pdtnb.declarative.build`).
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .document import SECTIONS, Document, Entry, read_document
from .kinds import REPOSITORIES, REPOSITORY_KINDS, TASK_KINDS, Kind, Param, params_of, resource_kind
from .resources import extra_missing, resolve_path
from .schema import LINK_KINDS
from .source import DeclarationError, Where

__all__ = ["check", "import_object", "import_paths", "kind_of", "plugs", "link_flags", "retry_policy"]


@contextlib.contextmanager
def import_paths(paths: list[Path]) -> Iterator[None]:
    added = [str(p) for p in paths if str(p) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for p in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)


def import_object(spec: str, where: Where, what: str) -> Any:
    """``package.module:name`` imported, or a :class:`DeclarationError` at ``where``."""
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or the module raised while importing
        raise DeclarationError(f"{what} {spec!r} cannot be imported: {type(e).__name__}: {e}", where) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise DeclarationError(
                f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}", where
            ) from None
    return obj


def kind_of(entry: Entry) -> Kind:
    kind = entry.value["kind"]
    if entry.section == "repositories":
        if kind in REPOSITORY_KINDS:
            return REPOSITORY_KINDS[kind]
        cls = import_object(kind, entry.where("kind"), f"{entry.label}: class")
        from ..repository import Repository

        if not (isinstance(cls, type) and issubclass(cls, Repository)):
            raise DeclarationError(f"{entry.label}: {kind!r} is not a pdtnb Repository class", entry.where("kind"))
        return Kind(kind, cls, params_of(cls))
    if entry.section == "tasks":
        return TASK_KINDS[kind]
    return resource_kind(kind)


def _check_extra(entry: Entry, kind: Kind) -> None:
    if isinstance(kind.target, str):
        module = kind.target.partition(":")[0]
        extra = {
            "pdtnb.repository.s3": "s3",
            "pdtnb.repository.mongo": "mongo",
            "pdtnb.repository.docker": "docker",
            "pdtnb.task.kube": "kube",
        }.get(module, "all")
        raise DeclarationError(
            f"{entry.label}: kind {kind.name} needs the {extra!r} extra: pip install 'pdtnb[{extra}]'",
            entry.where("kind"),
        )
    if entry.section == "resources":
        missing = extra_missing(kind.name)
        if missing:
            raise DeclarationError(
                f"{entry.label}: kind {kind.name} needs the {missing!r} extra: pip install 'pdtnb[{missing}]'",
                entry.where("kind"),
            )


def _refs(document: Document, entry: Entry, section: str, name: Any, where: Where, what: str) -> None:
    if name is None:
        return
    if name not in document.entries[section]:
        known = ", ".join(sorted(document.entries[section])) or "none is declared"
        singular = "repository" if section == "repositories" else section[:-1]
        raise DeclarationError(
            f"{entry.label}: {what} {name!r} is not a declared {singular} ({section}: {known})", where
        )


def check(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Document:
    """Read and validate the pipeline file ``path`` completely, building and opening nothing.
    Returns the merged :class:`Document`; raises :class:`DeclarationError` (``FILE:LINE:COL:
    what``) at the first mistake."""
    document = read_document(path, environ)
    with import_paths(document.import_paths):
        for section in SECTIONS:
            for entry in document.entries[section].values():
                if section == "quotas":
                    _check_quota(entry)
                    continue
                kind = kind_of(entry)
                _check_extra(entry, kind)
                _check_params(document, entry, kind)
                if section == "tasks":
                    _check_task(document, entry, kind)
        options = document.options
        if options.get("priority") is not None and document.options_source is not None:
            import_object(
                options["priority"], document.options_source.where(("pipeline", "priority")), "priority function"
            )
            given = [e for e in document.entries["tasks"].values() if "priority" in e.value]
            if given:
                raise DeclarationError(
                    f"{given[0].label}: give task priorities or a pipeline priority function, not both",
                    given[0].where("priority"),
                )
        if options.get("hooks") and document.options_source is not None:
            for i, spec in enumerate(options["hooks"]):
                import_object(spec, document.options_source.where(("pipeline", "hooks", i)), "pipeline: hook")
        _check_cycles(document)
    return document


def _check_quota(entry: Entry) -> None:
    _check_quantities(entry, entry.value)


def _check_quantities(entry: Entry, given: dict[str, Any], *sub: Any) -> None:
    """Each quantity of a quota or of ``job_resources`` (``cpu: 500m``, ``mem: 1Gi``), refused at
    its own place."""
    from ..resources import Resources

    for name, quantity in given.items():
        try:
            Resources.parse(**{name: quantity})
        except (TypeError, ValueError) as e:
            what = ".".join(str(s) for s in (*sub, name))
            raise DeclarationError(
                f"{entry.label}: {what}: {e} (a quantity is a number or a Kubernetes quantity "
                f"such as 500m, 2, 1Gi, 200Mi)",
                entry.where(*sub, name),
            ) from None


def _check_params(document: Document, entry: Entry, kind: Kind) -> None:
    value = entry.value
    for param in kind.params.values():
        if param.name in value:
            _check_param(document, entry, param, value[param.name])
        elif param.required and not (
            param.name == "template" and "template_file" in value and "template_file" in kind.extra
        ):
            raise DeclarationError(f"{entry.label}: {param.name} is required", entry.where())
    if entry.section == "repositories" and kind.name not in REPOSITORY_KINDS:
        known = set(kind.params)
        has_kwargs = any(p.kind is p.VAR_KEYWORD for p in _signature(kind.target).parameters.values())
        unknown = [k for k in value if k != "kind" and k not in known]
        if unknown and not has_kwargs:
            raise DeclarationError(
                f"{entry.label}: {kind.name} takes no argument {unknown[0]!r} (it takes {', '.join(known) or 'none'})",
                entry.where(unknown[0]),
            )


def _check_param(document: Document, entry: Entry, param: Param, given: Any) -> None:
    """One given argument: the names it gives are declared, its import path imports a callable,
    its retry policy, hooks and quantities are valid (what the schema cannot see)."""
    where = entry.where(param.name)
    if param.many_refs:
        for child, repo in given.items():
            _refs(document, entry, REPOSITORIES, repo, entry.where(param.name, child), f"{param.name}.{child}")
    elif param.ref is not None:
        if not (param.name == "stderr" and given == "STDOUT"):
            _refs(document, entry, param.ref, given, where, param.name)
    elif param.imported and given is not None:
        obj = import_object(given, where, f"{entry.label}: {param.name}")
        if not callable(obj):
            raise DeclarationError(f"{entry.label}: {param.name} {given!r} is not callable", where)
    elif param.convert == "retry" and given is not None:
        retry_policy(given, entry, where)
    elif param.convert == "hooks" and given:
        for i, spec in enumerate(given):
            import_object(spec, entry.where(param.name, i), f"{entry.label}: hook")
    elif param.convert == "resources" and isinstance(given, dict):
        _check_quantities(entry, given, param.name)


def _signature(target: Any) -> Any:
    import inspect

    # a class's own __init__, which mypy calls unsound to reach through the class
    return inspect.signature(target.__init__ if isinstance(target, type) else target)  # type: ignore[misc]


def _check_task(document: Document, entry: Entry, kind: Kind) -> None:
    value = entry.value
    for link, spec in (value.get("links") or {}).items():
        _refs(
            document, entry, REPOSITORIES, spec["repo"], entry.where("links", link, "repo"), f"link {link}: repository"
        )
    for i, plug in enumerate(plugs(value)):
        key = ("plug",) if isinstance(value.get("plug"), (str, dict)) else ("plug", i)
        upstream = plug["task"]
        if upstream not in document.entries["tasks"]:
            raise DeclarationError(
                f"{entry.label}: plugs into {upstream!r}, which is not a declared task", entry.where(*key)
            )
        if upstream == entry.name:
            raise DeclarationError(f"{entry.label}: a task cannot plug into itself", entry.where(*key))
        _refs(document, entry, REPOSITORIES, plug.get("translator"), entry.where(*key), "translator")
    if "template" in kind.params or "template_file" in kind.extra:
        _check_template(entry)


def plugs(value: dict[str, Any]) -> list[dict[str, Any]]:
    plug = value.get("plug")
    if plug is None:
        return []
    items = plug if isinstance(plug, list) else [plug]
    return [{"task": item} if isinstance(item, str) else item for item in items]


def _check_template(entry: Entry) -> None:
    """The task's template (inline, or ``template_file``) compiles; a syntax error is reported on
    the file line holding the template's bad line (in a ``|`` block or a TOML multi-line string, or
    in the template file), else at the template's value."""
    import jinja2

    from ..task.template import render_environment

    value = entry.value
    if "template_file" in value:
        path = Path(resolve_path(entry.source.directory, value["template_file"]))
        where = entry.where("template_file")
        if not path.is_file():
            raise DeclarationError(
                f"{entry.label}: template_file {value['template_file']!r} does not exist ({path})", where
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DeclarationError(
                f"{entry.label}: cannot read template_file {value['template_file']!r}: {e}", where
            ) from None

        def origin(lineno: int) -> Where:
            return Where(str(path), lineno, 1)
    else:
        text = value.get("template")
        if not isinstance(text, str):
            return
        where = entry.where("template")
        block = entry.source.blocks.get((*entry.key, "template"))

        def origin(lineno: int) -> Where:
            if block is not None:
                return Where(block.file, block.line + lineno - 1, block.column)
            return where  # on one line, or a quoted string whose lines are not the file's

    try:
        render_environment().parse(text)
    except jinja2.TemplateSyntaxError as e:
        lineno = e.lineno or 1
        raise DeclarationError(
            f"{entry.label}: the template does not compile: {e.message} (template line {lineno})", origin(lineno)
        ) from None


def retry_policy(given: dict[str, Any], entry: Entry, where: Where) -> Any:
    from ..retry import KNOWN_REASONS, Retry

    on = []
    for i, item in enumerate(given.get("on", [])):
        at = entry.where("retry", "on", i)
        if isinstance(item, str) and ":" in item:
            item = import_object(item, at, f"{entry.label}: retry.on")
            if not _is_exception(item):
                raise DeclarationError(f"{entry.label}: retry.on: {given['on'][i]!r} is not an exception class", at)
        elif isinstance(item, str) and _is_exception(getattr(builtins, item, None)):
            item = getattr(builtins, item)
        elif isinstance(item, str) and item not in KNOWN_REASONS:
            raise DeclarationError(
                f"{entry.label}: retry.on: {item!r} is neither a builtin exception, an import path "
                f"package.module:Exception, nor a reason ({', '.join(KNOWN_REASONS)})",
                at,
            )
        on.append(item)
    options = {k: v for k, v in given.items() if k != "on"}
    if "on" in given:
        options["on"] = tuple(on)
    try:
        return Retry(**options)
    except (TypeError, ValueError) as e:
        raise DeclarationError(f"{entry.label}: retry: {e}", where) from None


def _is_exception(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseException)


#: Task parameters naming a repository the task writes (its class links them as outputs or
#: keeps its records there), and naming one it reads its jobs from.
_WRITTEN = ("done", "stdout", "stderr", "logs", "kube_done", "func_done")
_READ = ("stdin", "ready")


def _task_edges(document: Document) -> Iterator[tuple[str, str]]:
    """(upstream, downstream) for every plug, and for every repository a task writes (an output
    link, its done records, its stdout...) that another task takes as input or requires."""
    producers: dict[str, set[str]] = {}
    for entry in document.entries["tasks"].values():
        value = entry.value
        for spec in (value.get("links") or {}).values():
            if link_flags(spec).get("is_output"):
                producers.setdefault(spec["repo"], set()).add(entry.name)
        for param in _WRITTEN:
            if isinstance(value.get(param), str):
                producers.setdefault(value[param], set()).add(entry.name)
    for entry in document.entries["tasks"].values():
        for plug in plugs(entry.value):
            yield plug["task"], entry.name
        read = [
            spec["repo"]
            for spec in (entry.value.get("links") or {}).values()
            if link_flags(spec).get("is_input") or link_flags(spec).get("required_for_start")
        ]
        read += [entry.value[param] for param in _READ if isinstance(entry.value.get(param), str)]
        for repo in read:
            for producer in sorted(producers.get(repo, ())):
                if producer != entry.name:
                    yield producer, entry.name


def _check_cycles(document: Document) -> None:
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(document.entries["tasks"])
    graph.add_edges_from(_task_edges(document))
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    names = [a for a, _ in cycle] + [cycle[0][0]]
    first = document.entries["tasks"][names[0]]
    raise DeclarationError(
        f"the tasks form a cycle: {' -> '.join(names)} (through plug, or an output another task takes as input)",
        first.source.where_key(first.key),
    )


def link_flags(spec: dict[str, Any]) -> dict[str, Any]:
    """A link's ``Task.link`` keyword arguments."""
    flags: dict[str, Any] = {}
    kinds = spec.get("kind", [])
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        flags[LINK_KINDS[kind]] = True
    for key, value in spec.items():
        if key not in ("repo", "kind"):
            flags[key] = value
    return flags
