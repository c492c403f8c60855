"""The dashboard's failure loop, progress bars, redefinition and saved notebooks in a real JupyterLab.

Driven through Debian's chromium by playwright (harness: ``lab.py``); every step is done the way a
user does it: clicking the widgets in the page, editing and running cells. The screenshots land
in ``tests/browser/artifacts/`` (the best are copied to ``docs/images/``).

* a red count in the dashboard's table is a button: it lists the failed jobs with their reasons;
  a job opens its view (the traceback of the failure, Retry, the ``%pdt debug`` line); Retry
  makes it ready and Run runs it;
* the live process job is listed under "live" and Kill stops it;
* the progress bars move while the kernel is idle;
* after the pipeline cell is edited and re-run, Run on the old dashboard runs the new code;
* the graph of a six-task pipeline fits an 1,100-pixel-wide notebook with legible labels;
* a notebook saved, its kernel shut down, reopened, shows its last state as static HTML.
"""

from __future__ import annotations

import re
import time

import pytest
from lab import Lab, wait_for

FAILING = """\
import asyncio, pathlib
from concurrent.futures import ThreadPoolExecutor
import pdtnb

session = pdtnb.Session()

@session.resource
async def procman():
    yield pdtnb.LocalLinuxManager("browser", pathlib.Path("work").resolve())

inp = pdtnb.InProcessMetadataRepository({"1": 1, "2": 2, "bad": -1})
parsed = pdtnb.InProcessMetadataRepository()
parse_done = pdtnb.InProcessMetadataRepository()

def check(value):
    if value < 0:
        raise ValueError(f"negative input: {value}")
    return value

@pdtnb.InProcessSyncTask("parse", parse_done)
async def parse(job, inp, parsed):
    await parsed.dump(job, check(await inp.info(job)) * 10)

parse.link("inp", inp, is_input=True)
parse.link("parsed", parsed, is_output=True)

reports = pdtnb.InProcessMetadataRepository()

@pdtnb.ExecutorTask("report", ThreadPoolExecutor(2), pdtnb.InProcessMetadataRepository())
async def report(job, parsed, reports):
    await reports.dump(job, f"{job}: {await parsed.info(job)}")

report.plug(parse)
report.link("reports", reports, is_output=True)

slow_in = pdtnb.InProcessMetadataRepository({"slow": 1})
quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=4, mem="1Gi"))
count = pdtnb.ProcessTask(
    "sleeper", procman, quota, pdtnb.Resources.parse(cpu=1, mem="1Mi"), pdtnb.InProcessMetadataRepository(),
    "echo sleeping; sleep 120\\n", done=pdtnb.InProcessMetadataRepository(),
)
count.link("slow_in", slow_in, is_input=True)
pipeline = pdtnb.Pipeline([parse, report, count], session, [quota], poll_interval=0.2)"""

FAILURE_CELLS = ["%load_ext pdtnb", FAILING, "%pdt run", "dash = %pdt dashboard\ndash"]


def count_button(jl: Lab, task: str, state: str):
    return jl.page.locator(f'.pdtnb-dashboard button.pdtnb-count-{state}[title*=" {state} "][title*=" of {task}"]')


def count_of(jl: Lab, task: str, state: str) -> int | None:
    button = count_button(jl, task, state)
    if button.count() != 1:
        return None
    text = button.inner_text().strip()
    return int(text) if text.isdigit() else None


def listed(jl: Lab) -> list[str]:
    """The job list's entries as shown (the widget shows spaces as no-break spaces)."""
    texts = jl.page.locator(".pdtnb-dashboard .pdtnb-job-list option").all_inner_texts()
    return [t.replace("\xa0", " ") for t in texts]


def pick_job(jl: Lab, job: str) -> None:
    """Click job ``job`` in the list (as a user picks it in the list box)."""
    index = next(i for i, text in enumerate(listed(jl)) if text == job or text.startswith(f"{job}:"))
    jl.page.locator(".pdtnb-dashboard .pdtnb-job-list select").select_option(index=index)


def result_line(jl: Lab) -> str:
    return jl.page.locator(".pdtnb-dashboard .pdtnb-result").inner_text().strip()


@pytest.fixture(scope="module")
def failing_nb(jl: Lab) -> Lab:
    jl.write_notebook("failures.ipynb", FAILURE_CELLS)
    jl.open("failures.ipynb")
    jl.run_all()
    jl.page.wait_for_selector(".pdtnb-dashboard .pdtnb-table button.pdtnb-count", timeout=60_000)
    wait_for(
        lambda: count_of(jl, "parse", "failed") == 1 and count_of(jl, "sleeper", "live") == 1,
        30,
        "the failure and the live process job",
    )
    return jl


