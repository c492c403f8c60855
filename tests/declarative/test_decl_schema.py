"""The JSON Schema of pipeline files: the shipped copy is what the classes generate, it is a valid
draft 2020-12 schema, every pipeline file of the project validates against it with a JSON Schema
validator, and no constructor parameter is left out of it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from decl_support import FILES, ROOT

from pdtnb import Pipeline
from pdtnb.declarative import schema_path
from pdtnb.declarative.kinds import REPOSITORY_KINDS, TASK_KINDS, load_kinds
from pdtnb.declarative.resources import RESOURCE_KINDS
from pdtnb.declarative.schema import pipeline_schema, schema_text, shipped_schema
from pdtnb.declarative.source import EXTENSIONS, read_source

#: Top-level keys that make a YAML, TOML or JSON file a pipeline file.
PIPELINE_KEYS = {"tasks", "repositories", "resources", "quotas", "include"}
_LOOKS_LIKE_ONE = re.compile(r'^[\s\[{"]*(tasks|repositories|resources|quotas|include)\b', re.MULTILINE)


def test_the_shipped_schema_is_a_fresh_generation() -> None:
    assert shipped_schema() == pipeline_schema()
    # byte for byte what `python -m pdtnb schema > pdtnb/declarative/pipeline.schema.json` writes
    assert Path(schema_path()).read_text(encoding="utf-8") == schema_text()


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = shipped_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator


def pipeline_files() -> list[Path]:
    found = []
    for top in (ROOT / "examples", ROOT / "tests"):
        for path in sorted(top.rglob("*")):
            if path.suffix.lower() not in EXTENSIONS or not path.is_file() or "work" in path.relative_to(ROOT).parts:
                continue
            try:
                data = read_source(path).data
            except Exception:
                # unreadable: a pipeline file if it looks like one (the test then says why)
                if _LOOKS_LIKE_ONE.search(path.read_text(encoding="utf-8", errors="replace")):
                    found.append(path)
                continue
            if isinstance(data, dict) and PIPELINE_KEYS & set(data):
                found.append(path)
    return found


PIPELINE_FILES = pipeline_files()


def test_the_pipeline_files_are_found() -> None:
    names = {str(p.relative_to(ROOT)) for p in PIPELINE_FILES}
    assert {
        "examples/books/pipeline.yaml",
        "tests/declarative/files/books.toml",
        "tests/declarative/files/books.json",
        "tests/declarative/files/links.yaml",
        "tests/declarative/files/runs.yaml",
        "tests/declarative/files/processes.yaml",
    } <= names


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_pipeline_file_validates_against_the_schema(path: Path) -> None:
    # As an editor sees it: ${NAME} not yet replaced (a number may be written as one).
    jsonschema.Draft202012Validator(shipped_schema()).validate(read_source(path).data)


def test_a_wrong_file_does_not_validate() -> None:
    """The validation above can fail: a misspelt key, a wrong type, an unknown kind."""
    validator = jsonschema.Draft202012Validator(shipped_schema())
    data = read_source(FILES / "links.yaml").data
    assert validator.is_valid(data)
    for change in ({"extension": ".txt"}, {"data": [1]}, {"kind": "InProcessRepository"}):
        numbers = {**data["repositories"]["numbers"], **change}
        wrong = {**data, "repositories": {**data["repositories"], "numbers": numbers}}
        assert not validator.is_valid(wrong), change


def _constructor_parameters(target: Any) -> set[str]:
    """The keyword parameters of a class's constructor (with its base's when it passes
    ``*args, **kwargs`` on), or of a function; ``**children`` by its name."""
    func = target.__init__ if inspect.isclass(target) else target
    parameters = inspect.signature(func).parameters.values()
    names = {p.name for p in parameters if p.kind is not p.VAR_POSITIONAL and p.name != "self"}
    if inspect.isclass(target) and any(p.kind is p.VAR_POSITIONAL for p in parameters):
        base = next(b for b in target.__mro__[1:] if "__init__" in vars(b))
        names |= _constructor_parameters(base)
    names -= {p.name for p in parameters if p.kind is p.VAR_KEYWORD and p.name == "kwargs"}
    return names


def _branches(schema: dict[str, Any], section: str) -> dict[str, set[str]]:
    return {
        branch["if"]["properties"]["kind"]["const"]: set(branch["then"]["properties"])
        for branch in schema["$defs"][section]["allOf"]
    }


def test_every_constructor_parameter_of_every_kind_is_in_the_schema() -> None:
    load_kinds()
    schema = shipped_schema()
    task_extra = {"kind", "links", "plug", "priority", "template_file"}
    declared = {
        "repository": {name: kind.target for name, kind in REPOSITORY_KINDS.items()},
        "task": {name: kind.target for name, kind in TASK_KINDS.items()},
        "resource": dict(RESOURCE_KINDS),
    }
    for section, kinds in declared.items():
        branches = _branches(schema, section)
        assert set(branches) == set(kinds), section
        for name, target in kinds.items():
            assert not isinstance(target, str), f"{name}: its extra is not installed, the schema would lack it"
            parameters = _constructor_parameters(target) - {"name"}  # a task's name is its key
            if name == "python":
                assert parameters == {"factory", "args"}
            assert parameters <= branches[name], f"{section} {name}: {parameters - branches[name]} not in the schema"
            # and the schema gives nothing the constructor does not take
            assert branches[name] - parameters <= task_extra, f"{section} {name}: {branches[name] - parameters}"
    options = set(schema["properties"]["pipeline"]["properties"])
    assert options == _constructor_parameters(Pipeline) - {"tasks", "session", "resources"}
