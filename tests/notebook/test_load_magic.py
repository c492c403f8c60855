"""``%pdt load FILE [as NAME]`` in a real kernel (ipykernel 6 and 7), and its export.

One scenario per kernel, on a copy of ``examples/books`` (``pipeline.yaml``, ``bodies.py``, the
books) in a temporary directory, with ``PDTNB_EXAMPLE_DIR`` pointing the results there too:

* the load binds the pipeline and makes it the one ``%pdt`` drives, although another Pipeline is
  defined; ``%pdt step``, ``run``/``wait``, ``status``, ``graph`` and ``dashboard`` work on it;
* a wrong file is one line naming ``FILE:LINE:COL`` and changes nothing; so are a missing file and
  a bad ``as NAME``;
* loading the edited file again replaces the pipeline: the old one is closed and its controller
  hands over to the new one;
* ``%pdt export`` of the saved notebook writes ``NAME = pdtnb.load(...)`` with the path relative
  to the script; the shell export writes the same script; the script, run from another directory,
  reports the notebook's status and runs the pipeline afresh on new directories.

The rest run without a kernel: how the export writes each kind of path, and what it refuses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbrun import OTHER_PIPELINE, SHOW_HELPER, KernelInfo, KernelSession, Recorded, shown, status_rows, usage_error

from pdtnb.notebook.export import ExportError, SourceCell, analyse, render_script

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "books"
BOOKS = sorted(p.stem for p in (EXAMPLE / "books").glob("*.txt"))
SCRIPT_TIMEOUT = 60

_SUMMARY = re.compile(r"^# (\S+): ready (\d+), live (\d+), done (\d+), failed (\d+)\b", re.M)


def counts(text: str) -> dict[str, tuple[int, int, int, int]]:
    """(ready, live, done, failed) per task, from a status table's text."""
    found = {task: tuple(int(n) for n in numbers) for task, *numbers in _SUMMARY.findall(text)}
    assert found, f"no status table in {text!r}"
    return found  # type: ignore[return-value]


def copy_example(root: Path) -> Path:
    """examples/books (the file, its bodies, the books) copied to ``root/example``."""
    target = root / "example"
    target.mkdir(parents=True)
    for name in ("pipeline.yaml", "bodies.py"):
        shutil.copy(EXAMPLE / name, target / name)
    shutil.copytree(EXAMPLE / "books", target / "books")
    return target


def notebook_cells(work: Path) -> list[str]:
    """The saved notebook: what ``%pdt export`` reads."""
    return [
        "%load_ext pdtnb",
        f"import os\nos.environ.setdefault('PDTNB_EXAMPLE_DIR', {str(work)!r})  # the results go here",
        "%pdt load example/pipeline.yaml as books",
        "%pdt step",
        "%pdt status",
    ]


OTHER = SHOW_HELPER + OTHER_PIPELINE

FACTS = (
    "from pdtnb.notebook import controller_for\n"
    "show(kind=type(books).__name__, declared_in=str(books.declared_in), open=books.is_open, "
    "tasks=list(books.tasks), other_open=other.is_open, cwd=os.getcwd())"
)


