"""Outdated results: done jobs whose task's code has changed since they ran.

Every job record keeps the fingerprint of the code that produced it (:mod:`pdtnb.fingerprint`).
A job whose last attempt succeeded is ``outdated`` when its task's fingerprint is another now:
status counts it apart from ``done``, ``why`` says which part of the code changed, and
``retry TASK --outdated`` (here :func:`reset_outdated`) clears those records so that the jobs
run again, with ``recursive`` also what was made downstream from them. Nothing runs again by
itself unless the task says so (``rerun_outdated=True``, applied at each launch phase).

The command line, the ``%pdt`` magics and the dashboard call these functions.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from .admin import delete_jobs
from .fingerprint import Fingerprint
from .outcomes import outcome_index
from .record import JobRecord
from .task.base import Task

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = ["outdated_jobs", "outdated_reasons", "reset_outdated"]


async def outdated_jobs(task: Task) -> list[str]:
    """The outdated jobs of ``task`` (sorted): done by code whose fingerprint is not the task's
    now, and not running."""
    done = task.done_repository
    current = task.fingerprint()
    if done is None or current is None:
        return []
    index = await outcome_index(done).refresh(done)
    if not index.prints and index.common_print in (None, "", current.digest):
        return []  # every success carries today's fingerprint, or none: nothing to list
    found = index.outdated(current.digest, await done.job_ids())
    live = task.live_repository
    if found and live is not None:
        found -= set(await live.job_ids())
    return sorted(found)


def outdated_reasons(task: Task, record: JobRecord, current: Fingerprint | None = None) -> list[str] | None:
    """Why ``record`` (a success of ``task``) is outdated, one phrase per changed part; None
    when it is not (same fingerprint, or the record or the task has none). ``current``: the
    task's fingerprint, when the caller has it already (explaining many records)."""
    if current is None:
        current = task.fingerprint()
    if current is None or not record.succeeded or not record.fingerprint or record.fingerprint == current.digest:
        return None
    return current.changes_from(record.fingerprint_parts)


async def reset_outdated(
    pipeline: Pipeline, task: Task, jobs: AbstractSet[str] | list[str] | None = None, recursive: bool = False
) -> tuple[list[str], list[tuple[str, str]]]:
    """Clear the records of ``task``'s outdated jobs (all of them, or those of ``jobs`` that
    are) so that they are ready again; ``recursive`` also clears what they fed downstream.
    Returns the jobs reset and the (job, repository) pairs deleted. The caller holds the
    pipeline's lease (the launch phase, or ``retry``)."""
    found = await outdated_jobs(task)
    if jobs is not None:
        wanted = set(jobs)
        found = [j for j in found if j in wanted]
    done = task.done_repository
    if not found or done is None:
        return [], []
    deleted = await delete_jobs(pipeline, f"{task.name}.{task.done_link}", found, recursive)
    index = outcome_index(done)
    for job in found:
        index.note_deleted(job)
    return found, deleted
