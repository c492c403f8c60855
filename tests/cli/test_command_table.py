"""The one command table (pdtnb.commands): the command line's ``--help`` and ``%pdt help`` both
come from it, and list the same subcommands with the same help lines."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pdtnb import cli
from pdtnb.commands import BOTH, CLI, COMMANDS, NOTEBOOK, commands_for, help_text

NOTEBOOK_ONLY = {
    "use",
    "load",
    "open",
    "close",
    "step",
    "wait",
    "stop",
    "graph",
    "dashboard",
    "debug",
    "timeline",
    "export",
    "help",
}


def _subcommands(parser) -> dict[str, str]:
    """The parser's subcommands and their help lines, in order."""
    action = parser._subparsers._group_actions[0]
    helps = {a.dest: a.help for a in action._choices_actions}
    return {name: helps.get(name) for name in action.choices}


def test_every_subcommand_is_declared_once():
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names)), names
    for c in COMMANDS:
        assert c.where in (CLI, NOTEBOOK, BOTH), c
        assert c.help and "\n" not in c.help, c
        for a in c.args:
            assert a.where in (CLI, NOTEBOOK, BOTH), (c.name, a)


def test_cli_parser_is_built_from_the_table_in_order():
    built = _subcommands(cli.build_parser())
    table = commands_for(CLI)
    assert list(built) == [c.name for c in table]
    assert built == {c.name: c.help for c in table}
    assert set(cli.FUNCTIONS) == set(built), "every command-line subcommand has its function"


def test_notebook_only_and_cli_only_subcommands():
    assert {c.name for c in COMMANDS if c.where == NOTEBOOK} == NOTEBOOK_ONLY
    assert {c.name for c in COMMANDS if c.where == CLI} == {"shell", "fuse"}
    assert not NOTEBOOK_ONLY & set(_subcommands(cli.build_parser()))


def test_cli_help_and_pdt_help_list_the_same_commands_from_the_table(script):
    pytest.importorskip("IPython", reason="the notebook extra")
    from pdtnb.notebook import magics

    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    usage = " ".join(result.stdout.split())
    for c in commands_for(CLI):
        assert re.search(rf"(?<![\w-]){re.escape(c.name)} {re.escape(c.help)}", usage), f"{c.name}: {c.help}"

    parsed = _subcommands(magics._build_parser())
    assert list(parsed) == [c.name for c in commands_for(NOTEBOOK)]
    assert magics.HELP == help_text(NOTEBOOK)
    listed = [
        line.split()[0]
        for line in magics.HELP.splitlines()[2:]
        if line.startswith("  ") and line.split() and not line.startswith("   ")
    ]
    assert listed == [c.name for c in commands_for(NOTEBOOK)]
    flat = " ".join(magics.HELP.split())
    for c in commands_for(NOTEBOOK):
        assert " ".join(c.help_on(NOTEBOOK).split()) in flat, c.name
    # what both have is listed by both
    both = [c.name for c in COMMANDS if c.where == BOTH]
    assert both == [n for n in parsed if n in set(_subcommands(cli.build_parser()))]


def test_pdt_help_shows_each_notebook_argument():
    text = help_text(NOTEBOOK)
    for needle in (
        "status [--all] [--live] [--interval S]",
        "trace JOB... [--all]",
        "rm TASK.LINK JOB... [-r]",
        "retry TASK [JOB...] [--failed] [--outdated] [-r]",
        "launch [TASK JOB] [--force] [--sync] [--no-meta]",
        "graph [--svg] [--full | --compact]",
        "show TASK JOB",
        "timeline [TASK...]",
    ):
        assert needle in text, needle
    assert "--json" not in text, "--json is the command line's"
    assert "shell" not in text.split()
    assert "fuse" not in text.split()


def test_the_command_table_does_not_import_ipython():
    code = (
        "import sys, pdtnb.commands, pdtnb.cli\nassert 'IPython' not in sys.modules and 'ipywidgets' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_instrument_still_adds_commands(capsys):
    def instrument(sub):
        sub.add_parser("hello", help="say hello").set_defaults(func=lambda pipeline: print("hello"))

    parser = cli.build_parser(instrument)
    assert "hello" in _subcommands(parser)
    args = parser.parse_args(["hello"])
    assert args.command == "hello"
