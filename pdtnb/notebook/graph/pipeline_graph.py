""":class:`PipelineGraph`: a pipeline's dependency graph, drawn, coloured by a status, and shown in
Jupyter as an SVG that fits the cell (PNG too, for the dashboard and for files)."""

from __future__ import annotations

import copy
import io
from typing import TYPE_CHECKING, Any

from . import svg, theme
from .layout import Structure, build_structure
from .model import COMPACT_PAST_TASKS, FORMS, GraphModel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ...pipeline import Pipeline
    from ...status import PipelineStatus
    from .geometry import Placement

__all__ = ["PipelineGraph"]


class PipelineGraph:
    """A drawing of a pipeline's dependency graph, optionally coloured by a status.

    ``status`` is a :class:`~pdtnb.status.PipelineStatus` (``await pdtnb.pipeline_status(p)``).
    ``form`` is ``full`` (tasks and repositories as nodes, an edge per link), ``compact`` (tasks
    only; the repositories passed between them label the edges) or ``auto``: compact past six
    tasks, or when the full form would be too wide to read at a notebook cell's width.
    :attr:`form` is the form drawn.

    The layout is computed once; :meth:`with_status` returns a copy drawn with newer counts.
    In Jupyter the object displays itself as an SVG scaled to the cell's width (and a PNG);
    :meth:`to_svg` and :meth:`to_png` give the text and bytes, :meth:`figure` a
    :class:`matplotlib.figure.Figure` to customise.

    In the figure, each node's patch is labelled ``_pdtnb_task:NAME`` or ``_pdtnb_repo:TASK.LINK``
    and each edge's ``_pdtnb_edge:KIND`` (the leading underscore keeps them out of legends);
    :meth:`node_colours` gives the fill used for each task.
    """

    def __init__(
        self, pipeline: Pipeline, status: PipelineStatus | None = None, form: str = "auto", *, title: str | None = None
    ):
        if form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(map(repr, FORMS))}, not {form!r}")
        self.pipeline = pipeline
        self.status = status
        self.title = title
        self.model, self._structure = self._choose(form)
        self._cache: dict[Any, Any] = {}

    def _choose(self, form: str) -> tuple[GraphModel, Structure]:
        if form == "auto" and len(self.pipeline.tasks) > COMPACT_PAST_TASKS:
            form = "compact"
        model = GraphModel(self.pipeline, "full" if form == "auto" else form)
        structure = build_structure(model.graph)
        if form == "auto" and not svg.fits(
            self._place(model, structure, model.nominal_status()).width * 72, theme.SMALLEST_FONT
        ):
            model = GraphModel(self.pipeline, "compact")
            structure = build_structure(model.graph)
        return model, structure

    @property
    def form(self) -> str:
        """The form drawn: ``compact`` or ``full``."""
        return self.model.form

    def __repr__(self) -> str:
        n_tasks = len(self.pipeline.tasks)
        n_repos = len(self.model.repository_names)
        drawn = "with status" if self.status is not None else "without status"
        return f"<PipelineGraph {n_tasks} tasks, {n_repos} repositories, {self.form} form, {drawn}>"

    def with_status(self, status: PipelineStatus | None) -> PipelineGraph:
        """A copy of this drawing (same form, layout and title) coloured by ``status``."""
        other = copy.copy(self)
        other.status = status
        other._cache = {}
        return other

    # ---- what is drawn -----------------------------------------------------------------------

    def node_states(self) -> dict[str, str]:
        """Each task's name and the state it is drawn in (see :func:`node_state`)."""
        return self.model.node_states(self.status)

    def node_colours(self) -> dict[str, str]:
        """Each task's name and the fill colour of its node in :meth:`figure`."""
        return self.model.node_colours(self.status)

    def _place(self, model: GraphModel, structure: Structure, status: PipelineStatus | None) -> Placement:
        from .geometry import measure_boxes, place

        boxes = measure_boxes(model.node_lines(status, theme.MAX_NAMES))
        return place(structure, boxes, model.edges(), merge_ends=model.form == "compact")

    # ---- rendering ---------------------------------------------------------------------------

    def figure(self) -> Figure:
        """The drawing as a new :class:`matplotlib.figure.Figure` (on an Agg canvas; no pyplot)."""
        from .draw import draw_figure

        placement = self._place(self.model, self._structure, self.status)
        return draw_figure(self.model, placement, self.status, self.title)

    def to_png(self, dpi: int = 100) -> bytes:
        """The drawing as PNG bytes."""
        key = ("png", dpi)
        if key not in self._cache:
            buf = io.BytesIO()
            self.figure().savefig(buf, format="png", dpi=dpi, facecolor="white", metadata={"Software": "pdtnb"})
            self._cache[key] = buf.getvalue()
        png: bytes = self._cache[key]
        return png

    def to_svg(self, fit: bool = True) -> str:
        """The drawing as an SVG document, text kept as text (so it can be searched and copied).

        With ``fit`` (the default) it scales to its container's width, as long as its text stays
        legible at a notebook cell's width (see :mod:`pdtnb.notebook.graph.svg`); without, it has
        its natural size in points.
        """
        import matplotlib

        if "svg" not in self._cache:
            buf = io.BytesIO()
            with matplotlib.rc_context({"svg.fonttype": "none"}):
                self.figure().savefig(buf, format="svg", facecolor="white", metadata={"Date": None})
            self._cache["svg"] = buf.getvalue().decode("utf-8")
        return svg.fit_width(self._cache["svg"], theme.SMALLEST_FONT) if fit else self._cache["svg"]

    def _repr_png_(self) -> bytes:
        return self.to_png()

    def _repr_svg_(self) -> str:
        return self.to_svg()