@pytest.fixture(scope="module")
def loaded(kernel: KernelInfo, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    root = tmp_path_factory.mktemp(f"load-{kernel.id}")
    example = copy_example(root)
    work = root / "work"
    broken = root / "broken.yaml"
    broken.write_text(
        (example / "pipeline.yaml").read_text().replace("{repo: books, kind: input}", "{repo: novels, kind: input}")
    )
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A pipeline file, loaded")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in notebook_cells(work)]
    nbformat.write(nb, root / "declared.ipynb")
    (root / "scripts").mkdir()

    rec = Recorded(kernel)
    rec.facts.update(root=root, example=example, work=work, broken=broken)
    with KernelSession(kernel, root) as session:
        cell = rec.cells.__setitem__
        cell("version", session.run("import ipykernel\nipykernel.__version__"))
        cell("other", session.run(OTHER))
        for label, source in zip(("ext", "env", "load", "step", "status_step"), notebook_cells(work)):
            cell(label, session.run(source))
        cell("facts", session.run(FACTS))
        cell("run", session.run("%pdt run"))
        cell("wait", session.run("%pdt wait --timeout 30"))
        cell("status_run", session.run("%pdt status"))
        cell("graph", session.run("%pdt graph"))
        cell("dashboard", session.run("dash = %pdt dashboard\ndash"))
        cell("help", session.run("%pdt help"))
        cell("export", session.run("%pdt export scripts/books.py --notebook declared.ipynb"))
        # Mistakes: one line each, nothing bound or replaced.
        cell("broken", session.run("%pdt load broken.yaml as books"))
        cell("missing", session.run("%pdt load nosuch.yaml as fresh"))
        cell("bad_name", session.run("%pdt load example/pipeline.yaml as 2x"))
        cell("bad_words", session.run("%pdt load example/pipeline.yaml into x"))
        cell(
            "after_mistakes",
            session.run("show(tasks=list(books.tasks), open=books.is_open, fresh='fresh' in dir(), x='x' in dir())"),
        )
        # The file edited (the index task renamed), loaded again into the same variable.
        text = (example / "pipeline.yaml").read_text()
        assert "\n  index:\n    kind: in-process" in text
        (example / "pipeline.yaml").write_text(
            text.replace("\n  index:\n    kind: in-process", "\n  indexer:\n    kind: in-process")
        )
        # Kept under names %pdt ignores (starting with _): another variable holding the old
        # pipeline would keep it from being closed.
        cell("remember", session.run("_old = books\n_old_controller = controller_for(books)"))
        cell("reload", session.run("%pdt load example/pipeline.yaml as books"))
        cell(
            "after_reload",
            session.run(
                "show(old_open=_old.is_open, tasks=list(books.tasks), new=books is not _old, "
                "hands_over=_old_controller.current() is controller_for(books), retired=_old_controller.retired, "
                "dash_follows=dash.controller.current() is controller_for(books))"
            ),
        )
        cell("status_reload", session.run("%pdt status"))
        cell("default_name", session.run("%pdt load example/pipeline.yaml"))
        cell(
            "after_default",
            session.run(
                "show(pipeline=type(pipeline).__name__, distinct=pipeline is not books, books_open=books.is_open)"
            ),
        )
        cell("status_default", session.run("%pdt status"))
        cell("use_books", session.run("%pdt use books\n%pdt close"))
        rec.log = session.kernel_log()
    return rec


def test_the_kernel_is_the_expected_ipykernel(loaded: Recorded) -> None:
    version = loaded["version"].check().plain.strip().strip("'\"")
    assert version.split(".")[0] == str(loaded.kernel.major), version


def test_load_binds_the_pipeline_and_makes_it_current(loaded: Recorded) -> None:
    loaded["other"].check()
    loaded["ext"].check()
    loaded["env"].check()
    assert loaded["load"].check().plain == "loaded pipeline 'books' from example/pipeline.yaml (tasks: summary, index)"
    facts = shown(loaded["facts"])
    assert facts["kind"] == "Pipeline" and facts["tasks"] == ["summary", "index"]
    assert facts["declared_in"] == str(loaded.facts["example"] / "pipeline.yaml")  # absolute
    assert facts["open"] is True and facts["other_open"] is False  # %pdt drove books, not other


def test_step_run_and_status_work_on_the_loaded_pipeline(loaded: Recorded) -> None:
    n = len(BOOKS)
    step = loaded["step"].check().plain
    assert f"launch phase: {n} ready, {n} launched, 0 failed to launch" in step, step
    assert counts(loaded["status_step"].check().plain) == {"summary": (0, 0, n, 0), "index": (n, 0, 0, 0)}
    rows = status_rows(loaded["status_step"].html)
    assert rows["index"]["ready"] == str(n)
    assert loaded["run"].check().widgets
    assert re.fullmatch(
        rf"finished: {n} succeeded, 0 failed \({n} launched in \d+ rounds, [\d.]+ s\)", loaded["wait"].check().plain
    ), loaded["wait"].plain
    assert counts(loaded["status_run"].check().plain) == {"summary": (0, 0, n, 0), "index": (0, 0, n, 0)}
    work = loaded.facts["work"]
    assert sorted(p.stem for p in (work / "reports").glob("*.txt")) == BOOKS
    assert sorted(p.stem for p in (work / "index").glob("*.yaml")) == BOOKS


def test_graph_dashboard_and_help(loaded: Recorded) -> None:
    graph = loaded["graph"].check()
    assert {mime for out in graph.outputs for mime in out.get("data", {})} & {"image/png", "image/svg+xml"}
    assert loaded["dashboard"].check().widgets
    help_text = loaded["help"].check().plain
    assert re.search(r"^  load FILE \[as NAME\] +load a pipeline file", help_text, re.M), help_text


def test_a_wrong_file_is_one_line_with_its_place(loaded: Recorded) -> None:
    broken: Path = loaded.facts["broken"]
    lines = broken.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "novels" in text)
    column = lines[line - 1].index("novels") + 1
    message = usage_error(loaded["broken"])
    assert message.startswith(f"%pdt load: broken.yaml:{line}:{column}: task 'summary': link books: "), message
    assert "'novels' is not a declared repository" in message
    assert usage_error(loaded["missing"]) == "%pdt load: nosuch.yaml: no such pipeline file"
    assert "'2x' is not a Python variable name" in usage_error(loaded["bad_name"])
    assert "`as NAME` or nothing" in usage_error(loaded["bad_words"])
    facts = shown(loaded["after_mistakes"])
    assert facts == {"tasks": ["summary", "index"], "open": True, "fresh": False, "x": False}


