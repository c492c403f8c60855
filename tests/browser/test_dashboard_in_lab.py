"""The dashboard in a real JupyterLab, driven through Debian's chromium by playwright.

JupyterLab runs the notebook, the dashboard renders, a click on its Launch button starts a job,
and the live table in the page keeps changing while no cell is executing: the updates come from
a task on the kernel's loop, not from a running cell. The screenshots are kept in
tests/browser/artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from servers import free_port

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

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


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, service_unavailable):
    """A JupyterLab server on 127.0.0.1 whose python3 kernel is this interpreter; all Jupyter
    configuration lives in temporary directories."""
    bindir = Path(sys.executable).parent
    if not (bindir / "jupyter-lab").exists():
        service_unavailable("jupyterlab", f"no jupyter-lab next to {sys.executable} (pip install jupyterlab)")
    if not Path(CHROMIUM).exists():
        service_unavailable("chromium", "Debian's chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        service_unavailable("playwright", "pip install playwright (never `playwright install`)")

    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTER_PATH": str(base / "kernels" / "share" / "jupyter"),
        "IPYTHONDIR": str(base / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(base / "kernels"), "--name", "python3"],
        env=env, check=True, capture_output=True,
    )
    subprocess.run(
        [str(bindir / "jupyter"), "labextension", "disable", "--level=user",
         "@jupyterlab/apputils-extension:announcements"],
        env=env, check=True, capture_output=True,
    )
    port, token = free_port(), "pdtnb-test-token"
    log_path = base / "lab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [str(bindir / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port_retries=0",
         "--allow-root", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"JupyterLab did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    try:
        yield {"url": url, "token": token, "root": root, "log": log_path}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # also stops its kernels
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1000},
        )
        page = context.pages[0] if context.pages else context.new_page()
        try:
            yield page
        finally:
            context.close()


def _kernel_idle_and_no_cell_running(page) -> bool:
    prompts = page.evaluate("() => Array.from(document.querySelectorAll('.jp-InputPrompt')).map(e => e.textContent)")
    statuses = page.evaluate("() => Array.from(document.querySelectorAll('[data-status]')).map(e => e.dataset.status)")
    return "idle" in statuses and not any("*" in p for p in prompts)


def _live_counts(page) -> dict[str, int] | None:
    """The ready/live/done/failed counts of task `slow` as the page shows them."""
    cells = page.evaluate(
        """() => {
            const table = document.querySelector('.pdtnb-live-status table');
            if (!table) return null;
            const heads = Array.from(table.querySelectorAll('thead th')).map(e => e.textContent.trim());
            const row = Array.from(table.querySelectorAll('tbody tr'))
                .map(r => Array.from(r.querySelectorAll('td')).map(c => c.textContent.trim()))
                .find(r => r[0] === 'slow');
            return row ? [heads, row] : null;
        }"""
    )
    if not cells:
        return None
    heads, row = cells
    return {h: int(v) for h, v in zip(heads, row) if h in ("ready", "live", "done", "failed")}


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_dashboard_launch_button_updates_the_live_table_while_the_kernel_is_idle(lab, page):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    nbformat.write(nb, lab["root"] / "dashboard.ipynb")

    page.goto(f"{lab['url']}/lab/tree/dashboard.ipynb?token={lab['token']}")
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    # JupyterLab may ask which kernel to start: take the offered one (this interpreter's).
    try:
        page.locator(".jp-Dialog .jp-mod-accept").click(timeout=5_000)
    except Exception:
        pass
    _wait(lambda: page.locator(".jp-Notebook-ExecutionIndicator, [data-status]").count() > 0, 30, "the kernel status")
    _wait(lambda: "idle" in page.evaluate(
        "() => Array.from(document.querySelectorAll('[data-status]')).map(e => e.dataset.status)"), 60, "kernel idle")
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()

    try:
        page.wait_for_selector(".pdtnb-dashboard .pdtnb-launch", timeout=60_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "dashboard-failed.png"), full_page=True)
        raise
    _wait(lambda: _live_counts(page), 30, "the live status table")
    _wait(lambda: _kernel_idle_and_no_cell_running(page), 60, "all cells to finish")
    before = _live_counts(page)
    assert before == {"ready": 3, "live": 0, "done": 0, "failed": 0}, before
    page.screenshot(path=str(ARTIFACTS / "dashboard-before.png"), full_page=True)

    page.locator(".pdtnb-dashboard input[placeholder^='job id']").fill("j2")
    page.locator(".pdtnb-dashboard .pdtnb-launch").click()

    # The table must change on its own: no cell is run from here on.
    seen_live = _wait(lambda: (c := _live_counts(page)) and c["live"] == 1 and c, 20, "the job to show as live")
    assert _kernel_idle_and_no_cell_running(page), "a cell was running while the live table changed"
    assert seen_live["ready"] == 2
    page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)

    finished = _wait(lambda: (c := _live_counts(page)) and c["done"] == 1 and c, 30, "the job to finish")
    assert finished == {"ready": 2, "live": 0, "done": 1, "failed": 0}, finished
    assert _kernel_idle_and_no_cell_running(page)
    result = page.locator(".pdtnb-dashboard .pdtnb-result").inner_text()
    assert "slow:j2 launched" in result, result
    page.screenshot(path=str(ARTIFACTS / "dashboard-done.png"), full_page=True)
    json.dumps(finished)  # the counts are plain data
