"""What a pipeline file can declare, read from the classes themselves.

Every repository and task kind is a pdtnb class, and its arguments in a file are its
constructor's parameters, with the same names: a user who knows the Python API knows the file,
and the JSON Schema (:func:`pipeline_schema`) is generated from the signatures here, so the two
cannot drift (a test regenerates it and compares it with the shipped ``pipeline.schema.json``).
A parameter's annotation says what a file gives for it: a ``Repository`` is the name of a
declared repository, a ``Callable[[], ...]`` the name of a session resource, a
``ResourceManager`` the name of a quota, a ``Path`` a path relative to the file, any other
callable an import path ``package.module:name``.

Session resources (clients, connections, process managers) are not classes with plain
arguments, so their kinds are the small factories in :mod:`pdtnb.declarative.resources`, each
described by its own signature the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["VARIABLE", "Param", "Kind", "REPOSITORY_KINDS", "TASK_KINDS", "IMPORT_PATH", "params_of", "param_for"]

#: ``package.module:name`` (dots allowed in both parts).
IMPORT_PATH = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"

#: A whole-string ``${NAME}`` (or ``${NAME:-default}``): what a number or boolean may be written as.
VARIABLE = r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$"

#: References between sections: what a name in a parameter must name.
REPOSITORIES, RESOURCES, QUOTAS = "repositories", "resources", "quotas"


@dataclass(frozen=True)
class Param:
    """One declarable argument."""

    name: str
    schema: dict[str, Any]
    required: bool = False
    ref: str | None = None  # the section a name given here must be declared in
    path: bool = False  # a path, relative to the pipeline file
    imported: bool = False  # an import path resolved to the object
    many_refs: bool = False  # a mapping of names to references (``**children``)
    convert: str | None = None  # "resources" | "retry" | "executor" | "seconds" | "hooks"


@dataclass(frozen=True)
class Kind:
    """A declarable kind: what ``kind:`` names, and how its arguments are read."""

    name: str
    target: Callable[..., Any] | str  # the class, or "module:Class" imported when used
    params: dict[str, Param]
    doc: str = ""
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # properties beside the parameters


def _schema_or_null(schema: dict[str, Any], optional: bool) -> dict[str, Any]:
    if not optional:
        return schema
    if "type" in schema and isinstance(schema["type"], str) and len(schema) == 1:
        return {"type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def param_for(name: str, annotation: Any, default: Any, kind: inspect._ParameterKind) -> Param:
    """The :class:`Param` of one constructor parameter, from its annotation (a string, as this
    project's modules use ``from __future__ import annotations``)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    text = text.replace("typing.", "")
    required = default is inspect.Parameter.empty
    optional = default is None or "None" in [part.strip() for part in text.split("|")]
    if name == "hooks":  # pdtnb.hooks: import paths of hook objects
        schema = {
            "type": "array",
            "items": {"type": "string", "pattern": IMPORT_PATH},
            "description": "import paths (module:name) of hook objects (docs/hooks.md)",
        }
        return Param(name, schema, False, convert="hooks")
    if kind is inspect.Parameter.VAR_KEYWORD and "Repository" in text:
        return Param(
            name,
            {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1},
            required=True,
            ref=REPOSITORIES,
            many_refs=True,
        )
    if "Repository" in text and "Callable" not in text:
        return Param(name, _schema_or_null({"type": "string"}, optional), required, ref=REPOSITORIES)
    if "Client" in text and "str" in text:  # DaskTask's client_or_address: a scheduler's address
        return Param(
            name, {"type": "string", "description": "the Dask scheduler's address, e.g. tcp://host:8786"}, required
        )
    if text.startswith("Callable[[], "):
        return Param(name, _schema_or_null({"type": "string"}, optional), required, ref=RESOURCES)
    if text.startswith("Callable"):
        return Param(
            name, _schema_or_null({"type": "string", "pattern": IMPORT_PATH}, optional), required, imported=True
        )
    if text.startswith("ResourceManager"):
        return Param(name, _schema_or_null({"type": "string"}, optional), required, ref=QUOTAS)
    if text.startswith("Resources"):
        return Param(name, {"$ref": "#/$defs/resources"}, required, convert="resources")
    if text.startswith("Retry"):
        return Param(name, _schema_or_null({"$ref": "#/$defs/retry"}, optional), required, convert="retry")
    if text.startswith("Executor"):
        return Param(name, {"$ref": "#/$defs/executor"}, required, convert="executor")
    if "timedelta" in text:
        return Param(name, _schema_or_null({"type": "number", "minimum": 0}, optional), required, convert="seconds")
    return _plain_param(name, text, required, optional)


def _plain_param(name: str, text: str, required: bool, optional: bool) -> Param:
    """The :class:`Param` of a parameter that takes a plain value (a path, a mapping, a string,
    a number, a boolean) or anything (``Any``), from its annotation's text."""
    if ("PathLike" in text or "Path" in text) and "PurePosixPath" not in text and name != "template":
        return Param(name, _schema_or_null({"type": "string"}, optional), required, path=True)
    first = text.split("|")[0].strip()
    if first.startswith("dict"):
        return Param(name, _schema_or_null({"type": "object"}, optional), required)
    simple = {"bool": "boolean", "int": "integer", "float": "number", "str": "string"}
    if first in simple:
        if first == "str":
            return Param(name, _schema_or_null({"type": "string"}, optional), required)
        # A number or a boolean, or one whole ${NAME} giving it (read as one after interpolation).
        types = [simple[first], "string"] + (["null"] if optional else [])
        return Param(name, {"type": types, "pattern": VARIABLE}, required)
    return Param(name, {}, required)  # Any: whatever the file gives, unchanged


def params_of(target: Callable[..., Any], skip: tuple[str, ...] = ()) -> dict[str, Param]:
    """The declarable parameters of a class's ``__init__`` (or a function), ``skip`` left out.
    A constructor taking ``*args, **kwargs`` to pass on (``DirectoryRepository``) has its base
    class's parameters as well."""
    func = target.__init__ if inspect.isclass(target) else target
    signature = inspect.signature(func)
    params: dict[str, Param] = {}
    passes_on = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values())
    if passes_on and inspect.isclass(target):
        for base in target.__mro__[1:]:
            if "__init__" in vars(base):
                params.update(params_of(base, skip))
                break
    for p in signature.parameters.values():
        if p.name in ("self", *skip) or p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD and "Repository" not in str(p.annotation):
            continue
        params[p.name] = param_for(p.name, p.annotation, p.default, p.kind)
    return params


