"""The book-summary example from the pydatatask documentation, on local files.

Two stages: ``summary`` counts the paragraphs, lines, words and characters of each book and
writes a one-line report; ``index`` reads each finished report's counts back and records them
as metadata. Everything lives under this directory (or under ``$PDTNB_EXAMPLE_DIR``): no server
is needed.

    python examples/books/pipeline.py run       # process every book not yet processed
    python examples/books/pipeline.py status    # counts per task and link
    python examples/books/pipeline.py cat summary.reports river

``pipeline.yaml`` declares the same pipeline as a file (``python -m pdtnb -f
examples/books/pipeline.yaml run``); both take their task bodies from ``bodies.py``.
"""

import os
import sys
from pathlib import Path

import pdtnb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bodies import count_book, index_report

HERE = Path(__file__).resolve().parent
BOOKS = Path(os.environ.get("PDTNB_EXAMPLE_BOOKS", HERE / "books"))
WORK = Path(os.environ.get("PDTNB_EXAMPLE_DIR", HERE / "work"))

session = pdtnb.Session()

books_repo = pdtnb.FileRepository(BOOKS, ".txt")
done_repo = pdtnb.YamlMetadataFileRepository(WORK / "results")
reports_repo = pdtnb.FileRepository(WORK / "reports", ".txt")
index_done = pdtnb.YamlMetadataFileRepository(WORK / "index-done")
index_repo = pdtnb.YamlMetadataFileRepository(WORK / "index")


# The bodies are in bodies.py, which pipeline.yaml (the same pipeline, declared) names too.
summary = pdtnb.InProcessSyncTask("summary", done_repo, func=count_book)
summary.link("books", books_repo, is_input=True)
summary.link("reports", reports_repo, is_output=True)

index = pdtnb.InProcessSyncTask("index", index_done, func=index_report)
index.plug(summary)  # waits for summary's reports and done records
index.link("index", index_repo, is_output=True)

pipeline = pdtnb.Pipeline([summary, index], session, [])

if __name__ == "__main__":
    pdtnb.main(pipeline)
