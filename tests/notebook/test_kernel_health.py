"""The kernel stays healthy while pdtnb drives a pipeline from it, on ipykernel 6 and 7.

One scenario per kernel (one kernel, many cells, run once by the ``health`` fixture):

* the pipeline and its session open on the kernel's own running loop;
* top-level ``%pdt`` lines run as awaits (nest_asyncio is not applied for them); a magic inside a
  function goes through ``run_sync``, which makes that loop re-entrant the first time only, and
  afterwards top-level await, background tasks and later magics still work;
* ``pdtnb.notebook.run_sync`` completes (or raises a clear error) in a cell and from a thread;
* the kernel's interrupt stops a long ``%pdt launch ... --sync`` both at top level and inside a
  function, and the next cells still run;
* nothing in the kernel's own log mentions "cannot enter context" or "already running";
* shutting the kernel down closes the pipeline's session (its resource teardown writes a marker).
"""

from __future__ import annotations

import re
import time

import pytest
from nbrun import SHOW_HELPER, CellResult, KernelInfo, KernelSession, Recorded, shown

#: The interrupt is sent this long after a long cell starts ...
INTERRUPT_AFTER = 1.0
#: ... and the cell must be over this long after it started.
INTERRUPTED_WITHIN = INTERRUPT_AFTER + 4.0

SETUP = (
    SHOW_HELPER
    + """
%load_ext pdtnb
import asyncio, pathlib, threading
import pdtnb
from pdtnb.notebook import controller_for, kernel_loop, run_sync

KERNEL_LOOP = asyncio.get_running_loop()
MAIN_THREAD = threading.get_ident()
MARKER = pathlib.Path("session-closed.marker")
events = []
session = pdtnb.Session()

@session.resource
async def connection():
    events.append(["open", asyncio.get_running_loop() is KERNEL_LOOP])
    yield {"loop": asyncio.get_running_loop()}
    with MARKER.open("a") as fp:
        fp.write(f"closed on the kernel loop: {asyncio.get_running_loop() is KERNEL_LOOP}\\n")

inp = pdtnb.InProcessMetadataRepository({"1": 1, "2": 2, "3": 3})
out = pdtnb.InProcessMetadataRepository()
done = pdtnb.InProcessMetadataRepository()
ran_on = []

@pdtnb.InProcessSyncTask("double", done)
async def double(job, inp, out):
    assert connection()["loop"] is asyncio.get_running_loop()
    ran_on.append([job, threading.get_ident() == MAIN_THREAD, asyncio.get_running_loop() is KERNEL_LOOP])
    await out.dump(job, await inp.info(job) * 2)

double.link("inp", inp, is_input=True)
double.link("out", out, is_output=True)

slow_in = pdtnb.InProcessMetadataRepository()
slow_done = pdtnb.InProcessMetadataRepository()

@pdtnb.InProcessSyncTask("slow", slow_done)
async def slow(job, slow_in):
    await asyncio.sleep(60)

slow.link("slow_in", slow_in, is_input=True)
pipeline = pdtnb.Pipeline([double, slow], session)
"""
)

