"""S3 benchmark: streamed copy memory, listing time, and a 2-stage pipeline against a moto server.

    .venv/bin/python bench/s3.py [--parts copy,list,pipeline] [--size-mb 200] [--keys 10000]
                                 [--sizes 300] [--repeat K] [--skip-pydatatask] [--profile]

Starts ``moto_server`` on 127.0.0.1 (or uses ``PDTNB_TEST_S3_ENDPOINT`` with
``PDTNB_TEST_S3_ACCESS_KEY``/``PDTNB_TEST_S3_SECRET_KEY``), uploads a blob of ``--size-mb`` MB and
``--keys`` small objects, then measures in fresh subprocesses (``python bench/s3.py worker ...``):

* copy: ``async_copyfile`` from ``S3BucketRepository.open(job, 'rb')`` to ``FileRepository.open(job,
  'wb')``; memory is the peak RSS during the copy minus RSS just before it (``ru_maxrss``, whose mark
  is reset by writing ``5`` to ``/proc/self/clear_refs`` just before the copy). Target: < 64 MB.
* list: ``await repo.job_ids()`` over ``--keys`` objects (paginated, 1,000 per page).
* pipeline (issue 14): bench/files.py's 2-stage chain with ``S3BucketRepository`` inputs and
  outputs and ``YamlMetadataS3Repository`` done records, N jobs (``--sizes``), for pdtnb, pydatatask
  0.4.7 (in bench/.venv-pydatatask, as bench/core.py runs it) and a floor of plain aiobotocore doing
  the same GET/PUT/PUT per job and stage with 64 requests in flight. Each in a fresh bucket and fresh
  processes (bench/_s3_worker.py): the update loop ``while await pipeline.update(): pass`` (every
  object checked afterwards), then the status of the finished bucket in a new process (open +
  status; counts checked). Targets: pdtnb's loop <= 1.1x the floor's; its status <= pydatatask's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests" / "storage"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from s3server import s3_client, s3_endpoint  # noqa: E402

sys.path.insert(0, str(BENCH))
from core import log, pdtnb_python, pydatatask_python  # noqa: E402
from files import git_commit, print_profile, run_json  # noqa: E402

MB = 1000 * 1000
MEMORY_TARGET_MB = 64


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the ru_maxrss mark to the current RSS (Linux); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


async def _worker(args: list[str]) -> dict:
    from pdtnb.repository import FileRepository
    from pdtnb.repository.s3 import S3BucketRepository
    from pdtnb.streams import async_copyfile

    what, url, access, secret, bucket = args[:5]
    async with s3_client(url, access, secret) as client:
        repo = S3BucketRepository(lambda: client, bucket, "bench/", ".bin")
        if what == "copy":
            target = FileRepository(args[5], ".bin")
            await repo.validate()
            await target.validate()
            reset = _reset_peak()
            before = _rss_kib()
            start = time.perf_counter()
            async with await repo.open("blob", "rb") as src, await target.open("blob", "wb") as dst:
                await async_copyfile(src, dst)
            elapsed = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            size = (Path(args[5]) / "blob.bin").stat().st_size
            return {
                "seconds": elapsed,
                "bytes": size,
                "peak_increase_mb": (peak - before) * 1024 / MB,
                "peak_reset": reset,
            }
        if what == "list":
            start = time.perf_counter()
            ids = await repo.job_ids()
            elapsed = time.perf_counter() - start
            return {"seconds": elapsed, "count": len(ids)}
    raise SystemExit(f"unknown worker mode {what!r}")


async def _prepare(endpoint, bucket: str, size_mb: int, keys: int) -> None:
    from pdtnb.repository.s3 import S3BucketRepository

    async with s3_client(endpoint.url, endpoint.access_key, endpoint.secret_key) as client:
        await client.create_bucket(Bucket=bucket)
        repo = S3BucketRepository(lambda: client, bucket, "bench/", ".bin")
        block = os.urandom(MB)
        async with await repo.open("blob", "wb") as fp:
            for _ in range(size_mb):
                await fp.write(block)
        sem = asyncio.Semaphore(64)

        async def put(i: int) -> None:
            async with sem:
                await client.put_object(Bucket=bucket, Key=f"bench/k{i:06d}.bin", Body=b"x")

        await asyncio.gather(*(put(i) for i in range(keys)))


def _run_worker(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "worker", *args], capture_output=True, text=True, check=False, timeout=1200
    )
    if out.returncode != 0:
        raise SystemExit(f"worker {args[0]} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the pipeline part (issue 14) -------------------------------------------------------------

S3_WORKER = BENCH / "_s3_worker.py"
LOOP_TARGET_FLOOR = 1.1  # pdtnb's loop / the floor's, at most
STATUS_TARGET_PDT = 1.0  # pdtnb's status / pydatatask's, at most


def _s3_run(python: str, args: list[str], what: str, endpoint) -> dict:
    # the worker inherits the credentials through the environment
    os.environ["PDTNB_BENCH_S3_ACCESS_KEY"] = endpoint.access_key
    os.environ["PDTNB_BENCH_S3_SECRET_KEY"] = endpoint.secret_key
    return run_json([python, str(S3_WORKER), *args], what)


def pipeline_part(
    endpoint, pythons: dict[str, str], sizes: list[int], repeat: int, profile: bool, tmp: str
) -> list[str]:
    url = endpoint.url
    names = [*pythons, "floor"]
    loops: dict[tuple[str, int], dict] = {}
    runs: dict[tuple[str, int], list[float]] = {}
    stats: dict[tuple[str, str, int], dict] = {}

    def keep(table: dict, key: tuple, rec: dict) -> None:
        if key not in table or rec["seconds"] < table[key]["seconds"]:
            table[key] = rec

    for n in sizes:
        for rep in range(repeat):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:  # a rotating order
                python = pythons.get(name, pythons["pdtnb"])
                bucket = f"pdtnb-bench-{name}-{uuid.uuid4().hex[:8]}"
                _s3_run(pythons["pdtnb"], ["seed", str(n), url, bucket], "seed", endpoint)
                if name == "floor":
                    rec = _s3_run(python, ["floor", str(n), url, bucket], f"floor loop N={n}", endpoint)
                else:
                    rec = _s3_run(python, ["loop", name, str(n), url, bucket], f"{name} loop N={n}", endpoint)
                log(
                    f"  loop   {name:<10} N={n:<5} [{rep + 1}/{repeat}] {rec['seconds']:7.3f} s "
                    f"(CPU {rec['cpu_seconds']:.3f} s)"
                )
                keep(loops, (name, n), rec)
                runs.setdefault((name, n), []).append(rec["seconds"])
                # status of the finished bucket, each in a new process
                if name == "pdtnb":
                    states = ["after the loop", "no side objects", "later"]
                elif name == "pydatatask":
                    states = ["after the loop"]
                else:
                    states = ["list + read every record"]
                for state in states:
                    if state == "no side objects":
                        _s3_run(pythons["pdtnb"], ["clean", url, bucket], "clean", endpoint)
                    if name == "floor":
                        rec = _s3_run(python, ["floorstatus", str(n), url, bucket], "floor status", endpoint)
                        keep(
                            stats,
                            ("floor", "list only", n),
                            dict(rec, seconds=rec["open_seconds"] + rec["list_seconds"]),
                        )
                    else:
                        rec = _s3_run(python, ["status", name, str(n), url, bucket], f"{name} status", endpoint)
                    log(
                        f"  status {name:<10} N={n:<5} [{rep + 1}/{repeat}] {state}: {rec['seconds']:.3f} s "
                        f"(open {rec['open_seconds']:.3f} s)"
                    )
                    keep(stats, (name, state, n), rec)

    lines = []
    ratios = [o for o in names if o != "pdtnb"]
    header = f"{'N':>5}  {'figure':<50}" + "".join(f"{x:>11}" for x in names)
    header += "".join(f"{'pdtnb/' + o[:5]:>12}" for o in ratios)
    lines += [header, "-" * len(header)]
    for n in sizes:
        for i, (label, key) in enumerate(
            (("update loop, wall (s)", "seconds"), ("update loop, CPU (s)", "cpu_seconds"))
        ):
            vals = {x: loops[(x, n)][key] for x in names}
            line = f"{f'{n:,}' if i == 0 else '':>5}  {label:<50}" + "".join(f"{vals[x]:>11.3f}" for x in names)
            line += "".join(f"{vals['pdtnb'] / vals[o]:>12.3f}" for o in ratios)
            lines.append(line)
        theirs = stats.get(("pydatatask", "after the loop", n))
        floor_read = stats[("floor", "list + read every record", n)]
        floor_list = stats[("floor", "list only", n)]
        for state in ("after the loop", "no side objects", "later"):
            mine = stats[("pdtnb", state, n)]["seconds"]
            line = f"{'':>5}  {'status, open + status (s), pdtnb ' + state:<50}{mine:>11.3f}"
            line += f"{theirs['seconds']:>11.3f}" if theirs else ""
            line += f"{floor_read['seconds']:>11.3f}"
            line += f"{mine / theirs['seconds']:>12.3f}" if theirs else ""
            line += f"{mine / floor_read['seconds']:>12.3f}"
            lines.append(line)
        lines.append(
            f"{'':>5}  (status floor: list the 5 prefixes {floor_list['seconds']:.3f} s; list and read every "
            f"record, {2 * n} GETs, {floor_read['seconds']:.3f} s; both including the client's creation)"
        )
        if repeat > 1:
            for name in names:
                lines.append(
                    f"{'':>5}  {name} loop in each repetition (s): " + ", ".join(f"{x:.2f}" for x in runs[(name, n)])
                )
        lines.append("")
    lines.append("Targets for pdtnb (from the issue):")
    for n in sizes:
        ratio = loops[("pdtnb", n)]["seconds"] / loops[("floor", n)]["seconds"]
        lines.append(
            f"  N={n}: update loop <= {LOOP_TARGET_FLOOR:g}x the floor: {ratio:.3f}x -> "
            f"{'met' if ratio <= LOOP_TARGET_FLOOR else 'NOT MET'}"
        )
        theirs = stats.get(("pydatatask", "after the loop", n))
        if theirs:
            for state in ("after the loop", "no side objects", "later"):
                r = stats[("pdtnb", state, n)]["seconds"] / theirs["seconds"]
                lines.append(
                    f"  N={n}: status ({state}) <= pydatatask's: {r:.3f}x -> "
                    f"{'met' if r <= STATUS_TARGET_PDT else 'NOT MET'}"
                )
    if profile:
        n = max(sizes)
        for what in ("loop", "status"):
            bucket = f"pdtnb-bench-profile-{uuid.uuid4().hex[:8]}"
            _s3_run(pythons["pdtnb"], ["seed", str(n), url, bucket], "seed", endpoint)
            out = str(Path(tmp) / f"s3-{what}.prof")
            if what == "loop":
                rec = _s3_run(pythons["pdtnb"], ["loop", "pdtnb", str(n), url, bucket, out], "profiled loop", endpoint)
            else:
                _s3_run(pythons["pdtnb"], ["loop", "pdtnb", str(n), url, bucket], "loop", endpoint)
                _s3_run(pythons["pdtnb"], ["clean", url, bucket], "clean", endpoint)
                rec = _s3_run(
                    pythons["pdtnb"], ["status", "pdtnb", str(n), url, bucket, out], "profiled status", endpoint
                )
            lines.append(f"(profile: pdtnb {what} at N={n} took {rec['seconds']:.3f} s under cProfile)")
            lines.append(f"PROFILE:{out}:pdtnb S3 {what}, N={n}" + (", no side objects" if what == "status" else ""))
    return lines


def copy_and_list(endpoint, opts) -> bool:
    bucket = f"pdtnb-bench-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        asyncio.run(_prepare(endpoint, bucket, opts.size_mb, opts.keys))
        print(
            f"endpoint {endpoint.url}; prepared {opts.size_mb} MB blob + {opts.keys} keys "
            f"in {time.perf_counter() - start:.1f}s"
        )
        creds = (endpoint.url, endpoint.access_key, endpoint.secret_key, bucket)
        copy = _run_worker("copy", *creds, tmp)
        listing = _run_worker("list", *creds)
    expected_count = opts.keys + 1  # the blob is a job too
    ok_mem = copy["peak_increase_mb"] < MEMORY_TARGET_MB
    print(
        f"copy {copy['bytes'] / MB:.0f} MB S3 -> FileRepository: {copy['seconds']:.2f}s "
        f"({copy['bytes'] / MB / copy['seconds']:.0f} MB/s), peak RSS increase {copy['peak_increase_mb']:.1f} MB "
        f"(target < {MEMORY_TARGET_MB} MB: {'met' if ok_mem else 'NOT met'}; peak reset: {copy['peak_reset']})"
    )
    print(
        f"list {listing['count']} keys: {listing['seconds']:.2f}s "
        f"({'ok' if listing['count'] == expected_count else f'WRONG COUNT, expected {expected_count}'})"
    )
    return ok_mem and listing["count"] == expected_count and copy["bytes"] == opts.size_mb * MB


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        print(json.dumps(asyncio.run(_worker(sys.argv[2:]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="copy,list,pipeline", help="which parts (default: all)")
    parser.add_argument("--size-mb", type=int, default=200, help="copy: the blob's size")
    parser.add_argument("--keys", type=int, default=10_000, help="list: the number of objects")
    parser.add_argument("--sizes", default="300", help="pipeline: comma-separated job counts N")
    parser.add_argument("--repeat", type=int, default=1, metavar="K", help="pipeline: best of K (default 1)")
    parser.add_argument("--skip-pydatatask", action="store_true", help="pipeline: pdtnb and the floor only")
    parser.add_argument(
        "--profile", action="store_true", help="pipeline: also print cProfile of pdtnb's loop and status"
    )
    opts = parser.parse_args()
    parts = {p.strip() for p in opts.parts.split(",") if p.strip()}
    if not parts or parts - {"copy", "list", "pipeline"}:
        parser.error("--parts takes copy, list and pipeline, comma-separated")
    try:
        sizes = [int(x) for x in opts.sizes.split(",") if x.strip()]
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    if not sizes or min(sizes) < 1 or opts.repeat < 1:
        parser.error("--sizes and --repeat must be positive")
    pythons = {"pdtnb": pdtnb_python()}
    if "pipeline" in parts and not opts.skip_pydatatask:
        pythons["pydatatask"] = pydatatask_python()
    ok = True
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    commit_start = git_commit()
    with s3_endpoint() as endpoint, tempfile.TemporaryDirectory() as tmp:
        if parts & {"copy", "list"}:
            ok = copy_and_list(endpoint, opts)
        if "pipeline" in parts:
            lines = pipeline_part(endpoint, pythons, sizes, opts.repeat, opts.profile, tmp)
            print()
            commit_end = git_commit()
            commit = (
                commit_start if commit_end == commit_start else f"{commit_start} at the start, {commit_end} at the end"
            )
            print(f"pdtnb S3 pipeline benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}; commit {commit}")
            print(
                f"endpoint {endpoint.url}{' (external)' if endpoint.external else ' (moto_server, started here)'}; "
                f"Python {platform.python_version()}, {os.cpu_count()} CPUs; best of {opts.repeat}; "
                f"load {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
            )
            print(
                "loop: `while await pipeline.update(): pass`, 2 stages, GET input / PUT output / PUT record per "
                "job and stage; the floor does those requests with plain aiobotocore, 64 in flight"
            )
            print(
                "status: a new process opens the pipeline and computes its status (pdtnb pipeline_status, "
                "pydatatask print_status); 'no side objects': after deleting the objects with hidden names "
                "pdtnb keeps (its outcome index, the lease); 'later': the next process after that. "
                "Every worker imports its library and aiobotocore before timing; open includes making the client"
            )
            print()
            for line in lines:
                if line.startswith("PROFILE:"):
                    _, path, title = line.split(":", 2)
                    print_profile(path, title)
                else:
                    print(line)
            print(f"\n({time.perf_counter() - started:.0f} s in all; every object and count was checked)")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
