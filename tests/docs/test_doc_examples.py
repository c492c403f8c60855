"""Every code example of README.md and docs/*.md runs as written, or says why it does not (issue 17).

One test per runnable block, named after its page and line (``test_example[docs/quickstart.md:78]``);
the blocks of a page run in order in one temporary directory, with one Jupyter kernel per page for
its ``%pdt`` cells, so a block sees what the blocks above it made (selecting one block with ``-k``
runs the blocks above it first). The pages without notebook cells run in two background threads
from the start of the session, their tests waiting for their results. How blocks are marked and
run: tests/docs/doc_examples.py.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from doc_examples import (
    ROOT,
    Block,
    Page,
    contains,
    json_document,
    missing_lines,
    notebook_cells,
    pages,
    parse_page,
    problems,
    quote,
    run_bash,
    run_shell,
    shell_commands,
)

sys.path.insert(0, str(ROOT / "tests" / "notebook"))
from nbrun import KernelInfo, KernelSession

PAGES = pages()
RUNNABLE = [block for page in PAGES for block in page.blocks if block.runner]


class PageRun:
    """The state of one page's run: its directory, its kernel, what ran last and what failed."""

    def __init__(self, page: Page, cwd: Path, kernel: KernelInfo):
        self.page = page
        self.cwd = cwd
        self.kernel_info = kernel
        self.kernel: KernelSession | None = None
        #: The failure of each block run so far (None: it passed), by line.
        self.results: dict[int, str | None] = {}
        self.failed: str | None = None
        self.last_output = ""
        self.prelude = ""
        self.runnable = [b for b in page.blocks if b.runner]
        self.lock = threading.Lock()

    @property
    def uses_kernel(self) -> bool:
        return any(b.runner == "notebook" or (b.marker("cell") and b.runner != "script") for b in self.runnable)

    def result(self, block: Block) -> str | None:
        """Run the page's blocks down to ``block`` that have not run yet; return why ``block``
        failed, or None."""
        with self.lock:
            for earlier in self.runnable[: self.runnable.index(block) + 1]:
                if earlier.line not in self.results:
                    self.results[earlier.line] = self._run(earlier)
                    if earlier is self.runnable[-1]:
                        self.close()
            return self.results[block.line]

    def _run(self, block: Block) -> str | None:
        if self.failed:
            return f"an earlier block of the page failed: {self.failed}"
        try:
            problems = self._execute(block)
        except Exception:
            problems = [traceback.format_exc()]
        if problems:
            self.failed = block.name
            return f"{block.name} ({block.runner}):\n" + "\n".join(problems)
        return None

    def _execute(self, block: Block) -> list[str]:
        found: list[str] = []
        runner = block.runner
        # A setup runs in the same bash as a shell, script or file block (its `export`s count).
        prelude = "\n".join(m.body for m in block.markers if m.kind == "setup")
        if prelude and runner not in ("shell", "script", "file"):
            result = run_bash("set -euo pipefail\n" + prelude, self.cwd)
            if result.returncode != 0:
                return [f"its hidden setup failed ({result.returncode}):\n{result.stdout}{result.stderr}"]
            self.last_output = result.stdout + result.stderr
            prelude = ""
        # A cell is hidden Python run before the block: a cell of the page's kernel before a
        # notebook block, the start of the script before a script block.
        cells = [m.body for m in block.markers if m.kind == "cell"]
        if runner == "script":
            source = "\n".join([*cells, block.source])
        else:
            found += self._cells(cells) if cells else []
        if found:
            return found
        self.prelude = prelude
        if runner == "shell":
            self.last_output, found = run_shell(shell_commands(block.source), self.cwd, prelude)
        elif runner == "script":
            script = self.cwd.parent / f"{self.cwd.name}-block-{block.line}.py"
            script.write_text(source)
            found = self._command(f"python {quote(script)}")
        elif runner == "file":
            marker = block.marker("file")
            assert marker is not None
            name = marker.words[0]
            (self.cwd / name).parent.mkdir(parents=True, exist_ok=True)
            (self.cwd / name).write_text(block.source)
            if name.endswith(".py"):
                code = f"import runpy; runpy.run_path({name!r}, run_name='doctest')"
                found = self._command(f"python -c {quote(code)}")
            elif name.endswith((".yaml", ".yml", ".toml", ".json")):
                found = self._command(f"python -m pdtnb -f {quote(name)} check")
        elif runner == "output":
            marker = block.marker("output")
            assert marker is not None
            if marker.args == "json":
                try:
                    actual = json_document(self.last_output)
                except ValueError:
                    return [f"no JSON document in the output:\n{self.last_output}"]
                found = contains(json.loads(block.source), actual)
                if found:
                    found.append(f"the output was:\n{self.last_output}")
            else:
                missing = missing_lines(block.source, self.last_output)
                if missing:
                    found = [f"the output lacks the lines {missing}; it was:\n{self.last_output}"]
        elif runner == "notebook":
            found = self._cells(notebook_cells(block.source))
        return found

    def _command(self, command: str) -> list[str]:
        if self.prelude:
            command = f"set -euo pipefail\n{self.prelude}\n{command}"
        result = run_bash(command, self.cwd)
        self.last_output = result.stdout + result.stderr
        return [f"`{command}` exited {result.returncode}:\n{self.last_output}"] if result.returncode else []

    def _cells(self, cells: list[str]) -> list[str]:
        if self.kernel is None:
            self.kernel = KernelSession(self.kernel_info, self.cwd, timeout=120)
            self.kernel.__enter__()
        outputs = []
        for source in cells:
            result = self.kernel.run(source)
            outputs.append(result.everything)
            try:
                result.check()
            except AssertionError as e:
                return [str(e)]
        self.last_output = "\n".join(outputs)
        return []

    def close(self) -> None:
        if self.kernel is not None:
            kernel, self.kernel = self.kernel, None
            kernel.shutdown()


