"""Job bodies on a Dask cluster: :class:`DaskExecutor` and the :class:`DaskTask` convenience.

:class:`~pdtnb.ExecutorTask` runs its bodies in any :class:`concurrent.futures.Executor`, and a
``distributed.Client`` offers one (``client.get_executor()``); so a Dask cluster (a
``LocalCluster``, dask-kubernetes, dask-jobqueue on an HPC batch system) runs pdtnb job bodies
with nothing but the executor changed. ``ExecutorTask(name, client.get_executor(), done)`` and
``DaskTask(name, client_or_address, done)`` are the same task; the second reads better and can
connect to a scheduler address itself. Needs the ``dask`` extra (``pip install 'pdtnb[dask]'``).

Why a wrapper, not ``client.get_executor()`` as it is (an ExecutorTask given one switches to this
wrapper by itself):

- **Keys.** ``Client.submit`` names a task by a hash of its function and arguments (``pure``):
  the retry of a job, submitted with the same arguments while Dask still holds the failed
  attempt, would get that failure back instead of running again. Every attempt here is impure
  (``pure=False``), under a key naming its pdtnb task, which is what Dask's dashboard groups by.
- **Lost futures.** When the scheduler goes away the client cancels every future it holds (reason
  ``scheduler-connection-lost``), and ``get_executor()``'s futures then read as *cancelled*, which
  an ExecutorTask takes for its own ``kill`` and records nothing: the job would silently become
  ready again while the scheduler is gone. Here such a future fails with :class:`DaskJobLost`
  naming Dask's reason, so it is that job's failure record, retried under the task's ``Retry``.
  Only a cancellation pdtnb asked for (``kill``, Ctrl-C, ``run --timeout``) reads as cancelled.

What each failure becomes (all of them a failure record of that job, retried under ``Retry``):

- a body that raises: the exception, with the worker's traceback (Dask ships it back; an exception
  that cannot be pickled arrives as ``Exception(repr(exc))``);
- a worker that dies mid-job: Dask itself runs the job again on another worker until the
  scheduler's ``distributed.scheduler.allowed-failures`` (default 3) is used up, then the future
  fails with ``distributed.scheduler.KilledWorker``, which is what pdtnb records;
- the scheduler going away: :class:`DaskJobLost` (``scheduler-connection-lost``);
- a body, or a link argument, that cannot be pickled: ``submit`` raises, and the pipeline records
  the job's ``launch-error`` naming what could not be pickled. The body's *return value* never
  leaves the worker (pdtnb ignores it, as for every function task; only the end time comes back),
  so an unpicklable result is no failure: the same body succeeds here as in a thread (nor is the
  result fetched at all: a finished job's end time is when the client learned of it).

``kill TASK JOB`` cancels the job's Dask future: a job still queued never starts; a body already
running on a worker runs to its end there (Dask cannot interrupt a thread) and its outcome is
discarded. Quotas apply to what is submitted: an ExecutorTask given ``resource_manager`` and
``job_resources`` reserves them before submitting and holds them while the future is in flight,
so a ``ResourceManager`` whose quota mirrors the cluster (say ``cpu`` = its worker threads) keeps
pdtnb from flooding the scheduler's queue.

The body's link arguments are pickled to the worker (with cloudpickle): a worker sees a *copy* of
an in-memory repository, so a body that writes data should write to repositories every worker
reaches (files on a shared file system, S3, MongoDB). Futures live in the client, so in the
controlling process: a controller that exits or dies loses them, its live jobs get no record and
are ready again for the next controller (see docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import distributed

from ..errors import PdtnbError
from ..repository.base import MetadataRepository, Repository
from ..resources import ResourceManager, Resources
from ..retry import Retry
from .base import utcnow
from .executor import ExecutorTask

__all__ = ["DaskExecutor", "DaskJobLost", "DaskTask"]

log = logging.getLogger("pdtnb.task")


class DaskJobLost(PdtnbError):
    """A job's Dask future was cancelled by Dask, not by pdtnb (the scheduler went away, the client
    closed): the job's outcome is unknown, and it is recorded as a failure."""


