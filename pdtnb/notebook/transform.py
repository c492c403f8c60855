"""Run top-level ``%pdt`` lines as ``await`` on the kernel's loop instead of blocking it.

IPython turns ``%pdt status`` into ``get_ipython().run_line_magic('pdt', 'status')``. When that
call stands alone at the top level of a cell (or is assigned to a name), this transformer rewrites
it into an ``await`` of the magic's coroutine, so IPython runs the cell asynchronously on the
kernel loop, exactly like a cell using top-level ``await``: no nested event loop, no patching.
Anywhere else (inside a function, a loop body, an ``if``), the line is left alone and the magic
completes synchronously through :func:`pdtnb.notebook.kernel_loop.run_sync`.
"""

from __future__ import annotations

import re

__all__ = ["rewrite_pdt_lines", "ASYNC_LINE", "ASYNC_CELL"]

ASYNC_LINE = "await get_ipython().magics_manager.registry['PdtMagics'].pdt_async"
ASYNC_CELL = "await get_ipython().magics_manager.registry['PdtMagics'].pdt_cell_async"

_LINE = re.compile(
    r"^(?P<target>[A-Za-z_][A-Za-z0-9_]*\s*=\s*)?get_ipython\(\)\.run_line_magic\('pdt', (?P<args>.*)\)(?P<end>\s*)$"
)
_CELL = re.compile(r"^get_ipython\(\)\.run_cell_magic\('pdt', (?P<args>.*)\)(?P<end>\s*)$", re.DOTALL)


def rewrite_pdt_lines(lines: list[str]) -> list[str]:
    """An IPython ``input_transformers_post`` function (see the module docstring)."""
    if not any("'pdt'" in line for line in lines):
        return lines
    if len(lines) >= 1 and lines[0].startswith("get_ipython().run_cell_magic('pdt',"):
        whole = "".join(lines)
        match = _CELL.match(whole)
        if match:
            return [f"{ASYNC_CELL}({match.group('args')}){match.group('end')}"]
        return lines
    out = []
    for line in lines:
        match = _LINE.match(line)
        if match:
            target = match.group("target") or ""
            line = f"{target}{ASYNC_LINE}({match.group('args')}){match.group('end')}"
        out.append(line)
    return out
