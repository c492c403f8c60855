"""Exporting a notebook as a script: ``%pdt export`` in a real kernel (ipykernel 6 and 7) and
``python -m pdtnb export`` in a shell, then the script run in subprocesses on fresh repositories.

* ``test_export_runs_like_the_notebook``: a notebook with a parameters cell, an in-process task
  and a ProcessTask (LocalLinuxManager), magics, a cell magic, display code and a ``pdtnb-skip``
  cell runs in the kernel; both exports give the same script; the script, pointed at fresh
  directories by ``--param`` and by ``PDTNB_PARAM_DATA_DIR``, produces the same files and the
  same ``status --json``; ``launch TASK JOB --force --sync`` (what Kubernetes pods run) works.
* ``test_export_actions_history_and_magic_errors``: ``%pdt launch``/``step``/``inject``/``rm``
  exported with ``--actions`` and replayed on fresh repositories give the same repositories;
  the history fallback and ``JPY_SESSION_NAME``; one-line errors for bad ``%pdt export`` arguments.
* The rest run without a kernel: what is dropped, what is refused (naming the cell), parameter
  parsing, the pipeline variable and the pdtnb alias, and ``python -m pdtnb`` errors (status 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbrun import KernelSession, usage_error

from pdtnb.notebook.export import ExportError, SourceCell, analyse, render_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_TIMEOUT = 60


# ---- helpers -------------------------------------------------------------------------------------


def make_notebook(path: Path, cells: list[tuple[str, str] | tuple[str, str, list[str]]]) -> nbformat.NotebookNode:
    """Write a notebook of ``(kind, source[, tags])`` cells, kind "code" or "markdown"."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, *rest in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if rest:
            cell.metadata["tags"] = list(rest[0])
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return nb


def run_script(script: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> Any:
    """Run an exported script in a fresh interpreter (as a terminal, cron or a pod would)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PDTNB_PARAM_")}
    environ.update(env or {})
    result = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=script.parent,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"{script.name} {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
    return result


def pdtnb_cli(*args: str, cwd: Path) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "pdtnb", *args], capture_output=True, text=True, cwd=cwd, timeout=SCRIPT_TIMEOUT
    )


def status_of(text: str) -> dict[str, Any]:
    data = json.loads(text)
    data.pop("taken_at")
    return data


def tree(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under ``root`` (relative path -> contents), for comparing repositories."""
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)
    }


def done_records(directory: Path) -> dict[str, str | None]:
    """A done repository as job -> result (the records also hold times, which differ)."""
    import yaml

    return {p.stem: (yaml.safe_load(p.read_text()) or {}).get("result") for p in sorted(directory.glob("*.yaml"))}


def plan_of(*sources: str | tuple[str, list[str]], pipeline: str | None = None) -> Any:
    cells = []
    for number, source in enumerate(sources, 1):
        text, tags = (source, []) if isinstance(source, str) else source
        cells.append(SourceCell(number, text, frozenset(tags)))
    return analyse(cells, origin="test.ipynb", pipeline=pipeline)


def export_error(*sources: str | tuple[str, list[str]], pipeline: str | None = None) -> str:
    with pytest.raises(ExportError) as info:
        plan_of(*sources, pipeline=pipeline)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- the scenario notebook -----------------------------------------------------------------------

IMPORTS = """\
import sys
from pathlib import Path
import pdtnb as pdt
from pdtnb.notebook import StatusTable
"""

# data_dir is filled in per test; the rest are parameters of each simple type.
PARAMETERS = """\
data_dir = {data_dir!r}  # where every repository lives
factor = 2
label = "n"
"""

