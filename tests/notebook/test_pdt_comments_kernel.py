"""``%pdt`` ignores a trailing ``# comment``, an apostrophe or quote inside it included, at the
top level of a cell (run as an ``await``), assigned to a name, and inside a function (run
synchronously), on a real kernel; README's notebook sequence works line by line as written, on
both kernel generations, and gives the reports the script would (tests/docs runs every README
block as well, on one kernel, without looking at the reports)."""

from __future__ import annotations

from pathlib import Path

from nbrun import KernelSession

SETUP = """
import pdtnb
inp = pdtnb.InProcessMetadataRepository({"1": 1, "2": 2})
out = pdtnb.InProcessMetadataRepository()
done = pdtnb.InProcessMetadataRepository()

@pdtnb.InProcessSyncTask("double", done)
async def double(job, inp, out):
    await out.dump(job, await inp.info(job) * 2)

double.link("inp", inp, is_input=True)
double.link("out", out, is_output=True)
pipeline = pdtnb.Pipeline([double], pdtnb.Session())
"""


def test_trailing_comments_are_ignored(kernel_session: KernelSession) -> None:
    run = kernel_session.run
    run("%load_ext pdtnb").check()
    run(SETUP).check()
    plain = run("%pdt status").check().plain
    assert plain.startswith("double\ndouble.inp 2\n"), plain
    for line in (
        "%pdt status   # a status table",
        "%pdt status   # the pipeline's status",
        "%pdt status # it's \"quoted\" and 'unbalanced",
        "%pdt status#no space before it",
    ):
        assert run(line).check().plain == plain, line
    assert (
        run("jobs = %pdt ls double.inp  # the pipeline's inputs\njobs").check().plain
        == run("%pdt ls double.inp").check().plain
    )
    in_function = "def listing():\n    jobs = %pdt ls double.inp   # don't run anything\n    return jobs\nlisting()"
    assert run(in_function).check().plain == run("%pdt ls double.inp").check().plain
    # a quoted '#' is an argument, not a comment: the error names the whole id
    message = run("%pdt launch double '1#2'   # the job's id has a hash").everything
    assert "1#2" in message, message


def _block_after(markdown: str, heading: str) -> str:
    rest = markdown.split(heading, 1)[1]
    return rest.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_notebook_sequence_runs_line_by_line(kernel_session: KernelSession, tmp_path: Path) -> None:
    """README's "In a notebook" lines, in order, each as a cell, in a directory holding README's
    script as pipeline.py (as the notebook lines say) and a books directory: none fails, and the
    reports are the script's."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (tmp_path / "pipeline.py").write_text(_block_after(readme, "## A pipeline in a script"))
    lines = [line for line in _block_after(readme, "## In a notebook").splitlines() if line.strip()]
    assert lines[0] == "%load_ext pdtnb" and lines[1].startswith("from pipeline import pipeline"), lines[:2]
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "river.txt").write_text("the river runs\n")
    (tmp_path / "books" / "lake.txt").write_text("still water\n")
    results = {line: kernel_session.run(line).check() for line in lines}
    assert "launched" in results[next(line for line in lines if line.startswith("%pdt launch summary river"))].plain
    assert (tmp_path / "reports" / "river.txt").read_text() == "river: 3 words\n"
    assert (tmp_path / "reports" / "lake.txt").read_text() == "lake: 2 words\n"