class DaskExecutor(cf.Executor):
    """A :class:`concurrent.futures.Executor` submitting to a Dask cluster, for
    :class:`~pdtnb.ExecutorTask`.

    ``client_or_address`` is a ``distributed.Client``, or a scheduler address (``tcp://host:8786``)
    to connect to on first use (the client made then is closed by :meth:`shutdown`).
    ``submit_options`` go to every ``Client.submit`` (``workers``, ``resources``,
    ``allow_other_workers``, ``priority``): Dask's own placement and worker resources.
    """

    def __init__(self, client_or_address: distributed.Client | str, **submit_options: Any):
        for key in ("pure", "key"):
            if key in submit_options:
                raise TypeError(f"DaskExecutor does not take {key}=: every attempt is a new, impure Dask task")
        if isinstance(client_or_address, str):
            self.address: str | None = client_or_address
            self._client: distributed.Client | None = None
        elif isinstance(client_or_address, distributed.Client):
            self.address = None
            self._client = client_or_address
        else:
            raise TypeError(
                "DaskExecutor needs a distributed.Client or a scheduler address, "
                f"not {type(client_or_address).__name__}"
            )
        self._owns_client = self._client is None
        self._options = dict(submit_options)
        self._lock = threading.Lock()
        self._shutdown = False

    def __repr__(self) -> str:
        where = self.address if self._client is None else getattr(self._client.scheduler, "address", "?")
        return f"<DaskExecutor {where}>"

    @property
    def client(self) -> distributed.Client:
        """The client, connected now if this executor was given an address (blocks while it connects)."""
        with self._lock:
            if self._client is None:
                self._client = distributed.Client(self.address, set_as_default=False)
            return self._client

    async def connect(self) -> distributed.Client:
        """:attr:`client`, connecting in a thread (so the event loop is not blocked)."""
        if self._client is not None:
            return self._client
        return await asyncio.to_thread(lambda: self.client)

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address, or None (no dashboard, or not connected yet)."""
        return dashboard_link_of(self._client)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """``fn(*args, **kwargs)`` on a worker, as an impure Dask task; the returned future is
        cancelled only by its own ``cancel()`` (which cancels the Dask future): a cancellation by
        Dask fails it with :class:`DaskJobLost`."""
        return self.submit_named("pdtnb", fn, *args, **kwargs)

    def submit_named(self, name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """:meth:`submit` under a key starting with ``name`` (a pdtnb task's name, which Dask's
        dashboard shows the task stream grouped by)."""
        if self._shutdown:
            raise RuntimeError("cannot submit to a DaskExecutor that was shut down")
        client = self.client
        key = f"{_key_prefix(name)}-{uuid.uuid4().hex}"
        future = client.submit(fn, *args, key=key, pure=False, **self._options, **kwargs)
        loop = client.loop
        assert loop is not None, "a connected client has its loop"
        cf_future: cf.Future[Any] = cf.Future()
        cf_future.dask_key = key  # type: ignore[attr-defined]  # for kill's reason and the curious

        def cancel_dask(done: cf.Future[Any]) -> None:
            # Handed to the client's loop, never awaited here: a sync client's cancel() would block
            # the pipeline's loop on a round trip, an asynchronous client's would return a coroutine.
            if done.cancelled() and not future.cancelled():
                loop.add_callback(client._cancel, [future], "pdtnb-kill", "cancelled by pdtnb")

        cf_future.add_done_callback(cancel_dask)
        loop.add_callback(_cascade, future, cf_future)
        return cf_future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking submissions; close the client if this executor made it."""
        self._shutdown = True
        if self._owns_client and self._client is not None:
            self._client.close()


def _key_prefix(name: str) -> str:
    """``name`` as the start of a Dask key: Dask cuts a key's prefix at the first ``-`` before hex."""
    cleaned = "".join(c if c.isalnum() or c in "_." else "_" for c in name)
    return cleaned or "pdtnb"


