"""One measurement of the file benchmarks, in a fresh process; run by bench/files.py.

Usage:
    python _files_worker.py loop   LIBRARY N DIR [PROFILE_OUT]   2-stage pipeline over local files
    python _files_worker.py floor  N DIR                          the same file work in plain Python
    python _files_worker.py status LIBRARY TREE N F1,F2,F3 [PROFILE_OUT]
                                                    cold status of a finished 3-task tree
    python _files_worker.py formats LIBRARY DIR                   the done records the library writes

LIBRARY is ``pdtnb`` or ``pydatatask`` (the interpreter must have it). ``loop`` and ``floor``
create DIR (which must not exist), seed N input files into it, then time the work, check every
output and record, and print one JSON line. ``loop`` with PROFILE_OUT also writes the cProfile
statistics of the timed loop (only) to that file.

This file runs under both libraries' interpreters: it imports neither at module level, and
otherwise only the standard library and PyYAML (both venvs have it, with libyaml).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import io
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

STAGES = 2
#: What stage k appends to what it reads (stage 1 reads the input, stage 2 stage 1's output).
SUFFIXES = (b"1", b"2")


def job_name(i: int) -> str:
    return f"j{i}"


def input_bytes(i: int) -> bytes:
    """About 300 bytes, different for every job."""
    return (f"input of job {i}: " + "abcdefghij" * 30)[:299].encode() + b"\n"


def seed(inp: Path, n: int) -> None:
    inp.mkdir(parents=True)
    for i in range(n):
        fd = os.open(inp / job_name(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            os.write(fd, input_bytes(i))
        finally:
            os.close(fd)


# ---- the pipeline (both libraries) -----------------------------------------------------------
#
# Link names: t1 writes through "out1"; t2 is plugged into t1, so it gets "out1" as an input link
# (and "t1_done" gating its start); t2's own output link is "out2". The bodies' parameters are
# link names. Both libraries' FileRepository.open(job, "rb"/"wb") return async context managers
# whose streams have async read()/write().


async def body1(job, inp, out1):
    async with await inp.open(job, "rb") as fp:
        data = await fp.read()
    async with await out1.open(job, "wb") as fp:
        await fp.write(data + b"1")


async def body2(job, out1, out2):
    async with await out1.open(job, "rb") as fp:
        data = await fp.read()
    async with await out2.open(job, "wb") as fp:
        await fp.write(data + b"2")


def build_chain(lib: Any, session: Any, inp: Any, outs: list[Any], dones: list[Any], bodies: list[Any]) -> Any:
    """A plug chain t1 -> t2 -> ... of InProcessSyncTask: t1 reads ``inp``; task k writes
    ``outs[k]`` through link ``out{k+1}`` and records in ``dones[k]``."""
    tasks = []
    for k, (out, done, body) in enumerate(zip(outs, dones, bodies)):
        task = lib.InProcessSyncTask(f"t{k + 1}", done, func=body)
        if k == 0:
            task.link("inp", inp, is_input=True)
        else:
            task.plug(tasks[k - 1])
        task.link(f"out{k + 1}", out, is_output=True)
        tasks.append(task)
    return lib.Pipeline(tasks, session, [])


def file_dirs(root: Path, stages: int, done_tag: str = "") -> tuple[Path, list[Path], list[Path]]:
    return (
        root / "inp",
        [root / f"out{k + 1}" for k in range(stages)],
        [root / f"done{done_tag}{k + 1}" for k in range(stages)],
    )


def build_files(lib: Any, root: Path, stages: int, bodies: list[Any], done_tag: str = "") -> Any:
    inp, outs, dones = file_dirs(root, stages, done_tag)
    return build_chain(
        lib,
        lib.Session(),
        lib.FileRepository(inp),
        [lib.FileRepository(d) for d in outs],
        [lib.YamlMetadataFileRepository(d) for d in dones],
        bodies,
    )


async def update_loop(pipeline: Any) -> int:
    rounds = 1
    while await pipeline.update():
        rounds += 1
    return rounds


# ---- checking --------------------------------------------------------------------------------

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def job_files(directory: Path) -> set[str]:
    """The names in ``directory`` that are not hidden (pdtnb's temporaries and lease start with '.')."""
    return {name for name in os.listdir(directory) if not name.startswith(".")}


def verify_files(root: Path, n: int) -> None:
    """Exit loudly unless every job's output is right in both stages and every record is a success."""
    _, outs, dones = file_dirs(root, STAGES)
    problems = []
    expected_names = {job_name(i) for i in range(n)}
    for k in range(STAGES):
        if job_files(outs[k]) != expected_names:
            problems.append(f"{outs[k]} holds {len(job_files(outs[k]))} files, not the {n} jobs")
        if job_files(dones[k]) != {name + ".yaml" for name in expected_names}:
            problems.append(f"{dones[k]} holds {len(job_files(dones[k]))} files, not the {n} records")
    if problems:
        sys.exit("CORRECTNESS FAILURE: " + "; ".join(problems))
    for i in range(n):
        job = job_name(i)
        expected = input_bytes(i)
        for k in range(STAGES):
            expected += SUFFIXES[k]
            got = (outs[k] / job).read_bytes()
            if got != expected:
                sys.exit(f"CORRECTNESS FAILURE: {outs[k] / job} holds {got[-20:]!r}, expected ...{expected[-20:]!r}")
            rec = yaml.load((dones[k] / f"{job}.yaml").read_bytes(), Loader=_Loader)
            if not (isinstance(rec, dict) and rec.get("result") == "success"):
                sys.exit(f"CORRECTNESS FAILURE: {dones[k] / job}.yaml is not a success record: {rec!r}")


# ---- the measurements ------------------------------------------------------------------------


def _cpu() -> tuple[float, float]:
    """User and system CPU seconds of this process, every thread (asyncio.to_thread and aiofiles
    use threads). System time is mostly the file system's work: creating, renaming, writing."""
    t = os.times()
    return t.user, t.system


def _cpu_fields(before: tuple[float, float], after: tuple[float, float]) -> dict[str, float]:
    user, system = after[0] - before[0], after[1] - before[1]
    return {"cpu_seconds": user + system, "user_seconds": user, "sys_seconds": system}


async def measure_loop(lib_name: str, n: int, root: Path, profile_out: str | None) -> dict[str, Any]:
    lib = importlib.import_module(lib_name)
    seed(root / "inp", n)
    os.sync()  # the seeding's dirty pages must not be written back during the timed loop
    pipeline = build_files(lib, root, STAGES, [body1, body2])
    await pipeline.open()
    profiler = None
    try:
        gc.collect()
        if profile_out:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu0, t0 = _cpu(), time.perf_counter()
        rounds = await update_loop(pipeline)
        seconds, cpu1 = time.perf_counter() - t0, _cpu()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_out)
    finally:
        await pipeline.close()
    verify_files(root, n)
    return {
        "library": lib_name,
        "version": lib.__version__,
        "n": n,
        "seconds": seconds,
        **_cpu_fields(cpu0, cpu1),
        "rounds": rounds,
        "profiled": profiler is not None,
    }


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    with open(tmp, "wb") as fp:
        fp.write(data)
    os.replace(tmp, path)


