"""What produced a job's result: the fingerprint of a task's code, kept in each job record.

A job whose record says it succeeded is done, but the code that produced it may have changed
since. Each record therefore keeps the fingerprint of what its task was when it ran, and a done
job whose task's fingerprint differs now is *outdated* (:mod:`pdtnb.status`). A fingerprint is
made of named parts, each hashed on its own, so that ``why`` can say which part changed:

- a function task (in-process, executor, Dask, Kubernetes function): ``body``, its function's
  source, and ``calls NAME`` for every function of the same module it calls, directly or through
  another (so a helper edited in another notebook cell counts); values bound to the body
  (closure variables, ``functools.partial`` arguments) that are plain data are ``bound``;
- a template task (process, pod): ``template``, the template's text without its ``{# #}``
  comments, and ``environment``, the values it is rendered with that are the same for every job.

Python source is compared as code, not text: it is parsed and written back without comments,
blank lines, formatting, docstrings or decorators (:func:`ast.unparse`), so editing a comment
or re-indenting a function changes nothing, and the same body gives the same fingerprint in a
notebook cell and in the script ``%pdt export`` writes from it. A function whose source cannot
be read (built in the interpreter by ``exec``) is fingerprinted by its bytecode instead, which
is stable within one Python version.

Records without a fingerprint (written by pydatatask, earlier pdtnb, or a task kind that has
none) are never outdated: nothing says what produced them.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fingerprint", "function_parts", "combine", "hash_text", "parts_of", "describe_changes"]

#: Hex digits of a part's hash and of a fingerprint's digest.
PART_DIGITS = 12
DIGEST_DIGITS = 16


def hash_text(text: str) -> str:
    """The short hash of one part."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()[:PART_DIGITS]


@dataclass(frozen=True)
class Fingerprint:
    """A task's fingerprint: ``digest`` (what a record keeps to compare) and the hash of each of
    its named ``parts`` (what says which changed)."""

    digest: str
    parts: Mapping[str, str] = field(default_factory=dict)

    def changes_from(self, old_parts: Mapping[str, str] | None) -> list[str]:
        """What differs between ``old_parts`` (a record's) and this fingerprint, in words."""
        return describe_changes(old_parts, self.parts)


#: Every fingerprint combined in this process, by digest: a compact in-memory record keeps only
#: the digest, and gets its parts back from here when read.
_KNOWN: dict[str, Mapping[str, str]] = {}


def combine(parts: Mapping[str, str]) -> Fingerprint:
    """The fingerprint of these part hashes (their order does not matter)."""
    ordered = dict(sorted(parts.items()))
    text = "\n".join(f"{name}={value}" for name, value in ordered.items())
    digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:DIGEST_DIGITS]
    known = _KNOWN.get(digest)
    if known is None:
        _KNOWN[digest] = known = types.MappingProxyType(ordered)
    return Fingerprint(digest, known)


def parts_of(digest: str) -> Mapping[str, str] | None:
    """The parts of a fingerprint this process combined (None if it did not)."""
    return _KNOWN.get(digest)


def describe_changes(old: Mapping[str, str] | None, new: Mapping[str, str]) -> list[str]:
    """Which parts changed, appeared or went, one phrase each (``the body changed``, ``calls
    clean_title changed``); a single general phrase when the old parts are unknown."""
    if not old:
        return ["the task's code changed (the record does not say which part)"]
    said = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        label = _label(name)
        if before is None:
            said.append(f"{label} was added")
        elif after is None:
            said.append(f"{label} is gone")
        else:
            said.append(f"{label} changed")
    return said or ["the task's code changed"]


def _label(name: str) -> str:
    if name.startswith("calls "):
        return f"the function {name[6:]} it calls"
    return {
        "body": "its body",
        "bound": "what is bound to its body",
        "template": "its template",
        "environment": "its template's environment",
    }.get(name, name)


# ---- functions -------------------------------------------------------------------------------


def function_parts(func: Callable[..., Any]) -> dict[str, str]:
    """The parts of a function task's fingerprint: ``body``, ``calls NAME`` for each function of
    its module it reaches, and ``bound`` when plain values are bound to it. Looked up afresh on
    every call (a notebook may redefine a helper the body calls), hashed only when the code
    objects found differ from the last call's."""
    body, bound = _unwrap(func)
    reached = list(_reached(body)) if isinstance(body, types.FunctionType) else []
    key = (_code_key(body), tuple((name, f.__code__) for name, f in reached), bound)
    return dict(_parts_for(key, body, tuple(reached)))


