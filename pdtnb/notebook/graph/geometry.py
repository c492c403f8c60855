"""Where everything goes on the page, in inches: each node's box (sized to its text), the columns
and the gaps between them, and each edge's route as a :class:`matplotlib.path.Path`.

An edge leaves its source's side (the right, or the left when it goes back) at a port of its own,
runs to the column's edge, crosses each gap as an S-shaped cubic Bézier curve, crosses the columns
in between in the lane reserved for it, and enters its target's side in a straight run that
carries the arrowhead. In the compact form an edge's label sits in the first gap it crosses: just
past its task, where all the edges leaving that side carry the same repository (they leave from one
port, past one label, and fan out), else in the middle of the first curve; and the edges of one
kind into a task end at one point, under one arrowhead.

matplotlib is imported here only to measure text and build paths.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...task.base import Task
from . import theme
from .layout import Lane, Structure
from .model import TextLine

if TYPE_CHECKING:
    from matplotlib.path import Path

__all__ = ["Line", "Box", "DrawnEdge", "Placement", "text_width", "measure_boxes", "place"]

Point = tuple[float, float]
_EdgeSpec = tuple[Any, Any, str, "str | None"]  # source, target, kind, label
_MOVETO, _LINETO, _CURVE4 = 1, 2, 4  # the codes of matplotlib.path.Path (imported only to build one)


@functools.lru_cache(maxsize=4096)
def text_width(text: str, size: float, weight: str = "normal", style: theme.FontStyle = "normal") -> float:
    """Width of ``text`` in inches."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    font = FontProperties(size=size, weight=weight, style=style)
    width, _, _ = text_to_path.get_text_width_height_descent(text, font, ismath=False)
    return width / 72.0


@dataclass(frozen=True)
class Line:
    """A line of text with its font."""

    text: str
    size: float
    weight: str = "normal"
    style: theme.FontStyle = "normal"

    @classmethod
    def of(cls, line: TextLine) -> Line:
        role = line.role
        return cls(
            line.text,
            theme.FONT_SIZES[role],
            theme.FONT_WEIGHTS.get(role, "normal"),
            theme.FONT_STYLES.get(role, "normal"),
        )

    @property
    def height(self) -> float:
        return self.size * theme.LINE_SPACING / 72.0

    @property
    def width(self) -> float:
        return text_width(self.text, self.size, self.weight, self.style)


@dataclass
class Box:
    """A node's box: its lines of text, size, and where the text starts below the top."""

    lines: list[Line]
    width: float
    height: float
    text_top: float


_MIN_TASK_WIDTH = 0.8
_MIN_REPOSITORY_WIDTH = 0.7


def measure_boxes(node_lines: dict[Any, list[TextLine]]) -> dict[Any, Box]:
    """Each node's box: a task's fits its text; a repository's (a drum) leaves room for its caps."""
    boxes = {}
    for node, text in node_lines.items():
        lines = [Line.of(t) for t in text]
        text_h = sum(line.height for line in lines)
        text_w = max((line.width for line in lines), default=0.0) + 2 * theme.PAD_X
        if isinstance(node, Task):
            boxes[node] = Box(lines, max(text_w, _MIN_TASK_WIDTH), text_h + 2 * theme.PAD_Y, theme.PAD_Y)
        else:
            top = 2 * theme.CAP + theme.PAD_Y * 0.6
            height = text_h + top + theme.PAD_Y * 0.6 + theme.CAP
            boxes[node] = Box(lines, max(text_w, _MIN_REPOSITORY_WIDTH), height, top)
    return boxes


@dataclass
class DrawnEdge:
    """An edge as drawn: its route, and in the compact form its label and the label's centre."""

    source: Any
    target: Any
    kind: str
    path: Path
    label: str | None = None
    label_at: Point | None = None


@dataclass
class Placement:
    """The drawing's geometry: the graph's size, each node's box and centre, each edge."""

    width: float
    height: float
    boxes: dict[Any, Box]
    centres: dict[Any, Point]
    edges: list[DrawnEdge] = field(default_factory=list)


# ---- columns -----------------------------------------------------------------------------------------


@dataclass
class _Columns:
    """The columns' centres and widths, and the gaps between them."""

    x: list[float]
    width: list[float]

    def edge(self, column: int, side: str) -> float:
        """The x of a column's right (``R``) or left (``L``) edge."""
        return self.x[column] + (self.width[column] / 2 if side == "R" else -self.width[column] / 2)


