"""The JSON Schema of pipeline files, generated from the classes they configure.

:func:`pipeline_schema` builds it from :mod:`pdtnb.declarative.kinds` (repository and task
constructors) and :mod:`pdtnb.declarative.resources` (session resource factories); the copy
shipped as ``pdtnb/declarative/pipeline.schema.json`` is what editors read (``#
yaml-language-server: $schema=...``), and a test checks it equals a fresh generation, so a new
constructor parameter cannot be left out of either. ``python -m pdtnb schema`` prints it.

The schema checks the shape of a file; what it cannot say (a name that must be declared
elsewhere, a cycle, an import path that must import, a template that must compile) is checked
by :mod:`pdtnb.declarative.checks` before anything is built.
"""

from __future__ import annotations

import json
from importlib import resources as importlib_resources
from typing import Any

from .kinds import IMPORT_PATH, REPOSITORY_KINDS, TASK_KINDS, Kind, load_kinds, params_of, resource_kind
from .resources import RESOURCE_KINDS

__all__ = ["pipeline_schema", "shipped_schema", "SCHEMA_FILE", "LINK_KINDS", "ID", "NAME_PATTERN"]

SCHEMA_FILE = "pipeline.schema.json"
ID = "https://pdtnb.readthedocs.io/schema/pipeline.schema.json"

#: Named link kinds and the ``Task.link`` flag each sets.
LINK_KINDS = {
    "input": "is_input",
    "output": "is_output",
    "status": "is_status",
    "required": "required_for_start",
    "inhibits": "inhibits_start",
    "required_for_output": "required_for_output",
    "inhibits_output": "inhibits_output",
}

#: What a declared name (a resource, repository, quota, task or link) may be.
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
_NAME = {"type": "string", "pattern": NAME_PATTERN}


def _kind_branch(kind: Kind, common: dict[str, Any], extra_required: tuple[str, ...] = ()) -> dict[str, Any]:
    properties: dict[str, Any] = {"kind": {"const": kind.name}, **common}
    for param in kind.params.values():
        properties[param.name] = dict(param.schema)
    properties.update(kind.extra)
    required = [p.name for p in kind.params.values() if p.required]
    branch: dict[str, Any] = {
        "if": {"properties": {"kind": {"const": kind.name}}, "required": ["kind"]},
        "then": {"properties": properties, "additionalProperties": False},
    }
    if "template_file" in kind.extra and "template" in kind.params:
        required = [r for r in required if r != "template"]
        branch["then"]["oneOf"] = [{"required": ["template"]}, {"required": ["template_file"]}]
    if required or extra_required:
        branch["then"]["required"] = sorted({*required, *extra_required})
    return branch


def _section(kinds: dict[str, Kind], description: str, common: dict[str, Any], user_classes: bool) -> dict[str, Any]:
    names = sorted(kinds)
    kind_schema: dict[str, Any] = {"enum": names}
    if user_classes:
        kind_schema = {"anyOf": [{"enum": names}, {"type": "string", "pattern": IMPORT_PATH}]}
    return {
        "type": "object",
        "description": description,
        "properties": {"kind": kind_schema},
        "required": ["kind"],
        "allOf": [_kind_branch(kinds[name], common) for name in names],
    }


def _resource_kinds() -> dict[str, Kind]:
    return {name: resource_kind(name) for name in RESOURCE_KINDS}


