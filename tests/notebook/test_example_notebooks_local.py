"""The example notebooks in ``notebooks/``, run top to bottom on real kernels, their outputs checked.

Each notebook is executed with nbclient as a user's *Run All* would, in a temporary copy of
``notebooks/`` (so whatever it writes next to itself lands there), with its parameters overridden
papermill-style: a cell tagged ``injected-parameters`` inserted after the one tagged
``parameters``. Any error in a cell fails the test with the cell and its traceback. Then the
outputs are checked: status counts, results, the files written, the graph's PNG, the widget views
and the widget models nbclient saved in the notebook's metadata, and the text the cells printed.

* ``quickstart.ipynb`` on ipykernel 6 and 7;
* ``processes.ipynb`` without an SSH host (the SSH part is skipped with an explanation) and over
  SSH to the real OpenSSH server of ``tests/process/sshd.py`` (the jobs run as its test user);
* ``dashboard-tour.ipynb``: every widget, and the dashboard's buttons pressed from code;
* ``declarative.ipynb``: ``%pdt load`` of ``examples/books/pipeline.yaml`` (copied beside the
  notebooks' copy), stepped, drawn, and exported as a script that keeps the load.

:func:`execute` and :func:`check_quickstart` are also used by ``test_binder.py``.
"""

from __future__ import annotations

import base64
import getpass
import importlib.util
import os
import platform
import pwd
import re
import shutil
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest
import yaml
from nbrun import KernelInfo, status_rows

from pdtnb import JOB_STATES

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
MINE = ("quickstart.ipynb", "processes.ipynb", "dashboard-tour.ipynb", "declarative.ipynb")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: Seconds one cell may take before nbclient gives up.
CELL_TIMEOUT = 60
#: Seconds a whole notebook may take, kernel start and shutdown included (each takes 2-8 s here).
NOTEBOOK_BUDGET = 45
SSH_VARIABLES = ("PDTNB_SSH_HOST", "PDTNB_SSH_PORT", "PDTNB_SSH_USER", "PDTNB_SSH_KEY", "PDTNB_SSH_KNOWN_HOSTS")


# ---- running a notebook ----------------------------------------------------------------------


@dataclass
class Executed:
    """An executed notebook: its cells by id, the directory it ran in, what its kernel logged."""

    nb: Any
    dir: Path
    elapsed: float
    kernel_log: str

    def cell(self, cell_id: str) -> Any:
        for cell in self.nb.cells:
            if cell.get("id") == cell_id:
                return cell
        raise AssertionError(f"the notebook has no cell {cell_id!r}")

    def data(self, cell_id: str, mime: str) -> list[Any]:
        return [
            out["data"][mime]
            for out in self.cell(cell_id).outputs
            if out["output_type"] in ("execute_result", "display_data") and mime in out.get("data", {})
        ]

    def text(self, cell_id: str) -> str:
        """The text/plain of the cell's results and displays."""
        return "\n".join(self.data(cell_id, "text/plain"))

    def html(self, cell_id: str) -> str:
        return "\n".join(self.data(cell_id, "text/html"))

    def stdout(self, cell_id: str) -> str:
        outputs = self.cell(cell_id).outputs
        return "".join(out["text"] for out in outputs if out["output_type"] == "stream" and out["name"] == "stdout")

    def widget_models(self) -> dict[str, Any]:
        """The widget models nbclient saved in the notebook's metadata, by model id."""
        return self.nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def widget(self, cell_id: str) -> tuple[str, dict[str, Any]]:
        """The one widget view the cell displayed: (its model id, its saved model)."""
        views = self.data(cell_id, WIDGET_VIEW)
        assert len(views) == 1, f"cell {cell_id!r} displayed {len(views)} widget views: {self.cell(cell_id).outputs}"
        model_id = views[0]["model_id"]
        models = self.widget_models()
        assert model_id in models, f"the widget of cell {cell_id!r} has no saved model"
        return model_id, models[model_id]

    def descendants(self, model_id: str) -> list[dict[str, Any]]:
        """The saved models of a widget and of everything inside it, depth first, in order."""
        models = self.widget_models()
        found = [models[model_id]]
        for child in models[model_id]["state"].get("children", []):
            found += self.descendants(child.removeprefix("IPY_MODEL_"))
        return found


