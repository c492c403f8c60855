"""``%pdt`` ignores a trailing ``# comment``, an apostrophe or quote inside it included, at the
top level of a cell (run as an ``await``), assigned to a name, and inside a function (run
synchronously), on a real kernel. (README's notebook lines run as written in tests/docs.)"""

from __future__ import annotations

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