def _unwrap(func: Any) -> tuple[Any, str | None]:
    """The function under partials, decorators and task objects, and the text of the plain values
    bound to it on the way (None when there are none)."""
    bound: list[str] = []
    seen = 0
    while seen < 20:
        seen += 1
        if isinstance(func, functools.partial):
            bound.extend(_plain(v) for v in (*func.args, *sorted(func.keywords.items())) if _is_plain(v))
            func = func.func
            continue
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is not None and callable(wrapped):
            func = wrapped
            continue
        break
    if isinstance(func, types.MethodType):
        func = func.__func__
    if isinstance(func, types.FunctionType) and func.__closure__:
        names = func.__code__.co_freevars
        for name, cell in zip(names, func.__closure__):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if _is_plain(value):
                bound.append(f"{name}={_plain(value)}")
    return func, ("\n".join(bound) if bound else None)


_PLAIN = (str, int, float, bool, bytes, type(None))


def _is_plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, frozenset)) and depth < 3 and len(value) <= 100:
        return all(_is_plain(v, depth + 1) for v in value)
    return False


def _plain(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return f"{value[0]}={value[1]!r}"
    if isinstance(value, frozenset):
        return repr(sorted(value, key=repr))
    return repr(value)


def _code_key(func: Any) -> Any:
    return func.__code__ if isinstance(func, types.FunctionType) else func


def _reached(func: types.FunctionType) -> Iterator[tuple[str, types.FunctionType]]:
    """The functions of ``func``'s module that it calls, directly or through one another (by the
    global names their code uses), in a stable order."""
    module = func.__module__
    seen = {func.__code__}
    pending = [func]
    found: list[tuple[str, types.FunctionType]] = []
    while pending:
        current = pending.pop()
        namespace = current.__globals__
        for name in sorted(_global_names(current.__code__)):
            value = namespace.get(name)
            if value is None:
                continue
            target, _ = _unwrap(value)
            if isinstance(target, types.FunctionType) and target.__module__ == module and target.__code__ not in seen:
                seen.add(target.__code__)
                found.append((target.__qualname__, target))
                pending.append(target)
    return iter(sorted(found, key=lambda item: item[0]))


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


@functools.lru_cache(maxsize=512)
def _parts_for(key: Any, body: Any, reached: tuple[tuple[str, types.FunctionType], ...]) -> tuple[tuple[str, str], ...]:
    parts = {"body": hash_text(_code_text(body))}
    for name, function in reached:
        parts[f"calls {name}"] = hash_text(_code_text(function))
    if key[2] is not None:
        parts["bound"] = hash_text(key[2])
    return tuple(parts.items())


def _code_text(func: Any) -> str:
    """``func`` as normalised source (see the module's docstring), or its bytecode's text when
    its source cannot be read or parsed alone (a lambda inside an expression)."""
    if not isinstance(func, types.FunctionType):
        return f"{type(func).__module__}.{type(func).__qualname__}"
    if func.__name__ != "<lambda>":
        try:
            source = inspect.getsource(func)
            tree = ast.parse(textwrap.dedent(source))
        except (OSError, TypeError, SyntaxError, IndentationError):
            tree = None
        if tree is not None and tree.body and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
            node = tree.body[0]
            node.decorator_list = []
            _strip_docstrings(node)
            return ast.unparse(node)
    return _bytecode_text(func.__code__)


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]


def _bytecode_text(code: types.CodeType) -> str:
    consts = [
        _bytecode_text(c) if isinstance(c, types.CodeType) else repr(c)
        for c in code.co_consts
        if not (c is code.co_consts[0] and isinstance(c, str))  # the docstring
    ]
    return "|".join([code.co_code.hex(), ",".join(code.co_names), ",".join(code.co_varnames), *consts])


def environment_text(values: Mapping[str, Any]) -> str:
    """The text of a template's job-independent values (sorted, so dict order does not count)."""
    return "\n".join(f"{key}={values[key]!r}" for key in sorted(values, key=str))
