"""Reading a pipeline file, and the files it includes, into one :class:`Document`: each file
parsed (:mod:`pdtnb.declarative.source`), its ``${NAME}`` replaced, validated against the schema
(:mod:`pdtnb.declarative.schema`), and its declarations merged by section and name. A name given
twice, in one file or across files, and an include cycle are refused here, at their place.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kinds import load_kinds
from .resources import resolve_path
from .schema import pipeline_schema
from .source import DeclarationError, Source, Where, interpolate, read_source, typed_variable

__all__ = ["SECTIONS", "Entry", "Document", "read_document", "import_jsonschema"]

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

    def variables(self) -> dict[str, Any]:
        """Each argument of this entry that holds a ``${NAME}``, as the file writes it (a string,
        or a list or mapping holding such strings): what :func:`pdtnb.dump` writes back instead
        of the environment's values."""
        by_argument: dict[Any, dict[tuple[Any, ...], str]] = {}
        for path, text in self.source.written_under(self.key).items():
            by_argument.setdefault(path[0], {})[path[1:]] = text

        def walk(value: Any, key: tuple[Any, ...], written: dict[tuple[Any, ...], str]) -> Any:
            if key in written:
                return written[key]
            if isinstance(value, dict):
                return {k: walk(v, (*key, k), written) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, (*key, i), written) for i, v in enumerate(value)]
            return value

        return {
            name: walk(self.value[name], (), written) for name, written in by_argument.items() if name in self.value
        }

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


class _Validators:
    """The schema's validation, by kind: the schema gives each section's kinds as ``if kind is K
    then ...`` branches (what editors read), which a validator tries one after the other for
    every entry (half a second for 800 entries); here the file is validated without the branches
    and each entry against its own kind's branch only, which finds the same errors."""

    #: The schema's definition of an entry of each section of a file.
    DEFINITIONS = {"resources": "resource", "repositories": "repository", "tasks": "task"}

    def __init__(self) -> None:
        jsonschema = import_jsonschema()
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


def import_jsonschema() -> Any:
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

    return bool(error.validator == "pattern" and error.validator_value == VARIABLE)


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
        return (
            f"{instance!r} is not a valid name (a letter or _, then letters, digits, _ . -)",
            source.where_key((*path, instance)),
        )
    if validator == "enum" and isinstance(instance, (str, int, float)):
        names = [str(v) for v in value]
        close = difflib.get_close_matches(str(instance), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        siblings = error.parent.context if error.parent is not None else []
        also = (
            " nor an import path package.module:Class"
            if any(e.validator == "pattern" and e.validator_value == IMPORT_PATH for e in siblings)
            else ""
        )
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
            names = [
                e.validator_value[0] if isinstance(e.validator_value, list) else e.validator_value
                for e in error.context
            ]
            return f"give one of {', '.join(names)}", where
        types = [
            t
            for e in error.context
            if e.validator == "type"
            for t in ([e.validator_value] if isinstance(e.validator_value, str) else e.validator_value)
        ]
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


def _read_into(
    document: Document,
    path: Path,
    environ: dict[str, str] | None,
    stack: list[Path],
    top: Path,
    included_at: Where | None = None,
) -> None:
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(os.path.relpath(p, resolved.parent) for p in [*stack[stack.index(resolved) :], resolved])
        raise DeclarationError(f"include cycle: {chain}", included_at)
    if included_at is not None and any(f.resolve() == resolved for f in document.files):
        raise DeclarationError(f"{path} is included twice: its declarations would be given twice", included_at)
    source = read_source(path)
    if not isinstance(source.data, dict):
        raise DeclarationError(
            "a pipeline file is a mapping (resources, repositories, quotas, tasks)", source.where(())
        )
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
            raise DeclarationError(
                f"included file {include!r} does not exist ({included})", source.where(("include", i))
            )
        _read_into(document, included, environ, [*stack, resolved], top, source.where(("include", i)))