def test_loading_again_replaces_and_closes_the_old_pipeline(loaded: Recorded) -> None:
    loaded["remember"].check()
    assert loaded["reload"].check().plain == (
        "loaded pipeline 'books' from example/pipeline.yaml (tasks: summary, indexer); "
        "replaced the old definition (closed it)"
    )
    facts = shown(loaded["after_reload"])
    assert facts == {
        "old_open": False,
        "tasks": ["summary", "indexer"],
        "new": True,
        "hands_over": True,
        "retired": True,
        "dash_follows": True,
    }
    n = len(BOOKS)
    assert counts(loaded["status_reload"].check().plain) == {"summary": (0, 0, n, 0), "indexer": (0, 0, n, 0)}
    # Without `as NAME`: the variable `pipeline`, which becomes the current one.
    assert loaded["default_name"].check().plain.startswith("loaded pipeline 'pipeline' from example/pipeline.yaml")
    assert shown(loaded["after_default"]) == {"pipeline": "Pipeline", "distinct": True, "books_open": True}
    assert counts(loaded["status_default"].check().plain) == {"summary": (0, 0, n, 0), "indexer": (0, 0, n, 0)}
    assert loaded["use_books"].check().plain.endswith("closed books")
    for phrase in ("Traceback", "was never awaited", "Task exception was never retrieved"):
        assert phrase not in loaded.log, loaded.log


# ---- the export ------------------------------------------------------------------------------------


