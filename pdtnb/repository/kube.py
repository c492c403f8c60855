"""LiveKubeRepository: the jobs a KubeTask has pods for (linked by the task itself as ``live``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .base import Repository

if TYPE_CHECKING:
    from ..task.kube import KubeTask

__all__ = ["LiveKubeRepository"]


class LiveKubeRepository(Repository):
    """Keys are the job labels of the task's pods on the cluster. Created by the task; do not build one."""

    def __init__(self, task: KubeTask):
        self.task = task

    def __repr__(self) -> str:
        return f"<LiveKubeRepository of {self.task.name}>"

    async def pods(self) -> list[Any]:
        """The task's pod objects (any phase: a finished pod stays until the task reaps it)."""
        return await self.task.podman.query(task=self.task.name)

    async def _list_job_ids(self) -> set[str]:
        from ..managers.pod import job_of

        return {j for j in (job_of(p) for p in await self.pods()) if j is not None}

    async def unfiltered_iter(self) -> AsyncIterator[str]:
        for job in sorted(await self._list_job_ids()):
            yield job

    async def contains(self, item: str) -> bool:
        return bool(await self.task.podman.query(job=item, task=self.task.name))

    async def info(self, job: str) -> None:
        """A live pod has nothing to put in a template."""
        return None

    async def delete(self, job: str) -> None:
        """Delete the job's pod (and return its resources) without marking it done."""
        await self.task.delete(job)
