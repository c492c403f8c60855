"""From a pipeline file to a :class:`~pdtnb.Pipeline`: read, include, interpolate, validate
everything, and only then build.

Why validation is complete before the first constructor runs: a file is reviewed and run
unattended, so a mistake in its last task must not leave its first repository's directories or
connections behind. :func:`check` checks the document (the schema, names that must be declared,
import paths, templates, quantities, retry policies, cycles, duplicate names, environment
variables, missing extras) and builds nothing; :func:`build` then constructs the objects from the
checked document, in memory, opening nothing, and makes the checks the pipeline would make when
it opens (every task has an input, a body's parameters are its task's links), so that these too
fail before anything exists. :func:`load` is both. A constructor that still refuses an argument is
reported at its declaration too.
"""

from __future__ import annotations

import builtins
import contextlib
import difflib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from .kinds import QUOTAS, REPOSITORIES, REPOSITORY_KINDS, RESOURCES, TASK_KINDS, Kind, Param, load_kinds, params_of
from .resources import LOCAL_PATHS, RESOURCE_KINDS, extra_missing, resolve_path
from .schema import LINK_KINDS, pipeline_schema
from .source import DeclarationError, Source, Where, interpolate, read_source, typed_variable

__all__ = ["Document", "Entry", "build", "check", "load", "read_document"]

SECTIONS = ("resources", "repositories", "quotas", "tasks")


@dataclass
class Entry:
    """One declared resource, repository, quota or task, and where it was written."""

    section: str
    name: str
    value: Any
    source: Source
    key: tuple[Any, ...]

    def where(self, *sub: Any) -> Where:
        return self.source.where((*self.key, *sub))

    @property
    def label(self) -> str:
        singular = {"resources": "resource", "repositories": "repository", "quotas": "quota", "tasks": "task"}
        return f"{singular[self.section]} {self.name!r}"


@dataclass
class Document:
    """A pipeline file with its includes merged: every entry by section and name."""

    path: Path
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {s: {} for s in SECTIONS})
    options: dict[str, Any] = field(default_factory=dict)
    options_source: Source | None = None
    import_paths: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


# ---- reading ---------------------------------------------------------------------------------


class _Validators:
    """The schema's validation, by kind: the schema gives each section's kinds as ``if kind is K
    then ...`` branches (what editors read), which a validator tries one after the other for
    every entry (half a second for 800 entries); here the file is validated without the branches
    and each entry against its own kind's branch only, which finds the same errors."""

    #: The schema's definition of an entry of each section of a file.
    DEFINITIONS = {"resources": "resource", "repositories": "repository", "tasks": "task"}

    def __init__(self) -> None:
        jsonschema = _import_jsonschema()
        schema = pipeline_schema()
        cls = jsonschema.validators.validator_for(schema)
        definitions = schema["$defs"]
        top = {**schema, "$defs": dict(definitions)}
        self.kinds: dict[str, dict[str, Any]] = {}
        for section, name in self.DEFINITIONS.items():
            definition = definitions[name]
            top["$defs"][name] = {k: v for k, v in definition.items() if k != "allOf"}
            self.kinds[section] = {
                branch["if"]["properties"]["kind"]["const"]: cls({"$defs": definitions, **branch["then"]})
                for branch in definition["allOf"]
            }
        self.top = cls(top)

    def errors(self, data: Any) -> list[tuple[tuple[Any, ...], Any]]:
        """Every schema error of ``data`` (a file), each with the path its own path is under."""
        found: list[tuple[tuple[Any, ...], Any]] = [((), e) for e in self.top.iter_errors(data)]
        for section, kinds in self.kinds.items():
            entries = data.get(section) if isinstance(data, dict) else None
            if not isinstance(entries, dict):
                continue
            for name, value in entries.items():
                kind = value.get("kind") if isinstance(value, dict) else None
                validator = kinds.get(kind) if isinstance(kind, str) else None
                if validator is not None:
                    found += [((section, name), e) for e in validator.iter_errors(value)]
        return found


_VALIDATORS: list[_Validators] = []


