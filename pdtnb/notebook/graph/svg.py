"""An SVG that fits its container: scaled by the browser to the notebook cell's width, as long as
its smallest text stays legible; wider drawings are shown at the smallest legible scale instead.

matplotlib writes ``width="Wpt" height="Hpt" viewBox="0 0 W H"`` (one unit is a point). The
fitted root has ``width="100%"``, no height (the browser keeps the viewBox's proportions, in an
``<img>`` as JupyterLab shows SVG as well as inline) and ``style="max-width:100%;height:auto"``.
"""

from __future__ import annotations

import re

__all__ = ["LEGIBLE_PX", "CELL_PX", "fits", "fit_width", "viewbox_width"]

#: The smallest text size, in CSS pixels, the drawing is ever scaled to...
LEGIBLE_PX = 9.0
#: ... in a notebook cell this wide (JupyterLab's default cell, a little under full HD).
CELL_PX = 1100.0

_ROOT = re.compile(r"<svg\b[^>]*>")
_VIEWBOX = re.compile(r'\sviewBox="([^"]*)"')


def fits(width: float, smallest_font: float) -> bool:
    """Whether a drawing ``width`` points wide, its smallest text ``smallest_font`` points, is
    legible when scaled to a notebook cell's width."""
    return width * LEGIBLE_PX / smallest_font <= CELL_PX


def viewbox_width(svg: str) -> float:
    """The width of the root element's viewBox."""
    root = _ROOT.search(svg)
    found = _VIEWBOX.search(root.group(0)) if root else None
    if found is None:
        raise ValueError("not an SVG with a viewBox")
    return float(found.group(1).split()[2])


def fit_width(svg: str, smallest_font: float) -> str:
    """``svg`` with its root sized to fit the container's width, if at :data:`CELL_PX` wide its
    text (``smallest_font`` units and up) is at least :data:`LEGIBLE_PX`; else fixed at the width
    where it is (the notebook scrolls it sideways)."""
    root = _ROOT.search(svg)
    if root is None:
        raise ValueError("not an SVG")
    width = viewbox_width(svg)
    if fits(width, smallest_font):
        size = 'width="100%" style="max-width:100%;height:auto"'
    else:  # as wide as the smallest text needs
        size = f'width="{width * LEGIBLE_PX / smallest_font:.0f}px" style="max-width:none;height:auto"'
    tag = re.sub(r'\s(width|height|style)="[^"]*"', "", root.group(0))
    tag = tag.replace("<svg", f"<svg {size}", 1)
    return svg[: root.start()] + tag + svg[root.end() :]
