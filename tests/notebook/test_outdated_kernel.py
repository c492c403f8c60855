"""Outdated results in a real kernel (ipykernel 6 and 7): what the user sees after editing cells.

One scenario per kernel, run once on one kernel: cell A defines in-memory repositories, cell B a
helper, cell C an in-process task whose body calls the helper, cell D the pipeline; ``%pdt run``
makes every job done. Then:

(i) cell C again with only a comment and whitespace changed, and D: nothing is outdated;
(ii) cell C with the body's code changed, and D: every job is outdated (``%pdt status`` in text
     and in its table, the dashboard's list with each job's reason), ``%pdt why`` says the body
     changed;
(iii) ``%pdt retry double --outdated`` and a run: every job done again, by the new body;
(iv) only cell B re-executed with the helper changed: the jobs are outdated again, and ``why``
     names the helper.

Everything asserted is what a cell shows: the magics' text/plain and HTML, or JSON printed by
the notebook's ``show`` helper.
"""

from __future__ import annotations

import re

import pytest
from nbrun import SHOW_HELPER, CellResult, KernelInfo, Recorded, record_cells, shown, status_rows

CELL_A = (
    SHOW_HELPER
    + """
import pdtnb

inp = pdtnb.InProcessMetadataRepository({"1": 1, "2": 2, "3": 3})
out = pdtnb.InProcessMetadataRepository()
done = pdtnb.InProcessMetadataRepository()
"""
)

CELL_B = """
def helper(x):
    return x * 2
"""

CELL_C = """
@pdtnb.InProcessSyncTask("double", done)
async def double(job, inp, out):
    value = await inp.info(job)
    await out.dump(job, helper(value))

double.link("inp", inp, is_input=True)
double.link("out", out, is_output=True)
"""

#: Cell C with a comment, blank lines and spacing changed: the same code.
CELL_C_COSMETIC = """
@pdtnb.InProcessSyncTask("double", done)
async def double(job, inp, out):
    # read the input, then write it doubled
    value  =  await inp.info( job )

    await out.dump(job,   helper(value))   # by the helper

double.link("inp", inp, is_input=True)
double.link("out", out, is_output=True)
"""

#: Cell C with the body's code changed: the values are now helper(x) + 100.
CELL_C_CHANGED = """
@pdtnb.InProcessSyncTask("double", done)
async def double(job, inp, out):
    value = await inp.info(job)
    await out.dump(job, helper(value) + 100)

double.link("inp", inp, is_input=True)
double.link("out", out, is_output=True)
"""

#: Cell B with the helper changed (re-executed alone: C and D are not run again).
CELL_B_CHANGED = """
def helper(x):
    return x * 3
"""

CELL_D = "pipeline = pdtnb.Pipeline([double], pdtnb.Session())"

RUN = "%pdt run\nsummary = %pdt wait --timeout 30\nsummary"

#: The dashboard's list of the outdated jobs of ``double``, as the user sees it.
DASHBOARD_LIST = """
async def open_outdated_job(dash):
    await dash.open_job("double", "1")
    return {"job_retry_enabled": not dash.job_buttons["Retry"].disabled,
            "job_view": dash.job_view.value, "job_hint": dash.debug_hint.value}

dash = %pdt dashboard
await dash.controller.feed.refresh()
await dash.open_list("double", "outdated")
show(title=dash.jobs_title.value, options=[label for label, _ in dash.job_list.options],
     list_retry=dash.list_buttons["Retry outdated"].layout.display,
     panel_retry=dash.buttons["Retry outdated"].layout.display,
     panel_retry_label=dash.buttons["Retry outdated"].description,
     count=dash.count_buttons[("double", "outdated")].description,
     **await open_outdated_job(dash))
dash.close()
"""

CELLS = [
    ("load", "%load_ext pdtnb"),
    ("A", CELL_A),
    ("B", CELL_B),
    ("C", CELL_C),
    ("D", CELL_D),
    ("run", RUN),
    ("status_first", "%pdt status"),
    ("values_first", "show(out=dict(out.data))"),
    # (i) a comment and whitespace only
    ("C_cosmetic", CELL_C_COSMETIC),
    ("D_cosmetic", CELL_D),
    ("status_cosmetic", "%pdt status"),
    # (ii) the body's code
    ("C_changed", CELL_C_CHANGED),
    ("D_changed", CELL_D),
    ("status_changed", "%pdt status"),
    ("why_changed", "%pdt why double 2"),
    ("show_changed", "%pdt show double 2"),
    ("graph_changed", "%pdt graph --svg"),
    ("dashboard_changed", DASHBOARD_LIST),
    # (iii) run them again
    ("retry", "%pdt retry double --outdated"),
    ("rerun", RUN),
    ("status_rerun", "%pdt status"),
    ("values_rerun", "show(out=dict(out.data))"),
    ("retry_none", "%pdt retry double --outdated"),
    # (iv) the helper alone
    ("B_changed", CELL_B_CHANGED),
    ("status_helper", "%pdt status"),
    ("why_helper", "%pdt why double 1"),
]