def _repository_kinds() -> dict[str, Kind]:
    from .. import repository as r

    classes: list[Any] = [
        r.FileRepository,
        r.DirectoryRepository,
        r.YamlMetadataFileRepository,
        r.InProcessMetadataRepository,
        r.InProcessBlobRepository,
        r.AggregateAndRepository,
        r.AggregateOrRepository,
        r.BlockingRepository,
        r.MapRepository,
        r.RelatedItemRepository,
    ]
    kinds = {cls.__name__: Kind(cls.__name__, cls, params_of(cls), _first_line(cls)) for cls in classes}
    optional = {
        "S3BucketRepository": "pdtnb.repository.s3:S3BucketRepository",
        "YamlMetadataS3Repository": "pdtnb.repository.s3:YamlMetadataS3Repository",
        "MongoMetadataRepository": "pdtnb.repository.mongo:MongoMetadataRepository",
        "DockerRepository": "pdtnb.repository.docker:DockerRepository",
    }
    for name, where in optional.items():
        cls = _import_optional(where)
        if cls is not None:
            kinds[name] = Kind(name, cls, params_of(cls), _first_line(cls))
        else:  # the extra is missing: declarable, refused when built
            kinds[name] = Kind(name, where, {}, "(needs its extra)")
    return kinds


_TASK_SKIP = ("name",)


def _task_kinds() -> dict[str, Kind]:
    from ..task import ExecutorTask, InProcessSyncTask, ProcessTask

    template_extra = {"template_file": {"type": "string", "description": "the template's path, relative to this file"}}
    kinds = {
        "in-process": Kind(
            "in-process", InProcessSyncTask, params_of(InProcessSyncTask, _TASK_SKIP), _first_line(InProcessSyncTask)
        ),
        "executor": Kind("executor", ExecutorTask, params_of(ExecutorTask, _TASK_SKIP), _first_line(ExecutorTask)),
        "process": Kind(
            "process", ProcessTask, params_of(ProcessTask, _TASK_SKIP), _first_line(ProcessTask), dict(template_extra)
        ),
    }
    kube = {"kube": "pdtnb.task.kube:KubeTask", "kube-function": "pdtnb.task.kube:KubeFunctionTask"}
    for name, where in kube.items():
        cls = _import_optional(where)
        if cls is not None:
            kinds[name] = Kind(name, cls, params_of(cls, _TASK_SKIP), _first_line(cls), dict(template_extra))
        else:
            kinds[name] = Kind(name, where, {}, "(needs the kube extra)", dict(template_extra))
    dask = _import_optional("pdtnb.task.dask:DaskTask")
    if dask is not None:
        kinds["dask"] = Kind("dask", dask, params_of(dask, _TASK_SKIP), _first_line(dask))
    else:
        kinds["dask"] = Kind("dask", "pdtnb.task.dask:DaskTask", {}, "(needs the dask extra)")
    return kinds


def _import_optional(where: str) -> Any:
    import importlib

    module, _, name = where.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        return None


def resource_kind(name: str) -> Kind:
    """The resource kind ``name`` (a key of :data:`~pdtnb.declarative.resources.RESOURCE_KINDS`):
    its factory's parameters, and for ``python`` the two the factory's signature cannot say (an
    import path resolved to the generator function, and the mapping passed to it). The schema and
    the checks both read it here, so what the schema allows is what is checked and built."""
    from .resources import RESOURCE_KINDS

    factory = RESOURCE_KINDS[name]
    params = params_of(factory)
    if name == "python":
        params["factory"] = Param("factory", {"type": "string", "pattern": IMPORT_PATH}, True, imported=True)
        params["args"] = Param("args", {"type": "object"}, False)
    return Kind(name, factory, params, (factory.__doc__ or "").split("\n\n")[0].strip())


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


REPOSITORY_KINDS: dict[str, Kind] = {}
TASK_KINDS: dict[str, Kind] = {}


def load_kinds() -> None:
    """Fill :data:`REPOSITORY_KINDS` and :data:`TASK_KINDS` (once; the optional back ends are
    imported if their extras are installed)."""
    if not REPOSITORY_KINDS:
        REPOSITORY_KINDS.update(_repository_kinds())
        TASK_KINDS.update(_task_kinds())
