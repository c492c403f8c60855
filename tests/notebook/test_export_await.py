"""Exporting a notebook whose cells use top-level ``await`` (docs/notebook.md, "Exporting a notebook
as a script").

A cell with top-level ``await`` (``async for``, ``async with``) cannot run in a script at import
time, so the export leaves the whole cell out and says so in one line (``left out cell 6:
top-level await; it defines nothing the pipeline uses``), unless kept code uses a name the cell
defines: then the export is refused, naming the cell, its await's line and where the name is used.

* ``test_waiting_cell_is_left_out_and_the_script_runs``: in a real kernel (ipykernel 6 and 7), a
  notebook starts ``%pdt run`` and waits for the outputs in a polling loop (``while not
  path.exists(): await asyncio.sleep(...)``, then ``print``); ``%pdt export`` and ``python -m
  pdtnb export`` both write the script without that cell and print the notice; the script runs
  the pipeline on fresh directories.
* The rest run without a kernel: what is left out, and what is refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbrun import KernelSession

from pdtnb.notebook.export import ExportError, SourceCell, analyse, cells_from_history, render_script

TIMEOUT = 60
NOTICE = "left out cell {}: top-level await; it defines nothing the pipeline uses"


def make_notebook(path: Path, cells: list[tuple[str, str] | tuple[str, str, list[str]]]) -> None:
    """Write a notebook of ``(kind, source[, tags])`` cells, kind "code" or "markdown"."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, *rest in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if rest:
            cell.metadata["tags"] = list(rest[0])
        nb.cells.append(cell)
    nbformat.write(nb, path)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PDTNB_PARAM_")}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=environ, timeout=TIMEOUT, check=False
    )


def plan_of(*sources: str) -> Any:
    return analyse([SourceCell(n, text) for n, text in enumerate(sources, 1)], origin="test.ipynb")


def refused(*sources: str) -> str:
    with pytest.raises(ExportError) as info:
        plan_of(*sources)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- in a kernel ---------------------------------------------------------------------------------

DEFINITION = r"""
import pdtnb
from pathlib import Path

root = Path(data_dir)
(root / "inp").mkdir(parents=True, exist_ok=True)
for job, value in {"a": 1, "b": 2}.items():
    (root / "inp" / f"{job}.yaml").write_text(f"{value}\n")

inp = pdtnb.YamlMetadataFileRepository(root / "inp")
out = pdtnb.YamlMetadataFileRepository(root / "out")
done = pdtnb.YamlMetadataFileRepository(root / "done")

@pdtnb.InProcessSyncTask("double", done)
async def double(job, inp, out):
    await out.dump(job, await inp.info(job) * 2)

double.link("inp", inp, is_input=True)
double.link("out", out, is_output=True)
pipeline = pdtnb.Pipeline([double], pdtnb.Session())
"""

# What a user writes to wait for the background run's outputs before looking at them.
WAIT = """\
import asyncio

while not (root / "out" / "b.yaml").exists():
    await asyncio.sleep(0.1)
print("WAITED", (root / "out" / "b.yaml").read_text().strip())
"""


