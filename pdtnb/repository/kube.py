"""LiveKubeRepository: the jobs a KubeTask has pods for (linked by the task itself as ``live``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from .base import Repository

__all__ = ["LiveKubeRepository", "PodJobs"]


class PodJobs(Protocol):
    """What a :class:`LiveKubeRepository` needs of the task whose pods it shows (:class:`~pdtnb.KubeTask`
    provides it). The repository owns this interface, so that the repository layer never depends
    on a task class."""

    @property
    def name(self) -> str:
        """The task's name (for the repository's repr)."""
        ...

    async def live_pods(self) -> list[Any]:
        """The task's pod objects on the cluster, in any phase."""
        ...

    async def live_job_ids(self) -> set[str]:
        """The jobs those pods run (by their job label)."""
        ...

    async def has_live_pod(self, job: str) -> bool:
        """Whether the cluster has a pod of the task for ``job``."""
        ...

    async def delete(self, job: str) -> None:
        """Delete the job's pod (and return its resources) without recording anything."""
        ...


class LiveKubeRepository(Repository):
    """Keys are the job labels of the task's pods on the cluster. Created by the task; do not build one."""

    def __init__(self, task: PodJobs):
        self.task = task

    def __repr__(self) -> str:
        return f"<LiveKubeRepository of {self.task.name}>"

    async def pods(self) -> list[Any]:
        """The task's pod objects (any phase: a finished pod stays until the task reaps it)."""
        return await self.task.live_pods()

    async def _list_job_ids(self) -> set[str]:
        return await self.task.live_job_ids()

    async def unfiltered_iter(self) -> AsyncIterator[str]:
        for job in sorted(await self._list_job_ids()):
            yield job

    async def contains(self, item: str) -> bool:
        return await self.task.has_live_pod(item)

    async def info(self, job: str) -> None:
        """A live pod has nothing to put in a template."""
        return None

    async def delete(self, job: str) -> None:
        """Delete the job's pod (and return its resources) without marking it done."""
        await self.task.delete(job)
