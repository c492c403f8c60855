"""The two task bodies of the book-summary example, shared by ``pipeline.py`` (Python) and
``pipeline.yaml`` (the same pipeline declared in a file, which names them ``bodies:count_book``
and ``bodies:index_report``)."""

from __future__ import annotations

from typing import Any


async def count_book(job: str, books: Any, reports: Any) -> None:
    """Count the paragraphs, lines, words and characters of a book; write a one-line report."""
    paragraphs, lines, words, chars = 0, 0, 0, 0
    async with await books.open(job, "r") as fp:
        data = await fp.read()
    for line in data.splitlines():
        if line.strip() == "":
            paragraphs += 1
        lines += 1
        words += len(line.split())
        chars += len(line)
    async with await reports.open(job, "w") as fp:
        await fp.write(
            f'The book "{job}" has {paragraphs} paragraphs, {lines} lines, {words} words, and {chars} characters.\n'
        )


async def index_report(job: str, reports: Any, index: Any) -> None:
    """Read a finished report's counts back and record them as metadata."""
    async with await reports.open(job, "r") as fp:
        text = await fp.read()
    numbers = [int(word) for word in text.split() if word.isdigit()]
    await index.dump(job, dict(zip(["paragraphs", "lines", "words", "characters"], numbers)))
