"""Core benchmark: pdtnb against pydatatask 0.4.7 and plain asyncio on a 3-task plug chain.

    .venv/bin/python bench/core.py [--sizes 1000,10000,100000] [--skip-pydatatask] [--skip-floor]
                                   [--repeat K] [--measurements run,loop,status]

For each N and each measurement (``run``, the update ``loop``, ``status``) and each contender, one
fresh subprocess times the one call, checks the results and prints a JSON line: for pdtnb and
pydatatask, bench/_core_worker.py, which builds the pipeline of in-process tasks; for the
**floor**, bench/_core_floor.py, the same work in the least plain asyncio Python (three stages over
dicts in rounds, a 2-tuple record per job; its ``run`` and ``loop`` are the same thing). pdtnb and
the floor run under this repository's .venv; pydatatask runs under bench/.venv-pydatatask, which
is created (``pip install pydatatask==0.4.7``) when missing. The script prints a table of the
figures, the pdtnb/pydatatask and pdtnb/floor ratios, and the issue's targets with whether pdtnb
meets them (and what the floor takes at the million-job run target). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORKER = BENCH / "_core_worker.py"
FLOOR = BENCH / "_core_floor.py"
PYDATATASK_VENV = BENCH / ".venv-pydatatask"
PYDATATASK_REQUIREMENT = "pydatatask==0.4.7"
PYDATATASK_VERSION = "0.4.7"
STAGES = 3
MEASUREMENTS = ("run", "loop", "status")
LIBRARIES = ("pdtnb", "pydatatask", "floor")
WORKER_TIMEOUT = 1800.0

#: The issue's targets by N: (measured key, comparison, limit, wording).
TARGET_N = 100_000
TARGETS_BY_N = {
    100_000: {
        "loop_us": ("<=", 4.0, "update loop <= 4 us per job per stage"),
        "run_s": ("<", 1.5, "run of the chain < 1.5 s"),
        "status_s": ("<", 0.3, "status over 100,000 jobs x 3 tasks < 0.3 s"),
    },
    # Issue 14, "speed on real storage": the in-memory chain at a million jobs.
    1_000_000: {
        "run_s": ("<=", 8.0, "run of the chain at N=1,000,000 <= 8 s"),
        "run_peak": ("<=", 1.2e9 / 2**20, "peak RSS of the process during that run <= 1.2 GB (1144 MiB)"),
    },
}
TARGETS = TARGETS_BY_N[TARGET_N]
#: pydatatask 0.4.7 at N = 100,000, as measured in /work/shared/reference/peers.md.
PEERS_REFERENCE = "pydatatask 0.4.7 per peers.md at N=100,000: run 8.14 s, update loop 5.01 s (~17 us/job/stage)"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- interpreters ----------------------------------------------------------------------------


def pdtnb_python() -> str:
    """The interpreter with pdtnb installed: the repository's .venv, else the one running us."""
    candidate = ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def _installed_version(python: Path, dist: str) -> str | None:
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def pydatatask_python() -> str:
    """bench/.venv-pydatatask's interpreter, creating the venv and installing pydatatask if needed."""
    python = PYDATATASK_VENV / "bin" / "python"
    if _installed_version(python, "pydatatask") == PYDATATASK_VERSION:
        return str(python)
    log(f"# setting up {PYDATATASK_VENV} with {PYDATATASK_REQUIREMENT} (pulls kubernetes, aiobotocore, ...)")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PYDATATASK_VENV)], check=True)
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", PYDATATASK_REQUIREMENT],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"pip install {PYDATATASK_REQUIREMENT} into {PYDATATASK_VENV} failed:\n{proc.stderr[-4000:]}")
    version = _installed_version(python, "pydatatask")
    if version != PYDATATASK_VERSION:
        sys.exit(f"{PYDATATASK_VENV} has pydatatask {version}, expected {PYDATATASK_VERSION}")
    return str(python)


# ---- running the worker ----------------------------------------------------------------------


