"""Dask benchmark: pdtnb's overhead per job on a Dask LocalCluster, beside a ThreadPoolExecutor.

    .venv/bin/python bench/dask.py [--jobs 400] [--repeat 3] [--workers 2]

One invocation measures, side by side, the same N trivial bodies (``def body(job): pass``) run:

- **threads**: an ``ExecutorTask`` on a ``ThreadPoolExecutor(workers)``: pdtnb's own cost per job
  (launch, completion callback, reaping, the done record) with the cheapest executor;
- **pdtnb on Dask**: a ``DaskTask`` on ``LocalCluster(n_workers=workers, threads_per_worker=1,
  processes=True)``: the same pipeline, each body a Dask task in a worker process;
- **Dask alone**: ``client.submit`` of the same N bodies and ``client.gather`` of their (``None``) results (no pdtnb):
  what Dask itself costs per task on this machine, the floor for the row above.

Each figure is a whole ``pipeline.run`` (or submit-and-wait) divided by N, best of ``--repeat``,
after a warm-up that makes the workers import pdtnb. Every job's done record is checked to be a
success. The report gives microseconds per job and the ratios Dask/threads and pdtnb-on-Dask /
Dask-alone, then one JSON line.

(This file is named like the ``dask`` package: it takes its own directory off ``sys.path`` before
importing anything, and keeps its top level import-free, since Dask's spawned worker processes run
it again as ``__mp_main__``.)
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]


def body(job: str) -> None:
    return None


async def _pipeline_run(task, n: int) -> float:
    import time

    import pdtnb
    from pdtnb.record import read_record

    raw = pdtnb.InProcessMetadataRepository({str(i): i for i in range(n)})
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], pdtnb.Session()) as pipeline:
        started = time.perf_counter()
        summary = await pipeline.run(timeout=600)
        elapsed = time.perf_counter() - started
    done = task.done.data
    bad = [j for j in map(str, range(n)) if j not in done or not read_record(done[j]).succeeded]
    if bad or summary.succeeded != n:
        raise SystemExit(f"{task.name}: {len(bad)} jobs not recorded as successes (summary {summary})")
    return elapsed


def _threads(n: int, workers: int) -> float:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import pdtnb

    with ThreadPoolExecutor(workers) as pool:
        task = pdtnb.ExecutorTask("threads", pool, pdtnb.InProcessMetadataRepository(), func=body)
        return asyncio.run(_pipeline_run(task, n))


def _pdtnb_dask(client, n: int) -> float:
    import asyncio

    import pdtnb

    task = pdtnb.DaskTask("on_dask", client, pdtnb.InProcessMetadataRepository(), func=body)
    return asyncio.run(_pipeline_run(task, n))


def _dask_alone(client, n: int) -> float:
    import time

    started = time.perf_counter()
    futures = [client.submit(body, str(i), pure=False) for i in range(n)]
    client.gather(futures)  # waits for all (tiny results: None)
    elapsed = time.perf_counter() - started
    if any(f.status != "finished" for f in futures):
        raise SystemExit("Dask alone: some tasks did not finish")
    client.cancel(futures)
    return elapsed


def main() -> None:
    import argparse
    import json
    import os
    import platform

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n, workers = args.jobs, args.workers

    import dask
    import distributed

    print(
        f"pdtnb Dask benchmark: {n} trivial jobs, {workers} workers (processes, 1 thread each) "
        f"vs ThreadPoolExecutor({workers}); best of {args.repeat}",
        file=sys.stderr,
        flush=True,
    )
    cluster = distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(workers, timeout=60)
        _pdtnb_dask(client, 2 * workers)  # warm-up: the workers import pdtnb
        _threads(2 * workers, workers)
        best: dict[str, float] = {"threads": float("inf"), "pdtnb_dask": float("inf"), "dask_alone": float("inf")}
        for _ in range(args.repeat):  # interleaved, so that a busy moment hits all three alike
            best["threads"] = min(best["threads"], _threads(n, workers))
            best["pdtnb_dask"] = min(best["pdtnb_dask"], _pdtnb_dask(client, n))
            best["dask_alone"] = min(best["dask_alone"], _dask_alone(client, n))
    finally:
        client.close()
        cluster.close()

    per_job = {k: v / n * 1e6 for k, v in best.items()}
    rows = [
        ("threads (ExecutorTask, ThreadPoolExecutor)", per_job["threads"]),
        ("pdtnb on Dask (DaskTask, LocalCluster)", per_job["pdtnb_dask"]),
        ("Dask alone (client.submit + gather)", per_job["dask_alone"]),
    ]
    print(f"{'':45} {'us/job':>10} {'jobs/s':>10}")
    for label, us in rows:
        print(f"{label:45} {us:10.0f} {1e6 / us:10.0f}")
    ratio = per_job["pdtnb_dask"] / per_job["threads"]
    over_dask = per_job["pdtnb_dask"] / per_job["dask_alone"]
    print(
        f"pdtnb on Dask / pdtnb on threads: {ratio:.1f}x per job; "
        f"pdtnb on Dask / Dask alone: {over_dask:.2f}x "
        f"(pdtnb adds {per_job['pdtnb_dask'] - per_job['dask_alone']:.0f} us per job to Dask's own cost)"
    )
    print(
        json.dumps(
            {
                "jobs": n,
                "workers": workers,
                "repeat": args.repeat,
                "us_per_job": {k: round(v, 1) for k, v in per_job.items()},
                "ratio_dask_over_threads": round(ratio, 2),
                "ratio_pdtnb_dask_over_dask_alone": round(over_dask, 2),
                "distributed": distributed.__version__,
                "dask": dask.__version__,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