def test_waiting_cell_is_left_out_and_the_script_runs(kernel_session: KernelSession, tmp_path: Path) -> None:
    nbdata = tmp_path / "nbdata"
    cells: list[Any] = [
        ("markdown", "# Doubling, then waiting for the results"),
        ("code", "%load_ext pdtnb"),
        ("code", f"data_dir = {str(nbdata)!r}", ["parameters"]),
        ("code", DEFINITION),
        ("code", "%pdt run"),
        ("code", WAIT),  # cell 6
        ("code", "%pdt wait --timeout 30"),
    ]
    make_notebook(tmp_path / "waiting.ipynb", cells)
    results = [kernel_session.run(source).check() for kind, source, *_ in cells if kind == "code"]
    assert "WAITED 4" in results[4].stdout  # the cell did wait for the run in the notebook

    exported = kernel_session.run("%pdt export waiting.py --notebook waiting.ipynb").check()
    notices = [line for line in exported.stdout.splitlines() if "left out" in line]
    assert notices == ["pdtnb export: " + NOTICE.format(6)], exported.stdout
    assert "wrote" in exported.plain and "parameters data_dir" in exported.plain
    script = tmp_path / "waiting.py"
    text = script.read_text()
    assert "# %% cell 4\n" in text and "# %% cell 6" not in text
    assert "asyncio" not in text and "WAITED" not in text

    # The shell command leaves the same cell out, says so, and writes the same script.
    (tmp_path / "shell").mkdir()
    shell = run("-m", "pdtnb", "export", "waiting.ipynb", "-o", "shell/waiting.py", cwd=tmp_path)
    assert shell.returncode == 0, shell.stderr
    assert shell.stderr.splitlines()[0] == NOTICE.format(6), shell.stderr
    assert "wrote" in shell.stderr.splitlines()[1]
    assert (tmp_path / "shell" / "waiting.py").read_text() == text

    # The script runs the pipeline on fresh directories (it has nothing to wait for).
    fresh = tmp_path / "fresh"
    ran = run(str(script), "--param", f"data_dir={fresh}", "run", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "WAITED" not in ran.stdout + ran.stderr
    assert {p.name: p.read_text() for p in sorted((fresh / "out").iterdir())} == {"a.yaml": "2\n", "b.yaml": "4\n"}
    assert {p.name: p.read_text() for p in (nbdata / "out").iterdir()} == {"a.yaml": "2\n", "b.yaml": "4\n"}


# ---- without a kernel: what is left out ----------------------------------------------------------

PIPELINE = """\
import asyncio
import pdtnb
inp = pdtnb.InProcessMetadataRepository({"1": 1})
done = pdtnb.InProcessMetadataRepository()

@pdtnb.InProcessSyncTask("t", done)
async def t(job, inp):
    pass

t.link("inp", inp, is_input=True)
pipeline = pdtnb.Pipeline([t], pdtnb.Session())
"""


def test_cells_with_top_level_await_are_left_out_with_a_notice() -> None:
    plan = plan_of(
        PIPELINE,
        "import asyncio\nfrom pathlib import Path\n\nwhile not Path('x').exists():\n"
        "    await asyncio.sleep(1)\nprint('x')",
        "summary = await pipeline.run(timeout=30)\nsummary",
        "async for item in source():\n    print(item)",
        "async with lock:\n    pass",
        "found = [x async for x in source()]",
        "print('kept')\nawait pipeline.open()",
        "async def later():\n    await pipeline.open()\n\nprint('kept too')",
    )
    assert plan.notices == [NOTICE.format(n) for n in (2, 3, 4, 5, 6, 7)]
    assert "cell 2: top-level await (line 5)" in plan.dropped and "cell 7: top-level await (line 2)" in plan.dropped
    assert [header for header, _ in plan.chunks] == ["cell 1", "cell 8"]
    text = render_script(plan)
    for gone in ("sleep", "summary", "item", "lock", "found", "'kept'"):
        assert gone not in text, gone
    assert "async def later" in text and "print('kept too')" in text
    assert text.rstrip().endswith("pdtnb.main(pipeline)")

    # Kernel history: the notice names In[n].
    history = analyse(cells_from_history(["", PIPELINE, "await asyncio.sleep(0)"]), origin="history")
    assert history.notices == ["left out In[2]: top-level await; it defines nothing the pipeline uses"]

    # A name the cell defines may be used once kept code defines it again; a module kept code
    # imported too stays available.
    again = plan_of(PIPELINE, "import asyncio\ndata = await pipeline.run()", "data = {}\nprint(data, asyncio.run)")
    assert again.notices == [NOTICE.format(2)] and [h for h, _ in again.chunks] == ["cell 1", "cell 3"]


# ---- without a kernel: what is refused -----------------------------------------------------------

LOAD = "async def load():\n    return {'1': 1}\n"


def test_await_defining_what_kept_code_uses_is_refused(tmp_path: Path, capsys: Any) -> None:
    # x = await ..., x used by a later task: refused, naming the cell, the await's line and the use.
    uses_later = refused(
        "import pdtnb\n" + LOAD,
        "# inputs come from a coroutine\ndata = await load()",
        "inp = pdtnb.InProcessMetadataRepository(data)\npipeline = pdtnb.Pipeline([], pdtnb.Session())",
    )
    assert uses_later.startswith("cell 2 (`# inputs come from a coroutine`): line 2 uses top-level await"), uses_later
    assert "it defines data, which cell 3 line 1 uses" in uses_later
    assert "move the await into an async function" in uses_later

    # Read by a task body defined before the cell (the script calls it after the cell was left out).
    uses_earlier = refused(
        PIPELINE.replace("    pass", "    return limit"),
        "import asyncio\n\nlimit = await asyncio.sleep(0, result=3)",
    )
    assert uses_earlier.startswith("cell 2 (`import asyncio`): line 3 uses top-level await"), uses_earlier
    assert "it defines limit, which cell 1 line 7 uses" in uses_earlier

    # Another name of the same cell: its own line is given too.
    imported = refused(PIPELINE, "import json\nawait asyncio.sleep(0)", "print(json.dumps({}))")
    assert imported.startswith("cell 2 (`import json`): line 2 uses top-level await")
    assert "it defines json (line 1), which cell 3 line 1 uses" in imported

    # The pipeline itself, only defined in such a cell.
    lost = refused("import pdtnb\npipeline = pdtnb.Pipeline([], pdtnb.Session())\nawait pipeline.open()")
    assert "no Pipeline is defined" in lost
    assert "pipeline is defined only in cell 1, which is left out for its top-level await (line 3)" in lost

    # The shell command: exit status 2, one line.
    from pdtnb.notebook.export import main as export_main

    make_notebook(
        tmp_path / "refused.ipynb",
        [
            ("markdown", "intro"),
            ("code", "import pdtnb\n" + LOAD),
            ("code", "x = await load()"),
            ("code", "inp = pdtnb.InProcessMetadataRepository(x)\npipeline = pdtnb.Pipeline([], pdtnb.Session())"),
        ],
    )
    assert export_main([str(tmp_path / "refused.ipynb"), "-o", str(tmp_path / "refused.py")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cell 3 (`x = await load()`): line 1 uses top-level await") and err.count("\n") == 1
    assert "it defines x, which cell 4 line 1 uses" in err and "left out cell" not in err
    assert not (tmp_path / "refused.py").exists()
