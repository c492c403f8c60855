"""Process benchmark: N echo jobs of a ProcessTask on LocalLinuxManager, pdtnb against pydatatask 0.4.7.

    .venv/bin/python bench/process.py [--jobs 500] [--concurrency 16] [--skip-pydatatask] [--skip-floor] [--repeat K]

Each library runs in a fresh subprocess (this file with ``--worker``): pdtnb under the repository's
.venv, pydatatask under bench/.venv-pydatatask (created by bench/core.py's helper when missing).
The worker builds one ProcessTask whose template is ``echo {{ job }}``, with in-memory input,
stdout, done and pids repositories and a ResourceManager quota of ``concurrency`` CPUs (each job
reserves one), times ``run`` until every job is done, checks every job's stdout and exit code,
and prints a JSON line.

The *floor* is plain Python doing the least the same work can cost on this machine: one asyncio
program starting ``echo JOB`` with ``asyncio.create_subprocess_exec``, ``concurrency`` at a time,
reading each one's stdout through a pipe and waiting for it, then checking the output and exit
code. It has no wrapper, no files, no records and no recovery, so no task can reach it; it tells
how fast this machine can start processes at the moment, so that a throughput target can be
judged against it. pdtnb and the floor run interleaved (alternating order) ``--repeat`` times.

The report gives jobs per second and checks the targets: at least 245 jobs/s (issue 14), and
at least 5x pydatatask's throughput; it prints pdtnb's throughput as a fraction of the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TARGET_JOBS_PER_S = 245.0  # issue 14 (it was 100 before)
TARGET_RATIO = 5.0
WORKER_TIMEOUT = 1200.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the worker (runs under either library's interpreter) -----------------------------------


async def _work(library: str, n: int, concurrency: int, basedir: str) -> dict:
    if library == "pdtnb":
        import pdtnb as lib
    else:
        import pydatatask as lib  # type: ignore[no-redef]

    session = lib.Session()

    @session.resource
    async def procman():
        yield lib.LocalLinuxManager("bench", basedir)

    inp = lib.InProcessMetadataRepository({str(i): i for i in range(n)})
    stdout = lib.InProcessBlobRepository()
    done = lib.InProcessMetadataRepository()
    pids = lib.InProcessMetadataRepository()
    quota = lib.ResourceManager(lib.Resources.parse(cpu=concurrency, mem="64Gi"))
    task = lib.ProcessTask(
        "echo",
        procman,
        quota,
        lib.Resources.parse(cpu=1, mem="1Mi"),
        pids,
        "echo {{ job }}\n",
        done=done,
        stdout=stdout,
    )
    task.link("inp", inp, is_input=True)
    pipeline = lib.Pipeline([task], session, [quota])

    rounds = 0
    if library == "pdtnb":
        async with pipeline:
            started = time.perf_counter()
            summary = await pipeline.run(timeout=WORKER_TIMEOUT)
            seconds = time.perf_counter() - started
            rounds = summary.rounds
    else:
        from pydatatask.main import run as pydatatask_run  # pydatatask.main is also a function's name

        async with pipeline:
            started = time.perf_counter()
            await pydatatask_run(pipeline, forever=False, launch_once=False, timeout=WORKER_TIMEOUT)
            seconds = time.perf_counter() - started

    # Check every job: stdout, exit code, nothing left running.
    errors = []
    for job in inp.data:
        record = done.data.get(job)
        code = None if record is None else record.get("exit_code", record.get("return_code"))
        if code != 0:
            errors.append(f"job {job}: done record {record!r}")
            continue
        try:
            async with await stdout.open(job, "rb") as fp:
                data = await fp.read()
        except (KeyError, FileNotFoundError):
            data = None
        if data != f"{job}\n".encode():
            errors.append(f"job {job}: stdout {data!r}")
    if pids.data:
        errors.append(f"{len(pids.data)} jobs still in pids")
    if errors:
        raise SystemExit(f"{library}: {len(errors)} jobs wrong, e.g. " + "; ".join(errors[:3]))

    peak = None
    if library == "pdtnb":
        # Concurrency from the recorded lifetimes (spawn to exit code), never above the quota.
        events = []
        for record in done.data.values():
            events.append((record["start_time"].timestamp(), 1))
            events.append((record["end_time"].timestamp(), -1))
        current = peak = 0
        for _, delta in sorted(events):
            current += delta
            peak = max(peak, current)
        if peak > concurrency:
            raise SystemExit(f"pdtnb: {peak} jobs ran at once, over the quota of {concurrency}")
    version = getattr(lib, "__version__", None)
    if version is None:
        import importlib.metadata

        version = importlib.metadata.version(library)
    return {
        "library": library,
        "version": version,
        "jobs": n,
        "concurrency": concurrency,
        "seconds": seconds,
        "jobs_per_s": n / seconds,
        "rounds": rounds,
        "peak_concurrency": peak,
    }


async def _floor(n: int, concurrency: int) -> dict:
    """Plain asyncio: ``echo JOB`` for every job, ``concurrency`` at a time, stdout read and checked."""
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(job: str) -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                "echo", job, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
        if proc.returncode != 0 or out != f"{job}\n".encode():
            errors.append(f"job {job}: exit code {proc.returncode}, stdout {out!r}")

    started = time.perf_counter()
    await asyncio.gather(*(one(str(i)) for i in range(n)))
    seconds = time.perf_counter() - started
    if errors:
        raise SystemExit(f"floor: {len(errors)} jobs wrong, e.g. " + "; ".join(errors[:3]))
    return {
        "library": "floor",
        "version": platform.python_version(),
        "jobs": n,
        "concurrency": concurrency,
        "seconds": seconds,
        "jobs_per_s": n / seconds,
        "rounds": 0,
        "peak_concurrency": None,
    }


def worker_main(library: str, n: int, concurrency: int) -> None:
    if library == "floor":
        print(json.dumps(asyncio.run(_floor(n, concurrency))), flush=True)
        return
    import logging

    logging.basicConfig(level=logging.CRITICAL)  # pydatatask logs an error per premature reap
    basedir = tempfile.mkdtemp(prefix=f"pdtnb-bench-{library}-")
    try:
        record = asyncio.run(_work(library, n, concurrency, basedir))
    finally:
        shutil.rmtree(basedir, ignore_errors=True)
    print(json.dumps(record), flush=True)


# ---- the driver ----------------------------------------------------------------------------------


def run_worker(python: str, library: str, n: int, concurrency: int) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", library]
    cmd += ["--jobs", str(n), "--concurrency", str(concurrency)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT + 60, cwd=str(BENCH))
    except subprocess.TimeoutExpired:
        sys.exit(f"FAILED: {library} took more than {WORKER_TIMEOUT:.0f} s")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.exit(
            f"FAILED: {library} (exit code {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500, help="number of echo jobs (default 500)")
    parser.add_argument("--concurrency", type=int, default=16, help="jobs allowed at once by the quota (default 16)")
    parser.add_argument("--skip-pydatatask", action="store_true", help="measure pdtnb only")
    parser.add_argument("--skip-floor", action="store_true", help="do not measure the plain-Python floor")
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="K", help="best of K runs of pdtnb and of the floor (default 1)"
    )
    parser.add_argument("--worker", choices=("pdtnb", "pydatatask", "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.concurrency < 1 or args.repeat < 1:
        parser.error("--jobs, --concurrency and --repeat must be positive")
    if args.worker:
        worker_main(args.worker, args.jobs, args.concurrency)
        return 0

    sys.path.insert(0, str(BENCH))
    from core import pdtnb_python, pydatatask_python

    pythons = {"pdtnb": pdtnb_python()}
    if not args.skip_pydatatask:
        pythons["pydatatask"] = pydatatask_python()
    load_start = os.getloadavg()[0]
    # pdtnb and the floor interleaved, in alternating order, so that a busy minute hits both alike;
    # pydatatask sleeps a second per round, so one run of it (last) is plenty.
    interleaved = ["pdtnb"] + ([] if args.skip_floor else ["floor"])
    schedule = []
    for i in range(args.repeat):
        order = interleaved if i % 2 == 0 else interleaved[::-1]
        schedule += [(name, i + 1, args.repeat) for name in order]
    if "pydatatask" in pythons:
        schedule.append(("pydatatask", 1, 1))
    runs: dict[str, list[dict]] = {}
    for library, i, repeat in schedule:
        python = pythons["pdtnb" if library == "floor" else library]
        rec = run_worker(python, library, args.jobs, args.concurrency)
        log(
            f"  {library:<10} [{i}/{repeat}] {rec['seconds']:8.3f} s  {rec['jobs_per_s']:8.1f} jobs/s"
            + (f"  rounds {rec['rounds']}  peak concurrency {rec['peak_concurrency']}" if rec["rounds"] else "")
        )
        runs.setdefault(library, []).append(rec)
    order = [name for name in ("pdtnb", "pydatatask", "floor") if name in runs]
    results: dict[str, dict] = {name: min(runs[name], key=lambda r: r["seconds"]) for name in order}

    mine = results["pdtnb"]
    print()
    print(
        f"pdtnb process benchmark: {args.jobs} ProcessTask jobs 'echo {{{{ job }}}}' on LocalLinuxManager, "
        f"quota {args.concurrency} at once, in-memory repositories, stdout and exit code checked for every job"
    )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        + "; ".join(f"{lib} {rec['version']}" for lib, rec in results.items() if lib != "floor")
        + f"; 1-minute load {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    print()
    print(f"{'library':<12}{'wall (s)':>10}{'jobs/s':>10}{'rounds':>8}{'peak at once':>14}")
    for lib, rec in results.items():
        rounds = str(rec["rounds"]) if rec["rounds"] else "-"
        peak = "-" if rec["peak_concurrency"] is None else str(rec["peak_concurrency"])
        print(f"{lib:<12}{rec['seconds']:>10.3f}{rec['jobs_per_s']:>10.1f}{rounds:>8}{peak:>14}")
    print()
    ok = mine["jobs_per_s"] >= TARGET_JOBS_PER_S
    print(f"Target: at least {TARGET_JOBS_PER_S:.0f} jobs/s: {mine['jobs_per_s']:.1f} -> {'met' if ok else 'NOT MET'}")
    if "pydatatask" in results:
        ratio = mine["jobs_per_s"] / results["pydatatask"]["jobs_per_s"]
        met = ratio >= TARGET_RATIO
        ok = ok and met
        verdict = "met" if met else "NOT MET"
        print(f"Target: at least {TARGET_RATIO:.0f}x pydatatask's throughput: {ratio:.1f}x -> {verdict}")
    if "floor" in results:
        floor = results["floor"]["jobs_per_s"]
        print(
            f"Floor (plain asyncio echo, same minute): {floor:.1f} jobs/s; pdtnb / floor = "
            f"{mine['jobs_per_s'] / floor:.2f}; the {TARGET_JOBS_PER_S:.0f} jobs/s target is "
            f"{TARGET_JOBS_PER_S / floor:.2f} of the floor"
        )
        if len(runs["pdtnb"]) > 1:
            pairs = [a["jobs_per_s"] / b["jobs_per_s"] for a, b in zip(runs["pdtnb"], runs["floor"])]
            print("pdtnb / floor in each repetition (same minute): " + ", ".join(f"{r:.2f}" for r in pairs))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
