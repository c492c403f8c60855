"""Task bodies of the pipeline files in this directory (named ``decl_bodies:NAME`` there).

They keep what a test asserts besides the repositories' contents in module state (``calls``,
``order``), which each test clears with :func:`reset` first.
"""

from __future__ import annotations

import threading
from typing import Any

#: Attempts per (task, job) of the retried bodies.
calls: dict[tuple[str, str], int] = {}
#: (task, job) in the order the bodies of the prioritized tasks ran.
order: list[tuple[str, str]] = []


def reset() -> None:
    calls.clear()
    order.clear()


class Flaky(Exception):
    """A failure a retry policy names by import path (``decl_bodies:Flaky``)."""


# ---- links.yaml ------------------------------------------------------------------------------


async def double(job: str, numbers: Any, doubled: Any, seen: Any) -> None:
    await doubled.dump(job, 2 * await numbers.info(job))
    await seen.dump(job, "seen by double")


async def square(job: str, numbers: Any, squares: Any) -> None:
    await squares.dump(job, (await numbers.info(job)) ** 2)


async def report(job: str, doubled: Any, reports: Any) -> None:
    await reports.dump(job, f"{job}: {await doubled.info(job)}")


async def negate(job: str, source: Any, negated: Any) -> None:
    await negated.dump(job, -(await source.info(job)))


async def negate_square(job: str, squares: Any, negated: Any) -> None:
    await negated.dump(job, -(await squares.info(job)))


# ---- runs.yaml -------------------------------------------------------------------------------


async def flaky(job: str, numbers: Any, results: Any) -> None:
    """a: ValueError, then Flaky, then success; b: TypeError, which the policy does not name."""
    attempt = calls[("flaky", job)] = calls.get(("flaky", job), 0) + 1
    if job == "a" and attempt == 1:
        raise ValueError("a: the first attempt fails")
    if job == "a" and attempt == 2:
        raise Flaky("a: the second attempt fails")
    if job == "b":
        raise TypeError("b: not a failure the policy retries")
    await results.dump(job, attempt)


async def low(job: str, low_in: Any) -> None:
    order.append(("low", job))


async def high(job: str, high_in: Any) -> None:
    order.append(("high", job))


def in_thread(job: str, numbers: Any, threads: Any) -> None:
    """A blocking body (an executor task): records the thread it ran on."""
    import asyncio

    value = asyncio.run(numbers.info(job))
    asyncio.run(threads.dump(job, {"value": value, "thread": threading.current_thread().name}))