def inject_parameters(nb: Any, parameters: dict[str, Any]) -> None:
    """Insert, after the cell tagged ``parameters``, a cell assigning ``parameters`` (as papermill does)."""
    index = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    cell.id = "injected-parameters"
    nb.cells.insert(index + 1, cell)


def execute(
    name: str,
    kernel_name: str,
    workdir: Path,
    parameters: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    extra_cells: tuple[str, ...] = (),
) -> Executed:
    """Copy ``notebooks/`` to ``workdir`` and run notebook ``name`` there on kernelspec ``kernel_name``.

    Fails on the first cell that raises (nbclient's CellExecutionError names the cell), or when a
    cell takes longer than CELL_TIMEOUT. ``extra_cells`` are appended (ids ``extra-0``...).
    """
    shutil.copytree(NOTEBOOKS, workdir, ignore=shutil.ignore_patterns("data*", ".ipynb_checkpoints"))
    nb = nbformat.read(workdir / name, as_version=4)
    if parameters:
        inject_parameters(nb, parameters)
    for i, source in enumerate(extra_cells):
        cell = nbformat.v4.new_code_cell(source)
        cell.id = f"extra-{i}"
        nb.cells.append(cell)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    log_path = workdir.parent / f"{workdir.name}-kernel.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        # The kernel process's own output (asyncio's unhandled-error reports, logging): a file.
        client.execute(stdout=log, stderr=subprocess.STDOUT, env=dict(env if env is not None else os.environ))
    elapsed = time.monotonic() - started
    nbformat.write(nb, workdir.parent / f"executed-{name}")  # for a look after a failure
    executed = Executed(nb, workdir, elapsed, log_path.read_text(errors="replace"))
    check_no_hidden_errors(executed)
    assert elapsed < NOTEBOOK_BUDGET, f"{name} took {elapsed:.1f} s to run top to bottom"
    return executed


def check_no_hidden_errors(ex: Executed) -> None:
    """Nothing went wrong quietly: no traceback in any cell's stderr nor in the kernel's log."""
    for cell in ex.nb.cells:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream" and out["name"] == "stderr":
                assert "Traceback" not in out["text"], (cell.get("id"), out["text"])
    for phrase in ("Traceback", "was never awaited", "Task exception was never retrieved", "Task was destroyed"):
        assert phrase not in ex.kernel_log, ex.kernel_log


# ---- reading outputs ---------------------------------------------------------------------------

_SUMMARY = re.compile(r"^# (\S+): ready (\d+), live (\d+), done (\d+), failed (\d+)\b", re.M)


def counts(text: str) -> dict[str, dict[str, int]]:
    """The ready / live / done / failed counts per task of a status table's text form."""
    found = {
        task: dict(zip(("ready", "live", "done", "failed"), map(int, numbers)))
        for task, *numbers in _SUMMARY.findall(text)
    }
    assert found, f"no status table in {text!r}"
    return found


def state(ready: int = 0, live: int = 0, done: int = 0, failed: int = 0) -> dict[str, int]:
    return {"ready": ready, "live": live, "done": done, "failed": failed}


def png_size(data: str) -> tuple[int, int]:
    """(width, height) of a base64 PNG, asserting it is one."""
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR", raw[:16]
    return struct.unpack(">II", raw[16:24])


def check_graph(ex: Executed, cell_id: str) -> None:
    pngs = ex.data(cell_id, "image/png")
    assert len(pngs) == 1, ex.cell(cell_id).outputs
    width, height = png_size(pngs[0])
    assert width >= 300 and height >= 150, (width, height)
    assert ex.text(cell_id).startswith("<PipelineGraph ")


