"""The ``%pdt`` magics in a real kernel (ipykernel 6 and 7), checked on the real repositories.

Two scenarios, each run once per kernel on one kernel (many cells):

* ``vocabulary``: pipeline selection (none, one, several, ``use``), ``open``/``close``, ``status``,
  ``trace``, ``ls``, ``cat``, ``rm``, ``inject`` (line and cell), ``launch`` of one job, the
  update phase, the launch phase and ``step``, ``help``, ``graph``, ``dashboard``, live status, and
  the one-line errors for every kind of mistake;
* ``background``: ``%pdt run`` returns at once with a live widget while executor jobs go on on the
  kernel loop; ``%pdt run --forever`` picks up new input until ``%pdt stop``; a timed-out run is
  reported; shutting the kernel down with a run going closes the session.
"""

from __future__ import annotations

import re
import time

import pytest
from nbrun import (
    OTHER_PIPELINE,
    SHOW_HELPER,
    KernelInfo,
    KernelSession,
    Recorded,
    record_cells,
    shown,
    status_rows,
    usage_error,
)

SETUP = (
    SHOW_HELPER
    + """
import asyncio
import pdtnb

events = []
session = pdtnb.Session()

@session.resource
async def connection():
    events.append("open")
    yield "connected"
    events.append("close")

inp = pdtnb.InProcessMetadataRepository({"1": 1, "2": 2, "3": 3})
out = pdtnb.InProcessMetadataRepository()
done = pdtnb.InProcessMetadataRepository()
res = pdtnb.InProcessMetadataRepository()
done2 = pdtnb.InProcessMetadataRepository()

@pdtnb.InProcessSyncTask("double", done)
async def double(job, inp, out):
    await out.dump(job, await inp.info(job) * 2)

double.link("inp", inp, is_input=True)
double.link("out", out, is_output=True)

@pdtnb.InProcessSyncTask("plus", done2)
async def plus(job, out, res):
    await res.dump(job, await out.info(job) + 1)

plus.plug(double)
plus.link("res", res, is_output=True)
pipeline = pdtnb.Pipeline([double, plus], session)

def state():
    show(inp=dict(inp.data), out=dict(out.data), res=dict(res.data), done=sorted(done.data),
         done2=sorted(done2.data), open=pipeline.is_open, events=events)
"""
)