def _column_widths(structure: Structure, boxes: dict[Any, Box]) -> list[float]:
    return [max((boxes[n].width for n in col if not isinstance(n, Lane)), default=0.4) for col in structure.order]


def _stretch(gaps: list[float], free: float) -> list[float]:
    """Gaps widened, each by at most :data:`~.theme.MAX_GAP` - :data:`~.theme.MIN_GAP`, to use
    ``free`` inches of spare width."""
    if not gaps or free <= 0:
        return gaps
    extra = min(free / len(gaps), theme.MAX_GAP - theme.MIN_GAP)
    return [g + extra for g in gaps]


def _columns(widths: list[float], gaps: list[float]) -> _Columns:
    xs, x = [], theme.MARGIN
    for w, gap in zip(widths, [*gaps, 0.0]):
        xs.append(x + w / 2)
        x += w + gap
    return _Columns(xs, widths)


# ---- edges: sides, lanes, ports ----------------------------------------------------------------------


@dataclass
class _Plan:
    """How an edge runs: the sides it leaves and enters by, the (column, y) of the lanes it
    crosses, its label (compact form), and whether the label is on a straight run just after the
    source (else in the middle of the first curve)."""

    source: Any
    target: Any
    kind: str
    side_out: str
    side_in: str
    lanes: list[tuple[int, Any]]  # (column, Lane), a Lane's y is in place()'s lane_y
    label: str | None
    label_first: bool = False


class _Router:
    """Plans and routes every edge of one drawing."""

    def __init__(self, structure: Structure, boxes: dict[Any, Box], edges: list[_EdgeSpec], merge_ends: bool):
        self.s = structure
        self.boxes = boxes
        self.merge_ends = merge_ends
        self.shared: set[tuple[int, str]] = set()  # the edge ends that share a port with others
        self.plans = [self._plan(u, v, kind, label) for u, v, kind, label in edges]
        # A side of a task that all its labelled edges leave with one label (one repository, the
        # usual case) has the label once, just past the task, and the edges fan out after it.
        labels: dict[tuple[int, str], set[str]] = defaultdict(set)
        for p in self.plans:
            if p.label:
                labels[(id(p.source), p.side_out)].add(p.label)
        for p in self.plans:
            p.label_first = bool(p.label) and p.side_out != p.side_in and len(labels[(id(p.source), p.side_out)]) == 1

    def _plan(self, u: Any, v: Any, kind: str, label: str | None) -> _Plan:
        lu, lv = self.s.layer[u], self.s.layer[v]
        side_out, side_in = ("R", "L") if lu < lv else (("L", "R") if lu > lv else ("R", "R"))
        lo, hi = (u, v) if lu <= lv else (v, u)
        lanes = [(lane.index, lane) for lane in self.s.lanes.get((lo, hi), [])]
        if u is not lo:
            lanes.reverse()
        return _Plan(u, v, kind, side_out, side_in, lanes, label)  # lanes' y are filled in later

    def first_gap(self, plan: _Plan) -> int:
        column = self.s.layer[plan.source]
        return column if plan.side_out == "R" else column - 1

    def label_room(self, plan: _Plan) -> float:
        """The width a gap needs for this edge's label."""
        if not plan.label:
            return 0.0
        width = text_width(plan.label, theme.FONT_SIZES["link"])
        if plan.label_first:
            return width + 2 * theme.LABEL_PAD + theme.CURVE_ROOM
        return width + 2 * theme.LABEL_ROOM + theme.ARROW_LEAD

    def gaps(self, n_columns: int) -> list[float]:
        gaps = [theme.MIN_GAP] * max(0, n_columns - 1)
        for plan in self.plans:
            k = self.first_gap(plan)
            if 0 <= k < len(gaps):
                gaps[k] = max(gaps[k], self.label_room(plan))
        return gaps

    def ports(self, centres: dict[Any, Point], lane_y: dict[Any, float]) -> dict[tuple[int, str], float]:
        """The y of each edge's end on its node (key: plan index, ``out`` or ``in``): spread over
        the node's side in the order of where the edges go, so they do not cross at the node."""
        sides: dict[tuple[int, str], dict[Any, list[tuple[float, int, str]]]] = defaultdict(lambda: defaultdict(list))
        for i, p in enumerate(self.plans):
            first = lane_y[p.lanes[0][1]] if p.lanes else centres[p.target][1]
            last = lane_y[p.lanes[-1][1]] if p.lanes else centres[p.source][1]
            group = (p.label, "out") if p.label_first else (i, "out")
            sides[(id(p.source), p.side_out)][group].append((first, i, "out"))
            into = (p.kind, "in") if self.merge_ends else (i, "in")
            sides[(id(p.target), p.side_in)][into].append((last, i, "in"))
        port_y: dict[tuple[int, str], float] = {}
        self.shared = {
            (i, end) for groups in sides.values() for ends in groups.values() if len(ends) > 1 for _, i, end in ends
        }
        for groups in sides.values():
            ordered = sorted(groups.values(), key=lambda ends: (-sum(e[0] for e in ends) / len(ends), ends[0][1]))
            first_end = ordered[0][0]
            plan = self.plans[first_end[1]]
            node = plan.source if first_end[2] == "out" else plan.target
            for y, ends in zip(self._spread(node, len(ordered), centres), ordered):
                for _, i, end in ends:
                    port_y[(i, end)] = y
        self._snap(port_y)
        return port_y

    def _snap(self, port_y: dict[tuple[int, str], float]) -> None:
        """An edge whose ends are nearly level is made level (by moving an end it does not share
        with other edges), so it is drawn straight, not with a kink."""
        for i, p in enumerate(self.plans):
            out, into = (i, "out"), (i, "in")
            if p.lanes or p.side_out == p.side_in or abs(port_y[out] - port_y[into]) >= theme.SNAP:
                continue
            if into not in self.shared:
                port_y[into] = port_y[out]
            elif out not in self.shared:
                port_y[out] = port_y[into]

    def _spread(self, node: Any, n: int, centres: dict[Any, Point]) -> list[float]:
        box = self.boxes[node]
        usable = max(0.0, box.height / 2 - (0.13 if isinstance(node, Task) else theme.CAP + 0.07))
        step = min(theme.PORT_STEP, 2 * usable / (n - 1)) if n > 1 else 0.0
        return [centres[node][1] + step * ((n - 1) / 2 - k) for k in range(n)]


