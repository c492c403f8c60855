"""The dashboard in a real JupyterLab, driven through Debian's chromium by playwright.

JupyterLab runs the notebook, the dashboard renders, a click on its Launch button starts a job,
and the live table in the page keeps changing while no cell is executing: the updates come from
a task on the kernel's loop, not from a running cell. The screenshots are kept in
tests/browser/artifacts/. The JupyterLab and chromium harness is ``lab.py``.
"""

from __future__ import annotations

import json

from lab import Lab, wait_for

NOTEBOOK_CELLS = [
    "%load_ext pdtnb",
    """\
import time
from concurrent.futures import ThreadPoolExecutor
import pdtnb

session = pdtnb.Session()
inputs = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(1, 4)})
results = pdtnb.InProcessMetadataRepository()
done = pdtnb.InProcessMetadataRepository()

@pdtnb.ExecutorTask("slow", ThreadPoolExecutor(2), done)
def slow(job, inputs, results):
    time.sleep(2)   # long enough for the page to show the job live, then done
    import asyncio
    asyncio.run(results.dump(job, 10 * 1))

slow.link("inputs", inputs, is_input=True)
slow.link("results", results, is_output=True)
pipeline = pdtnb.Pipeline([slow], session, [])""",
    "%pdt dashboard",
]


def _live_counts(page) -> dict[str, int] | None:
    """The ready/live/done/failed counts of task `slow` as the dashboard's table shows them."""
    counts = page.evaluate(
        """() => {
            const out = {};
            for (const b of document.querySelectorAll('.pdtnb-dashboard .pdtnb-count')) {
                const m = (b.title || '').match(/^(\\d+) (\\w+) jobs? of slow/);
                if (m) out[m[2]] = parseInt(b.textContent.trim());
            }
            return Object.keys(out).length ? out : null;
        }"""
    )
    if not counts or not all(k in counts for k in ("ready", "live", "done", "failed")):
        return None  # not drawn yet, or half-way through an update
    return {k: counts[k] for k in ("ready", "live", "done", "failed")}


def test_dashboard_launch_button_updates_the_live_table_while_the_kernel_is_idle(jl: Lab):
    page = jl.page
    jl.write_notebook("dashboard.ipynb", NOTEBOOK_CELLS)
    jl.open("dashboard.ipynb")
    jl.command("notebook:run-all-cells")
    try:
        page.wait_for_selector(".pdtnb-dashboard .pdtnb-launch", timeout=60_000)
    except Exception:
        jl.screenshot("dashboard-failed.png", full_page=True)
        raise
    wait_for(lambda: _live_counts(page), 30, "the live status table")
    wait_for(jl.idle, 60, "all cells to finish")
    before = wait_for(lambda: (c := _live_counts(page)) and c["ready"] == 3 and c, 10, "three ready jobs")
    assert before == {"ready": 3, "live": 0, "done": 0, "failed": 0}, before
    jl.screenshot("dashboard-before.png", full_page=True)

    page.locator(".pdtnb-dashboard .pdtnb-state-picker select").select_option("ready")
    page.locator(".pdtnb-dashboard input[placeholder^='job id']").fill("j2")
    page.locator(".pdtnb-dashboard .pdtnb-launch").click()

    # The table must change on its own: no cell is run from here on.
    seen_live = wait_for(lambda: (c := _live_counts(page)) and c["live"] == 1 and c, 20, "the job to show as live")
    assert jl.idle(), "a cell was running while the live table changed"
    assert seen_live["ready"] == 2
    jl.screenshot("dashboard-live.png", full_page=True)

    finished = wait_for(lambda: (c := _live_counts(page)) and c["done"] == 1 and c, 30, "the job to finish")
    assert finished == {"ready": 2, "live": 0, "done": 1, "failed": 0}, finished
    assert jl.idle()
    result = page.locator(".pdtnb-dashboard .pdtnb-result").inner_text()
    assert "slow:j2 launched" in result, result
    jl.screenshot("dashboard-done.png", full_page=True)
    json.dumps(finished)  # the counts are plain data
