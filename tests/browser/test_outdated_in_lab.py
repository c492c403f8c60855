"""Outdated results in a real JupyterLab: the dashboard counts the jobs done by code that has
changed since, lists them with what changed, and its **Retry outdated** runs them again.

Driven through Debian's chromium by playwright (harness: ``lab.py``), the way a user does it:
the task's cell is edited and re-run with the pipeline's cell, then the dashboard's buttons are
clicked. The screenshots land in ``tests/browser/artifacts/`` (``outdated-*.png``).
"""

from __future__ import annotations

import pytest
from lab import Lab, wait_for
from test_failure_loop_in_lab import count_button, count_of, listed, pick_job, result_line

SETUP = """\
import pdtnb

inp = pdtnb.InProcessMetadataRepository({"1": 1, "2": 2, "3": 3})
out = pdtnb.InProcessMetadataRepository()
done = pdtnb.InProcessMetadataRepository()

def helper(x):
    return x * 2"""

TASK = """\
@pdtnb.InProcessSyncTask("double", done)
async def double(job, inp, out):
    await out.dump(job, helper(await inp.info(job)))

double.link("inp", inp, is_input=True)
double.link("out", out, is_output=True)"""

TASK_CHANGED = TASK.replace("helper(await inp.info(job))", "helper(await inp.info(job)) + 100")

PIPELINE = "pipeline = pdtnb.Pipeline([double], pdtnb.Session())"

CELLS = [
    "%load_ext pdtnb",
    SETUP,
    TASK,
    PIPELINE,
    "%pdt run\nsummary = %pdt wait --timeout 30\nsummary",
    "dash = %pdt dashboard\ndash",
]
TASK_CELL, PIPELINE_CELL = 2, 3


def graph_texts(jl: Lab) -> list[str]:
    """The texts of the dashboard's graph drawing (node captions, legend)."""
    return [t.strip() for t in jl.page.locator(".pdtnb-dashboard .pdtnb-graph svg text").all_text_contents()]


def panel_retry(jl: Lab):
    return jl.page.locator(".pdtnb-dashboard .pdtnb-retry-outdated")


@pytest.fixture(scope="module")
def outdated_nb(jl: Lab) -> Lab:
    jl.write_notebook("outdated.ipynb", CELLS)
    jl.open("outdated.ipynb")
    jl.run_all()
    jl.page.wait_for_selector(".pdtnb-dashboard .pdtnb-table button.pdtnb-count", timeout=60_000)
    wait_for(lambda: count_of(jl, "double", "done") == 3, 30, "every job done")
    return jl


def test_a_redefined_body_shows_an_outdated_count_and_retry_outdated_reruns_them(outdated_nb: Lab):
    jl, page = outdated_nb, outdated_nb.page
    dash = page.locator(".pdtnb-dashboard")
    assert count_of(jl, "double", "outdated") == 0
    assert not panel_retry(jl).is_visible(), "Retry outdated offered with nothing outdated"

    # The user edits the task's body and re-runs its cell and the pipeline's.
    jl.set_cell(TASK_CELL, TASK_CHANGED)
    jl.run_cell(TASK_CELL)
    jl.run_cell(PIPELINE_CELL)
    wait_for(lambda: count_of(jl, "double", "outdated") == 3, 20, "the jobs to count as outdated")
    assert count_of(jl, "double", "done") == 0
    wait_for(lambda: panel_retry(jl).is_visible(), 10, "the launch panel's Retry outdated")
    assert panel_retry(jl).inner_text().strip() == "Retry 3 outdated"
    # The bar has an outdated segment and no done one; its fraction counts none finished.
    progress = dash.locator(".pdtnb-progress-cell").first
    assert progress.locator(".pdtnb-seg-outdated").count() == 1
    assert progress.locator(".pdtnb-seg-done").count() == 0
    assert progress.inner_text().strip().startswith("0/3"), progress.inner_text()
    # The graph's node says so, is drawn outdated, and the legend says what that colour is.
    wait_for(lambda: "outdated 3" in graph_texts(jl), 30, "the graph's node to count the outdated jobs")
    assert "done 0 · failed 0" in graph_texts(jl) and "outdated" in graph_texts(jl), graph_texts(jl)
    jl.screenshot("outdated-dashboard.png", dash)

    # A click on the count lists them with what changed, and offers Retry outdated.
    count_button(jl, "double", "outdated").click()
    jobs = dash.locator(".pdtnb-jobs")
    wait_for(lambda: jobs.is_visible() and len(listed(jl)) == 3, 10, "the list of outdated jobs")
    assert listed(jl) == ["1: its body changed", "2: its body changed", "3: its body changed"], listed(jl)
    assert "3 outdated jobs" in jobs.inner_text()
    list_retry = dash.locator(".pdtnb-list-retry-outdated")
    assert list_retry.is_visible() and not dash.locator(".pdtnb-list-retry-failed").is_visible()
    jl.screenshot("outdated-list.png", dash)

    # One job opens with what changed, and its own Retry.
    pick_job(jl, "1")
    hint = dash.locator(".pdtnb-debug-hint")
    wait_for(lambda: "its body changed" in hint.inner_text(), 10, "the outdated job's view")
    assert "done by code that has changed since: its body changed" in hint.inner_text(), hint.inner_text()
    assert dash.locator(".pdtnb-job-retry").is_enabled()
    jl.screenshot("outdated-job.png", dash)

    list_retry.click()
    wait_for(lambda: result_line(jl) == "double: reset 3 jobs (1, 2, 3)", 10, "the retry's result line")
    wait_for(
        lambda: count_of(jl, "double", "ready") == 3 and count_of(jl, "double", "outdated") == 0,
        10,
        "the jobs to be ready again",
    )
    wait_for(lambda: not panel_retry(jl).is_visible(), 10, "Retry outdated to go with the outdated jobs")
    dash.locator(".pdtnb-run").click()
    wait_for(lambda: count_of(jl, "double", "done") == 3, 20, "the jobs to run again")
    assert count_of(jl, "double", "outdated") == 0
    # The job opened earlier follows it: its view never keeps a state the job has left.
    view = dash.locator(".pdtnb-job-view")
    wait_for(lambda: "double 1: done" in view.inner_text(), 10, "the open job's view to say it is done")
    assert not any("*" in p for p in jl.prompts()), "the dashboard acted by running a cell"
    wait_for(jl.idle, 10, "the kernel to settle after the run")
    index = jl.append_and_run("print(sorted(out.data.items()))")
    assert jl.output_text(index).strip() == "[('1', 102), ('2', 104), ('3', 106)]", jl.output_text(index)
    # The graph catches up (it is redrawn at most every 1.5 s): no outdated count or legend key left.
    wait_for(lambda: "done 3 · failed 0" in graph_texts(jl), 30, "the graph to show the jobs done")
    assert not [t for t in graph_texts(jl) if "outdated" in t], graph_texts(jl)
    jl.screenshot("outdated-rerun.png", dash)
