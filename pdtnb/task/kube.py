"""KubeTask and KubeFunctionTask: each job is a Kubernetes pod rendered from a jinja2 template.

Lifecycle of a job
------------------
1. **launch**: render the template (``job``, ``task``, ``env`` and every linked repository's
   ``info(job)`` the template mentions; StrictUndefined) and parse it as YAML; check it is a
   single ``Pod`` whose ``restartPolicy`` is ``Never`` or absent (set to ``Never``, as pydatatask
   does; TaskConfigError for any other value, before anything is created); reserve the
   containers' CPU and memory *requests* (plus one launch, counted for ``window``) from the
   ResourceManager (refused: ``launch`` returns False); create the pod. The pod's annotations
   carry what the reap needs, whichever pipeline does it: the launch time
   (``pdtnb/start-time``), the attempt number (``pdtnb/attempt``) and ``pdtnb/metadata: "false"``
   for a launch that records nothing.
2. **update** (every round): the task's pods are listed (the cluster is the source of truth, so a
   restarted pipeline picks up its predecessor's pods). A ``Succeeded`` or ``Failed`` pod is
   reaped: its logs go to ``logs`` (and their last 4 KiB into the record's ``stdout_tail``),
   ``done`` gets its job record (:mod:`pdtnb.record`: outcome, exit code, the pod's or container's
   reason such as ``Evicted`` or ``OOMKilled``, message, times, the node as ``host``, and ``phase``,
   ``image``, ``node`` and ``pod``), the pod is deleted and its resources returned. A pod that
   vanished without being reaped is recorded as failed, unless its end is already recorded (by
   another pipeline, or by :meth:`KubeTask.kill`). A pod running longer than ``timeout`` is handed
   to :meth:`KubeTask.handle_timeout` (default: record it as ``timeout``, keeping its logs, and
   delete it).
3. **kill**: the pod is annotated ``pdtnb/killed: request``, recorded as ``killed`` and deleted;
   whichever pipeline later finds it (still there, or gone) keeps that record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import InvalidJobIdError, KubeConnectionError, TaskConfigError
from ..record import JobRecord, Outcome, as_time, host_name, read_record, record_from_exception, tail_text
from ..repository.base import BlobRepository, MetadataRepository, Repository
from ..repository.kube import LiveKubeRepository
from ..resources import ResourceManager, Resources, parse_quantity
from ..retry import Retry
from .base import (
    DEFAULT_LAUNCH,
    LaunchOptions,
    check_type,
    utcnow,
)
from .external import ExternalJobTask
from .function import FunctionBinding, FunctionTask
from .template import JobTemplate

if TYPE_CHECKING:
    from ..managers.pod import PodManager

__all__ = ["KubeTask", "KubeFunctionTask"]

log = logging.getLogger("pdtnb.task")

START_ANNOTATION = "pdtnb/start-time"
#: The attempt number of the job the pod runs (1 for a first launch).
ATTEMPT_ANNOTATION = "pdtnb/attempt"
#: ``"false"`` on a pod launched with ``metadata=False``: its end is not recorded.
METADATA_ANNOTATION = "pdtnb/metadata"
#: ``"request"`` on a pod being killed: whoever finds it records the job as ``killed``.
KILLED_ANNOTATION = "pdtnb/killed"
#: The fingerprint of what the pod runs (:mod:`pdtnb.fingerprint`), and its parts as JSON.
FINGERPRINT_ANNOTATION = "pdtnb/fingerprint"
FINGERPRINT_PARTS_ANNOTATION = "pdtnb/fingerprint-parts"
_SAFE_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
#: Records of the same pod carry its launch time; stores may keep it to the millisecond only.
_SAME_START = timedelta(milliseconds=1)


def pod_requests(manifest: dict[str, Any]) -> Resources:
    """The sum of the containers' CPU and memory requests (limits when a request is absent)."""
    cpu = parse_quantity(0)
    mem = parse_quantity(0)
    for c in (manifest.get("spec") or {}).get("containers") or []:
        res = (c or {}).get("resources") or {}
        req = res.get("requests") or {}
        lim = res.get("limits") or {}
        cpu += parse_quantity(req.get("cpu", lim.get("cpu", 0)))
        mem += parse_quantity(req.get("memory", lim.get("memory", 0)))
    return Resources(cpu, mem)


