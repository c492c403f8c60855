"""Reading pipeline files: YAML, TOML or JSON (by extension), with the line and column of every
value kept, duplicate keys refused, and ``${ENV}``, ``${ENV:-default}`` and ``$$`` interpolated
(``include:`` is followed by :mod:`pdtnb.declarative.document`).

Why positions are kept beside the values rather than in them: the values go to the JSON Schema
validator and to the classes unchanged (plain dicts, lists and scalars), while every error, from
the schema to a constructor refusing an argument, is reported at the line and column the user
wrote. YAML and JSON positions come from PyYAML's node tree (JSON is read by ``json`` and located
through the same tree, JSON being YAML's flow syntax); TOML positions from a scan of its
``[table]`` headers and ``key =`` lines (tomllib gives none), skipping multi-line strings. Keys'
own positions are kept too (an unknown key is reported where it is written), and so is the first
line of a multi-line string written as a block (a YAML ``|`` literal, a TOML multi-line string), so a
template's error is reported on the file line holding the template's bad line.

YAML is read with the YAML 1.2 core schema's scalars, as JSON and TOML read theirs: only
``true``/``false`` are booleans (``on:``, ``yes``, ``no`` stay strings, so ``retry: {on: [...]}``
means what it says), ``0755`` is the integer 755 (``0o755`` is octal), and dates stay strings.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import PdtnbError

__all__ = [
    "DeclarationError",
    "Source",
    "Where",
    "read_source",
    "interpolate",
    "typed_variable",
    "EXTENSIONS",
    "Loader",
    "Dumper",
]

#: The extensions a pipeline file may have, and the syntax each means.
EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}

PathKey = tuple[Any, ...]


class DeclarationError(PdtnbError, ValueError):
    """A pipeline file is wrong: the message names the file, the line and column, and what is
    wrong (``FILE:LINE:COL: message``)."""

    def __init__(self, message: str, where: Where | None = None):
        self.where = where
        self.reason = message
        super().__init__(f"{where}: {message}" if where is not None else message)


@dataclass(frozen=True)
class Where:
    """A place in a pipeline file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Source:
    """One parsed pipeline file: its values and where each of them was written."""

    path: Path
    data: Any
    places: dict[PathKey, Where] = field(default_factory=dict)
    #: Where each mapping key is written (by the path of its value).
    keys: dict[PathKey, Where] = field(default_factory=dict)
    #: For a multi-line string written as a block: where its first line's text starts.
    blocks: dict[PathKey, Where] = field(default_factory=dict)
    #: The file's lines (to place a ``${NAME}`` inside its string).
    lines: list[str] = field(default_factory=list)
    #: The strings that were one ``${NAME}`` and nothing else: where the schema wants a number or
    #: a boolean, such a value is read as one (:func:`typed_variable`).
    whole_variables: set[PathKey] = field(default_factory=set)
    #: Each string that held a ``${NAME}``, as written (before :func:`interpolate`), by its path:
    #: :func:`pdtnb.dump` writes these back, so a file's variables stay variables in its dump.
    written: dict[PathKey, str] = field(default_factory=dict)
    _written_index: dict[PathKey, dict[PathKey, str]] | None = field(default=None, repr=False)

    @property
    def directory(self) -> Path:
        return self.path.parent

    def written_under(self, key: PathKey) -> dict[PathKey, str]:
        """The strings of :attr:`written` below the entry at ``key`` (a section and a name), by
        their path from it; indexed once, as every entry of a file asks."""
        if self._written_index is None:
            index: dict[PathKey, dict[PathKey, str]] = {}
            for path, text in self.written.items():
                index.setdefault(tuple(path[:2]), {})[tuple(path[2:])] = text
            self._written_index = index
        return self._written_index.get(tuple(key), {})

    def where(self, key: PathKey) -> Where:
        """The place of the value at ``key`` (a path of mapping keys and list indices), or of its
        nearest enclosing value that has one."""
        key = tuple(key)
        while key:
            if key in self.places:
                return self.places[key]
            key = key[:-1]
        return self.places.get((), Where(str(self.path), 1, 1))

    def where_key(self, key: PathKey) -> Where:
        """Where the mapping key naming the value at ``key`` is written (else :meth:`where`)."""
        key = tuple(key)
        return self.keys.get(key) or self.where(key)


