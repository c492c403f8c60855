"""The ``%pdt`` line magic and ``%%pdt`` cell magic: the command line's vocabulary in a notebook.

Every subcommand calls the same functions as the command line (through the
:class:`~pdtnb.notebook.controller.PipelineController`) and returns an object that displays well:
a status table, a list of jobs, a value, a live widget. A mistake (unknown subcommand, task,
repository or job, a bad option) is a one-line ``UsageError``, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
from collections.abc import Iterator
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..errors import PdtnbError
from ..pipeline import Pipeline
from .controller import PipelineController, controller_for
from .kernel_loop import run_sync

__all__ = ["PdtMagics", "JobList", "Text"]

HELP = """\
%pdt SUBCOMMAND ...   drive the notebook's pipeline (the pipeline's command line, in a cell)

  use NAME                       pick the Pipeline variable to drive (default: the only one)
  open | close                   open it on the kernel's loop (any action opens it) / close it
  status [--all] [--live] [--interval S]
                                 job counts per task and link; --live keeps updating in place
  trace JOB... [--all]           which links hold these jobs, and their state per task
  ls TASK.LINK...                jobs of repositories, or a set expression: 'a.out - b.done'
  cat TASK.LINK JOB              a job's value (metadata as YAML)
  rm TASK.LINK JOB... [-r]       delete jobs (-r: and everything downstream; __all__ = every job)
  inject TASK.LINK JOB VAR       store the value of variable VAR (or the cell body, with %%pdt)
  launch TASK JOB [--sync] [--force] [--no-meta]
                                 start one job by hand
  update                         one update phase (reap finished jobs)
  launch                         one launch phase (start ready jobs)
  step                           one round: update, then launch
  run [--forever] [--launch-once] [--timeout S]
                                 run in the background; returns a live table at once
  wait [--timeout S]             wait for the background run to end; shows its summary
  stop                           end the background run after its current round
  graph [--svg]                  the dependency graph, coloured by status
  dashboard                      graph, live status and launch buttons
  export PATH [--notebook NB.ipynb] [--pipeline NAME] [--actions]
                                 write the notebook as a script ending with pdtnb.main(pipeline)
  help                           this text
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as exceptions instead of exiting the kernel."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"%pdt {self.prog.split()[-1] if ' ' in self.prog else ''}: {message}".replace(" :", ":"))

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # type: ignore[override]
        raise UsageError(message or "%pdt: see %pdt help")


