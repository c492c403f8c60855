"""Helpers shared by the process tests (imported by name: pytest puts this directory on sys.path)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from pdtnb import InProcessBlobRepository


def proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` from /proc, or None if there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()[0].decode()


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    return proc_state(pid) not in (None, "Z", "X")


async def blob(repo: InProcessBlobRepository, job: str) -> str:
    """A blob's content as text."""
    async with await repo.open(job, "r") as fp:
        return await fp.read()


def job_dirs(rig: Any) -> list[str]:
    """The job directories left under the task's basedir."""
    root = rig.basedir / "t"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def kill_job_tree(wrapper: int) -> None:
    """SIGKILL a job wrapper's session and the job's own process group (test clean-up)."""
    try:
        children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        try:
            os.killpg(os.getpgid(int(child)), signal.SIGKILL)
        except OSError:
            pass
    try:
        os.killpg(wrapper, signal.SIGKILL)
    except OSError:
        pass
