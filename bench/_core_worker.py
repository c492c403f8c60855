"""One measurement of the core benchmark, in a fresh process; run by bench/core.py.

Usage: python _core_worker.py LIBRARY N MEASUREMENT
    LIBRARY      pdtnb | pydatatask   (the module to import; the interpreter must have it)
    N            number of jobs
    MEASUREMENT  run | loop | status

Builds a 3-task ``plug`` chain of InProcessSyncTask over an InProcessMetadataRepository holding
``{str(i): i}``, times one thing, checks that the final output holds ``input + 3`` for every job
(exiting non-zero if not), and prints one JSON line on stdout.

This file must run under both libraries' interpreters, so it imports neither at module level and
uses only the standard library otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import io
import json
import os
import resource
import sys
import time
from typing import Any

STAGES = 3
MEASUREMENTS = ("run", "loop", "status")


# ---- memory ----------------------------------------------------------------------------------


def _rss_kib() -> int:
    """The current resident set size in KiB (from /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM, which ru_maxrss reports) to the current RSS, so the
    peak read afterwards belongs to the measured call alone. Linux >= 4.0; False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# ---- the workload ----------------------------------------------------------------------------
#
# Task names t1..t3. Task k writes through a link named "out{k}"; task k+1 is plugged into task k,
# and plug names the inherited input link after the upstream output link, i.e. "out{k}" (both
# libraries do this), plus a "t{k}_done" link that only gates starting. Each output link therefore
# needs its own name: were every output link called "out", task k+1's own output link would
# replace the input link plug gave it. The bodies' parameters are the link names they get.


async def body1(job, inp, out1):
    await out1.dump(job, await inp.info(job) + 1)


async def body2(job, out1, out2):
    await out2.dump(job, await out1.info(job) + 1)


async def body3(job, out2, out3):
    await out3.dump(job, await out2.info(job) + 1)


BODIES = (body1, body2, body3)


def build(lib: Any, n: int) -> tuple[Any, Any, list[Any], list[Any]]:
    """The pipeline, its input repository, the tasks' output and done repositories."""
    inp = lib.InProcessMetadataRepository({str(i): i for i in range(n)})
    outs = [lib.InProcessMetadataRepository() for _ in range(STAGES)]
    dones = [lib.InProcessMetadataRepository() for _ in range(STAGES)]
    tasks = []
    for k in range(STAGES):
        task = lib.InProcessSyncTask(f"t{k + 1}", dones[k], func=BODIES[k])
        if k == 0:
            task.link("inp", inp, is_input=True)
        else:
            task.plug(tasks[k - 1])
        task.link(f"out{k + 1}", outs[k], is_output=True)
        tasks.append(task)
    pipeline = lib.Pipeline(tasks, lib.Session(), [])
    return pipeline, inp, outs, dones


def verify(n: int, inp: Any, outs: list[Any], dones: list[Any]) -> None:
    """Exit loudly unless every stage finished every job successfully and out3 == input + 3."""
    problems = []
    if len(inp.data) != n:
        problems.append(f"the input holds {len(inp.data)} jobs, not {n}")
    for k, (out, done) in enumerate(zip(outs, dones), start=1):
        if len(out.data) != n:
            problems.append(f"t{k}'s output holds {len(out.data)} jobs, not {n}")
        if len(done.data) != n:
            problems.append(f"t{k}'s done holds {len(done.data)} jobs, not {n}")
        failed = [j for j, rec in done.data.items() if not (isinstance(rec, dict) and rec.get("result") == "success")]
        if failed:
            problems.append(f"t{k}: {len(failed)} jobs did not succeed, e.g. {failed[0]}: {done.data[failed[0]]!r}")
    final = outs[-1].data
    wrong = [j for j in map(str, range(n)) if final.get(j) != int(j) + STAGES]
    if wrong:
        j = wrong[0]
        problems.append(f"{len(wrong)} final values are not input+{STAGES}, e.g. job {j}: {final.get(j)!r}")
    if problems:
        sys.exit("CORRECTNESS FAILURE: " + "; ".join(problems))


