"""A ProcessTask pipeline kept entirely on disk, for the crash-recovery test.

Run as a script (``python recovery_pipeline.py ROOT``) it runs the pipeline until it is killed;
imported, :func:`build` gives the same pipeline to a test that plays the restarted process.

Each job appends ``start JOB TIME`` to ``ROOT/log``, waits until ``ROOT/release/JOB`` or
``ROOT/release/all`` exists, prints ``output of JOB``, and appends ``end JOB TIME``.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

from pdtnb import (
    FileRepository,
    LocalLinuxManager,
    Pipeline,
    ProcessTask,
    ResourceManager,
    Resources,
    Session,
    YamlMetadataFileRepository,
)

QUOTA = 3
JOBS = [f"job{i}" for i in range(8)]


def build(root: Path) -> tuple[Pipeline, ProcessTask]:
    session = Session()

    @session.resource
    async def procman():
        yield LocalLinuxManager("recovery", root / "procs")

    log = shlex.quote(str(root / "log"))
    release = shlex.quote(str(root / "release"))
    template = (
        f'echo "start {{{{ job }}}} $(date +%s.%N)" >> {log}\n'
        f"while [ ! -e {release}/{{{{ job }}}} ] && [ ! -e {release}/all ]; do sleep 0.02; done\n"
        'echo "output of {{ job }}"\n'
        f'echo "end {{{{ job }}}} $(date +%s.%N)" >> {log}\n'
    )
    resources = ResourceManager(Resources.parse(cpu=QUOTA, mem="1Gi"))
    task = ProcessTask(
        "work",
        procman,
        resources,
        Resources.parse(cpu=1, mem="1Mi"),
        YamlMetadataFileRepository(root / "pids"),
        template,
        done=YamlMetadataFileRepository(root / "done"),
        stdout=FileRepository(root / "stdout"),
    )
    task.link("inp", YamlMetadataFileRepository(root / "inp"), is_input=True)
    return Pipeline([task], session, [resources]), task


def prepare(root: Path) -> None:
    """Write the input jobs."""
    (root / "inp").mkdir(parents=True, exist_ok=True)
    (root / "release").mkdir(parents=True, exist_ok=True)
    for job in JOBS:
        (root / "inp" / f"{job}.yaml").write_text(f"{job}\n")


async def main(root: Path) -> None:
    pipeline, _ = build(root)
    async with pipeline:
        await pipeline.run(forever=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
