"""The floor of the core benchmark: the pipeline's work in the least plain asyncio Python.

Usage: python _core_floor.py N MEASUREMENT
    N            number of jobs
    MEASUREMENT  run | loop | status

Run by bench/core.py in a fresh process for every figure, as bench/_core_worker.py is for pdtnb
and pydatatask, and printing one JSON line with the same keys (``library`` is ``"floor"``). Only
the standard library: the memory helpers are _core_worker.py's, so the peak RSS is read the same
way (``ru_maxrss`` with its mark reset through ``/proc/self/clear_refs`` just before the call).

The work is that of the 3-task chain, without a library:

- an input store holding ``{str(i): i}``; each stage has an output store and a ``done`` dict.
  A store is a tiny class over a dict with an async ``info(job)`` and an async ``dump(job,
  value)``, as the in-memory repositories the pipeline uses have;
- in rounds, as the pipeline's update loop: at the start of a round every stage computes its ready
  set, the jobs of its input store not yet in its ``done`` dict (one set difference of the dicts'
  keys); a round in which no stage has a ready job ends the run. Then each stage, in turn, runs
  its ready jobs one after the other: ``await body(job, inp, out)``, the same body as the
  pipeline's tasks (``await out.dump(job, await inp.info(job) + 1)``), and records the job in its
  ``done`` dict. Stage k+1's input is stage k's output store, so round k runs stage k, and a
  run takes 4 rounds, as the pipeline's does;
- the record of a success is ``(start_ns, end_ns)``, two ``time.time_ns()`` readings in a tuple:
  the least a record can be (when the job ran; that it succeeded is its shape). A body that
  raises gets ``(start_ns, end_ns, repr(exc))`` instead. (pdtnb's in-memory ``done`` packs the two
  readings into one int in a pair with a marker: 100 bytes a record requested from the allocator,
  against 128 for this tuple and its two ints, by tracemalloc. The floor is the least code, not
  the least memory.)

What the floor does not do, and the pipeline does: the plug's gating on the upstream ``done``
(here a stage's input holds only what the upstream stage finished), concurrent launch workers,
kill and retry bookkeeping, the outcome index, the change logs of the repositories.

Measurements:

- ``run`` and ``loop`` are the same thing for the floor (there are no sleeps to leave out): the
  rounds above on a fresh input, until a round finds nothing ready;
- ``status``, on the finished chain (rounds untimed first): each stage's listing sizes (input,
  output, done; ``len`` of the dicts) and its failed records (records whose result is not success,
  counted over the ``done`` dict's values).

Every measurement checks its result and exits non-zero if it is wrong: every stage's output and
``done`` hold N jobs, every record is a success, and the last output holds ``input + 3``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import platform
import sys
import time
from typing import Any

from _core_worker import _peak_rss_kib, _reset_peak_rss, _rss_kib

STAGES = 3
MEASUREMENTS = ("run", "loop", "status")


class Store:
    """A dict with the two async calls the body makes."""

    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any] | None = None):
        self.data = {} if data is None else data

    async def info(self, job: str) -> Any:
        return self.data[job]

    async def dump(self, job: str, value: Any) -> None:
        self.data[job] = value


async def body(job: str, inp: Store, out: Store) -> None:
    await out.dump(job, await inp.info(job) + 1)


def build(n: int) -> tuple[Store, list[tuple[Store, Store, dict[str, tuple]]]]:
    """The input store and the stages, each ``(input store, output store, done dict)``."""
    inp = Store({str(i): i for i in range(n)})
    stages = []
    upstream = inp
    for _ in range(STAGES):
        out = Store()
        stages.append((upstream, out, {}))
        upstream = out
    return inp, stages


async def run_rounds(stages: list[tuple[Store, Store, dict[str, tuple]]]) -> int:
    """Rounds until one finds nothing ready; returns how many rounds that took."""
    time_ns = time.time_ns
    rounds = 0
    while True:
        rounds += 1
        ready = [inp.data.keys() - done.keys() for inp, _, done in stages]
        if not any(ready):
            return rounds
        for (inp, out, done), jobs in zip(stages, ready):
            for job in jobs:
                start = time_ns()
                try:
                    await body(job, inp, out)
                except Exception as e:
                    done[job] = (start, time_ns(), repr(e))
                else:
                    done[job] = (start, time_ns())


async def status(stages: list[tuple[Store, Store, dict[str, tuple]]]) -> list[tuple[int, int, int, int]]:
    """Per stage: (input listed, output listed, done listed, failed records)."""
    return [
        (len(inp.data), len(out.data), len(done), sum(1 for rec in done.values() if len(rec) != 2))
        for inp, out, done in stages
    ]


def verify(n: int, inp: Store, stages: list[tuple[Store, Store, dict[str, tuple]]]) -> None:
    problems = []
    if len(inp.data) != n:
        problems.append(f"the input holds {len(inp.data)} jobs, not {n}")
    for k, (_, out, done) in enumerate(stages, start=1):
        if len(out.data) != n:
            problems.append(f"stage {k}'s output holds {len(out.data)} jobs, not {n}")
        if len(done) != n:
            problems.append(f"stage {k}'s done holds {len(done)} jobs, not {n}")
        failed = [j for j, rec in done.items() if len(rec) != 2]
        if failed:
            problems.append(f"stage {k}: {len(failed)} jobs did not succeed, e.g. {failed[0]}: {done[failed[0]]!r}")
    final = stages[-1][1].data
    wrong = [j for j in map(str, range(n)) if final.get(j) != int(j) + STAGES]
    if wrong:
        j = wrong[0]
        problems.append(f"{len(wrong)} final values are not input+{STAGES}, e.g. job {j}: {final.get(j)!r}")
    if problems:
        sys.exit("CORRECTNESS FAILURE: " + "; ".join(problems))


async def measure(n: int, measurement: str) -> dict[str, Any]:
    inp, stages = build(n)
    result: dict[str, Any] = {"library": "floor", "version": "stdlib", "n": n, "measurement": measurement}
    if measurement == "status":
        result["rounds_to_finish"] = await run_rounds(stages)
        verify(n, inp, stages)

    gc.collect()
    result["peak_reset"] = _reset_peak_rss()
    rss_before = _peak_rss_kib() if result["peak_reset"] else _rss_kib()
    t0 = time.perf_counter()
    if measurement == "status":
        counts = await status(stages)
    else:
        result["rounds"] = await run_rounds(stages)
    seconds = time.perf_counter() - t0
    peak = _peak_rss_kib()

    if measurement == "status":
        if counts != [(n, n, n, 0)] * STAGES:
            sys.exit(f"STATUS FAILURE: expected {(n, n, n, 0)} for every stage, got {counts}")
    else:
        verify(n, inp, stages)

    result["python"] = platform.python_version()
    result["seconds"] = seconds
    result["rss_before_kib"] = rss_before
    result["peak_rss_kib"] = peak
    result["mem_kib"] = max(0, peak - rss_before)
    return result


def main(argv: list[str]) -> None:
    if len(argv) != 2 or not argv[0].isdigit() or argv[1] not in MEASUREMENTS:
        sys.exit(f"usage: {sys.argv[0]} N {'|'.join(MEASUREMENTS)}")
    result = asyncio.run(measure(int(argv[0]), argv[1]))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
