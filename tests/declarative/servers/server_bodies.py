"""Task bodies and a resource factory for the pipeline files beside this module, which name them
``server_bodies:NAME`` (a file's directory is on its import path). Named apart from
``examples/books/bodies.py`` so that both can be loaded in one test process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


async def count_words(job: str, books: Any, reports: Any) -> None:
    """s3.yaml: a book (S3) to a one-line report (S3)."""
    async with await books.open(job, "r") as fp:
        text = await fp.read()
    async with await reports.open(job, "w") as fp:
        await fp.write(f"{job}: {len(text.split())} words, {len(text.splitlines())} lines\n")


async def summarize(job: str, orders: Any, totals: Any, audit: Any) -> None:
    """mongo.toml: an order's lines (MongoDB) to its total (MongoDB), noted in the audit
    collection (a ``python`` resource)."""
    order = await orders.info(job)
    total = sum(line["qty"] * line["price"] for line in order["lines"])
    await totals.dump(job, {"customer": order["customer"], "total": total, "lines": len(order["lines"])})
    await audit.dump(job, {"summarized_by": "summarize"})


async def describe_image(job: str, images: Any, described: Any) -> None:
    """docker.yaml: a tag in the registry (a job of DockerRepository) to what the repository says of it."""
    await described.dump(job, await images.info(job))


async def double(job: str, numbers: Any, doubled: Any) -> None:
    """kube-function.yaml: run inside the pod by ``python -m pdtnb -f ... launch fn JOB --sync``."""
    value = await numbers.info(job)
    print(f"fn: job {job} got {value}", flush=True)
    await doubled.dump(job, {"doubled": value["n"] * 2})


async def mongo_collection(url: str, database: str, name: str) -> AsyncIterator[Any]:
    """A ``python`` resource: a collection opened by the user's own factory."""
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(url, serverSelectionTimeoutMS=10_000)
    try:
        yield client[database][name]
    finally:
        await client.close()