VOCABULARY = [
    ("version", "import ipykernel\nipykernel.__version__"),
    ("load", "%load_ext pdtnb"),
    ("no_pipeline", "%pdt status"),
    ("setup", SETUP),
    ("open", "%pdt open"),
    ("open_again", "%pdt open"),
    ("on_loop", "show(open=pipeline.is_open, same_loop=pipeline.loop is asyncio.get_running_loop(), events=events)"),
    ("status", "%pdt status"),
    ("status_all", "%pdt status --all"),
    ("launch_one", "%pdt launch double 3"),
    ("after_launch_one", "state()"),
    ("launch_not_ready", "%pdt launch double 3"),
    ("launch_forced", "%pdt launch double 3 --force\nstate()"),
    ("launch_unknown_task", "%pdt launch nosuch 1"),
    ("launch_unknown_job", "%pdt launch double 42"),
    ("launch_bad_job_id", "%pdt launch double ../etc"),
    ("launch_task_only", "%pdt launch double"),
    ("status_after_launch", "%pdt status"),
    ("update", "%pdt update"),
    ("after_update", "state()"),
    ("ls_expression", "%pdt ls 'double.inp - double.out'"),
    ("launch_phase", "%pdt launch"),
    ("after_launch_phase", "state()"),
    ("step", "%pdt step"),
    ("after_step", "state()"),
    ("step_idle", "%pdt step"),
    ("ls", "%pdt ls double.out"),
    ("ls_union", "%pdt ls double.inp plus.res"),
    ("ls_unknown_task", "%pdt ls nosuch.out"),
    ("ls_unknown_link", "%pdt ls double.nolink"),
    ("cat", "%pdt cat double.out 2"),
    ("cat_missing_job", "%pdt cat double.out 99"),
    ("cat_not_a_repository", "%pdt cat nosuch 1"),
    ("trace", "%pdt trace 2 3"),
    ("rm", "%pdt rm double.out 1 -r"),
    ("after_rm", "state()"),
    ("rm_unknown", "%pdt rm nosuch.out 1"),
    ("rm_bad_job_id", "%pdt rm double.out ../x"),
    ("inject_var", "val = 10\n%pdt inject double.inp 7 val"),
    ("inject_cell", "%%pdt inject double.inp 8\n5\n"),
    ("launch_injected", "%pdt launch double 7\nstate()"),
    ("inject_missing_var", "%pdt inject double.inp 9 nosuchvar"),
    ("inject_unknown_repo", "%pdt inject nosuch.inp 9 val"),
    ("inject_bad_yaml", "%%pdt inject double.inp 9\n[unclosed\n"),
    ("inject_bad_job_id", "%pdt inject double.inp ../x val"),
    ("help", "%pdt help"),
    ("unknown_subcommand", "%pdt frobnicate"),
    ("bad_option", "%pdt status --bogus"),
    ("no_subcommand", "%pdt"),
    ("stop_idle", "%pdt stop"),
    ("wait_idle", "%pdt wait"),
    ("wait_bad_timeout", "%pdt wait --timeout -1"),
    ("graph", "%pdt graph"),
    (
        "live",
        "live = %pdt status --live\nawait asyncio.sleep(0.3)\nshow(refreshes=live.refreshes, value=live.value)\nlive",
    ),
    ("dashboard", "%pdt dashboard"),
    ("define_other", OTHER_PIPELINE),
    ("several", "%pdt status"),
    ("use_unknown", "%pdt use nope"),
    ("use_other", "%pdt use other"),
    ("status_other", "%pdt status"),
    ("use_back", "%pdt use pipeline"),
    ("close", "%pdt close"),
    ("after_close", "state()"),
    ("reopen_by_action", "%pdt ls double.out"),
    ("after_reopen", "state()"),
    ("function_magic", "def listing():\n    jobs = %pdt ls double.out\n    return jobs\nlisting()"),
    ("function_magic_error", "def bad():\n    outcome = %pdt launch nosuch 1\n    return outcome\nbad()"),
]


