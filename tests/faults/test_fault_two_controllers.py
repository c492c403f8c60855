"""Two ``python pipeline.py run`` started together on the same repositories: one controller at a
time (the pipeline's lease). The second exits with status 75 and one ``error:`` line naming the
holder (its pid and command), or with ``--wait`` waits and then finds nothing left to do. Either
way no body runs twice and every output is complete."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.faults

PIPELINES = {"in-process": ("s1", "s2"), "process": ("s3",)}


def _start_two(pipe, *extra):
    a = pipe.start("run", "--timeout", "60", *extra)
    b = pipe.start("run", "--timeout", "60", *extra)
    return (a, pipe.finish(a)), (b, pipe.finish(b))


def _check_outputs(pipe, where):
    problems = pipe.check_complete() + pipe.check_status() + pipe.check_runs(set())
    assert not problems, f"{where}:\n" + "\n".join(problems)


@pytest.mark.parametrize("kind", PIPELINES)
def test_the_second_controller_exits_with_75_naming_the_holder(kind, make_pipe):
    pipe = make_pipe(stages=PIPELINES[kind], n=20, sleep=0.2)
    (a, ra), (b, rb) = _start_two(pipe)
    where = f"{kind}: first {ra}\nsecond {rb}"
    codes = sorted([ra.returncode, rb.returncode])
    assert codes == [0, 75], where
    (winner, _), (_, lost) = ((a, ra), (b, rb)) if ra.returncode == 0 else ((b, rb), (a, ra))
    errors = [line for line in lost.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(lost.stderr.strip().splitlines()) == 1, where
    line = errors[0]
    assert "pid" in line and re.search(rf"\b{winner.pid}\b", line) and "run" in line, where
    _check_outputs(pipe, where)


@pytest.mark.parametrize("kind", PIPELINES)
def test_with_wait_the_second_controller_waits_then_finds_nothing_to_do(kind, make_pipe):
    pipe = make_pipe(stages=PIPELINES[kind], n=20, sleep=0.2)
    (_a, ra), (_b, rb) = _start_two(pipe, "--wait")
    where = f"{kind}: first {ra}\nsecond {rb}"
    assert (ra.returncode, rb.returncode) == (0, 0), where
    summaries = [r.stderr for r in (ra, rb)]
    assert any("finished: 0 succeeded" in s for s in summaries), where
    _check_outputs(pipe, where)
