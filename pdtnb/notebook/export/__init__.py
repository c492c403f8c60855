"""Export a notebook as a standalone pipeline script (``%pdt export`` and ``python -m pdtnb export``).

A notebook is where a pipeline is built and repaired; a script is what runs it from a terminal,
cron or a Kubernetes pod (whose pods run ``python3 SCRIPT launch TASK JOB --force --sync``). The
export keeps the notebook's imports and pipeline-defining code and ends the script with
``pdtnb.main(pipeline)``. The rules are deliberately simple so that a user can predict them
(docs/notebook.md, "Exporting a notebook as a script", states them for users):

* cells tagged ``pdtnb-skip`` are dropped, and so are markdown and raw cells;
* magics and shell escapes are dropped: a cell magic (``%%...``) drops the whole cell, a line
  magic or ``!cmd`` (alone, or assigned: ``x = %pdt ls a.b``, ``y = !ls``) drops its statement.
  IPython's own :class:`~IPython.core.inputtransformer2.TransformerManager` finds them, so the
  export sees exactly what the kernel saw;
* display-only statements are dropped: a top-level expression statement without any call,
  ``await``, ``yield`` or ``:=`` (``pipeline``, ``repo.data``, ``x[0]``), and any expression
  statement or plain assignment that uses a name only the notebook provides (``display``,
  ``get_ipython``, ``In``/``Out``/``_``, anything imported from ``IPython``, ``ipywidgets``,
  ``ipykernel`` or ``pdtnb.notebook``, ``pdtnb.notebook.*``, and names assigned from those);
* a cell with top-level ``await`` (``async for``, ``async with``; waiting for the pipeline's
  outputs, ``await pipeline.run()``) is left out whole, since a script cannot run it at import
  time; the export says so in one line (``ExportPlan.notices``);
* ``%pdt load FILE [as NAME]`` is the one magic kept: it becomes ``NAME = pdtnb.load(...)``, the
  file found relative to the script's directory as it was at export time, else at the absolute
  path the export resolved (see :func:`~pdtnb.notebook.export.analysis.analyse`);
* each top-level ``name = literal`` in a cell tagged ``parameters`` (papermill's convention)
  becomes a parameter: ``--param name=VALUE`` before the subcommand, or the environment
  variable ``PDTNB_PARAM_NAME`` (the name upper-cased), parsed with the type of the default.

Whatever cannot be exported faithfully is an :class:`ExportError` naming the cell (its number as
Jupyter counts cells, from 1, and its first line): code using a name that only a dropped magic,
a ``pdtnb-skip`` cell, a cell magic or a cell with top-level ``await`` defined (the latter
naming that cell and its ``await``'s line), a magic inside a block, invalid Python. The analysis
uses :mod:`ast` and :mod:`symtable`, never regular expressions over Python. This module imports
nothing from IPython or nbformat until it is used, so the command line can call it without a
kernel.
"""

from __future__ import annotations

from ...script import ENV_PREFIX, env_name
from .analysis import ExportPlan, Parameter, analyse
from .cells import (
    PARAMETERS_TAG,
    SKIP_TAG,
    ExportError,
    SourceCell,
    cells_from_history,
    cells_from_notebook,
    locate_notebook,
)
from .commands import export_in_kernel, main
from .render import render_script, summary, write_script

__all__ = [
    "ExportError",
    "SourceCell",
    "Parameter",
    "ExportPlan",
    "SKIP_TAG",
    "PARAMETERS_TAG",
    "ENV_PREFIX",
    "cells_from_notebook",
    "cells_from_history",
    "locate_notebook",
    "analyse",
    "render_script",
    "write_script",
    "export_in_kernel",
    "summary",
    "env_name",
    "main",
]
