"""The dependency graph drawn with networkx and matplotlib only: no graphviz, no JavaScript.

:class:`PipelineGraph` draws a pipeline's tasks and repositories left to right, inputs on the
left and downstream tasks to the right. Tasks are rounded boxes filled by their live state (ready,
live, done, failed, idle) and labelled with their counts; repositories are drums labelled with the
``TASK.LINK`` names linking them and, given a status, their job count. Edges are styled by the kind
of link (input, output, status, required to start, inhibits start). It renders to PNG and SVG and
displays itself in Jupyter.

The layout (:func:`layered_layout`) is a small Sugiyama-style layering computed here: layers from
the data-flow edges only (a status repository such as ``done`` goes right after its task), long
edges routed through reserved lanes, crossings reduced by barycentre sweeps, and rows straightened
by an order-preserving least-squares placement.

matplotlib is imported only when something is drawn, and never through pyplot: figures are made
with :class:`matplotlib.figure.Figure` and the Agg canvas, so nothing is displayed twice in a
notebook and no global figure state is kept.
"""

from __future__ import annotations

import copy
import functools
import io
import itertools
import math
from collections.abc import Hashable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import networkx

from ..task.base import Link, Task

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..pipeline import Pipeline
    from ..status import PipelineStatus, TaskStatus

from .style import NODE_STATES, STATE_COLOURS

__all__ = [
    "PipelineGraph",
    "layered_layout",
    "node_state",
    "edge_kind",
    "STATE_COLOURS",
    "EDGE_STYLES",
    "REPOSITORY_COLOUR",
]


#: What each state means, for the legend.
_STATE_LABELS = {
    "ready": "ready",
    "live": "live",
    "done": "done",
    "failed": "failed",
    "idle": "idle / waiting",
}

#: Fill and outline of repository nodes.
REPOSITORY_COLOUR = "#F4F1E6"
_REPOSITORY_EDGE = "#8C8371"
_TASK_EDGE = "#2D3748"
_DARK_TEXT = "#1A202C"

#: How each kind of edge (:func:`edge_kind`) is drawn, and its legend label.
EDGE_STYLES: dict[str, dict[str, Any]] = {
    "input": {"colour": "#2B6CB0", "linestyle": "solid", "width": 1.5, "label": "input"},
    "requires": {"colour": "#2B6CB0", "linestyle": (0, (5, 3)), "width": 1.3, "label": "required to start"},
    "output": {"colour": "#6B46C1", "linestyle": "solid", "width": 1.5, "label": "output"},
    "status": {"colour": "#718096", "linestyle": (0, (1, 2)), "width": 1.4, "label": "status"},
    "inhibits": {"colour": "#C53030", "linestyle": (0, (4, 2)), "width": 1.3, "label": "inhibits start"},
    "other": {"colour": "#A0AEC0", "linestyle": (0, (1, 3)), "width": 1.0, "label": "other link"},
}

#: The link flags an edge of ``Pipeline.graph()`` carries (every field of Link but its repository).
_DISPOSITIONS = tuple(f.name for f in fields(Link) if f.name != "repo")


def node_state(task_status: TaskStatus | None) -> str:
    """The state a task is drawn in: ``failed`` if any job failed, else ``live`` if any is running,
    else ``ready`` if any could start, else ``done`` if any finished, else ``idle``."""
    if task_status is None:
        return "idle"
    if task_status.failed > 0:
        return "failed"
    if task_status.live > 0:
        return "live"
    if task_status.ready > 0:
        return "ready"
    if task_status.done > 0:
        return "done"
    return "idle"


def edge_kind(source: Any, target: Any, attrs: dict[str, Any]) -> str:
    """The kind of a :meth:`Pipeline.graph` edge: ``input``, ``requires`` (required to start but
    not an input, e.g. an upstream task's ``done``), ``inhibits`` (repository to task), ``output``,
    ``status`` (task to repository) or ``other``."""
    if isinstance(target, Task) and not isinstance(source, Task):
        if attrs.get("is_input"):
            return "input"
        if attrs.get("required_for_start"):
            return "requires"
        if attrs.get("inhibits_start"):
            return "inhibits"
        return "other"
    if attrs.get("is_output"):
        return "output"
    if attrs.get("is_status"):
        return "status"
    return "other"


def _is_flow(source: Any, target: Any, attrs: dict[str, Any]) -> bool:
    """Whether an edge carries data forward (the edges layers are computed from)."""
    if not any(k in attrs for k in _DISPOSITIONS):
        return True  # a plain DiGraph: every edge counts
    if isinstance(target, Task) and not isinstance(source, Task):
        return bool(attrs.get("is_input") or attrs.get("required_for_start"))
    if isinstance(source, Task) and not isinstance(target, Task):
        return bool(attrs.get("is_output"))
    return False


# ---- layout --------------------------------------------------------------------------------------

_REAL_SIZE = 1.0  # vertical room of a node, in rows
_DUMMY_SIZE = 0.4  # vertical room of a lane reserved for a long edge, in rows