CELLS_BEFORE_INTERRUPTS = {
    "setup": SETUP,
    "open": "%pdt open",
    "on_loop": """show(open=pipeline.is_open, pipeline_loop=pipeline.loop is asyncio.get_running_loop(),
     kernel_loop=pipeline.loop is KERNEL_LOOP, resource_loop=connection()["loop"] is KERNEL_LOOP,
     events=events, reentrant=kernel_loop.is_reentrant(KERNEL_LOOP))""",
    "top_level_launch": """%pdt launch double 1
show(out=dict(out.data), ran_on=ran_on, reentrant=kernel_loop.is_reentrant(KERNEL_LOOP))""",
    "top_level_await": """busy = await pipeline.update()
show(busy=busy, out=dict(out.data), ran_on=ran_on, reentrant=kernel_loop.is_reentrant(KERNEL_LOOP))""",
    "function_magic": """def redo_one():
    deleted = %pdt rm double.done 1
    launched = %pdt launch double 1
    table = %pdt status
    return deleted, launched, table

deleted, launched, table = redo_one()
show(deleted=str(deleted), launched=str(launched), table=repr(table), last_run=ran_on[-1],
     reentrant=kernel_loop.is_reentrant(KERNEL_LOOP))""",
    "other_loop_untouched": """fresh = {}
def make_fresh_loop():
    loop = asyncio.new_event_loop()
    fresh["patched"] = hasattr(loop, "_nest_patched") or kernel_loop.is_reentrant(loop)
    fresh["value"] = loop.run_until_complete(asyncio.sleep(0, result="plain loop ok"))
    loop.close()
    fresh["asyncio_run"] = asyncio.run.__module__
t = threading.Thread(target=make_fresh_loop)
t.start()
t.join(10)
show(**fresh)""",
    "after_nest_await": """await asyncio.sleep(0.01)
phase = await pipeline.update_phase()
report = await pipeline.launch_phase()
background = asyncio.ensure_future(asyncio.sleep(0.2, result="background done"))
show(phase=phase, ready=report.ready, loop_running=KERNEL_LOOP.is_running())""",
    "after_nest_background": "show(background=await background)",
    "after_nest_status": "%pdt status",
    "run_sync_cell": """async def where():
    await asyncio.sleep(0)
    return [threading.get_ident() == MAIN_THREAD, asyncio.get_running_loop() is KERNEL_LOOP]

r1 = run_sync(where())
r2 = run_sync(pipeline.update_phase(), pipeline.loop)
r3 = run_sync(controller_for(pipeline).ready_jobs("double"))
show(r1=r1, r2=r2, r3=r3, coroutines=[asyncio.iscoroutine(r) for r in (r1, r2, r3)])""",
    "run_sync_thread": """results = {}
def worker():
    try:
        results["on_pipeline_loop"] = run_sync(where(), pipeline.loop)
        results["status"] = run_sync(controller_for(pipeline).status(), pipeline.loop).to_text()
        results["no_loop"] = run_sync(asyncio.sleep(0, result="ran on its own loop"))
    except BaseException as e:
        results["error"] = repr(e)
t = threading.Thread(target=worker)
t.start()
for _ in range(1000):
    if not t.is_alive():
        break
    await asyncio.sleep(0.01)
show(alive=t.is_alive(), **results)""",
    "run_sync_wrong_loop": """wrong = {}
def other_loop_thread():
    async def inside_another_loop():
        coro = where()
        try:
            wrong["result"] = repr(run_sync(coro, KERNEL_LOOP))
        except Exception as e:
            wrong["error"] = f"{type(e).__name__}: {e}"
        wrong["coroutine_closed"] = coro.cr_frame is None
    asyncio.run(inside_another_loop())
t = threading.Thread(target=other_loop_thread)
t.start()
for _ in range(1000):
    if not t.is_alive():
        break
    await asyncio.sleep(0.01)
show(alive=t.is_alive(), **wrong)""",
}

INTERRUPT_TOP = "%pdt launch slow 1 --sync --force"
INTERRUPT_FUNCTION = """def launch_slow():
    outcome = %pdt launch slow 2 --sync --force
    return outcome

launch_slow()"""

CELLS_AFTER_INTERRUPTS = {
    "final_await": """await asyncio.sleep(0.01)
show(loop_running=KERNEL_LOOP.is_running(), open=pipeline.is_open, slow_done=sorted(slow_done.data),
     out=dict(out.data))""",
    "final_function_magic": """def final():
    jobs = %pdt ls double.out
    return jobs
final()""",
}


def _interrupted(session: KernelSession, rec: Recorded, label: str, source: str) -> None:
    """Run a long cell, interrupt it from another thread; record how it ended and the next cells."""
    session.interrupt_after(INTERRUPT_AFTER)
    rec.cells[label] = session.run(source, timeout=INTERRUPTED_WITHIN + 2)
    if rec.cells[label].state == "timeout":
        # The interrupt did not end the cell (a test failure, asserted below). Wake the kernel's
        # loop so the cancellation it queued happens and the scenario can go on.
        rec.facts[f"{label}_nudged"] = True
        session.nudge()
        time.sleep(0.5)
    rec.cells[f"{label}_next"] = session.run("1 + 1")
    rec.cells[f"{label}_status"] = session.run("%pdt status")


