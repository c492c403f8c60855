"""docs/declarative.md's reference of the kinds is what the schema (and so the classes) says."""

from __future__ import annotations

from pathlib import Path

from pdtnb.declarative.reference import BEGIN, END, render, replace_between_markers

PAGE = Path(__file__).resolve().parents[2] / "docs" / "declarative.md"


def test_the_reference_in_the_docs_is_generated_from_the_classes():
    text = PAGE.read_text()
    assert BEGIN in text and END in text
    expected = replace_between_markers(text, render())
    stale = "docs/declarative.md is stale: run python -m pdtnb.declarative.reference --write docs/declarative.md"
    assert text == expected, stale
    # Every task kind and every repository class appear, with their constructor's parameters.
    for heading in ("#### `kind: process`", "#### `kind: FileRepository`", "#### `kind: ssh-processes`"):
        assert heading in text
    assert "| `resource_manager` | " in text and "| `basedir` | " in text
