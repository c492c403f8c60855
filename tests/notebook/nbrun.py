"""Running notebook cells on a real Jupyter kernel with nbclient, one cell at a time.

:class:`KernelSession` runs cells one at a time on one kernel (so a test can time a cell, wait
between cells, or interrupt a running cell from another thread) and returns a :class:`CellResult`
per cell: its text/plain, text/html, streams, errors and execute reply. :func:`run_cells` runs a
list of cells on a fresh kernel and returns their results. The fixtures that pick the kernel
(ipykernel 6 or 7) are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jupyter_client
import nbclient
import nbformat
from jupyter_core.utils import ensure_event_loop
from nbclient.exceptions import CellTimeoutError, DeadKernelError

#: Seconds a cell may take before the test fails (a hung magic must not hang the suite).
CELL_TIMEOUT = 30


@dataclass(frozen=True)
class KernelInfo:
    """A kernelspec written for the tests: its name, the interpreter, the ipykernel major version."""

    id: str
    name: str
    python: str
    major: int


_TRACEBACK_MARKERS = ("Traceback (most recent call last)", "Cell In[", 'File "', "---> ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes (IPython colours tracebacks)."""
    return _ANSI.sub("", text)


@dataclass
class CellResult:
    """One executed cell: its outputs, its execute reply, how long it took."""

    source: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] | None = None
    elapsed: float = 0.0
    #: "ok", "timeout" (nbclient's per-cell timeout fired) or "dead" (the kernel died).
    state: str = "ok"

    def _data(self, mime: str) -> str:
        parts = []
        for out in self.outputs:
            if out["output_type"] in ("execute_result", "display_data") and mime in out.get("data", {}):
                value = out["data"][mime]
                parts.append(value if isinstance(value, str) else json.dumps(value))
        return "\n".join(parts)

    @property
    def plain(self) -> str:
        """The text/plain of every result and display output."""
        return self._data("text/plain")

    @property
    def html(self) -> str:
        """The text/html of every result and display output."""
        return self._data("text/html")

    @property
    def widgets(self) -> list[dict[str, Any]]:
        """The widget views displayed (``application/vnd.jupyter.widget-view+json`` payloads)."""
        return [
            out["data"]["application/vnd.jupyter.widget-view+json"]
            for out in self.outputs
            if out["output_type"] in ("execute_result", "display_data")
            and "application/vnd.jupyter.widget-view+json" in out.get("data", {})
        ]

    def stream_of(self, name: str) -> str:
        return "".join(out["text"] for out in self.outputs if out["output_type"] == "stream" and out["name"] == name)

    @property
    def stdout(self) -> str:
        return self.stream_of("stdout")

    @property
    def stderr(self) -> str:
        return self.stream_of("stderr")

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The error outputs (ename, evalue, traceback)."""
        return [out for out in self.outputs if out["output_type"] == "error"]

    @property
    def enames(self) -> list[str]:
        """Exception names of the error outputs, and of the reply if it failed."""
        names = [e["ename"] for e in self.errors]
        if self.reply and self.reply.get("status") == "error" and self.reply.get("ename") not in names:
            names.append(self.reply.get("ename"))
        return names

    @property
    def everything(self) -> str:
        """All text the cell showed (results, streams, errors with tracebacks), without colours."""
        parts = [self.plain, self.html, self.stdout, self.stderr]
        for e in self.errors:
            parts += [e["ename"], e["evalue"], *e.get("traceback", [])]
        return strip_ansi("\n".join(parts))

    def describe(self) -> str:
        return f"cell {self.source!r} ({self.state}, {self.elapsed:.2f} s) showed:\n{self.everything}"

    def check(self) -> CellResult:
        """Assert the cell ran without any error, and return it."""
        assert self.state == "ok", self.describe()
        assert not self.errors and "error" not in (self.reply or {}).get("status", ""), self.describe()
        assert "Traceback" not in self.stderr, self.describe()
        return self


def usage_error(result: CellResult) -> str:
    """The one-line error a magic reported, asserting it was a UsageError-style message and no
    traceback: either an error output named UsageError with a one-line evalue and no stack, or
    IPython's ``UsageError: ...`` line on stderr."""
    assert result.state == "ok", result.describe()
    messages: list[str] = []
    for e in result.errors:
        assert e["ename"] == "UsageError", f"expected a UsageError, got {e['ename']}: {result.describe()}"
        frames = [line for line in e.get("traceback", []) if any(m in strip_ansi(line) for m in _TRACEBACK_MARKERS)]
        assert not frames, f"a usage error came with a traceback: {result.describe()}"
        messages.append(e["evalue"])
    stderr_lines = [line for line in strip_ansi(result.stderr).splitlines() if line.strip()]
    if any(line.startswith("UsageError: ") for line in stderr_lines):
        # IPython prints a UsageError as one "UsageError: ..." line: anything else is more text.
        assert len(stderr_lines) == 1, f"the error is not one line: {result.describe()}"
        messages.append(stderr_lines[0][len("UsageError: ") :])
    assert messages, f"expected a one-line UsageError: {result.describe()}"
    text = strip_ansi(result.stderr + "".join("".join(e.get("traceback", [])) for e in result.errors))
    assert not any(m in text for m in _TRACEBACK_MARKERS[:2]), f"traceback shown: {result.describe()}"
    assert len(messages) == 1, f"several errors shown: {result.describe()}"
    message = messages[0]
    assert "\n" not in message.strip(), f"the error is not one line: {message!r}"
    assert not result.plain, f"an error cell also produced a result: {result.describe()}"
    return message


