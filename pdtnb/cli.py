"""The command-line administration interface: ``pdtnb.main(pipeline)``.

Subcommands and their coroutines keep pydatatask's names and signatures (``update``, ``run``,
``print_status``, ``print_trace``, ``list_data``, ``cat_data``, ``delete_data``, ``inject_data``,
``launch``, ``shell``), so a ported script's ``main.py --help`` looks the same. Errors a user can
cause print one line naming what is wrong and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

from . import admin
from .errors import PdtnbError
from .pipeline import Pipeline
from .status import pipeline_status, pipeline_trace

__all__ = [
    "main",
    "update",
    "run",
    "print_status",
    "print_trace",
    "list_data",
    "cat_data",
    "delete_data",
    "inject_data",
    "launch",
    "shell",
    "build_parser",
]

log = logging.getLogger("pdtnb.cli")


async def update(pipeline: Pipeline) -> None:
    """One round: the update phase, then the launch phase."""
    await pipeline.update()


async def run(pipeline: Pipeline, forever: bool, launch_once: bool, timeout: float | None) -> None:
    """Run rounds until the pipeline is quiet (or forever); see :meth:`Pipeline.run`."""
    summary = await pipeline.run(forever=forever, launch_once=launch_once, timeout=timeout)
    print(
        f"# run: {summary.rounds} rounds, {summary.launched} launched, "
        f"{summary.failed_launches} failed to launch, {summary.elapsed:.3f} s",
        file=sys.stderr,
    )


async def print_status(pipeline: Pipeline, all_repos: bool, as_json: bool = False) -> None:
    """Print each task's links with their job counts (``--json``: counts, ready, live, done, failed)."""
    status = await pipeline_status(pipeline, all_repos)
    if as_json:
        print(status.to_json())
        return
    sys.stdout.write(status.to_text())
    sys.stdout.flush()
    for line in status.summary_lines():
        print(line, file=sys.stderr)


async def print_trace(pipeline: Pipeline, all_repos: bool, job: list[str], as_json: bool = False) -> None:
    """Print, for each task and link, which of the given jobs it holds."""
    trace = await pipeline_trace(pipeline, job, all_repos)
    if as_json:
        print(trace.to_json())
        return
    sys.stdout.write(trace.to_text())
    sys.stdout.flush()


async def list_data(pipeline: Pipeline, data: list[str]) -> None:
    """Print the jobs of ``TASK.LINK`` names or a set expression over them, one per line."""
    for job in await admin.evaluate_listing(pipeline, " ".join(data)):
        print(job)


async def cat_data(pipeline: Pipeline, data: str, job: str) -> None:
    """Write a job's value in ``TASK.LINK`` to standard output (metadata as YAML)."""
    out = sys.stdout.buffer
    async for chunk in admin.read_value(pipeline, data, job):
        out.write(chunk)
    out.flush()


async def delete_data(pipeline: Pipeline, data: str, recursive: bool, job: list[str]) -> None:
    """Delete jobs from ``TASK.LINK`` or a task's repositories (``-r``: and everything downstream)."""
    for deleted_job, label in await admin.delete_jobs(pipeline, data, job, recursive):
        print(deleted_job, label)


async def inject_data(pipeline: Pipeline, data: str, job: str) -> None:
    """Store standard input as ``job``'s value in ``TASK.LINK`` (YAML for metadata), up to end of input."""
    loop = asyncio.get_running_loop()
    stdin = sys.stdin.buffer

    async def read(n: int) -> bytes:
        return await loop.run_in_executor(None, stdin.read1 if hasattr(stdin, "read1") else stdin.read, n)

    await admin.inject_value(pipeline, data, job, read)


async def launch(pipeline: Pipeline, task_name: str, job: str, sync: bool, meta: bool, force: bool) -> int:
    """Start a job by hand; without ``force`` it must be ready."""
    outcome = await admin.launch_job(pipeline, task_name, job, sync=sync, meta=meta, force=force)
    if outcome.state == "not_ready":
        print(f"error: {task_name}:{job} is not ready to launch; use --force to launch anyway", file=sys.stderr)
        return 1
    if outcome.state == "refused":
        print(f"error: {task_name}:{job} was refused by a resource quota", file=sys.stderr)
        return 1
    if isinstance(outcome.done, dict) and outcome.done.get("result") not in (None, "success"):
        print(f"error: {task_name}:{job} failed: {outcome.done.get('exception', outcome.done)}", file=sys.stderr)
        return 1
    return 0


def shell(pipeline: Pipeline) -> None:
    """An interactive shell with ``pipeline`` and ``pdtnb`` defined (IPython if installed)."""
    import pdtnb

    namespace = {"pipeline": pipeline, "pdtnb": pdtnb}
    banner = "pdtnb shell: `pipeline` is your pipeline; `await pipeline.open()` to use its repositories."
    try:
        from IPython import start_ipython
    except ImportError:
        import code

        code.interact(banner=banner + " (install ipython for top-level await)", local=namespace)
        return
    start_ipython(argv=["--no-banner"], user_ns=namespace, display_banner=False)