def measure_floor(n: int, root: Path) -> dict[str, Any]:
    """Per job and stage: read the input, write the output through a temporary file and a rename,
    write the done record (pdtnb's success record, C-YAML) the same way. One thread, stage by
    stage, each stage's jobs found by listing its input directory."""
    seed(root / "inp", n)
    os.sync()
    inp, outs, dones = file_dirs(root, STAGES)
    host = socket.gethostname()
    dumper = yaml.CSafeDumper
    utc = timezone.utc
    cpu0, t0 = _cpu(), time.perf_counter()
    sources = [inp, *outs[:-1]]
    for k in range(STAGES):
        src, dst, done, suffix = sources[k], outs[k], dones[k], SUFFIXES[k]
        dst.mkdir()
        done.mkdir()
        for job in os.listdir(src):
            if job.startswith("."):
                continue
            start = datetime.now(utc)
            with open(src / job, "rb") as fp:
                data = fp.read()
            _write_atomic(dst / job, data + suffix)
            end = datetime.now(utc)
            # What pdtnb's record holds (its task's fingerprint too), so both write the same bytes.
            record = {
                "result": "success",
                "attempt": 1,
                "start_time": start,
                "end_time": end,
                "host": host,
                "fingerprint": "d29e07acd4f6c411",
                "fingerprint_parts": {"body": "d9b373474675"},
            }
            body = yaml.dump(record, Dumper=dumper, sort_keys=False, allow_unicode=True).encode()
            _write_atomic(done / f"{job}.yaml", body)
    seconds, cpu1 = time.perf_counter() - t0, _cpu()
    verify_files(root, n)
    return {"library": "floor", "version": "-", "n": n, "seconds": seconds, **_cpu_fields(cpu0, cpu1), "rounds": STAGES}