def run_script(script: Path, *args: str, cwd: Path, work: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDTNB_PARAM_")}
    env["PDTNB_EXAMPLE_DIR"] = str(work)
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{script.name} {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
    return done


def test_export_keeps_the_load_and_the_script_runs_from_anywhere(loaded: Recorded) -> None:
    root: Path = loaded.facts["root"]
    exported = loaded["export"].check()
    assert "wrote" in exported.plain and "pipeline 'books'" in exported.plain, exported.plain
    script = root / "scripts" / "books.py"
    text = script.read_text()
    exported_from = (root / "example" / "pipeline.yaml").as_posix()
    assert (
        f"books = pdtnb.load(_pdtnb_file('../example/pipeline.yaml', {exported_from!r}))"
        "  # %pdt load example/pipeline.yaml"
    ) in text
    assert "_PDTNB_HERE = _PdtnbPath(__file__).resolve().parent" in text
    assert text.rstrip().endswith('if __name__ == "__main__":\n    pdtnb.main(books)')
    assert "%pdt" not in "".join(line.split("#")[0] for line in text.splitlines())
    if loaded.kernel.major != 7:
        return  # the rest runs the script in subprocesses: the same on either kernel

    # The shell export of the same notebook, elsewhere, writes the same script.
    shell_dir = root / "shell"
    shell_dir.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pdtnb", "export", str(root / "declared.ipynb"), "-o", str(shell_dir / "books.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (shell_dir / "books.py").read_text() == text

    # Run from another directory: the file is found beside the script. (The example file was
    # edited by the scenario: its second task is now `indexer`.)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    n = len(BOOKS)
    status = run_script(script, "status", cwd=elsewhere, work=loaded.facts["work"])
    assert counts(status.stderr) == {"summary": (0, 0, n, 0), "indexer": (0, 0, n, 0)}
    # Moved with the file (the tree checked out elsewhere), the script reads the moved file.
    moved = root / "moved"
    shutil.copytree(root / "example", moved / "example")
    shutil.copytree(root / "scripts", moved / "scripts")
    moved_yaml = moved / "example" / "pipeline.yaml"
    moved_yaml.write_text(moved_yaml.read_text().replace("\n  indexer:\n", "\n  moved:\n"))
    status = run_script(moved / "scripts" / "books.py", "status", cwd=elsewhere, work=loaded.facts["work"])
    assert set(counts(status.stderr)) == {"summary", "moved"}
    # Written alone elsewhere, it reads the file where the notebook read it.
    alone = root / "alone" / "books.py"
    alone.parent.mkdir()
    shutil.copy(script, alone)
    status = run_script(alone, "status", cwd=elsewhere, work=loaded.facts["work"])
    assert set(counts(status.stderr)) == {"summary", "indexer"}
    fresh = root / "fresh"
    ran = run_script(script, "run", cwd=elsewhere, work=fresh)
    assert "launched" in ran.stderr, ran.stderr
    after = run_script(script, "status", "--json", cwd=elsewhere, work=fresh)
    tasks = {t["name"]: (t["ready"], t["done"], t["failed"]) for t in json.loads(after.stdout)["tasks"]}
    assert tasks == {"summary": (0, n, 0), "indexer": (0, n, 0)}
    assert sorted(p.stem for p in (fresh / "reports").glob("*.txt")) == BOOKS


def plan(*sources: str, load_base: Path, script_dir: Path) -> Any:
    cells = [SourceCell(number, source) for number, source in enumerate(sources, 1)]
    return analyse(cells, origin="t.ipynb", load_base=load_base, script_dir=script_dir)


def test_export_paths_and_refusals(tmp_path: Path) -> None:
    base, scripts = tmp_path / "notebooks", tmp_path / "scripts" / "deep"
    relative = render_script(plan("%pdt load ../pipelines/p.yaml as flow", load_base=base, script_dir=scripts))
    found = (tmp_path / "pipelines" / "p.yaml").as_posix()
    assert f"import pdtnb\nflow = pdtnb.load(_pdtnb_file('../../pipelines/p.yaml', {found!r}))" in relative
    assert relative.rstrip().endswith("pdtnb.main(flow)")
    beside = render_script(plan("%pdt load p.yaml", load_base=scripts, script_dir=scripts))
    assert f"pipeline = pdtnb.load(_pdtnb_file('p.yaml', {(scripts / 'p.yaml').as_posix()!r}))" in beside
    absolute = render_script(
        plan("import pdtnb as pdt", "%pdt load /srv/p.yaml  # the prod one", load_base=base, script_dir=scripts)
    )
    assert "pipeline = pdt.load('/srv/p.yaml')" in absolute and "import pdtnb\n" not in absolute
    assert absolute.rstrip().endswith("pdt.main(pipeline)")
    home = render_script(plan("%pdt load '~/my pipelines/p.yaml' as p", load_base=base, script_dir=scripts))
    assert "p = pdtnb.load(_PdtnbPath('~/my pipelines/p.yaml').expanduser())" in home
    shadowed = render_script(plan("pdtnb = 3", "%pdt load p.yaml", load_base=base, script_dir=base))
    assert "import pdtnb as _pdtnb\npipeline = _pdtnb.load(" in shadowed and "_pdtnb.main(pipeline)" in shadowed
    # Without a load, the script has no _PDTNB_HERE.
    plain = render_script(
        plan("import pdtnb\npipeline = pdtnb.Pipeline([], pdtnb.Session())", load_base=base, script_dir=base)
    )
    assert "_PDTNB_HERE" not in plain and "_pdtnb_file" not in plain
    # Loaded and defined in Python: two pipelines, choose one.
    with pytest.raises(ExportError, match=r"several pipelines are defined \(flow, pipeline\)"):
        plan(
            "%pdt load p.yaml as flow",
            "import pdtnb\npipeline = pdtnb.Pipeline([], pdtnb.Session())",
            load_base=base,
            script_dir=base,
        )

    refusals = {
        "%pdt load $path": "variable expansion",
        "%pdt load {path} as p": "variable expansion",
        "%pdt load p.yaml as": "give the variable after `as`",
        "%pdt load p.yaml as class": "'class' is not a Python variable name",
        "%pdt load": "the following arguments are required: FILE",
        "if True:\n    %pdt load p.yaml": "inside a block",
    }
    for source, expected in refusals.items():
        with pytest.raises(ExportError) as info:
            plan(source, load_base=base, script_dir=base)
        message = str(info.value)
        assert message.startswith("cell 1 (") and expected in message and "\n" not in message, (source, message)
