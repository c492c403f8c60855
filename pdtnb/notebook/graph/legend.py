"""The legend under the graph: the task states (:data:`~pdtnb.notebook.style.NODE_STATES`, and
those of :data:`~pdtnb.notebook.style.OCCASIONAL_NODE_STATES` a node is drawn in),
then the repositories and the kinds of link drawn, each key drawn like the graph's own shapes."""

from __future__ import annotations

import functools
from typing import Any

from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.legend_handler import HandlerBase
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Patch, PathPatch, Polygon
from matplotlib.transforms import Transform

from ..style import NODE_STATES, OCCASIONAL_NODE_STATES, STATE_COLOURS
from . import theme
from .shapes import drum_path, drum_rim

__all__ = ["make_legends"]

STATES_HEADING = "Task state"
FULL_HEADING = "Repositories and links"
COMPACT_HEADING = "Links between tasks (labelled with the repository passed on)"


class _TaskKey(HandlerBase):
    def create_artists(
        self,
        legend: Legend,
        orig_handle: Artist,
        xdescent: float,
        ydescent: float,
        width: float,
        height: float,
        fontsize: float,
        trans: Transform,
    ) -> list[Artist]:
        patch = FancyBboxPatch(
            (-xdescent + 1, -ydescent), width - 2, height, boxstyle="round,pad=0,rounding_size=3", transform=trans
        )
        self.update_prop(patch, orig_handle, legend)
        patch.set_transform(trans)
        return [patch]


class _DrumKey(HandlerBase):
    def create_artists(
        self,
        legend: Legend,
        orig_handle: Artist,
        xdescent: float,
        ydescent: float,
        width: float,
        height: float,
        fontsize: float,
        trans: Transform,
    ) -> list[Artist]:
        x, y, w, h, cap = -xdescent + width / 2, -ydescent + height / 2, width * 0.6, height * 1.3, height * 0.2
        body = PathPatch(drum_path(x, y, w, h, cap), transform=trans)
        self.update_prop(body, orig_handle, legend)
        body.set_transform(trans)
        rim = PathPatch(drum_rim(x, y, w, h, cap), fill=False, transform=trans)
        assert isinstance(orig_handle, Patch)  # the repository key's handle (_entries)
        rim.set_edgecolor(orig_handle.get_edgecolor())
        rim.set_linewidth(orig_handle.get_linewidth())
        return [body, rim]


class _EdgeKey(HandlerBase):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def create_artists(
        self,
        legend: Legend,
        orig_handle: Artist,
        xdescent: float,
        ydescent: float,
        width: float,
        height: float,
        fontsize: float,
        trans: Transform,
    ) -> list[Artist]:
        style = theme.EDGE_STYLES[self.kind]
        colour = style["colour"]
        x0, x1, y = -xdescent, -xdescent + width, -ydescent + height / 2
        head = 0.6 * fontsize
        end = x1 - (1 if self.kind == "inhibits" else head)
        shaft = Line2D(
            [x0, end], [y, y], color=colour, linestyle=style["linestyle"], linewidth=style["width"], transform=trans
        )
        shaft.set_dash_capstyle("butt")
        tip: Artist
        if self.kind == "inhibits":
            tip = Line2D([x1 - 1, x1 - 1], [y - height * 0.45, y + height * 0.45], color=colour, linewidth=2.4)
        else:
            tip = Polygon([(x1, y), (end, y + head * 0.38), (end, y - head * 0.38)], closed=True, color=colour)
        tip.set_transform(trans)
        return [shaft, tip]


@functools.lru_cache(maxsize=1)
def _handlers() -> dict[str, HandlerBase]:
    handlers: dict[str, HandlerBase] = {kind: _EdgeKey(kind) for kind in theme.EDGE_STYLES}
    handlers["task"] = _TaskKey()
    handlers["repository"] = _DrumKey()
    return handlers


def _entries(
    kinds: set[str], form: str, drawn: set[str] | frozenset[str] = frozenset()
) -> list[tuple[str, list[Any], dict[Any, HandlerBase]]]:
    """(heading, handles, handler map) of each legend (``drawn``: the states nodes are drawn in)."""
    handlers = _handlers()
    shown = [*NODE_STATES[:3], *(s for s in OCCASIONAL_NODE_STATES if s in drawn), *NODE_STATES[3:]]
    states = [
        Patch(facecolor=STATE_COLOURS[k], edgecolor=theme.TASK_EDGE, linewidth=1.0, label=theme.STATE_LABELS[k])
        for k in shown
    ]
    links: list[Any] = []
    link_map: dict[Any, HandlerBase] = {}
    if form == "full":
        repo = Patch(facecolor=theme.REPOSITORY_COLOUR, edgecolor=theme.REPOSITORY_EDGE, linewidth=1.0)
        repo.set_label("repository")
        links.append(repo)
        link_map[repo] = handlers["repository"]
    for kind, style in theme.EDGE_STYLES.items():
        if kind in kinds:
            line = Line2D([], [], color=style["colour"], linestyle=style["linestyle"], linewidth=style["width"])
            line.set_label(style["label"])
            links.append(line)
            link_map[line] = handlers[kind]
    out = [(STATES_HEADING, states, dict.fromkeys(states, handlers["task"]))]
    if links:
        out.append((FULL_HEADING if form == "full" else COMPACT_HEADING, links, link_map))
    return out


def _legend(fig: Figure, heading: str, handles: list[Any], handler_map: dict[Any, HandlerBase], ncol: int) -> Legend:
    legend = fig.legend(
        handles=handles,
        loc="upper left",
        ncol=ncol,
        title=heading,
        handler_map=handler_map,
        frameon=False,
        fontsize=theme.FONT_SIZES["legend"],
        title_fontsize=theme.FONT_SIZES["legend"],
        alignment="left",
        handlelength=2.6,
        columnspacing=1.6,
    )
    legend.get_title().set_fontweight("bold")
    return legend


def make_legends(
    fig: Figure, kinds: set[str], form: str, max_width: float, drawn: set[str] | frozenset[str] = frozenset()
) -> list[Legend]:
    """The legends of a drawing in ``form`` that uses edges of ``kinds`` and task nodes in the
    states ``drawn``, each on one row if it fits in ``max_width`` inches, else on as few rows as
    fit. The caller positions them."""
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)  # draw_figure draws on an Agg canvas
    renderer = canvas.get_renderer()
    legends = []
    for heading, handles, handler_map in _entries(kinds, form, drawn):
        legend = _legend(fig, heading, handles, handler_map, len(handles))
        width = legend.get_window_extent(renderer).width / fig.dpi
        if width > max_width and len(handles) > 1:
            legend.remove()
            ncol = max(1, int(max_width / (width / len(handles))))
            legend = _legend(fig, heading, handles, handler_map, ncol)
        legends.append(legend)
    return legends
