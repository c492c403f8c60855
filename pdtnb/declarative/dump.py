"""From a Python-defined :class:`~pdtnb.Pipeline` to a pipeline file: :func:`dump`.

Why it reads constructor arguments rather than attributes: every repository and task keeps the
arguments it was built with (``constructed_with``), and a file's keys are those arguments, so a
class whose attributes are named differently (or kept privately) dumps the same way; a new
constructor parameter needs nothing here. Plugged links are written as ``plug:`` (``Task.plugs``
records each call), not as the links the plug made.

What a file cannot hold is refused, naming the task, repository or resource and why: a body
that is a closure, a lambda or defined in ``__main__`` (a file names functions by import path),
an in-memory repository holding data (a file starts it empty), an executor other than a thread
or process pool. Secrets never reach the file: a resource argument whose name says it is one
(password, secret, token, key) is written as ``${RESOURCE_ARGUMENT}``, to be set in the
environment. A pipeline loaded from a file dumps its ``${NAME}`` variables as written (the
endpoint, bucket or directory of this machine's environment is not frozen into the file).
"""

from __future__ import annotations

import importlib
import inspect
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import yaml

from .kinds import REPOSITORY_KINDS, TASK_KINDS, Kind, Param, load_kinds, params_of
from .schema import LINK_KINDS
from .source import Dumper

if TYPE_CHECKING:
    from ..pipeline import Pipeline

__all__ = ["dump", "to_document", "NotDeclarableError"]

_SECRET_WORDS = ("password", "secret", "token", "key")
_FLAG_KIND = {flag: kind for kind, flag in LINK_KINDS.items()}
_BY_TYPE = object()  # what _Dumper.by_param returns for a value its parameter says nothing of


class NotDeclarableError(ValueError):
    """Part of a pipeline cannot be written in a pipeline file (the message says which and why)."""


def _hook_paths(hooks: Any, what: str) -> list[str]:
    """``module:name`` of each hook object: a module-level object of the module of its class (or
    a function or class); a hook made inside a script or a function cannot be named."""
    import sys

    out = []
    for hook in hooks:
        if inspect.isfunction(hook) or inspect.isclass(hook):
            out.append(_import_path(hook, what))
            continue
        module_name = type(hook).__module__
        module = sys.modules.get(module_name)
        found = (
            None
            if module is None or module_name == "__main__"
            else next((name for name, value in vars(module).items() if value is hook), None)
        )
        if found is None:
            raise NotDeclarableError(
                f"{what}: hook {hook!r} is not a module-level object of {module_name}; a pipeline file names "
                "hooks by import path (module:name)"
            )
        out.append(f"{module_name}:{found}")
    return out


