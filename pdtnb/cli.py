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
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from . import admin, failures
from .commands import CLI, add_command, commands_for, unknown_jobs
from .errors import PdtnbError
from .lease import LeaseHeldError
from .pipeline import Pipeline
from .record import is_failure_record, read_record
from .signals import Stopping, hard_exit
from .status import pipeline_status, pipeline_trace
from .task.kube import runs_its_own_pod_job

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
    "fuse",
    "print_failed",
    "print_show",
    "print_why",
    "print_retry",
    "print_kill",
    "build_parser",
    "FUNCTIONS",
]

log = logging.getLogger("pdtnb.cli")


async def update(pipeline: Pipeline) -> None:
    """One round: the update phase, then the launch phase."""
    await pipeline.update()


async def run(pipeline: Pipeline, forever: bool, launch_once: bool, timeout: float | None) -> int:
    """Run rounds until the pipeline is quiet (or forever); see :meth:`Pipeline.run`. Exits 1 when
    a job failed during the run (``failed`` lists them)."""
    summary = await pipeline.run(forever=forever, launch_once=launch_once, timeout=timeout)
    print(f"# run: {summary.describe()}", file=sys.stderr)
    if not summary.ok:
        print("# run: `failed` lists the failed jobs; `show TASK JOB` explains one", file=sys.stderr)
        return 1
    return 0


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
    unknown = await unknown_jobs(pipeline, job)
    if unknown and len(unknown) == len(job):
        raise PdtnbError(
            "no repository of this pipeline holds job " + ", ".join(repr(failures.short_id(j)) for j in unknown)
        )
    trace = await pipeline_trace(pipeline, job, all_repos)
    if as_json:
        print(trace.to_json())
        return
    sys.stdout.write(trace.to_text())
    sys.stdout.flush()
    reasons = await _failure_reasons(pipeline, trace)
    for line in trace.trace_lines(reasons):
        print(line, file=sys.stderr)
    for j in unknown:
        print(f"# {failures.short_id(j)}: in no repository of this pipeline", file=sys.stderr)


async def _failure_reasons(pipeline: Pipeline, trace: Any) -> dict[tuple[str, str], str]:
    """The one-line reason of every failed or retrying (task, job) of a trace."""
    reasons: dict[tuple[str, str], str] = {}
    for t in trace.tasks:
        done = pipeline.tasks[t.name].done_repository
        for job, state in (t.job_states or {}).items():
            if state in ("failed", "retrying") and done is not None:
                try:
                    reasons[(t.name, job)] = read_record(await done.info(job)).reason_line()
                except Exception as e:
                    reasons[(t.name, job)] = f"unreadable record: {e}"
    return reasons


async def print_failed(pipeline: Pipeline, task: list[str], as_json: bool = False) -> None:
    """Print one line per failed or retrying job: ``TASK JOB ATTEMPT REASON``."""
    found = await failures.failed_jobs(pipeline, task or None)
    if as_json:
        print(json.dumps([f.to_dict() for f in found], indent=2))
        return
    for f in found:
        print(f.line())
    print(f"# {len(found)} failed or retrying jobs", file=sys.stderr)


async def print_show(pipeline: Pipeline, task_name: str, job: str, as_json: bool = False) -> None:
    """Print everything about one job: state, record, traceback, output tails, attempts, inputs."""
    details = await failures.show_job(pipeline, task_name, job)
    if as_json:
        print(json.dumps(details.to_dict(), indent=2, default=str))
        return
    sys.stdout.write(details.to_text())


async def print_why(pipeline: Pipeline, task_name: str, job: str, as_json: bool = False) -> None:
    """Print why a job is or is not running."""
    explanation = await failures.why_job(pipeline, task_name, job)
    if as_json:
        print(json.dumps(explanation.to_dict(), indent=2))
        return
    sys.stdout.write(explanation.to_text())


async def print_retry(
    pipeline: Pipeline, task_name: str, job: list[str], failed: bool, recursive: bool, outdated: bool = False
) -> None:
    """Make failed jobs ready again (``--failed``: all of the task's; ``--outdated``: those done by
    code changed since; ``-r``: clear downstream too)."""
    result = await failures.retry_jobs(pipeline, task_name, job, failed=failed, outdated=outdated, recursive=recursive)
    sys.stdout.write(result.to_text())


async def print_kill(pipeline: Pipeline, task_name: str, job: str) -> None:
    """Stop a live job and record it as killed."""
    record = await failures.kill_job(pipeline, task_name, job)
    state = f" (recorded: {record.outcome})" if record is not None else ""
    print(f"{task_name} {failures.short_id(job)}: killed{state}")


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
    refusal = outcome.refusal()
    if refusal is not None:
        hint = "; use --force to launch anyway" if outcome.forcible else ""
        print(f"error: {refusal}{hint}", file=sys.stderr)
        return 1
    if outcome.done is not None and is_failure_record(outcome.done):
        print(f"error: {task_name}:{job} failed: {read_record(outcome.done).reason_line()}", file=sys.stderr)
        return 1
    return 0


def shell(pipeline: Pipeline) -> None:
    """An interactive shell with ``pipeline`` (opened first, closed on exit) and ``pdtnb`` defined,
    where top-level ``await`` runs on the pipeline's loop: IPython if installed, else Python's own
    shell made await-capable like ``python -m asyncio`` (see :mod:`pdtnb.shell`)."""
    from .shell import interact

    interact(pipeline)


