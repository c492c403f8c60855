"""The dependency graph drawing: layout, colours by state, labels, PNG and SVG, no pyplot."""

from __future__ import annotations

import asyncio
import inspect
import io
import itertools
import math
import re
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import networkx
import pytest

import pdtnb
from pdtnb.status import TaskStatus

matplotlib = pytest.importorskip("matplotlib")

import numpy as np  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.image import imread  # noqa: E402

from pdtnb.notebook.graph import (  # noqa: E402
    EDGE_STYLES,
    NODE_STATES,
    STATE_COLOURS,
    PipelineGraph,
    layered_layout,
    node_state,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARTIFACTS = Path(__file__).parent / "artifacts"


# ---- pipelines -------------------------------------------------------------------------------------


def _with_signature(func, names: list[str]):
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]

    async def wrapper(**kwargs):
        return await func(**kwargs)

    wrapper.__signature__ = inspect.Signature(params)
    return wrapper


def build_chain(n_stages: int, jobs: dict[str, int], fail: tuple[int, str] | None = None) -> pdtnb.Pipeline:
    """A plug chain: stage i reads ``s{i-1}`` (``inp`` for the first), writes ``s{i}``; stage
    ``fail[0]`` raises on job ``fail[1]``."""
    inp = pdtnb.InProcessMetadataRepository(dict(jobs))
    tasks: list[pdtnb.InProcessSyncTask] = []
    for i in range(n_stages):
        src, dst = ("inp" if i == 0 else f"s{i - 1}"), f"s{i}"
        task = pdtnb.InProcessSyncTask(f"stage{i}", pdtnb.InProcessMetadataRepository())
        task.link(dst, pdtnb.InProcessMetadataRepository(), is_output=True)
        if i == 0:
            task.link("inp", inp, is_input=True)
        else:
            task.plug(tasks[-1])

        def body(i=i, src=src, dst=dst):
            async def run(job, **repos):
                if fail is not None and fail == (i, job):
                    raise RuntimeError(f"stage{i} cannot handle {job}")
                await repos[dst].dump(job, await repos[src].info(job) + 1)

            return run

        task.func = _with_signature(body(), ["job", src, dst])
        tasks.append(task)
    return pdtnb.Pipeline(tasks, pdtnb.Session())


def build_fan(n_branches: int) -> pdtnb.Pipeline:
    """``split`` feeds ``n_branches`` tasks, which all feed ``merge`` (which also reads the raw
    input: a long edge) and a blocklist repository inhibits ``merge``."""
    inp = pdtnb.InProcessMetadataRepository({"a": 1})

    def task(name: str) -> pdtnb.InProcessSyncTask:
        t = pdtnb.InProcessSyncTask(name, pdtnb.InProcessMetadataRepository())
        t.link(f"{name}_out", pdtnb.InProcessMetadataRepository(), is_output=True)
        return t

    split = task("split")
    split.link("inp", inp, is_input=True)
    branches = []
    for i in range(n_branches):
        b = task(f"branch{i}")
        b.plug(split)
        branches.append(b)
    merge = task("merge")
    for b in branches:
        merge.plug(b)
    merge.link("raw", inp, is_input=True)
    merge.link("blocklist", pdtnb.InProcessMetadataRepository(), inhibits_start=True)
    tasks = [split, *branches, merge]
    for t in tasks:

        async def run(job, _t=t, **repos):
            await repos[f"{_t.name}_out"].dump(job, 1)

        t.func = _with_signature(run, ["job", *t.links])
    return pdtnb.Pipeline(tasks, pdtnb.Session())


#: Six tasks: fetch -> parse -> (count, index, lint), count and index -> report.
SIX_TASKS = {
    "fetch": ("pages", []),
    "parse": ("parsed", ["fetch"]),
    "count": ("counts", ["parse"]),
    "index": ("index", ["parse"]),
    "lint": ("problems", ["parse"]),
    "report": ("report", ["count", "index"]),
}

#: Ten tasks, six deep.
TEN_TASKS = {
    "fetch": ("pages", []),
    "parse": ("parsed", ["fetch"]),
    "tokenize": ("tokens", ["parse"]),
    "tag": ("tags", ["parse"]),
    "detect": ("langs", ["parse"]),
    "count": ("counts", ["tokenize"]),
    "index": ("index", ["tokenize", "tag"]),
    "classify": ("classes", ["tag", "detect"]),
    "summarize": ("summary", ["count", "index", "classify"]),
    "publish": ("site", ["summarize"]),
}


