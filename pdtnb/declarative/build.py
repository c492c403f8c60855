"""From a pipeline file to a :class:`~pdtnb.Pipeline`: read (:mod:`.document`), check everything
(:mod:`.checks`), and only then build (here).

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

import copy
import os
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checks import check, import_object, import_paths, kind_of, link_flags, plugs, retry_policy
from .document import Document, Entry
from .kinds import QUOTAS, RESOURCES, Kind, Param
from .resources import LOCAL_PATHS, RESOURCE_KINDS, resolve_path
from .source import DeclarationError, Where

if TYPE_CHECKING:
    from ..pipeline import Pipeline

__all__ = ["build", "load", "TaskPriorities"]


#: The keys of a declaration that are not its constructor's arguments (taken apart by the builder).
_NOT_ARGUMENTS = frozenset(("kind", "links", "plug", "priority", "template_file"))


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
            if key in _NOT_ARGUMENTS:
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
        """The object a constructor gets for the value a file gives (a name becomes the declared
        object, an import path the imported one, a path one relative to the file, ...)."""
        if given is None:
            return None
        if param.many_refs or param.ref is not None:
            return self.referenced(param, given)
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
            return retry_policy(given, entry, entry.where(param.name))
        if param.convert == "hooks":
            return [
                import_object(spec, entry.where(param.name, i), f"{entry.label}: hook")
                for i, spec in enumerate(given or [])
            ]
        if param.convert == "seconds":
            return timedelta(seconds=given) if param.name == "window" else float(given)
        if param.convert == "executor":
            return self.executor(entry, given)
        return given

    def referenced(self, param: Param, given: Any) -> Any:
        """What a name given for ``param`` names: a declared repository (or a mapping of them),
        a session resource's getter, a quota; ``stderr: STDOUT`` is the stdout stream."""
        if param.many_refs:
            return {child: self.repo(name) for child, name in given.items()}
        if param.ref == RESOURCES:
            return self.resource(given)
        if param.ref == QUOTAS:
            return self.quotas[given]
        if param.name == "stderr" and given == "STDOUT":
            from ..task import STDOUT

            return STDOUT
        return self.repo(given)

    def executor(self, entry: Entry, given: dict[str, Any]) -> Callable[[], Any]:
        """A task's ``executor:`` as a session resource: the pool starts when the pipeline opens
        and is shut down when it closes (queued bodies cancelled, running ones left to finish),
        so a notebook that loads or reopens a pipeline many times leaves no pool behind."""
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

        cls = ThreadPoolExecutor if given["kind"] == "threads" else ProcessPoolExecutor
        max_workers = given.get("max_workers")

        async def pool() -> AsyncGenerator[Any, None]:
            executor = cls(max_workers=max_workers)
            try:
                yield executor
            finally:
                executor.shutdown(wait=False, cancel_futures=True)

        pool.__name__ = pool.__qualname__ = f"{entry.name}.executor"
        getter = self.session.resource(pool)
        getter.declared_executor = dict(given)  # type: ignore[attr-defined]  # for pdtnb.dump
        return getter

    def resource(self, name: str) -> Callable[[], Any]:
        if name not in self.getters:
            entry = self.document.entries["resources"][name]
            kind = kind_of(entry)
            args = self.arguments(entry, kind)
            factory = RESOURCE_KINDS[entry.value["kind"]]

            def open_resource(factory: Any = factory, args: dict[str, Any] = args) -> Any:
                return factory(**args)

            open_resource.__name__ = open_resource.__qualname__ = name
            # What the file declared, for pdtnb.dump: the kind and the arguments as built, and
            # the arguments that hold ${NAME} as written.
            open_resource.declared = (entry.value["kind"], args)  # type: ignore[attr-defined]
            open_resource.declared_variables = _variables(entry)  # type: ignore[attr-defined]
            self.getters[name] = self.session.resource(open_resource)
        return self.getters[name]

    def repo(self, name: str) -> Any:
        if name not in self.repos:
            entry = self.document.entries["repositories"][name]
            self.repos[name] = self.construct(entry, kind_of(entry))
            self.repos[name].declared_as = name  # pdtnb.dump writes it under the same name
        return self.repos[name]

    def construct(self, entry: Entry, kind: Kind, *positional: Any) -> Any:
        children = next((p for p in kind.params.values() if p.many_refs), None)
        try:
            args = self.arguments(entry, kind)
            if children is not None:
                built = kind.target(*positional, **args.pop(children.name), **args)  # type: ignore[operator]
            else:
                built = kind.target(*positional, **args)  # type: ignore[operator]
        except DeclarationError:
            raise
        except Exception as e:
            raise DeclarationError(f"{entry.label}: {e}", entry.where()) from None
        variables = _variables(entry)
        if variables:
            built.declared_variables = variables  # pdtnb.dump writes these as the file wrote them
        if entry.section == "repositories" and entry.value.get("data"):
            # an in-memory repository's data as declared (a run adds to the same mapping)
            built.declared_data = copy.deepcopy(entry.value["data"])
        return built

    def build(self) -> Pipeline:
        from ..resources import ResourceManager, Resources

        document = self.document
        for name in document.entries["resources"]:
            self.resource(name)
        for name, entry in document.entries["quotas"].items():
            self.quotas[name] = ResourceManager(Resources.parse(**entry.value))
        for name in document.entries["repositories"]:
            self.repo(name)
        for name, entry in document.entries["tasks"].items():
            self.tasks[name] = self.task(name, entry)
        for name, entry in document.entries["tasks"].items():
            self.plug(self.tasks[name], entry)
        for name, entry in document.entries["tasks"].items():
            _check_built_task(entry, self.tasks[name])
        return self.pipeline()

    def task(self, name: str, entry: Entry) -> Any:
        """The task ``name`` with its links (plugs come once every task exists)."""
        task = self.construct(entry, kind_of(entry), name)
        for link, spec in (entry.value.get("links") or {}).items():
            try:
                task.link(link, self.repo(spec["repo"]), **link_flags(spec))
            except Exception as e:
                raise DeclarationError(f"{entry.label}: link {link}: {e}", entry.where("links", link)) from None
        return task

    def plug(self, task: Any, entry: Entry) -> None:
        """``task``'s ``plug:`` relations, each named at its declaration when refused."""
        for plug in plugs(entry.value):
            options = {k: v for k, v in plug.items() if k != "task"}
            if options.get("translator") is not None:
                options["translator"] = self.repo(options["translator"])
            try:
                task.plug(self.tasks[plug["task"]], **options)
            except Exception as e:
                raise DeclarationError(f"{entry.label}: plug {plug['task']}: {e}", entry.where("plug")) from None

    def pipeline(self) -> Pipeline:
        """The pipeline of the built tasks, with the file's ``pipeline:`` options and priorities."""
        from ..pipeline import Pipeline

        document = self.document
        options = dict(document.options)
        priorities = {
            name: e.value["priority"] for name, e in document.entries["tasks"].items() if "priority" in e.value
        }
        if options.get("priority") is not None:
            options["priority"] = import_object(options["priority"], Where(str(document.path), 1, 1), "priority")
        elif priorities:
            options["priority"] = TaskPriorities(priorities)
        if options.get("hooks"):
            at = Where(str(document.path), 1, 1)
            options["hooks"] = [import_object(spec, at, "pipeline: hook") for spec in options["hooks"]]
        try:
            pipeline = Pipeline(list(self.tasks.values()), self.session, list(self.quotas.values()), **options)
        except Exception as e:
            raise DeclarationError(f"pipeline: {e}", Where(str(document.path), 1, 1)) from None
        pipeline.declared_in = document.path
        return pipeline


