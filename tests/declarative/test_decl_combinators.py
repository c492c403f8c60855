"""Every combinator repository (and, or, blocking, map, related item), a DirectoryRepository and
a user's repository class by import path, declared in one file and run end to end on local
files: each task ran exactly for the jobs its view holds, and read what the view says."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

import pdtnb

FILES = Path(__file__).resolve().parent / "files"


def _write(directory: Path, values: dict[str, object]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for job, value in values.items():
        (directory / f"{job}.yaml").write_text(yaml.safe_dump(value))


def _read(directory: Path) -> dict[str, object]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yaml"))}


async def test_every_combinator_a_directory_repository_and_a_user_class_run_from_a_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(FILES))
    _write(tmp_path / "nums", {"a": 1, "b": 2, "c": 3})
    _write(tmp_path / "extra", {"b": 20, "d": 40})
    _write(tmp_path / "skip", {"c": "not this one"})
    _write(tmp_path / "names", {"x": "a", "y": "c"})
    pipeline = pdtnb.load(FILES / "combinators.yaml", environ={"DATA": str(tmp_path)})
    assert type(pipeline.tasks["unblocked"].links["out"].repo).__name__ == "TaggedRepository"
    assert sys.modules["decl_combinators"].TaggedRepository.__module__ == "decl_combinators"
    async with pipeline:
        summary = await pipeline.run()
    assert summary.ok, summary.describe()
    assert sorted(_read(tmp_path / "and-out")) == ["b"]  # in nums and in extra
    assert sorted(_read(tmp_path / "or-out")) == ["a", "b", "c", "d"]  # in either
    assert _read(tmp_path / "tagged") == {  # nums unless skip, through the user's class
        "a": {"tag": "from-a-file", "value": "ran"},
        "b": {"tag": "from-a-file", "value": "ran"},
    }
    assert _read(tmp_path / "map-out") == {"a": 3, "b": 6, "c": 9}  # triple(nums)
    assert _read(tmp_path / "rel-out") == {"x": 1, "y": 3}  # nums at names' translation
    assert {
        p.name: (p / "value.txt").read_text()
        for p in sorted((tmp_path / "dirs").iterdir())
        if p.is_dir() and not p.name.startswith(".")
    } == {"a": "1", "b": "2", "c": "3"}