class KernelSession:
    """One running kernel; :meth:`run` executes a cell and returns its :class:`CellResult`."""

    def __init__(self, kernel: KernelInfo, cwd: Path, timeout: float = CELL_TIMEOUT):
        self.kernel = kernel
        self.cwd = cwd
        self.timeout = timeout
        self.nb = nbformat.v4.new_notebook()
        self.client = nbclient.NotebookClient(
            self.nb,
            kernel_name=kernel.name,
            timeout=int(timeout),
            allow_errors=True,
            interrupt_on_timeout=False,
            record_timing=True,
            resources={"metadata": {"path": str(cwd)}},
            shutdown_kernel="graceful",
        )
        self._replies: dict[int, dict[str, Any]] = {}
        self.client.on_cell_executed = self._on_executed
        self._ctx: Any = None
        self.dead = False
        self.results: list[CellResult] = []

    def _on_executed(self, cell: Any, cell_index: int, execute_reply: dict[str, Any]) -> None:
        self._replies[cell_index] = execute_reply

    def __enter__(self) -> KernelSession:
        # The kernel's own stdout/stderr (asyncio's "exception in callback" reports, warnings,
        # logging) go to a file the tests can read: they never reach a cell's outputs.
        self.log_path = self.cwd / f"kernel-{self.kernel.id}.log"
        self._log = open(self.log_path, "wb")
        self._ctx = self.client.setup_kernel(stdout=self._log, stderr=subprocess.STDOUT)
        self._ctx.__enter__()
        return self

    def kernel_log(self) -> str:
        """What the kernel process wrote to its stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Shut the kernel down gracefully (a shutdown request, as a frontend sends)."""
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            try:
                ctx.__exit__(None, None, None)
            finally:
                self._log.close()

    def run(self, source: str, timeout: float | None = None) -> CellResult:
        """Execute ``source`` as the next cell; never raises for errors in the cell."""
        assert self._ctx is not None, "the kernel is not running"
        cell = nbformat.v4.new_code_cell(source)
        self.nb.cells.append(cell)
        index = len(self.nb.cells) - 1
        result = CellResult(source)
        if self.dead:
            result.state = "dead"
            self.results.append(result)
            return result
        self.client.timeout = int(timeout or self.timeout)
        started = time.monotonic()
        try:
            self.client.execute_cell(cell, index)
        except CellTimeoutError:
            result.state = "timeout"  # the cell may still be running in the kernel
            _drop_leftover_tasks()
        except DeadKernelError:
            result.state = "dead"
            self.dead = True
        result.elapsed = time.monotonic() - started
        result.outputs = [dict(o) for o in cell.get("outputs", [])]
        reply = self._replies.get(index)
        result.reply = dict(reply["content"]) if reply else None
        self.results.append(result)
        return result

    def nudge(self) -> None:
        """Send the kernel a harmless message on a separate shell connection.

        Only for recovering after a failed check: a message arriving wakes the kernel's event
        loop, so a cancellation it queued but never acted on (see test_kernel_health) happens, and
        the following cells are not stuck behind the interrupted one.
        """
        km = self.client.km
        assert km is not None
        kc = jupyter_client.BlockingKernelClient(connection_file=km.connection_file)
        kc.load_connection_file()
        kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        try:
            kc.kernel_info()
            time.sleep(0.2)
        finally:
            kc.stop_channels()

    def interrupt(self) -> None:
        """Interrupt the kernel, as a frontend's stop button does (callable from any thread)."""
        km = self.client.km
        assert km is not None
        asyncio.run(_ensure_awaited(km.interrupt_kernel()))

    def interrupt_after(self, delay: float) -> threading.Thread:
        """Interrupt the kernel from another thread after ``delay`` seconds (while a cell runs)."""

        def later() -> None:
            time.sleep(delay)
            self.interrupt()

        thread = threading.Thread(target=later, name="pdtnb-test-interrupt", daemon=True)
        thread.start()
        return thread

    def is_alive(self) -> bool:
        km = self.client.km
        if km is None:
            return False
        return bool(asyncio.run(_ensure_awaited(km.is_alive())))

    def version_check(self) -> CellResult:
        """Run ``ipykernel.__version__`` in the kernel and assert it is the expected major version."""
        result = self.run("import ipykernel\nipykernel.__version__").check()
        version = result.plain.strip().strip("'\"")
        assert version.split(".")[0] == str(self.kernel.major), (
            f"kernel {self.kernel.id} runs ipykernel {version}, expected {self.kernel.major}.x"
        )
        return result