class _Lane:
    """A point a long edge passes through in an intermediate layer."""

    __slots__ = ("index", "pair")

    def __init__(self, pair: tuple[Any, Any], index: int):
        self.pair = pair
        self.index = index

    def __repr__(self) -> str:
        return f"<lane {self.index} of {self.pair!r}>"


@dataclass
class _Structure:
    """The computed layout: layers (with lanes), each node's layer and row position (rows grow
    downwards), and the lanes of each long edge, keyed by (lower-layer node, higher-layer node)."""

    graph: networkx.DiGraph
    layer: dict[Any, int]
    order: list[list[Any]]
    row: dict[Any, float]
    lanes: dict[tuple[Any, Any], list[_Lane]] = field(default_factory=dict)


def _assign_layers(graph: networkx.DiGraph) -> dict[Any, int]:
    nodes = list(graph.nodes)
    flow: dict[Any, list[Any]] = {n: [] for n in nodes}
    flow_in: set[Any] = set()
    for u, v, attrs in graph.edges(data=True):
        if u is not v and _is_flow(u, v, attrs):
            flow[u].append(v)
            flow_in.add(v)
    # Status-only repositories (written as status, read by nobody as data-in) go right after their task.
    for u, v, attrs in graph.edges(data=True):
        if isinstance(u, Task) and not isinstance(v, Task) and attrs.get("is_status") and v not in flow_in:
            if v not in flow[u]:
                flow[u].append(v)

    # Break cycles: drop the back edges of a depth-first search started from the sources.
    has_pred = {v for succs in flow.values() for v in succs}
    roots = [n for n in nodes if n not in has_pred] + [n for n in nodes if n in has_pred]
    kept: dict[Any, list[Any]] = {n: [] for n in nodes}
    state: dict[Any, int] = {}
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(flow[root]))]
        while stack:
            node, it = stack[-1]
            for nxt in it:
                seen = state.get(nxt)
                if seen == 1:
                    continue  # back edge: ignored for layering
                kept[node].append(nxt)
                if seen is None:
                    state[nxt] = 1
                    stack.append((nxt, iter(flow[nxt])))
                    break
            else:
                state[node] = 2
                stack.pop()

    preds: dict[Any, list[Any]] = {n: [] for n in nodes}
    for u, succs in kept.items():
        for v in succs:
            preds[v].append(u)
    # Longest path from the sources, in a topological order.
    indegree = {n: len(preds[n]) for n in nodes}
    queue = [n for n in nodes if indegree[n] == 0]
    layer: dict[Any, int] = {}
    i = 0
    while i < len(queue):
        n = queue[i]
        i += 1
        layer[n] = max((layer[p] + 1 for p in preds[n]), default=0)
        for s in kept[n]:
            indegree[s] -= 1
            if indegree[s] == 0:
                queue.append(s)
    # Sources sit right before their first consumer, not all at the far left.
    for n in nodes:
        if not preds[n] and kept[n]:
            layer[n] = min(layer[s] for s in kept[n]) - 1
    # Nodes no data-flow edge touches go next to their neighbours.
    loose = [n for n in nodes if not preds[n] and not kept[n]]
    placed = set(nodes) - set(loose)
    for _ in range(len(loose) + 1):
        pending = []
        for n in loose:
            after = [layer[s] for s in graph.successors(n) if s in placed and s is not n]
            before = [layer[p] for p in graph.predecessors(n) if p in placed and p is not n]
            if after:
                layer[n] = min(after) - 1
            elif before:
                layer[n] = max(before) + 1
            else:
                pending.append(n)
                continue
            placed.add(n)
        if len(pending) == len(loose):
            break
        loose = pending
    for n in loose:
        layer[n] = 0
    low = min(layer.values(), default=0)
    return {n: layer[n] - low for n in nodes}


def _inversions(seq: list[int]) -> int:
    """How many pairs i < j have seq[i] > seq[j] (a Fenwick tree)."""
    if not seq:
        return 0
    size = max(seq) + 2
    tree = [0] * (size + 1)
    count = 0
    for k, q in enumerate(seq):
        i, s = q + 1, 0
        while i > 0:
            s += tree[i]
            i -= i & -i
        count += k - s
        i = q + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return count


