"""Fixtures for ProcessTask and LocalLinuxManager tests: real processes, real files under tmp_path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from proc_helpers import kill_job_tree

from pdtnb import (
    InProcessBlobRepository,
    InProcessMetadataRepository,
    LocalLinuxManager,
    Pipeline,
    ProcessTask,
    ResourceManager,
    Resources,
    Session,
)

if not sys.platform.startswith("linux"):
    pytest.skip("LocalLinuxManager needs Linux", allow_module_level=True)


@dataclass
class Rig:
    """A pipeline of one ProcessTask over in-memory repositories, with its manager under tmp_path."""

    task: ProcessTask
    pipeline: Pipeline
    resources: ResourceManager
    inp: InProcessMetadataRepository
    stdin: InProcessBlobRepository | None
    stdout: InProcessBlobRepository
    stderr: Any
    done: InProcessMetadataRepository
    pids: InProcessMetadataRepository
    basedir: Path
    managers: list[LocalLinuxManager] = field(default_factory=list)

    @property
    def manager(self) -> LocalLinuxManager:
        return self.managers[-1]


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Any]:
    """Build a :class:`Rig`; keyword arguments go to ProcessTask (``quota`` and ``job_resources``
    set the ResourceManager's quota and each job's request)."""
    made: list[Rig] = []

    def make(
        template: str,
        jobs: dict[str, Any] | None = None,
        *,
        quota: Resources | None = None,
        job_resources: Resources | None = None,
        with_stdin: bool = False,
        stderr: Any = "separate",
        **kwargs: Any,
    ) -> Rig:
        session = Session()
        managers: list[LocalLinuxManager] = []
        basedir = tmp_path / "procs"

        @session.resource
        async def procman():
            manager = LocalLinuxManager("app", basedir)
            managers.append(manager)
            yield manager

        inp = InProcessMetadataRepository()
        for job, value in (jobs or {}).items():
            inp.data[job] = value
        stdin = InProcessBlobRepository() if with_stdin else None
        stdout = InProcessBlobRepository()
        err = InProcessBlobRepository() if stderr == "separate" else stderr
        done = InProcessMetadataRepository()
        pids = InProcessMetadataRepository()
        resources = ResourceManager(quota or Resources.parse(cpu=4, mem="4Gi"))
        task = ProcessTask(
            "t",
            procman,
            resources,
            job_resources or Resources.parse(cpu=1, mem="1Mi"),
            pids,
            template,
            done=done,
            stdin=stdin,
            stdout=stdout,
            stderr=err,
            **kwargs,
        )
        if not with_stdin:
            task.link("inp", inp, is_input=True)
        pipeline = Pipeline([task], session, [resources])
        rig = Rig(task, pipeline, resources, inp, stdin, stdout, err, done, pids, basedir / "app", managers)
        made.append(rig)
        return rig

    yield make
    # Never leave a test's processes behind: kill whatever is still recorded as running.
    for rig in made:
        for entry in rig.pids.data.values():
            ident = str(entry.get("pid", "")) if isinstance(entry, dict) else ""
            if ident.count(":") == 2 and LocalLinuxManager("check")._is_alive(ident):  # never a recycled pid
                kill_job_tree(int(ident.split(":")[0]))