def _variables(entry: Entry) -> dict[str, Any]:
    """The arguments of ``entry`` that hold a ``${NAME}``, as the file writes them (see
    :meth:`Entry.variables`): a dump of a loaded file keeps its variables, so neither an
    endpoint nor a path of this machine's environment is frozen into it."""
    return {name: written for name, written in entry.variables().items() if name not in _NOT_ARGUMENTS}


def _check_built_task(entry: Entry, task: Any) -> None:
    """What the pipeline would refuse when it opens, found before anything is opened: a task that
    could never have a ready job, a body whose parameters are not the task's links."""
    from ..errors import TaskConfigError

    if task.ready_is_derived and not task.required_for_start:
        raise DeclarationError(
            f"{entry.label} has no input: give a link of kind input or required, a plug, "
            f"or ready: REPOSITORY (its links: {', '.join(task.links)})",
            entry.source.where_key(entry.key),
        )
    binding = getattr(task, "binding", None)
    if binding is not None and binding.func is None:
        raise DeclarationError(
            f"{entry.label}: func is required (its body, package.module:function)", entry.source.where_key(entry.key)
        )
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


def build(document: Document) -> Pipeline:
    """The :class:`~pdtnb.Pipeline` of a checked document: its objects constructed, nothing
    opened (no connection, file or directory), and the checks the pipeline would make when it
    opens made now (each task has an input; a body's parameters are its task's links)."""
    with import_paths(document.import_paths):
        return _Builder(document).build()


def load(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Pipeline:
    """The :class:`~pdtnb.Pipeline` the file ``path`` declares (YAML, TOML or JSON, by
    extension), checked completely first (see :func:`check`, then :func:`build`). Nothing is
    opened: open it as any pipeline (``async with pipeline``, ``pdtnb.main``, ``%pdt``)."""
    return build(check(path, environ))