@pytest.fixture(scope="module")
def vocabulary(kernel: KernelInfo, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record_cells(kernel, tmp_path_factory.mktemp(f"magics-{kernel.id}"), VOCABULARY)


def test_kernel_runs_the_expected_ipykernel(vocabulary: Recorded):
    version = vocabulary["version"].check().plain.strip().strip("'\"")
    assert version.split(".")[0] == str(vocabulary.kernel.major), version


# ---- selecting and opening the pipeline ------------------------------------------------------


def test_no_pipeline_is_a_one_line_error(vocabulary: Recorded):
    vocabulary["load"].check()
    assert "no Pipeline is defined" in usage_error(vocabulary["no_pipeline"])


def test_open_uses_the_only_pipeline_on_the_kernel_loop(vocabulary: Recorded):
    assert vocabulary["open"].check().plain == "opened pipeline (tasks: double, plus)"
    assert vocabulary["open_again"].check().plain.startswith("already open")
    assert shown(vocabulary["on_loop"]) == {"open": True, "same_loop": True, "events": ["open"]}


def test_several_pipelines_need_use(vocabulary: Recorded):
    vocabulary["define_other"].check()
    message = usage_error(vocabulary["several"])
    assert "several pipelines" in message and "other" in message and "pipeline" in message
    assert "%pdt use" in message
    message = usage_error(vocabulary["use_unknown"])
    assert "'nope'" in message and "other" in message and "pipeline" in message


def test_use_switches_the_pipeline(vocabulary: Recorded):
    assert vocabulary["use_other"].check().plain == "using pipeline 'other' (tasks: lonely)"
    other = vocabulary["status_other"].check().plain
    assert other.startswith("lonely\nlonely.lonely_in 1\n") and "double" not in other
    assert "using pipeline 'pipeline'" in vocabulary["use_back"].check().plain


def test_close_closes_the_session_and_any_action_reopens_it(vocabulary: Recorded):
    assert vocabulary["close"].check().plain == "closed pipeline"
    closed = shown(vocabulary["after_close"])
    assert closed["open"] is False and closed["events"] == ["open", "close"]
    assert vocabulary["reopen_by_action"].check().plain == "2\n3\n7\n(3 jobs)"
    reopened = shown(vocabulary["after_reopen"])
    assert reopened["open"] is True and reopened["events"] == ["open", "close", "open"]


# ---- status and trace ------------------------------------------------------------------------


def test_status_text_is_pydatatask_shaped(vocabulary: Recorded):
    text = vocabulary["status"].check().plain
    assert text.startswith(
        "double\ndouble.inp 3\ndouble.done 0\ndouble.out 0\n\nplus\nplus.out 0\nplus.done 0\nplus.res 0\n"
    ), text
    assert "# double: ready 3, live 0, done 0, failed 0" in text
    assert "# plus: ready 0, live 0, done 0, failed 0" in text
    for line in text.splitlines():
        assert not line or line.startswith("#") or re.fullmatch(r"(double|plus)(\.\w+ \d+)?", line), line
    assert "plus.double_done 0" in vocabulary["status_all"].check().plain


def test_status_html_is_the_table(vocabulary: Recorded):
    rows = status_rows(vocabulary["status"].check().html)
    assert rows["double"]["ready"] == "3" and rows["double"]["done"] == "0"
    assert rows["double"]["links (jobs)"] == "inp 3, done 0, out 0"
    assert rows["plus"]["ready"] == "0"
    after = status_rows(vocabulary["status_after_launch"].check().html)
    assert (after["double"]["ready"], after["double"]["done"], after["plus"]["ready"]) == ("2", "1", "1")


def test_trace_shows_where_the_job_is(vocabulary: Recorded):
    trace = vocabulary["trace"].check()
    lines = trace.plain.splitlines()
    for expected in (
        "double.inp 2 3",
        "double.done 2 3",
        "double.out 2 3",
        "plus.out 2 3",
        "plus.done 2 3",
        "plus.res 2 3",
    ):
        assert expected in lines, trace.plain
    assert "2 done" in trace.html and "3 done" in trace.html


# ---- acting: launch, phases, step --------------------------------------------------------------


def test_launch_one_job(vocabulary: Recorded):
    assert vocabulary["launch_one"].check().plain == "double:3 launched and finished"
    state = shown(vocabulary["after_launch_one"])
    assert state["out"] == {"3": 6} and state["done"] == ["3"]
    assert state["res"] == {}, "launching one job of double must not run plus"


def test_launch_errors_are_one_line(vocabulary: Recorded):
    assert "double:3 is not ready" in usage_error(vocabulary["launch_not_ready"])
    forced = shown(vocabulary["launch_forced"])  # --force runs it anyway
    assert forced["out"] == {"3": 6} and forced["done"] == ["3"] and forced["res"] == {}
    message = usage_error(vocabulary["launch_unknown_task"])
    assert "'nosuch'" in message and "double, plus" in message
    assert "42" in usage_error(vocabulary["launch_unknown_job"])
    assert "../etc" in usage_error(vocabulary["launch_bad_job_id"])
    assert "JOB" in usage_error(vocabulary["launch_task_only"])


def test_update_alone_launches_nothing(vocabulary: Recorded):
    text = vocabulary["update"].check().plain
    assert text.startswith("update phase") and "launch phase" not in text
    assert shown(vocabulary["after_update"]) == shown(vocabulary["after_launch_one"])


def test_launch_alone_starts_the_ready_jobs(vocabulary: Recorded):
    assert vocabulary["ls_expression"].check().plain == "1\n2\n(2 jobs)"
    text = vocabulary["launch_phase"].check().plain
    assert text.startswith("launch phase: 3 ready, 3 launched") and "update phase" not in text
    state = shown(vocabulary["after_launch_phase"])
    assert state["out"] == {"1": 2, "2": 4, "3": 6}
    # plus:3 was ready (double had finished 3); plus:1 and plus:2 only became ready during this phase.
    assert state["res"] == {"3": 7}


def test_step_updates_then_launches(vocabulary: Recorded):
    text = vocabulary["step"].check().plain
    assert "update phase" in text and "launch phase: 2 ready, 2 launched" in text
    assert shown(vocabulary["after_step"])["res"] == {"1": 3, "2": 5, "3": 7}
    assert "launch phase: 0 ready, 0 launched" in vocabulary["step_idle"].check().plain


# ---- ls, cat, rm, inject -------------------------------------------------------------------------


def test_ls(vocabulary: Recorded):
    assert vocabulary["ls"].check().plain == "1\n2\n3\n(3 jobs)"
    assert vocabulary["ls_union"].check().plain == "1\n2\n3\n(3 jobs)"
    assert "'nosuch'" in usage_error(vocabulary["ls_unknown_task"])
    message = usage_error(vocabulary["ls_unknown_link"])
    assert "'nolink'" in message and all(link in message for link in ("inp", "done", "out"))


def test_cat(vocabulary: Recorded):
    assert vocabulary["cat"].check().plain.splitlines()[0] == "4"
    assert "'99'" in usage_error(vocabulary["cat_missing_job"])
    assert "nosuch" in usage_error(vocabulary["cat_not_a_repository"])


def test_rm_recursive_deletes_downstream(vocabulary: Recorded):
    lines = vocabulary["rm"].check().plain.splitlines()
    assert lines[-1] == "(3 deleted)"
    assert sorted(lines[:-1]) == ["1 double.out", "1 plus.done", "1 plus.res"]
    state = shown(vocabulary["after_rm"])
    assert "1" not in state["out"] and "1" not in state["res"] and "1" not in state["done2"]
    assert "1" in state["inp"] and "1" in state["done"]
    assert "nosuch" in usage_error(vocabulary["rm_unknown"])
    assert "../x" in usage_error(vocabulary["rm_bad_job_id"])


def test_inject_variable_and_cell_body(vocabulary: Recorded):
    assert vocabulary["inject_var"].check().plain == "stored double.inp 7"
    assert vocabulary["inject_cell"].check().plain == "stored double.inp 8"
    state = shown(vocabulary["launch_injected"])
    assert state["inp"]["7"] == 10 and state["inp"]["8"] == 5
    assert state["out"]["7"] == 20


def test_inject_errors_are_one_line(vocabulary: Recorded):
    assert "'nosuchvar'" in usage_error(vocabulary["inject_missing_var"])
    assert "nosuch" in usage_error(vocabulary["inject_unknown_repo"])
    assert "double.inp" in usage_error(vocabulary["inject_bad_yaml"])
    assert "../x" in usage_error(vocabulary["inject_bad_job_id"])


# ---- help, mistakes, widgets -------------------------------------------------------------------


def test_help_lists_the_vocabulary(vocabulary: Recorded):
    text = vocabulary["help"].check().plain
    for word in (
        "use",
        "open",
        "close",
        "status",
        "trace",
        "ls",
        "cat",
        "rm",
        "inject",
        "launch",
        "update",
        "step",
        "run",
        "stop",
        "graph",
        "dashboard",
        "help",
        "--live",
        "--forever",
        "--sync",
        "--force",
    ):
        assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text), word


