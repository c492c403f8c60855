"""``%load_ext pdtnb``: register the magics and the await-rewriting transformer; close on exit."""

from __future__ import annotations

import atexit
import logging
from typing import Any

from .controller import all_controllers
from .magics import PdtMagics
from .transform import rewrite_pdt_lines

__all__ = ["load_ipython_extension", "unload_ipython_extension", "close_all"]

log = logging.getLogger("pdtnb.notebook")
_atexit_registered = False


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%pdt``/``%%pdt`` and the transformer (idempotent)."""
    global _atexit_registered
    if "PdtMagics" not in ipython.magics_manager.registry:
        ipython.register_magics(PdtMagics(ipython))
    transformers = ipython.input_transformers_post
    if rewrite_pdt_lines not in transformers:
        transformers.append(rewrite_pdt_lines)
    if not _atexit_registered:
        atexit.register(close_all)
        _atexit_registered = True


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the transformer and close the pipelines the magics opened."""
    if rewrite_pdt_lines in ipython.input_transformers_post:
        ipython.input_transformers_post.remove(rewrite_pdt_lines)
    close_all()


def close_all() -> None:
    """Close every pipeline opened through the notebook layer (the kernel is shutting down).

    At exit the kernel's loop has stopped; each pipeline is closed on its own loop so that its
    session's resources are torn down where they were created.
    """
    for controller in all_controllers():
        pipeline = controller.pipeline
        loop = pipeline.loop
        if not pipeline.is_open or loop is None or loop.is_closed():
            continue
        try:
            if loop.is_running():
                from .kernel_loop import run_sync

                run_sync(controller.close(), loop)
            else:
                loop.run_until_complete(controller.close())
        except Exception:
            log.exception("closing pipeline %s at exit failed", controller.name or pipeline)
