"""The ``%pdt`` line magic and ``%%pdt`` cell magic: the command line's vocabulary in a notebook.

Every subcommand calls the same functions as the command line (through the
:class:`~pdtnb.notebook.controller.PipelineController`) and returns an object that displays well:
a status table, a list of jobs, a value, a job's failure, a live widget. The subcommands, their
arguments and ``%pdt help`` come from the one command table, :data:`pdtnb.commands.COMMANDS`. A
mistake (unknown subcommand, task, repository or job, a bad option) is a one-line ``UsageError``,
never a traceback; a ``# comment`` at the end of a ``%pdt`` line is ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from .. import admin, failures
from ..commands import NOTEBOOK, add_command, commands_for, help_text, unknown_jobs
from ..errors import JobLaunchError, PdtnbError, one_line
from ..pipeline import Pipeline
from ..record import Outcome, is_failure_record, read_record, record_from_exception
from .controller import PipelineController, controller_for
from .job_views import (
    DeletedSummary,
    FailedList,
    JobFailed,
    JobView,
    ProcessScript,
    RetryView,
    RunResult,
    WhyView,
    call_arguments,
    live_output,
)
from .kernel_loop import run_sync
from .loading import load_target

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["PdtMagics", "JobList", "Text"]

#: ``%pdt help``: generated from the command table.
HELP = help_text(NOTEBOOK)


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as exceptions instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"%pdt {self.prog.split()[-1] if ' ' in self.prog else ''}: {message}".replace(" :", ":"))

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or "%pdt: see %pdt help")


def _build_parser() -> _Parser:
    """The ``%pdt`` parser: every notebook subcommand of the command table."""
    parser = _Parser(prog="%pdt", add_help=False)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for cmd in commands_for(NOTEBOOK):
        add_command(sub, cmd, NOTEBOOK, add_help=False)
    return parser


#: Lines of a list or a value shown before the display summarises the rest (the value is whole).
SHOWN_LINES = 50


class JobList(list[str]):
    """A list of job ids that displays one per line with a count (the first
    :data:`SHOWN_LINES` of a long list, then how many more)."""

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        shown = list(self[:SHOWN_LINES])
        if len(self) > SHOWN_LINES:
            shown.append(f"... and {len(self) - SHOWN_LINES} more")
        p.text("\n".join(shown) + ("\n" if shown else "") + f"({len(self)} jobs)")


class Text(str):
    """Text that displays as itself (not as a quoted string), long text cut for display."""

    limit = 500

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        lines = str(self).split("\n")
        if len(lines) > self.limit:
            more = len(lines) - self.limit
            p.text("\n".join(lines[: self.limit]) + f"\n[... {more} more lines not shown; the value holds them all]")
            return
        p.text(str(self))


class Message(Text):
    """A one-line confirmation."""


@magics_class
class PdtMagics(Magics):
    """``%pdt`` and ``%%pdt``; one instance per IPython shell."""

    shell: InteractiveShell  # always given: the extension registers the magics with its shell

    def __init__(self, shell: InteractiveShell):
        super().__init__(shell)
        self.selected: str | None = None
        self._parser = _build_parser()
        # The controller each pipeline variable had when %pdt last drove it: a variable rebound
        # to a new Pipeline retires the old definition's controller on the next action.
        self._bound: dict[str, PipelineController] = {}

    # ---- entry points ------------------------------------------------------------------------

    @line_magic
    def pdt(self, line: str) -> Any:
        """Drive the notebook's pipeline: ``%pdt help`` lists the subcommands."""
        __tracebackhide__ = True  # IPython hides this frame in tracebacks
        return self._sync(self.pdt_async(line))

    # IPython annotates cell_magic(name) as returning "a function or a decorator", uncallable for mypy
    @cell_magic("pdt")  # type: ignore[arg-type]
    def pdt_cell(self, line: str, cell: str) -> Any:
        """``%%pdt inject TASK.LINK JOB``: store the cell body as the job's value."""
        __tracebackhide__ = True
        return self._sync(self.pdt_cell_async(line, cell))

    def _sync(self, coro: Any) -> Any:
        __tracebackhide__ = True
        controller = self._current(required=False)
        loop = controller.loop if controller is not None else None
        return run_sync(coro, loop)

    async def pdt_async(self, line: str) -> Any:
        """The coroutine behind ``%pdt LINE`` (top-level magics are rewritten to await it)."""
        __tracebackhide__ = True
        return await self._dispatch(line, None)

    async def pdt_cell_async(self, line: str, cell: str) -> Any:
        """The coroutine behind ``%%pdt LINE`` with ``cell`` as body."""
        __tracebackhide__ = True
        return await self._dispatch(line, cell)

    # ---- parsing and selection -----------------------------------------------------------------

    def _parse(self, line: str) -> argparse.Namespace:
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise UsageError(f"%pdt: cannot parse {line!r}: {e}") from None
        if not words:
            raise UsageError("%pdt: give a subcommand; %pdt help lists them")
        action = self._parser._subparsers._group_actions[0]  # type: ignore[union-attr]
        known = list(action.choices or ())  # the subcommand names
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

    def _resolve(self, required: bool = True) -> tuple[str, Pipeline] | None:
        """The variable name and the Pipeline that ``%pdt`` drives now."""
        found = self.pipelines()
        if self.selected is not None:
            if self.selected in found:
                return self.selected, found[self.selected]
            if not required:
                return None
            raise UsageError(
                f"%pdt: the selected pipeline {self.selected!r} is no longer defined; "
                f"pipelines: {', '.join(found) or 'none'}"
            )
        distinct = {id(p): name for name, p in found.items()}
        if len(distinct) == 1:
            name = next(iter(distinct.values()))
            return name, found[name]
        if not required:
            return None
        if not found:
            raise UsageError("%pdt: no Pipeline is defined in this notebook: define one with pdtnb.Pipeline(...)")
        names = ", ".join(sorted(found))
        raise UsageError(f"%pdt: several pipelines are defined ({names}); pick one with %pdt use NAME")

    def _current(self, required: bool = True) -> PipelineController | None:
        resolved = self._resolve(required)
        if resolved is None:
            return None
        return controller_for(resolved[1], resolved[0])

    async def _follow_redefinition(self, name: str, controller: PipelineController) -> None:
        """If variable ``name`` held another Pipeline when %pdt last drove it, retire that
        definition's controller (closing its pipeline) in favour of ``controller``; say so."""
        old = self._bound.get(name)
        self._bound[name] = controller
        if old is not None and old.retired and old.retired_unannounced and old.current() is controller:
            # The live views retired it as the cell that redefined it ended: say so now.
            old.retired_unannounced = False
            print(f"pipeline `{name}` was redefined: closed the old definition")
            return
        if old is None or old is controller or old.pipeline is controller.pipeline or old.retired:
            return
        if any(p is old.pipeline for p in self.pipelines().values()):
            return  # still defined under another name: not a redefinition
        try:
            await old.retire(controller)
        except Exception as e:  # the new definition must stay usable
            print(f"pipeline `{name}` was redefined; closing the old definition failed: {one_line(e)}")
            return
        print(f"pipeline `{name}` was redefined: closed the old definition")

    # ---- subcommands ---------------------------------------------------------------------------

    async def _dispatch(self, line: str, cell: str | None) -> Any:
        __tracebackhide__ = True
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
        if command == "load":
            return await self._load(args)
        resolved = self._resolve()
        assert resolved is not None
        controller = controller_for(resolved[1], resolved[0])
        await self._follow_redefinition(resolved[0], controller)
        with _wakeful_loop():
            if command == "debug":
                return await self._debug(controller, args)  # the body's exception is the point: not caught
            try:
                return await self._run(controller, args, cell)
            except UsageError:
                raise
            except (PdtnbError, KeyError, ValueError, OSError, TimeoutError, RuntimeError) as e:
                raise UsageError(f"%pdt {command}: {one_line(e)}") from None

    async def _load(self, args: argparse.Namespace) -> Message:
        """``%pdt load FILE [as NAME]``: build the pipeline a file declares (:func:`pdtnb.load`,
        which validates the whole file first and opens nothing), bind it to ``NAME`` and make it
        the pipeline ``%pdt`` drives. A wrong file is one line, ``FILE:LINE:COL: what``, and
        changes nothing. Loading into a variable that holds another Pipeline retires that one (its
        background run stopped, its session closed, its widgets following the new one), unless
        another variable still holds it."""
        try:
            target = load_target(args.file, args.binding)
        except ValueError as e:
            raise UsageError(f"%pdt load: {e}") from None
        try:
            pipeline = _load_file(target.file)
        except (PdtnbError, OSError, ValueError, ImportError) as e:
            raise UsageError(f"%pdt load: {one_line(e)}") from None
        name = target.name
        controller = controller_for(pipeline, name)
        old = self.shell.user_ns.get(name)
        replaced = ""
        if isinstance(old, Pipeline) and old is not pipeline:
            elsewhere = any(p is old for n, p in self.pipelines().items() if n != name)
            if not elsewhere:
                was_open = old.is_open
                try:
                    await controller_for(old, name).retire(controller)
                except Exception as e:  # the new pipeline must be bound all the same
                    print(f"pipeline `{name}` was replaced; closing the old definition failed: {one_line(e)}")
                else:
                    replaced = "; replaced the old definition" + (" (closed it)" if was_open else "")
        self.shell.push({name: pipeline})
        self._bound[name] = controller
        self.selected = name
        return Message(f"loaded pipeline {name!r} from {target.file} (tasks: {', '.join(pipeline.tasks)}){replaced}")

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
            raise UsageError(f"%pdt export: {one_line(e)}") from None

    async def _run(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        handler = getattr(self, f"_do_{args.command}", None)
        if handler is None:  # pragma: no cover - the parser only knows the table's subcommands
            raise UsageError(f"%pdt: unknown subcommand {args.command!r}")
        return await handler(controller, args, cell)

    # ---- opening and reading -------------------------------------------------------------------

    async def _do_close(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        await controller.close()
        return Message(f"closed {controller.name or 'pipeline'}")

    async def _do_open(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        opened = await controller.open()
        state = "opened" if opened else "already open:"
        return Message(f"{state} {controller.name or 'pipeline'} (tasks: {', '.join(controller.pipeline.tasks)})")

    async def _do_status(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        if args.live:
            from .status_view import LiveStatus

            await controller.open()
            return LiveStatus(controller, interval=args.interval).start()
        from .status_view import StatusTable

        return StatusTable(await controller.status(args.all_repos))

    async def _do_trace(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        from .status_view import StatusTable

        await controller.open()
        unknown = await unknown_jobs(controller.pipeline, args.job)
        if unknown and len(unknown) == len(args.job):
            noun = "job" if len(unknown) == 1 else "jobs"
            raise UsageError(
                f"%pdt trace: no repository of this pipeline holds {noun} "
                + ", ".join(repr(failures.short_id(j)) for j in unknown)
            )
        table = StatusTable(await controller.trace(args.job, args.all_repos))
        for job in unknown:
            print(f"# {failures.short_id(job)}: in no repository of this pipeline")
        return table

    async def _do_ls(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        return JobList(await controller.ls(" ".join(args.data)))

    async def _do_cat(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        raw = await controller.cat(args.data, args.job)
        try:
            return Text(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return raw

    # ---- changing data -------------------------------------------------------------------------

    async def _do_rm(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        return DeletedSummary(await controller.rm(args.data, args.job, args.recursive))

    async def _do_inject(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
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

    # ---- acting ----------------------------------------------------------------------------------

    async def _do_launch(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        if args.task_name is None:
            return await controller.launch_phase()
        if args.job is None:
            raise UsageError("%pdt launch: give TASK and JOB (or neither, for one launch phase)")
        task, job = args.task_name, args.job
        try:
            outcome = await controller.launch(task, job, sync=args.sync, force=args.force, meta=args.meta)
        except JobLaunchError as e:  # the job's failure, with its reason, not a mistake in the line
            cause = e.__cause__ if e.__cause__ is not None else e
            raise JobFailed(task, job, record_from_exception(cause, outcome=Outcome.LAUNCH_ERROR)) from None
        where = f"{task}:{job}"
        refusal = outcome.refusal()
        if refusal is not None:
            hint = "; use --force to launch anyway" if outcome.forcible else ""
            raise UsageError(f"%pdt launch: {refusal}{hint}")
        if outcome.done is not None and is_failure_record(outcome.done):
            raise JobFailed(task, job, read_record(outcome.done))
        return Message(f"{where} launched" + (" and finished" if outcome.done is not None else ""))

    async def _do_update(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        return await controller.update()

    async def _do_step(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        return await controller.step()

    async def _do_run(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        from .status_view import LiveStatus

        await controller.start_run(forever=args.forever, launch_once=args.launch_once, timeout=args.timeout)
        return LiveStatus(controller).start()

    async def _do_wait(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        if args.timeout is not None and args.timeout < 0:
            raise UsageError(f"%pdt wait: --timeout must be 0 or more seconds, not {args.timeout:g}")
        try:
            outcome = await controller.wait(args.timeout)
        except TimeoutError as e:
            raise UsageError(f"%pdt wait: {e}") from None
        except (asyncio.CancelledError, KeyboardInterrupt):
            # The kernel's interrupt (the stop button) ends the wait, not the run: one line says so.
            current = asyncio.current_task()
            if current is not None and hasattr(current, "uncancel"):
                current.uncancel()
            going = "goes on (%pdt stop ends it)" if controller.running else "has ended"
            raise UsageError(f"%pdt wait: interrupted; the background run {going}") from None
        if outcome is None:
            return Message("no background run to wait for")
        if isinstance(outcome, BaseException):
            return Message(f"the background run ended with {type(outcome).__name__}: {one_line(outcome)}")
        return RunResult(outcome)

    async def _do_stop(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        summary = await controller.stop()
        if summary is None:
            return Message("no background run to stop")
        return RunResult(summary)

    # ---- failures --------------------------------------------------------------------------------

    async def _do_failed(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        await controller.open()
        return FailedList(await failures.failed_jobs(controller.pipeline, args.task or None))

    async def _do_show(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        await controller.open()
        details = await failures.show_job(controller.pipeline, args.task_name, args.job)
        output: dict[str, str] = {}
        if details.state == "live":
            output = await live_output(controller.pipeline.tasks[details.task], args.job)
        return JobView(details, output)

    async def _do_why(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        await controller.open()
        return WhyView(await failures.why_job(controller.pipeline, args.task_name, args.job))

    async def _do_retry(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        await controller.open()
        result = await failures.retry_jobs(
            controller.pipeline,
            args.task_name,
            args.job,
            failed=args.failed,
            outdated=args.outdated,
            recursive=args.recursive,
        )
        return RetryView(result)

    async def _do_kill(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        await controller.open()
        record = await failures.kill_job(controller.pipeline, args.task_name, args.job)
        if record is None:  # a background run is reaping it now: its record follows shortly
            record = await _record_soon(controller.pipeline.tasks[args.task_name], args.job)
        state = f" (recorded: {record.outcome})" if record is not None else ""
        return Message(f"{args.task_name} {failures.short_id(args.job)}: killed{state}")

    async def _debug(self, controller: PipelineController, args: argparse.Namespace) -> Any:
        """``%pdt debug TASK JOB``: run the job's body in the kernel's foreground, bound as the task
        binds it, writing no record; its exception propagates, so ``%debug`` opens the failing
        frame. A process task's script is rendered and shown instead."""
        __tracebackhide__ = True
        job = args.job
        try:
            await controller.open()
            task = admin.resolve_task(controller.pipeline, args.task_name)
            if not any(link.repo.is_valid_job_id(job) for link in task.links.values()):
                raise PdtnbError(f"invalid job id {failures.short_id(job)!r} for task {task.name!r}")
            from ..task.function import FunctionTask

            if not isinstance(task, FunctionTask):
                return await _rendered_job(task, job)
            kwargs = call_arguments(task, job)
        except UsageError:
            raise
        except (PdtnbError, KeyError, ValueError, OSError, RuntimeError) as e:
            raise UsageError(f"%pdt debug: {one_line(e)}") from None
        print(
            f"debugging {task.name} {failures.short_id(job)}: its body runs here, in the foreground; "
            "no record is written (after an error, %debug opens the failing frame)"
        )
        result = task.func(**kwargs)  # type: ignore[misc]
        if inspect.isawaitable(result):
            result = await result
        return Message(
            f"{task.name} {failures.short_id(job)}: the body returned {_short_repr(result)} "
            "without an error (nothing was recorded)"
        )

    # ---- pictures ----------------------------------------------------------------------------------

    async def _do_timeline(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        from .timeline import timeline

        await controller.open()
        return await timeline(controller.pipeline, args.task or None)

    async def _do_graph(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        from .graph import PipelineGraph

        status = await controller.status()
        if args.form is not None:
            if "form" not in inspect.signature(PipelineGraph).parameters:
                raise UsageError(
                    f"%pdt graph --{args.form}: this version of PipelineGraph has no form= parameter yet; "
                    "use %pdt graph without it"
                )
            graph = PipelineGraph(controller.pipeline, status, form=args.form)
        else:
            graph = PipelineGraph(controller.pipeline, status)
        if args.svg:
            from IPython.display import SVG

            return SVG(data=graph.to_svg())
        return graph

    async def _do_dashboard(self, controller: PipelineController, args: argparse.Namespace, cell: str | None) -> Any:
        from .dashboard import Dashboard

        await controller.open()
        return Dashboard(controller).start()


def _load_file(file: str) -> Pipeline:
    """:func:`pdtnb.load` of ``file`` (``~`` expanded), its ``declared_in`` made absolute: a
    relative path is from the kernel's working directory now, whatever it is later. Reading a
    pipeline file takes milliseconds: it is done on the kernel's loop."""
    from ..declarative import load

    pipeline: Pipeline = load(Path(file).expanduser())
    if pipeline.declared_in is not None and not pipeline.declared_in.is_absolute():
        pipeline.declared_in = Path(os.path.abspath(pipeline.declared_in))
    return pipeline


async def _rendered_job(task: Any, job: str) -> ProcessScript:
    """What a job of a task that runs elsewhere (a process, a pod) would run, rendered now."""
    render = getattr(task, "render", None)
    if render is None:
        raise PdtnbError(f"task {task.name!r} ({type(task).__name__}) has no body that %pdt debug can run or show")
    rendered = await render(job)
    if not isinstance(rendered, str):  # a Kubernetes manifest
        import yaml

        rendered = yaml.safe_dump(rendered, sort_keys=False)
    jobdir = None
    if hasattr(task, "jobdir"):
        try:
            jobdir = str(task.jobdir(job))
        except Exception:
            jobdir = None
    return ProcessScript(task.name, job, rendered, dict(getattr(task, "environ", None) or {}), jobdir)


async def _record_soon(task: Any, job: str, within: float = 3.0) -> Any:
    """``job``'s record in ``task``'s done repository once it is there (None after ``within`` s)."""
    done = task.done_repository
    if done is None:
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if await done.contains(job):
            try:
                return read_record(await done.info(job))
            except Exception:
                return None
        await asyncio.sleep(0.05)
    return None


def _short_repr(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