def run_worker(python: str, library: str, n: int, measurement: str) -> dict:
    """One measurement in a fresh process; exits loudly if the worker fails or checks fail."""
    if library == "floor":
        cmd = [python, str(FLOOR), str(n), measurement]
    else:
        cmd = [python, str(WORKER), library, str(n), measurement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT, cwd=str(BENCH))
    except subprocess.TimeoutExpired:
        sys.exit(f"FAILED: {library} N={n} {measurement} took more than {WORKER_TIMEOUT:.0f} s")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.exit(
            f"FAILED: {library} N={n} {measurement} (exit code {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1])


def measure(python: str, library: str, n: int, measurement: str, repeat: int) -> dict:
    """Best of ``repeat`` runs: the fastest run's record, with the smallest memory figure seen."""
    runs = []
    for i in range(repeat):
        rec = run_worker(python, library, n, measurement)
        rounds = rec.get("rounds", rec.get("rounds_to_finish", "?"))
        log(
            f"  {library:<10} N={n:<7,} {measurement:<6} [{i + 1}/{repeat}] {rec['seconds']:9.4f} s  "
            f"rounds {rounds}  mem {rec['mem_kib'] / 1024:7.1f} MiB"
        )
        runs.append(rec)
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["mem_kib"] = min(r["mem_kib"] for r in runs)
    best["peak_rss_kib"] = min(r["peak_rss_kib"] for r in runs)
    if "print_status_seconds" in best:
        best["print_status_seconds"] = min(r["print_status_seconds"] for r in runs)
    best["peak_reset"] = all(r["peak_reset"] for r in runs)
    return best


def figures(recs: dict[str, dict], n: int) -> dict[str, float]:
    """The reported figures for one library at one N, from its three measurement records."""
    out: dict[str, float] = {}
    if "run" in recs:
        out["run_s"] = recs["run"]["seconds"]
        out["run_rounds"] = recs["run"]["rounds"]
        out["run_mem"] = recs["run"]["mem_kib"] / 1024
        out["run_peak"] = recs["run"]["peak_rss_kib"] / 1024
    if "loop" in recs:
        out["loop_s"] = recs["loop"]["seconds"]
        out["loop_us"] = recs["loop"]["seconds"] / (n * STAGES) * 1e6
        out["loop_rounds"] = recs["loop"]["rounds"]
        out["loop_mem"] = recs["loop"]["mem_kib"] / 1024
    if "status" in recs:
        out["status_s"] = recs["status"]["seconds"]
        if recs["status"]["library"] != "floor":  # the floor renders no text
            out["status_text_s"] = recs["status"].get("print_status_seconds", recs["status"]["seconds"])
        out["status_mem"] = recs["status"]["mem_kib"] / 1024
    return out


# ---- the report ------------------------------------------------------------------------------

#: (key, label, format, show a ratio)
ROWS = (
    ("run_s", "run: wall time (s)", "{:.3f}", True),
    ("run_rounds", "run: rounds", "{:d}", False),
    ("run_mem", "run: memory (MiB)", "{:.1f}", True),
    ("run_peak", "run: peak RSS of process (MiB)", "{:.1f}", True),
    ("loop_s", "update loop: total (s)", "{:.3f}", True),
    ("loop_us", "update loop: us/job/stage", "{:.2f}", True),
    ("loop_rounds", "update loop: rounds", "{:d}", False),
    ("loop_mem", "update loop: memory (MiB)", "{:.1f}", True),
    ("status_s", "status (s)", "{:.4f}", True),
    ("status_text_s", "status, print_status (s)", "{:.4f}", True),
    ("status_mem", "status: memory (MiB)", "{:.1f}", True),
)
#: The table's columns after the figure's label: (library, heading, width, ratio heading, width).
COLUMNS = (
    ("pdtnb", "pdtnb", 10, "", 0),
    ("pydatatask", "pydatatask", 12, "pdtnb/pdt", 11),
    ("floor", "floor", 10, "pdtnb/floor", 13),
)
#: The run target the floor is shown against: (N, key).
FLOOR_TARGET = (1_000_000, "run_s")


def target_cells(key: str, n: int, value: float | None) -> tuple[str, str]:
    targets = TARGETS_BY_N.get(n, {})
    if key not in targets or value is None:
        return "", ""
    op, limit, _ = targets[key]
    ok = value <= limit if op == "<=" else value < limit
    return f"{op} {limit:g}" if limit < 1000 else f"{op} {limit:.0f}", "yes" if ok else "NO"


def fmt(fmt_str: str, value: float | None) -> str:
    if value is None:
        return "-"
    return fmt_str.format(int(value) if fmt_str == "{:d}" else value)


def _ratio(mine: float | None, theirs: float | None) -> str:
    return f"{mine / theirs:.3f}" if mine is not None and theirs else ""


def print_report(results: dict[tuple[str, int], dict[str, float]], sizes: list[int], libraries: list[str]) -> None:
    """One block of rows per N (headed by N, which keeps the table within about 100 columns)."""
    columns = [c for c in COLUMNS if c[0] in libraries]
    header = f"{'figure':<30}"
    for _lib, heading, width, ratio_heading, ratio_width in columns:
        header += f"{heading:>{width}}{ratio_heading:>{ratio_width}}"
    header += f"  {'target':>7}  {'met':<3}"
    for n in sizes:
        print(f"N = {n:,}")
        print(header)
        print("-" * len(header))
        for key, label, fmt_str, ratio in ROWS:
            if all(results[(lib, n)].get(key) is None for lib, *_ in columns):
                continue  # a measurement left out by --measurements
            mine = results[("pdtnb", n)].get(key)
            line = f"{label:<30}"
            for lib, _heading, width, _ratio_heading, ratio_width in columns:
                value = results[(lib, n)].get(key)
                line += f"{fmt(fmt_str, value):>{width}}"
                if ratio_width:
                    line += f"{_ratio(mine, value) if ratio else '':>{ratio_width}}"
            target, met = target_cells(key, n, mine)
            line += f"  {target:>7}  {met:<3}"
            print(line.rstrip())
        print()

    print("Targets for pdtnb (from the issues):")
    for target_n, targets in TARGETS_BY_N.items():
        for key, (_op, _limit, wording) in targets.items():
            value = results.get(("pdtnb", target_n), {}).get(key)
            if value is None:
                print(f"  {wording}: not measured (add {target_n} to --sizes, and its measurement)")
                continue
            _, met = target_cells(key, target_n, value)
            unit = {"loop_us": "us/job/stage", "run_peak": "MiB"}.get(key, "s")
            print(f"  {wording}: {value:.3f} {unit} -> {'met' if met == 'yes' else 'NOT MET'}")
    floor_n, floor_key = FLOOR_TARGET
    _op, floor_limit, _ = TARGETS_BY_N[floor_n][floor_key]
    floor_value = results.get(("floor", floor_n), {}).get(floor_key)
    if floor_value is None:
        print(f"  the floor's run at N={floor_n:,}: not measured (needs the floor, {floor_n} in --sizes and run)")
    else:
        verdict = (
            "below the floor: plain Python cannot meet it here"
            if floor_value > floor_limit
            else f"{floor_limit / floor_value:.2f}x the floor's time"
        )
        print(
            f"  the floor's run at N={floor_n:,} on this machine: {floor_value:.3f} s "
            f"-> the {floor_limit:g} s target is {verdict}"
        )
    print(f"Reference: {PEERS_REFERENCE}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated job counts N")
    parser.add_argument("--skip-pydatatask", action="store_true", help="do not measure pydatatask")
    parser.add_argument("--skip-floor", action="store_true", help="do not measure the plain-asyncio floor")
    parser.add_argument("--repeat", type=int, default=1, metavar="K", help="best of K runs per figure (default 1)")
    parser.add_argument(
        "--measurements",
        default=",".join(MEASUREMENTS),
        help="comma-separated subset of run,loop,status (default all; --sizes 1000000 --measurements run "
        "measures the issue's million-job run alone)",
    )
    args = parser.parse_args(argv)
    measurements = [m.strip() for m in args.measurements.split(",") if m.strip()]
    if not measurements or any(m not in MEASUREMENTS for m in measurements):
        parser.error(f"--measurements takes a comma-separated subset of {','.join(MEASUREMENTS)}")
    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, not {args.sizes!r}")
    if not sizes or any(n < 1 for n in sizes):
        parser.error("--sizes needs at least one positive N")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    pythons = {"pdtnb": pdtnb_python()}
    if not args.skip_pydatatask:
        pythons["pydatatask"] = pydatatask_python()
    if not args.skip_floor:
        pythons["floor"] = pythons["pdtnb"]  # stdlib only; the same interpreter as pdtnb's
    libraries = [lib for lib in LIBRARIES if lib in pythons]

    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    records: dict[tuple[str, int], dict[str, dict]] = {}
    for n in sizes:
        for measurement in measurements:
            for lib in libraries:
                records.setdefault((lib, n), {})[measurement] = measure(pythons[lib], lib, n, measurement, args.repeat)
    results = {key: figures(recs, key[1]) for key, recs in records.items()}

    versions = {lib: next(iter(records[(lib, sizes[0])].values()))["version"] for lib in libraries}
    peak_reset = all(rec["peak_reset"] for recs in records.values() for rec in recs.values())
    print()
    print(
        f"pdtnb core benchmark: {STAGES}-task plug chain of InProcessSyncTask over "
        f"InProcessMetadataRepository {{str(i): i}}, body out.dump(job, inp.info(job) + 1)"
    )
    if "floor" in libraries:
        print(
            "floor: bench/_core_floor.py, the same work in plain asyncio: 3 stages over dicts in rounds "
            "(ready = input keys - done keys), the same body awaiting async info/dump, a (start_ns, end_ns) "
            "record per job; its run and update loop are the same thing; its status counts the dicts "
            "and the failed records"
        )
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        + "; ".join(f"{lib} {versions[lib]} ({pythons[lib]})" for lib in libraries)
        + f"; best of {args.repeat}; every figure from its own subprocess"
    )
    print(
        f"1-minute load average: {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
        f"(above ~0.5, other processes share the {os.cpu_count()} CPUs and the timings are noisier)"
    )
    print(
        "run: wall time of pdtnb `await pipeline.run()` / pydatatask "
        "`await main.run(pipeline, forever=False, launch_once=False, timeout=None)` (sleeps 1 s a round)"
    )
    print(f"update loop: `while await pipeline.update(): pass` on a fresh pipeline; us/job/stage = total/(N*{STAGES})")
    print(
        "status: pdtnb `await pdtnb.pipeline_status(pipeline)` / pydatatask "
        "`await main.print_status(pipeline, False)` into a StringIO, on the finished pipeline; "
        "'status, print_status' is pdtnb's print_status (measured after the first call; the floor renders no text)"
    )
    print(
        "run: peak RSS of the process: the highest RSS of the worker process during the run "
        "(ru_maxrss after the reset below: input, imports and everything the run keeps included)"
    )
    print(
        "memory: peak RSS during the measured call (ru_maxrss, "
        + (
            "peak mark reset via /proc/self/clear_refs just before it"
            if peak_reset
            else "WARNING: could not reset the peak mark, so this includes set-up"
        )
        + ") minus RSS just before it; about 0.5 MiB of noise"
    )
    print("ratios: pdtnb / pydatatask and pdtnb / floor (below 1: pdtnb is faster or smaller)")
    print()
    print_report(results, sizes, libraries)
    print(f"({time.perf_counter() - started:.0f} s in all; every run's output was checked: out3 == input + 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
