"""One measurement of the S3 pipeline benchmark, in a fresh process; run by bench/s3.py.

Usage:
    python _s3_worker.py seed    N URL BUCKET                 create BUCKET, PUT N inputs under inp/
    python _s3_worker.py loop    LIBRARY N URL BUCKET [PROFILE_OUT]
    python _s3_worker.py status  LIBRARY N URL BUCKET [PROFILE_OUT]
    python _s3_worker.py floor   N URL BUCKET                 the loop's requests, plain aiobotocore
    python _s3_worker.py floorstatus N URL BUCKET             list + read every record, plain aiobotocore
    python _s3_worker.py clean   URL BUCKET                   delete the objects with hidden names

The workload is bench/_files_worker.py's 2-stage chain on S3: inputs ``inp/JOB``, outputs
``out1/JOB`` and ``out2/JOB`` (S3BucketRepository), done records ``done1/JOB.yaml`` and
``done2/JOB.yaml`` (YamlMetadataS3Repository). ``loop`` times ``while await pipeline.update():
pass`` and then checks every object; ``status`` times opening the pipeline and its status (pdtnb
``pipeline_status``, pydatatask ``print_status``) and checks the counts. Each prints one JSON line.

Runs under both libraries' interpreters: imports neither at module level; otherwise the standard
library, PyYAML and aiobotocore (both venvs have them). Credentials: PDTNB_BENCH_S3_ACCESS_KEY /
PDTNB_BENCH_S3_SECRET_KEY (default ``testing``, what moto accepts).
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
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import yaml
from _files_worker import STAGES, SUFFIXES, body1, body2, build_chain, input_bytes, job_name

#: Requests in flight: the floor's semaphore, and every client's connection pool.
IN_FLIGHT = 64
PREFIXES = ("inp/", "out1/", "out2/", "done1/", "done2/")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@contextlib.asynccontextmanager
async def s3_client(url: str) -> AsyncIterator[Any]:
    """The one client configuration of every library and the floor: path addressing, a pool of
    IN_FLIGHT connections, one attempt per request."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"},
        max_pool_connections=IN_FLIGHT,
    )
    async with get_session().create_client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=os.environ.get("PDTNB_BENCH_S3_ACCESS_KEY", "testing"),
        aws_secret_access_key=os.environ.get("PDTNB_BENCH_S3_SECRET_KEY", "testing"),
        region_name="us-east-1",
        config=config,
    ) as client:
        yield client


def build_s3(lib: Any, url: str, bucket: str) -> Any:
    session = lib.Session()

    async def bench_s3():  # pydatatask names the resource after the function
        async with s3_client(url) as client:
            yield client

    client = session.resource(bench_s3)
    return build_chain(
        lib,
        session,
        lib.S3BucketRepository(client, bucket, "inp/"),
        [lib.S3BucketRepository(client, bucket, f"out{k + 1}/") for k in range(STAGES)],
        [lib.YamlMetadataS3Repository(client, bucket, f"done{k + 1}/") for k in range(STAGES)],
        [body1, body2],
    )


async def gather_limited(coros: list[Any], limit: int = IN_FLIGHT) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with sem:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def get_bytes(client: Any, bucket: str, key: str) -> bytes:
    response = await client.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        return await body.read()


async def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", ())]
    return keys


def visible(keys: list[str], prefix: str) -> list[str]:
    """The keys that are jobs: not hidden (pdtnb keeps side objects under names starting '.')."""
    return [k for k in keys if not k[len(prefix) :].startswith(".")]


# ---- modes -----------------------------------------------------------------------------------


async def seed(n: int, url: str, bucket: str) -> dict[str, Any]:
    async with s3_client(url) as client:
        await client.create_bucket(Bucket=bucket)
        await gather_limited(
            [client.put_object(Bucket=bucket, Key=f"inp/{job_name(i)}", Body=input_bytes(i)) for i in range(n)]
        )
    return {"seeded": n}


