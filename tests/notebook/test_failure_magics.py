"""The failure magics in a real kernel (ipykernel 6 and 7): ``%pdt failed``, ``show``, ``why``,
``retry``, ``kill``, ``debug``, ``timeline``, and the reported problems around them.

One scenario per kernel (one kernel, many cells, run once by the ``failing`` fixture) on a small
pipeline whose jobs fail on purpose:

    parse   (in-process)  inp -> parsed (x10); ``check`` raises ValueError on a negative input
    report  (executor)    parsed -> reports; raises RuntimeError on job "2"
    count   (process)     a local script; exits 3 on job "2", sleeps on job "slow"

It checks the HTML and text each magic shows (the user's frame named ``Cell In[N], line K`` and not
the temporary file ipykernel compiled the cell into, IPython's colour classes, reason lines), that
``retry`` resets, ``kill`` stops a live process job, ``debug`` leaves ``sys.last_traceback`` at the
failing frame, ``timeline`` draws, and the fixes: an interrupted ``wait`` is one line, a failing
``launch --force`` is that job's failure, ``rm`` summarises, ``stop``/``wait`` show the summary line,
``trace`` of an unknown job is an error, a trailing ``# comment`` is ignored, and redefining the
pipeline variable closes the old definition.
"""

from __future__ import annotations

import html as _html
import re
import time

import pytest
from nbrun import SHOW_HELPER, CellResult, KernelInfo, KernelSession, Recorded, shown, strip_ansi, usage_error

SETUP = (
    SHOW_HELPER.lstrip("\n")
    + '''
import asyncio, pathlib, sys, weakref
from concurrent.futures import ThreadPoolExecutor
import pdtnb
from pdtnb.notebook import controller_for

session = pdtnb.Session()
WORK = pathlib.Path("work").resolve()

@session.resource
async def procman():
    yield pdtnb.LocalLinuxManager("nbfail", WORK)

inp = pdtnb.InProcessMetadataRepository({"1": 1, "2": 2, "bad": -1})
parsed = pdtnb.InProcessMetadataRepository()
parse_done = pdtnb.InProcessMetadataRepository()

def check(value):
    if value < 0:
        raise ValueError(f"negative input: {value}")
    return value

@pdtnb.InProcessSyncTask("parse", parse_done)
async def parse(job, inp, parsed):
    value = await inp.info(job)
    await parsed.dump(job, check(value) * 10)

parse.link("inp", inp, is_input=True)
parse.link("parsed", parsed, is_output=True)

pool = ThreadPoolExecutor(2)
reports = pdtnb.InProcessMetadataRepository()
report_done = pdtnb.InProcessMetadataRepository()

@pdtnb.ExecutorTask("report", pool, report_done)
async def report(job, parsed, reports):
    value = await parsed.info(job)
    if job == "2":
        raise RuntimeError(f"report of {job} is too large: {value}")
    await reports.dump(job, f"{job}: {value}")

report.plug(parse)
report.link("reports", reports, is_output=True)

quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=4, mem="1Gi"))
pids = pdtnb.InProcessMetadataRepository()
count_done = pdtnb.InProcessMetadataRepository()
counts = pdtnb.InProcessBlobRepository()
count = pdtnb.ProcessTask(
    "count", procman, quota, pdtnb.Resources.parse(cpu=1, mem="1Mi"), pids,
    """echo "counting {{ job }}"
if [ "{{ job }}" = "2" ]; then echo "cannot count {{ job }}" >&2; exit 3; fi
if [ "{{ job }}" = "slow" ]; then echo "slow start"; sleep 60; fi
""",
    done=count_done, stdout=counts, environ={"COUNT_MODE": "strict"},
)
count.plug(parse)
pipeline = pdtnb.Pipeline([parse, report, count], session, [quota], poll_interval=0.1)
'''
)

#: The line of SETUP (numbered from 1, as the cell is) that raises in ``check``.
CHECK_LINE = SETUP.splitlines().index('        raise ValueError(f"negative input: {value}")') + 1
REPORT_LINE = SETUP.splitlines().index('        raise RuntimeError(f"report of {job} is too large: {value}")') + 1

LAST_FRAME = """tb = sys.last_traceback
while tb.tb_next is not None:
    tb = tb.tb_next
show(function=tb.tb_frame.f_code.co_name, line=tb.tb_lineno, locals=sorted(tb.tb_frame.f_locals),
     value=tb.tb_frame.f_locals.get("value"), done=sorted(parse_done.data), report_done=sorted(report_done.data),
     attempts={j: r.get("attempt", 1) for j, r in parse_done.data.items()})"""

