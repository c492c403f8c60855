"""Repositories that show a task's running jobs (linked by the task itself as ``live``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .base import Repository

if TYPE_CHECKING:
    from ..task.executor import ExecutorTask

__all__ = ["ExecutorLiveRepo"]


class ExecutorLiveRepo(Repository):
    """The jobs an :class:`~pdtnb.ExecutorTask` is running. Created by the task; do not build one."""

    def __init__(self, task: ExecutorTask):
        self.task = task

    def __repr__(self) -> str:
        return f"<ExecutorLiveRepo of {self.task.name}>"

    async def unfiltered_iter(self) -> AsyncIterator[str]:
        for job in list(self.task.rev_jobs):
            yield job

    async def _list_job_ids(self) -> set[str]:
        return set(self.task.rev_jobs)

    def change_token(self) -> int:
        return self.task.live_version

    async def contains(self, item: str) -> bool:
        return item in self.task.rev_jobs

    async def delete(self, job: str) -> None:
        """Cancel the job (see :meth:`ExecutorTask.cancel`)."""
        await self.task.cancel(job)

    async def info(self, job: str) -> None:
        """A running executor job has nothing to put in a template."""
        return None