async def _cascade(future: distributed.Future[Any], cf_future: cf.Future[Any]) -> None:
    """On the client's loop: hand the Dask future's outcome to ``cf_future``.

    A finished job's result is not fetched: the body's return value is ignored anyway, and a gather
    per job (client, scheduler, worker and back) cost more than the rest of Dask's work for a short
    job (bench/dask.py). The job's end time is when the client learned that it finished. A failure
    needs no gather: the exception and traceback came with the news. (These are the private
    ``FutureState.wait`` and ``Future._result`` that distributed's own ``get_executor()`` awaits
    here: ``await future`` would go through the sync client's ``sync()``, which must not be called
    from its own loop.)"""
    try:
        state = future._state
        assert state is not None, "a submitted future has its state"
        await state.wait()
        if future.status == "finished":
            _settle(cf_future, result=utcnow())
            return
        result = await future._result()  # raises the body's exception, KilledWorker, a cancellation
    except cf.CancelledError as e:  # distributed's FutureCancelledError
        if cf_future.cancelled():
            return  # pdtnb cancelled it (kill, Ctrl-C)
        reason = getattr(e, "reason", None) or "unknown"
        msg = getattr(e, "msg", None)
        _settle(
            cf_future,
            exception=DaskJobLost(
                f"Dask cancelled the job's future ({reason}{': ' + msg if msg else ''}); its outcome is unknown"
            ),
        )
    except asyncio.CancelledError:  # the client's own loop is stopping
        _settle(cf_future, exception=DaskJobLost("the Dask client stopped while the job ran; its outcome is unknown"))
    except BaseException as e:  # the body's exception (with the worker's traceback), KilledWorker...
        _settle(cf_future, exception=e)
    else:
        _settle(cf_future, result=result)


def _settle(cf_future: cf.Future[Any], *, result: Any = None, exception: BaseException | None = None) -> None:
    try:
        if exception is not None:
            cf_future.set_exception(exception)
        else:
            cf_future.set_result(result)
    except cf.InvalidStateError:
        pass  # cancelled by pdtnb meanwhile


def dashboard_link_of(client: Any) -> str | None:
    """``client.dashboard_link``, or None when the cluster has no dashboard."""
    if client is None:
        return None
    try:
        link = client.dashboard_link
    except Exception:
        return None
    return link if isinstance(link, str) and link.startswith(("http://", "https://")) else None


class DaskTask(ExecutorTask):
    """An :class:`~pdtnb.ExecutorTask` whose bodies run on a Dask cluster.

    ``client_or_address`` is a ``distributed.Client`` or a scheduler address (connected to when the
    pipeline opens). Everything else is ExecutorTask's: links ``live`` and ``done``, the body's
    link arguments, ``retry``, and the quota (``resource_manager`` and ``job_resources``, reserved
    per submitted job), ``hooks`` and ``rerun_outdated``. ``submit_options``
    (a dict) go to every ``Client.submit``: ``workers``, ``resources`` (Dask's worker resources),
    ``allow_other_workers``, ``priority``. See :mod:`pdtnb.task.dask` for what each failure
    becomes and what a controller restart does. Use it as a decorator like the other function
    tasks::

        @DaskTask("features", client, done)
        def features(job, raw, out): ...
    """

    def __init__(
        self,
        name: str,
        client_or_address: distributed.Client | str,
        done: MetadataRepository,
        ready: Repository | None = None,
        func: Callable[..., Any] | None = None,
        *,
        retry: Retry | None = None,
        resource_manager: ResourceManager | None = None,
        job_resources: Resources | None = None,
        submit_options: dict[str, Any] | None = None,
        hooks: Iterable[Any] = (),
        rerun_outdated: bool = False,
    ):
        executor = DaskExecutor(client_or_address, **(submit_options or {}))
        super().__init__(
            name,
            executor,
            done,
            ready=ready,
            func=func,
            retry=retry,
            resource_manager=resource_manager,
            job_resources=job_resources,
            hooks=hooks,
            rerun_outdated=rerun_outdated,
        )

    async def validate(self) -> None:
        await super().validate()
        await self.executor.connect()  # type: ignore[attr-defined]