def _pava(desired: list[float], weights: list[float], gaps: list[float]) -> list[float]:
    """Positions closest (weighted least squares) to ``desired`` that keep their order with at
    least ``gaps[i]`` between item i and i + 1: isotonic regression by pool-adjacent-violators."""
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    blocks: list[list[float]] = []  # [value, weight, count]
    for d, w, c in zip(desired, weights, offsets):
        blocks.append([d - c, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    out: list[float] = []
    for v, _, n in blocks:
        out.extend([v] * int(n))
    return [u + c for u, c in zip(out, offsets)]


def _structure(graph: networkx.DiGraph) -> _Structure:
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    layer = _assign_layers(graph)
    n_layers = max(layer.values(), default=-1) + 1

    # The proper layered graph: each long edge becomes a chain through lanes.
    up: dict[Any, list[tuple[Any, float]]] = {n: [] for n in nodes}
    down: dict[Any, list[tuple[Any, float]]] = {n: [] for n in nodes}
    lanes: dict[tuple[Any, Any], list[_Lane]] = {}
    sizes: dict[Any, float] = dict.fromkeys(nodes, _REAL_SIZE)
    layer_of: dict[Any, int] = dict(layer)
    seen_pairs: set[frozenset] = set()
    for u, v in graph.edges:
        if u is v or layer[u] == layer[v]:
            continue
        key = frozenset((id(u), id(v)))
        if key in seen_pairs:
            continue
        seen_pairs.add(key)
        lo, hi = (u, v) if layer[u] < layer[v] else (v, u)
        chain = [lo]
        pair_lanes = []
        for k in range(layer[lo] + 1, layer[hi]):
            lane = _Lane((lo, hi), k)
            pair_lanes.append(lane)
            sizes[lane] = _DUMMY_SIZE
            layer_of[lane] = k
            up[lane], down[lane] = [], []
            chain.append(lane)
        chain.append(hi)
        if pair_lanes:
            lanes[(lo, hi)] = pair_lanes
        for a, b in itertools.pairwise(chain):
            weight = 1.0 + (isinstance(a, _Lane) + isinstance(b, _Lane)) * 3.0
            down[a].append((b, weight))
            up[b].append((a, weight))

    # Initial order: depth first from the left, following the graph's own order.
    order: list[list[Any]] = [[] for _ in range(n_layers)]
    visited: set[int] = set()

    def visit(start: Any) -> None:
        stack = [start]
        while stack:
            n = stack.pop()
            if id(n) in visited:
                continue
            visited.add(id(n))
            order[layer_of[n]].append(n)
            nxt = [m for m, _ in down[n]] + [m for m, _ in up[n]]
            stack.extend(reversed(nxt))

    for n in sorted(nodes, key=lambda n: (layer[n], index[n])):
        visit(n)

    def positions() -> dict[Any, int]:
        return {n: i for row in order for i, n in enumerate(row)}

    def crossings() -> int:
        pos = positions()
        total = 0
        for row in order[:-1]:
            edges = sorted((pos[a], pos[b]) for a in row for b, _ in down[a])
            total += _inversions([q for _, q in edges])
        return total

    def sweep(downwards: bool) -> None:
        pos = positions()
        rng = range(1, n_layers) if downwards else range(n_layers - 2, -1, -1)
        for k in rng:
            row = order[k]
            scale = 1.0 / max(1, len(row) - 1)

            def key(n: Any, k: int = k, scale: float = scale) -> tuple[float, int]:
                nbrs = up[n] if downwards else down[n]
                here = pos[n] * scale
                if not nbrs:
                    return (here, pos[n])
                other = order[k - 1] if downwards else order[k + 1]
                oscale = 1.0 / max(1, len(other) - 1)
                total = sum(w for _, w in nbrs)
                return (sum(pos[m] * oscale * w for m, w in nbrs) / total, pos[n])

            row.sort(key=key)
            for i, n in enumerate(row):
                pos[n] = i

    best = [list(r) for r in order]
    best_crossings = crossings()
    for i in range(12):
        if best_crossings == 0:
            break
        sweep(downwards=i % 2 == 0)
        c = crossings()
        if c < best_crossings:
            best, best_crossings = [list(r) for r in order], c
    order = best

    # Vertical placement: stacked rows, then pulled towards their neighbours without reordering.
    row_pos: dict[Any, float] = {}

    def gaps(row: list[Any]) -> list[float]:
        return [(sizes[a] + sizes[b]) / 2 for a, b in itertools.pairwise(row)]

    for row in order:
        g = gaps(row)
        total = sum(g)
        t = -total / 2
        for i, n in enumerate(row):
            row_pos[n] = t
            if i < len(g):
                t += g[i]

    degree = {n: len(up[n]) + len(down[n]) for n in up}

    def place(k: int, use_up: bool, use_down: bool) -> None:
        # Each node is pulled towards its neighbours, a hub (many edges) pulling each one weakly,
        # so the nodes around a fan spread out rather than crowd the hub.
        row = order[k]
        desired, weights = [], []
        for n in row:
            nbrs = (up[n] if use_up else []) + (down[n] if use_down else [])
            if nbrs:
                pulls = [(m, w / degree[m]) for m, w in nbrs]
                total = sum(w for _, w in pulls)
                desired.append(sum(row_pos[m] * w for m, w in pulls) / total)
                weights.append(total)
            else:
                desired.append(row_pos[n])
                weights.append(0.1)
        for n, t in zip(row, _pava(desired, weights, gaps(row))):
            row_pos[n] = t

    for _ in range(4):
        for k in range(1, n_layers):
            place(k, True, False)
        for k in range(n_layers - 2, -1, -1):
            place(k, False, True)
    for _ in range(4):
        for k in range(n_layers):
            place(k, True, True)
        for k in range(n_layers - 1, -1, -1):
            place(k, True, True)
    top = min(row_pos.values(), default=0.0)
    row_pos = {n: t - top for n, t in row_pos.items()}
    return _Structure(graph=graph, layer=layer, order=order, row=row_pos, lanes=lanes)


def layered_layout(graph: networkx.DiGraph) -> dict[Hashable, tuple[float, float]]:
    """Positions for :meth:`Pipeline.graph`'s nodes: ``x`` is the layer (data flows left to right:
    a task is to the right of its inputs, a status repository right after its task), ``y`` the row
    (downwards negative). Nodes in a layer are at least 1 apart; long edges have lanes reserved.

    Works on any DiGraph; edges without link dispositions all count as data flow.
    """
    s = _structure(graph)
    return {n: (float(s.layer[n]), -s.row[n]) for n in graph.nodes}


# ---- drawing -------------------------------------------------------------------------------------

_NAME_SIZE = 9.5
_SMALL_SIZE = 8.0
_LINE = 1.3  # line height, in font sizes
_PAD_X = 0.12  # inches
_PAD_Y = 0.07
_CAP = 0.06  # half-height of a repository drum's cap
_COLUMN_GAP = 0.75
_ROW_GAP = 0.32
_MARGIN = 0.25
_MIN_WIDTH = 7.0
_MAX_NAMES = 3


@functools.lru_cache(maxsize=4096)
def _text_width(text: str, size: float, weight: str) -> float:
    """Width of ``text`` in inches."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    w, _, _ = text_to_path.get_text_width_height_descent(text, FontProperties(size=size, weight=weight), ismath=False)
    return w / 72.0


@dataclass
class _Line:
    text: str
    size: float
    weight: str = "normal"
    style: str = "normal"

    @property
    def height(self) -> float:
        return self.size * _LINE / 72.0

    @property
    def width(self) -> float:
        return _text_width(self.text, self.size, self.weight)


@dataclass
class _Box:
    lines: list[_Line]
    width: float
    height: float
    text_top: float  # distance from the box's top to its text's top


def _luminance(colour: str) -> float:
    from matplotlib.colors import to_rgb

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in to_rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _text_colour(fill: str) -> str:
    return "white" if _luminance(fill) < 0.22 else _DARK_TEXT


def _drum_path(x: float, y: float, w: float, h: float, cap: float, outline: bool = True):
    """A drum (cylinder seen from the front) centred on (x, y): its outline, or the front arc of
    its cap."""
    from matplotlib.path import Path

    n = 24
    left, right, top, bottom = x - w / 2, x + w / 2, y + h / 2 - cap, y - h / 2 + cap
    rx = w / 2
    if not outline:
        pts = [(x - rx * math.cos(math.pi * i / n), top - cap * math.sin(math.pi * i / n)) for i in range(n + 1)]
        return Path(pts)
    pts = [(left, top), (left, bottom)]
    pts += [(x - rx * math.cos(math.pi * i / n), bottom - cap * math.sin(math.pi * i / n)) for i in range(1, n)]
    pts += [(right, bottom), (right, top)]
    pts += [(x + rx * math.cos(math.pi * i / n), top + cap * math.sin(math.pi * i / n)) for i in range(1, n)]
    pts += [(left, top), (left, top)]
    codes = [Path.MOVETO] + [Path.LINETO] * (len(pts) - 2) + [Path.CLOSEPOLY]
    return Path(pts, codes)


_Point = tuple[float, float]


def _trim_end(points: list[_Point], length: float) -> tuple[list[_Point], _Point, _Point]:
    """``points`` shortened by ``length`` at the end; also the cut point and the unit direction
    from there to the old end."""
    end = points[-1]
    remaining = length
    i = len(points) - 1
    while i > 0:
        a, b = points[i - 1], points[i]
        seg = math.dist(a, b)
        if seg >= remaining and seg > 0:
            t = (seg - remaining) / seg
            cut = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
            break
        remaining -= seg
        i -= 1
    else:
        cut = points[0]
    d = math.dist(cut, end)
    direction = ((end[0] - cut[0]) / d, (end[1] - cut[1]) / d) if d > 0 else (1.0, 0.0)
    return [*points[:i], cut], cut, direction


def _bezier(p0: _Point, p1: _Point, p2: _Point, p3: _Point, n: int = 24) -> list[_Point]:
    """A cubic Bézier curve, sampled."""
    out = []
    for k in range(n + 1):
        t = k / n
        m = 1 - t
        a, b, c, d = m**3, 3 * m * m * t, 3 * m * t * t, t**3
        out.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    return out


def _draw_edge(ax: Any, kind: str, points: list[_Point]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Polygon

    style = EDGE_STYLES[kind]
    colour = style["colour"]
    if kind == "inhibits":
        shaft, end, direction = _trim_end(points, 0.015)
        end = points[-1]
    else:
        shaft, end, direction = _trim_end(points, 0.12)
    xs, ys = zip(*shaft)
    line = Line2D(
        xs,
        ys,
        color=colour,
        linestyle=style["linestyle"],
        linewidth=style["width"],
        solid_capstyle="butt",
        dash_capstyle="butt",
        solid_joinstyle="round",
        zorder=2,
    )
    line.set_label(f"_pdtnb_edge:{kind}")
    ax.add_line(line)
    nx, ny = -direction[1], direction[0]
    if kind == "inhibits":
        half = 0.08
        bar = Line2D(
            [end[0] - nx * half, end[0] + nx * half],
            [end[1] - ny * half, end[1] + ny * half],
            color=colour,
            linewidth=2.4,
            solid_capstyle="butt",
            zorder=2.1,
        )
        ax.add_line(bar)
    else:
        tip = points[-1]
        half = 0.045
        head = Polygon(
            [tip, (end[0] + nx * half, end[1] + ny * half), (end[0] - nx * half, end[1] - ny * half)],
            closed=True,
            facecolor=colour,
            edgecolor=colour,
            linewidth=0.6,
            zorder=2.1,
        )
        ax.add_patch(head)


@functools.lru_cache(maxsize=1)
def _legend_handlers() -> dict[str, Any]:
    """Legend keys drawn like the graph: a rounded box per state, a drum, and each kind of edge
    with its arrowhead (or bar, for an inhibitor)."""
    from matplotlib.legend_handler import HandlerBase
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyBboxPatch, PathPatch, Polygon

    class TaskKey(HandlerBase):
        def create_artists(self, legend, orig_handle, xdescent, ydescent, width, height, fontsize, trans):
            patch = FancyBboxPatch(
                (-xdescent + 1, -ydescent), width - 2, height, boxstyle="round,pad=0,rounding_size=3", transform=trans
            )
            self.update_prop(patch, orig_handle, legend)
            patch.set_transform(trans)
            return [patch]

    class DrumKey(HandlerBase):
        def create_artists(self, legend, orig_handle, xdescent, ydescent, width, height, fontsize, trans):
            x, y, w, h, cap = -xdescent + width / 2, -ydescent + height / 2, width * 0.6, height * 1.3, height * 0.2
            body = PathPatch(_drum_path(x, y, w, h, cap), transform=trans)
            self.update_prop(body, orig_handle, legend)
            body.set_transform(trans)
            rim = PathPatch(_drum_path(x, y, w, h, cap, outline=False), fill=False, transform=trans)
            rim.set_edgecolor(orig_handle.get_edgecolor())
            rim.set_linewidth(orig_handle.get_linewidth())
            return [body, rim]

    class EdgeKey(HandlerBase):
        def __init__(self, kind: str):
            super().__init__()
            self.kind = kind

        def create_artists(self, legend, orig_handle, xdescent, ydescent, width, height, fontsize, trans):
            style = EDGE_STYLES[self.kind]
            colour = style["colour"]
            x0, x1, y = -xdescent, -xdescent + width, -ydescent + height / 2
            head = 0.6 * fontsize
            end = x1 - (1 if self.kind == "inhibits" else head)
            shaft = Line2D(
                [x0, end], [y, y], color=colour, linestyle=style["linestyle"], linewidth=style["width"], transform=trans
            )
            shaft.set_dash_capstyle("butt")
            if self.kind == "inhibits":
                tip = Line2D([x1 - 1, x1 - 1], [y - height * 0.45, y + height * 0.45], color=colour, linewidth=2.4)
            else:
                tip = Polygon([(x1, y), (end, y + head * 0.38), (end, y - head * 0.38)], closed=True, color=colour)
            tip.set_transform(trans)
            return [shaft, tip]

    handlers: dict[str, Any] = {kind: EdgeKey(kind) for kind in EDGE_STYLES}
    handlers["task"] = TaskKey()
    handlers["repository"] = DrumKey()
    return handlers


class PipelineGraph:
    """A drawing of a pipeline's dependency graph, optionally coloured by a status.

    ``status`` is a :class:`~pdtnb.status.PipelineStatus` (``await pdtnb.pipeline_status(p)``).
    The layout is computed once; :meth:`with_status` returns a copy drawn with newer counts.
    In Jupyter the object displays itself (PNG or SVG); :meth:`to_png` and :meth:`to_svg` give the
    bytes and text, :meth:`figure` a :class:`matplotlib.figure.Figure` to customise.

    In the figure, each node's patch is labelled ``_pdtnb_task:NAME`` or ``_pdtnb_repo:TASK.LINK``
    and each edge's line ``_pdtnb_edge:KIND`` (the leading underscore keeps them out of legends);
    :meth:`node_colours` gives the fill used for each task.
    """

    def __init__(self, pipeline: Pipeline, status: PipelineStatus | None = None, *, title: str | None = None):
        self.pipeline = pipeline
        self.status = status
        self.title = title
        self._structure = _structure(pipeline.graph())
        self._cache: dict[Any, Any] = {}

    def __repr__(self) -> str:
        n_tasks = sum(isinstance(n, Task) for n in self._structure.graph)
        n_repos = self._structure.graph.number_of_nodes() - n_tasks
        drawn = "with status" if self.status is not None else "without status"
        return f"<PipelineGraph {n_tasks} tasks, {n_repos} repositories, {drawn}>"

    def with_status(self, status: PipelineStatus | None) -> PipelineGraph:
        """A copy of this drawing (same layout and title) coloured by ``status``."""
        other = copy.copy(self)
        other.status = status
        other._cache = {}
        return other

    # ---- what is drawn -----------------------------------------------------------------------

    def _task_status(self, task: Task) -> TaskStatus | None:
        if self.status is None:
            return None
        try:
            return self.status.task(task.name)
        except KeyError:
            return None

    def node_states(self) -> dict[str, str]:
        """Each task's name and the state it is drawn in (see :func:`node_state`)."""
        return {n.name: node_state(self._task_status(n)) for n in self._structure.graph if isinstance(n, Task)}

    def node_colours(self) -> dict[str, str]:
        """Each task's name and the fill colour of its node in :meth:`figure`."""
        return {name: STATE_COLOURS[state] for name, state in self.node_states().items()}

    def _repo_names(self) -> dict[int, list[tuple[str, str]]]:
        """For each repository (by id): the (task, link) names linking it, writers first."""
        names: dict[int, list[tuple[int, str, str]]] = {}
        for task in self.pipeline.tasks.values():
            for link_name, link in task.links.items():
                rank = 0 if (link.is_output or link.is_status) else 1
                names.setdefault(id(link.repo), []).append((rank, task.name, link_name))
        return {k: [(t, ln) for _, t, ln in sorted(v, key=lambda e: e[0])] for k, v in names.items()}

    def _repo_count(self, names: list[tuple[str, str]]) -> int | None:
        if self.status is None:
            return None
        for task_name, link_name in names:
            try:
                task_status = self.status.task(task_name)
            except KeyError:
                continue
            for link in task_status.links:
                if link.name == link_name:
                    return link.count
        return None

    def _boxes(self) -> dict[Any, _Box]:
        repo_names = self._repo_names()
        boxes: dict[Any, _Box] = {}
        for node in self._structure.graph:
            if isinstance(node, Task):
                ts = self._task_status(node)
                lines = [_Line(node.name, _NAME_SIZE, "bold")]
                if ts is not None:
                    lines.append(_Line(f"ready {ts.ready} · live {ts.live}", _SMALL_SIZE))
                    lines.append(_Line(f"done {ts.done} · failed {ts.failed}", _SMALL_SIZE))
                if node.disabled or (ts is not None and ts.disabled):
                    lines.append(_Line("(disabled)", _SMALL_SIZE, style="italic"))
                text_h = sum(line.height for line in lines)
                width = max(max(line.width for line in lines) + 2 * _PAD_X, 1.0)
                boxes[node] = _Box(lines, width, text_h + 2 * _PAD_Y, _PAD_Y)
            else:
                names = repo_names.get(id(node), [])
                shown = [f"{t}.{ln}" for t, ln in names[:_MAX_NAMES]]
                if len(names) > _MAX_NAMES:
                    shown[-1] = f"+{len(names) - _MAX_NAMES + 1} more"
                if not shown:
                    shown = [type(node).__name__]
                lines = [_Line(s, _SMALL_SIZE) for s in shown]
                count = self._repo_count(names)
                if count is not None:
                    lines.append(_Line(f"{count} job" + ("" if count == 1 else "s"), _SMALL_SIZE, "bold"))
                text_h = sum(line.height for line in lines)
                width = max(max(line.width for line in lines) + 2 * _PAD_X, 0.9)
                top = 2 * _CAP + _PAD_Y * 0.6
                boxes[node] = _Box(lines, width, text_h + top + _PAD_Y * 0.6 + _CAP, top)
        return boxes

    # ---- rendering ---------------------------------------------------------------------------

    def figure(self) -> Figure:
        """The drawing as a new :class:`matplotlib.figure.Figure` (on an Agg canvas; no pyplot)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import FancyBboxPatch, Patch, PathPatch

        s = self._structure
        graph = s.graph
        boxes = self._boxes()
        n_layers = len(s.order)

        # Geometry, in inches (one data unit is one inch).
        col_w = [max((boxes[n].width for n in row if not isinstance(n, _Lane)), default=0.4) for row in s.order]
        max_h = max((b.height for b in boxes.values()), default=0.5)
        pitch = max_h + _ROW_GAP
        graph_w = sum(col_w) + _COLUMN_GAP * max(0, n_layers - 1) + 2 * _MARGIN
        rows = max(s.row.values(), default=0.0)
        graph_h = rows * pitch + max_h + 2 * _MARGIN
        col_x, x = [], _MARGIN
        for w in col_w:
            col_x.append(x + w / 2)
            x += w + _COLUMN_GAP

        def pos(n: Any) -> tuple[float, float]:
            column = n.index if isinstance(n, _Lane) else s.layer[n]
            return (col_x[column], graph_h - _MARGIN - max_h / 2 - s.row[n] * pitch)

        title_h = 0.55 if self.title else 0.15
        legend_h = 1.4
        fig_w = max(graph_w, _MIN_WIDTH)
        fig_h = title_h + graph_h + legend_h
        fig = Figure(figsize=(fig_w, fig_h), facecolor="white")
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()

        def set_geometry(fig_w: float, fig_h: float) -> None:
            fig.set_size_inches(fig_w, fig_h)
            ax.set_position(((fig_w - graph_w) / 2 / fig_w, legend_h / fig_h, graph_w / fig_w, graph_h / fig_h))
            ax.set_xlim(0, graph_w)
            ax.set_ylim(0, graph_h)

        set_geometry(fig_w, fig_h)

        # Nodes.
        repo_names = self._repo_names()
        patches: dict[Any, Any] = {}
        centres: dict[Any, tuple[float, float]] = {}
        colours = self.node_colours()
        for node in graph:
            box = boxes[node]
            cx, cy = pos(node)
            centres[node] = (cx, cy)
            if isinstance(node, Task):
                fill = colours[node.name]
                ts = self._task_status(node)
                disabled = node.disabled or (ts is not None and ts.disabled)
                patch = FancyBboxPatch(
                    (cx - box.width / 2, cy - box.height / 2),
                    box.width,
                    box.height,
                    boxstyle="round,pad=0,rounding_size=0.12",
                    facecolor=fill,
                    edgecolor=_TASK_EDGE,
                    linewidth=1.4,
                    linestyle=(0, (4, 2)) if disabled else "solid",
                    zorder=3,
                )
                patch.set_label(f"_pdtnb_task:{node.name}")
                text_colour = _text_colour(fill)
            else:
                patch = PathPatch(
                    _drum_path(cx, cy, box.width, box.height, _CAP),
                    facecolor=REPOSITORY_COLOUR,
                    edgecolor=_REPOSITORY_EDGE,
                    linewidth=1.1,
                    zorder=3,
                )
                names = repo_names.get(id(node))
                patch.set_label(f"_pdtnb_repo:{names[0][0]}.{names[0][1]}" if names else f"_pdtnb_repo:{len(patches)}")
                ax.add_patch(
                    PathPatch(
                        _drum_path(cx, cy, box.width, box.height, _CAP, outline=False),
                        fill=False,
                        edgecolor=_REPOSITORY_EDGE,
                        linewidth=1.0,
                        zorder=3.1,
                    )
                )
                text_colour = _DARK_TEXT
            ax.add_patch(patch)
            patches[node] = patch
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
                    color=text_colour,
                    zorder=4,
                )
                y -= line.height

        # Edges: routed between columns (never through a node), a (possibly dashed) shaft, then a
        # solid head, or a bar for an inhibitor.
        used_kinds: set[str] = set()
        routes = self._routes(centres, boxes, col_x, col_w, pos)
        for (u, v), points in routes.items():
            kind = edge_kind(u, v, graph.edges[u, v])
            used_kinds.add(kind)
            _draw_edge(ax, kind, points)

        if not graph:
            ax.text(graph_w / 2, graph_h / 2, "(no tasks)", ha="center", va="center", fontsize=_NAME_SIZE)

        # Title and legends.
        title = None
        if self.title:
            title = fig.text(0.5, 1 - 0.3 / fig_h, self.title, ha="center", va="center", fontsize=12, fontweight="bold")

        state_handles = [
            Patch(facecolor=STATE_COLOURS[k], edgecolor=_TASK_EDGE, linewidth=1.0, label=_STATE_LABELS[k])
            for k in NODE_STATES
        ]
        repo_handle = Patch(facecolor=REPOSITORY_COLOUR, edgecolor=_REPOSITORY_EDGE, linewidth=1.0, label="repository")
        link_handles: list[Any] = [repo_handle]
        handlers = _legend_handlers()
        link_map: dict[Any, Any] = {repo_handle: handlers["repository"]}
        for kind, style in EDGE_STYLES.items():
            if kind in used_kinds:
                line = Line2D([], [], color=style["colour"], linestyle=style["linestyle"], linewidth=style["width"])
                line.set_label(style["label"])
                link_handles.append(line)
                link_map[line] = handlers[kind]
        state_map = dict.fromkeys(state_handles, handlers["task"])
        legend_kw = {
            "frameon": False,
            "fontsize": 9,
            "title_fontsize": 9,
            "alignment": "left",
            "handlelength": 2.6,
            "columnspacing": 1.6,
        }

        def make_legend(handles: list[Any], heading: str, ncol: int) -> Any:
            handler_map = state_map if heading == "Task state" else link_map
            legend = fig.legend(
                handles=handles, loc="upper left", ncol=ncol, title=heading, handler_map=handler_map, **legend_kw
            )
            legend.get_title().set_fontweight("bold")
            return legend

        # Measure the legends (fewer columns if one is too wide), then size the figure to fit them.
        renderer = canvas.get_renderer()
        px = fig.dpi
        legends = []
        for handles, heading in ((state_handles, "Task state"), (link_handles, "Repositories and links")):
            legend = make_legend(handles, heading, len(handles))
            width = legend.get_window_extent(renderer).width / px
            if width > fig_w - 2 * _MARGIN and len(handles) > 1:
                ncol = max(1, int((fig_w - 2 * _MARGIN) / (width / len(handles))))
                legend.remove()
                legend = make_legend(handles, heading, ncol)
            legends.append(legend)
        heights = [legend.get_window_extent(renderer).height / px for legend in legends]
        widths = [legend.get_window_extent(renderer).width / px for legend in legends]
        fig_w = max(fig_w, max(widths) + 2 * _MARGIN)
        legend_h = sum(heights) + 0.25
        fig_h = title_h + graph_h + legend_h
        set_geometry(fig_w, fig_h)
        y = legend_h - 0.05
        for legend, h in zip(legends, heights):
            legend.set_bbox_to_anchor((_MARGIN / fig_w, y / fig_h), transform=fig.transFigure)
            y -= h
        if title is not None:
            title.set_position((0.5, 1 - 0.3 / fig_h))
        return fig

    def _routes(self, centres: dict, boxes: dict, col_x: list[float], col_w: list[float], pos: Any) -> dict:
        """Each edge's polyline. An edge leaves its source's right side (left side when it goes
        back) at a port of its own, runs straight to the column's edge, crosses each gap as an
        S-curve, crosses intermediate columns in its reserved lane, and enters its target's side.
        """
        s = self._structure
        graph = s.graph
        edges = [(u, v) for u, v in graph.edges if u is not v]
        plans = {}
        ports: dict[tuple[int, str], list[tuple[float, int, tuple[Any, Any], str]]] = {}
        for i, (u, v) in enumerate(edges):
            lu, lv = s.layer[u], s.layer[v]
            side_u, side_v = ("R", "L") if lu < lv else (("L", "R") if lu > lv else ("R", "R"))
            lo, hi = (u, v) if lu <= lv else (v, u)
            chain = s.lanes.get((lo, hi), [])
            offset = (0.06 if u is lo else -0.06) if graph.has_edge(v, u) else 0.0
            mids = [(lane.index, pos(lane)[1] + offset) for lane in chain]
            if u is not lo:
                mids.reverse()
            plans[(u, v)] = (side_u, side_v, mids)
            first_y = mids[0][1] if mids else centres[v][1]
            last_y = mids[-1][1] if mids else centres[u][1]
            ports.setdefault((id(u), side_u), []).append((first_y, i, (u, v), "u"))
            ports.setdefault((id(v), side_v), []).append((last_y, i, (u, v), "v"))

        port_y: dict[tuple[tuple[Any, Any], str], float] = {}
        for (_, _), entries in ports.items():
            node = entries[0][2][0] if entries[0][3] == "u" else entries[0][2][1]
            box = boxes[node]
            usable = max(0.0, box.height / 2 - (0.13 if isinstance(node, Task) else _CAP + 0.07))
            entries.sort(key=lambda e: (-e[0], e[1]))
            n = len(entries)
            step = min(0.13, 2 * usable / (n - 1)) if n > 1 else 0.0
            for k, (_, _, edge, end) in enumerate(entries):
                port_y[(edge, end)] = centres[node][1] + step * ((n - 1) / 2 - k)

        def side_x(node: Any, side: str, gap: float) -> float:
            half = boxes[node].width / 2 + gap
            return centres[node][0] + (half if side == "R" else -half)

        def column_edge(column: int, side: str) -> float:
            return col_x[column] + (col_w[column] / 2 if side == "R" else -col_w[column] / 2)

        routes = {}
        for u, v in edges:
            side_u, side_v, mids = plans[(u, v)]
            yu, yv = port_y[((u, v), "u")], port_y[((u, v), "v")]
            start = (side_x(u, side_u, 0.02), yu)
            end = (side_x(v, side_v, 0.035), yv)
            if side_u == side_v:  # same column: a loop out into the gap on the right
                bulge = column_edge(s.layer[u], "R") + 0.35
                routes[(u, v)] = _bezier(start, (bulge, yu), (bulge, yv), end)
                continue
            # Horizontal runs: out of the source's column, across each lane's column, into the target's.
            runs = [(start, (column_edge(s.layer[u], side_u), yu))]
            forward = side_u == "R"
            for column, y in mids:
                runs.append(
                    (
                        (column_edge(column, "L" if forward else "R"), y),
                        (column_edge(column, "R" if forward else "L"), y),
                    )
                )
            runs.append(((column_edge(s.layer[v], side_v), yv), end))
            points = [runs[0][0], runs[0][1]]
            for (_, a), (b, c) in itertools.pairwise(runs):
                mid = (a[0] + b[0]) / 2
                points.extend(_bezier(a, (mid, a[1]), (mid, b[1]), b)[1:])
                points.append(c)
            routes[(u, v)] = points
        return routes

    def to_png(self, dpi: int = 100) -> bytes:
        """The drawing as PNG bytes."""
        key = ("png", dpi)
        if key not in self._cache:
            buf = io.BytesIO()
            self.figure().savefig(buf, format="png", dpi=dpi, facecolor="white", metadata={"Software": "pdtnb"})
            self._cache[key] = buf.getvalue()
        return self._cache[key]

    def to_svg(self) -> str:
        """The drawing as an SVG document (text kept as text, so it can be searched and copied)."""
        import matplotlib

        if "svg" not in self._cache:
            buf = io.BytesIO()
            with matplotlib.rc_context({"svg.fonttype": "none"}):
                self.figure().savefig(buf, format="svg", facecolor="white", metadata={"Date": None})
            self._cache["svg"] = buf.getvalue().decode("utf-8")
        return self._cache["svg"]

    def _repr_png_(self) -> bytes:
        return self.to_png()

    def _repr_svg_(self) -> str:
        return self.to_svg()