async def fuse(pipeline: Pipeline, mountpoint: str, writable: bool = False, lease_wait: float | None = None) -> int:
    """Mount the pipeline's repositories at ``mountpoint`` until Ctrl-C or an unmount: a directory
    per task, in it a directory per link, in it a file per job (see :mod:`pdtnb.fuse`).
    ``writable`` stores what is written to a job's file when it is closed, as ``inject`` does, and
    holds the pipeline's lease while mounted (``lease_wait``: ``--wait``)."""
    from .fuse import serve

    return await serve(pipeline, mountpoint, writable=writable, wait=lease_wait)


#: The coroutine (or function) behind each command-line subcommand of :data:`pdtnb.commands.COMMANDS`.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "update": update,
    "run": run,
    "status": print_status,
    "trace": print_trace,
    "failed": print_failed,
    "show": print_show,
    "why": print_why,
    "retry": print_retry,
    "kill": print_kill,
    "rm": delete_data,
    "ls": list_data,
    "cat": cat_data,
    "inject": inject_data,
    "launch": launch,
    "shell": shell,
    "fuse": fuse,
}


def build_parser(
    instrument: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] | None = None,
    prog: str | None = None,
) -> argparse.ArgumentParser:
    """The argument parser of :func:`main` (exposed for tests and for export), built from the
    command table :data:`pdtnb.commands.COMMANDS`; ``instrument(subparsers)`` may add commands."""
    parser = argparse.ArgumentParser(prog=prog, description="Administer this pdtnb pipeline.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level)")
    names = [c.name for c in commands_for(CLI)]
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(names) + "}")
    sub.required = True
    for cmd in commands_for(CLI):
        p = add_command(sub, cmd, CLI)
        p.set_defaults(func=FUNCTIONS[cmd.name])
    if instrument is not None:
        instrument(sub)
    return parser


def main(
    pipeline: Pipeline,
    instrument: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] | None = None,
    argv: list[str] | None = None,
    *,
    prog: str | None = None,
) -> int:
    """Parse the command line and administer ``pipeline``.

    ``instrument(subparsers)`` may add commands: give each ``set_defaults(func=...)``; a coroutine
    function runs inside the opened pipeline. ``prog`` is the program's name in the usage lines
    (default: the script's). Returns 0 on success; exits with status 1 on a
    handled error, 75 when another controller holds the pipeline (``--wait`` waits instead), and
    ``128 + signal`` when interrupted (130 for Ctrl-C, 143 for SIGTERM; see :mod:`pdtnb.signals`).
    """
    parser = build_parser(instrument, prog)
    args = vars(parser.parse_args(argv))
    debug = args.pop("debug")
    verbose = args.pop("verbose")
    command = args.pop("command", None) or "command"
    acts = "wait" in args  # the acting commands are those that can wait for the lease
    if command == "launch" and args.get("sync") and runs_its_own_pod_job(args["task_name"], args["job"]):
        acts = False  # a KubeFunctionTask's pod running its own job's body: not a second controller
        pipeline.act_without_lease()
    wait = args.pop("wait", None)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func = args.pop("func")
    stopping = Stopping()
    try:
        if inspect.iscoroutinefunction(func):
            with stopping.installed():
                if command == "run" and args.get("timeout") is not None:
                    timeout = float(args["timeout"])
                    stopping.watch(
                        timeout + 1.0,
                        1,
                        f"error: pipeline run timed out after {timeout:g} s, and a job blocking the event "
                        "loop kept it from stopping: exiting without it (it stays ready)",
                    )
                code = asyncio.run(_run_opened(pipeline, func, args, stopping, command if acts else None, wait))
        else:
            code = func(pipeline, **args)
    except (KeyboardInterrupt, asyncio.CancelledError):
        _exit_past_threads(pipeline, stopping.status, "interrupted")
        print("interrupted", file=sys.stderr)
        raise SystemExit(stopping.status) from None
    except LeaseHeldError as e:
        hint = "" if wait else "; `--wait` waits for it"
        print(f"error: {e}{hint}", file=sys.stderr)
        raise SystemExit(e.exit_status) from None
    except (PdtnbError, OSError, TimeoutError, ValueError) as e:
        if debug:
            raise
        _exit_past_threads(pipeline, 1, f"error: {e}")
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    code = int(code or 0)
    if code:
        raise SystemExit(code)
    return 0


def _exit_past_threads(pipeline: Pipeline, status: int, message: str) -> None:
    """After an interrupted or failed run, end the process at once if job bodies are still running
    in threads: the interpreter would otherwise wait for them at exit (they cannot be stopped)."""
    running = sum(task.threads_running() for task in pipeline.tasks.values())
    if running:
        hard_exit(status, f"{message} ({running} job bodies still running in threads were abandoned; they stay ready)")


async def _run_opened(
    pipeline: Pipeline,
    func: Callable[..., Any],
    args: dict[str, Any],
    stopping: Stopping,
    command: str | None,
    wait: float | None,
) -> Any:
    stopping.attach()
    async with pipeline:
        if command is None:
            return await func(pipeline, **args)
        async with pipeline.control(command, wait=wait):
            return await func(pipeline, **args)