def build_dag(spec: dict[str, tuple[str, list[str]]], logs: bool = False, fail: tuple[str, str] | None = None):
    """Each task of ``spec`` (name: (output, upstream tasks)) reads its upstream tasks' outputs
    (the first ones read ``inp``) and writes its output, and with ``logs`` (all but the last) an
    output ``NAME_log`` nobody reads; task ``fail[0]`` fails job ``fail[1]``."""
    inp = pdtnb.InProcessMetadataRepository({"a": 1, "b": 2, "c": 3})
    tasks: dict[str, pdtnb.InProcessSyncTask] = {}
    for i, (name, (out, upstream)) in enumerate(spec.items()):
        task = pdtnb.InProcessSyncTask(name, pdtnb.InProcessMetadataRepository())
        task.link(out, pdtnb.InProcessMetadataRepository(), is_output=True)
        if logs and i < len(spec) - 1:
            task.link(f"{name}_log", pdtnb.InProcessMetadataRepository(), is_output=True)
        if not upstream:
            task.link("inp", inp, is_input=True)
        for up in upstream:
            task.plug(tasks[up], output_links=[spec[up][0]])
        outputs = [n for n, link in task.links.items() if link.is_output]

        async def run(job, _name=name, _outputs=outputs, **repos):
            if fail == (_name, job):
                raise RuntimeError(f"{_name} cannot handle {job}")
            for output in _outputs:
                await repos[output].dump(job, 1)

        task.func = _with_signature(run, ["job", *task.links])
        tasks[name] = task
    return pdtnb.Pipeline(list(tasks.values()), pdtnb.Session())


async def example_status(pipeline: pdtnb.Pipeline, new_jobs: dict[str, int] | None = None):
    async with pipeline:
        await pipeline.run(timeout=10)
        if new_jobs:
            first = next(iter(pipeline.tasks.values()))
            first.links["inp"].repo.data.update(new_jobs)
        return await pdtnb.pipeline_status(pipeline)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pdtnb-graph-test")
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def patches_by_label(fig) -> dict[str, object]:
    ax = fig.axes[0]
    return {p.get_label(): p for p in ax.patches if p.get_label().startswith("_pdtnb_")}


def node_extents(fig) -> dict[str, object]:
    renderer = fig.canvas.get_renderer()
    return {
        label: p.get_window_extent(renderer)
        for label, p in patches_by_label(fig).items()
        if label.startswith(("_pdtnb_task:", "_pdtnb_repo:"))
    }


# ---- states and colours ------------------------------------------------------------------------------


def ts(ready=0, live=0, done=0, failed=0) -> TaskStatus:
    return TaskStatus(name="t", links=[], ready=ready, live=live, done=done, failed=failed)


@pytest.mark.parametrize(
    ("counts", "state"),
    [
        ({}, "idle"),
        ({"done": 3}, "done"),
        ({"ready": 1, "done": 3}, "ready"),
        ({"ready": 1, "live": 2, "done": 3}, "live"),
        ({"ready": 1, "live": 2, "done": 3, "failed": 1}, "failed"),
        ({"failed": 1}, "failed"),
    ],
)
def test_node_state(counts, state):
    assert node_state(ts(**counts)) == state


def test_node_state_none_is_idle_and_every_state_has_a_distinct_colour():
    assert node_state(None) == "idle"
    assert set(NODE_STATES) == {"ready", "live", "done", "failed", "idle"}
    assert len({to_rgba(STATE_COLOURS[s]) for s in NODE_STATES}) == 5
    assert len({to_rgba(c) for c in STATE_COLOURS.values()}) == len(STATE_COLOURS), "table states too"


