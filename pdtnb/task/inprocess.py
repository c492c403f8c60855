"""InProcessSyncTask: an async Python function run inside the pipeline's own event loop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..repository.base import MetadataRepository, Repository
from .base import _UTC, _now, failure_record
from .function import FunctionBinding, FunctionTask

__all__ = ["InProcessSyncTask"]

log = logging.getLogger("pdtnb.task")


class InProcessSyncTask(FunctionTask):
    """Runs ``async def body(job, LINK...)`` to completion during the launch phase.

    Use it as a decorator::

        @InProcessSyncTask("summary", done_repo)
        async def summary(job, books, reports): ...

    Each job's outcome goes to ``done`` (linked as status, inhibiting restart): ``result`` is
    ``success`` or ``exception`` with the exception and traceback, plus start and end times. A job
    that raised is therefore not retried until its ``done`` entry is removed (``rm``).
    """

    poll_interval = None  # nothing outlives a launch

    def __init__(
        self,
        name: str,
        done: MetadataRepository,
        ready: Repository | None = None,
        func: Callable[..., Any] | None = None,
    ):
        super().__init__(name, ready=ready)
        self.done = done
        self._binding = FunctionBinding(self, func)
        self.link("done", done, is_status=True, inhibits_start=True, required_for_output=True)

    async def update(self) -> bool:
        return False

    async def launch(self, job: str) -> None:
        start = _now(_UTC)
        binding = self._binding
        try:
            # binding.call(job), inlined: this is the per-job hot path of in-process pipelines.
            await (binding.partial(job=job) if binding._wants_job else binding.partial())
        except Exception as e:
            log.info("in-process task %s:%s failed: %r", self.name, job, e)
            record = failure_record(e, start, phase="run")
        else:
            record = {"result": "success", "start_time": start, "end_time": _now(_UTC)}
        if self.metadata:
            await self.done.dump(job, record)
