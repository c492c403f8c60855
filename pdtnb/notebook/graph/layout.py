"""Where each node goes, in layers and rows: a small Sugiyama-style layered layout.

Layers come from the data-flow edges only (:func:`~pdtnb.notebook.graph.model.is_flow`), made
acyclic and split into :func:`networkx.topological_generations`; a status repository such as
``done`` goes right after its task, a source right before its first consumer. Long edges get a
lane reserved in each layer they cross, crossings are reduced by barycentre sweeps, and rows are
straightened by an order-preserving least-squares placement. Positions are abstract (layer, row);
:mod:`.geometry` turns them into inches.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import networkx

from ...task.base import Task
from .model import is_flow

__all__ = ["Lane", "Structure", "assign_layers", "build_structure", "layered_layout"]

NODE_SIZE = 1.0  # vertical room of a node, in rows
LANE_SIZE = 0.4  # vertical room of a lane reserved for a long edge, in rows
_LANE_WEIGHT = 3.0  # how much more a lane pulls its neighbours straight than a node does
_SWEEPS = 12
_PLACEMENT_ROUNDS = 4


class Lane:
    """A point a long edge passes through in an intermediate layer."""

    __slots__ = ("index", "pair")

    def __init__(self, pair: tuple[Any, Any], index: int):
        self.pair = pair
        self.index = index

    def __repr__(self) -> str:
        return f"<lane {self.index} of {self.pair!r}>"


@dataclass
class Structure:
    """The computed layout: layers (with lanes), each node's layer and row position (rows grow
    downwards), and the lanes of each long edge, keyed by (lower-layer node, higher-layer node)."""

    graph: networkx.DiGraph[Any]
    layer: dict[Any, int]
    order: list[list[Any]]
    row: dict[Any, float]
    lanes: dict[tuple[Any, Any], list[Lane]] = field(default_factory=dict)

    def column(self, node: Any) -> int:
        """The layer of a node or a lane."""
        return node.index if isinstance(node, Lane) else self.layer[node]


# ---- layers ------------------------------------------------------------------------------------------


def _flow_graph(graph: networkx.DiGraph[Any]) -> networkx.DiGraph[Any]:
    """The data-flow edges, plus task -> status repository for a status nobody reads as data."""
    flow: networkx.DiGraph[Any] = networkx.DiGraph()
    flow.add_nodes_from(graph)
    flow.add_edges_from((u, v) for u, v, attrs in graph.edges(data=True) if u is not v and is_flow(u, v, attrs))
    read = {v for _, v in flow.edges}
    flow.add_edges_from(
        (u, v)
        for u, v, attrs in graph.edges(data=True)
        if isinstance(u, Task) and not isinstance(v, Task) and attrs.get("is_status") and v not in read
    )
    return flow


def _acyclic(flow: networkx.DiGraph[Any]) -> networkx.DiGraph[Any]:
    """``flow`` without the back edges of a depth-first search that starts from its sources."""
    dag = flow.copy()
    roots = sorted(dag, key=lambda n: dag.in_degree(n) > 0)  # stable: sources first, in graph order
    while True:
        try:
            cycle = networkx.find_cycle(dag, source=roots)
        except networkx.NetworkXNoCycle:
            return dag
        dag.remove_edge(*cycle[-1][:2])  # the edge that closed the cycle


def _place_loose(graph: networkx.DiGraph[Any], layer: dict[Any, int], loose: list[Any]) -> None:
    """Nodes no data-flow edge touches go just before their first successor, else just after
    their last predecessor (repeated, as placing one may place another), else in layer 0."""
    placed = set(graph) - set(loose)
    while loose:
        pending = []
        for n in loose:
            after = [layer[s] for s in graph.successors(n) if s in placed and s is not n]
            before = [layer[p] for p in graph.predecessors(n) if p in placed and p is not n]
            if after or before:
                layer[n] = min(after) - 1 if after else max(before) + 1
                placed.add(n)
            else:
                pending.append(n)
        if len(pending) == len(loose):
            break
        loose = pending
    for n in loose:
        layer[n] = 0


def assign_layers(graph: networkx.DiGraph[Any]) -> dict[Any, int]:
    """Each node's layer, from 0: longest path from the sources along the data flow."""
    dag = _acyclic(_flow_graph(graph))
    layer = {n: k for k, generation in enumerate(networkx.topological_generations(dag)) for n in generation}
    # Sources sit right before their first consumer, not all at the far left.
    for n in graph:
        if dag.in_degree(n) == 0 and dag.out_degree(n) > 0:
            layer[n] = min(layer[s] for s in dag.successors(n)) - 1
    _place_loose(graph, layer, [n for n in graph if dag.degree(n) == 0])
    low = min(layer.values(), default=0)
    return {n: layer[n] - low for n in graph}