# ---- status of a finished 3-task tree (built by files.py) -------------------------------------

STATUS_STAGES = 3


def _status_bodies() -> list[Any]:
    async def s1(job, inp, out1):
        raise AssertionError("status must not launch anything")

    async def s2(job, out1, out2):
        raise AssertionError("status must not launch anything")

    async def s3(job, out2, out3):
        raise AssertionError("status must not launch anything")

    return [s1, s2, s3]


def status_pipeline(lib: Any, tree: Path) -> Any:
    """The 3-task pipeline over ``tree``: shared ``inp``/``out*``, the library's own done dirs."""
    tag = "-pdtnb-" if lib.__name__ == "pdtnb" else "-pydatatask-"
    return build_files(lib, tree, STATUS_STAGES, _status_bodies(), done_tag=tag)


def expected_status(n: int, fails: list[int]) -> list[dict[str, int]]:
    """What status must count, task by task, when task k failed ``fails[k-1]`` jobs (files.py
    fails those with i % 1000 == k), whose later tasks have no record: they are blocked there."""
    failed_before = 0
    out = []
    for f in fails:
        out.append(
            {
                "failed": f,
                "done": n - failed_before - f,
                "blocked": failed_before,
                "ready": 0,
                "live": 0,
                "waiting": 0,
                "retrying": 0,
            }
        )
        failed_before += f
    return out


def check_pdtnb_status(status: Any, n: int, fails: list[int]) -> list[dict[str, int]]:
    want = expected_status(n, fails)
    got = [{key: getattr(t, key) for key in want[0]} for t in status.tasks]
    if got != want:
        sys.exit(f"STATUS FAILURE (pdtnb): counts {got}, expected {want}")
    return got


def check_pydatatask_status(text: str, n: int, fails: list[int]) -> dict[str, int]:
    """pydatatask counts each shown link's listing: t1.inp, then per task its plugged input,
    its done and its output."""
    counts = {line.split()[0]: int(line.split()[1]) for line in text.splitlines() if "." in line}
    want = {"t1.inp": n}
    failed_before = 0
    for k, f in enumerate(fails, start=1):
        if k > 1:
            want[f"t{k}.out{k - 1}"] = n - failed_before
        want[f"t{k}.done"] = n - failed_before
        failed_before += f
        want[f"t{k}.out{k}"] = n - failed_before
    if counts != want:
        sys.exit(f"STATUS FAILURE (pydatatask): counts {counts}, expected {want}")
    return counts


async def measure_status(
    lib_name: str, tree: Path, n: int, fails: list[int], profile_out: str | None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    lib = importlib.import_module(lib_name)
    cli = lib if lib_name == "pdtnb" else importlib.import_module("pydatatask.main")
    import_s = time.perf_counter() - t0
    pipeline = status_pipeline(lib, tree)
    gc.collect()
    profiler = None
    if profile_out:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t1 = time.perf_counter()
    await pipeline.open()
    t2 = time.perf_counter()
    try:
        if lib_name == "pdtnb":
            status = await lib.pipeline_status(pipeline)
        else:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                await cli.print_status(pipeline, False)
            status = buf.getvalue()
        t3 = time.perf_counter()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_out)
    finally:
        await pipeline.close()
    result: dict[str, Any] = {
        "library": lib_name,
        "version": lib.__version__,
        "n": n,
        "import_seconds": import_s,
        "open_seconds": t2 - t1,
        "status_seconds": t3 - t2,
        "seconds": t3 - t1,
    }
    if lib_name == "pdtnb":
        result["counts"] = check_pdtnb_status(status, n, fails)
    else:
        result["counts"] = check_pydatatask_status(status, n, fails)
    return result