def test_a_red_count_lists_the_failed_jobs_with_their_reasons(failing_nb: Lab):
    jl, page = failing_nb, failing_nb.page
    assert count_of(jl, "report", "blocked") == 1
    dash = page.locator(".pdtnb-dashboard")
    jl.screenshot("failure-dashboard.png", dash)
    count_button(jl, "parse", "failed").click()
    jobs = page.locator(".pdtnb-dashboard .pdtnb-jobs")
    wait_for(lambda: jobs.is_visible() and "bad" in jobs.inner_text(), 10, "the list of failed jobs")
    assert listed(jl) == ["bad: ValueError: negative input: -1"], listed(jl)
    assert "1 failed job" in jobs.inner_text()
    jl.screenshot("failure-list.png", dash)


def test_a_job_opens_with_its_failure_and_retry_runs_it_again(failing_nb: Lab):
    jl, page = failing_nb, failing_nb.page
    pick_job(jl, "bad")
    view = page.locator(".pdtnb-dashboard .pdtnb-job-view")
    wait_for(lambda: "negative input" in view.inner_text(), 10, "the job's view")
    text = view.inner_text()
    assert "ValueError" in text and re.search(r"Cell In\[\d+\], line \d+", text), text
    hint = page.locator(".pdtnb-dashboard .pdtnb-debug-hint").inner_text()
    assert "%pdt debug parse bad" in hint
    retry = page.locator(".pdtnb-dashboard .pdtnb-job-retry")
    assert retry.is_enabled()
    jl.screenshot("failure-job.png", page.locator(".pdtnb-dashboard"))

    jl.append_and_run('await inp.dump("bad", 3)  # fix the input')
    retry.click()
    wait_for(lambda: result_line(jl) == "parse: reset 1 job (bad)", 10, "the retry's result line")
    wait_for(lambda: count_of(jl, "parse", "failed") == 0, 10, "the failed count to drop")
    page.locator(".pdtnb-dashboard .pdtnb-step").click()  # one round launches it
    wait_for(lambda: count_of(jl, "parse", "done") == 3, 15, "the retried job to succeed")
    # The step ran in the kernel through the widget's comm, not as a cell: no prompt shows
    # a running cell, and the kernel settles (it may still be busy with the step's last messages).
    assert not any("*" in p for p in jl.prompts()), "the dashboard acted by running a cell"
    wait_for(jl.idle, 10, "the kernel to settle after the step")


def test_kill_stops_the_live_process_job(failing_nb: Lab):
    jl, page = failing_nb, failing_nb.page
    count_button(jl, "sleeper", "live").click()
    wait_for(lambda: listed(jl) == ["slow"], 10, "the live job listed")
    pick_job(jl, "slow")
    kill = page.locator(".pdtnb-dashboard .pdtnb-job-kill")
    wait_for(lambda: kill.is_visible() and kill.is_enabled(), 10, "the Kill button")
    assert "running" in page.locator(".pdtnb-dashboard .pdtnb-job-view").inner_text()
    jl.screenshot("failure-kill-before.png", page.locator(".pdtnb-dashboard"))
    kill.click()
    try:
        wait_for(lambda: result_line(jl) == "sleeper slow: attempt 1 killed", 15, "the kill's result line")
    except AssertionError:
        index = jl.append_and_run("print(dash.actions_done, dash._job_key, dash._job_state, dash.result.value)")
        raise AssertionError(f"{result_line(jl)!r}; the dashboard: {jl.output_text(index)}") from None
    wait_for(
        lambda: count_of(jl, "sleeper", "live") == 0 and count_of(jl, "sleeper", "failed") == 1,
        15,
        "the killed job to count as failed",
    )
    caption = page.locator(".pdtnb-dashboard .pdtnb-caption").inner_text()
    wait_for(
        lambda: "last run finished" in page.locator(".pdtnb-dashboard .pdtnb-caption").inner_text(),
        15,
        "the run to end once nothing is live",
    )
    assert "running for" not in page.locator(".pdtnb-dashboard .pdtnb-caption").inner_text(), caption
    jl.screenshot("failure-killed.png", page.locator(".pdtnb-dashboard"))


# ---- progress -------------------------------------------------------------------------------------

PROGRESS = """\
import time
from concurrent.futures import ThreadPoolExecutor
import pdtnb

numbers = pdtnb.InProcessMetadataRepository({f"n{i}": i for i in range(12)})
squares = pdtnb.InProcessMetadataRepository()

@pdtnb.ExecutorTask("square", ThreadPoolExecutor(2), pdtnb.InProcessMetadataRepository())
async def square(job, numbers, squares):
    time.sleep(0.8)
    await squares.dump(job, (await numbers.info(job)) ** 2)

square.link("numbers", numbers, is_input=True)
square.link("squares", squares, is_output=True)
pipeline = pdtnb.Pipeline([square], pdtnb.Session())"""