def word_and_line_counts(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        path.stem: (len(path.read_text().split()), len(path.read_text().splitlines()))
        for path in sorted(directory.glob("*.txt"))
    }


# ---- the committed notebooks -------------------------------------------------------------------


@pytest.mark.parametrize("name", MINE)
def test_committed_notebook_is_clean_and_parametrized(name: str) -> None:
    """What users open: valid, without outputs, parameters first, every code cell with an id."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: cell {cell.id} has outputs"
    assert "widgets" not in nb.metadata, f"{name} carries saved widget state"
    assert code[0].metadata.get("tags") == ["parameters"], f"{name}: the first code cell is not tagged parameters"
    assert re.search(r"^[A-Z_]+ = ", code[0].source, re.M), code[0].source
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_index_lists_every_notebook() -> None:
    """notebooks/README.md links every notebook in the directory, and nothing that is missing."""
    index = (NOTEBOOKS / "README.md").read_text()
    linked = set(re.findall(r"\]\(([^)#]+\.ipynb)\)", index))
    present = {path.name for path in NOTEBOOKS.glob("*.ipynb")}
    assert linked == present


# ---- quickstart --------------------------------------------------------------------------------


def check_quickstart(ex: Executed) -> None:
    """The quickstart did what its Markdown says, step by step, and left its results on disk."""
    books = word_and_line_counts(ex.dir / "data" / "books")
    assert sorted(books) == ["lighthouse", "meadow", "orchard", "river"]
    assert ex.text("make-data") == "['lighthouse.txt', 'orchard.txt', 'river.txt']"

    start = ex.html("status-start")
    assert status_rows(start)["count"]["ready"] == "3" and status_rows(start)["report"]["ready"] == "0"
    assert counts(ex.text("status-start")) == {"count": state(ready=3), "report": state()}

    assert ex.text("update") == "update phase: tasks with live or reaped jobs: none"
    assert ex.text("launch-phase") == "launch phase: 3 ready, 3 launched, 0 failed to launch, 0 held back"
    assert counts(ex.text("status-stepped")) == {"count": state(done=3), "report": state(ready=3)}
    assert ex.text("launch-one") == "report:river launched and finished"

    _, live = ex.widget("run")  # %pdt run: a live status widget, and its text fallback
    assert live["model_name"] == "HTMLModel" and "pdtnb-live-status" in live["state"]["_dom_classes"]
    assert ex.text("run").startswith("LiveStatus(")
    assert re.fullmatch(r"finished: 2 succeeded, 0 failed \(2 launched in \d+ rounds, [\d.]+ s\)", ex.text("wait")), (
        ex.text("wait")
    )
    assert counts(ex.text("status-after-run")) == {"count": state(done=3), "report": state(done=3)}

    assert ex.text("ls") == "lighthouse\norchard\nriver\n(3 jobs)"
    words, lines = books["river"]
    assert ex.text("cat") == f"river: {words} words on {lines} lines\n"
    done = yaml.safe_load(ex.text("cat-done"))
    assert done["result"] == "success" and done["start_time"] <= done["end_time"]
    expected = "".join(f"{job:<12} {w:>4} words {n:>3} lines\n" for job, (w, n) in books.items() if job != "meadow")
    assert ex.stdout("python-results") == expected

    check_graph(ex, "graph")

    assert counts(ex.text("add-book")) == {"count": state(ready=1, done=3), "report": state(done=3)}
    assert "launched=2," in ex.text("run-again") and "stopped=False" in ex.text("run-again")
    assert counts(ex.text("status-end")) == {"count": state(done=4), "report": state(done=4)}
    assert ex.text("close") == "closed pipeline"

    # Everything the notebook promised is on disk next to it.
    work = ex.dir / "data" / "work"
    for job, (w, n) in books.items():
        assert (work / "reports" / f"{job}.txt").read_text() == f"{job}: {w} words on {n} lines\n"
        assert yaml.safe_load((work / "counts" / f"{job}.yaml").read_text()) == {"lines": n, "words": w}
        assert yaml.safe_load((work / "report-done" / f"{job}.yaml").read_text())["result"] == "success"


def test_quickstart(kernel: KernelInfo, tmp_path: Path) -> None:
    ex = execute(
        "quickstart.ipynb",
        kernel.name,
        tmp_path / "notebooks",
        extra_cells=("import ipykernel\nipykernel.__version__",),
    )
    assert ex.text("extra-0").strip("'").split(".")[0] == str(kernel.major)
    check_quickstart(ex)
    if kernel.major == 7:
        check_quickstart_script(ex)


def check_quickstart_script(ex: Executed) -> None:
    """The quickstart exports as a script which, run from a shell next to the executed notebook,
    reports the notebook's final status and redoes nothing; a fresh data directory given by
    ``--param`` starts empty."""
    from pdtnb.notebook.export import main as export

    script = ex.dir / "quickstart.py"
    assert export([str(ex.dir / "quickstart.ipynb"), "-o", str(script)]) == 0

    def shell(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, str(script), *args], cwd=ex.dir, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done

    final = counts(ex.text("status-end"))
    assert counts(shell("status").stderr) == final
    assert "0 launched" in shell("run").stderr
    fresh = shell("--param", f"DATA_DIR={ex.dir / 'elsewhere'}", "status").stderr
    assert counts(fresh) == {task: state() for task in final}


@pytest.mark.parametrize("name", MINE)
def test_example_notebook_exports_as_a_script(name: str, tmp_path: Path) -> None:
    """Each example notebook can be turned into a script (``pdtnb-skip`` marks its notebook-only
    cells), and the script's command line loads."""
    from pdtnb.notebook.export import main as export

    script = tmp_path / name.replace(".ipynb", ".py")
    assert export([str(NOTEBOOKS / name), "-o", str(script)]) == 0
    done = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "status" in done.stdout, done.stderr


