"""The drawing: a :class:`matplotlib.figure.Figure` of a placed graph, its title and legend.

Never through pyplot: the figure is made with :class:`~matplotlib.figure.Figure` on an Agg canvas,
so nothing is displayed twice in a notebook and no global figure state is kept. One data unit is
one inch. Each node's patch is labelled ``_pdtnb_task:NAME`` or ``_pdtnb_repo:TASK.LINK``, each
edge's :class:`~matplotlib.patches.FancyArrowPatch` ``_pdtnb_edge:KIND``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import ArrowStyle, FancyArrowPatch, FancyBboxPatch, PathPatch

from ...task.base import Task
from . import theme
from .legend import make_legends
from .shapes import drum_path, drum_rim

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ...status import PipelineStatus
    from .geometry import Box, DrawnEdge, Placement
    from .model import GraphModel

__all__ = ["draw_figure", "text_colour"]

# The classes ArrowStyle("-|>", ...) and ArrowStyle("-[", ...) make, named so the stubs type them.
_HEAD = ArrowStyle.CurveFilledB(head_length=0.6, head_width=0.22)
_BAR = ArrowStyle.BracketB(widthB=0.55, lengthB=0.0)
_MUTATION = 12.0  # points: the arrowhead's scale
_TITLE_HEIGHT = 0.55  # inches, with a title
_TOP = 0.15  # inches above the graph, without one
_LEGEND_GAP = 0.25


def _luminance(colour: str) -> float:
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in to_rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_colour(fill: str) -> str:
    """White on dark fills, else dark."""
    return "white" if _luminance(fill) < 0.22 else theme.DARK_TEXT


def _write(ax: Axes, box: Box, centre: tuple[float, float], colour: str) -> None:
    cx, cy = centre
    y = cy + box.height / 2 - box.text_top
    for line in box.lines:
        ax.text(
            cx,
            y - line.height / 2,
            line.text,
            ha="center",
            va="center",
            fontsize=line.size,
            fontweight=line.weight,
            fontstyle=line.style,
            color=colour,
            zorder=4,
        )
        y -= line.height


def _task(ax: Axes, task: Task, box: Box, centre: tuple[float, float], fill: str, disabled: bool) -> None:
    cx, cy = centre
    patch = FancyBboxPatch(
        (cx - box.width / 2, cy - box.height / 2),
        box.width,
        box.height,
        boxstyle="round,pad=0,rounding_size=0.12",
        facecolor=fill,
        edgecolor=theme.TASK_EDGE,
        linewidth=1.4,
        linestyle=(0, (4, 2)) if disabled else "solid",
        zorder=3,
    )
    patch.set_label(f"_pdtnb_task:{task.name}")
    ax.add_artist(patch)
    _write(ax, box, centre, text_colour(fill))


def _repository(ax: Axes, label: str, box: Box, centre: tuple[float, float]) -> None:
    shape = (*centre, box.width, box.height, theme.CAP)
    body = PathPatch(
        drum_path(*shape), facecolor=theme.REPOSITORY_COLOUR, edgecolor=theme.REPOSITORY_EDGE, linewidth=1.1, zorder=3
    )
    body.set_label(f"_pdtnb_repo:{label}")
    ax.add_artist(body)
    ax.add_artist(PathPatch(drum_rim(*shape), fill=False, edgecolor=theme.REPOSITORY_EDGE, linewidth=1.0, zorder=3.1))
    _write(ax, box, centre, theme.DARK_TEXT)


def _nodes(ax: Axes, model: GraphModel, placement: Placement, status: PipelineStatus | None) -> None:
    colours = model.node_colours(status)
    for k, node in enumerate(model.graph):
        box, centre = placement.boxes[node], placement.centres[node]
        if isinstance(node, Task):
            _task(ax, node, box, centre, colours[node.name], model.is_disabled(status, node))
        else:
            _repository(ax, model.repository_label(node) or str(k), box, centre)


def _edge(ax: Axes, edge: DrawnEdge) -> None:
    """A (possibly dashed) shaft along the edge's route with a solid arrowhead, or for an
    inhibitor a bar; and its label (compact form) on a white ground."""
    style = theme.EDGE_STYLES[edge.kind]
    colour, width = style["colour"], style["width"]
    shaft = FancyArrowPatch(
        path=edge.path,
        arrowstyle="-",
        color=colour,
        linestyle=style["linestyle"],
        linewidth=width,
        capstyle="butt",
        joinstyle="round",
        zorder=2,
    )
    shaft.set_label(f"_pdtnb_edge:{edge.kind}")
    ax.add_artist(shaft)
    vertices = np.asarray(edge.path.vertices, dtype=float)  # already a float array: no copy
    (x0, y0), (x1, y1) = vertices[-2], vertices[-1]
    run = math.hypot(x1 - x0, y1 - y0) or 1.0
    lead = min(run, theme.ARROW_LEAD) / run
    head = FancyArrowPatch(
        (x1 - (x1 - x0) * lead, y1 - (y1 - y0) * lead),
        (x1, y1),
        arrowstyle=_BAR if edge.kind == "inhibits" else _HEAD,
        mutation_scale=_MUTATION,
        shrinkA=0,
        shrinkB=0,
        color=colour,
        linewidth=2.2 if edge.kind == "inhibits" else width,
        capstyle="butt",
        zorder=2.1,
    )
    head.set_label(f"_pdtnb_head:{edge.kind}")
    ax.add_artist(head)
    if edge.label and edge.label_at:
        ax.text(
            *edge.label_at,
            edge.label,
            ha="center",
            va="center",
            fontsize=theme.FONT_SIZES["link"],
            color=colour,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none"},
            zorder=2.5,
        )


def draw_figure(model: GraphModel, placement: Placement, status: PipelineStatus | None, title: str | None) -> Figure:
    """The figure of ``model`` placed by ``placement``, coloured by ``status``; sized to hold the
    graph, the title and the legends, at least :data:`~.theme.PAGE_WIDTH` wide."""
    fig = Figure(facecolor="white")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    _nodes(ax, model, placement, status)
    for edge in placement.edges:
        _edge(ax, edge)
    graph_w, graph_h = placement.width, placement.height
    if not model.graph:
        ax.text(graph_w / 2, graph_h / 2, "(no tasks)", ha="center", va="center", fontsize=theme.FONT_SIZES["name"])

    fig_w = max(graph_w, theme.PAGE_WIDTH)
    fig.set_size_inches(fig_w, graph_h + 2)  # provisional: the legends are measured at this width
    drawn = set(model.node_states(status).values())
    legends = make_legends(fig, {e.kind for e in placement.edges}, model.form, fig_w - 2 * theme.MARGIN, drawn)
    renderer = canvas.get_renderer()
    extents = [legend.get_window_extent(renderer) for legend in legends]
    fig_w = max(fig_w, *(e.width / fig.dpi + 2 * theme.MARGIN for e in extents))
    legend_h = sum(e.height for e in extents) / fig.dpi + _LEGEND_GAP
    top = _TITLE_HEIGHT if title else _TOP
    fig_h = top + graph_h + legend_h
    fig.set_size_inches(fig_w, fig_h)

    ax.set_position(((fig_w - graph_w) / 2 / fig_w, legend_h / fig_h, graph_w / fig_w, graph_h / fig_h))
    ax.set_xlim(0, graph_w)
    ax.set_ylim(0, graph_h)
    # The legends start under the graph's left edge, if they fit from there.
    widest = max(e.width for e in extents) / fig.dpi
    x = max(theme.MARGIN, min((fig_w - graph_w) / 2 + theme.MARGIN, fig_w - widest - theme.MARGIN))
    y = legend_h - 0.05
    for legend, extent in zip(legends, extents):
        legend.set_bbox_to_anchor((x / fig_w, y / fig_h), transform=fig.transFigure)
        y -= extent.height / fig.dpi
    if title:
        size = theme.FONT_SIZES["title"]
        fig.text(0.5, 1 - 0.3 / fig_h, title, ha="center", va="center", fontsize=size, fontweight="bold")
    return fig
