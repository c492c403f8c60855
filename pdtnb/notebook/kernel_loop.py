"""Running pipeline coroutines on the kernel's own event loop, from any context.

ipykernel executes cells as coroutines on its asyncio loop, so a pipeline opened from a cell
lives on that loop: its clients, connections and background tasks belong to it. Work for the
pipeline must therefore run on that loop, whoever asks for it:

* a cell: ``await`` it (top-level await needs no patching; the ``%pdt`` magics are rewritten into
  awaits when they stand alone on a line, see :mod:`pdtnb.notebook.transform`);
* sync code on the loop's thread while the loop runs (a magic inside a function, a sync API):
  the loop must be re-entrant; :func:`run_sync` applies nest_asyncio to that one loop, the first
  time it is needed, and never otherwise;
* another thread (ipykernel 7 can deliver widget messages on a comm subshell thread): hand the
  coroutine over with :func:`asyncio.run_coroutine_threadsafe`.

:func:`run_sync` picks the right one, and either completes the coroutine or raises: it never
hands back an un-awaited coroutine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["run_sync", "submit", "is_reentrant", "make_reentrant"]

log = logging.getLogger("pdtnb.notebook")
T = TypeVar("T")

#: The loops made re-entrant (weakly held: a closed loop is forgotten, and its id never mistaken
#: for a new loop's).
_patched: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def is_reentrant(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether :func:`make_reentrant` was applied to ``loop``."""
    return loop in _patched


def make_reentrant(loop: asyncio.AbstractEventLoop) -> None:
    """Let ``loop.run_until_complete`` be called while ``loop`` runs, once, for this loop only.

    ``nest_asyncio.apply`` patches asyncio process-wide (``asyncio.run``, pure-Python tasks and
    futures, the event loop class of every loop). pdtnb needs none of that: it gives this one
    loop a class of its own and applies nest_asyncio's loop patch to that class, so other loops
    (executor threads, ``asyncio.run`` elsewhere) and asyncio itself are untouched. The patched
    ``_run_once`` steps aside the running task around each callback, which is what lets a task
    run while another (the cell's) is suspended in a nested ``run_until_complete``.
    """
    if loop in _patched:
        return
    try:
        import nest_asyncio
    except ImportError as e:  # pragma: no cover - the notebook extra installs it
        raise RuntimeError(
            "finishing pdtnb work synchronously inside the running kernel loop needs nest_asyncio "
            "(pip install 'pdtnb[notebook]'), or use `await` in the cell instead"
        ) from e
    if not isinstance(loop, asyncio.BaseEventLoop):
        raise RuntimeError(f"cannot make {type(loop).__name__} re-entrant; use `await` in the cell instead")
    base = type(loop)
    loop.__class__ = type(f"PdtnbReentrant{base.__name__}", (base,), {"__module__": __name__})
    nest_asyncio._patch_loop(loop)  # the loop patch alone, applied to this loop's own class
    _patched.add(loop)
    log.debug("made loop %r re-entrant with nest_asyncio's loop patch", loop)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def run_sync(
    coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop | None = None, timeout: float | None = None
) -> T:
    """Run ``coro`` to completion on ``loop`` (default: the running loop) and return its result.

    Raises whatever the coroutine raises; a KeyboardInterrupt while waiting cancels it.
    """
    here = _running_loop()
    if loop is None:
        loop = here
    if loop is None:
        return asyncio.run(coro) if timeout is None else asyncio.run(asyncio.wait_for(coro, timeout))
    if loop.is_closed():
        coro.close()
        raise RuntimeError("the pipeline's event loop is closed: open the pipeline again")
    if here is loop or (here is None and _loop_thread(loop) == threading.get_ident()):
        if loop.is_running():
            make_reentrant(loop)
        task = asyncio.ensure_future(coro if timeout is None else asyncio.wait_for(coro, timeout), loop=loop)
        try:
            return loop.run_until_complete(task)
        except KeyboardInterrupt:
            task.cancel()
            raise
    if here is not None:
        coro.close()
        raise RuntimeError(
            "this code runs on a different event loop than the pipeline's; await the pipeline's "
            "coroutines on its own loop instead"
        )
    if not loop.is_running():
        return loop.run_until_complete(coro)
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except KeyboardInterrupt:
        future.cancel()
        raise


def submit(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> Future[T]:
    """Start ``coro`` on ``loop`` from any thread (including the loop's own); returns a
    concurrent Future. Used by widget callbacks, which must not block the kernel."""
    return asyncio.run_coroutine_threadsafe(coro, loop)


_loop_threads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()


def remember_loop_thread(loop: asyncio.AbstractEventLoop) -> None:
    """Record that ``loop`` runs on the current thread (called when a pipeline opens on it)."""
    _loop_threads[loop] = threading.get_ident()


def _loop_thread(loop: asyncio.AbstractEventLoop) -> int | None:
    return _loop_threads.get(loop)