WAIT_FOR_SLOW = """for _ in range(200):
    if "slow" in pids.data:
        break
    await asyncio.sleep(0.05)
await asyncio.sleep(0.5)
show(live="slow" in pids.data)"""

REDEFINE = "old_ref = weakref.ref(pipeline)\nold_controller = controller_for(pipeline)\n" + SETUP

CELLS_BEFORE_INTERRUPT = [
    ("version", "import ipykernel\nipykernel.__version__"),
    ("load", "%load_ext pdtnb"),
    ("setup", SETUP),
    ("run", "%pdt run"),
    ("wait", "summary = %pdt wait --timeout 20\nshow(text=repr(summary), failed=summary.failed)\nsummary"),
    ("failed", "%pdt failed"),
    ("failed_task", "%pdt failed parse"),
    ("failed_comment", "%pdt failed parse   # only the parse task"),
    ("failed_unknown_task", "%pdt failed nosuch"),
    ("show_inprocess", "%pdt show parse bad"),
    ("show_executor", "%pdt show report 2"),
    ("show_process", "%pdt show count 2"),
    ("show_unknown_job", "%pdt show parse nosuchjob"),
    ("why_blocked", "%pdt why report bad"),
    ("why_failed", "%pdt why parse bad"),
    ("trace_unknown", "%pdt trace nosuchjob"),
    ("debug_inprocess", "%pdt debug parse bad"),
    ("debug_inprocess_frame", LAST_FRAME),
    ("debug_executor", "%pdt debug report 2"),
    ("debug_executor_frame", LAST_FRAME),
    ("debug_success", "%pdt debug report 1"),
    ("debug_process", "%pdt debug count 2"),
    ("debug_unknown_task", "%pdt debug nosuch 1"),
    ("launch_failing", "%pdt launch report 2 --force"),
    ("show_attempts", "%pdt show report 2"),
    ("fix_input", "await inp.dump('bad', 3)"),
    ("retry_one", "%pdt retry parse bad"),
    ("retry_failed", "%pdt retry report --failed -r"),
    ("retry_succeeded", "%pdt retry parse 1"),
    ("rerun", "%pdt run\nsummary = %pdt wait --timeout 20\nsummary"),
    (
        "after_retry",
        "show(parse_done=sorted(parse_done.data), parsed=dict(parsed.data), "
        "report_attempt=report_done.data['2'].get('attempt'))",
    ),
    ("failed_after_retry", "%pdt failed parse"),
    ("timeline", "%pdt timeline"),
    ("timeline_tasks", "%pdt timeline parse count"),
    ("timeline_unknown", "%pdt timeline nosuch"),
    (
        "timeline_figure",
        "from pdtnb.notebook.timeline import timeline_figure\n"
        "fig = await timeline_figure(pipeline)\n"
        "show(kind=type(fig).__name__, bars=len(fig.axes[0].patches), "
        "legend=[t.get_text() for t in fig.axes[0].get_legend().get_texts()])",
    ),
    ("graph_form", "%pdt graph --compact"),
    ("add_slow", "await inp.dump('slow', 5)\n%pdt run --forever"),
    ("slow_live", WAIT_FOR_SLOW),
    ("show_live", "%pdt show count slow"),
    ("kill", "%pdt kill count slow"),
    (
        "after_kill",
        "for _ in range(60):\n    if 'slow' in count_done.data and 'slow' not in pids.data:\n        break\n"
        "    await asyncio.sleep(0.05)\n"
        "show(record=count_done.data.get('slow', {}).get('result'), live='slow' in pids.data)",
    ),
]

CELLS_AFTER_INTERRUPT = [
    ("stop", "%pdt stop"),
    ("many", "for i in range(300):\n    await inp.dump(f'n{i}', i)\n"),
    ("rm_all", "%pdt rm parse.inp __all__ -r"),
    ("redefine", REDEFINE),
    ("status_after_redefine", "%pdt status   # the new definition"),
    (
        "after_redefine",
        "show(old_open=old_ref().is_open, old_retired=old_controller.retired, "
        "successor=old_controller.successor is controller_for(pipeline), new_open=pipeline.is_open)",
    ),
    ("comment_only", "%pdt   # nothing but a comment"),
]