@pytest.fixture(scope="session")
def docs_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelInfo]:
    """A kernelspec running this interpreter (ipykernel 7), first on JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("docs-jupyter")
    spec = root / "kernels" / "pdtnb-docs"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec_json = {"argv": argv, "display_name": "pdtnb docs", "language": "python", "interrupt_mode": "signal"}
    (spec / "kernel.json").write_text(json.dumps(spec_json))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", os.pathsep.join([str(root), *filter(None, [os.environ.get("JUPYTER_PATH")])]))
        yield KernelInfo("docs", "pdtnb-docs", sys.executable, 7)


@pytest.fixture(scope="session")
def page_runs(tmp_path_factory: pytest.TempPathFactory, docs_kernel: KernelInfo) -> Iterator[dict[Path, PageRun]]:
    runs = {
        page.path: PageRun(page, tmp_path_factory.mktemp(page.path.stem.lower()), docs_kernel)
        for page in PAGES
        if any(block.runner for block in page.blocks)
    }
    # The pages without notebook cells run in two threads from the start (their time is mostly
    # interpreters starting), while the tests of the pages with a kernel run theirs in this one.
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="pdtnb-docs") as pool:
        for run in runs.values():
            if not run.uses_kernel:
                pool.submit(run.result, run.runnable[-1])
        yield runs
        for run in runs.values():
            run.close()


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.name for block in RUNNABLE])
def test_example(block: Block, page_runs: dict[Path, PageRun]) -> None:
    failure = page_runs[block.page].result(block)
    if failure:
        pytest.fail(failure, pytrace=False)


def test_every_block_is_run_or_marked_with_a_known_kind() -> None:
    found = [problem for page in PAGES for problem in problems(page)]
    assert not found, "\n".join(found)
    blocks = [block for page in PAGES for block in page.blocks]
    assert len(RUNNABLE) * 2 > len(blocks), f"only {len(RUNNABLE)} of {len(blocks)} examples are run"


def test_an_unmarked_block_and_an_unknown_kind_are_refused() -> None:
    text = "\n".join(
        [
            "```yaml",
            "a: 1",
            "```",
            "<!-- doctest: fragmnet of something -->",
            "```python",
            "x",
            "```",
            "<!-- doctest: fragment -->",
            "```python",
            "y",
            "```",
            "<!-- doctest: needs-server ftp the old one -->",
            "```sh",
            "ftp",
            "```",
            "<!-- doctest: transcript not above a fence -->",
            "",
            "text",
            "<!-- doctest: transcript sample output -->",
            "```",
            "out",
            "```",
            "```{toctree}",
            "a",
            "```",
        ]
    )
    found = problems(parse_page(ROOT / "example.md", text))
    assert len(found) == 5, found
    assert any("example.md:1: a ```yaml block that is neither run nor marked" in p for p in found), found
    assert any("example.md:5: unknown doctest marker kind 'fragmnet'" in p for p in found), found
    assert any("example.md:9: `doctest: fragment` needs a reason" in p for p in found), found
    assert any("example.md:13: `doctest: needs-server` names no known server" in p for p in found), found
    assert any("example.md:16: a doctest marker not directly above a code block" in p for p in found), found