def _import_path(obj: Any, what: str) -> str:
    """``module:qualname`` for a function or class that can be imported back."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if module is None or qualname is None:
        raise NotDeclarableError(f"{what}: {obj!r} has no import path")
    if "<lambda>" in qualname:
        raise NotDeclarableError(f"{what}: {qualname} is a lambda; a pipeline file names functions by import path")
    if "<locals>" in qualname:
        raise NotDeclarableError(
            f"{what}: {qualname} is a closure (defined inside a function); move it to module level"
        )
    if module == "__main__":
        raise NotDeclarableError(
            f"{what}: {qualname} is defined in the script itself (__main__); move it into a module"
        )
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        raise NotDeclarableError(f"{what}: {module}:{qualname} cannot be imported back") from None
    if found is not obj:
        raise NotDeclarableError(
            f"{what}: {module}:{qualname} names another object (the function is shadowed, e.g. "
            "by a task decorated with it); give it a name of its own"
        )
    return f"{module}:{qualname}"


class _Dumper:
    def __init__(self, pipeline: Pipeline, base: Path | None):
        load_kinds()
        self.pipeline = pipeline
        self.base = base
        self.repos: dict[int, str] = {}
        self.repo_docs: dict[str, Any] = {}
        self.resources: dict[str, Any] = {}
        self.quotas: dict[int, str] = {}
        self.quota_docs: dict[str, Any] = {}
        self.getters: dict[str, str] = {}

    # ---- values ------------------------------------------------------------------------------

    def path(self, value: Any) -> str:
        path = Path(os.fspath(value)).expanduser()
        if self.base is not None:
            absolute = Path(os.path.normpath(path if path.is_absolute() else Path.cwd() / path))
            # Relative to the file when it lies beside or below it (the pair moves together),
            # else absolute.
            return str(absolute.relative_to(self.base)) if absolute.is_relative_to(self.base) else str(absolute)
        return str(path)

    def value(self, kind: Kind, name: str, value: Any, what: str) -> Any:
        """How the file writes ``value``, given for ``kind``'s parameter ``name``: first as the
        parameter says (references, hooks, an executor, a path), else by the value's type."""
        if value is None:
            return None
        param = kind.params.get(name)
        if param is not None:
            written = self.by_param(param, value, f"{what}.{name}")
            if written is not _BY_TYPE:
                return written
        return self.by_type(value, what, name)

    def by_param(self, param: Param, value: Any, what: str) -> Any:
        """``value`` written as ``param`` says, or ``_BY_TYPE`` when it says nothing of it."""
        if param.many_refs:
            return {child: self.repo(repo, f"{what}.{child}") for child, repo in value.items()}
        if param.convert == "hooks":
            return _hook_paths(value, what) or None
        if param.convert == "executor":
            if hasattr(value, "declared_executor"):  # a pool a loaded file declared (a session resource)
                return dict(value.declared_executor)
            if isinstance(value, (ThreadPoolExecutor, ProcessPoolExecutor)):
                kind_name = "threads" if isinstance(value, ThreadPoolExecutor) else "processes"
                # the stdlib keeps it so (ProcessPoolExecutor's is missing from typeshed)
                return {"kind": kind_name, "max_workers": value._max_workers}  # type: ignore[union-attr]
            raise NotDeclarableError(f"{what}: the executor {type(value).__name__} cannot be declared")
        if param.ref == "resources":
            return self.resource_name(value, what)
        if param.path:
            return self.path(value)
        return _BY_TYPE

    def by_type(self, value: Any, what: str, name: str) -> Any:
        """``value`` written by its type: a repository by its name, a quota, quantities, a retry
        policy, seconds, a path, an import path, or a plain value."""
        from ..repository import Repository
        from ..resources import ResourceManager, Resources
        from ..retry import Retry

        if isinstance(value, Repository):
            return self.repo(value, f"{what}.{name}")
        if isinstance(value, ResourceManager):
            return self.quota(value)
        if isinstance(value, Resources):
            return _resources(value)
        if isinstance(value, Retry):
            return self.retry(value, what)
        if isinstance(value, timedelta):
            return value.total_seconds()
        if isinstance(value, Executor):
            raise NotDeclarableError(f"{what}: the executor {type(value).__name__} cannot be declared")
        if isinstance(value, PurePath):
            return self.path(value)
        if callable(value):
            return _import_path(value, f"{what}.{name}")
        if isinstance(value, (str, int, float, bool)):
            return value
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return list(value)
        raise NotDeclarableError(f"{what}.{name}: {type(value).__name__} values cannot be declared")

    def retry(self, retry: Any, what: str) -> dict[str, Any]:
        on = []
        for item in retry.on:
            if isinstance(item, type):
                on.append(item.__name__ if item.__module__ == "builtins" else _import_path(item, f"{what}.retry.on"))
            else:
                on.append(item)
        return {
            "attempts": retry.attempts,
            "delay": retry.delay,
            "backoff": retry.backoff,
            "max_delay": retry.max_delay,
            "jitter": retry.jitter,
            "on": on,
        }

    def quota(self, manager: Any) -> str:
        if id(manager) not in self.quotas:
            name = f"quota{len(self.quotas) + 1}" if self.quotas else "quota"
            self.quotas[id(manager)] = name
            self.quota_docs[name] = _resources(manager.quota)
        return self.quotas[id(manager)]

    # ---- resources ---------------------------------------------------------------------------

    def resource_name(self, getter: Any, what: str) -> str:
        name = getattr(getter, "__name__", None)
        definitions = self.pipeline.session.definitions()
        if not isinstance(name, str) or name not in definitions:
            raise NotDeclarableError(f"{what}: {getter!r} is not a resource of the pipeline's session")
        if name not in self.resources:
            self.resources[name] = self.resource(name, definitions[name])
        return name

    def resource(self, name: str, factory: Any) -> dict[str, Any]:
        declared = getattr(factory, "declared", None)
        if declared is not None:  # built from a file (build.py records the kind and arguments)
            kind, args = declared[0], dict(declared[1])
            variables = getattr(factory, "declared_variables", {})
            doc: dict[str, Any] = {"kind": kind}
            for key, value in args.items():
                if key in variables:  # as the file wrote it, ${NAME} kept
                    doc[key] = variables[key]
                elif any(word in key for word in _SECRET_WORDS) and value is not None:
                    doc[key] = "${" + f"{name}_{key}".upper().replace("-", "_") + "}"
                elif callable(value):
                    doc[key] = (
                        self.resource_name(value, f"resource {name}.{key}")
                        if key != "factory"
                        else _import_path(value, f"resource {name}.factory")
                    )
                else:
                    doc[key] = value
            return doc
        return {"kind": "python", "factory": _import_path(factory, f"resource {name}")}

    # ---- repositories ------------------------------------------------------------------------

    def repo(self, repo: Any, what: str, name: str | None = None) -> str:
        if id(repo) in self.repos:
            return self.repos[id(repo)]
        cls = type(repo)
        kind_name = next((k for k, kind in REPOSITORY_KINDS.items() if kind.target is cls), None)
        from ..repository import RelatedItemRepository

        if kind_name is None and isinstance(repo, RelatedItemRepository):
            kind_name = "RelatedItemRepository"
        if kind_name is None:
            kind = Kind(_import_path(cls, what), cls, params_of(cls))
        else:
            kind = REPOSITORY_KINDS[kind_name]
        name = self.unique(getattr(repo, "declared_as", None) or name or what.rsplit(".", 1)[-1])
        self.repos[id(repo)] = name
        args = self.arguments(kind, repo, f"repository {name}")
        declared_data = getattr(repo, "declared_data", None)
        if declared_data is not None:  # loaded from a file: the data it declared, not what a run added
            args["data"] = declared_data
        elif kind.name in ("InProcessMetadataRepository", "InProcessBlobRepository") and args.get("data"):
            raise NotDeclarableError(
                f"repository {name}: an in-memory repository holding data cannot be declared "
                "(its data lives in this process); keep the data in files, S3 or MongoDB"
            )
        else:
            args.pop("data", None)
        self.repo_docs[name] = {"kind": kind.name, **args}
        return name

    def unique(self, name: str) -> str:
        name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name) or "repo"
        if not (name[0].isalpha() or name[0] == "_"):
            name = f"r_{name}"
        candidate, i = name, 2
        while candidate in self.repo_docs or candidate in self.repos.values():
            candidate, i = f"{name}{i}", i + 1
        return candidate

    def arguments(self, kind: Kind, obj: Any, what: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        args, kwargs = getattr(obj, "constructed_with", ((), {}))
        target = kind.target
        # a class's own __init__ (mypy calls reaching it through the class unsound); a str target is
        # an import path resolved before this
        signature = inspect.signature(target.__init__ if isinstance(target, type) else target)  # type: ignore[misc,arg-type]
        try:
            bound = signature.bind(None, *args, **kwargs)
        except TypeError as e:
            raise NotDeclarableError(f"{what}: its constructor arguments cannot be read back: {e}") from None
        out: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            parameter = signature.parameters[name]
            if name in ("self", *skip):
                continue
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                if name in kind.params:  # **children
                    out[name] = self.value(kind, name, value, what)
                else:
                    out.update({k: self.value(kind, k, v, what) for k, v in value.items()})
                continue
            if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                base = [p for p in kind.params if p not in signature.parameters]
                for key, item in zip(base, value):
                    out[key] = self.value(kind, key, item, what)
                continue
            if parameter.default is not inspect.Parameter.empty and value is parameter.default:
                continue
            out[name] = self.value(kind, name, value, what)
        # What a loaded file wrote with ${NAME} is written back so (the values above are this
        # environment's).
        for name, written in getattr(obj, "declared_variables", {}).items():
            if name in out:
                out[name] = written
        return out

    # ---- tasks -------------------------------------------------------------------------------

    def task(self, task: Any) -> dict[str, Any]:
        kind_name = next((k for k, kind in TASK_KINDS.items() if kind.target is type(task)), None)
        if kind_name is None:
            raise NotDeclarableError(
                f"task {task.name}: {type(task).__name__} is not a declarable task kind "
                f"({', '.join(sorted(TASK_KINDS))})"
            )
        kind = TASK_KINDS[kind_name]
        what = f"task {task.name}"
        # Name the done repository and the links' repositories after the links, first.
        plugged = {name for _, _, made in task.plugs for name in made}
        for link_name, link in task.links.items():
            if link_name == "live":
                continue  # the task makes its own (a view of its running jobs), never declared
            if link_name not in plugged and id(link.repo) not in self.repos:
                own = link_name in ("done", "pids", "stdout", "stderr", "logs")
                self.repo(link.repo, f"{what}.{link_name}", name=f"{task.name}.{link_name}" if own else link_name)
        doc: dict[str, Any] = {"kind": kind_name}
        doc.update(self.arguments(kind, task, what, skip=("name",)))
        func = getattr(task, "func", None)
        if "func" in kind.params and func is not None and "func" not in doc:
            doc["func"] = _import_path(func, f"{what}.func")
        links: dict[str, Any] = {}
        implicit = {"done", "live"} | {p for p in kind.params if p in task.links}
        for link_name, link in task.links.items():
            if link_name in plugged or link_name in implicit:
                continue
            links[link_name] = {"repo": self.repos[id(link.repo)], **_link_flags(link)}
        if links:
            doc["links"] = links
        plugs = []
        for upstream, options, _ in task.plugs:
            entry: dict[str, Any] = {"task": upstream}
            defaults = {
                "output_links": None,
                "meta": True,
                "translator": None,
                "translate_allow_deletes": False,
                "translate_prefetch_lookup": True,
                "require_success": True,
            }
            for key, value in options.items():
                if value != defaults[key]:
                    entry[key] = self.repo(value, f"{what}.plug.translator") if key == "translator" else value
            plugs.append(entry["task"] if len(entry) == 1 else entry)
        if plugs:
            doc["plug"] = plugs[0] if len(plugs) == 1 else plugs
        return doc

    def document(self) -> dict[str, Any]:
        tasks = {name: self.task(task) for name, task in self.pipeline.tasks.items()}
        from .build import TaskPriorities

        priority = getattr(self.pipeline, "priority", None)
        for manager in getattr(self.pipeline, "resources", []) or []:
            self.quota(manager)
        doc: dict[str, Any] = {"version": 1}
        options: dict[str, Any] = {}
        if isinstance(priority, TaskPriorities):
            for name, value in priority.table.items():
                tasks[name]["priority"] = value
        elif priority is not None:
            options["priority"] = _import_path(priority, "pipeline.priority")
        if getattr(self.pipeline, "hooks", None):
            options["hooks"] = _hook_paths(self.pipeline.hooks, "pipeline.hooks")
        if options:
            doc["pipeline"] = options
        if self.resources:
            doc["resources"] = self.resources
        if self.repo_docs:
            doc["repositories"] = self.repo_docs
        if self.quota_docs:
            doc["quotas"] = self.quota_docs
        doc["tasks"] = tasks
        return doc


def _link_flags(link: Any) -> dict[str, Any]:
    kinds = []
    flags: dict[str, Any] = {}
    if link.is_input:
        kinds.append("input")
    if link.is_output:
        kinds.append("output")
    if link.is_status:
        kinds.append("status")
    if link.inhibits_start:
        kinds.append("inhibits")
    if link.inhibits_output:
        kinds.append("inhibits_output")
    # required_for_start defaults to is_input and required_for_output to is_output
    if link.required_for_start != link.is_input:
        flags["required_for_start"] = link.required_for_start
    if link.required_for_output != link.is_output:
        flags["required_for_output"] = link.required_for_output
    if link.require_success:  # False is what the pipeline resolves an unset flag to, off done links
        flags["require_success"] = True
    out: dict[str, Any] = {}
    if kinds:
        out["kind"] = kinds[0] if len(kinds) == 1 else kinds
    out.update(flags)
    return out


def _resources(resources: Any) -> dict[str, Any]:
    def number(value: Decimal) -> Any:
        return int(value) if value == value.to_integral_value() else float(value)

    out = {"cpu": number(resources.cpu), "mem": number(resources.mem)}
    if getattr(resources, "launches", None) is not None:
        out["launches"] = resources.launches
    return out


def to_document(pipeline: Pipeline, base: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The pipeline file's content for ``pipeline``, as a dict (paths relative to ``base``, a
    directory, when given). Raises :class:`NotDeclarableError` naming what cannot be declared."""
    return _Dumper(pipeline, Path(base).resolve() if base is not None else None).document()


def dump(pipeline: Pipeline, path: str | os.PathLike[str] | None = None) -> str:
    """``pipeline`` as a pipeline file (YAML): written to ``path`` when given (paths in it made
    relative to that file's directory), and returned as text. Raises
    :class:`NotDeclarableError` naming the task, repository or resource that a file cannot hold
    (a closure, a lambda, a function in ``__main__``, an in-memory repository holding data)."""
    base = Path(path).resolve().parent if path is not None else None
    document = to_document(pipeline, base)
    # source.Dumper quotes what YAML 1.1 and 1.2 would read differently ("1e3", "0o17", "on").
    text = "# A pdtnb pipeline file (docs/declarative.md), written by pdtnb.dump.\n" + yaml.dump(
        document, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    if path is not None:
        from ..repository.filesystem import atomic_write_bytes

        atomic_write_bytes(Path(path), text.encode("utf-8"))
    return text