def done_width(jl: Lab, cell: int) -> float:
    return jl.page.evaluate(
        """(i) => {
        const cell = window.jupyterapp.shell.currentWidget.content.widgets[i].node;
        const seg = cell.querySelector('.pdtnb-seg-done');
        return seg ? seg.getBoundingClientRect().width : 0;
    }""",
        cell,
    )


def test_progress_bars_move_while_the_kernel_is_idle(jl: Lab):
    jl.write_notebook("progress.ipynb", ["%load_ext pdtnb", PROGRESS, "%pdt run"])
    jl.open("progress.ipynb")
    jl.run_all()
    widths: list[float] = []
    rate_shown = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (len(widths) < 4 or not rate_shown):
        assert jl.idle(), "a cell was running while the bars moved"
        width = done_width(jl, 2)
        if 0 < width and (not widths or width > widths[-1]):
            widths.append(width)
        text = jl.output_text(2)
        if not rate_shown and "running for" in text and re.search(r"\d/s, \d+ s left", text):
            rate_shown = True  # the rate and the time left, while the run goes on
            jl.screenshot("progress-running.png", jl.cell(2).locator(".jp-OutputArea"))
        time.sleep(0.2)
    assert len(widths) >= 3, f"the done segment did not grow while the kernel was idle: {widths}"
    assert rate_shown, "the rate and the time left never showed"
    wait_for(lambda: "last run finished: 12 succeeded, 0 failed" in jl.output_text(2), 30, "the run to finish")
    text = jl.output_text(2)
    assert "12/12" in text and "running" not in text, text
    jl.screenshot("progress-finished.png", jl.cell(2).locator(".jp-OutputArea"))


def test_a_saved_notebook_reopened_shows_its_last_state(jl: Lab):
    # Continues the progress notebook: the run has finished; save, shut the kernel down, reopen.
    page = jl.page
    assert "last run finished" in jl.output_text(2)
    jl.shutdown_kernel()
    wait_for(
        lambda: "the kernel shut down at" in jl.output_text(2),
        15,
        "the live table to become its static copy when the kernel shuts down",
    )
    jl.save()
    page.reload()
    jl.open("progress.ipynb", wait_kernel=False)
    wait_for(lambda: "12/12" in jl.output_text(2), 30, "the saved output")
    text = jl.output_text(2)
    assert "Error displaying widget" not in text and "model not found" not in text
    assert "LiveStatus(value=" not in text
    assert "last run finished: 12 succeeded, 0 failed" in text and "the kernel shut down at" in text
    assert page.locator(".jp-Cell").nth(2).locator(".pdtnb-status table").count() == 1
    jl.screenshot("saved-reopened.png", jl.cell(2).locator(".jp-OutputArea"))


# ---- redefinition ----------------------------------------------------------------------------------

REDEFINED = """\
import pathlib
import pdtnb

LABEL = "{label}"
inp = pdtnb.InProcessMetadataRepository({{"a": 1, "b": 2}})

@pdtnb.InProcessSyncTask("work", pdtnb.InProcessMetadataRepository())
async def work(job, inp):
    pathlib.Path(f"ran-{{LABEL}}-{{job}}").write_text(LABEL)

work.link("inp", inp, is_input=True)
pipeline = pdtnb.Pipeline([work], pdtnb.Session())"""


def test_run_on_the_old_dashboard_after_a_redefinition_runs_the_new_code(jl: Lab):
    page = jl.page
    jl.write_notebook("redefine.ipynb", ["%load_ext pdtnb", REDEFINED.format(label="old"), "%pdt dashboard"])
    jl.open("redefine.ipynb")
    jl.run_all()
    wait_for(lambda: count_of(jl, "work", "ready") == 2, 30, "the dashboard")
    # Edit the pipeline cell and run it (no %pdt line runs after it).
    jl.set_cell(1, REDEFINED.format(label="new"))
    jl.run_cell(1)
    page.locator(".pdtnb-dashboard .pdtnb-run").click()
    wait_for(lambda: count_of(jl, "work", "done") == 2, 20, "the run")
    ran = sorted(p.name for p in jl.server.root.glob("ran-*"))
    assert ran == ["ran-new-a", "ran-new-b"], ran
    caption = page.locator(".pdtnb-dashboard .pdtnb-caption").inner_text()
    assert "redefined pipeline" in caption, caption
    jl.screenshot("redefined.png", page.locator(".pdtnb-dashboard"))


# ---- the graph's width -------------------------------------------------------------------------------