def _build_parser() -> _Parser:
    parser = _Parser(prog="%pdt", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.add_parser("help", add_help=False)
    sub.add_parser("open", add_help=False)
    sub.add_parser("close", add_help=False)
    p = sub.add_parser("use", add_help=False)
    p.add_argument("name")
    p = sub.add_parser("status", add_help=False)
    p.add_argument("--all", "-a", dest="all_repos", action="store_true")
    p.add_argument("--live", action="store_true")
    p.add_argument("--interval", type=float, default=1.0)
    p = sub.add_parser("trace", add_help=False)
    p.add_argument("--all", "-a", dest="all_repos", action="store_true")
    p.add_argument("jobs", nargs="+")
    p = sub.add_parser("ls", add_help=False)
    p.add_argument("data", nargs="+")
    p = sub.add_parser("cat", add_help=False)
    p.add_argument("data")
    p.add_argument("job")
    p = sub.add_parser("rm", add_help=False)
    p.add_argument("--recursive", "-r", action="store_true")
    p.add_argument("data")
    p.add_argument("jobs", nargs="+")
    p = sub.add_parser("inject", add_help=False)
    p.add_argument("data")
    p.add_argument("job")
    p.add_argument("variable", nargs="?")
    p = sub.add_parser("launch", add_help=False)
    p.add_argument("task", nargs="?")
    p.add_argument("job", nargs="?")
    p.add_argument("--sync", action="store_true")
    p.add_argument("--force", "-f", action="store_true")
    p.add_argument("--meta", action=argparse.BooleanOptionalAction, default=True)
    sub.add_parser("update", add_help=False)
    sub.add_parser("step", add_help=False)
    p = sub.add_parser("run", add_help=False)
    p.add_argument("--forever", action="store_true")
    p.add_argument("--launch-once", action="store_true")
    p.add_argument("--timeout", type=float, default=None)
    p = sub.add_parser("wait", add_help=False)
    p.add_argument("--timeout", type=float, default=None)
    sub.add_parser("stop", add_help=False)
    p = sub.add_parser("graph", add_help=False)
    p.add_argument("--svg", action="store_true")
    sub.add_parser("dashboard", add_help=False)
    p = sub.add_parser("export", add_help=False)
    p.add_argument("path")
    p.add_argument("--notebook")
    p.add_argument("--pipeline")
    p.add_argument("--actions", action="store_true")
    return parser


class JobList(list):
    """A list of job ids that displays one per line with a count."""

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("\n".join(self) + ("\n" if self else "") + f"({len(self)} jobs)")


class Text(str):
    """Text that displays as itself (not as a quoted string)."""

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class Message(Text):
    """A one-line confirmation."""


@magics_class
class PdtMagics(Magics):
    """``%pdt`` and ``%%pdt``; one instance per IPython shell."""

    def __init__(self, shell: Any):
        super().__init__(shell)
        self.selected: str | None = None
        self._parser = _build_parser()

    # ---- entry points ------------------------------------------------------------------------

    @line_magic
    def pdt(self, line: str) -> Any:
        """Drive the notebook's pipeline: ``%pdt help`` lists the subcommands."""
        return self._sync(self.pdt_async(line))

    @cell_magic("pdt")
    def pdt_cell(self, line: str, cell: str) -> Any:
        """``%%pdt inject TASK.LINK JOB``: store the cell body as the job's value."""
        return self._sync(self.pdt_cell_async(line, cell))

    def _sync(self, coro: Any) -> Any:
        controller = self._current(required=False)
        loop = controller.loop if controller is not None else None
        return run_sync(coro, loop)

    async def pdt_async(self, line: str) -> Any:
        """The coroutine behind ``%pdt LINE`` (top-level magics are rewritten to await it)."""
        return await self._dispatch(line, None)

    async def pdt_cell_async(self, line: str, cell: str) -> Any:
        """The coroutine behind ``%%pdt LINE`` with ``cell`` as body."""
        return await self._dispatch(line, cell)

    # ---- parsing and selection -----------------------------------------------------------------

    def _parse(self, line: str) -> argparse.Namespace:
        try:
            words = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"%pdt: cannot parse {line!r}: {e}") from None
        if not words:
            raise UsageError("%pdt: give a subcommand; %pdt help lists them")
        known = self._parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        if words[0] not in known:
            raise UsageError(f"%pdt: unknown subcommand {words[0]!r}; subcommands: {', '.join(known)}")
        return self._parser.parse_args(words)

    def pipelines(self) -> dict[str, Pipeline]:
        """The Pipeline objects defined in the user namespace, by variable name."""
        return {
            name: value
            for name, value in self.shell.user_ns.items()
            if isinstance(value, Pipeline) and not name.startswith("_")
        }

    def _current(self, required: bool = True) -> PipelineController | None:
        found = self.pipelines()
        if self.selected is not None:
            if self.selected in found:
                return controller_for(found[self.selected], self.selected)
            if not required:
                return None
            raise UsageError(
                f"%pdt: the selected pipeline {self.selected!r} is no longer defined; "
                f"pipelines: {', '.join(found) or 'none'}"
            )
        distinct = {id(p): name for name, p in found.items()}
        if len(distinct) == 1:
            name = next(iter(distinct.values()))
            return controller_for(found[name], name)
        if not required:
            return None
        if not found:
            raise UsageError("%pdt: no Pipeline is defined in this notebook: define one with pdtnb.Pipeline(...)")
        names = ", ".join(sorted(found))
        raise UsageError(f"%pdt: several pipelines are defined ({names}); pick one with %pdt use NAME")

    # ---- subcommands ---------------------------------------------------------------------------

    async def _dispatch(self, line: str, cell: str | None) -> Any:
        args = self._parse(line)
        command = args.command
        if command == "help":
            return Text(HELP)
        if command == "use":
            found = self.pipelines()
            if args.name not in found:
                raise UsageError(f"%pdt use: no pipeline named {args.name!r}; pipelines: {', '.join(found) or 'none'}")
            self.selected = args.name
            return Message(f"using pipeline {args.name!r} (tasks: {', '.join(found[args.name].tasks)})")
        if cell is not None and command != "inject":
            raise UsageError("%%pdt takes a body only for inject: %%pdt inject TASK.LINK JOB")
        if command == "export":
            return self._export(args)
        controller = self._current()
        assert controller is not None
        with _wakeful_loop():
            try:
                return await self._run(controller, args, cell)
            except UsageError:
                raise
            except (PdtnbError, KeyError, ValueError, OSError, TimeoutError, RuntimeError) as e:
                raise UsageError(f"%pdt {command}: {_one_line(e)}") from None

    def _export(self, args: argparse.Namespace) -> Message:
        """``%pdt export``: needs no open pipeline, only the notebook's cells (see pdtnb.notebook.export)."""
        from .export import ExportError, export_in_kernel

        try:
            return Message(
                export_in_kernel(
                    self.shell,
                    args.path,
                    notebook=args.notebook,
                    pipeline=args.pipeline,
                    selected=self.selected,
                    actions=args.actions,
                    live_pipelines=self.pipelines(),
                )
            )
        except ExportError as e:
            raise UsageError(f"%pdt export: {_one_line(e)}") from None

    async def _run(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        command = args.command
        name = controller.name or "pipeline"
        if command == "close":
            await controller.close()
            return Message(f"closed {name}")
        if command == "open":
            opened = await controller.open()
            state = "opened" if opened else "already open:"
            return Message(f"{state} {name} (tasks: {', '.join(controller.pipeline.tasks)})")
        if command == "status":
            if args.live:
                from .status_view import LiveStatus

                await controller.open()
                return LiveStatus(controller, interval=args.interval).start()
            from .status_view import StatusTable

            return StatusTable(await controller.status(args.all_repos))
        if command == "trace":
            from .status_view import StatusTable

            return StatusTable(await controller.trace(args.jobs, args.all_repos))
        if command == "ls":
            return JobList(await controller.ls(" ".join(args.data)))
        if command == "cat":
            raw = await controller.cat(args.data, args.job)
            try:
                return Text(raw.decode("utf-8"))
            except UnicodeDecodeError:
                return raw
        if command == "rm":
            deleted = await controller.rm(args.data, args.jobs, args.recursive)
            lines = [f"{job} {repo}" for job, repo in deleted]
            return Text("\n".join(lines) + ("\n" if lines else "") + f"({len(deleted)} deleted)")
        if command == "inject":
            if cell is not None:
                if args.variable:
                    raise UsageError("%%pdt inject: give either a variable or a cell body, not both")
                value: Any = cell
            elif args.variable:
                if args.variable not in self.shell.user_ns:
                    raise UsageError(f"%pdt inject: no variable named {args.variable!r}")
                value = self.shell.user_ns[args.variable]
            else:
                raise UsageError("%pdt inject: give the variable holding the value, or use %%pdt inject with a body")
            await controller.inject(args.data, args.job, value)
            return Message(f"stored {args.data} {args.job}")
        if command == "launch":
            if args.task is None:
                return await controller.launch_phase()
            if args.job is None:
                raise UsageError("%pdt launch: give TASK and JOB (or neither, for one launch phase)")
            outcome = await controller.launch(args.task, args.job, sync=args.sync, force=args.force, meta=args.meta)
            from .dashboard import _describe

            text, failed = _describe("launch", outcome)
            if failed:
                raise UsageError(f"%pdt launch: {text}")
            return Message(text)
        if command == "update":
            return await controller.update()
        if command == "step":
            return await controller.step()
        if command == "run":
            from .status_view import LiveStatus

            await controller.start_run(forever=args.forever, launch_once=args.launch_once, timeout=args.timeout)
            return LiveStatus(controller).start()
        if command == "wait":
            if args.timeout is not None and args.timeout < 0:
                raise UsageError(f"%pdt wait: --timeout must be 0 or more seconds, not {args.timeout:g}")
            try:
                outcome = await controller.wait(args.timeout)
            except TimeoutError as e:
                raise UsageError(f"%pdt wait: {e}") from None
            if outcome is None:
                return Message("no background run to wait for")
            if isinstance(outcome, BaseException):
                return Message(f"the background run ended with {type(outcome).__name__}: {outcome}")
            return outcome
        if command == "stop":
            summary = await controller.stop()
            if summary is None:
                return Message("no background run to stop")
            return Message(f"stopped after {summary.rounds} rounds, {summary.launched} launched")
        if command == "graph":
            from .graph import PipelineGraph

            graph = PipelineGraph(controller.pipeline, await controller.status())
            if args.svg:
                from IPython.display import SVG

                return SVG(data=graph.to_svg())
            return graph
        if command == "dashboard":
            from .dashboard import Dashboard

            await controller.open()
            return Dashboard(controller).start()
        raise UsageError(f"%pdt: unknown subcommand {command!r}")  # pragma: no cover - parser checks


@contextlib.contextmanager
def _wakeful_loop(period: float = 0.1) -> Iterator[None]:
    """Wake the kernel's loop every ``period`` seconds while an action runs.

    ipykernel turns the interrupt signal into a callback scheduled without waking the loop, so a
    cell awaiting something long would ignore the interrupt until the loop next woke up. A
    periodic no-op wake-up makes the interrupt (the stop button) act within ``period``.
    """
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def tick() -> None:
        nonlocal handle
        handle = loop.call_later(period, tick)

    tick()
    try:
        yield
    finally:
        if handle is not None:
            handle.cancel()


def _one_line(e: BaseException) -> str:
    text = str(e) if not isinstance(e, KeyError) or not e.args else str(e.args[0])
    return " ".join(text.split()) or type(e).__name__
