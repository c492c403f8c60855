"""``python pipeline.py shell``: an interactive shell on the *open* pipeline.

The pipeline is opened before the first prompt and closed when the shell ends, and top-level
``await`` runs on the loop it was opened on, so ``await pipeline.update()``, ``await
pipeline.run()`` or ``print(await pdtnb.pipeline_status(pipeline))`` work as typed:

* with IPython installed: IPython with ``autoawait`` on its asyncio runner (whose one loop the
  pipeline is opened on), the pipeline's banner after IPython's own;
* otherwise: Python's own shell with top-level ``await``, as ``python -m asyncio`` does it: the
  event loop runs in the main thread, the prompt in another, and each statement that awaits runs
  on the loop. Ctrl-C cancels the statement being awaited, not the shell.

Acting methods (``update``, ``run``...) take the pipeline's lease for their own duration, as
anywhere else; the shell does not hold it in between. With IPython the loop only runs while a
statement runs: nothing of the pipeline's goes on between prompts.
"""

from __future__ import annotations

import ast
import asyncio
import code
import concurrent.futures
import inspect
import sys
import threading
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = ["interact", "banner"]


def banner(pipeline: Pipeline) -> str:
    """What the shell says first (after Python's or IPython's own banner)."""
    tasks = ", ".join(pipeline.tasks) or "none"
    return (
        f"pdtnb shell: `pipeline` (tasks: {tasks}) is open, `pdtnb` imported. Top-level await works:\n"
        "  await pipeline.update()    await pipeline.run()    print(await pdtnb.pipeline_status(pipeline))\n"
        "The pipeline is closed when you leave (Ctrl-D or exit())."
    )


def interact(pipeline: Pipeline, use_ipython: bool | None = None) -> None:
    """Open ``pipeline``, run a shell on it (IPython when ``use_ipython`` is not False and it is
    installed), close it when the shell ends."""
    import pdtnb

    namespace: dict[str, Any] = {"pipeline": pipeline, "pdtnb": pdtnb, "asyncio": asyncio, "__name__": "__console__"}
    if use_ipython is not False:
        try:
            from IPython.core.async_helpers import get_asyncio_loop  # noqa: F401  (IPython 8 or newer)
        except ImportError:
            if use_ipython:
                raise
        else:
            _ipython(pipeline, namespace)
            return
    _plain(pipeline, namespace)


def _ipython(pipeline: Pipeline, namespace: dict[str, Any]) -> None:
    from IPython import start_ipython
    from IPython.core.async_helpers import get_asyncio_loop
    from traitlets.config import Config

    loop = get_asyncio_loop()  # the one loop IPython's asyncio runner runs every await on
    loop.run_until_complete(pipeline.open())
    try:
        config = Config()
        config.InteractiveShell.autoawait = True
        config.InteractiveShell.loop_runner = "asyncio"
        config.TerminalInteractiveShell.banner2 = banner(pipeline) + "\n"
        namespace.pop("__name__")
        start_ipython(argv=[], user_ns=namespace, config=config)
    finally:
        get_asyncio_loop().run_until_complete(pipeline.close())


class _AsyncConsole(code.InteractiveConsole):
    """Python's interactive console, with top-level ``await`` run on ``loop`` (in another thread)."""

    def __init__(self, namespace: dict[str, Any], loop: asyncio.AbstractEventLoop):
        super().__init__(namespace)
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.loop = loop
        self.running: concurrent.futures.Future[Any] | None = None

    def runcode(self, code_object: types.CodeType) -> None:
        func = types.FunctionType(code_object, self.locals)
        try:
            result = func()
            if not inspect.iscoroutine(result):
                return
            self.running = asyncio.run_coroutine_threadsafe(result, self.loop)
            try:
                self.running.result()
            finally:
                self.running = None
        except SystemExit:
            raise
        except (KeyboardInterrupt, concurrent.futures.CancelledError):
            self.write("\nKeyboardInterrupt\n")
        except BaseException:
            self.showtraceback()


def _plain(pipeline: Pipeline, namespace: dict[str, Any]) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(pipeline.open())
        console = _AsyncConsole(namespace, loop)
        try:
            import readline  # noqa: F401  (line editing and history, where available)
        except ImportError:
            pass

        def prompt() -> None:
            try:
                console.interact(
                    banner=f"Python {sys.version} on {sys.platform}\n{banner(pipeline)}",
                    exitmsg="closing the pipeline",
                )
            except SystemExit:
                pass
            finally:
                loop.call_soon_threadsafe(loop.stop)

        thread = threading.Thread(target=prompt, name="pdtnb-shell", daemon=True)
        thread.start()
        while True:
            try:
                loop.run_forever()
            except KeyboardInterrupt:
                running = console.running
                if running is not None and not running.done():
                    running.cancel()  # the awaited statement, not the shell
                continue
            break
    finally:
        try:
            loop.run_until_complete(pipeline.close())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
