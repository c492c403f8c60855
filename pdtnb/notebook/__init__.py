"""The notebook layer: ``%pdt`` magics and widgets that drive a pipeline from Jupyter.

``%load_ext pdtnb`` registers the magics. In code::

    from pdtnb.notebook import Dashboard
    Dashboard(pipeline).start()      # in a cell, after `await pipeline.open()`

Everything here is a client of the core's public API (the same status computation and admin
functions as the command line); it needs the ``notebook`` extra (ipywidgets, ipykernel,
nest_asyncio, matplotlib).
"""

from __future__ import annotations

from typing import Any

from .controller import PipelineController, controller_for
from .kernel_loop import run_sync, submit

__all__ = [
    "Dashboard",
    "LiveStatus",
    "StatusTable",
    "Progress",
    "PipelineGraph",
    "PipelineController",
    "controller_for",
    "run_sync",
    "submit",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    # Widgets and the graph import ipywidgets / matplotlib: load them on first use.
    if name == "Dashboard":
        from .dashboard import Dashboard

        return Dashboard
    if name in ("LiveStatus", "StatusTable", "Progress"):
        from . import status_view

        return getattr(status_view, name)
    if name == "PipelineGraph":
        from .graph import PipelineGraph

        return PipelineGraph
    if name in ("load_ipython_extension", "unload_ipython_extension"):
        from . import extension

        return getattr(extension, name)
    raise AttributeError(f"module 'pdtnb.notebook' has no attribute {name!r}")