async def test_failed_job_colours_its_task_failed_in_the_figure():
    pipeline = build_chain(3, {str(i): i for i in range(5)}, fail=(1, "3"))
    status = await example_status(pipeline, new_jobs={"new": 1})
    assert status.task("stage1").failed == 1
    graph = PipelineGraph(pipeline, status)
    colours = graph.node_colours()
    assert colours == {
        "stage0": STATE_COLOURS["ready"],  # 'new' is waiting to run
        "stage1": STATE_COLOURS["failed"],
        "stage2": STATE_COLOURS["done"],
    }
    fig = graph.figure()
    patches = patches_by_label(fig)
    for name, colour in colours.items():
        assert patches[f"_pdtnb_task:{name}"].get_facecolor() == pytest.approx(to_rgba(colour))

    # ... and the rendered pixels inside stage1's box really are that colour.
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())
    box = patches["_pdtnb_task:stage1"].get_window_extent(fig.canvas.get_renderer())
    x, y = int(box.x0 + 6), int(pixels.shape[0] - (box.y0 + box.y1) / 2)
    want = [round(c * 255) for c in to_rgba(STATE_COLOURS["failed"])[:3]]
    assert list(pixels[y, x][:3]) == pytest.approx(want, abs=2)


async def test_live_task_is_drawn_live(executor, release):
    inp, mid, done1, done2 = (pdtnb.InProcessMetadataRepository() for _ in range(4))
    inp.data.update(a=1, slow=2)
    started = threading.Event()

    @pdtnb.InProcessSyncTask("first", done1)
    async def first(job, inp, mid):
        await mid.dump(job, await inp.info(job))

    first.link("inp", inp, is_input=True)
    first.link("mid", mid, is_output=True)

    @pdtnb.ExecutorTask("second", executor, done2)
    def second(job, mid):
        if job == "slow":
            started.set()
            release.wait(10)

    second.plug(first)
    pipeline = pdtnb.Pipeline([first, second], pdtnb.Session())
    async with pipeline:
        await pipeline.update()
        await pipeline.update()
        assert await asyncio.to_thread(started.wait, 5)
        status = await pdtnb.pipeline_status(pipeline)
        graph = PipelineGraph(pipeline, status)
        assert graph.node_states() == {"first": "done", "second": "live"}
        svg = graph.to_svg()
        release.set()
        await pipeline.run(timeout=5)
    assert "second.live" in svg  # the executor's live repository is drawn and labelled
    fig = graph.figure()
    assert patches_by_label(fig)["_pdtnb_task:second"].get_facecolor() == pytest.approx(to_rgba(STATE_COLOURS["live"]))


async def test_without_status_everything_is_idle_and_with_status_copies():
    pipeline = build_chain(2, {"a": 1})
    graph = PipelineGraph(pipeline, title="plain")
    assert set(graph.node_states().values()) == {"idle"}
    status = await example_status(pipeline)
    newer = graph.with_status(status)
    assert newer is not graph
    assert newer.title == "plain" and newer.status is status
    assert graph.status is None and set(graph.node_states().values()) == {"idle"}
    assert newer.node_states() == {"stage0": "done", "stage1": "done"}
    assert newer.to_png() != graph.to_png()
    assert newer._structure is graph._structure  # the layout is computed once, not per status
    assert layered_layout(pipeline.graph()) == layered_layout(pipeline.graph())  # deterministic


# ---- output formats ------------------------------------------------------------------------------


async def test_png_is_a_real_image():
    pipeline = build_chain(3, {str(i): i for i in range(4)}, fail=(1, "2"))
    graph = PipelineGraph(pipeline, await example_status(pipeline), title="three stages")
    png = graph.to_png()
    assert png.startswith(PNG_SIGNATURE)
    assert graph._repr_png_() == png
    image = imread(io.BytesIO(png))
    height, width = image.shape[:2]
    assert width > 600 and height > 200
    assert width > height  # left to right
    # non-trivial: many distinct colours, and both the failed and the done fills appear
    colours = {tuple((px[:3] * 255).round().astype(int)) for px in image.reshape(-1, image.shape[2])[::7]}
    assert len(colours) > 50
    for state in ("failed", "done"):
        want = tuple(round(c * 255) for c in to_rgba(STATE_COLOURS[state])[:3])
        assert any(all(abs(a - b) <= 2 for a, b in zip(c, want)) for c in colours), state
    bigger = graph.to_png(dpi=200)
    assert imread(io.BytesIO(bigger)).shape[1] == pytest.approx(2 * width, abs=2)


