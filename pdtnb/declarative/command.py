"""``python -m pdtnb -f FILE COMMAND``: a pipeline file administered from the shell.

Every command of :func:`pdtnb.main` works on the file's pipeline; two more need no pipeline
opened: ``check`` validates the file (and what it names: classes, functions, templates, task
bodies' parameters), constructs its objects in memory and opens and creates nothing;
``graph -o OUT`` draws the dependency graph to an SVG or PNG file without a kernel (it needs
matplotlib, from the ``notebook`` extra). A wrong file is one line naming the file, line and
column, and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .build import build, load
from .checks import check
from .source import DeclarationError

__all__ = ["main"]


def _add_file_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("check", help="validate the pipeline file, opening and creating nothing")
    graph = sub.add_parser("graph", help="draw the dependency graph to a file (-o OUT.svg or OUT.png)")
    graph.add_argument("-o", "--output", required=True, help="the file to write; its extension says SVG or PNG")
    graph.add_argument(
        "--form",
        choices=("auto", "full", "compact"),
        default="auto",
        help="full: repositories as nodes; compact: tasks only (default: auto)",
    )


def _first_command(args: Sequence[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)


def main(path: str, args: Sequence[str]) -> int:
    """Run ``COMMAND ARGS`` on the pipeline file ``path``; returns the exit status."""
    command = _first_command(args)
    try:
        if command == "check":
            parser = argparse.ArgumentParser(prog=f"python -m pdtnb -f {path} check")
            parser.add_argument("command")
            parser.parse_args(list(args))
            document = check(path)
            build(document)  # constructed in memory, opening nothing: what opening would refuse
            counts = {s: len(e) for s, e in document.entries.items()}
            included = f", {len(document.files) - 1} included file(s)" if len(document.files) > 1 else ""
            print(
                f"{path}: valid: {counts['tasks']} tasks, {counts['repositories']} repositories, "
                f"{counts['resources']} resources, {counts['quotas']} quotas{included}"
            )
            return 0
        if command == "graph":
            parser = argparse.ArgumentParser(prog=f"python -m pdtnb -f {path} graph")
            parser.add_argument("command")
            parser.add_argument("-o", "--output", required=True)
            parser.add_argument("--form", choices=("auto", "full", "compact"), default="auto")
            options = parser.parse_args(list(args))
            return _graph(path, Path(options.output), options.form)
        pipeline = load(path)
    except DeclarationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from ..cli import main as cli_main

    try:
        return cli_main(pipeline, instrument=_add_file_commands, argv=list(args), prog=f"python -m pdtnb -f {path}")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1


def _graph(path: str, output: Path, form: str) -> int:
    suffix = output.suffix.lower()
    if suffix not in (".svg", ".png"):
        print(f"error: {output}: the graph is written as .svg or .png", file=sys.stderr)
        return 2
    pipeline = load(path)
    try:
        from ..notebook.graph import PipelineGraph
    except ImportError as e:
        print(
            f"error: drawing needs the notebook extra (matplotlib): pip install 'pdtnb[notebook]' ({e})",
            file=sys.stderr,
        )
        return 1
    graph = PipelineGraph(pipeline, form=form)
    try:
        if suffix == ".svg":
            output.write_text(graph.to_svg(fit=False), encoding="utf-8")
        else:
            output.write_bytes(graph.to_png())
    except OSError as e:
        print(f"error: cannot write {output}: {e}", file=sys.stderr)
        return 1
    print(f"{output}: {len(pipeline.tasks)} tasks drawn ({graph.form} form)", file=sys.stderr)
    return 0
