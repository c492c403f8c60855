"""docs/cli.md says what the command line does: ``status --json``'s example has the real shape
(the same keys at every level, valid JSON), and a command line argparse refuses exits with
status 2 (a mistake the pipeline finds, with 1)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def documented_status_json() -> dict[str, Any]:
    text = CLI_MD.read_text()
    after = text.split("`--json` prints one document", 1)[1]
    block = re.search(r"```(?:json|text)?\n(.*?)```", after, re.S)
    assert block is not None, "docs/cli.md: no block after '`--json` prints one document'"
    return json.loads(block.group(1))


def shape(value: Any) -> Any:
    """The keys of every mapping, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def test_status_json_example_has_the_real_shape(shared) -> None:
    result = shared.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    real = json.loads(result.stdout)
    documented = documented_status_json()
    assert list(documented) == list(real)
    assert set(shape(documented["tasks"][0])) == set(shape(real["tasks"][0]))
    assert list(documented["tasks"][0]) == list(real["tasks"][0])
    assert list(documented["tasks"][0]["links"][0]) == list(real["tasks"][0]["links"][0])
    # and it is printed indented, as the example shows
    assert result.stdout.startswith('{\n  "taken_at": ')


def test_bad_command_lines_exit_2_and_mistakes_exit_1(shared) -> None:
    text = CLI_MD.read_text()
    assert "exits with status 2" in text and "| 2 |" in text
    for argv in (("nosuch",), ("status", "--bogus"), ("cat", "stage1.a"), ()):
        result = shared.cli(*argv)
        assert result.returncode == 2, (argv, result.returncode, result.stderr)
        assert "usage:" in result.stderr and "error:" in result.stderr, result.stderr
    result = shared.cli("cat", "stage1.nosuch", "j1")
    assert result.returncode == 1 and result.stderr.startswith("error:"), result.stderr