def read_source(path: str | os.PathLike[str]) -> Source:
    """Parse ``path`` by its extension. A syntax error is a :class:`DeclarationError` at its place."""
    path = Path(path)
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise DeclarationError(
            f"{path}: a pipeline file must end in {', '.join(sorted(EXTENSIONS))} "
            "(its syntax is chosen by the extension)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeclarationError(f"{path}: no such pipeline file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DeclarationError(f"{path}: cannot read it: {e}") from None
    name = str(path)
    if kind == "yaml":
        source = _read_yaml(path, name, text)
    elif kind == "json":
        source = _read_json(path, name, text)
    else:
        source = _read_toml(path, name, text)
    source.lines = text.splitlines()
    return source


# ---- YAML and JSON ---------------------------------------------------------------------------


def _core_schema(base: type[yaml.SafeLoader] | type[yaml.CSafeLoader]) -> Any:
    """``base`` (a PyYAML safe loader) resolving plain scalars by the YAML 1.2 core schema: YAML
    1.1 also reads ``on``, ``off``, ``yes``, ``no`` (in any case) as booleans, so ``retry: {on:
    [...]}`` would become ``{True: [...]}``; ``0755`` as octal; ``2024-01-01`` as a date."""
    loader: Any = type(f"Core{base.__name__}", (base,), {})
    replaced = {
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:timestamp",
    }
    loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in replaced]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    loader.add_implicit_resolver(
        "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
    )
    loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        list("-+.0123456789"),
    )

    def construct_int(constructor: Any, node: yaml.ScalarNode) -> int:
        text = constructor.construct_scalar(node)
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if digits.startswith("0o"):
            return sign * int(digits[2:], 8)
        if digits.startswith("0x"):
            return sign * int(digits[2:], 16)
        return sign * int(digits, 10)

    loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    return loader


#: The safe loader of pipeline files (YAML 1.2 core scalars), pure Python: its error messages and
#: places are what a syntax error reports.
Loader = _core_schema(yaml.SafeLoader)
#: The same on libyaml when it is installed, used first (a large file parses several times faster).
_FAST_LOADER = _core_schema(yaml.CSafeLoader) if getattr(yaml, "__with_libyaml__", False) else Loader


class Dumper(yaml.SafeDumper):
    """A safe dumper whose files :data:`Loader` reads back unchanged, and YAML 1.1 readers too: a
    string that either would read as another type is quoted (PyYAML's dumper, resolving by YAML
    1.1 only, writes ``1e3`` and ``0o17`` plain, which YAML 1.2 reads as numbers)."""


Dumper.yaml_implicit_resolvers = {
    first: [*Loader.yaml_implicit_resolvers.get(first, []), *yaml.SafeDumper.yaml_implicit_resolvers.get(first, [])]
    for first in {*Loader.yaml_implicit_resolvers, *yaml.SafeDumper.yaml_implicit_resolvers}
}


def _compose(text: str, loader: Any) -> Any:
    parser = loader(text)
    try:
        return parser.get_single_node()
    finally:
        parser.dispose()


def _yaml_error(name: str, e: yaml.YAMLError) -> DeclarationError:
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = Where(name, mark.line + 1, mark.column + 1) if mark is not None else Where(name, 1, 1)
        return DeclarationError(f"invalid YAML: {e.problem or e.context}", where)
    return DeclarationError(f"{name}: invalid YAML: {e}")


def _read_yaml(path: Path, name: str, text: str) -> Source:
    try:
        node = _compose(text, _FAST_LOADER)
    except yaml.YAMLError as fast_error:
        try:  # again with the pure-Python parser, whose message and place are reported
            _compose(text, Loader)
        except yaml.YAMLError as e:
            raise _yaml_error(name, e) from None
        raise _yaml_error(name, fast_error) from None
    source = Source(path, None)
    if node is not None:
        _walk(node, (), name, source, text.splitlines())
        try:
            source.data = _construct(node)
        except yaml.YAMLError as e:  # e.g. an unknown !tag
            raise _yaml_error(name, e) from None
    return source