# ---- edges: paths ------------------------------------------------------------------------------------


class _PathBuilder:
    """A path of straight runs and S-curves (cubic Béziers with horizontal ends)."""

    def __init__(self, start: Point):
        self.vertices: list[Point] = [start]
        self.codes: list[int] = [_MOVETO]

    @property
    def here(self) -> Point:
        return self.vertices[-1]

    def line_to(self, p: Point) -> None:
        if p != self.here:
            self.vertices.append(p)
            self.codes.append(_LINETO)

    def curve_to(self, c1: Point, c2: Point, p: Point) -> None:
        self.vertices += [c1, c2, p]
        self.codes += [_CURVE4] * 3

    def s_curve_to(self, p: Point) -> None:
        a = self.here
        if a[1] == p[1]:
            self.line_to(p)
            return
        mid = (a[0] + p[0]) / 2
        self.curve_to((mid, a[1]), (mid, p[1]), p)

    def path(self) -> Path:
        from matplotlib.path import Path

        return Path(self.vertices, self.codes)


def _toward(x: float, limit: float, direction: float) -> float:
    """``x``, but no further than ``limit`` in ``direction`` (+1 right, -1 left)."""
    return min(x, limit) if direction > 0 else max(x, limit)


def _route(
    plan: _Plan, ends: tuple[Point, Point], columns: _Columns, lane_y: dict[Any, float], s: Structure
) -> tuple[Path, Point | None]:
    """An edge's path from ``ends[0]`` (on its source) to ``ends[1]`` (its arrow's tip), and its
    label's centre."""
    start, end = ends
    lead = theme.ARROW_LEAD
    b = _PathBuilder(start)
    if plan.side_out == plan.side_in:  # same column: a loop out into the gap on the right
        bulge = columns.edge(s.layer[plan.source], "R") + 0.35
        b.curve_to((bulge, start[1]), (bulge, end[1]), (end[0] + lead, end[1]))
        b.line_to(end)
        return b.path(), (bulge - 0.1, (start[1] + end[1]) / 2)
    direction = 1.0 if plan.side_out == "R" else -1.0
    back = "L" if direction > 0 else "R"  # the side of a column an edge enters by
    out = columns.edge(s.layer[plan.source], plan.side_out)
    b.line_to((max(out, start[0]) if direction > 0 else min(out, start[0]), start[1]))
    label_at = None
    if plan.label_first:  # a straight run past the label, then the curve
        run = text_width(plan.label or "", theme.FONT_SIZES["link"]) + 2 * theme.LABEL_PAD
        label_at = (b.here[0] + direction * run / 2, start[1])
        b.line_to((b.here[0] + direction * run, start[1]))
    for column, lane in plan.lanes:
        y = lane_y[lane]
        b.s_curve_to((columns.edge(column, back), y))
        label_at = label_at or _middle(b)
        b.line_to((columns.edge(column, plan.side_out), y))
    column_in = columns.edge(s.layer[plan.target], plan.side_in)
    b.s_curve_to((_toward(column_in, end[0] - direction * lead, direction), end[1]))
    label_at = label_at or _middle(b)
    b.line_to(end)
    return b.path(), label_at if plan.label else None