DEFINITION = r"""
root = Path(data_dir)
(root / "inp").mkdir(parents=True, exist_ok=True)
for job, value in {"a": 1, "b": 2, "c": 3}.items():
    if not (root / "inp" / f"{job}.yaml").exists():
        (root / "inp" / f"{job}.yaml").write_text(f"{value}\n")

session = pdt.Session()

@session.resource
async def procs():
    yield pdt.LocalLinuxManager("app", root / "procs")

inp = pdt.YamlMetadataFileRepository(root / "inp")
out = pdt.YamlMetadataFileRepository(root / "out")
done = pdt.YamlMetadataFileRepository(root / "done")

@pdt.InProcessSyncTask("double", done)
async def double(job, inp, out):
    await out.dump(job, await inp.info(job) * factor)

double.link("inp", inp, is_input=True)
double.link("out", out, is_output=True)

resources = pdt.ResourceManager(pdt.Resources.parse(cpu=4, mem="1Gi"))
shout = pdt.ProcessTask(
    "shout", procs, resources, pdt.Resources.parse(cpu=1, mem="1Mi"),
    pdt.YamlMetadataFileRepository(root / "pids"),
    "#!/bin/sh\necho " + label + " {{ job }} {{ out }}\n",
    done=pdt.YamlMetadataFileRepository(root / "shout-done"),
    stdout=pdt.FileRepository(root / "shouts", ".txt"),
)
shout.link("out", out, is_input=True)
pipeline = pdt.Pipeline([double, shout], session, [resources])
"""

# Tagged pdtnb-skip: top-level await on the kernel's loop, as notebooks do.
RUN_IN_NOTEBOOK = """\
summary = await pipeline.run(timeout=30)
status = await pdt.pipeline_status(pipeline)
print("STATUS" + status.to_json(indent=None))
"""


def scenario_cells(data_dir: Path) -> list[Any]:
    return [
        ("markdown", "# Doubling, then shouting\nMarkdown cells count in the cell numbers."),
        ("code", "%load_ext pdtnb"),
        ("code", IMPORTS),
        ("code", PARAMETERS.format(data_dir=str(data_dir)), ["parameters"]),
        ("code", DEFINITION),
        ("code", "%pdt status\njobs = %pdt ls double.inp\n!echo from the shell"),
        ("code", '%%capture captured\nprint("hidden")'),
        ("code", 'pipeline.tasks["double"]\nStatusTable\npipeline'),
        ("code", RUN_IN_NOTEBOOK, ["pdtnb-skip"]),
        ("code", "%pdt export exported.py --notebook scenario.ipynb"),
    ]


def run_saved_notebook(session: KernelSession, nb: nbformat.NotebookNode) -> list[Any]:
    return [session.run(cell.source).check() for cell in nb.cells if cell.cell_type == "code"]


# ---- in a kernel ---------------------------------------------------------------------------------


