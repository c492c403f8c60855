"""Finding and running the code examples of README.md and docs/*.md (issue 17).

Every fenced code block of those pages is either run by tests/docs/test_doc_examples.py or marked,
in the Markdown, with an HTML comment right above its fence saying why it is not (readers of the
page, on GitHub or in the Sphinx site, do not see the comment)::

    <!-- doctest: fragment uses `session` and `URL` from the page above -->
    ```python
    ...

A marker is ``<!-- doctest: KIND ARGUMENTS`` on its first line, optionally followed by more lines
(its *body*) and ``-->``. Several markers may stand above one fence. The kinds:

Blocks that are not run (the rest of the first line says why; it must not be empty):

* ``fragment``: not a whole program (names defined elsewhere, ``...``, a synopsis with placeholders);
* ``transcript``: a sample session or output of a pipeline the page does not show;
* ``needs-server SERVER``: needs a server the tests do not run for it (``s3``, ``mongo``, ``ssh``,
  ``kube``, ``dask``, ``fuse``);
* ``install``: changes the Python environment (``pip install ...``);
* ``not-code``: a directory layout, a path pattern;
* ``covered PATH``: run by another test, ``PATH`` (a file or directory under tests/).

Blocks that are run, and how:

* no marker: a ``python`` block is a script run with the test interpreter, or, when a line starts
  with ``%`` or awaits at the top level, notebook cells run on a real Jupyter kernel (one kernel
  per page, kept from one block to the next; a ``%`` line is a cell of its own, consecutive other
  lines one cell); a ``sh``/``bash``/``console`` block is shell commands run with bash (with
  ``$ `` prompts: the lines after a command are its expected output, checked line by line; a
  command must exit 0 unless the next one is ``echo $?``); so is a ``text`` block (or one
  without a language) that starts with a ``$ `` prompt;
* ``file NAME``: the block is the file ``NAME`` of the page (written into the page's working
  directory); a Python file is then executed as a module (``__name__`` is not ``"__main__"``),
  a ``.yaml``/``.toml``/``.json`` pipeline file is validated with ``python -m pdtnb -f NAME check``;
* ``output`` (or ``output json``): the block is the output of what ran last (the previous block,
  or the body of a ``setup`` marker): each of its lines must be a line of that output, without a
  comment the page adds after two spaces (lines with timestamps, timings, hashes or the pages'
  example hosts and ``/srv`` paths excepted); a JSON document must be contained in the one printed;

and two that add hidden steps before a block:

* ``setup``: its body is shell commands run (with ``set -e``) before the block, in the page's
  working directory (``$REPO`` is the repository's root), in the same bash as a shell, script or
  file block (so its ``export`` lines hold for the block);
* ``cell``: its body is Python run before the block: a notebook cell on the page's kernel before
  a notebook block, the start of the script before a script block (the names a fragment uses).

Each page runs in a fresh temporary directory, its blocks in order, with ``.venv/bin`` (the test
interpreter's directory) first on ``PATH`` so that ``python`` and ``pip`` are the test's.

Why not pytest-markdown-docs or Sybil: they run Python blocks in the test process; most examples
here are shell sessions and ``%pdt`` lines that must run in order, in one directory, next to files
the blocks above wrote, on a real kernel. So this is a small runner over the tokens of
markdown-it-py, the parser MyST itself uses, and the kernel helpers of tests/notebook/nbrun.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
#: The pages whose examples are run: README.md and every page of the Sphinx site.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Markers that say why a block is not run.
SKIP_KINDS = {"fragment", "transcript", "needs-server", "install", "not-code", "covered"}
#: Markers that say how a block is run, or add hidden steps before it.
RUN_KINDS = {"file", "output", "setup", "cell"}
KINDS = SKIP_KINDS | RUN_KINDS
SERVERS = {"s3", "mongo", "ssh", "kube", "dask", "fuse"}
SHELL_LANGUAGES = {"sh", "bash", "console", "shell"}
#: Seconds one command (or one notebook cell) may take.
TIMEOUT = 120

_MARKER = re.compile(r"<!--\s*doctest:\s*(?P<first>[^\n]*?)\s*(?:-->\s*$|\n(?P<body>.*?)-->\s*$)", re.S)
# Lines of sample output that change from run to run: dates, times, durations.
# The example host names (build1, build-7), paths (/srv/...) and hashes of the pages also vary.
_VOLATILE = re.compile(
    r"\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d|\b\d+(\.\d+)? s\b|\bpid \d+|\bbuild-?\d|/srv/|\b[0-9a-f]{12,16}\b"
)
_COMMENT = re.compile(r"(?<=\S)\s{2,}# .*$")


@dataclass
class Marker:
    kind: str
    args: str
    body: str
    line: int

    @property
    def words(self) -> list[str]:
        return self.args.split()


@dataclass
class Block:
    page: Path
    line: int  # the fence's line, 1-based
    lang: str
    source: str
    markers: list[Marker] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def marker(self, kind: str) -> Marker | None:
        return next((m for m in self.markers if m.kind == kind), None)

    @property
    def skip(self) -> Marker | None:
        return next((m for m in self.markers if m.kind in SKIP_KINDS), None)

    @property
    def runner(self) -> str | None:
        """How the block is run: "file", "output", "notebook", "script", "shell"; None if it is
        marked as not run, or nothing says how to run it."""
        if self.skip:
            return None
        if self.marker("file"):
            return "file"
        if self.marker("output"):
            return "output"
        if self.lang == "python":
            return "notebook" if _is_notebook(self.source) else "script"
        if self.lang in SHELL_LANGUAGES or (self.lang in ("text", "") and self.source.startswith("$ ")):
            return "shell"
        return None


@dataclass
class Page:
    path: Path
    blocks: list[Block]
    #: Markers not directly above a fence: (line, text).
    stray: list[tuple[int, str]]


def _is_notebook(source: str) -> bool:
    return any(line.startswith("%") or re.match(r"(\w+\s*=\s*)?await\b", line) for line in source.splitlines())


def parse_marker(text: str, line: int) -> Marker | None:
    match = _MARKER.match(text.strip())
    if not match:
        return None
    kind, _, args = match["first"].partition(" ")
    return Marker(kind, args.strip(), (match["body"] or "").strip("\n"), line)


def parse_page(path: Path, text: str | None = None) -> Page:
    """The fenced code blocks of a Markdown page, with the markers above each. MyST directives
    (a fence whose info string is ``{name}``, such as ``{toctree}``) are not code blocks."""
    if text is None:
        text = path.read_text(encoding="utf-8")
    tokens = MarkdownIt("commonmark").parse(text)
    blocks: list[Block] = []
    stray: list[tuple[int, str]] = []
    pending: list[Marker] = []
    for token in tokens:
        line = token.map[0] + 1 if token.map else 0
        if token.type == "html_block" and "doctest:" in token.content:
            marker = parse_marker(token.content, line)
            if marker is None:
                stray.append((line, token.content.strip()))
            else:
                pending.append(marker)
            continue
        if token.type == "fence" and not token.info.startswith("{"):
            lang = token.info.split()[0] if token.info.strip() else ""
            blocks.append(Block(path, line, lang, token.content, pending))
            pending = []
            continue
        if token.type == "fence":
            continue
        stray += [(m.line, f"doctest: {m.kind} {m.args}") for m in pending]
        pending = []
    stray += [(m.line, f"doctest: {m.kind} {m.args}") for m in pending]
    return Page(path, blocks, stray)


def problems(page: Page) -> list[str]:
    """What is wrong with the page's markers: blocks neither run nor marked, unknown kinds, skip
    markers without a reason, markers not above a fence."""
    found = []
    where = page.path.relative_to(ROOT) if page.path.is_relative_to(ROOT) else page.path
    for line, text in page.stray:
        found.append(f"{where}:{line}: a doctest marker not directly above a code block: {text!r}")
    for block in page.blocks:
        for m in block.markers:
            if m.kind not in KINDS:
                found.append(f"{block.name}: unknown doctest marker kind {m.kind!r} (known: {sorted(KINDS)})")
            elif m.kind in SKIP_KINDS:
                reason = m.words[1:] if m.kind in ("needs-server", "covered") else m.words
                if not reason:
                    found.append(f"{block.name}: `doctest: {m.kind}` needs a reason after it")
                if m.kind == "needs-server" and (not m.words or m.words[0] not in SERVERS):
                    found.append(f"{block.name}: `doctest: needs-server` names no known server {sorted(SERVERS)}")
                if m.kind == "covered" and (not m.words or not (ROOT / m.words[0]).exists()):
                    found.append(f"{block.name}: `doctest: covered` names no existing test path")
            elif m.kind == "file" and len(m.words) != 1:
                found.append(f"{block.name}: `doctest: file` takes one file name")
        if block.skip and any(m.kind in ("file", "output") for m in block.markers):
            found.append(f"{block.name}: marked both as not run and as run")
        if block.runner is None and block.skip is None:
            found.append(
                f"{block.name}: a ```{block.lang or '(no language)'} block that is neither run nor marked "
                "(put `<!-- doctest: KIND reason -->` above it; see tests/docs/doc_examples.py)"
            )
    return found


def pages() -> list[Page]:
    return [parse_page(path) for path in PAGES]


# ---- running ---------------------------------------------------------------------------------


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["REPO"] = str(ROOT)
    env.pop("PYTHONPATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def expected_lines(text: str) -> list[str]:
    """The lines of sample output a run must reproduce: not empty, not volatile, without the
    comments a page adds after two spaces (``exit_code: 0    # the script's exit status``)."""
    lines = (_COMMENT.sub("", line).strip() for line in text.splitlines())
    return [line for line in lines if line and not _VOLATILE.search(line)]


def missing_lines(expected: str, actual: str) -> list[str]:
    have = {line.strip() for line in actual.splitlines()}
    return [line for line in expected_lines(expected) if line not in have]


def contains(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where the JSON value ``expected`` is not contained in ``actual`` (a mapping's keys, a list's
    elements each matching one element; timestamps only as strings)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '/'}: {actual!r} is not an object"]
        diffs = []
        for key, value in expected.items():
            if key not in actual:
                diffs.append(f"{path}/{key}: missing")
            else:
                diffs += contains(value, actual[key], f"{path}/{key}")
        return diffs
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: {actual!r} is not a list"]
        diffs = []
        for i, item in enumerate(expected):
            if all(contains(item, candidate) for candidate in actual):
                diffs.append(f"{path}[{i}]: no element like {item!r} in {actual!r}")
        return diffs
    if isinstance(expected, str) and _VOLATILE.search(expected):
        return [] if isinstance(actual, str) else [f"{path}: {actual!r} is not a string"]
    return [] if expected == actual else [f"{path}: {actual!r} != {expected!r}"]


def notebook_cells(source: str) -> list[str]:
    """A notebook block as cells: each ``%`` line alone, consecutive other lines together, a cell
    magic (``%%``) with the rest of the block."""
    cells: list[str] = []
    current: list[str] = []
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("%%"):
            if current:
                cells.append("\n".join(current))
            cells.append("\n".join(lines[i:]))
            return cells
        if line.startswith("%"):
            if current:
                cells.append("\n".join(current))
                current = []
            cells.append(line)
        elif line.strip() or current:
            current.append(line)
    if current and any(line.strip() for line in current):
        cells.append("\n".join(current).rstrip())
    return cells


@dataclass
class Command:
    text: str
    expected: str = ""


def shell_commands(source: str) -> list[Command]:
    """A shell block's commands: with ``$ `` prompts, each prompt line and the output below it;
    without, every line (comments and blank lines dropped)."""
    lines = source.splitlines()
    if not any(line.startswith("$ ") for line in lines):
        return [Command(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    commands: list[Command] = []
    for line in lines:
        if line.startswith("$ "):
            commands.append(Command(line[2:]))
        elif commands:
            commands[-1].expected += line + "\n"
    return commands


def run_shell(commands: list[Command], cwd: Path, prelude: str = "") -> tuple[str, list[str]]:
    """Run the commands in one bash, in order, after ``prelude`` (hidden set-up commands, which
    must succeed); return (everything the commands printed, problems)."""
    script = ["set -o pipefail"]
    if prelude:
        script = ["set -euo pipefail", prelude, "set +eu", "echo '@@prelude done'"]
    script.append("__rc=0")
    for i, command in enumerate(commands):
        # `(exit $__rc)` gives the command the previous command's $? (for `echo $?`).
        script += [f"echo '@@cmd {i}'; echo '@@cmd {i}' >&2; (exit $__rc)", command.text]
        script.append(f'__rc=$?; echo "@@rc {i} $__rc"')
    result = run_bash("\n".join(script), cwd)
    # stdout and stderr come apart: split each by the markers and join them per command.
    outputs: dict[int, str] = {}
    codes: dict[int, int] = {}
    for stream in (result.stdout, result.stderr):
        current = None
        for line in stream.splitlines(keepends=True):
            if line.startswith("@@prelude done"):
                continue
            if line.startswith("@@cmd "):
                current = int(line.split()[1])
                continue
            if line.startswith("@@rc "):
                _, index, code = line.split()
                codes[int(index)] = int(code)
                continue
            if current is not None:
                outputs[current] = outputs.get(current, "") + line
    if prelude and "@@prelude done" not in result.stdout:
        return "", [f"its hidden setup failed ({result.returncode}):\n{result.stdout}{result.stderr}"]
    found = []
    for i, command in enumerate(commands):
        output = outputs.get(i, "")
        if i not in codes:
            found.append(f"`{command.text}` did not finish (bash exited {result.returncode})")
            break
        checked_by_next = i + 1 < len(commands) and commands[i + 1].text.strip() == "echo $?"
        if codes[i] != 0 and not checked_by_next:
            found.append(f"`{command.text}` exited {codes[i]}:\n{output}")
        missing = missing_lines(command.expected, output)
        if missing:
            found.append(f"`{command.text}` did not print {missing}; it printed:\n{output}")
    everything = "".join(outputs.get(i, "") for i in range(len(commands)))
    return everything, found


def json_document(text: str) -> Any:
    start = text.index("{")
    return json.JSONDecoder().raw_decode(text[start:])[0]


def quote(path: Path | str) -> str:
    return shlex.quote(str(path))