async def verify(client: Any, n: int, bucket: str) -> None:
    """Exit loudly unless both stages' outputs are right and every record is a success."""
    for prefix in PREFIXES:
        keys = visible(await list_keys(client, bucket, prefix), prefix)
        if len(keys) != n:
            sys.exit(f"CORRECTNESS FAILURE: {prefix} holds {len(keys)} objects, not {n}")
    jobs = [job_name(i) for i in range(n)]
    for k in range(STAGES):
        outs = await gather_limited([get_bytes(client, bucket, f"out{k + 1}/{j}") for j in jobs])
        recs = await gather_limited([get_bytes(client, bucket, f"done{k + 1}/{j}.yaml") for j in jobs])
        for i, (out, rec) in enumerate(zip(outs, recs)):
            expected = input_bytes(i) + b"".join(SUFFIXES[: k + 1])
            if out != expected:
                sys.exit(f"CORRECTNESS FAILURE: out{k + 1}/{job_name(i)} holds ...{out[-20:]!r}")
            value = yaml.load(rec, Loader=_Loader)
            if not (isinstance(value, dict) and value.get("result") == "success"):
                sys.exit(f"CORRECTNESS FAILURE: done{k + 1}/{job_name(i)}.yaml is {value!r}")


def _profiler(profile_out: str | None) -> Any:
    if not profile_out:
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def import_all(lib_name: str | None) -> Any:
    """Import the library and the S3 client's modules before anything is timed: pydatatask imports
    aiobotocore with itself, pdtnb only when a client is made, and the floor inside the timing."""
    importlib.import_module("aiobotocore.config")
    importlib.import_module("aiobotocore.session")
    importlib.import_module("botocore.exceptions")

    return importlib.import_module(lib_name) if lib_name else None


async def loop(lib_name: str, n: int, url: str, bucket: str, profile_out: str | None) -> dict[str, Any]:
    lib = import_all(lib_name)
    pipeline = build_s3(lib, url, bucket)
    await pipeline.open()
    try:
        gc.collect()
        profiler = _profiler(profile_out)
        cpu0, t0 = time.process_time(), time.perf_counter()
        rounds = 1
        while await pipeline.update():
            rounds += 1
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_out)
    finally:
        await pipeline.close()
    async with s3_client(url) as client:
        await verify(client, n, bucket)
    return {
        "library": lib_name,
        "version": lib.__version__,
        "n": n,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rounds": rounds,
    }


async def status(lib_name: str, n: int, url: str, bucket: str, profile_out: str | None) -> dict[str, Any]:
    lib = import_all(lib_name)
    cli = lib if lib_name == "pdtnb" else importlib.import_module("pydatatask.main")
    pipeline = build_s3(lib, url, bucket)
    gc.collect()
    profiler = _profiler(profile_out)
    t0 = time.perf_counter()
    await pipeline.open()
    t1 = time.perf_counter()
    try:
        if lib_name == "pdtnb":
            result = await lib.pipeline_status(pipeline)
        else:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                await cli.print_status(pipeline, False)
            result = buf.getvalue()
        t2 = time.perf_counter()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_out)
    finally:
        await pipeline.close()
    if lib_name == "pdtnb":
        counts = [{"done": t.done, "failed": t.failed, "ready": t.ready, "waiting": t.waiting} for t in result.tasks]
        if counts != [{"done": n, "failed": 0, "ready": 0, "waiting": 0}] * STAGES:
            sys.exit(f"STATUS FAILURE (pdtnb): {counts}, expected {n} done in every task")
    else:
        counts = {line.split()[0]: int(line.split()[1]) for line in result.splitlines() if "." in line}
        want = {name: n for name in ("t1.inp", "t1.done", "t1.out1", "t2.out1", "t2.done", "t2.out2")}
        if counts != want:
            sys.exit(f"STATUS FAILURE (pydatatask): {counts}, expected {want}")
    return {
        "library": lib_name,
        "version": lib.__version__,
        "n": n,
        "open_seconds": t1 - t0,
        "status_seconds": t2 - t1,
        "seconds": t2 - t0,
    }


