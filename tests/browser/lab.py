"""A shared harness for the browser tests: JupyterLab driven through Debian's chromium by playwright.

``lab`` (a fixture, one server per test module) runs JupyterLab on 127.0.0.1 with this interpreter
as its ``python3`` kernel, every piece of Jupyter configuration in temporary directories, and the
application exposed in the page (``window.jupyterapp``) so tests can run JupyterLab's own commands
(run all cells, save, shut the kernel down) instead of hunting for menu items. ``page`` is a
chromium page on it. :class:`Lab` holds the helpers: write and open a notebook, run it, wait for
the kernel to be idle with no cell running, run a cell's worth of code later, take screenshots into
``tests/browser/artifacts/``.

Missing JupyterLab, chromium or playwright is a missing service (skipped locally, a failure under
``PDTNB_REQUIRE_SERVICES=1``). Never run ``playwright install``: the tests use Debian's chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
#: The browser window: with both side panels collapsed, JupyterLab's notebook then gives its
#: outputs about 1,100 pixels (what the width tests check).
VIEWPORT = {"width": 1240, "height": 1700}
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``predicate()`` until it returns something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


@dataclass
class LabServer:
    url: str
    token: str
    root: Path
    log: Path
    env: dict[str, str]


def _start_lab(base: Path, service_unavailable: Callable[[str, str], None]) -> Iterator[LabServer]:
    bindir = Path(sys.executable).parent
    if not (bindir / "jupyter-lab").exists():
        service_unavailable("jupyterlab", f"no jupyter-lab next to {sys.executable} (pip install jupyterlab)")
    if not Path(CHROMIUM).exists():
        service_unavailable("chromium", "Debian's chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        service_unavailable("playwright", "pip install playwright (never `playwright install`)")

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
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            str(bindir / "jupyter"),
            "labextension",
            "disable",
            "--level=user",
            "@jupyterlab/apputils-extension:announcements",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    # No autosave during a test (a test saves when it means to) and no "kernel busy" dialogs.
    settings = base / "config" / "lab" / "user-settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    port, token = free_port(), "pdtnb-test-token"
    log_path = base / "lab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            str(bindir / "jupyter-lab"),
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--port_retries=0",
            "--allow-root",
            f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
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
        yield LabServer(url, token, root, log_path, env)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # also stops its kernels
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, service_unavailable: Callable[[str, str], None]):
    """A JupyterLab server (see the module docstring)."""
    yield from _start_lab(tmp_path_factory.mktemp("lab"), service_unavailable)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, lab: LabServer):
    """A headless chromium page (a fresh profile) for ``lab``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            context.close()


