"""Fixtures of the fault-injection suite (``pytest -m faults``): the pipeline copy, a sentinel
process that no fault may touch, and the tally of body runs repeated after the faults."""

from __future__ import annotations

import collections
import signal
import subprocess

import pytest
from faultkit import SEED, Pipe, alive

#: Filled by the trials, printed at the end of the session (the issue quotes these numbers).
TALLY: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


@pytest.fixture
def tally() -> dict[str, collections.Counter]:
    return TALLY


@pytest.fixture
def sentinel():
    """A process of the test's own, outside every pipeline: it must be alive when the test ends."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    still = alive(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert still, f"the sentinel process {proc.pid} was killed by the pipeline (seed={SEED})"


@pytest.fixture
def make_pipe(tmp_path, sentinel):
    """``make_pipe(name, **options)``: a fresh copy of the fault pipeline in ``tmp_path / name``;
    every process it started (and every job they left) is killed when the test ends."""
    pipes: list[Pipe] = []

    def make(name: str = "p", **options) -> Pipe:
        root = tmp_path / name
        root.mkdir()
        pipe = Pipe(root, **options)
        pipes.append(pipe)
        return pipe

    yield make
    for pipe in pipes:
        pipe.cleanup()


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    terminalreporter.section(f"fault injection (PDTNB_FAULT_SEED={SEED})")
    for kind, counts in sorted(TALLY.items()):
        line = f"{kind} trials: {counts['trials']}, duplicate runs: {counts['duplicates']}"
        extra = [f"{k}: {v}" for k, v in sorted(counts.items()) if k not in ("trials", "duplicates")]
        if extra:
            line += " (" + ", ".join(extra) + ")"
        terminalreporter.write_line(line)
