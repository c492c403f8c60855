"""Hooks through the command line: a vetoed job stays ready and ``why`` (a second process) says
which hook skips it and why; the JSON lines log records what ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).with_name("hooked_pipeline.py")


def cli(data: Path, *args: str, veto: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "DATA": str(data), "VETO": veto}
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def test_why_from_the_command_line_names_the_veto(tmp_path: Path) -> None:
    (tmp_path / "inp").mkdir()
    for i, job in enumerate(("a", "b", "c")):
        (tmp_path / "inp" / f"{job}.yaml").write_text(yaml.safe_dump(i))
    cli(tmp_path, "run", veto="b")
    assert sorted(p.stem for p in (tmp_path / "done").glob("[!.]*.yaml")) == ["a", "c"]

    why = cli(tmp_path, "why", "t", "b", veto="b").stdout
    assert why.startswith("t b: ready"), why
    assert "hook Window: b waits for the night window" in why, why
    as_json = json.loads(cli(tmp_path, "why", "t", "b", "--json", veto="b").stdout)
    assert any("night window" in r for r in as_json["reasons"]), as_json
    assert "will be launched" in cli(tmp_path, "why", "t", "b").stdout  # the window has passed

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sorted((e["event"], e["job"]) for e in events) == [
        ("launch", "a"),
        ("launch", "c"),
        ("outcome", "a"),
        ("outcome", "c"),
    ]