@pytest.fixture(scope="module")
def failing(kernel: KernelInfo, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    cwd = tmp_path_factory.mktemp(f"failing-{kernel.id}")
    rec = Recorded(kernel)
    with KernelSession(kernel, cwd) as session:
        for label, source in CELLS_BEFORE_INTERRUPT:
            rec.cells[label] = session.run(source)
        rec.cells["run_forever_again"] = session.run("%pdt stop\n%pdt run --forever")
        session.interrupt_after(1.0)
        rec.cells["wait_interrupted"] = session.run("%pdt wait", timeout=10)
        if rec.cells["wait_interrupted"].state == "timeout":
            rec.facts["nudged"] = True
            session.nudge()
            time.sleep(0.5)
        rec.cells["after_interrupt"] = session.run("show(running=controller_for(pipeline).running)")
        for label, source in CELLS_AFTER_INTERRUPT:
            rec.cells[label] = session.run(source)
        rec.log = session.kernel_log()
    return rec


def _visible(markup: str) -> str:
    """The text of HTML: tags removed, entities decoded."""
    return _html.unescape(re.sub(r"<[^>]+>", "", markup))


def _count(result: CellResult) -> int:
    assert result.reply is not None, result.describe()
    return int(result.reply["execution_count"])


def test_kernel_runs_the_expected_ipykernel(failing: Recorded):
    version = failing["version"].check().plain.strip().strip("'\"")
    assert version.split(".")[0] == str(failing.kernel.major), version
    failing["load"].check()
    failing["setup"].check()


# ---- failed ------------------------------------------------------------------------------------


def test_wait_shows_the_summary_line(failing: Recorded):
    failing["run"].check()
    cell = failing["wait"]
    facts = shown(cell)
    assert facts["failed"] == 3
    line = facts["text"].splitlines()[0]
    pattern = r"finished: 4 succeeded, 3 failed, 2 blocked \(\d+ launched in \d+ rounds, [\d.]+ s\)"
    assert re.fullmatch(pattern, line), line
    assert "RunSummary(" not in cell.plain and cell.plain.startswith("finished: 4 succeeded, 3 failed")
    assert "%pdt failed" in cell.plain and "ansi-red-fg" in cell.html


def test_failed_lists_every_failure_with_its_reason(failing: Recorded):
    cell = failing["failed"].check()
    lines = cell.plain.splitlines()
    assert lines[:3] == [
        "parse bad 1 ValueError: negative input: -1",
        "report 2 1 RuntimeError: report of 2 is too large: 20",
        "count 2 1 exit code 3: cannot count 2",
    ], cell.plain
    assert lines[-1].startswith("(3 failed or retrying jobs")
    visible = _visible(cell.html)
    assert "ValueError: negative input: -1" in visible and "exit code 3: cannot count 2" in visible
    assert "<table" in cell.html and "ansi-red-fg" in cell.html


def test_failed_of_one_task_and_a_trailing_comment(failing: Recorded):
    only = failing["failed_task"].check().plain
    assert only.splitlines()[0] == "parse bad 1 ValueError: negative input: -1" and "report" not in only
    assert failing["failed_comment"].check().plain == only
    assert "'nosuch'" in usage_error(failing["failed_unknown_task"])


# ---- show --------------------------------------------------------------------------------------


def test_show_names_the_cell_not_the_temporary_file(failing: Recorded):
    cell = failing["show_inprocess"].check()
    setup = _count(failing["setup"])
    where = f"Cell In[{setup}], line {CHECK_LINE}"
    for text in (cell.plain, _visible(cell.html)):
        assert where in text, text
        assert "ipykernel_" not in text, text
        assert "negative input: -1" in text
    assert "in check" in cell.plain and 'raise ValueError(f"negative input: {value}")' in cell.plain
    assert "reason: ValueError: negative input: -1" in cell.plain


def test_show_renders_the_traceback_like_ipython(failing: Recorded):
    cell = failing["show_inprocess"].check()
    markup = cell.html
    for cls in ("ansi-red-fg", "ansi-green-fg", "ansi-cyan-fg"):
        assert f'class="{cls}' in markup, cls
    assert re.search(r"---&gt; +\d+</span> +raise ValueError", markup), markup
    # the user's frames first, pdtnb's and libraries' folded away after them
    visible = _visible(markup)
    assert visible.index("Cell In[") < visible.index(" of pdtnb and libraries")
    assert "<details" in markup and markup.index("Cell") < markup.index("<details")
    text = cell.plain
    assert re.search(r"\d+ frames? of pdtnb and libraries not shown", text), text
    assert text.index("Cell In[") < text.index(" of pdtnb and libraries not shown")
    assert "inprocess.py" not in text, "pdtnb's frames are not in the text"


def test_show_of_an_executor_job(failing: Recorded):
    cell = failing["show_executor"].check()
    where = f"Cell In[{_count(failing['setup'])}], line {REPORT_LINE}"
    assert where in cell.plain and where in _visible(cell.html)
    assert "RuntimeError: report of 2 is too large: 20" in cell.plain
    assert "ipykernel_" not in cell.plain + cell.html


def test_show_of_a_process_job_has_its_output_and_timings(failing: Recorded):
    cell = failing["show_process"].check()
    text = cell.plain
    assert text.startswith("count 2: failed")
    assert "reason: exit code 3: cannot count 2" in text
    assert "counting 2" in text and "cannot count 2" in text
    assert re.search(r"started \S+, took [\d.]+ s", text), text
    visible = _visible(cell.html)
    assert "exit code 3: cannot count 2" in visible and "counting 2" in visible
    assert "'nosuchjob'" in usage_error(failing["show_unknown_job"])


# ---- why, trace ----------------------------------------------------------------------------------


def test_why_follows_the_failure_upstream(failing: Recorded):
    blocked = failing["why_blocked"].check()
    assert blocked.plain.startswith("report bad: blocked")
    assert "upstream parse bad failed: ValueError: negative input: -1" in blocked.plain
    assert "<li>" in blocked.html
    why = failing["why_failed"].check().plain
    assert "attempt 1 ended: failure: ValueError: negative input: -1" in why and "retry parse bad" in why


def test_trace_of_a_job_no_repository_holds_is_an_error(failing: Recorded):
    message = usage_error(failing["trace_unknown"])
    assert "'nosuchjob'" in message and "no repository" in message


# ---- debug ---------------------------------------------------------------------------------------


def test_debug_raises_the_bodys_exception_at_the_failing_frame(failing: Recorded):
    cell = failing["debug_inprocess"]
    assert cell.enames == ["ValueError"], cell.describe()
    assert "debugging parse bad" in cell.stdout
    tb = strip_ansi("\n".join(cell.errors[0]["traceback"]))
    assert "negative input: -1" in tb
    facts = shown(failing["debug_inprocess_frame"])
    assert facts["function"] == "check" and facts["line"] == CHECK_LINE and facts["value"] == -1, facts
    assert facts["attempts"]["bad"] == 1, "debug wrote no record: the failed attempt is still the first"


def test_debug_of_an_executor_task_runs_in_the_foreground(failing: Recorded):
    cell = failing["debug_executor"]
    assert cell.enames == ["RuntimeError"], cell.describe()
    facts = shown(failing["debug_executor_frame"])
    assert facts["function"] == "report" and facts["line"] == REPORT_LINE, facts
    assert "job" in facts["locals"] and "parsed" in facts["locals"]
    ok = failing["debug_success"].check().plain
    assert ok.startswith("report 1: the body returned None without an error") and "nothing was recorded" in ok


def test_debug_of_a_process_task_shows_its_script(failing: Recorded):
    cell = failing["debug_process"].check()
    text = cell.plain
    assert text.startswith("count 2: the script it runs")
    assert 'echo "counting 2"' in text and 'if [ "2" = "2" ]' in text
    assert "COUNT_MODE=strict" in text
    assert "COUNT_MODE" in cell.html and "pdtnb-script" in cell.html
    assert "'nosuch'" in usage_error(failing["debug_unknown_task"])


# ---- launch, retry ---------------------------------------------------------------------------------


def test_a_failing_launch_is_the_jobs_failure_not_a_usage_error(failing: Recorded):
    cell = failing["launch_failing"]
    assert cell.enames == ["JobFailed"], cell.describe()
    error = cell.errors[0]
    assert "report 2 failed (attempt 2): RuntimeError: report of 2 is too large: 20" in error["evalue"]
    lines = [strip_ansi(line) for line in error["traceback"]]
    assert len(lines) <= 2 and "Traceback" not in "\n".join(lines), lines
    assert "%pdt show report 2" in lines[-1]


def test_retry_resets_failed_jobs(failing: Recorded):
    assert failing["retry_one"].check().plain == "parse: reset 1 job (bad)"
    assert failing["retry_failed"].check().plain.startswith("report: reset 1 job (2)")
    assert "succeeded" in usage_error(failing["retry_succeeded"])
    rerun = failing["rerun"].check()
    assert rerun.plain.startswith("finished: ")
    facts = shown(failing["after_retry"])
    assert facts["parse_done"] == ["1", "2", "bad"] and facts["parsed"]["bad"] == 30
    assert facts["report_attempt"] == 1, "retry cleared the record: the next attempt is a first one again"
    assert failing["failed_after_retry"].check().plain == "no failed or retrying jobs"


def test_show_lists_the_attempts(failing: Recorded):
    cell = failing["show_attempts"].check()
    assert "attempt 2: failure" in cell.plain
    attempts = cell.plain.split("attempts:")[1]
    assert re.search(r"^\s+1: failure: RuntimeError", attempts, re.M), cell.plain
    assert re.search(r"^\s+2: failure: RuntimeError", attempts, re.M), cell.plain
    assert "pdtnb-attempts" in cell.html


# ---- timeline, graph ---------------------------------------------------------------------------------


def test_timeline_draws_every_attempt(failing: Recorded):
    cell = failing["timeline"].check()
    kinds = {mime for out in cell.outputs for mime in out.get("data", {})}
    assert "image/svg+xml" in kinds, cell.describe()
    assert re.match(r"timeline: \d+ attempts of 9 jobs in 3 tasks", cell.plain), cell.plain
    assert "failure" in cell.plain and "success" in cell.plain
    some = failing["timeline_tasks"].check().plain
    assert "in 2 tasks" in some
    assert "'nosuch'" in usage_error(failing["timeline_unknown"])
    facts = shown(failing["timeline_figure"])
    assert facts["kind"] == "Figure" and facts["bars"] == 9, facts
    assert "success" in facts["legend"] and "failure" in facts["legend"]


def test_graph_form(failing: Recorded):
    cell = failing["graph_form"]
    if cell.errors:
        assert "form=" in usage_error(cell)
    else:
        kinds = {mime for out in cell.check().outputs for mime in out.get("data", {})}
        assert kinds & {"image/png", "image/svg+xml"}


# ---- live jobs, kill, stop, interrupt -------------------------------------------------------------------


def test_show_of_a_live_process_job_has_its_output_so_far(failing: Recorded):
    failing["add_slow"].check()
    assert shown(failing["slow_live"])["live"] is True
    cell = failing["show_live"].check()
    assert cell.plain.startswith("count slow: live")
    assert "stdout so far:" in cell.plain and "slow start" in cell.plain
    assert "slow start" in _visible(cell.html)


def test_kill_stops_a_live_process_job(failing: Recorded):
    assert failing["kill"].check().plain == "count slow: killed (recorded: killed)"
    assert shown(failing["after_kill"]) == {"record": "killed", "live": False}


def test_an_interrupted_wait_is_one_line(failing: Recorded):
    failing["run_forever_again"].check()
    assert not failing.facts.get("nudged"), failing["wait_interrupted"].describe()
    message = usage_error(failing["wait_interrupted"])
    assert "interrupted" in message and "goes on" in message
    assert shown(failing["after_interrupt"])["running"] is True


def test_stop_shows_the_summary_line(failing: Recorded):
    text = failing["stop"].check().plain
    assert re.match(r"stopped: \d+ succeeded, \d+ failed", text), text
    assert "RunSummary(" not in text


# ---- rm, redefinition, comments ---------------------------------------------------------------------------


def test_rm_of_many_jobs_is_summarised(failing: Recorded):
    failing["many"].check()
    text = failing["rm_all"].check().plain
    lines = text.splitlines()
    assert len(lines) <= 4, text
    match = re.fullmatch(r"\((\d+) deleted\)", lines[-1])
    assert match and int(match.group(1)) > 300, text
    assert "parse.inp 304" in lines[0] and lines[1].startswith("jobs: ") and "more" in lines[1], text


def test_redefining_the_pipeline_closes_the_old_definition(failing: Recorded):
    failing["redefine"].check()
    cell = failing["status_after_redefine"].check()
    assert cell.stdout.strip() == "pipeline `pipeline` was redefined: closed the old definition", cell.describe()
    assert "parse.inp 3" in cell.plain
    facts = shown(failing["after_redefine"])
    assert facts == {"old_open": False, "old_retired": True, "successor": True, "new_open": True}


def test_a_comment_alone_is_no_subcommand(failing: Recorded):
    assert "give a subcommand" in usage_error(failing["comment_only"])


def test_no_loop_errors_in_the_kernel_log(failing: Recorded):
    for phrase in ("cannot enter context", "already running", "was never awaited", "Task was destroyed"):
        assert phrase not in failing.log, failing.log