def _import_jsonschema() -> Any:
    """jsonschema, imported (when nothing has imported it yet) without ``rfc3987_syntax``: that
    optional checker of the ``iri`` format, which the pipeline schema never uses, builds a parser
    when imported, 2 to 3 seconds of every ``python -m pdtnb -f`` command. Without it jsonschema
    leaves ``iri`` unchecked, in this process only."""
    if "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # "not installed"
        try:
            import jsonschema
        finally:
            if sys.modules.get("rfc3987_syntax", 0) is None:
                del sys.modules["rfc3987_syntax"]
        return jsonschema
    import jsonschema

    return jsonschema


def _typed_variables(source: Source, errors: list[tuple[tuple[Any, ...], Any]]) -> bool:
    """Read each whole-string ``${NAME}`` the schema wants as a number or a boolean as one (an
    environment variable is always text); True if any value changed."""
    changed = False
    for prefix, error in errors:
        path = (*prefix, *error.absolute_path)
        if path not in source.whole_variables or not isinstance(error.instance, str):
            continue
        if error.validator == "type" or _variable_pattern(error):
            wanted = error.schema.get("type") if error.validator == "pattern" else error.validator_value
        elif error.validator in ("anyOf", "oneOf"):
            wanted = []
            for sub in error.validator_value:
                kind = sub.get("type", []) if isinstance(sub, dict) else []
                wanted += [kind] if isinstance(kind, str) else kind
        else:
            continue
        value = typed_variable(error.instance, wanted)
        if value is error.instance:
            continue
        parent = source.data
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = value
        changed = True
    return changed


def _variable_pattern(error: Any) -> bool:
    """Whether ``error`` is a string that is not a whole ``${NAME}`` where a number or boolean
    (or such a variable) is wanted."""
    from .kinds import VARIABLE

    return error.validator == "pattern" and error.validator_value == VARIABLE


def _schema_error(source: Source) -> None:
    if not _VALIDATORS:
        _VALIDATORS.append(_Validators())
    errors = _VALIDATORS[0].errors(source.data)
    while errors and source.whole_variables and _typed_variables(source, errors):
        errors = _VALIDATORS[0].errors(source.data)
    if not errors:
        return

    def path_of(prefix: tuple[Any, ...], error: Any) -> tuple[Any, ...]:
        return (*prefix, *error.absolute_path)

    def place(prefix: tuple[Any, ...], error: Any) -> tuple[int, int]:
        where = source.where(path_of(prefix, error))
        return where.line, where.column

    # The first mistake in the file; at one place, the most specific (deepest) error.
    prefix, error = min(errors, key=lambda pe: (place(*pe), -len(path_of(*pe)), pe[1].validator in ("anyOf", "oneOf")))
    error = _specific(error)
    path = path_of(prefix, error)
    message, where = _describe(error, source, path)
    at = ".".join(str(p) for p in path) or "the top level"
    raise DeclarationError(f"{at}: {message}", where)


def _specific(error: Any) -> Any:
    """From an ``anyOf``/``oneOf`` error, the error of the branch the value was meant for: not the
    branches of another type (a string given where a string or null is allowed fails the null
    branch too), and the deepest of the others."""
    while error.context and error.validator in ("anyOf", "oneOf"):
        meant = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        if not meant or all(e.validator == "required" for e in error.context):
            break
        error = max(meant, key=lambda e: len(e.absolute_path))
    return error