# ---- processes ---------------------------------------------------------------------------------


def check_local_processes(ex: Executed, local_path: Path) -> dict[str, tuple[int, int]]:
    texts = word_and_line_counts(ex.dir / "data-processes" / "texts")
    assert sorted(texts) == ["lighthouse", "orchard", "river"]
    assert counts(ex.text("status-start")) == {"wc": state(ready=3)}
    # The quota (cpu=2, one per job) holds the third job back; launched jobs are live until reaped.
    assert ex.text("launch-phase") == "launch phase: 3 ready, 2 launched, 0 failed to launch, 1 held back"
    assert counts(ex.text("status-live")) == {"wc": state(ready=1, live=2)}
    assert "launched=1," in ex.text("local-run")
    assert counts(ex.text("local-status")) == {"wc": state(done=3)}
    me = f"{getpass.getuser()} (uid {os.getuid()}) on {platform.node()}"
    assert ex.stdout("local-outputs") == "".join(
        f"{job}: {words} words, counted by {me}\n" for job, (words, _) in texts.items()
    )
    done = yaml.safe_load(ex.text("local-done"))
    assert done["result"] == "success" and done["exit_code"] == 0 and done["start_time"] <= done["end_time"]
    assert ex.text("local-close") == "closed pipeline"
    # The local manager worked under LOCAL_PATH/APP and removed each job's directory once reaped.
    assert list((local_path / "pdtnb-notebook" / "wc").iterdir()) == []
    for job, (words, _) in texts.items():
        assert (
            (ex.dir / "data-processes" / "local" / "counts" / f"{job}.txt")
            .read_text()
            .startswith(f"{job}: {words} words")
        )
    return texts