def test_mistakes_are_one_line_usage_errors(vocabulary: Recorded):
    message = usage_error(vocabulary["unknown_subcommand"])
    assert "'frobnicate'" in message and "status" in message
    assert "--bogus" in usage_error(vocabulary["bad_option"])
    assert "subcommand" in usage_error(vocabulary["no_subcommand"])
    assert vocabulary["stop_idle"].check().plain == "no background run to stop"
    assert vocabulary["wait_idle"].check().plain == "no background run to wait for"
    assert "--timeout must be 0 or more" in usage_error(vocabulary["wait_bad_timeout"])


def test_graph_displays(vocabulary: Recorded):
    result = vocabulary["graph"].check()
    kinds = {mime for out in result.outputs for mime in out.get("data", {})}
    assert kinds & {"image/png", "image/svg+xml"}, result.describe()


def test_live_status_and_dashboard_are_widgets(vocabulary: Recorded):
    live = vocabulary["live"]
    facts = shown(live)
    assert facts["refreshes"] >= 1 and set(status_rows(facts["value"])) == {"double", "plus"}
    assert live.widgets, live.describe()
    assert vocabulary["dashboard"].check().widgets


def test_magic_inside_a_function(vocabulary: Recorded):
    assert vocabulary["function_magic"].check().plain == "2\n3\n7\n(3 jobs)"
    assert "'nosuch'" in usage_error(vocabulary["function_magic_error"])