def _construct(node: yaml.Node) -> Any:
    constructor = Loader("")
    try:
        return constructor.construct_document(node)
    finally:
        constructor.dispose()


def _read_json(path: Path, name: str, text: str) -> Source:
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except json.JSONDecodeError as e:
        raise DeclarationError(f"invalid JSON: {e.msg}", Where(name, e.lineno, e.colno)) from None
    except DeclarationError:
        data = None  # a duplicate key: the composer below says where
    source = Source(path, data)
    try:  # JSON is YAML's flow syntax: its places come from the same composer
        node = _compose(text.replace("\t", " "), _FAST_LOADER)
    except yaml.YAMLError:
        node = None
    if node is not None:
        _walk(node, (), name, source, text.splitlines())
    if data is None:  # the composer could not place the duplicate key
        json.loads(text, object_pairs_hook=_refuse_duplicates)
    return source


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            raise DeclarationError(f"{k!r} is given twice in this mapping")
        seen[k] = v
    return seen


def _walk(node: yaml.Node, key: PathKey, name: str, source: Source, lines: list[str]) -> None:
    places = source.places
    places[key] = Where(name, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                name_ = _scalar_key(k)
                at = Where(name, k.start_mark.line + 1, k.start_mark.column + 1)
                if name_ in seen:
                    raise DeclarationError(
                        f"{name_!r} is given twice in this mapping (first on line {seen[name_]})", at
                    )
                seen[name_] = k.start_mark.line + 1
                child = (*key, name_)
                source.keys[child] = at
                _walk(v, child, name, source, lines)
                # a mapping or list value starts on the line after its key: point at the key
                if isinstance(v, (yaml.MappingNode, yaml.SequenceNode)) and v.start_mark.line != k.start_mark.line:
                    places[child] = at
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk(v, (*key, i), name, source, lines)
    elif isinstance(node, yaml.ScalarNode) and node.style == "|":
        # A literal block: its text starts on the line after the indicator, at the indentation
        # of its first line that is not blank.
        first = node.start_mark.line + 1  # 0-based
        body = lines[first : node.end_mark.line + 1]
        indent = next((len(line) - len(line.lstrip(" ")) for line in body if line.strip()), 0)
        source.blocks[key] = Where(name, first + 1, indent + 1)


def _scalar_key(node: yaml.ScalarNode) -> Any:
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    try:
        return _construct(node)
    except yaml.YAMLError:
        return node.value


# ---- TOML ------------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY_PART = r"(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
_KEY = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=\s*")
_MULTILINE = re.compile(r"\"\"\"|'''")


def _toml_keys(dotted: str) -> list[str]:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)", dotted)
    return [a or b or c for a, b, c in parts]


def _open_multiline(line: str, start: int) -> tuple[str | None, int]:
    """The delimiter of a multi-line string ``line`` opens at or after ``start`` and does not
    close on the same line (None if none), and the column just after it opens."""
    position = start
    while True:
        match = _MULTILINE.search(line, position)
        if match is None:
            return None, -1
        delimiter = match.group(0)
        close = line.find(delimiter, match.end())
        if close < 0:
            return delimiter, match.end()
        position = close + 3