SIX = """\
import pdtnb

source = pdtnb.InProcessMetadataRepository({f"doc{i}": i for i in range(5)})
tasks, upstream = [], None
for name in ("download_pages", "extract_text", "tokenize_words", "count_frequencies", "summarize_topics",
             "publish_report"):
    out = pdtnb.InProcessMetadataRepository()

    @pdtnb.InProcessSyncTask(name, pdtnb.InProcessMetadataRepository())
    async def body(job, **links):
        pass

    if upstream is None:
        body.link("source", source, is_input=True)
    else:
        body.plug(upstream)
    body.link("out", out, is_output=True)
    tasks.append(body)
    upstream = body
pipeline = pdtnb.Pipeline(tasks, pdtnb.Session())"""


def test_the_graph_of_six_tasks_fits_the_notebook_with_legible_labels(jl: Lab):
    page = jl.page
    jl.write_notebook("six.ipynb", ["%load_ext pdtnb", SIX, "%pdt dashboard"])
    jl.open("six.ipynb")
    jl.run_all()
    graph = page.locator(".pdtnb-dashboard .pdtnb-graph")
    wait_for(lambda: graph.is_visible(), 60, "the graph")
    output_width = page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.widgets[2].node"
        ".querySelector('.jp-OutputArea-output').clientWidth"
    )
    assert 1000 <= output_width <= 1200, f"the notebook's output area is {output_width} px wide"
    box = graph.bounding_box()
    assert box is not None and box["width"] <= output_width + 1, (box, output_width)
    jl.screenshot("graph-six-tasks.png", graph)
    svg = graph.locator("svg")
    if svg.count() == 0:
        pytest.xfail(
            "the dashboard's graph is a PNG: PipelineGraph(form='auto') (a width-fitting SVG) "
            "has not landed; the width holds but the labels' size cannot be measured"
        )
    heights = page.evaluate("""() => Array.from(document.querySelectorAll('.pdtnb-dashboard .pdtnb-graph svg text'))
        .map(t => t.getBoundingClientRect().height).filter(h => h > 0)""")
    assert heights and min(heights) >= 9, f"the smallest label is {min(heights):.1f} px high"


# ---- kernels that went away, notebooks run elsewhere ---------------------------------------------------


def test_a_live_view_whose_kernel_died_says_so(jl: Lab):
    import os
    import signal

    page = jl.page
    jl.write_notebook("dies.ipynb", ["%load_ext pdtnb", PROGRESS, "%pdt status --live", "import os\nos.getpid()"])
    jl.open("dies.ipynb")
    jl.run_all()
    pid = int(jl.output_text(3).split()[-1])
    stale = jl.cell(2).locator(".pdtnb-stale")
    wait_for(lambda: stale.count() == 1, 10, "the live table")
    assert stale.bounding_box()["width"] == 0, "the notice shows while updates arrive"
    os.kill(pid, signal.SIGKILL)  # the kernel dies without a word
    wait_for(
        lambda: (box := stale.bounding_box()) is not None and box["width"] > 50,
        40,
        "the live table to say it gets no updates",
    )
    text = jl.output_text(2)
    assert re.search(r"no update since \d\d:\d\d:\d\d UTC: the kernel is busy, or it stopped", text), text
    jl.screenshot("kernel-died.png", jl.cell(2).locator(".jp-OutputArea"))
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")


def test_a_notebook_run_elsewhere_shows_its_last_snapshot(jl: Lab):
    """A notebook executed by nbclient (papermill, CI) is not trusted when opened: JupyterLab skips
    the widget renderer and shows the text/html snapshot, kept current at the run's end."""
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(src)
        for src in (
            "%load_ext pdtnb",
            PROGRESS.replace("time.sleep(0.8)", "time.sleep(0.1)"),
            "%pdt run",
            "from pdtnb.notebook import controller_for\nawait controller_for(pipeline).wait(30)\n"
            "import asyncio\nawait asyncio.sleep(0.5)",
        )
    ]
    nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(jl.server.root)}}
    ).execute()
    nbformat.write(nb, jl.server.root / "elsewhere.ipynb")
    jl.open("elsewhere.ipynb", wait_kernel=False)
    try:
        wait_for(lambda: "12/12" in jl.output_text(2), 30, "the run's output")
    except AssertionError:
        jl.screenshot("run-elsewhere-failed.png", full_page=True)
        raise AssertionError(f"{nb.cells[2].outputs}") from None
    text = jl.output_text(2)
    assert "Error displaying widget" not in text and "LiveStatus(value=" not in text, text
    assert "last run finished: 12 succeeded, 0 failed" in text, text
    assert jl.cell(2).locator(".jupyter-widgets").count() == 0, "an untrusted output must not be a widget"
    jl.screenshot("run-elsewhere.png", jl.cell(2).locator(".jp-OutputArea"))
