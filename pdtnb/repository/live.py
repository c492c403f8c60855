"""Repositories that show a task's running jobs (linked by the task itself as ``live``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Protocol

from .base import Repository

__all__ = ["ExecutorLiveRepo", "RunningJobs"]


class RunningJobs(Protocol):
    """What an :class:`ExecutorLiveRepo` needs of the task whose running jobs it shows
    (:class:`~pdtnb.ExecutorTask` provides it). The repository owns this interface, so that the
    repository layer never depends on a task class."""

    @property
    def name(self) -> str:
        """The task's name (for the repository's repr)."""
        ...

    @property
    def live_version(self) -> int:
        """A number that changes whenever the set of running jobs changes (the change token)."""
        ...

    @property
    def running_jobs(self) -> Collection[str]:
        """The jobs running now (a live view: the repository copies it where it must)."""
        ...

    async def cancel(self, job: str) -> None:
        """Stop ``job`` without recording anything; nothing for a job that is not running."""
        ...


class ExecutorLiveRepo(Repository):
    """The jobs an :class:`~pdtnb.ExecutorTask` is running. Created by the task; do not build one."""

    def __init__(self, task: RunningJobs):
        self.task = task

    def __repr__(self) -> str:
        return f"<ExecutorLiveRepo of {self.task.name}>"

    async def unfiltered_iter(self) -> AsyncIterator[str]:
        for job in list(self.task.running_jobs):
            yield job

    async def _list_job_ids(self) -> set[str]:
        return set(self.task.running_jobs)

    def change_token(self) -> int:
        return self.task.live_version

    async def contains(self, item: str) -> bool:
        return item in self.task.running_jobs

    async def delete(self, job: str) -> None:
        """Cancel the job (see :meth:`ExecutorTask.cancel`)."""
        await self.task.cancel(job)

    async def info(self, job: str) -> None:
        """A running executor job has nothing to put in a template."""
        return None