def _read_toml(path: Path, name: str, text: str) -> Source:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        where = Where(name, int(match.group(1)), int(match.group(2))) if match else Where(name, 1, 1)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise DeclarationError(f"invalid TOML: {message}", where) from None
    source = Source(path, data, {(): Where(name, 1, 1)})
    places = source.places
    table: PathKey = ()
    arrays: dict[PathKey, int] = {}
    lines = text.splitlines()
    inside: str | None = None  # the delimiter of the multi-line string being skipped
    for number, line in enumerate(lines, start=1):
        if inside is not None:  # the text of a multi-line string: no header nor key here
            end = line.find(inside)
            if end >= 0:
                inside, _ = _open_multiline(line, end + 3)
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            keys = tuple(_toml_keys(header.group(2)))
            if header.group(1) == "[[":
                arrays[keys] = arrays.get(keys, -1) + 1
                table = (*keys, arrays[keys])
            else:
                table = keys
            places.setdefault(table, Where(name, number, line.index("[") + 1))
            if table:
                source.keys.setdefault(table, places[table])
            continue
        key = _KEY.match(line)
        if key:
            full = (*table, *_toml_keys(key.group(1)))
            source.keys.setdefault(full, Where(name, number, len(line) - len(line.lstrip()) + 1))
            places.setdefault(full, Where(name, number, key.end() + 1))  # the value, after "key = "
            inside, after = _open_multiline(line, key.end())
            if inside is not None and line[key.end() :].startswith(inside):
                # a string value written as a block: a newline right after the delimiter is not
                # part of it, so its first line is the next file line
                rest = line[after:]
                block = Where(name, number + 1, 1) if not rest.strip() else Where(name, number, after + 1)
                source.blocks.setdefault(full, block)
    return source


# ---- ${ENV} ----------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(source: Source, environ: Mapping[str, str] | None = None) -> None:
    """Replace ``${NAME}`` (and ``${NAME:-default}``) in every string of ``source`` by the
    environment's value, in place; ``$$`` is a literal ``$``. A variable that is not set and has
    no default is a :class:`DeclarationError` where the variable is written. Only strings are
    touched, and a value is never parsed again: an interpolated secret cannot inject syntax."""
    env = os.environ if environ is None else environ

    def replace(text: str, key: PathKey) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise DeclarationError(
                f"the environment variable {name} is not set (write ${{{name}:-default}} for a default)",
                _variable_place(source, key, text, m),
            )

        return _VARIABLE.sub(one, text)

    def walk(value: Any, key: PathKey) -> Any:
        if isinstance(value, str):
            if "$" not in value:
                return value
            whole = _VARIABLE.fullmatch(value)
            if whole is not None and whole.group(0) != "$$":
                source.whole_variables.add(key)
            if any(m.group(0) != "$$" for m in _VARIABLE.finditer(value)):
                source.written[key] = value
            return replace(value, key)
        if isinstance(value, dict):
            for k in list(value):
                value[k] = walk(value[k], (*key, k))
            return value
        if isinstance(value, list):
            for i, item in enumerate(value):
                value[i] = walk(item, (*key, i))
            return value
        return value

    source.data = walk(source.data, ())


def typed_variable(text: str, wanted: Any) -> Any:
    """The value of a whole-string ``${NAME}`` where the schema wants ``wanted`` (a JSON type or a
    list of them): an integer, a number or a boolean (``true``/``false``) when the text is one,
    else the text unchanged (and the schema's error names it)."""
    kinds = {wanted} if isinstance(wanted, str) else set(wanted or ())
    stripped = text.strip()
    if "boolean" in kinds and stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    if kinds & {"integer", "number"} and re.fullmatch(r"[+-]?\d+", stripped):
        return int(stripped)
    if "number" in kinds and re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", stripped):
        return float(stripped)
    return text


def _variable_place(source: Source, key: PathKey, text: str, match: re.Match[str]) -> Where:
    """Where ``${NAME}`` (``match`` in the string ``text`` at ``key``) is written: on the file line
    holding it, at its column when that line shows it (an escaped string may not), else the
    string's own place."""
    at = source.where(key)
    if key not in source.places:
        return at
    offset = text.count("\n", 0, match.start())
    block = source.blocks.get(key)
    if block is not None:
        line, start = block.line + offset, block.column - 1
    elif offset == 0:
        line, start = at.line, at.column - 1
    else:
        return at
    if 0 < line <= len(source.lines):
        column = source.lines[line - 1].find(match.group(0), start)
        if column >= 0:
            return Where(at.file, line, column + 1)
    return at


def iter_strings(value: Any, key: PathKey = ()) -> Iterator[tuple[PathKey, str]]:
    """Every string in ``value`` with its path (for checks that look at all of them)."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from iter_strings(v, (*key, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from iter_strings(v, (*key, i))