def _middle(b: _PathBuilder) -> Point:
    """The middle of the last curve (or run) added."""
    a, p = b.vertices[-4] if b.codes[-1] == _CURVE4 else b.vertices[-2], b.here
    return ((a[0] + p[0]) / 2, (a[1] + p[1]) / 2)


def place(structure: Structure, boxes: dict[Any, Box], edges: list[_EdgeSpec], merge_ends: bool = False) -> Placement:
    """The geometry of a drawing: ``edges`` are (source, target, kind, label). With
    ``merge_ends``, the edges of one kind into a node end at one point, under one arrowhead."""
    router = _Router(structure, boxes, edges, merge_ends)
    widths = _column_widths(structure, boxes)
    gaps = router.gaps(len(widths))
    graph_w = sum(widths) + sum(gaps) + 2 * theme.MARGIN
    gaps = _stretch(gaps, theme.PAGE_WIDTH - graph_w)
    columns = _columns(widths, gaps)
    graph_w = sum(widths) + sum(gaps) + 2 * theme.MARGIN

    max_h = max((b.height for b in boxes.values()), default=0.5)
    pitch = max_h + theme.ROW_GAP
    graph_h = max(structure.row.values(), default=0.0) * pitch + max_h + 2 * theme.MARGIN

    def y_of(n: Any) -> float:
        return graph_h - theme.MARGIN - max_h / 2 - structure.row[n] * pitch

    centres = {n: (columns.x[structure.layer[n]], y_of(n)) for n in structure.graph}
    lane_y = {lane: y_of(lane) for lanes in structure.lanes.values() for lane in lanes}
    for plan in router.plans:  # two edges between the same pair (both ways) use lanes a little apart
        if structure.graph.has_edge(plan.target, plan.source):
            offset = 0.06 if structure.layer[plan.source] <= structure.layer[plan.target] else -0.06
            plan.lanes = [(c, _Offset(lane, offset)) for c, lane in plan.lanes]
            lane_y.update({o: lane_y[o.lane] + o.offset for _, o in plan.lanes})
    port_y = router.ports(centres, lane_y)

    placement = Placement(graph_w, graph_h, boxes, centres)
    labelled: set[tuple[int, str, str | None]] = set()  # a label shared by edges is placed once
    for i, plan in enumerate(router.plans):
        start = (_side_x(plan.source, plan.side_out, 0.02, centres, boxes), port_y[(i, "out")])
        end = (_side_x(plan.target, plan.side_in, 0.035, centres, boxes), port_y[(i, "in")])
        path, label_at = _route(plan, (start, end), columns, lane_y, structure)
        if plan.label_first:
            key = (id(plan.source), plan.side_out, plan.label)
            label_at = None if key in labelled else label_at
            labelled.add(key)
        placement.edges.append(DrawnEdge(plan.source, plan.target, plan.kind, path, plan.label, label_at))
    return placement


@dataclass(frozen=True)
class _Offset:
    """A lane, shifted: the two edges of a pair linked both ways do not share a line."""

    lane: Lane
    offset: float


def _side_x(node: Any, side: str, gap: float, centres: dict[Any, Point], boxes: dict[Any, Box]) -> float:
    half = boxes[node].width / 2 + gap
    return centres[node][0] + (half if side == "R" else -half)
