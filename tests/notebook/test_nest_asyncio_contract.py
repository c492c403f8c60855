"""pdtnb's notebook layer calls one private function of a dependency: ``nest_asyncio._patch_loop``
(the loop patch alone, without the global patches of ``nest_asyncio.apply``). pyproject.toml pins
nest_asyncio below its next minor release; this test fails loudly, naming what changed, if a
release removes the function, changes its signature, or stops making a loop re-entrant."""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import inspect

import pytest

nest_asyncio = pytest.importorskip("nest_asyncio", reason="the notebook extra is not installed")

from pdtnb.notebook.kernel_loop import is_reentrant, make_reentrant  # noqa: E402


def test_the_private_function_is_there_with_the_signature_we_call():
    version = importlib.metadata.version("nest_asyncio")
    patch = getattr(nest_asyncio, "_patch_loop", None)
    assert callable(patch), f"nest_asyncio {version} has no _patch_loop: pdtnb/notebook/kernel_loop.py must change"
    assert list(inspect.signature(patch).parameters) == ["loop"], (
        f"nest_asyncio {version} changed _patch_loop's signature to {inspect.signature(patch)}"
    )


def test_a_loop_made_reentrant_runs_a_coroutine_to_the_end_from_inside_itself():
    loop = asyncio.new_event_loop()
    try:
        assert not is_reentrant(loop)
        make_reentrant(loop)
        assert is_reentrant(loop)
        make_reentrant(loop)  # twice is once

        async def inner() -> int:
            await asyncio.sleep(0.01)
            return 42

        async def outer() -> int:
            # What a synchronous pdtnb call does inside the running kernel loop.
            return loop.run_until_complete(inner())

        assert loop.run_until_complete(outer()) == 42
        assert type(loop).__name__.startswith("PdtnbReentrant"), "only this loop's own class is patched"
        assert not is_reentrant(asyncio.new_event_loop())
    finally:
        loop.close()


def test_a_closed_loop_is_forgotten():
    loop = asyncio.new_event_loop()
    make_reentrant(loop)
    loop.close()
    del loop
    gc.collect()
    fresh = asyncio.new_event_loop()
    try:
        assert not is_reentrant(fresh), "a new loop is never taken for a patched one (an id reused)"
    finally:
        fresh.close()
