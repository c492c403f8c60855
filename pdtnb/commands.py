"""The one table of administration subcommands, for the command line and the ``%pdt`` magic.

Every subcommand is declared here once: its name, its one-line help, its arguments (with their
argparse options) and where it exists: on the command line (:data:`CLI`), in the notebook's
``%pdt`` magic (:data:`NOTEBOOK`), or both (:data:`BOTH`). An argument may exist on one side only
(``status --live`` is the notebook's; ``status --json`` the command line's), and a subcommand may
be explained differently on each side (the command line's ``update`` is a whole round, the
notebook's only the update phase). :func:`pdtnb.cli.build_parser` and the magic's parser are both
built with :func:`add_command`; ``--help`` and ``%pdt help`` (:func:`help_text`) both come from
here, so the two vocabularies cannot drift apart.

This module is part of the core: it imports neither IPython nor ipywidgets.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = [
    "CLI",
    "NOTEBOOK",
    "BOTH",
    "Argument",
    "Command",
    "COMMANDS",
    "arg",
    "command",
    "commands_for",
    "add_command",
    "help_text",
    "unknown_jobs",
]

#: Where a subcommand or an argument exists.
CLI = "cli"
NOTEBOOK = "notebook"
BOTH = "both"
_WHERE = (CLI, NOTEBOOK, BOTH)

_P = TypeVar("_P", bound=argparse.ArgumentParser)


def _on(where: str, surface: str) -> bool:
    return where == BOTH or where == surface


@dataclass(frozen=True)
class Argument:
    """One argument of a subcommand: argparse's ``flags`` and ``options`` (``help``, ``nargs``,
    ``action``, ``dest``, ``metavar``, ``type``, ``default``), where it exists, how ``%pdt help``
    shows it (``synopsis``, derived when None) and, for options that exclude each other, the name
    of their mutually exclusive ``group``."""

    flags: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    where: str = BOTH
    synopsis: str | None = None
    group: str | None = None

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")

    def shown(self) -> str:
        """The argument as the synopsis of ``%pdt help`` shows it: ``JOB...``, ``[--all]``."""
        if self.synopsis is not None:
            return self.synopsis
        opts = self.options
        if self.positional:
            word = str(opts.get("metavar") or self.flags[0]).upper()
            nargs = opts.get("nargs")
            if nargs == "+":
                return f"{word}..."
            if nargs == "*":
                return f"[{word}...]"
            if nargs == "?":
                return f"[{word}]"
            return word
        flag = max(self.flags, key=len)
        if opts.get("action") in ("store_true", "store_false", "store_const"):
            return f"[{flag}]"
        return f"[{flag} {opts.get('metavar') or str(opts.get('dest') or flag.lstrip('-')).upper()}]"


def arg(
    *flags: str, where: str = BOTH, synopsis: str | None = None, group: str | None = None, **options: Any
) -> Argument:
    """An :class:`Argument`: ``arg("--all", "-a", dest="all_repos", action="store_true", help=...)``."""
    if where not in _WHERE:
        raise ValueError(f"where must be one of {_WHERE}, not {where!r}")
    return Argument(tuple(flags), dict(options), where, synopsis, group)


@dataclass(frozen=True)
class Command:
    """One subcommand: ``help`` is its one-line help (the command line's ``--help`` shows it);
    ``notebook_help`` replaces it in ``%pdt help`` where the notebook's subcommand does something
    different or says it differently."""

    name: str
    help: str
    args: tuple[Argument, ...] = ()
    where: str = BOTH
    notebook_help: str | None = None

    @property
    def on_cli(self) -> bool:
        """Whether the command line has this subcommand."""
        return _on(self.where, CLI)

    @property
    def in_notebook(self) -> bool:
        """Whether ``%pdt`` has this subcommand."""
        return _on(self.where, NOTEBOOK)

    def exists_on(self, surface: str) -> bool:
        return _on(self.where, surface)

    def arguments(self, surface: str) -> list[Argument]:
        """The arguments the subcommand takes on ``surface`` (:data:`CLI` or :data:`NOTEBOOK`)."""
        return [a for a in self.args if _on(a.where, surface)]

    def help_on(self, surface: str) -> str:
        """The one-line help on ``surface``."""
        if surface == NOTEBOOK and self.notebook_help is not None:
            return self.notebook_help
        return self.help

    def synopsis(self, surface: str = NOTEBOOK) -> str:
        """``name ARGS [OPTIONS]`` as ``%pdt help`` shows it."""
        args = self.arguments(surface)
        words = [self.name] + [a.shown() for a in args if a.positional]
        groups: dict[str, list[str]] = {}
        for a in args:
            if a.positional:
                continue
            if a.group is None:
                words.append(a.shown())
            else:
                if a.group not in groups:
                    groups[a.group] = []
                    words.append(f"\0{a.group}")
                groups[a.group].append(a.shown().strip("[]"))
        return " ".join(f"[{' | '.join(groups[w[1:]])}]" if w.startswith("\0") else w for w in words)


def command(name: str, help: str, *args: Argument, where: str = BOTH, notebook_help: str | None = None) -> Command:
    """A :class:`Command` (arguments as positional parameters)."""
    if where not in _WHERE:
        raise ValueError(f"where must be one of {_WHERE}, not {where!r}")
    return Command(name, help, tuple(args), where, notebook_help)


_JSON = arg("--json", dest="as_json", action="store_true", help="Print JSON for scripts", where=CLI)
_ALL = arg("--all", "-a", dest="all_repos", action="store_true", help="Show internal repositories")
_TASK = arg("task_name", metavar="task", help="Task", synopsis="TASK")
#: Every acting subcommand of the command line takes it: they hold the pipeline's lease.
_WAIT = arg(
    "--wait",
    type=float,
    nargs="?",
    const=math.inf,
    default=None,
    metavar="S",
    where=CLI,
    help="If another controller holds the pipeline, wait for it (for S seconds, or as long as it takes) "
    "instead of exiting with status 75",
    synopsis="[--wait [S]]",
)
_JOB = arg("job", help="Job")

#: Every subcommand, in the order ``--help`` and ``%pdt help`` list them.
COMMANDS: tuple[Command, ...] = (
    command(
        "use",
        "pick the Pipeline variable to drive (default: the only one)",
        arg("name", metavar="NAME", help="the variable holding the pipeline"),
        where=NOTEBOOK,
    ),
    command(
        "load",
        "load a pipeline file (YAML, TOML or JSON) into variable NAME (default: pipeline) and drive it",
        arg("file", metavar="FILE", help="the pipeline file (relative paths: from the kernel's working directory)"),
        arg(
            "binding",
            nargs="*",
            default=[],
            metavar="NAME",
            synopsis="[as NAME]",
            help="as NAME: the variable to bind the pipeline to (default: pipeline)",
        ),
        where=NOTEBOOK,
    ),
    command("open", "open the pipeline on the kernel's loop (any action opens it)", where=NOTEBOOK),
    command("close", "close the pipeline and its session", where=NOTEBOOK),
    command("update", "Keep the pipeline in motion", _WAIT, notebook_help="one update phase (reap finished jobs)"),
    command("step", "one round: update, then launch", where=NOTEBOOK),
    command(
        "run",
        "Run update in a loop until everything is quiet",
        arg("--forever", action="store_true", help="Keep running when quiet, watching for new input"),
        arg("--launch-once", action="store_true", help="Launch only in the first round, then only reap"),
        arg(
            "--timeout",
            type=float,
            default=None,
            help="Give up (exit 1) after this many seconds",
            synopsis="[--timeout S]",
        ),
        _WAIT,
        notebook_help="run in the background; returns a live table at once",
    ),
    command(
        "wait",
        "wait for the background run to end; shows its summary",
        arg(
            "--timeout",
            type=float,
            default=None,
            help="give up waiting after S seconds (the run goes on)",
            synopsis="[--timeout S]",
        ),
        where=NOTEBOOK,
    ),
    command("stop", "end the background run after its current round; shows its summary", where=NOTEBOOK),
    command(
        "status",
        "View the pipeline status",
        _ALL,
        _JSON,
        arg("--live", action="store_true", help="keep the table updating in place", where=NOTEBOOK),
        arg(
            "--interval",
            type=float,
            default=1.0,
            help="seconds between live updates",
            where=NOTEBOOK,
            synopsis="[--interval S]",
        ),
        notebook_help="job counts per task and link; --live keeps updating in place",
    ),
    command(
        "trace",
        "Track a job's progress through the pipeline",
        _ALL,
        _JSON,
        arg("job", nargs="+", help="Job to trace"),
        notebook_help="which links hold these jobs, and their state per task",
    ),
    command(
        "failed",
        "List failed and retrying jobs with their reasons",
        arg("task", nargs="*", help="Tasks to list (default: all)"),
        _JSON,
        notebook_help="failed and retrying jobs with their reasons",
    ),
    command(
        "show",
        "Show everything about one job: record, traceback, output, attempts",
        _TASK,
        _JOB,
        _JSON,
        notebook_help="one job: its traceback (your frames first), output, timings, attempts",
    ),
    command(
        "why",
        "Explain why a job is or is not running",
        _TASK,
        _JOB,
        _JSON,
        notebook_help="why a job is or is not running",
    ),
    command(
        "retry",
        "Make failed (or outdated) jobs ready again",
        _TASK,
        arg("job", nargs="*", help="Jobs to retry"),
        arg("--failed", action="store_true", help="Retry every failed job of the task"),
        arg(
            "--outdated",
            action="store_true",
            help="Run again the jobs done by code that has changed since (all of the task's, or the jobs given)",
        ),
        arg("--recursive", "-r", action="store_true", help="Also clear what they fed downstream", synopsis="[-r]"),
        _WAIT,
        notebook_help="make failed jobs ready again (--failed: all of the task's; --outdated: those done by "
        "code changed since; -r: clear downstream too)",
    ),
    command(
        "kill",
        "Stop a live job and record it as killed (via the controller running the pipeline, if any)",
        _TASK,
        _JOB,
        notebook_help="stop a live job and record it as killed",
    ),
    command(
        "debug",
        "run a job's body in the foreground, recording nothing (then %debug); a process: its script",
        _TASK,
        _JOB,
        where=NOTEBOOK,
    ),
    command(
        "timeline",
        "a Gantt chart of the jobs' attempts, coloured by outcome",
        arg("task", nargs="*", help="Tasks to draw (default: all)"),
        where=NOTEBOOK,
    ),
    command(
        "rm",
        "Delete data from the pipeline",
        arg("--recursive", "-r", action="store_true", help="Delete dependant data too", synopsis="[-r]"),
        arg("data", help="Repository (TASK.LINK) or task (TASK) to delete from", synopsis="TASK.LINK"),
        arg("job", nargs="+", help="Jobs to delete (__all__ for every job)"),
        _WAIT,
        notebook_help="delete jobs (-r: and everything downstream; __all__ = every job)",
    ),
    command(
        "ls",
        "List jobs in a repository",
        arg(
            "data",
            nargs="+",
            help="TASK.LINK names, or a set expression like 'a.out - b.done'",
            synopsis="TASK.LINK...",
        ),
        notebook_help="jobs of repositories, or a set expression: 'a.out - b.done'",
    ),
    command(
        "cat",
        "Print data from a repository",
        arg("data", help="Repository (TASK.LINK)", synopsis="TASK.LINK"),
        arg("job", help="Job to print"),
        notebook_help="a job's value (metadata as YAML)",
    ),
    command(
        "inject",
        "Dump data into a repository",
        arg("data", help="Repository (TASK.LINK)", synopsis="TASK.LINK"),
        arg("job", help="Job to store standard input as", where=CLI),
        arg("job", help="Job to store the value as", where=NOTEBOOK),
        arg("variable", nargs="?", help="the variable holding the value", where=NOTEBOOK, synopsis="VAR"),
        _WAIT,
        notebook_help="store the value of variable VAR (or the cell body, with %%pdt)",
    ),
    command(
        "launch",
        "Manually start a task",
        arg("task_name", help="Task to launch", where=CLI),
        arg("job", help="Job to launch it on", where=CLI),
        arg("task_name", nargs="?", metavar="TASK", help="Task to launch", where=NOTEBOOK, synopsis="[TASK JOB]"),
        arg("job", nargs="?", help="Job to launch it on", where=NOTEBOOK, synopsis=""),
        arg("--force", "-f", action="store_true", help="Launch even if start is inhibited by data"),
        arg("--sync", action="store_true", help="Run the task in-process, if possible"),
        arg(
            "--meta",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="Store metadata related to task completion",
            synopsis="[--no-meta]",
        ),
        _WAIT,
        notebook_help="start one job by hand; without TASK JOB: one launch phase (start ready jobs)",
    ),
    command("shell", "Launch an interactive shell to interrogate the pipeline", where=CLI),
    command(
        "fuse",
        "Mount the pipeline's repositories as a filesystem (a directory per task and link, a file per job)",
        arg("mountpoint", metavar="MOUNTPOINT", help="an existing empty directory to mount on"),
        arg(
            "--writable",
            action="store_true",
            help="Allow writing jobs (each file stored on close, as inject does); holds the pipeline's lease",
        ),
        arg(
            "--wait",
            dest="lease_wait",
            type=float,
            nargs="?",
            const=math.inf,
            default=None,
            metavar="S",
            help="With --writable: if another controller holds the pipeline, wait for it (for S seconds, or as "
            "long as it takes) instead of exiting with status 75",
            synopsis="[--wait [S]]",
        ),
        where=CLI,
    ),
    command(
        "graph",
        "the dependency graph, coloured by status",
        arg("--svg", action="store_true", help="draw SVG instead of PNG"),
        arg("--full", dest="form", action="store_const", const="full", help="every repository drawn", group="form"),
        arg("--compact", dest="form", action="store_const", const="compact", help="tasks only", group="form"),
        where=NOTEBOOK,
    ),
    command("dashboard", "graph, live status and launch buttons", where=NOTEBOOK),
    command(
        "export",
        "write the notebook as a script ending with pdtnb.main(pipeline)",
        arg("path", help="the script to write"),
        arg("--notebook", help="the notebook file (default: found from the kernel)", synopsis="[--notebook NB.ipynb]"),
        arg("--pipeline", help="the pipeline variable", synopsis="[--pipeline NAME]"),
        arg("--actions", action="store_true", help="replay the actions taken in this session"),
        where=NOTEBOOK,
    ),
    command("help", "this text", where=NOTEBOOK),
)


def commands_for(surface: str, commands: Iterable[Command] = COMMANDS) -> list[Command]:
    """The subcommands that exist on ``surface`` (:data:`CLI` or :data:`NOTEBOOK`), in order."""
    return [c for c in commands if c.exists_on(surface)]


def add_command(sub: argparse._SubParsersAction[_P], cmd: Command, surface: str, **parser_options: Any) -> _P:
    """Add ``cmd`` as it exists on ``surface`` to argparse's ``sub`` (from ``add_subparsers``)."""
    parser = sub.add_parser(cmd.name, help=cmd.help_on(surface), **parser_options)
    groups: dict[str, Any] = {}
    for a in cmd.arguments(surface):
        target: Any = parser
        if a.group is not None:
            if a.group not in groups:
                groups[a.group] = parser.add_mutually_exclusive_group()
            target = groups[a.group]
        target.add_argument(*a.flags, **dict(a.options))
    return parser


def help_text(
    surface: str = NOTEBOOK, prog: str = "%pdt", width: int = 30, commands: Iterable[Command] = COMMANDS
) -> str:
    """The list of subcommands with their synopsis and one-line help (``%pdt help``)."""
    lines = [f"{prog} SUBCOMMAND ...   drive the notebook's pipeline (the pipeline's command line, in a cell)", ""]
    for c in commands_for(surface, commands):
        synopsis = " ".join(c.synopsis(surface).split())
        text = c.help_on(surface)
        if len(synopsis) <= width:
            lines.append(f"  {synopsis:<{width}} {text}")
        else:
            lines.append(f"  {synopsis}")
            lines.append(f"  {'':<{width}} {text}")
    return "\n".join(lines) + "\n"


async def unknown_jobs(pipeline: Pipeline, jobs: Iterable[str]) -> list[str]:
    """The ``jobs`` that no repository of ``pipeline`` holds (in the order given)."""
    unknown = []
    for job in jobs:
        held = False
        for task in pipeline.tasks.values():
            for link in task.links.values():
                try:
                    if link.repo.is_valid_job_id(job) and await link.repo.contains(job):
                        held = True
                        break
                except Exception:
                    continue
            if held:
                break
        if not held:
            unknown.append(job)
    return unknown