async def test_svg_parses_and_has_names_labels_and_legend():
    pipeline = build_chain(3, {str(i): i for i in range(4)}, fail=(1, "2"))
    status = await example_status(pipeline)
    graph = PipelineGraph(pipeline, status, title="three stages")
    svg = graph.to_svg()
    assert graph._repr_svg_() == svg
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    texts = [t.text for t in root.iter() if t.tag.endswith("text") and t.text]
    joined = "\n".join(texts)
    for name in ("stage0", "stage1", "stage2", "three stages"):
        assert name in texts
    # legend: every state, and each kind of link used
    for label in ("ready", "live", "done", "failed", "idle / waiting", "Task state"):
        assert label in texts
    for kind in ("input", "output", "status", "inhibits", "requires"):
        assert EDGE_STYLES[kind]["label"] in texts
    assert EDGE_STYLES["other"]["label"] not in texts  # not used, not in the legend
    # node labels: counts on tasks, TASK.LINK names and job counts on repositories
    assert "done 3 · failed 1" in joined  # stage1
    assert "stage0.s0" in texts and "stage1.s0" in texts
    assert "stage0.inp" in texts
    assert "4 jobs" in texts
    # no duplicate ids (several graphs can be inlined in one notebook page)
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))


def test_no_status_labels_have_no_counts():
    pipeline = build_chain(2, {"a": 1})
    svg = PipelineGraph(pipeline).to_svg()
    assert "stage1.s0" in svg
    assert " jobs<" not in svg and " job<" not in svg
    assert "ready 0" not in svg


# ---- layout --------------------------------------------------------------------------------------


def _check_left_to_right(graph: networkx.DiGraph, pos: dict) -> None:
    for u, v, attrs in graph.edges(data=True):
        if isinstance(v, pdtnb.Task) and (attrs["is_input"] or attrs["required_for_start"]):
            assert pos[u][0] < pos[v][0], f"input {attrs['link_name']} of {v.name} is not on its left"
        if isinstance(u, pdtnb.Task) and attrs["is_output"]:
            assert pos[u][0] < pos[v][0], f"output {attrs['link_name']} of {u.name} is not on its right"
        if isinstance(u, pdtnb.Task) and attrs["is_status"] and not attrs["is_output"]:
            assert pos[v][0] == pos[u][0] + 1, f"status {attrs['link_name']} is not right after {u.name}"


def test_layout_flows_left_to_right_in_a_chain():
    pipeline = build_chain(4, {"a": 1})
    graph = pipeline.graph()
    pos = layered_layout(graph)
    assert set(pos) == set(graph.nodes)
    _check_left_to_right(graph, pos)
    xs = [pos[t][0] for t in pipeline.tasks.values()]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)  # downstream to the right of upstream
    # the 2-cycles task <-> done did not confuse the layering
    assert any(graph.has_edge(v, u) for u, v in graph.edges)


def test_layout_of_a_fan_with_a_long_edge():
    pipeline = build_fan(5)
    graph = pipeline.graph()
    pos = layered_layout(graph)
    _check_left_to_right(graph, pos)
    tasks = pipeline.tasks
    for i in range(5):
        assert pos[tasks["split"]][0] < pos[tasks[f"branch{i}"]][0] < pos[tasks["merge"]][0]
    raw = tasks["merge"].links["raw"].repo
    assert pos[raw][0] < pos[tasks["split"]][0]  # shared input stays on the far left
    blocklist = tasks["merge"].links["blocklist"].repo
    assert pos[blocklist][0] == pos[tasks["merge"]][0] - 1  # an inhibitor sits just before its task


def test_layout_survives_cycles_and_plain_graphs():
    repo = pdtnb.InProcessMetadataRepository({"a": 1})
    loop = pdtnb.InProcessSyncTask("loop", pdtnb.InProcessMetadataRepository())
    loop.link("data", repo, is_input=True, is_output=True)  # reads and rewrites the same repository
    pipeline = pdtnb.Pipeline([loop], pdtnb.Session())
    pos = layered_layout(pipeline.graph())
    assert len(pos) == 3
    assert PipelineGraph(pipeline).to_png().startswith(PNG_SIGNATURE)

    plain = networkx.DiGraph([("a", "b"), ("b", "c"), ("a", "c"), ("c", "a")])
    pos = layered_layout(plain)
    assert pos["a"][0] < pos["b"][0] < pos["c"][0]