# ---- the layered graph with lanes ------------------------------------------------------------------


@dataclass
class _Layered:
    """Every edge as a chain between adjacent layers (through lanes), with neighbour weights."""

    layer_of: dict[Any, int]
    sizes: dict[Any, float]
    up: dict[Any, list[tuple[Any, float]]]
    down: dict[Any, list[tuple[Any, float]]]
    lanes: dict[tuple[Any, Any], list[Lane]]

    def add(self, node: Any, layer: int, size: float) -> None:
        self.layer_of[node] = layer
        self.sizes[node] = size
        self.up[node], self.down[node] = [], []

    def link(self, a: Any, b: Any) -> None:
        weight = 1.0 + (isinstance(a, Lane) + isinstance(b, Lane)) * _LANE_WEIGHT
        self.down[a].append((b, weight))
        self.up[b].append((a, weight))


def _layered(graph: networkx.DiGraph[Any], layer: dict[Any, int]) -> _Layered:
    out = _Layered({}, {}, {}, {}, {})
    for n in graph:
        out.add(n, layer[n], NODE_SIZE)
    seen: set[frozenset[int]] = set()
    for u, v in graph.edges:
        key = frozenset((id(u), id(v)))
        if u is v or layer[u] == layer[v] or key in seen:
            continue
        seen.add(key)
        lo, hi = (u, v) if layer[u] < layer[v] else (v, u)
        lanes = [Lane((lo, hi), k) for k in range(layer[lo] + 1, layer[hi])]
        for lane in lanes:
            out.add(lane, lane.index, LANE_SIZE)
        if lanes:
            out.lanes[(lo, hi)] = lanes
        for a, b in itertools.pairwise([lo, *lanes, hi]):
            out.link(a, b)
    return out


# ---- order within layers ---------------------------------------------------------------------------


def _initial_order(graph: networkx.DiGraph[Any], layered: _Layered, n_layers: int) -> list[list[Any]]:
    """Depth first from the left, following the graph's own order."""
    order: list[list[Any]] = [[] for _ in range(n_layers)]
    visited: set[int] = set()
    index = {n: i for i, n in enumerate(graph)}
    for start in sorted(graph, key=lambda n: (layered.layer_of[n], index[n])):
        stack = [start]
        while stack:
            n = stack.pop()
            if id(n) in visited:
                continue
            visited.add(id(n))
            order[layered.layer_of[n]].append(n)
            stack.extend(reversed([m for m, _ in layered.down[n]] + [m for m, _ in layered.up[n]]))
    return order


def _positions(order: list[list[Any]]) -> dict[Any, int]:
    return {n: i for row in order for i, n in enumerate(row)}


def _inversions(seq: list[int]) -> int:
    """How many pairs i < j have seq[i] > seq[j] (counted with a Fenwick tree)."""
    size = max(seq, default=0) + 2
    tree = [0] * (size + 1)
    count = 0
    for k, q in enumerate(seq):
        i, below = q + 1, 0
        while i > 0:
            below += tree[i]
            i -= i & -i
        count += k - below
        i = q + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return count


def _crossings(order: list[list[Any]], layered: _Layered) -> int:
    pos = _positions(order)
    total = 0
    for row in order[:-1]:
        ends = sorted((pos[a], pos[b]) for a in row for b, _ in layered.down[a])
        total += _inversions([b for _, b in ends])
    return total


def _sweep(order: list[list[Any]], layered: _Layered, downwards: bool) -> None:
    """Sort each layer by the barycentre of its neighbours in the previous one."""
    pos = _positions(order)
    layers = range(1, len(order)) if downwards else range(len(order) - 2, -1, -1)
    for k in layers:
        other = order[k - 1] if downwards else order[k + 1]
        scale, other_scale = 1.0 / max(1, len(order[k]) - 1), 1.0 / max(1, len(other) - 1)

        def key(n: Any, scale: float = scale, other_scale: float = other_scale) -> tuple[float, int]:
            nbrs = layered.up[n] if downwards else layered.down[n]
            if not nbrs:
                return (pos[n] * scale, pos[n])
            total = sum(w for _, w in nbrs)
            return (sum(pos[m] * other_scale * w for m, w in nbrs) / total, pos[n])

        order[k].sort(key=key)
        for i, n in enumerate(order[k]):
            pos[n] = i


