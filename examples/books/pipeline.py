"""The book-summary example from the pydatatask documentation, on local files.

Two stages: ``summary`` counts the paragraphs, lines, words and characters of each book and
writes a one-line report; ``index`` reads each finished report's counts back and records them
as metadata. Everything lives under this directory (or under ``$PDTNB_EXAMPLE_DIR``): no server
is needed.

    python examples/books/pipeline.py run       # process every book not yet processed
    python examples/books/pipeline.py status    # counts per task and link
    python examples/books/pipeline.py cat summary.reports river
"""

import os
from pathlib import Path

import pdtnb

HERE = Path(__file__).resolve().parent
BOOKS = Path(os.environ.get("PDTNB_EXAMPLE_BOOKS", HERE / "books"))
WORK = Path(os.environ.get("PDTNB_EXAMPLE_DIR", HERE / "work"))

session = pdtnb.Session()

books_repo = pdtnb.FileRepository(BOOKS, ".txt")
done_repo = pdtnb.YamlMetadataFileRepository(WORK / "results")
reports_repo = pdtnb.FileRepository(WORK / "reports", ".txt")
index_done = pdtnb.YamlMetadataFileRepository(WORK / "index-done")
index_repo = pdtnb.YamlMetadataFileRepository(WORK / "index")


@pdtnb.InProcessSyncTask("summary", done_repo)
async def summary(job: str, books: pdtnb.FileRepository, reports: pdtnb.FileRepository) -> None:
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


summary.link("books", books_repo, is_input=True)
summary.link("reports", reports_repo, is_output=True)


@pdtnb.InProcessSyncTask("index", index_done)
async def index(job: str, reports: pdtnb.FileRepository, index: pdtnb.YamlMetadataFileRepository) -> None:
    async with await reports.open(job, "r") as fp:
        text = await fp.read()
    numbers = [int(word) for word in text.split() if word.isdigit()]
    await index.dump(job, dict(zip(["paragraphs", "lines", "words", "characters"], numbers)))


index.plug(summary)  # waits for summary's reports and done records
index.link("index", index_repo, is_output=True)

pipeline = pdtnb.Pipeline([summary, index], session, [])

if __name__ == "__main__":
    pdtnb.main(pipeline)