class Lab:
    """Helpers over a ``page`` of a ``lab`` server."""

    def __init__(self, server: LabServer, page: Any):
        self.server = server
        self.page = page

    # ---- notebooks ---------------------------------------------------------------------------

    def write_notebook(self, name: str, cells: Sequence[str]) -> Path:
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        path = self.server.root / name
        nbformat.write(nb, path)
        return path

    def open(self, name: str, wait_kernel: bool = True) -> None:
        """Open notebook ``name`` (relative to the server's root) with side panels collapsed."""
        page = self.page
        # ?reset: a fresh workspace, so the notebooks of earlier tests are not reopened beside it
        page.goto(f"{self.server.url}/lab/tree/{name}?reset&token={self.server.token}")
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        wait_for(lambda: page.evaluate("() => !!window.jupyterapp"), 30, "the JupyterLab application")
        try:  # JupyterLab may ask which kernel to start: take the offered one (this interpreter's)
            page.locator(".jp-Dialog .jp-mod-accept").click(timeout=3_000)
        except Exception:
            pass
        page.evaluate("""() => {
            const shell = window.jupyterapp.shell;
            if (shell.leftCollapsed === false) shell.collapseLeft();
            if (shell.rightCollapsed === false) shell.collapseRight();
        }""")
        if wait_kernel:
            wait_for(lambda: "idle" in self.kernel_statuses(), 60, "the kernel to be idle")

    def command(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """Run a JupyterLab command (``notebook:run-all-cells``, ``docmanager:save``...)."""
        return self.page.evaluate("([c, a]) => window.jupyterapp.commands.execute(c, a)", [command, args or {}])

    def kernel_statuses(self) -> list[str]:
        return self.page.evaluate(
            "() => Array.from(document.querySelectorAll('[data-status]')).map(e => e.dataset.status)"
        )

    def prompts(self) -> list[str]:
        """The input prompts of the open notebook's cells (``[3]:``, ``[*]:``, ``[ ]:``)."""
        return self.page.evaluate("""() => Array.from(window.jupyterapp.shell.currentWidget.node
            .querySelectorAll('.jp-Cell .jp-InputPrompt')).map(e => e.textContent)""")

    def idle(self) -> bool:
        """Whether the kernel is idle and no cell is queued or running."""
        return "idle" in self.kernel_statuses() and not any("*" in p for p in self.prompts())

    def run_all(self, timeout: float = 90) -> None:
        self.command("notebook:run-all-cells")
        wait_for(lambda: all(re.search(r"\[\d+\]", p) for p in self.prompts()), timeout, "every cell to run")
        wait_for(self.idle, 30, "the kernel to be idle")

    def set_cell(self, index: int, source: str) -> None:
        """Replace the source of cell ``index`` (what typing in it would do)."""
        self.page.evaluate(
            """([i, src]) => {
            const panel = window.jupyterapp.shell.currentWidget;
            panel.content.widgets[i].model.sharedModel.setSource(src);
        }""",
            [index, source],
        )

    def run_cell(self, index: int, timeout: float = 60) -> None:
        """Select cell ``index`` and run it (Ctrl-Enter)."""
        self.page.evaluate(
            """(i) => {
            const panel = window.jupyterapp.shell.currentWidget;
            panel.content.activeCellIndex = i;
            panel.content.deselectAll();
        }""",
            index,
        )
        self.command("notebook:run-cell")
        wait_for(lambda: "*" not in self.prompt(index), timeout, f"cell {index} to run")
        wait_for(self.idle, 30, "the kernel to be idle")

    def append_and_run(self, source: str, timeout: float = 60) -> int:
        """Add a cell at the end with ``source``, run it; returns its index."""
        index = self.page.evaluate(
            """(src) => {
            const panel = window.jupyterapp.shell.currentWidget;
            const nb = panel.content;
            nb.activeCellIndex = nb.widgets.length - 1;
            return nb.widgets.length;
        }""",
            source,
        )
        self.command("notebook:insert-cell-below")
        self.set_cell(index, source)
        self.run_cell(index, timeout)
        return index

    def prompt(self, index: int) -> str:
        prompts = self.prompts()
        return prompts[index] if index < len(prompts) else ""

    def output_text(self, index: int) -> str:
        return self.page.evaluate(
            """(i) => {
            const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
            const area = cell && cell.node.querySelector('.jp-OutputArea');
            return area ? area.innerText : '';
        }""",
            index,
        )

    def cell(self, index: int) -> Any:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").nth(index)

    def save(self) -> None:
        self.command("docmanager:save")
        wait_for(
            lambda: not self.page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.dirty"),
            30,
            "the notebook to be saved",
        )

    def shutdown_kernel(self) -> None:
        self.page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")

    # ---- pictures ----------------------------------------------------------------------------

    def screenshot(self, name: str, locator: Any = None, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        if locator is not None:
            locator.scroll_into_view_if_needed()
            locator.screenshot(path=str(path))
        else:
            self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture(scope="module")
def jl(lab: LabServer, page: Any) -> Lab:
    """The helpers, for ``lab`` and ``page``."""
    return Lab(lab, page)
