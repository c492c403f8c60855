"""The two ways in: ``%pdt export`` in a kernel and ``python -m pdtnb export`` in a shell."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .analysis import analyse
from .cells import ExportError, cells_from_history, cells_from_notebook, locate_notebook
from .render import render_script, summary, write_script

# ---- %pdt export ----------------------------------------------------------------------------------


def export_in_kernel(
    shell: Any,
    output: str,
    *,
    notebook: str | None = None,
    pipeline: str | None = None,
    selected: str | None = None,
    actions: bool = False,
    live_pipelines: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = print,
) -> str:
    """``%pdt export``: export the notebook a kernel runs; returns the one-line summary.

    The saved file is preferred (see :func:`locate_notebook`); without one, the session's input
    history is exported. ``selected`` is the ``%pdt use`` choice, used when ``pipeline`` is not
    given; ``live_pipelines`` the kernel's Pipeline variables (they help find the pipeline, and
    ``actions`` takes the chosen one's controller log). ``say`` prints the notes about the source.
    """
    from ..controller import controller_for

    live = dict(live_pipelines or {})
    located = locate_notebook(notebook, shell.user_ns, os.environ)
    if located is not None:
        path, how = located
        cells = cells_from_notebook(path)
        origin = path.name
        say(
            f"pdtnb export: reading the saved notebook {path} (from {how}); "
            "edits not saved in the browser are not included"
        )
    else:
        cells = cells_from_history(shell.history_manager.input_hist_raw)
        origin = "the input history of a kernel session"
        say(
            "pdtnb export: no saved notebook found (no --notebook, JPY_SESSION_NAME or __vsc_ipynb_file__): "
            f"exporting this session's input history (In[1] to In[{len(shell.history_manager.input_hist_raw) - 1}]); "
            "cell tags are unavailable there, so no cell is skipped and there are no parameters"
        )
    requested, flag = (pipeline, "--pipeline") if pipeline else (selected, "%pdt use")
    script_path = Path.cwd() / Path(output).expanduser()
    # `%pdt load FILE` read a relative FILE from this kernel's working directory.
    plan = analyse(
        cells,
        origin=origin,
        pipeline=requested,
        pipeline_flag=flag,
        known_pipelines=list(live),
        load_base=Path.cwd(),
        script_dir=script_path.parent,
    )
    recorded: list[Any] | None = None
    if actions:
        target = live.get(plan.pipeline)
        if target is None:
            raise ExportError(
                f"--actions: {plan.pipeline} holds no Pipeline in this kernel, so it has no actions: "
                "run the cells defining it first"
            )
        recorded = list(controller_for(target, plan.pipeline).actions)
    text = render_script(plan, recorded, Path(output).name)
    written = write_script(text, script_path, notebook=located[0] if located else None)
    for notice in plan.notices:  # what was left out that the user may not expect, once written
        say(f"pdtnb export: {notice}")
    line = f"wrote {written}: {summary(plan, recorded)}"
    if recorded is not None:
        line += f" (python {written.name} replay)"
    return line


# ---- python -m pdtnb export ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m pdtnb export") -> int:
    """``python -m pdtnb export NOTEBOOK.ipynb -o SCRIPT.py [--pipeline NAME]``; returns the exit status
    (2 and one ``error: ...`` line for anything that cannot be exported)."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:
            self.print_usage(sys.stderr)
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2)

    parser = Parser(
        prog=prog,
        description="Write a notebook's pipeline as a standalone script ending with pdtnb.main(pipeline).",
    )
    parser.add_argument("notebook", help="the .ipynb file (its saved contents are exported)")
    parser.add_argument("-o", "--output", required=True, help="the script to write ('-' for standard output)")
    parser.add_argument("--pipeline", metavar="NAME", help="the Pipeline variable, when several are defined")
    parser.add_argument(
        "--actions",
        action="store_true",
        help="only for %%pdt export in a notebook: a saved notebook holds no session actions",
    )
    args = parser.parse_args(argv)
    try:
        if args.actions:
            raise ExportError(
                "--actions: the actions of a notebook session live in its kernel, not in the saved notebook; "
                "run `%pdt export PATH --actions` in the notebook instead"
            )
        notebook = Path(args.notebook)
        cells = cells_from_notebook(notebook)
        # `%pdt load FILE`: a relative FILE is taken from the notebook's directory (where Jupyter
        # starts its kernels), and written relative to the script's (the current one for '-').
        script_dir = Path.cwd() if args.output == "-" else Path(args.output).expanduser().absolute().parent
        plan = analyse(
            cells,
            origin=notebook.name,
            pipeline=args.pipeline,
            load_base=notebook.absolute().parent,
            script_dir=script_dir,
        )
        name = "SCRIPT" if args.output == "-" else Path(args.output).name
        text = render_script(plan, None, name)
        if args.output == "-":
            sys.stdout.write(text)
            done = ""
        else:
            path = write_script(text, args.output, notebook=notebook)
            done = f"wrote {path}: {summary(plan, None)}"
        for line in [*plan.notices, done]:
            if line:
                print(line, file=sys.stderr)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