async def floor(n: int, url: str, bucket: str) -> dict[str, Any]:
    """Per job and stage: GET the input, PUT the output, PUT the done record (pdtnb's success
    record, C-YAML); at most IN_FLIGHT requests at once; stage by stage, each stage's jobs found by
    listing its input prefix."""
    import_all(None)
    host = socket.gethostname()
    utc = timezone.utc
    async with s3_client(url) as client:
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def job_stage(src: str, k: int, job: str) -> None:
            start = datetime.now(utc)
            async with sem:
                data = await get_bytes(client, bucket, f"{src}{job}")
            async with sem:
                await client.put_object(Bucket=bucket, Key=f"out{k + 1}/{job}", Body=data + SUFFIXES[k])
            record = {
                "result": "success",
                "attempt": 1,
                "start_time": start,
                "end_time": datetime.now(utc),
                "host": host,
            }
            body = yaml.dump(record, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True).encode()
            async with sem:
                await client.put_object(Bucket=bucket, Key=f"done{k + 1}/{job}.yaml", Body=body)

        cpu0, t0 = time.process_time(), time.perf_counter()
        for k, src in enumerate(("inp/", "out1/")):
            jobs = [key[len(src) :] for key in visible(await list_keys(client, bucket, src), src)]
            await asyncio.gather(*(job_stage(src, k, job) for job in jobs))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        await verify(client, n, bucket)
    return {"library": "floor", "version": "-", "n": n, "seconds": seconds, "cpu_seconds": cpu, "rounds": STAGES}


async def floor_status(n: int, url: str, bucket: str) -> dict[str, Any]:
    """What an exact status needs at least: list the five prefixes, and (for the failed counts)
    GET and parse every done record, IN_FLIGHT at a time."""
    import_all(None)
    t0 = time.perf_counter()
    async with s3_client(url) as client:
        t1 = time.perf_counter()
        listings = await asyncio.gather(*(list_keys(client, bucket, p) for p in PREFIXES))
        t2 = time.perf_counter()
        failed = 0
        for prefix, keys in zip(PREFIXES, listings):
            if prefix.startswith("done"):
                bodies = await gather_limited([get_bytes(client, bucket, k) for k in visible(keys, prefix)])
                failed += sum(yaml.load(b, Loader=_Loader).get("result") != "success" for b in bodies)
        t3 = time.perf_counter()
    counts = [len(visible(keys, p)) for p, keys in zip(PREFIXES, listings)]
    if counts != [n] * len(PREFIXES) or failed:
        sys.exit(f"STATUS FAILURE (floor): counts {counts}, failed {failed}")
    return {
        "library": "floor",
        "version": "-",
        "n": n,
        "open_seconds": t1 - t0,
        "list_seconds": t2 - t1,
        "status_seconds": t3 - t1,
        "seconds": t3 - t0,
    }


async def clean(url: str, bucket: str) -> dict[str, Any]:
    removed = []
    async with s3_client(url) as client:
        for prefix in PREFIXES:
            for key in await list_keys(client, bucket, prefix):
                if key[len(prefix) :].startswith("."):
                    await client.delete_object(Bucket=bucket, Key=key)
                    removed.append(key)
    return {"removed": removed}


def main(argv: list[str]) -> None:
    libs = ("pdtnb", "pydatatask")
    if len(argv) >= 4 and argv[0] == "seed":
        coro = seed(int(argv[1]), argv[2], argv[3])
    elif len(argv) in (5, 6) and argv[0] in ("loop", "status") and argv[1] in libs:
        fn = loop if argv[0] == "loop" else status
        coro = fn(argv[1], int(argv[2]), argv[3], argv[4], argv[5] if len(argv) == 6 else None)
    elif len(argv) == 4 and argv[0] in ("floor", "floorstatus"):
        coro = (floor if argv[0] == "floor" else floor_status)(int(argv[1]), argv[2], argv[3])
    elif len(argv) == 3 and argv[0] == "clean":
        coro = clean(argv[1], argv[2])
    else:
        sys.exit(__doc__.split("\n\n")[1])
    print(json.dumps(asyncio.run(coro)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