def test_empty_pipeline_draws():
    pipeline = pdtnb.Pipeline([], pdtnb.Session())
    assert layered_layout(pipeline.graph()) == {}
    assert PipelineGraph(pipeline).to_png().startswith(PNG_SIGNATURE)


def _min_distance(pos: dict) -> float:
    return min(math.dist(a, b) for a, b in itertools.combinations(pos.values(), 2))


def edge_points(fig) -> list[list[tuple[float, float]]]:
    """Points along each edge's route (its shaft), in display coordinates."""
    routes = []
    for patch in fig.axes[0].patches:
        if patch.get_label().startswith("_pdtnb_edge:"):
            path = patch.get_transform().transform_path(patch.get_path())
            routes.append([tuple(p) for bezier, _ in path.iter_bezier() for p in bezier(np.linspace(0, 1, 11))])
    return routes


@pytest.mark.parametrize("form", ["full", "compact"])
@pytest.mark.parametrize("shape", ["chain", "fan"])
async def test_large_pipeline_is_legible_and_fast(shape, form):
    pipeline = build_chain(20, {"a": 1, "b": 2}, fail=(7, "b")) if shape == "chain" else build_fan(20)
    graph = pipeline.graph()
    assert graph.number_of_nodes() >= 50
    pos = layered_layout(graph)
    _check_left_to_right(graph, pos)
    assert _min_distance(pos) >= 1 - 1e-9
    status = await example_status(pipeline)

    started = time.perf_counter()
    drawing = PipelineGraph(pipeline, status, form=form)
    fig = drawing.figure()
    png = drawing.to_png()
    elapsed = time.perf_counter() - started
    assert png.startswith(PNG_SIGNATURE)
    assert elapsed < 5, f"drawing {graph.number_of_nodes()} nodes took {elapsed:.1f} s"

    # The figure grows with the layers and the widest layer, so no node boxes overlap ...
    fig.canvas.draw()
    extents = node_extents(fig)
    assert len(extents) == (graph.number_of_nodes() if form == "full" else len(pipeline.tasks))
    for (a, ea), (b, eb) in itertools.combinations(extents.items(), 2):
        assert not ea.overlaps(eb), f"{a} overlaps {b}"
    # ... no two labels overlap ...
    renderer = fig.canvas.get_renderer()
    texts = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    for ta, tb in itertools.combinations(texts, 2):
        assert not ta.shrunk(0.98, 0.9).overlaps(tb.shrunk(0.98, 0.9))
    # ... and no edge runs through a node.
    boxes = list(extents.values())
    routes = edge_points(fig)
    assert len(routes) == len(drawing.model.edges()) > 0
    for route in routes:
        for px, py in route:
            for box in boxes:
                assert not (box.x0 + 1 < px < box.x1 - 1 and box.y0 + 1 < py < box.y1 - 1)

    width, height = fig.get_size_inches()
    small = PipelineGraph(build_chain(2, {"a": 1}), form=form).figure()
    growth = 4 if form == "full" else 2  # the compact form has half the columns
    if shape == "chain":
        assert width > growth * small.get_size_inches()[0]
    else:
        assert height > growth * small.get_size_inches()[1]


# ---- forms and the SVG that fits the cell -------------------------------------------------------------

CELL_PX = 1100  # a notebook cell's width


def svg_text_px(svg: str, container_px: float = CELL_PX) -> tuple[ET.Element, float, list[tuple[str, float]]]:
    """The SVG's root, the width it is shown at in a container that wide (all of it, if its width
    is a percentage; else its own), and each text's font size at that width, in CSS px."""
    root = ET.fromstring(svg)
    viewbox_width = float(root.get("viewBox").split()[2])
    width = root.get("width")
    shown = container_px * float(width[:-1]) / 100 if width.endswith("%") else float(width.removesuffix("px"))
    sizes = []
    for element in root.iter():
        if element.tag.endswith("}text"):
            size = re.search(r"font-size:\s*([\d.]+)px", element.get("style", ""))
            assert size, element.attrib  # matplotlib with svg.fonttype "none": text with a font size
            sizes.append(("".join(element.itertext()), float(size.group(1)) * shown / viewbox_width))
    return root, shown, sizes