def _pod_requests_obj(pod: Any) -> Resources:
    cpu = parse_quantity(0)
    mem = parse_quantity(0)
    for c in (pod.spec.containers if pod.spec is not None else None) or []:
        res = c.resources
        req = (res.requests if res is not None else None) or {}
        lim = (res.limits if res is not None else None) or {}
        cpu += parse_quantity(req.get("cpu", lim.get("cpu", 0)))
        mem += parse_quantity(req.get("memory", lim.get("memory", 0)))
    return Resources(cpu, mem)


class KubeTask(ExternalJobTask):
    """Runs a pod per job (pydatatask 0.4's signature).

    ``podman`` is a callable returning the :class:`~pdtnb.managers.pod.PodManager` (usually a
    session resource). ``resources`` is the ResourceManager the pods' requests are reserved from.
    ``template`` is jinja2 source of a YAML pod manifest, or the path of a file holding it.
    ``logs`` receives each pod's logs; ``done`` its job record. ``window`` is how long a launch
    counts against the quota's ``launches``; ``timeout`` (timedelta or seconds) bounds a pod's run
    time. ``env`` is available to the template as ``env``. ``live`` is linked automatically.
    ``retry`` (a :class:`~pdtnb.Retry`) relaunches failed jobs; besides exit codes it can name the
    pod's reason, e.g. ``Retry(on=("Evicted", "OOMKilled"))``.
    """

    poll_interval: float | None = 1.0
    done_link = "done"
    live_link = "live"

    def __init__(
        self,
        name: str,
        podman: Callable[[], PodManager],
        resources: ResourceManager,
        template: str | os.PathLike[str],
        logs: BlobRepository | None,
        done: MetadataRepository | None,
        window: timedelta = timedelta(minutes=1),
        timeout: timedelta | float | None = None,
        env: dict[str, Any] | None = None,
        ready: Repository | None = None,
        *,
        retry: Retry | None = None,
        hooks: Iterable[Any] = (),
        rerun_outdated: bool = False,
    ):
        super().__init__(
            name,
            ready=ready,
            retry=retry,
            hooks=hooks,
            window=window,
            timeout=timeout,
            rerun_outdated=rerun_outdated,
        )
        if not callable(podman):
            raise TypeError(f"task {name!r}: podman must be a callable returning a PodManager")
        check_type(name, "resources", resources, ResourceManager, "a ResourceManager", optional=False)
        check_type(name, "logs", logs, BlobRepository, "a BlobRepository")
        check_type(name, "done", done, MetadataRepository, "a MetadataRepository")
        self._podman = podman
        self.resource_manager = resources
        self.template = template
        self.logs = logs
        self.done = done
        self.env = dict(env or {})
        self._template = JobTemplate(name, template)
        # job -> (pod name, reserved resources) for the pods this task knows about
        self._known: dict[str, tuple[str, Resources]] = {}
        # job -> the pod as last seen (its annotations say how to record it if it vanishes)
        self._pods: dict[str, Any] = {}
        self._loaded = False
        self._starting: list[Resources] = []

        resources.register(self._get_load)
        self.link("live", LiveKubeRepository(self), is_status=True, inhibits_start=True, inhibits_output=True)
        if logs is not None:
            self.link("logs", logs, is_output=True)
        if done is not None:
            self.link("done", done, is_status=True, required_for_output=True, inhibits_start=True)

    @property
    def podman(self) -> PodManager:
        """The pod manager."""
        return self._podman()

    # ---- template ----------------------------------------------------------------------------

    def fingerprint_parts(self) -> dict[str, str] | None:
        """The manifest template without its comments, and ``env``."""
        return self._template.fingerprint_parts(self.env)

    async def _template_values(self, job: str) -> dict[str, Any]:
        """What the template gets besides the links' values."""
        return {"job": job, "task": self.name, "env": self.env}

    async def render(self, job: str) -> dict[str, Any]:
        """The pod manifest for ``job``, checked to be a single Pod with ``restartPolicy: Never``."""
        text = await self._template.render(job, self.links, await self._template_values(job))
        return self.check_manifest(job, text)

    def check_manifest(self, job: str, text: str) -> dict[str, Any]:
        where = f"task {self.name!r}, job {job!r}"
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as e:
            raise TaskConfigError(f"{where}: the rendered template is not valid YAML: {e}") from None
        if len(docs) != 1:
            raise TaskConfigError(
                f"{where}: the rendered template must hold exactly one Pod manifest, not {len(docs)} documents"
            )
        manifest = docs[0]
        if not isinstance(manifest, dict):
            raise TaskConfigError(f"{where}: the rendered template is not a mapping (a Pod manifest): {manifest!r}")
        kind = manifest.get("kind")
        if kind != "Pod":
            raise TaskConfigError(f"{where}: the rendered manifest must be of kind Pod, not {kind!r}")
        manifest.setdefault("apiVersion", "v1")
        spec = manifest.get("spec")
        if not isinstance(spec, dict) or not spec.get("containers"):
            raise TaskConfigError(f"{where}: the rendered Pod has no spec.containers")
        # pydatatask sets restartPolicy: Never itself, so its templates usually leave it out:
        # absent (or null) means Never here too; anything else would restart a finished job.
        policy = spec.get("restartPolicy")
        if policy is None:
            spec["restartPolicy"] = "Never"
        elif policy != "Never":
            raise TaskConfigError(
                f"{where}: the rendered Pod must have spec.restartPolicy: Never (it has {policy!r}; "
                "leave it out to get Never), or a finished job would be restarted instead of reaped"
            )
        try:
            pod_requests(manifest)
        except Exception as e:
            raise TaskConfigError(f"{where}: the rendered Pod has an invalid resource quantity: {e}") from e
        return manifest

    # ---- resources ---------------------------------------------------------------------------

    async def _get_load(self) -> Resources:
        if not self._loaded:
            try:
                await self._refresh()
            except KubeConnectionError as e:
                log.warning("task %s: %s", self.name, e)
            except Exception:
                log.exception("task %s: could not list its pods", self.name)
        total = Resources(launches=self.recent_launches() + len(self._starting))
        for _, res in self._known.values():
            total = total + Resources(res.cpu, res.mem, 0)
        for res in self._starting:
            total = total + Resources(res.cpu, res.mem, 0)
        return total

    async def _refresh(self) -> dict[str, Any]:
        """job -> pod, for the task's pods on the cluster; adopts pods it did not know about."""
        from ..managers.pod import job_of

        pods = await self.podman.query(task=self.name)
        view: dict[str, Any] = {}
        for pod in pods:
            job = job_of(pod)
            if job is None:
                continue
            view[job] = pod
            if job not in self._known:
                self._known[job] = (pod.metadata.name, _pod_requests_obj(pod))
            self._pods[job] = pod
        self._loaded = True
        return view

    # ---- launch ------------------------------------------------------------------------------

    def _check_job(self, job: str) -> None:
        """Refuse a job id that could change the meaning of the rendered YAML or of a command in
        it (quotes, newlines, spaces, ``{``...): whatever a repository's CHARSET allows, a pod's
        job id is letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit."""
        if not isinstance(job, str) or not _SAFE_JOB_ID.fullmatch(job):
            raise InvalidJobIdError(job, f"task {self.name!r} (a Kubernetes pod)")
        if self.done is not None:
            self.done.check_job_id(job)

    async def launch(self, job: str, options: LaunchOptions = DEFAULT_LAUNCH) -> bool | None:
        """Create ``job``'s pod; False if the quota refused it. Errors leave no pod and no reservation.

        With ``options.sync`` (or ``synchronous`` set) it waits for the pod to end and reaps it."""
        self._check_job(job)
        manifest = await self.render(job)  # before anything is reserved or created
        started = await self._launch_manifest(job, manifest, options)
        if started is None and (self.synchronous or options.sync):
            await self._wait_and_reap(job)
        return started

    async def _launch_manifest(
        self, job: str, manifest: dict[str, Any], options: LaunchOptions = DEFAULT_LAUNCH
    ) -> bool | None:
        if not self._loaded:
            await self._refresh()
        if job in self._known:
            return None
        request = pod_requests(manifest)
        limit = await self.resource_manager.reserve(request)
        if limit is not None:
            log.debug("task %s: not launching %s: %s quota reached", self.name, job, limit.name)
            return False
        start = utcnow()
        meta = manifest.setdefault("metadata", {})
        annotations = meta.setdefault("annotations", {})
        annotations[START_ANNOTATION] = start.isoformat()
        annotations[ATTEMPT_ANNOTATION] = str(options.attempt)
        printed = self.launch_print
        if printed is not None:
            annotations[FINGERPRINT_ANNOTATION] = printed.digest
            annotations[FINGERPRINT_PARTS_ANNOTATION] = json.dumps(dict(printed.parts), separators=(",", ":"))
        if not options.metadata:
            annotations[METADATA_ANNOTATION] = "false"
        self._starting.append(request)
        try:
            pod = await self.podman.launch(job, self.name, manifest)
        except BaseException:
            await self.resource_manager.relinquish(request)
            raise
        finally:
            self._starting.remove(request)
        self._known[job] = (pod.metadata.name, request)
        self._pods[job] = pod
        self.note_launch()
        return None

    async def _wait_and_reap(self, job: str) -> None:
        """Synchronous mode: poll ``job``'s pod until it ends (handling its timeout), then reap it."""
        from ..managers.pod import job_of

        delay = 0.02
        while job in self._known:
            if not self.is_reaping(job):
                pods = [p for p in await self.podman.query(job=job, task=self.name) if job_of(p) == job]
                if not pods:
                    await self._vanished(job)
                    return
                pod = pods[0]
                self._pods[job] = pod
                phase = pod.status.phase if pod.status is not None else None
                start = self._start_time(pod)
                if phase in ("Succeeded", "Failed") or _killed(pod):
                    await self.reap_safely(job, pod)
                    continue
                deadline = self.deadline(start)
                if deadline is not None and utcnow() >= deadline:
                    await self._timeout_safely(job, pod)
                    continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_interval or 1.0)
        self.notify()

    # ---- kill --------------------------------------------------------------------------------

    async def kill(self, job: str) -> bool:
        """Kill ``job``'s pod and record the job as ``killed``; False if it has no live pod.

        The pod is annotated ``pdtnb/killed: request`` first and the record written before the
        pod is deleted, so a pipeline that finds the pod meanwhile (still there, ended, or gone)
        records it as killed too, or keeps the record, never a failure."""
        for _ in range(3000):  # being reaped here (at most 30 s): see how that ends first
            if not self.is_reaping(job):
                break
            await asyncio.sleep(0.01)
        with self.handling(job):
            marked = await self._mark_killed(job)
            if not marked:
                return False
            pod = marked[0]
            text = await self._collect_logs(job, pod, quiet=True)
            record = self._new_record(job, pod, Outcome.KILLED, reason="killed by request", logs=text)
            await self._write(job, pod, record)
            for each in marked:
                await self.podman.delete(each)
            await self._forget(job)
        self.forget_attempts(job)
        self.notify()
        return True

    async def request_kill(self, job: str) -> bool:
        """Annotate ``job``'s pods ``pdtnb/killed: request``: the controller running the pipeline
        reaps an annotated pod at its next round, recording the job as killed and deleting it."""
        return bool(await self._mark_killed(job))

    async def _mark_killed(self, job: str) -> list[Any]:
        from kubernetes_asyncio.client.exceptions import ApiException

        from ..managers.pod import job_of

        marked = []
        for pod in [p for p in await self.podman.query(job=job, task=self.name) if job_of(p) == job]:
            try:
                await self._annotate(pod, {KILLED_ANNOTATION: "request"})
            except ApiException as e:
                if e.status != 404:
                    raise
                continue  # gone meanwhile (reaped by another pipeline)
            marked.append(pod)
        return marked

    async def _annotate(self, pod: Any, annotations: dict[str, str]) -> None:
        await self.podman.annotate(pod, annotations)

    # ---- update ------------------------------------------------------------------------------

    def _start_time(self, pod: Any) -> datetime | None:
        ann = pod.metadata.annotations or {}
        return (
            as_time(ann.get(START_ANNOTATION))
            or as_time(pod.status.start_time if pod.status is not None else None)
            or as_time(pod.metadata.creation_timestamp)
        )

    async def update(self) -> bool:
        try:
            view = await self._refresh()
        except KubeConnectionError as e:  # one line: the message names the server; retried next round
            log.warning("task %s: %s", self.name, e)
            return True
        except Exception:
            log.exception("task %s: could not list its pods", self.name)
            return True
        for job in [j for j in self._known if j not in view and not self.is_reaping(j)]:
            try:
                await self._vanished(job)
            except KubeConnectionError as e:
                log.warning("task %s: %s", self.name, e)
            except Exception:
                log.exception("task %s: could not record that the pod of job %s vanished", self.name, job)
        if not view:
            return False
        now = utcnow()
        todo: list[Coroutine[Any, Any, object]] = []
        for job, pod in view.items():
            if self.is_reaping(job):
                continue
            phase = pod.status.phase if pod.status is not None else None
            if phase in ("Succeeded", "Failed") or _killed(pod):
                todo.append(self.reap_safely(job, pod))
                continue
            deadline = self.deadline(self._start_time(pod))
            if deadline is not None and now >= deadline:
                todo.append(self._timeout_safely(job, pod))
        if todo:
            await asyncio.gather(*todo)
            self.notify()
            self.raise_storage_fault()  # a reap met a full disk: the run stops, the pod stays
        return True

    def reap_error(self, job: str, exc: Exception) -> bool:
        """An unreachable API server says nothing about the pod: it does not count as an attempt."""
        if isinstance(exc, KubeConnectionError):
            log.warning("task %s: could not reap job %s: the API server is unreachable; will retry", self.name, job)
            return False
        return True

    async def give_up(self, job: str, pod: Any, exc: Exception) -> bool:
        reason = f"the pod ended but its results could not be collected: {exc!r}"
        try:
            text = None
            try:
                text = await self.podman.logs(pod)
            except Exception:
                pass
            record = self._new_record(job, pod, Outcome.FAILURE, logs=text)
            record.reason = reason
        except Exception:
            record = JobRecord(Outcome.FAILURE, end_time=utcnow(), reason=reason)
        try:
            await self._finish(job, pod, record)
        except Exception:
            log.exception("task %s: could not record the failure of job %s either; its pod is kept", self.name, job)
            return False
        return True

    async def _timeout_safely(self, job: str, pod: Any) -> None:
        with self.handling(job):
            try:
                await self.handle_timeout(pod)
            except Exception:
                log.exception("task %s: could not handle the timeout of job %s", self.name, job)

    def _new_record(
        self,
        job: str,
        pod: Any,
        outcome: Outcome | None = None,
        reason: str | None = None,
        logs: str | None = None,
    ) -> JobRecord:
        """The job record of ``pod`` as it is now: ``outcome`` (default: success when the pod
        succeeded and every container exited 0, else failure), its exit code, reason and message
        (the pod's, else those of the container that failed), its times, its node (as ``host``),
        the tail of ``logs``, and ``phase``, ``image``, ``node`` and ``pod`` in ``extra``."""
        status = pod.status
        phase = status.phase if status is not None else None
        exit_code: int | None = None
        end_time: datetime | None = None
        term_reason: str | None = None
        term_message: str | None = None
        waiting: tuple[str | None, str | None] | None = None
        statuses = [(False, cs) for cs in (status.container_statuses if status is not None else None) or []]
        statuses += [(True, cs) for cs in (status.init_container_statuses if status is not None else None) or []]
        for is_init, cs in statuses:
            state = cs.state
            term = state.terminated if state is not None else None
            if term is None:
                wait = state.waiting if state is not None else None
                if wait is not None and wait.reason and waiting is None:
                    waiting = (wait.reason, wait.message)
                continue
            code = term.exit_code
            if is_init and not code:
                continue  # an init container that did its job says nothing about the pod's end
            if exit_code is None or (code and not exit_code):  # the first failing container's
                exit_code = code
                term_reason, term_message = term.reason, term.message
            end_time = max(filter(None, [end_time, as_time(term.finished_at)]), default=None)
        images = [c.image for c in (pod.spec.containers or [])] if pod.spec is not None else []
        node = pod.spec.node_name if pod.spec is not None else None
        if outcome is None:
            ok = phase == "Succeeded" and (exit_code is None or exit_code == 0)
            outcome = Outcome.SUCCESS if ok else Outcome.FAILURE
        start_time = self._start_time(pod)
        end_time = end_time or utcnow()
        if start_time is not None and end_time < start_time:
            # Kubernetes keeps finish times to the second and the launch time is ours, to the
            # microsecond: a pod ending within its first second would seem to end before it began.
            end_time = start_time
        pod_reason = status.reason if status is not None else None
        found_reason = pod_reason
        message = status.message if status is not None else None
        if outcome is not Outcome.SUCCESS:
            if found_reason is None and term_reason not in (None, "Completed"):
                found_reason = term_reason
            if found_reason is None and waiting is not None:
                found_reason = waiting[0]  # never started: ErrImagePull, CreateContainerConfigError...
            if message is None:
                message = term_message or (waiting[1] if waiting is not None else None)
        extra: dict[str, Any] = {
            "phase": phase,
            "image": images[0] if len(images) == 1 else images,
            "node": node,
            "pod": pod.metadata.name,
        }
        if reason is not None and found_reason is not None and found_reason != reason:
            extra["pod_reason"] = found_reason  # the reason given overrides it; Retry(on=...) still sees it
        annotations = (pod.metadata.annotations if pod.metadata is not None else None) or {}
        # The code the pod was launched with ("" when its launcher kept none: not today's).
        fingerprint = str(annotations.get(FINGERPRINT_ANNOTATION) or "")
        try:
            parts = json.loads(annotations.get(FINGERPRINT_PARTS_ANNOTATION) or "{}")
        except ValueError:
            parts = {}
        return JobRecord(
            outcome,
            start_time=start_time,
            end_time=end_time,
            host=node,
            exit_code=exit_code,
            reason=reason or found_reason,
            message=message,
            stdout_tail=tail_text(logs),
            extra=extra,
            fingerprint=fingerprint,
            fingerprint_parts={str(k): str(v) for k, v in parts.items()} if isinstance(parts, dict) else {},
        )

    async def _collect_logs(self, job: str, pod: Any, quiet: bool = False) -> str | None:
        """Read the pod's logs, store them in ``logs`` (if the task has it) and return them (None
        when they cannot be read: the record then has no ``stdout_tail``)."""
        try:
            text: str | None = await self.podman.logs(pod)
        except KubeConnectionError:
            if quiet:
                return None
            raise  # the pod is reaped on a later round, logs and all
        except Exception as e:
            level = logging.WARNING if self.logs is not None and not quiet else logging.DEBUG
            log.log(level, "task %s: could not read the logs of job %s: %r", self.name, job, e)
            text = None
        if self.logs is not None:
            try:
                async with await self.logs.open(job, "w") as fp:
                    await fp.write(text or "")
            except Exception:
                if not quiet:
                    raise
                log.warning("task %s: could not store the logs of job %s", self.name, job, exc_info=True)
        return text

    async def _write(self, job: str, pod: Any, record: JobRecord) -> None:
        """Write ``pod``'s record through the one writer, with the attempt the pod ran (from its
        annotations, so any pipeline reaping it numbers it right)."""
        ann = pod.metadata.annotations or {}
        metadata = ann.get(METADATA_ANNOTATION) != "false"
        options = DEFAULT_LAUNCH if metadata else LaunchOptions(metadata=False)
        try:
            attempt = int(ann.get(ATTEMPT_ANNOTATION) or 1)
        except ValueError:
            attempt = 1
        if attempt > 1:
            record.attempt = attempt
            previous = await self.previous_record(job)
            if previous is not None and previous.attempt < attempt:
                options = LaunchOptions(metadata=metadata, previous=previous)
        await self.write_record(job, record, None, options)

    async def _finish(self, job: str, pod: Any, record: JobRecord) -> None:
        await self._write(job, pod, record)
        await self.podman.delete(pod)
        await self._forget(job)

    async def _forget(self, job: str) -> None:
        self._pods.pop(job, None)
        entry = self._known.pop(job, None)
        if entry is not None:
            await self.resource_manager.relinquish(entry[1])

    async def reap(self, job: str, pod: Any) -> None:
        text = await self._collect_logs(job, pod)
        if _killed(pod):
            record = self._new_record(job, pod, Outcome.KILLED, reason="killed by request", logs=text)
        else:
            record = self._new_record(job, pod, logs=text)
        await self._finish(job, pod, record)

    async def _recorded(self, job: str, pod: Any) -> bool:
        """Whether ``done`` already holds the record of this very pod (written by another
        pipeline that reaped it, or by :meth:`kill`)."""
        start = self._start_time(pod) if pod is not None else None
        if self.done is None or start is None or not await self.done.contains(job):
            return False
        try:
            record = read_record(await self.done.info(job))
        except Exception:
            return False
        return record.start_time is not None and abs(record.start_time - start) <= _SAME_START

    async def _vanished(self, job: str) -> None:
        from ..managers.pod import job_of

        pod = self._pods.get(job)
        if await self._recorded(job, pod):
            log.debug("task %s: the pod of job %s is gone and its end already recorded", self.name, job)
            await self._forget(job)
            return
        # A pod being deleted (its grace period) is not listed; one marked killed was killed by
        # request, by a pipeline that did not get to record it.
        dying = [
            p for p in await self.podman.query(job=job, task=self.name, include_terminating=True) if job_of(p) == job
        ]
        killed = next((p for p in dying if _killed(p)), None)
        if killed is None and pod is not None and _killed(pod):
            killed = pod
        if killed is not None:
            record = self._new_record(job, killed, Outcome.KILLED, reason="killed by request")
            await self._write(job, killed, record)
            await self._forget(job)
            return
        log.warning("task %s: the pod of job %s vanished before it was reaped", self.name, job)
        record = JobRecord(
            Outcome.FAILURE,
            start_time=self._start_time(pod) if pod is not None else None,
            end_time=utcnow(),
            reason="vanished: the pod disappeared from the cluster before it finished",
            extra={"phase": None, "pod": pod.metadata.name if pod is not None else None},
        )
        if pod is not None:
            await self._write(job, pod, record)
        else:
            await self.write_record(job, record)
        await self._forget(job)

    async def handle_timeout(self, pod: Any) -> None:
        """Called for a pod running longer than ``timeout``. Default: keep its logs, record it as
        ``timeout`` (``timed_out`` set) and delete it. Override to do something else."""
        from ..managers.pod import job_of

        job = job_of(pod)
        assert job is not None, "the task's pods are annotated with their job"
        text = await self._collect_logs(job, pod)
        record = self._new_record(
            job, pod, Outcome.TIMEOUT, reason=f"timeout: ran longer than {self.timeout}", logs=text
        )
        record.extra["timed_out"] = True
        await self._finish(job, pod, record)

    # ---- the live repository (:class:`~pdtnb.repository.kube.PodJobs`) -------------------------

    async def live_pods(self) -> list[Any]:
        """The task's pod objects on the cluster (any phase: a finished pod stays until it is reaped)."""
        return await self.podman.query(task=self.name)

    async def live_job_ids(self) -> set[str]:
        """The jobs the task's pods run, by their job label (a pod without one is not a job's)."""
        from ..managers.pod import job_of

        return {j for j in (job_of(p) for p in await self.live_pods()) if j is not None}

    async def has_live_pod(self, job: str) -> bool:
        """Whether the cluster has a pod of this task labelled with ``job``."""
        return bool(await self.podman.query(job=job, task=self.name))

    async def delete(self, job_or_pod: Any) -> None:
        """Kill a job's pod and return its resources without marking it done."""
        from ..managers.pod import job_of

        if isinstance(job_or_pod, str):
            job = job_or_pod
            pods = await self.podman.query(job=job, task=self.name)
        else:
            pod_job = job_of(job_or_pod)
            assert pod_job is not None, "the task's pods are annotated with their job"
            job = pod_job
            pods = [job_or_pod]
        with self.handling(job):
            for pod in pods:
                await self.podman.delete(pod)
            await self._forget(job)