def build_parser(instrument: Callable[[Any], None] | None = None) -> argparse.ArgumentParser:
    """The argument parser of :func:`main` (exposed for tests and for export)."""
    parser = argparse.ArgumentParser(description="Administer this pdtnb pipeline.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level)")
    sub = parser.add_subparsers(dest="command", metavar="{update,run,status,trace,rm,ls,cat,inject,launch,shell}")
    sub.required = True

    p = sub.add_parser("update", help="Keep the pipeline in motion")
    p.set_defaults(func=update)

    p = sub.add_parser("run", help="Run update in a loop until everything is quiet")
    p.add_argument("--forever", action="store_true", help="Keep running when quiet, watching for new input")
    p.add_argument("--launch-once", action="store_true", help="Launch only in the first round, then only reap")
    p.add_argument("--timeout", type=float, default=None, help="Give up (exit 1) after this many seconds")
    p.set_defaults(func=run)

    p = sub.add_parser("status", help="View the pipeline status")
    p.add_argument("--all", "-a", dest="all_repos", action="store_true", help="Show internal repositories")
    p.add_argument("--json", dest="as_json", action="store_true", help="Print JSON for scripts")
    p.set_defaults(func=print_status)

    p = sub.add_parser("trace", help="Track a job's progress through the pipeline")
    p.add_argument("--all", "-a", dest="all_repos", action="store_true", help="Show internal repositories")
    p.add_argument("--json", dest="as_json", action="store_true", help="Print JSON for scripts")
    p.add_argument("job", nargs="+", help="Job to trace")
    p.set_defaults(func=print_trace)

    p = sub.add_parser("rm", help="Delete data from the pipeline")
    p.add_argument("--recursive", "-r", action="store_true", help="Delete dependant data too")
    p.add_argument("data", help="Repository (TASK.LINK) or task (TASK) to delete from")
    p.add_argument("job", nargs="+", help="Jobs to delete (__all__ for every job)")
    p.set_defaults(func=delete_data)

    p = sub.add_parser("ls", help="List jobs in a repository")
    p.add_argument("data", nargs="+", help="TASK.LINK names, or a set expression like 'a.out - b.done'")
    p.set_defaults(func=list_data)

    p = sub.add_parser("cat", help="Print data from a repository")
    p.add_argument("data", help="Repository (TASK.LINK)")
    p.add_argument("job", help="Job to print")
    p.set_defaults(func=cat_data)

    p = sub.add_parser("inject", help="Dump data into a repository")
    p.add_argument("data", help="Repository (TASK.LINK)")
    p.add_argument("job", help="Job to store standard input as")
    p.set_defaults(func=inject_data)

    p = sub.add_parser("launch", help="Manually start a task")
    p.add_argument("task_name", help="Task to launch")
    p.add_argument("job", help="Job to launch it on")
    p.add_argument("--force", "-f", action="store_true", help="Launch even if start is inhibited by data")
    p.add_argument("--sync", action="store_true", help="Run the task in-process, if possible")
    p.add_argument(
        "--meta", action=argparse.BooleanOptionalAction, default=True, help="Store metadata related to task completion"
    )
    p.set_defaults(func=launch)

    p = sub.add_parser("shell", help="Launch an interactive shell to interrogate the pipeline")
    p.set_defaults(func=shell)

    if instrument is not None:
        instrument(sub)
    return parser


def main(
    pipeline: Pipeline,
    instrument: Callable[[argparse._SubParsersAction], None] | None = None,
    argv: list[str] | None = None,
) -> int:
    """Parse the command line and administer ``pipeline``.

    ``instrument(subparsers)`` may add commands: give each ``set_defaults(func=...)``; a coroutine
    function runs inside the opened pipeline. Exits with status 1 on a handled error, 130 on
    Ctrl-C; returns 0 on success.
    """
    parser = build_parser(instrument)
    args = vars(parser.parse_args(argv))
    debug = args.pop("debug")
    verbose = args.pop("verbose")
    args.pop("command", None)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func = args.pop("func")
    try:
        if inspect.iscoroutinefunction(func):
            code = asyncio.run(_run_opened(pipeline, func, args))
        else:
            code = func(pipeline, **args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except (PdtnbError, OSError, TimeoutError, ValueError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    code = int(code or 0)
    if code:
        raise SystemExit(code)
    return 0


async def _run_opened(pipeline: Pipeline, func: Callable[..., Any], args: dict[str, Any]) -> Any:
    async with pipeline:
        return await func(pipeline, **args)
