"""Fixtures for the pipeline tests: thread pools that are always shut down, and small chains."""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

import pdtnb


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    """A thread pool shut down after the test, without waiting for stuck bodies."""
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pdtnb-test")
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that executor bodies wait on; always set at teardown so no thread is left hanging."""
    event = threading.Event()
    yield event
    event.set()


@dataclass
class Chain:
    """A plug chain of in-process tasks: stage i reads link ``s{i-1}`` (``inp`` for the first) and
    writes link ``s{i}`` with ``value + 1``."""

    pipeline: pdtnb.Pipeline
    inp: pdtnb.InProcessMetadataRepository
    outs: list[pdtnb.InProcessMetadataRepository]
    dones: list[pdtnb.InProcessMetadataRepository]
    tasks: list[pdtnb.InProcessSyncTask]
    calls: Counter = field(default_factory=Counter)


def build_chain(n_stages: int, jobs: dict[str, int]) -> Chain:
    inp = pdtnb.InProcessMetadataRepository(dict(jobs))
    outs = [pdtnb.InProcessMetadataRepository() for _ in range(n_stages)]
    dones = [pdtnb.InProcessMetadataRepository() for _ in range(n_stages)]
    calls: Counter = Counter()
    tasks: list[pdtnb.InProcessSyncTask] = []
    for i in range(n_stages):
        src_name = "inp" if i == 0 else f"s{i - 1}"
        dst_name = f"s{i}"
        name = f"stage{i}"
        task = pdtnb.InProcessSyncTask(name, dones[i])
        task.link(dst_name, outs[i], is_output=True)
        if i == 0:
            task.link("inp", inp, is_input=True)
        else:
            task.plug(tasks[-1])
        # The body's parameters are the link names, given as keywords.
        task.func = _with_signature(_stage_body(calls, name, src_name, dst_name), ["job", src_name, dst_name])
        tasks.append(task)
    pipeline = pdtnb.Pipeline(tasks, pdtnb.Session())
    return Chain(pipeline, inp, outs, dones, tasks, calls)


def _stage_body(calls: Counter, name: str, src_name: str, dst_name: str):
    async def stage_body(job, **repos):
        calls[(name, job)] += 1
        await repos[dst_name].dump(job, await repos[src_name].info(job) + 1)

    return stage_body


def _with_signature(func, names: list[str]):
    """Give ``func(**kw)`` an explicit signature so the task binds each name to its link."""
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]

    async def wrapper(**kwargs):
        return await func(**kwargs)

    wrapper.__signature__ = inspect.Signature(params)
    return wrapper


@pytest.fixture
def make_chain():
    """Factory: ``make_chain(n_stages, {job: value})`` -> :class:`Chain`."""
    return build_chain