def _drop_leftover_tasks() -> None:
    """Cancel and reap the tasks nbclient leaves on its loop after a cell timeout (its IOPub
    poller). Left alone, they end with an exception nobody retrieves, and asyncio's report of it,
    run from a garbage collection in the middle of pytest's own ``ast.parse``, trips a CPython
    3.11 bug ("AST constructor recursion depth mismatch") that aborts the whole test session."""
    loop = ensure_event_loop()
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


async def _ensure_awaited(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


def run_cells(kernel: KernelInfo, cells: Sequence[str], cwd: Path, timeout: float = CELL_TIMEOUT) -> list[CellResult]:
    """Run ``cells`` in order on a fresh kernel (shut down afterwards); one result per cell."""
    with KernelSession(kernel, cwd, timeout) as session:
        return [session.run(source) for source in cells]


def shown(result: CellResult) -> dict[str, Any]:
    """The JSON object a cell printed last with the notebooks' ``show(**values)`` helper; asserts
    the cell ran without errors."""
    result.check()
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the cell printed no JSON: {result.describe()}"
    return json.loads(lines[-1])


#: Defines ``show(**values)`` in a notebook: prints the values as one JSON line for :func:`shown`.
SHOW_HELPER = """
import json as _json
def show(**values):
    print(_json.dumps(values, default=repr, sort_keys=True))
"""


def record_cells(
    kernel: KernelInfo, cwd: Path, cells: Iterable[tuple[str, str]], version_check: bool = False
) -> Recorded:
    """Run labelled cells in order in one session of ``kernel`` started in ``cwd`` (after checking
    the kernel's ipykernel version, if asked), keeping each result and the kernel's log."""
    rec = Recorded(kernel)
    with KernelSession(kernel, cwd) as session:
        if version_check:
            session.version_check()
        for label, source in cells:
            rec.cells[label] = session.run(source)
        rec.log = session.kernel_log()
    return rec


#: Defines a second pipeline ``other`` (one task, ``lonely``) in a notebook: for what a magic does
#: when the notebook holds two pipelines.
OTHER_PIPELINE = """
import pdtnb
lonely_in = pdtnb.InProcessMetadataRepository({"x": 1})

@pdtnb.InProcessSyncTask("lonely", pdtnb.InProcessMetadataRepository())
async def lonely(job, lonely_in):
    pass

lonely.link("lonely_in", lonely_in, is_input=True)
other = pdtnb.Pipeline([lonely], pdtnb.Session())
"""


@dataclass
class Recorded:
    """A scenario run once on one kernel: its cells by label, and facts gathered around them."""

    kernel: KernelInfo
    cells: dict[str, CellResult] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    log: str = ""

    def __getitem__(self, label: str) -> CellResult:
        assert label in self.cells, f"cell {label!r} did not run (the scenario stopped early: {self.facts})"
        return self.cells[label]


_TAG = re.compile(r"<[^>]+>")


def status_rows(markup: str) -> dict[str, dict[str, str]]:
    """The rows of a pdtnb status table in HTML, by task: column heading -> cell text (tags
    stripped), e.g. ``{"double": {"ready": "3", "live": "0", ..., "links (jobs)": "inp 3, ..."}}``."""
    import html as _html

    headings = [_html.unescape(_TAG.sub("", h)).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", markup, re.S)]
    rows: dict[str, dict[str, str]] = {}
    for row in re.findall(r"<tr>(.*?)</tr>", markup, re.S):
        cells = [_html.unescape(_TAG.sub("", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if not cells:
            continue
        name = cells[0].replace("(disabled)", "").strip()
        rows[name] = dict(zip(headings[1:], cells[1:]))
    return rows
