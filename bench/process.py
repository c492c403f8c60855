"""Process benchmark: N echo jobs of a ProcessTask on LocalLinuxManager, pdtnb against pydatatask 0.4.7.

    .venv/bin/python bench/process.py [--jobs 500] [--concurrency 16] [--skip-pydatatask] [--repeat K]

Each library runs in a fresh subprocess (this file with ``--worker``): pdtnb under the repository's
.venv, pydatatask under bench/.venv-pydatatask (created by bench/core.py's helper when missing).
The worker builds one ProcessTask whose template is ``echo {{ job }}``, with in-memory input,
stdout, done and pids repositories and a ResourceManager quota of ``concurrency`` CPUs (each job
reserves one), times ``run`` until every job is done, checks every job's stdout and exit code,
and prints a JSON line. The report gives jobs per second and checks the issue's targets: at least
100 jobs/s, and at least 5x pydatatask's throughput.
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
TARGET_JOBS_PER_S = 100.0
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


def worker_main(library: str, n: int, concurrency: int) -> None:
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
    parser.add_argument("--repeat", type=int, default=1, metavar="K", help="best of K runs of pdtnb (default 1)")
    parser.add_argument("--worker", choices=("pdtnb", "pydatatask"), help=argparse.SUPPRESS)
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
    results: dict[str, dict] = {}
    for library, python in pythons.items():
        # pydatatask sleeps a second per round, so one run of it is plenty.
        repeat = args.repeat if library == "pdtnb" else 1
        runs = []
        for i in range(repeat):
            rec = run_worker(python, library, args.jobs, args.concurrency)
            log(
                f"  {library:<10} [{i + 1}/{repeat}] {rec['seconds']:8.3f} s  {rec['jobs_per_s']:8.1f} jobs/s"
                + (f"  rounds {rec['rounds']}  peak concurrency {rec['peak_concurrency']}" if rec["rounds"] else "")
            )
            runs.append(rec)
        results[library] = min(runs, key=lambda r: r["seconds"])

    mine = results["pdtnb"]
    print()
    print(
        f"pdtnb process benchmark: {args.jobs} ProcessTask jobs 'echo {{{{ job }}}}' on LocalLinuxManager, "
        f"quota {args.concurrency} at once, in-memory repositories, stdout and exit code checked for every job"
    )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        + "; ".join(f"{lib} {rec['version']}" for lib, rec in results.items())
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
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
