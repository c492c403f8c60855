"""Declarative pipelines: a pipeline written as a YAML, TOML or JSON file (docs/declarative.md).

``pdtnb.load("pipeline.yaml")`` builds the :class:`~pdtnb.Pipeline` a file declares;
``pdtnb.check(...)`` validates one without building or opening anything; ``pdtnb.dump(pipeline)``
writes a Python-defined pipeline as such a file. ``python -m pdtnb -f pipeline.yaml COMMAND``
administers a file's pipeline as ``pdtnb.main`` does a script's. The format's JSON Schema ships
beside this module (``pipeline.schema.json``), generated from the classes it configures.

Part of the core: imports neither IPython nor ipywidgets.
"""

from __future__ import annotations

from .build import load
from .checks import check
from .document import Document
from .dump import NotDeclarableError, dump, to_document
from .source import DeclarationError, Where

__all__ = [
    "load",
    "check",
    "dump",
    "to_document",
    "Document",
    "DeclarationError",
    "NotDeclarableError",
    "Where",
    "schema_path",
]


def schema_path() -> str:
    """The path of the shipped JSON Schema (for ``# yaml-language-server: $schema=...``)."""
    from importlib import resources

    return str(resources.files(__package__).joinpath("pipeline.schema.json"))
