"""What a ``%pdt load FILE [as NAME]`` line means, for the magic and for the export.

The magic (:mod:`pdtnb.notebook.magics`) loads ``FILE`` with :func:`pdtnb.load` and binds the
pipeline to ``NAME``; the export (:mod:`pdtnb.notebook.export`) writes ``NAME = pdtnb.load(...)``
in its place. Both read the line with :func:`load_target`, over the arguments the command table
(:data:`pdtnb.commands.COMMANDS`) declares, so the two cannot read it differently.

Imports neither IPython nor the declarative package (the export runs without a kernel).
"""

from __future__ import annotations

import argparse
import keyword
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from ..commands import COMMANDS, NOTEBOOK, add_command

__all__ = ["DEFAULT_NAME", "LoadLine", "load_target", "parse_load_line"]

#: The variable ``%pdt load FILE`` binds when no ``as NAME`` is given.
DEFAULT_NAME = "pipeline"


@dataclass(frozen=True)
class LoadLine:
    """``%pdt load FILE [as NAME]``: the file as written, and the variable to bind."""

    file: str
    name: str


def load_target(file: str, binding: Sequence[str]) -> LoadLine:
    """The :class:`LoadLine` of ``FILE`` and the words after it (``[]`` or ``["as", NAME]``);
    ValueError (one line) for anything else."""
    words = list(binding)
    if not words:
        name = DEFAULT_NAME
    elif len(words) == 2 and words[0] == "as":
        name = words[1]
    elif words == ["as"]:
        raise ValueError("give the variable after `as`: load FILE as NAME")
    else:
        raise ValueError(f"after FILE comes `as NAME` or nothing, not {' '.join(words)!r}")
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a Python variable name")
    if name.startswith("_"):
        raise ValueError(f"{name!r}: %pdt does not drive pipelines in variables starting with _; choose another name")
    return LoadLine(file, name)


class _Refusal(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ValueError(message or "see %pdt help")


def _parser() -> argparse.ArgumentParser:
    parser = _Refusal(prog="%pdt", add_help=False)
    sub: Any = parser.add_subparsers(dest="command", parser_class=_Refusal)
    (command,) = [c for c in COMMANDS if c.name == "load"]
    add_command(sub, command, NOTEBOOK, add_help=False)
    return parser


def parse_load_line(line: str) -> LoadLine:
    """The :class:`LoadLine` of the text IPython passes to the magic (``load FILE [as NAME]``,
    a trailing ``# comment`` ignored); ValueError (one line) if it is not a valid ``load``."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError as e:
        raise ValueError(f"cannot parse {line!r}: {e}") from None
    if not words or words[0] != "load":
        raise ValueError(f"not a load line: {line!r}")
    args = _parser().parse_args(words)
    return load_target(args.file, args.binding)
