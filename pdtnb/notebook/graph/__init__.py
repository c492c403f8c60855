"""The dependency graph drawn with networkx and matplotlib only: no graphviz, no JavaScript.

:class:`PipelineGraph` draws a pipeline's tasks left to right, inputs on the left and downstream
tasks to the right, in one of two forms. The **full** form has tasks and repositories as nodes:
tasks are rounded boxes filled by their live state (ready, live, done, failed, idle) and labelled
with their counts; repositories are drums labelled with the ``TASK.LINK`` names linking them and,
given a status, their job count; edges are styled by the kind of link (input, output, status,
required to start, inhibits start). The **compact** form has tasks only, each edge labelled with
the repository passed along it; it is the default past six tasks. In Jupyter the drawing is an
SVG scaled to the cell's width; it also renders to PNG.

The package, one concept a module:

* :mod:`.model`: what is drawn (nodes and edges of either form, states, colours, text);
* :mod:`.layout`: where, in layers and rows (:func:`layered_layout`);
* :mod:`.geometry`: where, in inches (boxes sized to their text, edge routes);
* :mod:`.draw`, :mod:`.shapes`, :mod:`.legend`: the matplotlib figure; :mod:`.theme`: its look;
* :mod:`.svg`: the SVG that fits its container; :mod:`.pipeline_graph`: :class:`PipelineGraph`.

matplotlib is imported only when something is measured or drawn, and never through pyplot.
"""

from __future__ import annotations

from ..style import NODE_STATES, STATE_COLOURS
from .layout import layered_layout
from .model import FORMS, compact_graph, edge_kind, node_state
from .pipeline_graph import PipelineGraph
from .theme import EDGE_STYLES, REPOSITORY_COLOUR

__all__ = [
    "PipelineGraph",
    "layered_layout",
    "node_state",
    "edge_kind",
    "compact_graph",
    "FORMS",
    "STATE_COLOURS",
    "NODE_STATES",
    "EDGE_STYLES",
    "REPOSITORY_COLOUR",
]