def _pipeline_options() -> dict[str, Any]:
    from ..pipeline import Pipeline

    params = params_of(Pipeline, ("tasks", "session", "resources"))
    properties = {name: dict(p.schema) for name, p in params.items()}
    properties["lease"] = {
        "type": ["boolean", "null"],
        "description": "false: no lease (one controller is not enforced)",
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def pipeline_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a pipeline file, from the classes installed now (the
    shipped file is generated with every extra installed)."""
    load_kinds()
    link = {
        "type": "object",
        "properties": {
            "repo": {"type": "string", "description": "a declared repository"},
            "kind": {
                "anyOf": [
                    {"enum": sorted(LINK_KINDS)},
                    {"type": "array", "items": {"enum": sorted(LINK_KINDS)}, "uniqueItems": True},
                ]
            },
            **{flag: {"type": "boolean"} for flag in sorted(set(LINK_KINDS.values()))},
            "require_success": {"type": ["boolean", "null"]},
        },
        "required": ["repo"],
        "additionalProperties": False,
    }
    plug_object = {
        "type": "object",
        "properties": {
            "task": {"type": "string", "description": "the upstream task"},
            "output_links": {"type": ["array", "null"], "items": {"type": "string"}},
            "meta": {"type": "boolean"},
            "translator": {"type": ["string", "null"], "description": "a declared repository"},
            "translate_allow_deletes": {"type": "boolean"},
            "translate_prefetch_lookup": {"type": "boolean"},
            "require_success": {"type": "boolean"},
        },
        "required": ["task"],
        "additionalProperties": False,
    }
    plug = {
        "anyOf": [
            {"type": "string"},
            plug_object,
            {"type": "array", "items": {"anyOf": [{"type": "string"}, plug_object]}},
        ]
    }
    task_common = {
        "links": {"type": "object", "propertyNames": _NAME, "additionalProperties": {"$ref": "#/$defs/link"}},
        "plug": {"$ref": "#/$defs/plug"},
        "priority": {"type": "integer", "description": "higher launches first (default 0)"},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": ID,
        "title": "pdtnb pipeline file",
        "description": "A pdtnb pipeline: session resources, repositories, quotas and tasks (docs/declarative.md).",
        "type": "object",
        "properties": {
            "$schema": {"type": "string"},
            "version": {"const": 1},
            "include": {
                "type": "array",
                "items": {"type": "string"},
                "description": "files merged into this one, relative to it",
            },
            "import_paths": {
                "type": "array",
                "items": {"type": "string"},
                "description": "directories searched for import paths, relative to this file (default: its directory)",
            },
            "pipeline": _pipeline_options(),
            "resources": {
                "type": "object",
                "propertyNames": _NAME,
                "additionalProperties": {"$ref": "#/$defs/resource"},
            },
            "repositories": {
                "type": "object",
                "propertyNames": _NAME,
                "additionalProperties": {"$ref": "#/$defs/repository"},
            },
            "quotas": {"type": "object", "propertyNames": _NAME, "additionalProperties": {"$ref": "#/$defs/resources"}},
            "tasks": {"type": "object", "propertyNames": _NAME, "additionalProperties": {"$ref": "#/$defs/task"}},
        },
        "additionalProperties": False,
        "$defs": {
            "resource": _section(_resource_kinds(), "a session resource, opened with the pipeline", {}, False),
            "repository": _section(
                REPOSITORY_KINDS, "a repository: a pdtnb class, or a class by import path", {}, True
            ),
            "task": _section(TASK_KINDS, "a task", task_common, False),
            "link": link,
            "plug": plug,
            "resources": {
                "type": "object",
                "properties": {q: {"type": ["string", "number"]} for q in ("cpu", "mem")}
                | {"launches": {"type": ["string", "integer", "null"]}},
                "additionalProperties": False,
            },
            "retry": {
                "type": "object",
                "properties": {
                    "attempts": {"type": "integer", "minimum": 1},
                    "delay": {"type": "number", "minimum": 0},
                    "backoff": {"type": "number", "minimum": 1},
                    "max_delay": {"type": "number", "minimum": 0},
                    "jitter": {"type": "number", "minimum": 0, "maximum": 1},
                    "on": {
                        "type": "array",
                        "items": {"type": ["string", "integer"]},
                        "description": "exception classes (builtin names or import paths), exit codes, pod reasons",
                    },
                },
                "additionalProperties": False,
            },
            "executor": {
                "type": "object",
                "properties": {
                    "kind": {"enum": ["threads", "processes"]},
                    "max_workers": {"type": "integer", "minimum": 1},
                },
                "required": ["kind"],
                "additionalProperties": False,
            },
        },
    }


def shipped_schema() -> dict[str, Any]:
    """The schema file shipped in the package."""
    text = importlib_resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_text() -> str:
    """:func:`pipeline_schema` as the shipped file holds it."""
    return json.dumps(pipeline_schema(), indent=2, sort_keys=False) + "\n"