def _killed(pod: Any) -> bool:
    """Whether ``pod`` was marked to be killed by request."""
    return bool((pod.metadata.annotations or {}).get(KILLED_ANNOTATION))


#: Set in a KubeFunctionTask's pod to ``TASK/JOB``: the pod's ``launch --sync`` of that job is the
#: job itself, not a second controller (see :func:`runs_its_own_pod_job`).
FUNCTION_JOB_ENV = "PDTNB_FUNCTION_JOB"


def runs_its_own_pod_job(task: str, job: str) -> bool:
    """Whether this process is the pod a :class:`KubeFunctionTask` created for ``task``'s ``job``,
    running that job's body: the controller that created the pod holds the pipeline's lease, so
    the pod's ``launch --sync`` of that one job acts without taking it (any other command, or
    another job, in the pod is a second controller and waits for the lease as usual)."""
    return os.environ.get(FUNCTION_JOB_ENV) == f"{task}/{job}"


class KubeFunctionTask(KubeTask, FunctionTask):
    """Runs a Python function in a pod (pydatatask 0.4's signature). Usable as a decorator.

    The pod template must run this pipeline's CLI as ``python3 {{argv0}} launch {{task}} {{job}}
    --force --sync``; there (``options.sync``, or ``synchronous`` set) :meth:`launch` calls the
    function in-process and records ``func_done``; in the pipeline it creates the pod like a KubeTask. ``kube_done`` is
    linked as ``done`` and ``func_done`` as ``func_done`` (both ``is_status, inhibits_start,
    required_for_output``); the template also gets ``argv0``: ``script`` when given, else the file
    name of the running script. From a notebook there is no such script (the kernel's argv[0] is
    ``ipykernel_launcher.py``), so a launch there fails with a clear error unless ``script`` names
    the script the pod holds (the one ``%pdt export`` writes). Both records are job records
    (:mod:`pdtnb.record`): ``func_done`` the function's (its exception, traceback and frames when
    it raised), ``kube_done`` the pod's; ``retry`` relaunches the pod.
    """

    def __init__(
        self,
        name: str,
        podman: Callable[[], PodManager],
        resources: ResourceManager,
        template: str | os.PathLike[str],
        logs: BlobRepository | None = None,
        kube_done: MetadataRepository | None = None,
        func_done: MetadataRepository | None = None,
        env: dict[str, Any] | None = None,
        func: Callable[..., Any] | None = None,
        ready: Repository | None = None,
        *,
        script: str | None = None,
        retry: Retry | None = None,
        hooks: Iterable[Any] = (),
        rerun_outdated: bool = False,
    ):
        super().__init__(
            name,
            podman,
            resources,
            template,
            logs,
            kube_done,
            env=env,
            ready=ready,
            retry=retry,
            hooks=hooks,
            rerun_outdated=rerun_outdated,
        )
        check_type(name, "func_done", func_done, MetadataRepository, "a MetadataRepository")
        self.func_done = func_done
        if func_done is not None:
            self.link("func_done", func_done, is_status=True, required_for_output=True, inhibits_start=True)
        self._binding = FunctionBinding(self, func)
        self.script = script

    def fingerprint_parts(self) -> dict[str, str] | None:
        """The function's parts and the pod template's (:mod:`pdtnb.fingerprint`)."""
        parts = dict(KubeTask.fingerprint_parts(self) or {})
        parts.update(FunctionTask.fingerprint_parts(self) or {})
        return parts

    async def validate(self) -> None:
        await super().validate()  # FunctionTask's: binds the function's parameters to links
        if self.done is None and self.func_done is None and self.logs is None:
            log.warning(
                "task %r has neither kube_done, func_done nor logs: a finished job is launched again", self.name
            )

    async def render(self, job: str) -> dict[str, Any]:
        """The pod manifest, each container given ``PDTNB_FUNCTION_JOB=TASK/JOB``: the pod's
        ``launch TASK JOB --sync`` is then known to be this job's body, run for the controller
        that created the pod, and does not wait for the lease that controller holds."""
        manifest = await super().render(job)
        for container in manifest["spec"]["containers"]:
            env = container.setdefault("env", [])
            named = {e.get("name") for e in env if isinstance(e, dict)} if isinstance(env, list) else {FUNCTION_JOB_ENV}
            if FUNCTION_JOB_ENV not in named:
                env.append({"name": FUNCTION_JOB_ENV, "value": f"{self.name}/{job}"})
        return manifest

    async def _template_values(self, job: str) -> dict[str, Any]:
        import sys

        values = await super()._template_values(job)
        if self.script is not None:
            values["argv0"] = self.script
            return values
        argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        if not argv0 or argv0 in ("ipykernel_launcher.py", "__main__.py", "-c"):
            raise TaskConfigError(
                f"task {self.name!r}, job {job!r}: the pod must run this pipeline's script, but this process "
                f"was not started from one (sys.argv[0] is {sys.argv[0] if sys.argv else ''!r}, e.g. a Jupyter "
                "kernel); pass script='pipeline.py' (the script `%pdt export` writes) to KubeFunctionTask"
            )
        values["argv0"] = argv0
        return values

    async def record_failure(
        self, job: str, exc: BaseException, phase: str = "launch", options: LaunchOptions = DEFAULT_LAUNCH
    ) -> bool:
        if not (self.synchronous or options.sync):
            return await super().record_failure(job, exc, phase, options)
        # Inside the pod: kube_done is the pipeline's record of the pod (written when it reaps
        # it); the body's failure is already in func_done.
        return False

    async def launch(self, job: str, options: LaunchOptions = DEFAULT_LAUNCH) -> bool | None:
        if not (self.synchronous or options.sync):
            return await super().launch(job, options)
        # Inside the pod: run the body here and record it in func_done, numbered like the pod's
        # attempt (``options.previous`` is the pod's previous record, read by the CLI's launch).
        start = utcnow()
        try:
            self._binding.bind()
            result = self._binding.call(job)
            if asyncio.iscoroutine(result):
                await result
        except (Exception, SystemExit) as e:
            if self.func_done is not None:
                record = record_from_exception(e, start, attempt=options.attempt)
                await self.write_record(job, record, e, options, repo=self.func_done)
            raise
        if self.func_done is not None:
            record = JobRecord(
                Outcome.SUCCESS, attempt=options.attempt, start_time=start, end_time=utcnow(), host=host_name()
            )
            await self.write_record(job, record, None, options, repo=self.func_done)
        return None
