"""How the graph looks: colours and line styles, font sizes, spacing (lengths in inches).

The task fills by state are shared with the status table (:mod:`pdtnb.notebook.style`); everything
here is the graph's own.
"""

from __future__ import annotations

from typing import Any, Literal

#: The font styles matplotlib knows.
FontStyle = Literal["normal", "italic", "oblique"]

#: What each node state means, for the legend.
STATE_LABELS = {
    "ready": "ready",
    "live": "live",
    "done": "done",
    "outdated": "outdated",
    "failed": "failed",
    "idle": "idle / waiting",
}

#: Fill and outline of repository nodes.
REPOSITORY_COLOUR = "#F4F1E6"
REPOSITORY_EDGE = "#8C8371"
#: Outline of task nodes, and the text on light fills.
TASK_EDGE = "#2D3748"
DARK_TEXT = "#1A202C"

#: How each kind of edge (:func:`~pdtnb.notebook.graph.model.edge_kind`) is drawn, and its legend label.
EDGE_STYLES: dict[str, dict[str, Any]] = {
    "input": {"colour": "#2B6CB0", "linestyle": "solid", "width": 1.5, "label": "input"},
    "requires": {"colour": "#2B6CB0", "linestyle": (0, (5, 3)), "width": 1.3, "label": "required to start"},
    "output": {"colour": "#6B46C1", "linestyle": "solid", "width": 1.5, "label": "output"},
    "status": {"colour": "#718096", "linestyle": (0, (1, 2)), "width": 1.4, "label": "status"},
    "inhibits": {"colour": "#C53030", "linestyle": (0, (4, 2)), "width": 1.3, "label": "inhibits start"},
    "other": {"colour": "#A0AEC0", "linestyle": (0, (1, 3)), "width": 1.0, "label": "other link"},
}

#: Font size (points) of each role of text (:class:`~pdtnb.notebook.graph.model.TextLine`).
FONT_SIZES = {
    "name": 9.5,  # a task's name
    "count": 8.0,  # a task's job counts
    "note": 8.0,  # "(disabled)"
    "link": 8.0,  # a repository's TASK.LINK names, an edge's label in the compact form
    "jobs": 8.0,  # a repository's job count
    "legend": 9.0,
    "title": 12.0,
}
FONT_WEIGHTS = {"name": "bold", "jobs": "bold"}
FONT_STYLES: dict[str, FontStyle] = {"note": "italic"}
#: The smallest text drawn: the drawing is never shown smaller than this at 9 px (see svg.py).
SMALLEST_FONT = min(FONT_SIZES.values())
#: Line height, in font sizes.
LINE_SPACING = 1.3

# ---- spacing, in inches ----------------------------------------------------------------------------

PAD_X = 0.08  # text to a box's side
PAD_Y = 0.07  # text to a box's top and bottom
CAP = 0.06  # half-height of a repository drum's cap
ROW_GAP = 0.3  # between the boxes of one column
MARGIN = 0.25  # around the graph
#: Room between columns: at least MIN_GAP (more for an edge label); for a small graph each gap
#: widens by up to MAX_GAP - MIN_GAP, so the drawing fills :data:`PAGE_WIDTH`.
MIN_GAP = 0.36
MAX_GAP = 1.3
LABEL_ROOM = 0.2  # between an edge label in the middle of a gap and the columns on either side
LABEL_PAD = 0.1  # between an edge label just past its task and the task's column
CURVE_ROOM = 0.32  # after it, for the edges to fan out
SNAP = 0.04  # an edge between ports this close in height is drawn straight
PORT_STEP = 0.13  # between the ends of edges on one side of a box
ARROW_LEAD = 0.13  # the straight run into a box, that carries the arrowhead
#: The width the drawing is laid out for: a notebook cell is about 1,000-1,100 px wide, so at this
#: size the text is shown a little larger than its nominal size, and never smaller when it fits.
PAGE_WIDTH = 11.0
MAX_NAMES = 3  # repository labels: at most this many TASK.LINK names