def test_no_loop_errors_in_the_kernel_log(vocabulary: Recorded):
    for phrase in ("cannot enter context", "already running", "was never awaited", "Traceback"):
        assert phrase not in vocabulary.log, vocabulary.log


# ---- the background run -----------------------------------------------------------------------

RUN_SETUP = (
    SHOW_HELPER
    + """
import asyncio, pathlib, time
from concurrent.futures import ThreadPoolExecutor
import pdtnb
from pdtnb.notebook import controller_for

MARKER = pathlib.Path("run-session-closed.marker")
session = pdtnb.Session()

@session.resource
async def connection():
    yield "connected"
    MARKER.write_text("closed")

pool = ThreadPoolExecutor(max_workers=2)
inp = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(10)})
done = pdtnb.InProcessMetadataRepository()
bodies = []

@pdtnb.ExecutorTask("nap", pool, done)
def nap(job, inp):
    time.sleep(0.2)
    bodies.append(job)

nap.link("inp", inp, is_input=True)
pipeline = pdtnb.Pipeline([nap], session, poll_interval=0.2)
controller = controller_for(pipeline)
"""
)

#: Ten executor jobs of 0.2 s on two workers: about a second of work.
JOBS = 10


@pytest.fixture(scope="module")
def background(kernel: KernelInfo, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    cwd = tmp_path_factory.mktemp(f"run-{kernel.id}")
    rec = Recorded(kernel)
    session = KernelSession(kernel, cwd)
    with session:
        run = rec.cells.__setitem__
        run("version", session.run("import ipykernel\nipykernel.__version__"))
        run("load", session.run("%load_ext pdtnb"))
        run("setup", session.run(RUN_SETUP))
        run(
            "run",
            session.run(
                "started = time.monotonic()\n"
                "live = %pdt run\n"
                "show(returned_after=time.monotonic() - started, done_at_return=len(done.data), "
                "running=controller.running)\n"
                "live"
            ),
        )
        run("next_cell", session.run("show(done=len(done.data), running=controller.running)"))
        time.sleep(2.5)  # the kernel is idle: the run must go on by itself
        run(
            "after_idle",
            session.run(
                "show(done=sorted(done.data), results=sorted(r['result'] for r in done.data.values()), "
                "bodies=len(bodies), running=controller.running, last_run=repr(controller.last_run), "
                "refreshes=live.refreshes, value=live.value)"
            ),
        )
        run("forever", session.run("%pdt run --forever\nshow(running=controller.running)"))
        run("run_twice", session.run("%pdt run"))
        run("feed", session.run("await inp.dump('late', 99)"))
        time.sleep(1.5)
        run("after_feed", session.run("show(late_done='late' in done.data, running=controller.running)"))
        run("wait_timeout", session.run("%pdt wait --timeout 0.3"))
        run("after_wait_timeout", session.run("show(running=controller.running)"))
        run("stop", session.run("%pdt stop"))
        run("after_stop", session.run("show(running=controller.running, last_run=repr(controller.last_run))"))
        run(
            "wait_run",
            session.run(
                "await inp.dump('waited', 5)\n%pdt run\nsummary = %pdt wait --timeout 30\n"
                "show(running=controller.running, summary=repr(summary), waited='waited' in done.data, "
                "launched=summary.launched, stopped=summary.stopped)"
            ),
        )
        run("timeout_run", session.run("%pdt run --forever --timeout 0.3"))
        time.sleep(1.0)
        run(
            "after_timeout",
            session.run("show(running=controller.running, last_run=repr(controller.last_run), value=live.value)"),
        )
        run("last_forever", session.run("%pdt run --forever\nshow(running=controller.running)"))
        rec.facts["marker_before_shutdown"] = (cwd / "run-session-closed.marker").exists()
        started = time.monotonic()
        session.shutdown()
        rec.facts["shutdown_seconds"] = time.monotonic() - started
    rec.log = session.kernel_log()
    rec.facts["marker"] = (cwd / "run-session-closed.marker").exists()
    return rec


def test_run_returns_at_once_with_a_live_widget(background: Recorded):
    version = background["version"].check().plain.strip().strip("'\"")
    assert version.split(".")[0] == str(background.kernel.major), version
    background["setup"].check()
    cell = background["run"]
    facts = shown(cell)
    assert facts["returned_after"] < 1.0 and cell.elapsed < 1.0, cell.describe()
    assert facts["done_at_return"] < JOBS, "the jobs were already done: the cell waited for them"
    assert facts["running"] is True
    assert cell.widgets, cell.describe()
    later = background["next_cell"]
    assert later.elapsed < 1.0 and shown(later)["running"] is True, later.describe()


def test_background_run_finishes_while_the_kernel_is_idle(background: Recorded):
    facts = shown(background["after_idle"])
    assert facts["done"] == sorted(f"j{i}" for i in range(JOBS))
    assert facts["results"] == ["success"] * JOBS and facts["bodies"] == JOBS
    assert facts["running"] is False
    assert facts["last_run"].startswith("RunSummary(") and f"launched={JOBS}" in facts["last_run"]
    assert facts["refreshes"] >= 2, "the live table was not refreshed while the run went on"
    assert status_rows(facts["value"])["nap"]["done"] == str(JOBS)
    assert "last run finished" in facts["value"]


def test_run_forever_picks_up_new_input_until_stopped(background: Recorded):
    assert shown(background["forever"])["running"] is True
    assert "already running" in usage_error(background["run_twice"])
    background["feed"].check()
    assert shown(background["after_feed"]) == {"late_done": True, "running": True}
    stopped = background["stop"].check().plain
    assert re.fullmatch(r"stopped: 1 succeeded, 0 failed \(1 launched in \d+ rounds, [\d.]+ s\)", stopped), stopped
    facts = shown(background["after_stop"])
    assert facts["running"] is False and "stopped=True" in facts["last_run"]


def test_wait_returns_the_summary_and_a_timed_out_wait_leaves_the_run_going(background: Recorded):
    message = usage_error(background["wait_timeout"])
    assert "still going after 0.3 s" in message and "%pdt stop" in message
    assert shown(background["after_wait_timeout"])["running"] is True
    facts = shown(background["wait_run"])
    assert facts["running"] is False and facts["waited"] is True
    # the summary line of RunSummary.describe(), not the dataclass's repr
    summary_pattern = r"finished: 1 succeeded, 0 failed \(1 launched in \d+ rounds, [\d.]+ s\)"
    assert re.fullmatch(summary_pattern, facts["summary"]), facts
    assert facts["launched"] == 1 and facts["stopped"] is False, "the summary's fields are still there"


def test_a_timed_out_run_is_reported(background: Recorded):
    background["timeout_run"].check()
    facts = shown(background["after_timeout"])
    assert facts["running"] is False
    assert "TimeoutError" in facts["last_run"]
    assert "last run failed" in facts["value"] and "timed out" in facts["value"]


def test_shutdown_during_a_run_closes_the_session(background: Recorded):
    assert shown(background["last_forever"])["running"] is True
    assert background.facts["marker_before_shutdown"] is False
    assert background.facts["marker"] is True, background.log
    assert background.facts["shutdown_seconds"] < 4.5, background.facts
    for phrase in ("cannot enter context", "already running", "was never awaited", "Task was destroyed"):
        assert phrase not in background.log, background.log