@pytest.mark.parametrize("kernel", ["ipykernel7"], indirect=True)
def test_processes_without_an_ssh_host(kernel: KernelInfo, tmp_path: Path) -> None:
    """Without PDTNB_SSH_HOST the local part runs and the SSH part is skipped, saying why."""
    env = {k: v for k, v in os.environ.items() if k not in SSH_VARIABLES}
    local_path = tmp_path / "local-procs"
    ex = execute(
        "processes.ipynb", kernel.name, tmp_path / "notebooks", parameters={"LOCAL_PATH": str(local_path)}, env=env
    )
    check_local_processes(ex, local_path)
    assert ex.stdout("ssh-settings").startswith("Skipping the SSH part: PDTNB_SSH_HOST is not set.")
    assert "PDTNB_SSH_KNOWN_HOSTS" in ex.stdout("ssh-settings")
    assert ex.cell("ssh-pipeline").outputs == [] and ex.cell("ssh-run").outputs == []
    assert not (ex.dir / "data-processes" / "ssh").exists()


def _load_sshd() -> Any:
    """tests/process/sshd.py, loaded by path (pytest puts only this directory and tests/ on sys.path)."""
    spec = importlib.util.spec_from_file_location("_pdtnb_tests_sshd", ROOT / "tests" / "process" / "sshd.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sshd(service_unavailable: Any) -> Iterator[Any]:
    """A real OpenSSH server on 127.0.0.1 with a test user that logs in with a generated key."""
    pytest.importorskip("asyncssh")
    helper = _load_sshd()
    try:
        server = helper.start_sshd()
    except (RuntimeError, OSError) as exc:
        service_unavailable("OpenSSH server", str(exc))
    yield server
    helper.stop_sshd(server)


@pytest.mark.parametrize("kernel", ["ipykernel7"], indirect=True)
def test_processes_over_ssh(sshd: Any, kernel: KernelInfo, tmp_path: Path) -> None:
    """With the PDTNB_SSH_* variables set, the same task runs on the SSH host, as the SSH user."""
    env = dict(
        os.environ,
        PDTNB_SSH_HOST=sshd.host,
        PDTNB_SSH_PORT=str(sshd.port),
        PDTNB_SSH_USER=sshd.user,
        PDTNB_SSH_KEY=str(sshd.client_key),
        PDTNB_SSH_KNOWN_HOSTS=str(sshd.known_hosts),
    )
    local_path = tmp_path / "local-procs"
    remote_path = Path(f"/tmp/pdtnb-nb-ssh-{uuid.uuid4().hex[:12]}")  # made by the SSH user itself
    try:
        ex = execute(
            "processes.ipynb",
            kernel.name,
            tmp_path / "notebooks",
            parameters={"LOCAL_PATH": str(local_path), "REMOTE_PATH": str(remote_path)},
            env=env,
        )
        texts = check_local_processes(ex, local_path)
        assert ex.stdout("ssh-settings") == f"The SSH part runs on {sshd.user}@{sshd.host}:{sshd.port}\n"
        remote_user = pwd.getpwnam(sshd.user)
        assert remote_user.pw_uid != os.getuid()  # so the output below can only come from the SSH side
        lines = ex.stdout("ssh-run").splitlines()
        assert re.fullmatch(
            r"RunSummary\(rounds=\d+, launched=3, failed_launches=0, .*stopped=False, succeeded=\d+, failed=0, .*\)",
            lines[0],
        )
        assert lines[1] == "# wc_ssh: ready 0, live 0, done 3, failed 0, retrying 0, blocked 0, waiting 0"
        who = f"counted by {sshd.user} (uid {remote_user.pw_uid}) on {platform.node()}"
        assert lines[2:] == [f"{job}: {words} words, {who}" for job, (words, _) in texts.items()]
        results = ex.dir / "data-processes" / "ssh"
        for job, (words, _) in texts.items():
            assert (results / "counts" / f"{job}.txt").read_text() == f"{job}: {words} words, {who}\n"
            done = yaml.safe_load((results / "done" / f"{job}.yaml").read_text())
            assert done["result"] == "success" and done["exit_code"] == 0
        assert list((results / "pids").iterdir()) == []
        # The job directories were made over SFTP by the SSH user, and removed once reaped.
        assert (remote_path / "pdtnb-notebook").stat().st_uid == remote_user.pw_uid
        assert list((remote_path / "pdtnb-notebook" / "wc_ssh").iterdir()) == []
    finally:
        shutil.rmtree(remote_path, ignore_errors=True)


# ---- dashboard tour ----------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["ipykernel7"], indirect=True)
def test_dashboard_tour(kernel: KernelInfo, tmp_path: Path) -> None:
    ex = execute("dashboard-tour.ipynb", kernel.name, tmp_path / "notebooks")
    assert counts(ex.text("status")) == {"square": state(ready=6), "describe": state()}

    # The live status: the tour closes it at the end, which leaves a static copy of its last state
    # in the saved notebook instead of a widget that would not render without its kernel.
    assert ex.data("live", WIDGET_VIEW) == []
    assert ex.text("live").startswith("LiveStatus(pipeline · status at ")
    live_rows = status_rows(ex.html("live"))
    final = {"square": ("0", "0", "8", "0"), "describe": ("0", "0", "8", "0")}
    assert {task: (row["ready"], row["live"], row["done"], row["failed"]) for task, row in live_rows.items()} == final
    assert live_rows["square"]["progress"].startswith("8/8")
    assert "last run finished: 2 succeeded, 0 failed" in ex.html("live") and "closed at" in ex.html("live")
    check_graph(ex, "graph")

    # The dashboard: closed at the end too (a static copy); its widgets' last state is saved.
    assert ex.data("dashboard", WIDGET_VIEW) == []
    assert ex.text("dashboard").startswith("Dashboard(pipeline · status at ")
    assert {
        task: (row["ready"], row["live"], row["done"], row["failed"])
        for task, row in status_rows(ex.html("dashboard")).items()
    } == final
    models = ex.widget_models()
    (dash_id,) = [i for i, m in models.items() if "pdtnb-dashboard" in m["state"].get("_dom_classes", [])]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for model in ex.descendants(dash_id):
        by_kind.setdefault(model["model_name"], []).append(model["state"])
    # The table's counts and task names are buttons too; then come the launch panel's.
    table = [b for b in by_kind["ButtonModel"] if {"pdtnb-count", "pdtnb-task-name"} & set(b["_dom_classes"])]
    assert len(table) == 2 * 9  # two tasks: a name and eight counts each (one per job state)
    square_failed = next(b for b in table if b.get("tooltip", "").startswith("0 failed jobs of square"))
    assert square_failed["description"] == "0" and square_failed["disabled"] is True
    panel = [b for b in by_kind["ButtonModel"] if b not in table]
    labels = [b["description"] for b in panel]
    assert labels[:7] == ["Launch", "Step update", "Step launch", "Step", "Run", "Stop", "Retry failed"]
    assert [b["_dom_classes"] for b in panel[:7]] == [
        ["pdtnb-launch"],
        ["pdtnb-step-update"],
        ["pdtnb-step-launch"],
        ["pdtnb-step"],
        ["pdtnb-run"],
        ["pdtnb-stop"],
        ["pdtnb-retry-failed"],
    ]
    for button in ("Retry", "Kill", "Why"):
        assert button in labels
    menus = {m["description"]: m for m in by_kind["DropdownModel"]}
    assert menus["task"]["_options_labels"] == ["square", "describe"]
    assert menus["jobs"]["_options_labels"] == list(JOB_STATES)
    assert "outdated" in menus["jobs"]["_options_labels"]
    (job_field,) = by_kind["ComboboxModel"]
    assert job_field["description"] == "job" and job_field["value"] == "n8"  # the job the tour opened
    assert [c["description"] for c in by_kind["CheckboxModel"]] == ["force"]
    graph_models = [
        m
        for m in by_kind.get("HTMLModel", []) + by_kind.get("ImageModel", [])
        if "pdtnb-graph" in m.get("_dom_classes", [])
    ]
    assert len(graph_models) == 1

    # Stepping by hand.
    assert ex.text("update") == "update phase: tasks with live or reaped jobs: none"
    assert ex.text("launch-phase") == "launch phase: 6 ready, 6 launched, 0 failed to launch, 0 held back"
    assert counts(ex.text("status-live")) == {"square": state(live=6), "describe": state()}
    # Finished but not reaped: still live, though the squares are written.
    waited = ex.text("wait-workers")
    assert counts(waited) == {"square": state(live=6), "describe": state()} and "square.squares 6" in waited
    assert ex.text("reap") == "update phase: tasks with live or reaped jobs: square"
    assert counts(ex.text("status-reaped")) == {"square": state(done=6), "describe": state(ready=6)}

    # The buttons, pressed from code: the result line of each.
    step_launch = "Step launch: launch phase: 6 ready, 6 launched, 0 failed to launch, 0 held back\n"
    assert ex.stdout("click-helper") == step_launch
    assert ex.stdout("launch-button") == (
        "Launch: square:n7 launched and finished\n"
        "Launch: square:n99 is not ready to launch (tick force to launch anyway)\n"
    )
    # The result line says the run started, or, when it was over before the line was read, how it ended.
    started = r"Run: (run started at \d\d:\d\d:\d\d UTC: the caption above follows it; Stop ends it|run finished: .*)"
    pressed_run = ex.stdout("run-button").splitlines()
    assert re.fullmatch(started, pressed_run[0]), pressed_run
    assert re.fullmatch(r"finished: 1 succeeded, 0 failed \(1 launched in \d+ rounds, [\d.]+ s\)", pressed_run[1])

    # The failure loop.
    failed_run = ex.stdout("failure-run").splitlines()
    assert re.fullmatch(started, failed_run[0]), failed_run
    assert re.fullmatch(
        r"finished: 0 succeeded, 1 failed, 1 blocked \(1 launched in \d+ rounds, [\d.]+ s\)", failed_run[1]
    ), failed_run
    reason = "ValueError: cannot square -8: negative numbers are not allowed here"
    assert ex.stdout("failure-list") == (
        "square: 1 failed job · click one to see it\n"
        f"    n8: {reason}\n"
        "describe: 1 blocked job · click one to see it\n"
        f"    n8: upstream square failed: {reason}\n"
    )
    assert ex.stdout("failure-job") == (
        "the job's buttons: Retry, Why, Refresh, Close\nto debug it, run %pdt debug square n8 in a cell\n"
    )
    retried = ex.stdout("failure-retry").splitlines()
    assert retried[0] == "Retry: square: reset 1 job (n8)"
    assert re.fullmatch(started, retried[1]), retried
    assert re.fullmatch(r"finished: 2 succeeded, 0 failed \(2 launched in \d+ rounds, [\d.]+ s\)", retried[2])

    # Where it ended: everything done, the widgets' state read from Python, the text rendering.
    assert counts(ex.text("status-end")) == {"square": state(done=8), "describe": state(done=8)}
    printed = ex.stdout("widgets").splitlines()
    refreshes = int(re.fullmatch(r"the live table has refreshed (\d+) times", printed[0]).group(1))
    assert refreshes >= 3  # it followed the actions, not only its first drawing
    assert printed[1] == "the dashboard's graph is drawn as SVG"
    assert printed[2] == "the task menu offers: square, describe"
    assert printed[3] == "sentences: " + "; ".join(f"n{i} squared is {i * i}" for i in range(1, 9))
    text = ex.stdout("static-copy").splitlines()
    assert text[0].startswith("LiveStatus(pipeline · status at ") and "last run finished: 2 succeeded" in text[0]
    assert re.fullmatch(r"square +\[#{24}\] 8/8 finished", text[1]), text
    assert re.fullmatch(r"describe +\[#{24}\] 8/8 finished", text[2]), text
    check_graph(ex, "graph-end")
    assert ex.text("close") == "closed pipeline"


# ---- a pipeline file ---------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["ipykernel7"], indirect=True)
def test_declarative(kernel: KernelInfo, tmp_path: Path) -> None:
    """``%pdt load ../examples/books/pipeline.yaml``: the file's pipeline stepped, its status and
    graph shown, a wrong file reported at its line and column, the export keeping the load."""
    example = tmp_path / "examples" / "books"  # where ../examples/books is from the notebooks' copy
    example.mkdir(parents=True)
    for name in ("pipeline.yaml", "bodies.py"):
        shutil.copy(ROOT / "examples" / "books" / name, example / name)
    shutil.copytree(ROOT / "examples" / "books" / "books", example / "books")
    books = sorted(path.stem for path in (example / "books").glob("*.txt"))
    n = len(books)
    ex = execute("declarative.ipynb", kernel.name, tmp_path / "notebooks")

    shown_file = ex.stdout("show-file")
    assert shown_file.startswith("repositories:") and "func: bodies:count_book" in shown_file
    assert len(shown_file.splitlines()) < 40
    assert ex.text("load") == "loaded pipeline 'pipeline' from ../examples/books/pipeline.yaml (tasks: summary, index)"
    assert counts(ex.text("status-start")) == {"summary": state(ready=n), "index": state()}
    check_graph(ex, "graph")
    assert ex.text("step-1").endswith(f"launch phase: {n} ready, {n} launched, 0 failed to launch, 0 held back")
    assert counts(ex.text("status-stepped")) == {"summary": state(done=n), "index": state(ready=n)}
    assert ex.text("step-2").endswith(f"launch phase: {n} ready, {n} launched, 0 failed to launch, 0 held back")
    assert counts(ex.text("status-end")) == {"summary": state(done=n), "index": state(done=n)}
    river = (example / "books" / "river.txt").read_text()
    assert yaml.safe_load(ex.text("cat"))["words"] == len(river.split())

    broken = ex.dir / "data-declarative" / "broken.yaml"
    line = next(i for i, text in enumerate(broken.read_text().splitlines(), 1) if "novels" in text)
    mistake = ex.stdout("mistake").strip()
    assert re.fullmatch(
        rf"data-declarative/broken\.yaml:{line}:\d+: task 'summary': link books: repository 'novels' "
        r"is not a declared repository \(.*\)",
        mistake,
    ), mistake

    assert ex.text("export").startswith(f"wrote {ex.dir / 'data-declarative' / 'declarative.py'}: pipeline 'pipeline'")
    script = (ex.dir / "data-declarative" / "declarative.py").read_text()
    assert "pipeline = pdtnb.load(_pdtnb_file('../../examples/books/pipeline.yaml', " in script
    assert script.rstrip().endswith('if __name__ == "__main__":\n    pdtnb.main(pipeline)')
    assert counts(ex.stdout("script-status")) == {"summary": state(done=n), "index": state(done=n)}
    assert ex.text("close") == "closed pipeline"

    work = ex.dir / "data-declarative"  # ${PDTNB_EXAMPLE_DIR} in the file
    assert sorted(path.stem for path in (work / "reports").glob("*.txt")) == books
    assert sorted(path.stem for path in (work / "index").glob("*.yaml")) == books
    assert not (example / "work").exists(), "the results went next to the file, not to DATA_DIR"


@pytest.mark.parametrize("name", MINE)
def test_relative_links_resolve(name: str) -> None:
    """The links between the notebooks and to the docs, in the Markdown cells, lead somewhere."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    links = {
        link
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for link in re.findall(r"\]\(([^)#\s]+)\)", cell.source)
        if not re.match(r"[a-z]+:", link)
    }
    assert links, f"{name} links to nothing"
    assert [link for link in links if not (NOTEBOOKS / link).exists()] == []