def _describe(error: Any, source: Source, path: tuple[Any, ...]) -> tuple[str, Where]:
    """The message of a schema error, and the place to report it at."""
    from .kinds import IMPORT_PATH
    from .schema import NAME_PATTERN

    validator, instance, value = error.validator, error.instance, error.validator_value
    where = source.where(path)
    if validator == "additionalProperties" and isinstance(instance, dict):
        known = sorted(error.schema.get("properties", {}))
        unknown = [k for k in instance if k not in known]
        if unknown:
            first = min(unknown, key=lambda k: (source.where_key((*path, k)).line, source.where_key((*path, k)).column))
            close = difflib.get_close_matches(str(first), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"the keys here are: {', '.join(known)}"
            return f"unknown key {first!r} ({hint})", source.where_key((*path, first))
    if validator == "pattern" and error.schema.get("pattern") == NAME_PATTERN and isinstance(instance, str):
        # propertyNames: the key itself is wrong
        return (f"{instance!r} is not a valid name (a letter or _, then letters, digits, _ . -)",
                source.where_key((*path, instance)))
    if validator == "enum" and isinstance(instance, (str, int, float)):
        names = [str(v) for v in value]
        close = difflib.get_close_matches(str(instance), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        siblings = error.parent.context if error.parent is not None else []
        also = " nor an import path package.module:Class" if any(
            e.validator == "pattern" and e.validator_value == IMPORT_PATH for e in siblings) else ""
        return f"{instance!r} is not one of {', '.join(names)}{also}{hint}", where
    if _variable_pattern(error):
        wanted = " or ".join(t for t in error.schema.get("type", []) if t not in ("string", "null"))
        article = "an" if wanted.startswith("i") else "a"
        return f"{instance!r} is not {article} {wanted} (nor one whole ${{NAME}})", where
    if validator == "pattern" and value == IMPORT_PATH:
        return f"{instance!r} is not an import path (package.module:name)", where
    if validator == "oneOf" and not error.context and all(set(branch) == {"required"} for branch in value):
        names = [name for branch in value for name in branch["required"]]
        return f"give one of {', '.join(names)}, not both", where
    if validator in ("anyOf", "oneOf") and error.context:
        if all(e.validator == "required" for e in error.context):
            names = [e.validator_value[0] if isinstance(e.validator_value, list) else e.validator_value
                     for e in error.context]
            return f"give one of {', '.join(names)}", where
        types = [t for e in error.context if e.validator == "type"
                 for t in ([e.validator_value] if isinstance(e.validator_value, str) else e.validator_value)]
        if types and len(types) == len(error.context):
            return f"{instance!r} is not of type {' or '.join(repr(t) for t in types)}", where
    if validator == "required":
        missing = [name for name in value if isinstance(instance, dict) and name not in instance]
        if missing:
            return f"{missing[0]!r} is required", where
    return error.message, where


def read_document(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Document:
    """Read ``path`` and the files it includes, each validated against the schema, and merge them."""
    load_kinds()
    top = Path(path).resolve() if Path(path).exists() else Path(path)
    document = Document(Path(path).absolute())
    _read_into(document, Path(path), environ, [], top)
    if not document.import_paths:
        document.import_paths = [Path(path).resolve().parent]
    return document


def _read_into(document: Document, path: Path, environ: dict[str, str] | None, stack: list[Path], top: Path,
               included_at: Where | None = None) -> None:
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(os.path.relpath(p, resolved.parent) for p in [*stack[stack.index(resolved):], resolved])
        raise DeclarationError(f"include cycle: {chain}", included_at)
    if included_at is not None and any(f.resolve() == resolved for f in document.files):
        raise DeclarationError(f"{path} is included twice: its declarations would be given twice", included_at)
    source = read_source(path)
    if not isinstance(source.data, dict):
        raise DeclarationError("a pipeline file is a mapping (resources, repositories, quotas, tasks)",
                               source.where(()))
    interpolate(source, environ)
    _schema_error(source)
    document.files.append(path)
    data = source.data
    for entry_path in data.get("import_paths", []):
        document.import_paths.append(Path(resolve_path(source.directory, entry_path)))
    if "pipeline" in data:
        if document.options_source is not None and resolved != top:
            raise DeclarationError(
                f"'pipeline' options are given in {document.options_source.path} already: give them once",
                source.where(("pipeline",)),
            )
        document.options = dict(data["pipeline"])
        document.options_source = source
    for section in SECTIONS:
        for name, value in (data.get(section) or {}).items():
            earlier = document.entries[section].get(name)
            if earlier is not None:
                raise DeclarationError(
                    f"two {section} are named {name!r} (the other is at {earlier.source.where_key(earlier.key)})",
                    source.where_key((section, name)),
                )
            document.entries[section][name] = Entry(section, name, value, source, (section, name))
    for i, include in enumerate(data.get("include", [])):
        included = Path(resolve_path(source.directory, include))
        if not included.exists():
            raise DeclarationError(f"included file {include!r} does not exist ({included})",
                                   source.where(("include", i)))
        _read_into(document, included, environ, [*stack, resolved], top, source.where(("include", i)))


# ---- checking --------------------------------------------------------------------------------


@contextlib.contextmanager
def _import_paths(paths: list[Path]) -> Iterator[None]:
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
            raise DeclarationError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}",
                                   where) from None
    return obj


def _kind_of(entry: Entry) -> Kind:
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
    factory = RESOURCE_KINDS[kind]
    params = params_of(factory)
    if kind == "python":
        params["factory"] = Param("factory", {}, True, imported=True)
    return Kind(kind, factory, params)


def _check_extra(entry: Entry, kind: Kind) -> None:
    if isinstance(kind.target, str):
        module = kind.target.partition(":")[0]
        extra = {"pdtnb.repository.s3": "s3", "pdtnb.repository.mongo": "mongo",
                 "pdtnb.repository.docker": "docker", "pdtnb.task.kube": "kube"}.get(module, "all")
        raise DeclarationError(f"{entry.label}: kind {kind.name} needs the {extra!r} extra: "
                               f"pip install 'pdtnb[{extra}]'", entry.where("kind"))
    if entry.section == "resources":
        missing = extra_missing(kind.name)
        if missing:
            raise DeclarationError(f"{entry.label}: kind {kind.name} needs the {missing!r} extra: "
                                   f"pip install 'pdtnb[{missing}]'", entry.where("kind"))


def _refs(document: Document, entry: Entry, section: str, name: Any, where: Where, what: str) -> None:
    if name is None:
        return
    if name not in document.entries[section]:
        known = ", ".join(sorted(document.entries[section])) or "none is declared"
        singular = "repository" if section == "repositories" else section[:-1]
        raise DeclarationError(f"{entry.label}: {what} {name!r} is not a declared {singular} "
                               f"({section}: {known})", where)


def check(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Document:
    """Read and validate the pipeline file ``path`` completely, building and opening nothing.
    Returns the merged :class:`Document`; raises :class:`DeclarationError` (``FILE:LINE:COL:
    what``) at the first mistake."""
    document = read_document(path, environ)
    with _import_paths(document.import_paths):
        for section in SECTIONS:
            for entry in document.entries[section].values():
                if section == "quotas":
                    _check_quota(entry)
                    continue
                kind = _kind_of(entry)
                _check_extra(entry, kind)
                _check_params(document, entry, kind)
                if section == "tasks":
                    _check_task(document, entry, kind)
        options = document.options
        if options.get("priority") is not None and document.options_source is not None:
            import_object(options["priority"], document.options_source.where(("pipeline", "priority")),
                          "priority function")
            given = [e for e in document.entries["tasks"].values() if "priority" in e.value]
            if given:
                raise DeclarationError(f"{given[0].label}: give task priorities or a pipeline priority function, "
                                       "not both", given[0].where("priority"))
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
            raise DeclarationError(f"{entry.label}: {what}: {e} (a quantity is a number or a Kubernetes quantity "
                                   f"such as 500m, 2, 1Gi, 200Mi)", entry.where(*sub, name)) from None


def _check_params(document: Document, entry: Entry, kind: Kind) -> None:
    value = entry.value
    for param in kind.params.values():
        if param.name not in value:
            if param.name == "template" and "template_file" in value and "template_file" in kind.extra:
                continue
            if param.required:
                raise DeclarationError(f"{entry.label}: {param.name} is required", entry.where())
            continue
        given = value[param.name]
        where = entry.where(param.name)
        if param.many_refs:
            for child, repo in given.items():
                _refs(document, entry, REPOSITORIES, repo, entry.where(param.name, child), f"{param.name}.{child}")
        elif param.ref is not None:
            if param.name == "stderr" and given == "STDOUT":
                continue
            _refs(document, entry, param.ref, given, where, param.name)
        elif param.imported and given is not None:
            obj = import_object(given, where, f"{entry.label}: {param.name}")
            if not callable(obj):
                raise DeclarationError(f"{entry.label}: {param.name} {given!r} is not callable", where)
        elif param.convert == "retry" and given is not None:
            _retry(given, entry, where)
        elif param.convert == "resources" and isinstance(given, dict):
            _check_quantities(entry, given, param.name)
    if entry.section == "repositories" and kind.name not in REPOSITORY_KINDS:
        known = set(kind.params)
        has_kwargs = any(p.kind is p.VAR_KEYWORD for p in _signature(kind.target).parameters.values())
        unknown = [k for k in value if k != "kind" and k not in known]
        if unknown and not has_kwargs:
            raise DeclarationError(f"{entry.label}: {kind.name} takes no argument {unknown[0]!r} "
                                   f"(it takes {', '.join(known) or 'none'})", entry.where(unknown[0]))


def _signature(target: Any) -> Any:
    import inspect

    return inspect.signature(target.__init__ if isinstance(target, type) else target)


def _check_task(document: Document, entry: Entry, kind: Kind) -> None:
    value = entry.value
    for link, spec in (value.get("links") or {}).items():
        _refs(document, entry, REPOSITORIES, spec["repo"], entry.where("links", link, "repo"),
              f"link {link}: repository")
    for i, plug in enumerate(_plugs(value)):
        key = ("plug",) if isinstance(value.get("plug"), (str, dict)) else ("plug", i)
        upstream = plug["task"]
        if upstream not in document.entries["tasks"]:
            raise DeclarationError(f"{entry.label}: plugs into {upstream!r}, which is not a declared task",
                                   entry.where(*key))
        if upstream == entry.name:
            raise DeclarationError(f"{entry.label}: a task cannot plug into itself", entry.where(*key))
        _refs(document, entry, REPOSITORIES, plug.get("translator"), entry.where(*key), "translator")
    if "template" in kind.params or "template_file" in kind.extra:
        _check_template(entry)


def _plugs(value: dict[str, Any]) -> list[dict[str, Any]]:
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
            raise DeclarationError(f"{entry.label}: template_file {value['template_file']!r} does not exist ({path})",
                                   where)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DeclarationError(f"{entry.label}: cannot read template_file {value['template_file']!r}: {e}",
                                   where) from None

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
        raise DeclarationError(f"{entry.label}: the template does not compile: {e.message} (template line {lineno})",
                               origin(lineno)) from None


def _retry(given: dict[str, Any], entry: Entry, where: Where) -> Any:
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
            raise DeclarationError(f"{entry.label}: retry.on: {item!r} is neither a builtin exception, an import path "
                                   f"package.module:Exception, nor a reason ({', '.join(KNOWN_REASONS)})", at)
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
            if _flags(spec).get("is_output"):
                producers.setdefault(spec["repo"], set()).add(entry.name)
        for param in _WRITTEN:
            if isinstance(value.get(param), str):
                producers.setdefault(value[param], set()).add(entry.name)
    for entry in document.entries["tasks"].values():
        for plug in _plugs(entry.value):
            yield plug["task"], entry.name
        read = [spec["repo"] for spec in (entry.value.get("links") or {}).values()
                if _flags(spec).get("is_input") or _flags(spec).get("required_for_start")]
        read += [entry.value[param] for param in _READ if isinstance(entry.value.get(param), str)]
        for repo in read:
            for producer in sorted(producers.get(repo, ())):
                if producer != entry.name:
                    yield producer, entry.name


def _check_cycles(document: Document) -> None:
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(document.entries["tasks"])
    graph.add_edges_from(_task_edges(document))
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return
    names = [a for a, _ in cycle] + [cycle[0][0]]
    first = document.entries["tasks"][names[0]]
    raise DeclarationError(f"the tasks form a cycle: {' -> '.join(names)} (through plug, or an output another task "
                           f"takes as input)", first.source.where_key(first.key))


def _flags(spec: dict[str, Any]) -> dict[str, Any]:
    """A link's ``Task.link`` keyword arguments."""
    flags: dict[str, Any] = {}
    kinds = spec.get("kind", [])
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        flags[LINK_KINDS[kind]] = True
    for key, value in spec.items():
        if key not in ("repo", "kind"):
            flags[key] = value
    return flags


# ---- building --------------------------------------------------------------------------------


class _Builder:
    def __init__(self, document: Document):
        from ..session import Session

        self.document = document
        self.session = Session()
        self.getters: dict[str, Callable[[], Any]] = {}
        self.quotas: dict[str, Any] = {}
        self.repos: dict[str, Any] = {}
        self.tasks: dict[str, Any] = {}

    def arguments(self, entry: Entry, kind: Kind) -> dict[str, Any]:
        args: dict[str, Any] = {}
        value = entry.value
        for key, given in value.items():
            if key in ("kind", "links", "plug", "priority", "template_file"):
                continue
            param = kind.params.get(key)
            if param is None:  # a user class taking **kwargs
                args[key] = given
                continue
            args[key] = self.convert(entry, param, given)
        if "template_file" in value:
            args["template"] = Path(resolve_path(entry.source.directory, value["template_file"]))
        if entry.section == "tasks" and value.get("kind") == "kube-function" and "script" not in value:
            # The pod runs `python3 -m pdtnb -f {{ argv0 }} launch ...`: the file, by the name the
            # pod's working directory holds it under (docs/declarative.md).
            args["script"] = self.document.path.name
        return args

    def convert(self, entry: Entry, param: Param, given: Any) -> Any:
        if given is None:
            return None
        if param.many_refs:
            return {child: self.repo(name) for child, name in given.items()}
        if param.ref == REPOSITORIES:
            if param.name == "stderr" and given == "STDOUT":
                from ..task import STDOUT

                return STDOUT
            return self.repo(given)
        if param.ref == RESOURCES:
            return self.resource(given)
        if param.ref == QUOTAS:
            return self.quotas[given]
        if param.imported:
            return import_object(given, entry.where(param.name), f"{entry.label}: {param.name}")
        if entry.section == "resources" and (entry.value["kind"], param.name) in LOCAL_PATHS:
            if isinstance(given, list):  # ssh client_keys
                return [resolve_path(entry.source.directory, item) for item in given]
            return resolve_path(entry.source.directory, given)
        if param.path:
            return Path(resolve_path(entry.source.directory, given))
        if param.convert == "resources":
            from ..resources import Resources

            return Resources.parse(**given)
        if param.convert == "retry":
            return _retry(given, entry, entry.where(param.name))
        if param.convert == "seconds":
            return timedelta(seconds=given) if param.name == "window" else float(given)
        if param.convert == "executor":
            from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

            cls = ThreadPoolExecutor if given["kind"] == "threads" else ProcessPoolExecutor
            return cls(max_workers=given.get("max_workers"))
        return given

    def resource(self, name: str) -> Callable[[], Any]:
        if name not in self.getters:
            entry = self.document.entries["resources"][name]
            kind = _kind_of(entry)
            args = self.arguments(entry, kind)
            factory = RESOURCE_KINDS[entry.value["kind"]]

            def open_resource(factory: Any = factory, args: dict[str, Any] = args) -> Any:
                return factory(**args)

            open_resource.__name__ = open_resource.__qualname__ = name
            self.getters[name] = self.session.resource(open_resource)
        return self.getters[name]

    def repo(self, name: str) -> Any:
        if name not in self.repos:
            entry = self.document.entries["repositories"][name]
            self.repos[name] = self.construct(entry, _kind_of(entry))
            self.repos[name].declared_as = name  # pdtnb.dump writes it under the same name
        return self.repos[name]

    def construct(self, entry: Entry, kind: Kind, *positional: Any) -> Any:
        children = next((p for p in kind.params.values() if p.many_refs), None)
        try:
            args = self.arguments(entry, kind)
            if children is not None:
                return kind.target(*positional, **args.pop(children.name), **args)  # type: ignore[operator]
            return kind.target(*positional, **args)  # type: ignore[operator]
        except DeclarationError:
            raise
        except Exception as e:
            raise DeclarationError(f"{entry.label}: {e}", entry.where()) from None

    def build(self) -> Any:
        from ..pipeline import Pipeline
        from ..resources import ResourceManager, Resources

        document = self.document
        for name in document.entries["resources"]:
            self.resource(name)
        for name, entry in document.entries["quotas"].items():
            self.quotas[name] = ResourceManager(Resources.parse(**entry.value))
        for name in document.entries["repositories"]:
            self.repo(name)
        for name, entry in document.entries["tasks"].items():
            task = self.construct(entry, _kind_of(entry), name)
            for link, spec in (entry.value.get("links") or {}).items():
                try:
                    task.link(link, self.repo(spec["repo"]), **_flags(spec))
                except Exception as e:
                    raise DeclarationError(f"{entry.label}: link {link}: {e}", entry.where("links", link)) from None
            self.tasks[name] = task
        for name, entry in document.entries["tasks"].items():
            for plug in _plugs(entry.value):
                options = {k: v for k, v in plug.items() if k != "task"}
                if options.get("translator") is not None:
                    options["translator"] = self.repo(options["translator"])
                try:
                    self.tasks[name].plug(self.tasks[plug["task"]], **options)
                except Exception as e:
                    raise DeclarationError(f"{entry.label}: plug {plug['task']}: {e}", entry.where("plug")) from None
        for name, entry in document.entries["tasks"].items():
            _check_built_task(entry, self.tasks[name])
        options = dict(document.options)
        priorities = {name: e.value["priority"] for name, e in document.entries["tasks"].items()
                      if "priority" in e.value}
        if options.get("priority") is not None:
            options["priority"] = import_object(options["priority"], Where(str(document.path), 1, 1), "priority")
        elif priorities:
            options["priority"] = TaskPriorities(priorities)
        try:
            pipeline = Pipeline(list(self.tasks.values()), self.session, list(self.quotas.values()), **options)
        except Exception as e:
            raise DeclarationError(f"pipeline: {e}", Where(str(document.path), 1, 1)) from None
        pipeline.declared_in = document.path
        return pipeline


def _check_built_task(entry: Entry, task: Any) -> None:
    """What the pipeline would refuse when it opens, found before anything is opened: a task that
    could never have a ready job, a body whose parameters are not the task's links."""
    from ..errors import TaskConfigError

    if getattr(task, "_ready", None) is None and not task.required_for_start:
        raise DeclarationError(f"{entry.label} has no input: give a link of kind input or required, a plug, "
                               f"or ready: REPOSITORY (its links: {', '.join(task.links)})",
                               entry.source.where_key(entry.key))
    binding = getattr(task, "_binding", None)
    if binding is not None and binding.func is None:
        raise DeclarationError(f"{entry.label}: func is required (its body, package.module:function)",
                               entry.source.where_key(entry.key))
    if binding is not None:
        try:
            binding.bind()
        except TaskConfigError as e:
            raise DeclarationError(str(e), entry.where("func")) from None


class TaskPriorities:
    """``priority(task, job)`` from per-task ``priority:`` values (0 for a task without one)."""

    def __init__(self, table: dict[str, int]):
        self.table = dict(table)

    def __call__(self, task: str, job: str) -> int:
        return self.table.get(task, 0)

    def __repr__(self) -> str:
        return f"TaskPriorities({self.table!r})"


def build(document: Document) -> Any:
    """The :class:`~pdtnb.Pipeline` of a checked document: its objects constructed, nothing
    opened (no connection, file or directory), and the checks the pipeline would make when it
    opens made now (each task has an input; a body's parameters are its task's links)."""
    with _import_paths(document.import_paths):
        return _Builder(document).build()


def load(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Any:
    """The :class:`~pdtnb.Pipeline` the file ``path`` declares (YAML, TOML or JSON, by
    extension), checked completely first (see :func:`check`, then :func:`build`). Nothing is
    opened: open it as any pipeline (``async with pipeline``, ``pdtnb.main``, ``%pdt``)."""
    return build(check(path, environ))
