"""What scripts exported from notebooks call at run time: parameters and the replay of actions.

``%pdt export`` / ``python -m pdtnb export`` write scripts that import this module instead of
carrying their own copy of this code, so every exported script behaves the same and a fix here
reaches them all. Two pieces:

* :class:`Parameters`: the defaults of a notebook's ``parameters`` cell, overridden by
  ``--param NAME=VALUE`` options placed before the subcommand (taken off ``sys.argv`` so that
  ``pdtnb.main`` never sees them) or by ``PDTNB_PARAM_<NAME>`` environment variables; each value
  is parsed with the type of its default.
* :func:`replay_command` / :func:`replay`: the ``replay`` subcommand of a script exported with
  ``--actions``, which performs the notebook session's ``%pdt`` actions in order.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import PdtnbError

__all__ = ["ENV_PREFIX", "Parameters", "env_name", "convert", "replay", "replay_command"]

#: ``PDTNB_PARAM_<NAME>`` overrides parameter ``name`` (upper-cased).
ENV_PREFIX = "PDTNB_PARAM_"


def env_name(parameter: str) -> str:
    """The environment variable that overrides ``parameter``."""
    return ENV_PREFIX + parameter.upper()


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def convert(name: str, text: str, default: Any, origin: str) -> Any:
    """``text`` as a value of the type of ``default``: bool (true/false, yes/no, on/off, 1/0), int,
    float, str; lists, tuples, sets and dicts as JSON or a Python literal; a None default takes a
    Python literal, or else the text. A value that does not fit exits with status 2 naming
    ``origin`` (the option or variable it came from)."""
    kind = type(default).__name__
    try:
        if isinstance(default, bool):
            word = text.strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false, yes/no, on/off or 1/0")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, str):
            return text
        if default is None:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text
        try:
            value = json.loads(text)
        except ValueError:
            value = ast.literal_eval(text)
        if isinstance(value, list) and isinstance(default, (tuple, set, frozenset)):
            value = type(default)(value)
        if not isinstance(value, type(default)):
            raise ValueError(f"got a {type(value).__name__}")
        return value
    except (ValueError, SyntaxError, TypeError) as e:
        article = "an" if kind[0] in "aeiou" else "a"
        _fail(f"{origin}={text!r}: parameter {name} takes {article} {kind} value, like its default: {e}")


class Parameters:
    """The parameters of an exported script; call it with a name and default for the value.

    ``defaults`` lists every parameter (so a misspelt ``--param`` is refused, naming the known
    ones). With ``main`` (the script runs as ``__main__``) the ``--param`` options before the
    subcommand are taken off ``argv`` (``sys.argv`` by default) at once.
    """

    def __init__(
        self,
        defaults: Mapping[str, Any],
        main: bool = True,
        argv: list[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ):
        self.defaults = dict(defaults)
        self.environ = os.environ if environ is None else environ
        self.given: dict[str, str] = {}
        if main:
            args = sys.argv if argv is None else argv
            self.given, args[1:] = self._take(args[1:])

    def _take(self, argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
        given: dict[str, str] = {}
        rest: list[str] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            if not arg.startswith("-"):  # the subcommand: the rest belongs to pdtnb.main
                rest.extend(argv[i:])
                break
            if arg == "--param" or arg.startswith("--param="):
                if arg == "--param":
                    if i + 1 >= len(argv):
                        _fail("--param needs NAME=VALUE")
                    spec, i = argv[i + 1], i + 2
                else:
                    spec, i = arg[len("--param=") :], i + 1
                name, sep, value = spec.partition("=")
                if not sep or not name:
                    _fail(f"--param {spec!r}: write --param NAME=VALUE")
                if name not in self.defaults:
                    known = ", ".join(self.defaults) or "none (no cell was tagged parameters)"
                    _fail(f"--param {name}: no such parameter; parameters: {known}")
                given[name] = value
                continue
            rest.append(arg)
            i += 1
        return given, rest

    def __call__(self, name: str, default: Any) -> Any:
        """The value of ``name``: ``--param name=...``, else ``PDTNB_PARAM_NAME``, else ``default``."""
        if name in self.given:
            return convert(name, self.given[name], default, f"--param {name}")
        env = env_name(name)
        if env in self.environ:
            return convert(name, self.environ[env], default, env)
        return default


async def replay(pipeline: Any, actions: Sequence[Mapping[str, Any]]) -> None:
    """Perform a notebook session's actions (as ``%pdt export --actions`` wrote them) on the opened
    ``pipeline``, in order, reporting each on stderr. A launch that does not start here although it
    started in the notebook stops the replay with an error naming it."""
    from . import admin

    total = len(actions)
    for number, action in enumerate(actions, 1):
        kind = action["kind"]
        where = f"replay {number}/{total}: {kind}"
        if kind == "launch":
            task, job = action["task"], action["job"]
            where += f" {task} {job}"
            outcome = await admin.launch_job(
                pipeline, task, job, sync=action["sync"], meta=action["meta"], force=action["force"]
            )
            if outcome.state != "started":
                state = outcome.state.replace("_", " ")
                raise PdtnbError(f"{where}: the job was {state} here, but it started in the notebook")
            done = outcome.done
            if isinstance(done, dict) and done.get("result") not in (None, "success"):
                where += f" (the job failed: {done.get('exception', done)})"
        elif kind == "rm":
            deleted = await admin.delete_jobs(pipeline, action["data"], action["jobs"], action["recursive"])
            where += f" {action['data']}: {len(deleted)} deleted"
        elif kind == "inject":
            where += f" {action['data']} {action['job']}"
            if "yaml" in action:
                await admin.inject_value(pipeline, action["data"], action["job"], action["yaml"])
            elif isinstance(action["value"], (str, bytes)):
                await admin.inject_value(pipeline, action["data"], action["job"], action["value"])
            else:
                await admin.inject_value(pipeline, action["data"], action["job"], b"", parsed=action["value"])
        elif kind == "update":
            await pipeline.update_phase()
        elif kind == "launch_phase":
            report = await pipeline.launch_phase()
            where += f": {report.launched} launched"
        elif kind == "step":
            await pipeline.update_phase()
            report = await pipeline.launch_phase()
            where += f": {report.launched} launched"
        elif kind == "run":
            summary = await pipeline.run(launch_once=action["launch_once"], timeout=action["timeout"])
            where += f": {summary.rounds} rounds, {summary.launched} launched"
        else:
            raise PdtnbError(f"{where}: unknown action")
        print(f"# {where}", file=sys.stderr)


def replay_command(
    actions: Sequence[Mapping[str, Any]],
) -> Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]:
    """An ``instrument`` for :func:`pdtnb.main` adding the ``replay`` subcommand for ``actions``."""

    async def run_replay(pipeline: Any) -> None:
        await replay(pipeline, actions)

    def add(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        parser = subparsers.add_parser("replay", help="Perform the actions taken in the notebook session, in order")
        parser.set_defaults(func=run_replay)

    return add