def _reduce_crossings(order: list[list[Any]], layered: _Layered) -> list[list[Any]]:
    best, best_crossings = [list(r) for r in order], _crossings(order, layered)
    for i in range(_SWEEPS):
        if best_crossings == 0:
            break
        _sweep(order, layered, downwards=i % 2 == 0)
        crossings = _crossings(order, layered)
        if crossings < best_crossings:
            best, best_crossings = [list(r) for r in order], crossings
    return best


# ---- rows ------------------------------------------------------------------------------------------


def _pava(desired: list[float], weights: list[float], gaps: list[float]) -> list[float]:
    """Positions closest (weighted least squares) to ``desired`` that keep their order with at
    least ``gaps[i]`` between item i and i + 1: isotonic regression by pool-adjacent-violators."""
    offsets = [0.0, *itertools.accumulate(gaps)]
    blocks: list[list[float]] = []  # [value, weight, count]
    for d, w, c in zip(desired, weights, offsets):
        blocks.append([d - c, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    out = [v for v, _, n in blocks for _ in range(int(n))]
    return [u + c for u, c in zip(out, offsets)]


class _Rows:
    """Vertical placement: stacked rows, then each node pulled towards its neighbours without
    reordering. A hub (many edges) pulls each neighbour weakly, so a fan spreads out rather than
    crowding the hub."""

    def __init__(self, order: list[list[Any]], layered: _Layered):
        self.order = order
        self.layered = layered
        self.degree = {n: len(layered.up[n]) + len(layered.down[n]) for n in layered.up}
        self.row: dict[Any, float] = {}
        for nodes in order:
            t = -sum(self.gaps(nodes)) / 2
            for n, gap in itertools.zip_longest(nodes, self.gaps(nodes), fillvalue=0.0):
                self.row[n] = t
                t += gap

    def gaps(self, nodes: list[Any]) -> list[float]:
        sizes = self.layered.sizes
        return [(sizes[a] + sizes[b]) / 2 for a, b in itertools.pairwise(nodes)]

    def place(self, k: int, use_up: bool, use_down: bool) -> None:
        nodes = self.order[k]
        desired, weights = [], []
        for n in nodes:
            nbrs = (self.layered.up[n] if use_up else []) + (self.layered.down[n] if use_down else [])
            pulls = [(m, w / self.degree[m]) for m, w in nbrs]
            total = sum(w for _, w in pulls)
            desired.append(sum(self.row[m] * w for m, w in pulls) / total if pulls else self.row[n])
            weights.append(total if pulls else 0.1)
        for n, t in zip(nodes, _pava(desired, weights, self.gaps(nodes))):
            self.row[n] = t

    def settle(self) -> dict[Any, float]:
        n_layers = len(self.order)
        for _ in range(_PLACEMENT_ROUNDS):
            for k in range(1, n_layers):
                self.place(k, True, False)
            for k in range(n_layers - 2, -1, -1):
                self.place(k, False, True)
        for _ in range(_PLACEMENT_ROUNDS):
            for k in [*range(n_layers), *range(n_layers - 1, -1, -1)]:
                self.place(k, True, True)
        top = min(self.row.values(), default=0.0)
        return {n: t - top for n, t in self.row.items()}


def build_structure(graph: networkx.DiGraph[Any]) -> Structure:
    """The layered layout of ``graph``: layers, order within them, rows, lanes."""
    layer = assign_layers(graph)
    layered = _layered(graph, layer)
    n_layers = max(layer.values(), default=-1) + 1
    order = _reduce_crossings(_initial_order(graph, layered, n_layers), layered)
    row = _Rows(order, layered).settle()
    return Structure(graph=graph, layer=layer, order=order, row=row, lanes=layered.lanes)


def layered_layout(graph: networkx.DiGraph[Any]) -> dict[Hashable, tuple[float, float]]:
    """Positions for :meth:`Pipeline.graph`'s nodes: ``x`` is the layer (data flows left to right:
    a task is to the right of its inputs, a status repository right after its task), ``y`` the row
    (downwards negative). Nodes in a layer are at least 1 apart; long edges have lanes reserved.

    Works on any DiGraph; edges without link dispositions all count as data flow.
    """
    s = build_structure(graph)
    return {n: (float(s.layer[n]), -s.row[n]) for n in graph.nodes}