def drawn_labels(fig) -> dict[str, list[str]]:
    """The labelled patches of a figure by kind (``task``, ``repo``, ``edge``): their names."""
    out: dict[str, list[str]] = {}
    for label in (p.get_label() for p in fig.axes[0].patches):
        if label.startswith("_pdtnb_"):
            kind, _, name = label[len("_pdtnb_") :].partition(":")
            out.setdefault(kind, []).append(name)
    return out


@pytest.mark.parametrize(
    ("shape", "n_tasks", "form"),
    [("chain", 3, "full"), ("dag", 6, "full"), ("dag", 10, "compact")],
)
async def test_svg_scales_to_the_cell_and_its_text_stays_legible(shape, n_tasks, form):
    if shape == "chain":
        pipeline = build_chain(3, {str(i): i for i in range(4)}, fail=(1, "2"))
    else:
        pipeline = build_dag(SIX_TASKS if n_tasks == 6 else TEN_TASKS, logs=n_tasks == 10, fail=("index", "b"))
    if n_tasks == 10:
        assert pipeline.graph().number_of_nodes() - n_tasks == 30  # repositories
    graph = PipelineGraph(pipeline, await example_status(pipeline, new_jobs={"d": 4}))
    assert len(graph.pipeline.tasks) == n_tasks and graph.form == form

    svg = graph.to_svg()
    assert graph._repr_svg_() == svg
    root, shown, sizes = svg_text_px(svg)
    # Vector, scaled by the browser to the container: width 100%, no fixed height, a viewBox.
    assert root.get("width") == "100%" and root.get("height") is None
    assert {"max-width:100%", "height:auto"} <= set(root.get("style").split(";"))
    assert len(root.get("viewBox").split()) == 4
    assert shown == CELL_PX
    # Every text (task names and counts, repository names, edge labels, legend) >= 9 px.
    assert len(sizes) > 3 * n_tasks
    small = [(text, round(px, 2)) for text, px in sizes if px < 9]
    assert not small, small
    # The legend shows the states a task node is drawn in, not the status table's others.
    texts = {text for text, _ in sizes}
    assert {"ready", "live", "done", "failed", "idle / waiting"} <= texts
    assert not {"retrying", "blocked", "waiting"} & texts

    # Without fitting, the natural size in points.
    natural = ET.fromstring(graph.to_svg(fit=False))
    assert natural.get("width").endswith("pt") and natural.get("height").endswith("pt")


async def test_a_drawing_too_wide_to_fit_is_shown_at_a_legible_size():
    pipeline = build_chain(20, {"a": 1})
    graph = PipelineGraph(pipeline, await example_status(pipeline), form="full")
    root, shown, sizes = svg_text_px(graph.to_svg())
    assert root.get("width").endswith("px") and shown > CELL_PX  # the notebook scrolls it sideways
    assert min(px for _, px in sizes) == pytest.approx(9, abs=0.05)  # as small as legible, no smaller
    assert "max-width:none" in root.get("style")


async def test_compact_form_past_six_tasks_labels_edges_with_the_shared_repository():
    pipeline = build_chain(7, {"a": 1, "b": 2})
    status = await example_status(pipeline)
    graph = PipelineGraph(pipeline, status)
    assert graph.form == "compact"
    assert PipelineGraph(build_dag(SIX_TASKS)).form == "full"  # six tasks that fit: full

    fig = graph.figure()
    drawn = drawn_labels(fig)
    assert "repo" not in drawn  # tasks only
    assert sorted(drawn["task"]) == sorted(pipeline.tasks)
    # stage i -> stage i+1: the input s{i} (the 'done' it also waits for is implied, not drawn)
    assert drawn["edge"] == ["input"] * 6
    labels = [t.get_text() for t in fig.axes[0].texts]
    for i in range(6):
        assert labels.count(f"s{i}") == 1
    assert not any("." in label for label in labels)  # no TASK.LINK repository labels
    edges = {(u.name, v.name): (kind, label) for u, v, kind, label in graph.model.edges()}
    assert edges[("stage0", "stage1")] == ("input", "s0")
    assert len(edges) == 6
    # the compact SVG: task names, counts and edge labels, no repository names
    svg = graph.to_svg()
    assert ">s3<" in svg and "stage0.s0" not in svg and "done 2 · failed 0" in svg
    assert "Links between tasks" in svg and ">repository<" not in svg
    assert "compact form" in repr(graph)