@pytest.fixture(scope="module")
def health(kernel: KernelInfo, tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    cwd = tmp_path_factory.mktemp(f"health-{kernel.id}")
    rec = Recorded(kernel)
    session = KernelSession(kernel, cwd)
    with session:
        rec.cells["version"] = session.run("import ipykernel\nipykernel.__version__")
        for label, source in CELLS_BEFORE_INTERRUPTS.items():
            rec.cells[label] = session.run(source)
        _interrupted(session, rec, "interrupt_top", INTERRUPT_TOP)
        _interrupted(session, rec, "interrupt_function", INTERRUPT_FUNCTION)
        for label, source in CELLS_AFTER_INTERRUPTS.items():
            rec.cells[label] = session.run(source)
        rec.facts["marker_before_shutdown"] = (cwd / "session-closed.marker").exists()
        rec.log = session.kernel_log()
        started = time.monotonic()
        session.shutdown()
        rec.facts["shutdown_seconds"] = time.monotonic() - started
    rec.log = session.kernel_log()
    marker = cwd / "session-closed.marker"
    rec.facts["marker"] = marker.read_text() if marker.exists() else None
    return rec


def test_kernel_runs_the_expected_ipykernel(health: Recorded):
    version = health["version"].check().plain.strip().strip("'\"")
    assert version.split(".")[0] == str(health.kernel.major), version


def test_open_uses_the_kernel_loop_and_no_nest_asyncio(health: Recorded):
    assert "opened pipeline" in health["open"].check().plain
    facts = shown(health["on_loop"])
    assert facts == {
        "open": True,
        "pipeline_loop": True,
        "kernel_loop": True,
        "resource_loop": True,
        "events": [["open", True]],
        "reentrant": False,
    }


def test_top_level_magics_and_await_share_the_loop_without_patching(health: Recorded):
    launched = shown(health["top_level_launch"])
    assert launched["out"] == {"1": 2}
    assert launched["ran_on"] == [["1", True, True]]
    assert launched["reentrant"] is False, "a top-level %pdt line must be awaited, not run through nest_asyncio"
    updated = shown(health["top_level_await"])
    assert updated["out"] == {"1": 2, "2": 4, "3": 6}
    assert updated["busy"] is True
    assert sorted(updated["ran_on"][1:]) == [["2", True, True], ["3", True, True]]
    assert updated["reentrant"] is False


def test_magic_inside_a_function_completes_on_the_kernel_loop(health: Recorded):
    facts = shown(health["function_magic"])
    assert "1 pipeline.double.done" in facts["deleted"] or "(1 deleted)" in facts["deleted"], facts
    assert facts["launched"] == "double:1 launched and finished"
    assert facts["last_run"] == ["1", True, True]
    assert "double.done 3" in facts["table"] and "double.out 3" in facts["table"]
    assert facts["reentrant"] is True, "run_sync inside the running kernel loop should make it re-entrant"


def test_other_event_loops_still_work_after_the_nest_asyncio_path(health: Recorded):
    assert shown(health["other_loop_untouched"])["value"] == "plain loop ok"


def test_nest_asyncio_is_applied_to_the_kernel_loop_only(health: Recorded):
    facts = shown(health["other_loop_untouched"])
    assert facts["patched"] is False, (
        "run_sync made the kernel loop re-entrant, and a new event loop made afterwards in another "
        "thread is re-entrant too: nest_asyncio was applied beyond that loop"
    )
    assert facts["asyncio_run"] == "asyncio.runners", "asyncio.run itself was replaced process-wide"


def test_kernel_healthy_after_the_nest_asyncio_path(health: Recorded):
    facts = shown(health["after_nest_await"])
    assert facts == {"phase": [], "ready": 0, "loop_running": True}
    assert shown(health["after_nest_background"]) == {"background": "background done"}
    status = health["after_nest_status"].check()
    assert "double.out 3" in status.plain and "<td>double</td>" in status.html


def test_run_sync_inside_a_cell_returns_results(health: Recorded):
    facts = shown(health["run_sync_cell"])
    assert facts == {"r1": [True, True], "r2": [], "r3": [], "coroutines": [False, False, False]}


def test_run_sync_from_a_plain_thread(health: Recorded):
    facts = shown(health["run_sync_thread"])
    assert "error" not in facts, facts
    assert facts["alive"] is False
    # Handed over to the kernel loop: the coroutine ran on the kernel's thread and loop.
    assert facts["on_pipeline_loop"] == [True, True]
    assert facts["status"].startswith("double\ndouble.inp 3\n")
    assert facts["no_loop"] == "ran on its own loop"


def test_run_sync_on_another_running_loop_is_a_clear_error(health: Recorded):
    facts = shown(health["run_sync_wrong_loop"])
    assert facts["alive"] is False
    assert "result" not in facts, f"run_sync returned instead of raising: {facts}"
    assert facts["error"].startswith("RuntimeError: ") and "loop" in facts["error"], facts
    assert facts["coroutine_closed"] is True, "the coroutine was left un-awaited and unclosed"


def _assert_stopped_by_interrupt(result: CellResult, nudged: bool) -> None:
    assert result.state == "ok" and not nudged, (
        f"the kernel's interrupt did not stop the cell within {INTERRUPTED_WITHIN:.0f} s "
        f"(interrupted after {INTERRUPT_AFTER} s): {result.describe()}"
    )
    assert result.elapsed < INTERRUPTED_WITHIN, result.describe()
    assert set(result.enames) & {"KeyboardInterrupt", "CancelledError"}, result.describe()


def test_interrupt_stops_a_top_level_magic(health: Recorded):
    _assert_stopped_by_interrupt(health["interrupt_top"], health.facts.get("interrupt_top_nudged", False))


def test_interrupt_stops_a_magic_inside_a_function(health: Recorded):
    _assert_stopped_by_interrupt(health["interrupt_function"], health.facts.get("interrupt_function_nudged", False))


@pytest.mark.parametrize("label", ["interrupt_top", "interrupt_function"])
def test_kernel_works_after_an_interrupt(health: Recorded, label: str):
    assert health[f"{label}_next"].check().plain == "2"
    status = health[f"{label}_status"].check()
    assert re.search(r"^slow\.done 0$", status.plain, re.M), status.describe()
    assert "double.out 3" in status.plain


def test_kernel_works_at_the_end(health: Recorded):
    facts = shown(health["final_await"])
    # The interrupted slow jobs were cancelled, not recorded as finished.
    assert facts == {"loop_running": True, "open": True, "slow_done": [], "out": {"1": 2, "2": 4, "3": 6}}
    assert health["final_function_magic"].check().plain == "1\n2\n3\n(3 jobs)"


def test_no_event_loop_errors_in_the_kernel_log(health: Recorded):
    for phrase in ("cannot enter context", "already running", "was never awaited", "Task was destroyed"):
        assert phrase not in health.log, f"{phrase!r} in the kernel's log:\n{health.log}"
    for label, result in health.cells.items():
        for phrase in ("cannot enter context", "already running"):
            assert phrase not in result.everything, f"{phrase!r} in cell {label}: {result.describe()}"


def test_shutting_the_kernel_down_closes_the_session(health: Recorded):
    assert health.facts["marker_before_shutdown"] is False
    assert health.facts["marker"] == "closed on the kernel loop: True\n", health.log
    # A graceful exit: not killed after the kernel manager's wait.
    assert health.facts["shutdown_seconds"] < 4.5, health.facts


def test_load_ext_and_a_magic_in_the_first_cell(run_notebook):
    """The usual first cell: the extension is loaded and used in the same cell, before the
    await-rewriting transformer can apply, so that magic goes through run_sync."""
    setup = SETUP.replace("%load_ext pdtnb\n", "")
    cells = run_notebook(
        [
            "import ipykernel\nipykernel.__version__",
            setup,
            "%load_ext pdtnb\n%pdt status",
            "await asyncio.sleep(0.01)\n%pdt launch double 2\nshow(out=dict(out.data), open=pipeline.is_open)",
            "%pdt status",
        ]
    )
    for cell in cells:
        cell.check()
    assert cells[0].plain.strip("'").startswith(f"{run_notebook.kernel.major}.")
    assert cells[2].plain.startswith("double\ndouble.inp 3\n")
    assert shown(cells[3]) == {"out": {"2": 4}, "open": True}
    assert "double.out 1" in cells[4].plain