@pytest.fixture(scope="module")
def edited(kernel: KernelInfo, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record_cells(kernel, tmp_path_factory.mktemp(f"outdated-{kernel.id}"), CELLS, version_check=True)


_SUMMARY = re.compile(r"^# double: (.*)$", re.M)


def summary(result: CellResult) -> dict[str, int]:
    """The counts of ``double``'s summary line in ``%pdt status``'s text: ``{"done": 3, ...}``."""
    text = result.check().plain
    found = _SUMMARY.search(text)
    assert found, text
    return {name: int(n) for name, n in re.findall(r"(\w+) (\d+)", found.group(1))}


def test_first_run_makes_every_job_done(edited: Recorded) -> None:
    for label in ("load", "A", "B", "C", "D"):
        edited[label].check()
    assert "3 succeeded, 0 failed" in edited["run"].check().plain, edited["run"].plain
    counts = summary(edited["status_first"])
    assert counts["done"] == 3 and counts["ready"] == 0, counts
    assert "outdated" not in edited["status_first"].plain  # shown only when some are
    assert shown(edited["values_first"])["out"] == {"1": 2, "2": 4, "3": 6}


def test_a_comment_and_whitespace_change_nothing(edited: Recorded) -> None:
    edited["C_cosmetic"].check()
    edited["D_cosmetic"].check()
    counts = summary(edited["status_cosmetic"])
    assert counts["done"] == 3 and "outdated" not in counts, counts
    rows = status_rows(edited["status_cosmetic"].html)
    assert rows["double"]["done"] == "3" and rows["double"]["outdated"] == "0", rows


def test_a_changed_body_makes_every_job_outdated(edited: Recorded) -> None:
    edited["C_changed"].check()
    edited["D_changed"].check()
    counts = summary(edited["status_changed"])
    assert counts["outdated"] == 3 and counts["done"] == 0 and counts["ready"] == 0, counts
    rows = status_rows(edited["status_changed"].html)
    assert rows["double"]["outdated"] == "3" and rows["double"]["done"] == "0", rows
    # The progress bar draws an outdated segment (and no done one), its fraction counts none finished.
    html = edited["status_changed"].html
    assert 'class="pdtnb-seg pdtnb-seg-outdated" title="3 outdated"' in html
    assert "pdtnb-seg-done" not in html
    assert rows["double"]["progress"].startswith("0/3"), rows


def test_the_graph_draws_the_task_outdated(edited: Recorded) -> None:
    svg = edited["graph_changed"].check()._data("image/svg+xml")
    texts = [t.strip() for t in re.findall(r"<text[^>]*>(.*?)</text>", svg, re.S)]
    assert "outdated 3" in texts and "done 0 · failed 0" in texts, texts  # the node's caption
    assert "outdated" in texts, "the legend names the olive fill"


def test_why_says_the_body_changed(edited: Recorded) -> None:
    text = edited["why_changed"].check().plain
    assert "outdated" in text, text
    assert "the task's code has changed since: its body changed" in text, text
    assert "retry double 2 --outdated" in text, text


def test_show_says_what_changed_as_the_command_line_does(edited: Recorded) -> None:
    result = edited["show_changed"].check()
    assert result.plain.startswith("double 2: outdated\n  outdated: since it ran, its body changed\n"), result.plain
    html = result._data("text/html")
    assert "since it ran, its body changed" in html, html


def test_the_dashboard_lists_the_outdated_jobs_with_their_reason(edited: Recorded) -> None:
    facts = shown(edited["dashboard_changed"])
    assert facts["count"] == "3", facts
    assert "3 outdated" in facts["title"], facts
    assert facts["options"] == ["1: its body changed", "2: its body changed", "3: its body changed"], facts
    assert facts["list_retry"] is None, "the list offers Retry outdated"
    assert facts["panel_retry"] is None and facts["panel_retry_label"] == "Retry 3 outdated", facts
    # One job opened from the list: its Retry is offered (it re-runs it as outdated).
    assert facts["job_retry_enabled"] is True, facts
    assert "outdated" in facts["job_view"], facts["job_view"][:2000]
    assert "done by code that has changed since: <b>its body changed</b>" in facts["job_hint"], facts


def test_retry_outdated_runs_them_again_with_the_new_body(edited: Recorded) -> None:
    assert "double: reset 3 jobs" in edited["retry"].check().plain, edited["retry"].plain
    assert "3 succeeded, 0 failed" in edited["rerun"].check().plain, edited["rerun"].plain
    counts = summary(edited["status_rerun"])
    assert counts["done"] == 3 and "outdated" not in counts, counts
    assert shown(edited["values_rerun"])["out"] == {"1": 102, "2": 104, "3": 106}  # helper(x) + 100
    assert "double: nothing to retry" in edited["retry_none"].check().plain, edited["retry_none"].plain


def test_editing_only_the_helper_makes_the_jobs_outdated(edited: Recorded) -> None:
    edited["B_changed"].check()
    counts = summary(edited["status_helper"])
    assert counts["outdated"] == 3 and counts["done"] == 0, counts
    text = edited["why_helper"].check().plain
    assert "the function helper it calls changed" in text, text
    assert "its body changed" not in text, text