async def test_full_form_on_demand_draws_repository_nodes():
    pipeline = build_chain(7, {"a": 1})
    graph = PipelineGraph(pipeline, await example_status(pipeline), form="full")
    assert graph.form == "full"
    drawn = drawn_labels(graph.figure())
    n_repos = pipeline.graph().number_of_nodes() - 7
    assert len(drawn["repo"]) == n_repos == 15  # input, and an output and a done per task
    assert "stage3.s3" in drawn["repo"] and "stage4.s3" not in drawn["repo"]  # named by the writer
    assert {"input", "output", "status", "requires", "inhibits"} <= set(drawn["edge"])
    assert "stage0.s0" in graph.to_svg()


def test_compact_fan_labels_a_shared_repository_once():
    pipeline = build_fan(3)
    graph = PipelineGraph(pipeline, form="compact")
    edges = {(u.name, v.name): label for u, v, _, label in graph.model.edges()}
    assert edges == {
        ("split", "branch0"): "split_out",
        ("split", "branch1"): "split_out",
        ("split", "branch2"): "split_out",
        ("branch0", "merge"): "branch0_out",
        ("branch1", "merge"): "branch1_out",
        ("branch2", "merge"): "branch2_out",
    }  # 'raw' and 'blocklist' link no two tasks: not drawn
    labels = [t.get_text() for t in graph.figure().axes[0].texts]
    assert labels.count("split_out") == 1  # once, where the three edges leave split together
    assert all(labels.count(f"branch{i}_out") == 1 for i in range(3))


async def test_form_is_checked_and_kept_with_a_new_status():
    pipeline = build_chain(2, {"a": 1})
    with pytest.raises(ValueError, match="form"):
        PipelineGraph(pipeline, form="tiny")
    graph = PipelineGraph(pipeline, None, "compact")
    newer = graph.with_status(await example_status(pipeline))
    assert newer.form == "compact" and newer._structure is graph._structure
    assert PipelineGraph(pipeline).form == "full"  # two tasks: full


async def test_six_task_pictures_in_both_forms():
    """Writes tests/notebook/artifacts/graph-six-tasks-{full,compact}.png, to look at."""
    pipeline = build_dag(SIX_TASKS, fail=("lint", "b"))
    status = await example_status(pipeline, new_jobs={"d": 4})
    ARTIFACTS.mkdir(exist_ok=True)
    for form in ("full", "compact"):
        png = PipelineGraph(pipeline, status, form, title=f"six tasks, {form} form").to_png()
        (ARTIFACTS / f"graph-six-tasks-{form}.png").write_bytes(png)
        height, width = imread(io.BytesIO(png)).shape[:2]
        assert width <= CELL_PX * 1.25 and width > height  # about a cell wide, at 100 dpi
        assert len(png) < 200_000


# ---- no pyplot, no matplotlib in the core --------------------------------------------------------


def test_pyplot_is_never_imported():
    code = textwrap.dedent(
        """
        import asyncio, sys
        import pdtnb
        assert "matplotlib" not in sys.modules, "import pdtnb loaded matplotlib"
        from pdtnb.notebook.graph import PipelineGraph, layered_layout

        inp = pdtnb.InProcessMetadataRepository({"a": 1})
        task = pdtnb.InProcessSyncTask("t", pdtnb.InProcessMetadataRepository())
        task.link("inp", inp, is_input=True)
        task.link("out", pdtnb.InProcessMetadataRepository(), is_output=True)

        @task
        async def body(job, inp, out):
            await out.dump(job, 1)

        pipeline = pdtnb.Pipeline([task], pdtnb.Session())

        async def main():
            async with pipeline:
                await pipeline.run()
                return await pdtnb.pipeline_status(pipeline)

        graph = PipelineGraph(pipeline, asyncio.run(main()))
        layered_layout(pipeline.graph())
        assert graph.to_png().startswith(b"\\x89PNG")
        assert "<svg" in graph.to_svg()
        graph.figure()
        assert "matplotlib" in sys.modules
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