def test_export_runs_like_the_notebook(kernel_session: KernelSession, tmp_path: Path) -> None:
    nbdata = tmp_path / "nbdata"
    nb = make_notebook(tmp_path / "scenario.ipynb", scenario_cells(nbdata))
    results = run_saved_notebook(kernel_session, nb)

    status_line = next(line for line in results[-2].stdout.splitlines() if line.startswith("STATUS"))
    notebook_status = status_of(status_line[len("STATUS") :])
    assert {t["name"]: t["done"] for t in notebook_status["tasks"]} == {"double": 3, "shout": 3}
    export_cell = results[-1]
    assert "reading the saved notebook" in export_cell.stdout and "--notebook" in export_cell.stdout
    assert "edits not saved in the browser are not included" in export_cell.stdout
    assert "wrote" in export_cell.plain and "parameters data_dir, factor, label" in export_cell.plain
    script = tmp_path / "exported.py"
    text = script.read_text()

    # What was kept and dropped.
    assert "%" not in "".join(line for line in text.splitlines() if not line.lstrip().startswith(("#", '"')))
    assert "hidden" not in text and "from the shell" not in text and "StatusTable" not in text
    assert "pipeline.run(" not in text  # the pdtnb-skip cell
    assert "# %% cell 4 (parameters" in text and "# %% cell 5\n" in text  # markdown counted
    assert "data_dir = _pdtnb_param('data_dir', " in text and "# where every repository lives" in text
    assert text.rstrip().endswith('if __name__ == "__main__":\n    pdt.main(pipeline)')

    # The shell command gives the same script.
    shell_dir = tmp_path / "shell"
    shell_dir.mkdir()
    exported = pdtnb_cli("export", str(tmp_path / "scenario.ipynb"), "-o", str(shell_dir / "exported.py"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "wrote" in exported.stderr
    assert (shell_dir / "exported.py").read_text() == text

    # The script on fresh repositories, chosen with --param, then with the environment variable.
    fresh = tmp_path / "fresh"
    ran = run_script(script, "--param", f"data_dir={fresh}", "run")
    assert "launched" in ran.stderr
    status = run_script(script, "status", "--json", env={"PDTNB_PARAM_DATA_DIR": str(fresh)})
    assert status_of(status.stdout) == notebook_status
    for repo in ("inp", "out", "shouts"):
        assert tree(fresh / repo) == tree(nbdata / repo), repo
    assert tree(fresh / "shouts") == {"a.txt": "n a 2\n", "b.txt": "n b 4\n", "c.txt": "n c 6\n"}
    assert done_records(fresh / "done") == done_records(nbdata / "done") == dict.fromkeys("abc", "success")
    assert done_records(fresh / "shout-done") == done_records(nbdata / "shout-done")
    assert not (nbdata / "pids").exists() or not list((nbdata / "pids").iterdir())

    # What a KubeFunctionTask pod runs: launch TASK JOB --force --sync; parameters by type.
    pod = tmp_path / "pod"
    pod_args = ["--param", f"data_dir={pod}", "--param", "factor=5"]
    run_script(script, *pod_args, "launch", "double", "b", "--force", "--sync")
    assert tree(pod / "out") == {"b.yaml": "10\n"}
    assert done_records(pod / "done") == {"b": "success"}
    bad = run_script(script, "--param", f"data_dir={pod}", "--param", "factor=many", "status", check=False)
    assert bad.returncode == 2 and "factor" in bad.stderr and "int" in bad.stderr
    unknown = run_script(script, "--param", "colour=red", "status", check=False)
    assert unknown.returncode == 2
    assert "colour" in unknown.stderr and "data_dir, factor, label" in unknown.stderr


ACTION_CELLS = [
    ("code", "%pdt launch double a"),
    ("code", "%pdt step"),
    ("code", "val = [1, 2]\n%pdt inject double.inp z val\nval.append(3)"),
    ("code", "%%pdt inject double.inp y\n5\n"),
    ("code", "%pdt launch double z\n%pdt launch double y"),
    ("code", "%pdt rm double.out b"),
]


def test_export_actions_history_and_magic_errors(kernel_session: KernelSession, tmp_path: Path) -> None:
    nbdata = tmp_path / "nbdata"
    cells = scenario_cells(nbdata)[:5]  # up to the pipeline definition
    nb = make_notebook(tmp_path / "scenario.ipynb", cells)
    run_saved_notebook(kernel_session, nb)
    for _, source in ACTION_CELLS:
        kernel_session.run(source).check()
    exported = kernel_session.run("%pdt export replay.py --notebook scenario.ipynb --actions").check()
    assert "7 actions to replay" in exported.plain and "python replay.py replay" in exported.plain
    expected_out = {"a.yaml": "2\n", "c.yaml": "6\n", "y.yaml": "10\n", "z.yaml": "- 1\n- 2\n- 1\n- 2\n"}
    assert tree(nbdata / "out") == expected_out

    # The replay on fresh repositories does the same jobs; `run` still behaves like pdtnb.main.
    script = tmp_path / "replay.py"
    text = script.read_text()
    assert "'kind': 'inject'" in text and "'value': [1, 2]" in text  # the value when injected
    fresh = tmp_path / "fresh"
    replayed = run_script(script, "--param", f"data_dir={fresh}", "replay")
    assert "replay 1/7: launch double a" in replayed.stderr
    assert "replay 7/7: rm double.out: 1 deleted" in replayed.stderr
    assert tree(fresh / "out") == tree(nbdata / "out")
    assert tree(fresh / "inp") == tree(nbdata / "inp")
    assert done_records(fresh / "done") == done_records(nbdata / "done") == dict.fromkeys("abcyz", "success")
    again = run_script(script, "--param", f"data_dir={fresh}", "replay", check=False)
    assert again.returncode == 1 and "replay 1/7: launch double a" in again.stderr and "not ready" in again.stderr
    status = run_script(script, "--param", f"data_dir={fresh}", "status", "--json")
    double = next(t for t in status_of(status.stdout)["tasks"] if t["name"] == "double")
    assert (double["ready"], double["done"]) == (0, 5)

    # No saved notebook found: the session's input history (no tags: data_dir is not a parameter).
    forget = 'import os\nos.environ.pop("JPY_SESSION_NAME", None)\nglobals().pop("__session__", None)\n'
    history = kernel_session.run(forget + "%pdt export history.py").check()
    assert "input history" in history.stdout and "cell tags are unavailable" in history.stdout
    assert "no parameters" in history.plain
    history_text = (tmp_path / "history.py").read_text()
    assert "# %% In[" in history_text and "val.append(3)" in history_text and "ipykernel" not in history_text
    seen = run_script(tmp_path / "history.py", "ls", "double.out")  # the notebook's own repositories
    assert seen.stdout.split() == ["a", "c", "y", "z"]

    # jupyter-server's JPY_SESSION_NAME names the saved notebook.
    via_env = kernel_session.run(
        f'os.environ["JPY_SESSION_NAME"] = {str(tmp_path / "scenario.ipynb")!r}\n%pdt export via_env.py'
    ).check()
    assert "reading the saved notebook" in via_env.stdout and "JPY_SESSION_NAME" in via_env.stdout
    assert "data_dir = _pdtnb_param(" in (tmp_path / "via_env.py").read_text()

    # Bad arguments: one line naming the argument at fault.
    errors = {
        "no_path": ("%pdt export", "the following arguments are required: path"),
        "bad_option": ("%pdt export x.py --bogus", "--bogus"),
        "missing_notebook": ("%pdt export x.py --notebook missing.ipynb", "--notebook missing.ipynb: no such file"),
        "no_such_pipeline": ("%pdt export x.py --notebook scenario.ipynb --pipeline nope", "--pipeline nope"),
        "own_notebook": ("%pdt export scenario.ipynb --notebook scenario.ipynb", "the notebook being exported"),
        "use_elsewhere": ("other = pipeline\n%pdt use other\n%pdt export x.py", "%pdt use other: the exported"),
    }
    for label, (source, expected) in errors.items():
        message = usage_error(kernel_session.run(source))
        assert message.startswith("%pdt"), (label, message)
        assert expected in message, (label, message)
    assert not (tmp_path / "x.py").exists()
    assert nbformat.read(tmp_path / "scenario.ipynb", as_version=4).cells[4].source == DEFINITION


# ---- without a kernel: the rules -----------------------------------------------------------------

PIPELINE = """\
import pdtnb
inp = pdtnb.InProcessMetadataRepository({"1": 1})
done = pdtnb.InProcessMetadataRepository()

@pdtnb.InProcessSyncTask("t", done)
async def t(job, inp):
    pass

t.link("inp", inp, is_input=True)
pipeline = pdtnb.Pipeline([t], pdtnb.Session())
"""


def test_dropped_statements_and_kept_code() -> None:
    plan = plan_of(
        PIPELINE,
        "%pdt status\nfiles = !ls\n%time total = 1 + 1\nprint('kept')\npipeline\npipeline.tasks['t']\nt.links",
        "import IPython.display\nfrom IPython.display import Markdown\nimport pdtnb.notebook\nimport os, ipywidgets",
        "shown = Markdown('x')\nshown\ndisplay(pipeline)\npdtnb.notebook.StatusTable(None)\ndisplay",
        '"""a string alone"""\n1 + 2\nlen([1])',
        ("print('not exported')", ["pdtnb-skip"]),
    )
    code = "\n".join(text for _, text in plan.chunks)
    assert "print('kept')" in code and "len([1])" in code
    for gone in ("!ls", "%", "files", "total", "Markdown", "display", "ipywidgets", "IPython", "a string", "1 + 2"):
        assert gone not in code, gone
    assert "import pdtnb\n" in code and "import os\n" in code  # pdtnb.notebook -> pdtnb
    assert "not exported" not in code
    assert plan.pipeline == "pipeline" and plan.pdtnb_alias == "pdtnb"
    assert any("tagged pdtnb-skip" in line for line in plan.dropped)


def test_refused_cells_name_the_cell_and_its_first_line() -> None:
    uses_magic = export_error(PIPELINE, "jobs = %pdt ls t.inp", "n = len(jobs)")
    assert uses_magic.startswith("cell 3 (`n = len(jobs)`): line 1 uses jobs")
    assert "%pdt ls t.inp" in uses_magic and "cell 2" in uses_magic

    uses_shell = export_error(PIPELINE, "files = !ls data", "print(files)")
    assert "cell 3 (`print(files)`)" in uses_shell and "!ls data" in uses_shell

    cell_magic = export_error("%%capture out\nprint(1)", PIPELINE, "out.show()")
    assert "cell 3 (`out.show()`)" in cell_magic and "%%capture" in cell_magic and "cell 1" in cell_magic

    timed = export_error("%%time\nsize = 10", PIPELINE, "sizes = [size]")
    assert "cell 3" in timed and "size" in timed and "%%time" in timed

    skipped = export_error(("limit = 5", ["pdtnb-skip"]), PIPELINE, "def f():\n    return limit\n")
    assert "cell 3 (`def f():`)" in skipped and "limit" in skipped and "cell 1, which is tagged pdtnb-skip" in skipped

    syntax = export_error(PIPELINE, "\n\nx = 1\ndef broken(:\n    pass")  # IPython drops the blank lines
    assert syntax.startswith("cell 2 (`x = 1`): invalid Python at line 4")
    outside = export_error(PIPELINE, "x = 1\nreturn x")
    assert outside.startswith("cell 2 (`x = 1`): invalid Python at line 2: 'return' outside function")
    numbered = export_error(PIPELINE, "for x in _3:\n    print(x)")
    assert "cell 2" in numbered and "_3" in numbered

    # Top-level await leaves its cell out (tests/notebook/test_export_await.py); using what it defines is refused.
    awaiting = export_error(PIPELINE, "opened = await pipeline.open()", "print(opened)")
    assert awaiting.startswith("cell 2 (`opened = await pipeline.open()`): line 1") and "top-level await" in awaiting
    async_for = export_error(PIPELINE, "async for x in aiter():\n    pass", "print(x)")
    assert "cell 2" in async_for and "top-level await" in async_for and "cell 3 line 1" in async_for
    assert plan_of(PIPELINE, "async def later():\n    await pipeline.open()").pipeline == "pipeline"

    nested = export_error(PIPELINE, "for job in ['1']:\n    %pdt launch t $job")
    assert "cell 2 (`for job in ['1']:`)" in nested and "%pdt launch" in nested and "inside a block" in nested

    widget = export_error(PIPELINE, "from pdtnb.notebook import Dashboard", "for d in [Dashboard]:\n    d.x = 1")
    assert "cell 3" in widget and "Dashboard" in widget

    assert "no Pipeline is defined" in export_error("import pdtnb\nx = 1")
    hidden = export_error(
        PIPELINE.replace("pipeline = ", "other = "), ("pipeline = other", ["pdtnb-skip"]), pipeline="pipeline"
    )
    assert "--pipeline pipeline" in hidden and "pdtnb-skip" in hidden
    several = export_error(PIPELINE, "second = pdtnb.Pipeline([], pdtnb.Session())")
    assert "several pipelines are defined (pipeline, second)" in several and "--pipeline NAME" in several
    clash = export_error((("size = 1\nSIZE = 2"), ["parameters"]), PIPELINE)
    assert "PDTNB_PARAM_SIZE" in clash and "cell 1" in clash


def test_pipeline_choice_and_pdtnb_alias() -> None:
    chosen = plan_of(PIPELINE, "second = pdtnb.Pipeline([], pdtnb.Session())", pipeline="second")
    assert render_script(chosen).rstrip().endswith("pdtnb.main(second)")

    renamed = PIPELINE.replace("import pdtnb\n", "import pdtnb as pydatatask\n").replace("pdtnb.", "pydatatask.")
    aliased = plan_of(renamed)
    assert aliased.pdtnb_alias == "pydatatask"
    assert render_script(aliased).rstrip().endswith("pydatatask.main(pipeline)")

    by_name = plan_of("from pdtnb import Pipeline as P, Session\nflow = P([], Session())")
    text = render_script(by_name)
    assert by_name.pipeline == "flow" and text.rstrip().endswith("    import pdtnb\n\n    pdtnb.main(flow)")

    shadowed = plan_of("from pdtnb import Pipeline, Session\npdtnb = 'a name'\nflow = Pipeline([], Session())")
    assert render_script(shadowed).rstrip().endswith("import pdtnb as _pdtnb\n\n    _pdtnb.main(flow)")

    # A live kernel knows which variables hold pipelines, however they were built.
    built = [SourceCell(1, "import pdtnb\ndef make():\n    return pdtnb.Pipeline([], pdtnb.Session())\nflow = make()")]
    with pytest.raises(ExportError, match="no Pipeline"):
        analyse(built, origin="x")
    assert analyse(built, origin="x", known_pipelines=["flow"]).pipeline == "flow"


PARAMETER_CELL = """\
count = 3
ratio = 0.5
name = "plain"
flag: bool = False
items = [1, 2]
mapping = {"k": 1}
pair = (1, "x")
nothing = None
computed = len(items)  # not a literal: not a parameter
"""

SHOW = """\
import json, sys
print("PARAMS " + json.dumps({"count": count, "ratio": ratio, "name": name, "flag": flag, "items": items,
      "mapping": mapping, "pair": list(pair), "pair_type": type(pair).__name__, "nothing": nothing,
      "computed": computed}), file=sys.stderr)
"""


def test_parameters_from_options_and_environment(tmp_path: Path) -> None:
    from pdtnb.notebook.export import main as export_main

    make_notebook(tmp_path / "p.ipynb", [("code", PARAMETER_CELL, ["parameters"]), ("code", PIPELINE), ("code", SHOW)])
    script = tmp_path / "p.py"
    assert export_main([str(tmp_path / "p.ipynb"), "-o", str(script)]) == 0

    def params(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        out = run_script(script, *args, "ls", "t.inp", env=env)
        assert out.stdout.split() == ["1"]  # pdtnb.main ran with what was left of the command line
        line = next(line for line in out.stderr.splitlines() if line.startswith("PARAMS "))
        return json.loads(line[len("PARAMS ") :])

    defaults = params()
    assert defaults == {
        "count": 3,
        "ratio": 0.5,
        "name": "plain",
        "flag": False,
        "items": [1, 2],
        "mapping": {"k": 1},
        "pair": [1, "x"],
        "pair_type": "tuple",
        "nothing": None,
        "computed": 2,
    }
    given = params(
        "--param",
        "count=7",
        "--param=ratio=1e-3",
        "--param",
        "flag=yes",
        "--param",
        "items=[4, 5, 6]",
        "--debug",
        "--param",
        'pair=[2, "y"]',
        "--param",
        "nothing=12",
        "--param",
        "name=a=b",
        env={"PDTNB_PARAM_COUNT": "99", "PDTNB_PARAM_MAPPING": '{"j": 2}'},
    )
    assert given == {
        "count": 7,
        "ratio": 0.001,
        "name": "a=b",
        "flag": True,
        "items": [4, 5, 6],
        "mapping": {"j": 2},
        "pair": [2, "y"],
        "pair_type": "tuple",
        "nothing": 12,
        "computed": 3,
    }
    assert params(env={"PDTNB_PARAM_FLAG": "off", "PDTNB_PARAM_NOTHING": "free text"})["nothing"] == "free text"

    for args, env, expected in [
        (["--param", "flag=maybe"], {}, "flag"),
        (["--param", 'items={"a": 1}'], {}, "items"),
        ([], {"PDTNB_PARAM_RATIO": "half"}, "PDTNB_PARAM_RATIO"),
        (["--param", "computed=1"], {}, "no such parameter"),
        (["--param", "count"], {}, "NAME=VALUE"),
        (["--param"], {}, "NAME=VALUE"),
    ]:
        bad = run_script(script, *args, "status", env=env, check=False)
        assert bad.returncode == 2, (args, bad.stderr)
        assert bad.stderr.startswith("error: ") and expected in bad.stderr, (args, bad.stderr)
    # After the subcommand, options belong to pdtnb.main (which has no --param).
    late = run_script(script, "status", "--param", "count=1", check=False)
    assert late.returncode == 2 and "unrecognized arguments" in late.stderr


def test_shell_command_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from pdtnb.__main__ import main as pdtnb_main

    make_notebook(
        tmp_path / "bad.ipynb",
        [("markdown", "intro"), ("code", PIPELINE), ("code", "jobs = %pdt ls t.inp"), ("code", "print(jobs)")],
    )
    make_notebook(tmp_path / "good.ipynb", [("code", PIPELINE)])
    (tmp_path / "notjson.ipynb").write_text("{not json")
    # Exit status and output format, in real processes (nbformat makes each take a few seconds).
    refused = pdtnb_cli("export", "bad.ipynb", "-o", "bad.py", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert (
        refused.stderr == "error: cell 4 (`print(jobs)`): line 1 uses jobs, which is assigned by `%pdt ls t.inp` "
        "in cell 3; the script would not have it: compute it in Python, or tag this cell pdtnb-skip\n"
    )
    unknown = pdtnb_cli("frobnicate", cwd=tmp_path)
    assert unknown.returncode == 2 and "error: unknown command 'frobnicate'" in unknown.stderr
    assert "usage: python -m pdtnb" in unknown.stderr and "python -m pdtnb export NOTEBOOK.ipynb" in unknown.stderr

    # The other cases in this process: the same code, without the interpreter start-up.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notanotebook.ipynb").write_text('{"nbformat": 4, "cells": "not a list"}')
    cases = [
        (["export", "nosuch.ipynb", "-o", "x.py"], "error: notebook nosuch.ipynb: no such file"),
        (["export", "bad.ipynb", "-o", "x.py", "--actions"], "error: --actions: "),
        (["export", "bad.ipynb"], "error: the following arguments are required: -o/--output"),
        (["export", "good.ipynb", "-o", "x.py", "--pipeline", "nope"], "error: --pipeline nope"),
        (["export", "good.ipynb", "-o", "good.ipynb"], "the notebook being exported"),
        (["export", "notjson.ipynb", "-o", "x.py"], "error: notebook notjson.ipynb cannot be read"),
        (["export", "notanotebook.ipynb", "-o", "x.py"], "error: notebook notanotebook.ipynb cannot be read"),
        (["export", "bad.ipynb", "-o", "-", "--pipeline", "pipeline"], "error: cell 4 (`print(jobs)`)"),
        ([], "python -m pdtnb export NOTEBOOK.ipynb -o SCRIPT.py"),
    ]
    for args, expected in cases:
        with pytest.raises(SystemExit) as exited:
            sys.exit(pdtnb_main(args))
        err = capsys.readouterr().err
        assert exited.value.code == 2, (args, err)
        assert expected in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "x.py").exists() and not (tmp_path / "bad.py").exists()
    assert nbformat.read(tmp_path / "good.ipynb", as_version=4).cells[0].source == PIPELINE

    assert pdtnb_main(["export", "good.ipynb", "-o", "-"]) == 0
    assert capsys.readouterr().out.startswith("#!/usr/bin/env python3")
    assert pdtnb_main(["--help"]) == 0 and "export" in capsys.readouterr().out
