"""S3 benchmark: streamed copy memory and listing time of S3BucketRepository against a moto server.

    .venv/bin/python bench/s3.py [--size-mb 200] [--keys 10000]

Starts ``moto_server`` on 127.0.0.1 (or uses ``PDTNB_TEST_S3_ENDPOINT`` with
``PDTNB_TEST_S3_ACCESS_KEY``/``PDTNB_TEST_S3_SECRET_KEY``), uploads a blob of ``--size-mb`` MB and
``--keys`` small objects, then measures in fresh subprocesses (``python bench/s3.py worker ...``):

* copy: ``async_copyfile`` from ``S3BucketRepository.open(job, 'rb')`` to ``FileRepository.open(job,
  'wb')``; memory is the peak RSS during the copy minus RSS just before it (``ru_maxrss``, whose mark
  is reset by writing ``5`` to ``/proc/self/clear_refs`` just before the copy). Target: < 64 MB.
* list: ``await repo.job_ids()`` over ``--keys`` objects (paginated, 1,000 per page).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        print(json.dumps(asyncio.run(_worker(sys.argv[2:]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--keys", type=int, default=10_000)
    opts = parser.parse_args()
    with s3_endpoint() as endpoint, tempfile.TemporaryDirectory() as tmp:
        bucket = f"pdtnb-bench-{uuid.uuid4().hex[:10]}"
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
    if not ok_mem or listing["count"] != expected_count or copy["bytes"] != opts.size_mb * MB:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
