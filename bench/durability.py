"""Durability benchmark: what ``durable=True`` costs a file pipeline, against plain Python.

    .venv/bin/python bench/durability.py [--jobs 2000] [--repeat 1] [--dir DIR] [--threads 16]

The workload is a 2-stage chain of ``InProcessSyncTask``s on file repositories: stage ``t1`` reads
the job's input file (``FileRepository``) and writes an output file; ``t2`` (plugged into ``t1``)
reads that and writes its own; each stage records every job in a ``YamlMetadataFileRepository``.
That is 4 writes per job (2 outputs, 2 done records), each atomic (a temporary file and a
rename). It runs once with every repository ``durable=False`` and once with ``durable=True``
(each write also fsyncs the file, then the directory after the rename), each in a fresh directory,
timing ``await pipeline.run()`` on the opened pipeline and then checking every record and output.

The floor is plain Python doing the same number of writes of the same sizes in the same kind of
directories, with no pipeline: per file, write a temporary file, (fsync it,) rename it over the
final name(, fsync the directory), sequentially and in ``--threads`` threads (pdtnb runs
``launch_concurrency`` = 16 launches at once, and concurrent fsyncs share the journal's commits).

Every figure is the best of ``--repeat`` runs; the modes are interleaved within each repetition.
The directory is a fresh one under ``--dir`` (default: the system's temporary directory), whose
file system is printed: fsync means nothing on a tmpfs. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WRITES_PER_JOB = 4  # two outputs and two done records


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def seed(root: Path, n: int) -> None:
    (root / "inp").mkdir(parents=True)
    for i in range(n):
        (root / "inp" / f"j{i}").write_text(f"input of job {i}\n" * 4)


async def pipeline_run(root: Path, n: int, durable: bool) -> float:
    import pdtnb

    inp = pdtnb.FileRepository(root / "inp")
    out1 = pdtnb.FileRepository(root / "out1", durable=durable)
    out2 = pdtnb.FileRepository(root / "out2", durable=durable)
    done1 = pdtnb.YamlMetadataFileRepository(root / "done1", durable=durable)
    done2 = pdtnb.YamlMetadataFileRepository(root / "done2", durable=durable)

    @pdtnb.InProcessSyncTask("t1", done1)
    async def t1(job, inp, out1):
        async with await inp.open(job, "r") as fp:
            text = await fp.read()
        async with await out1.open(job, "w") as fp:
            await fp.write(text.upper())

    t1.link("inp", inp, is_input=True)
    t1.link("out1", out1, is_output=True)

    @pdtnb.InProcessSyncTask("t2", done2)
    async def t2(job, out1, out2):
        async with await out1.open(job, "r") as fp:
            text = await fp.read()
        async with await out2.open(job, "w") as fp:
            await fp.write(text[::-1])

    t2.plug(t1)
    t2.link("out2", out2, is_output=True)
    pipeline = pdtnb.Pipeline([t1, t2], pdtnb.Session())
    async with pipeline:
        started = time.perf_counter()
        summary = await pipeline.run()
        elapsed = time.perf_counter() - started
    # Check: every job recorded as a success by both stages, and every output right.
    if summary.succeeded != 2 * n or not summary.ok:
        raise SystemExit(f"durable={durable}: {summary.describe()}")
    for done in (done1, done2):
        records = await done.info_all()
        if len(records) != n or any(r["result"] != "success" for r in records.values()):
            raise SystemExit(f"durable={durable}: {done!r} holds {len(records)} records, not {n} successes")
    for i in (0, n - 1):
        expected = (f"input of job {i}\n" * 4).upper()[::-1]
        if (root / "out2" / f"j{i}").read_text() != expected:
            raise SystemExit(f"durable={durable}: wrong output for j{i}")
    return elapsed


def _floor_write(directory: Path, name: str, data: bytes, durable: bool) -> None:
    tmp = directory / f".tmp-{name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / name)
    if durable:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def floor_run(root: Path, n: int, durable: bool, threads: int) -> float:
    """The same writes as the pipeline's (4 per job, in 4 directories, of about the same sizes),
    in plain Python."""
    record = (
        b"result: success\nattempt: 1\nstart_time: 2026-11-30 10:00:00.000000+00:00\n"
        b"end_time: 2026-11-30 10:00:00.001000+00:00\nhost: bench\n"
    )
    dirs = [root / name for name in ("out1", "done1", "out2", "done2")]
    for d in dirs:
        d.mkdir(parents=True)
    work = []
    for i in range(n):
        payload = (f"input of job {i}\n" * 4).encode()
        work += [
            (dirs[0], f"j{i}", payload),
            (dirs[1], f"j{i}.yaml", record),
            (dirs[2], f"j{i}", payload),
            (dirs[3], f"j{i}.yaml", record),
        ]
    started = time.perf_counter()
    if threads <= 1:
        for directory, name, data in work:
            _floor_write(directory, name, data, durable)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(lambda w: _floor_write(w[0], w[1], w[2], durable), work):
                pass
    elapsed = time.perf_counter() - started
    if len(os.listdir(dirs[3])) != n:
        raise SystemExit("floor: files missing")
    return elapsed


def filesystem_of(path: Path) -> str:
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, check=True).stdout
        fields = out.splitlines()[1].split()
        return f"{fields[1]} on {fields[0]}"
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1, help="best of K runs of every figure")
    parser.add_argument("--dir", default=None, help="where to write (default: the temporary directory)")
    parser.add_argument("--threads", type=int, default=16, help="threads of the parallel floor")
    args = parser.parse_args()
    n = args.jobs
    base = Path(tempfile.mkdtemp(prefix="pdtnb-durability-", dir=args.dir))
    writes = WRITES_PER_JOB * n
    try:
        log(
            f"# {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
            f"writing in {base} ({filesystem_of(base)})"
        )
        log(f"# N = {n} jobs x 2 stages = {writes} atomic writes per run; best of {args.repeat}")
        modes = [
            ("pdtnb, durable=False", lambda root: asyncio.run(pipeline_run(root, n, False))),
            ("pdtnb, durable=True", lambda root: asyncio.run(pipeline_run(root, n, True))),
            ("floor: write+rename, sequential", lambda root: floor_run(root, n, False, 1)),
            ("floor: write+fsync+rename+fsync(dir), sequential", lambda root: floor_run(root, n, True, 1)),
            (f"floor: write+rename, {args.threads} threads", lambda root: floor_run(root, n, False, args.threads)),
            (
                f"floor: write+fsync+rename+fsync(dir), {args.threads} threads",
                lambda root: floor_run(root, n, True, args.threads),
            ),
        ]
        best: dict[str, float] = {}
        for rep in range(args.repeat):
            for name, run in modes:
                root = base / f"{rep}-{len(best)}-{name.split(',')[0].split(':')[0]}"
                root.mkdir()
                if name.startswith("pdtnb"):
                    seed(root, n)
                os.sync()  # start each figure with no dirty pages left by the one before
                elapsed = run(root)
                best[name] = min(best.get(name, elapsed), elapsed)
                log(f"#   run {rep + 1}: {name}: {elapsed:.3f} s")
                shutil.rmtree(root)
        width = max(map(len, best))
        print(f"{'figure':<{width}}  {'seconds':>8}  {'ms/write':>8}")
        for name, seconds in best.items():
            print(f"{name:<{width}}  {seconds:8.3f}  {1000 * seconds / writes:8.3f}")
        plain, durable = best["pdtnb, durable=False"], best["pdtnb, durable=True"]
        floor_seq = best["floor: write+fsync+rename+fsync(dir), sequential"]
        floor_par = best[f"floor: write+fsync+rename+fsync(dir), {args.threads} threads"]
        floor_plain = min(best["floor: write+rename, sequential"], best[f"floor: write+rename, {args.threads} threads"])
        ratios = [
            ("pdtnb durable=True / pdtnb durable=False", durable / plain),
            ("pdtnb durable=True / floor durable, sequential", durable / floor_seq),
            (f"pdtnb durable=True / floor durable, {args.threads} threads", durable / floor_par),
            ("pdtnb durable=False / floor write+rename (the faster)", plain / floor_plain),
        ]
        width = max(len(label) for label, _ in ratios)
        print()
        for label, ratio in ratios:
            print(f"{label:<{width}}  {ratio:6.2f}x")
        fsync_pdtnb = 1000 * (durable - plain) / writes
        fsync_floor = 1000 * (floor_seq - best["floor: write+rename, sequential"]) / writes
        print(f"what durability adds per write: pdtnb {fsync_pdtnb:.3f} ms, floor (sequential) {fsync_floor:.3f} ms")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