async def measure_live(tree: Path, n: int, fails: list[int], refreshes: int = 20) -> dict[str, Any]:
    """The notebook's live table on the status tree: a real ``LiveStatus`` on a
    ``PipelineController`` (no kernel or frontend needed), its first refresh, then ``refreshes``
    refreshes with nothing changing, each setting the widget's value (cleared, untimed, before
    each: with the default 1 s interval the caption changes every second). CPU time of the
    process (``process_time``) and wall time of each; the shown counts are checked."""
    import statistics

    import pdtnb
    from pdtnb.notebook.controller import PipelineController
    from pdtnb.notebook.status_view import LiveStatus

    pipeline = status_pipeline(pdtnb, tree)
    await pipeline.open()
    try:
        widget = LiveStatus(PipelineController(pipeline, "bench"))

        async def timed() -> tuple[float, float]:
            widget.value = ""
            c0, t0 = time.process_time(), time.perf_counter()
            await widget.refresh()
            return time.process_time() - c0, time.perf_counter() - t0

        first = await timed()
        check_pdtnb_status(widget.controller.tracker.last, n, fails)
        idle = [await timed() for _ in range(refreshes)]
        check_pdtnb_status(widget.controller.tracker.last, n, fails)
        widget.close()
    finally:
        await pipeline.close()
    cpu = [c for c, _ in idle]
    wall = [w for _, w in idle]
    return {
        "first_cpu": first[0],
        "first_wall": first[1],
        "idle_cpu_median": statistics.median(cpu),
        "idle_cpu_max": max(cpu),
        "idle_wall_median": statistics.median(wall),
        "idle_wall_max": max(wall),
    }


# ---- the records each library writes (to check the generated trees' formats) -----------------


async def failing_body(job, inp, out1):
    if job == "j1":
        raise ValueError("boom")
    async with await out1.open(job, "wb") as fp:
        await fp.write(b"x")


async def measure_formats(lib_name: str, root: Path) -> dict[str, Any]:
    lib = importlib.import_module(lib_name)
    seed(root / "inp", 2)
    pipeline = build_files(lib, root, 1, [failing_body])
    await pipeline.open()
    try:
        await update_loop(pipeline)
    finally:
        await pipeline.close()
    records = {}
    for job in ("j0", "j1"):
        text = (root / "done1" / f"{job}.yaml").read_text()
        value = yaml.load(text, Loader=_Loader)
        records[job] = {key: type(v).__name__ for key, v in value.items()}
    return {"library": lib_name, "version": lib.__version__, "success": records["j0"], "failure": records["j1"]}


def main(argv: list[str]) -> None:
    usage = (
        f"usage: {sys.argv[0]} loop LIBRARY N DIR [PROFILE_OUT] | floor N DIR "
        "| status LIBRARY TREE N F1,F2,F3 [PROFILE_OUT] | live TREE N F1,F2,F3 | formats LIBRARY DIR"
    )
    if not argv:
        sys.exit(usage)
    mode, args = argv[0], argv[1:]
    if mode == "loop" and len(args) in (3, 4) and args[0] in ("pdtnb", "pydatatask"):
        result = asyncio.run(measure_loop(args[0], int(args[1]), Path(args[2]), args[3] if len(args) == 4 else None))
    elif mode == "floor" and len(args) == 2:
        result = measure_floor(int(args[0]), Path(args[1]))
    elif mode == "status" and len(args) in (4, 5) and args[0] in ("pdtnb", "pydatatask"):
        fails = [int(f) for f in args[3].split(",")]
        profile = args[4] if len(args) == 5 else None
        result = asyncio.run(measure_status(args[0], Path(args[1]), int(args[2]), fails, profile))
    elif mode == "live" and len(args) == 3:
        result = asyncio.run(measure_live(Path(args[0]), int(args[1]), [int(f) for f in args[2].split(",")]))
    elif mode == "formats" and len(args) == 2 and args[0] in ("pdtnb", "pydatatask"):
        result = asyncio.run(measure_formats(args[0], Path(args[1])))
    else:
        sys.exit(usage)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