def verify_status(lib_name: str, n: int, status: Any) -> None:
    """Exit loudly unless the status shows every link of every task holding n jobs."""
    if lib_name == "pdtnb":
        for t in status.tasks:
            counts = {link.name: link.count for link in t.links}
            if any(c != n for c in counts.values()) or (t.ready, t.live, t.done, t.failed) != (0, 0, n, 0):
                sys.exit(
                    f"STATUS FAILURE: task {t.name}: links {counts}, ready {t.ready}, live {t.live}, "
                    f"done {t.done}, failed {t.failed} (expected {n} everywhere, no ready/live/failed)"
                )
        return
    lines = [line for line in status.splitlines() if "." in line]
    # Each task shows its input, done and output links; the plugged t{k-1}_done link only gates
    # starting (neither input, output nor status), so status hides it.
    expected = 3 * STAGES
    counts = {line.split()[0]: line.split()[1] for line in lines}
    if len(counts) != expected or any(c != str(n) for c in counts.values()):
        sys.exit(f"STATUS FAILURE: expected {expected} link lines each counting {n}, got:\n{status}")


# ---- the measurements ------------------------------------------------------------------------


async def update_loop(pipeline: Any) -> int:
    rounds = 1
    while await pipeline.update():
        rounds += 1
    return rounds


async def measure(lib_name: str, n: int, measurement: str) -> dict[str, Any]:
    lib = importlib.import_module(lib_name)
    # pydatatask's __init__ does `from .main import *`, which rebinds `pydatatask.main` to the
    # `main()` function; the module itself is only reachable through the import system.
    cli = lib if lib_name == "pdtnb" else importlib.import_module("pydatatask.main")
    pipeline, inp, outs, dones = build(lib, n)
    result: dict[str, Any] = {"library": lib_name, "version": lib.__version__, "n": n, "measurement": measurement}

    await pipeline.open()
    try:
        if measurement == "status":
            # The status of a finished pipeline: finish it first (no sleeps), then measure.
            result["rounds_to_finish"] = await update_loop(pipeline)
            verify(n, inp, outs, dones)

        gc.collect()
        # The baseline is read from the same kernel counter as the peak: right after the reset the
        # peak mark equals the current RSS. Without a reset, fall back to /proc/self/statm.
        result["peak_reset"] = _reset_peak_rss()
        rss_before = _peak_rss_kib() if result["peak_reset"] else _rss_kib()
        t0 = time.perf_counter()
        if measurement == "run":
            if lib_name == "pdtnb":
                summary = await pipeline.run()
                result["rounds"] = summary.rounds
            else:
                rounds = 0
                update = pipeline.update

                async def counting_update() -> bool:  # main.run calls pipeline.update once a round
                    nonlocal rounds
                    rounds += 1
                    return await update()

                pipeline.update = counting_update
                await cli.run(pipeline, forever=False, launch_once=False, timeout=None)
                result["rounds"] = rounds
        elif measurement == "loop":
            result["rounds"] = await update_loop(pipeline)
        else:
            if lib_name == "pdtnb":
                status = await lib.pipeline_status(pipeline)
            else:
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    await cli.print_status(pipeline, False)
                status = buf.getvalue()
        seconds = time.perf_counter() - t0
        peak = _peak_rss_kib()

        if measurement == "status":
            verify_status(lib_name, n, status)
            if lib_name == "pdtnb":
                # For reference: pdtnb's CLI printer (status + text rendering), the same call shape
                # as pydatatask's print_status. Not a primary figure.
                out, err = io.StringIO(), io.StringIO()
                t1 = time.perf_counter()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    await cli.print_status(pipeline, False)
                result["print_status_seconds"] = time.perf_counter() - t1
        else:
            verify(n, inp, outs, dones)
    finally:
        await pipeline.close()

    result["seconds"] = seconds
    result["rss_before_kib"] = rss_before
    result["peak_rss_kib"] = peak
    result["mem_kib"] = max(0, peak - rss_before)
    return result


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in ("pdtnb", "pydatatask") or argv[2] not in MEASUREMENTS:
        sys.exit(f"usage: {sys.argv[0]} pdtnb|pydatatask N {'|'.join(MEASUREMENTS)}")
    result = asyncio.run(measure(argv[0], int(argv[1]), argv[2]))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
