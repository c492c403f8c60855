"""PodManager: a shared connection to a Kubernetes API server, for :class:`~pdtnb.KubeTask`.

Pods are named ``<app>-<task>-<job>-<hash>`` (lowercased, invalid characters replaced, truncated to
63 characters; the hash of the exact ``app/task/job`` keeps case-distinct jobs distinct) and
labelled ``app``, ``task`` and ``job`` (label values are lowercased and sanitized the same way, so
the exact job id is also stored in the ``pdtnb/job`` annotation).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..errors import KubeConnectionError

__all__ = ["PodManager", "KubeConnectionError", "pod_name", "label_value"]

log = logging.getLogger("pdtnb.kube")
T = TypeVar("T")

JOB_ANNOTATION = "pdtnb/job"
TASK_ANNOTATION = "pdtnb/task"


def _sanitize(text: str, limit: int) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return s[:limit].strip("-")


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


def pod_name(app: str, task: str, job: str) -> str:
    """A valid (RFC 1123 label, <= 63 chars) pod name that is distinct for distinct (app, task, job)."""
    suffix = _digest(app, task, job)
    stem = _sanitize(f"{app}-{task}-{job}", 63 - len(suffix) - 1)
    return f"{stem}-{suffix}" if stem else f"pod-{suffix}"


def label_value(value: str) -> str:
    """A valid label value for ``value``: itself when it already is one, else sanitized plus a hash."""
    if re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", value):
        return value
    suffix = _digest(value)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")[: 63 - 9].strip("-_.")
    return f"{stem}-{suffix}" if stem else suffix


class PodManager:
    """Lets several tasks share one connection to a cluster (pydatatask's signature).

    ``config`` is a callable returning a ``kubernetes_asyncio.client.Configuration`` (it may be a
    coroutine function); None loads the default kube config (``load_kube_config``, falling back
    to the in-cluster config). The clients are created on first use.
    """

    def __init__(self, app: str, namespace: str, config: Callable[[], Any] | None = None):
        self.app = app
        self.namespace = namespace
        self._config_fn = config
        self._config: Any = None
        self._api: Any = None
        self._api_ws: Any = None
        self._v1: Any = None
        self._v1_ws: Any = None

    def __repr__(self) -> str:
        return f"<PodManager app={self.app!r} namespace={self.namespace!r}>"

    # ---- connection --------------------------------------------------------------------------

    async def _ensure(self) -> None:
        if self._api is not None:
            return
        from kubernetes_asyncio import client
        from kubernetes_asyncio import config as kconfig

        if self._config_fn is None:
            cfg = client.Configuration()
            try:
                await kconfig.load_kube_config(client_configuration=cfg)
            except Exception as e:
                try:
                    kconfig.load_incluster_config(client_configuration=cfg)
                except Exception:
                    raise KubeConnectionError(f"could not load a Kubernetes configuration: {e}") from e
        else:
            cfg = self._config_fn()
            if isinstance(cfg, Awaitable):
                cfg = await cfg
        self._config = cfg
        from kubernetes_asyncio.stream import WsApiClient

        self._api = client.ApiClient(configuration=cfg)
        self._api_ws = WsApiClient(configuration=cfg)
        self._v1 = client.CoreV1Api(self._api)
        self._v1_ws = client.CoreV1Api(self._api_ws)

    @property
    def host(self) -> str:
        return getattr(self._config, "host", None) or "<unconfigured>"

    def _need(self, attr: str) -> Any:
        value = getattr(self, attr)
        if value is None:
            raise RuntimeError(f"{self!r} is not connected yet: await one of its methods (or connect()) first")
        return value

    async def connect(self) -> PodManager:
        await self._ensure()
        return self

    @property
    def api(self) -> Any:
        return self._need("_api")

    @property
    def api_ws(self) -> Any:
        return self._need("_api_ws")

    @property
    def v1(self) -> Any:
        return self._need("_v1")

    @property
    def v1_ws(self) -> Any:
        return self._need("_v1_ws")

    async def close(self) -> None:
        """Close the network connections."""
        api, api_ws = self._api, self._api_ws
        self._api = self._api_ws = self._v1 = self._v1_ws = None
        for c in (api, api_ws):
            if c is not None:
                try:
                    await c.close()
                except Exception:
                    log.debug("closing a kube client failed", exc_info=True)

    async def _call(self, what: str, coro_fn: Callable[[], Awaitable[T]], idempotent: bool = True) -> T:
        """Run one API call; a connection failure becomes KubeConnectionError naming the server.

        An idempotent call (every call but create) is retried once at once when the server closed
        a kept-alive connection under it (``ServerDisconnectedError``): that race is routine with
        HTTP keep-alive, and not a sign that the server is down."""
        import aiohttp

        await self._ensure()
        for attempt in (1, 2):
            try:
                return await coro_fn()
            except aiohttp.ServerDisconnectedError as e:
                if idempotent and attempt == 1:
                    log.debug("%s: the API server closed the connection; retrying once", what)
                    continue
                raise KubeConnectionError(
                    f"cannot reach the Kubernetes API server at {self.host} to {what}: "
                    f"the server closed the connection ({e!r})"
                ) from e
            except (aiohttp.ClientConnectionError, OSError) as e:
                raise KubeConnectionError(
                    f"cannot reach the Kubernetes API server at {self.host} to {what}: {str(e) or type(e).__name__}"
                ) from e
        raise AssertionError("unreachable")

    # ---- pods --------------------------------------------------------------------------------

    def _selector(self, job: str | None = None, task: str | None = None) -> str:
        parts = [f"app={label_value(self.app)}"]
        if task is not None:
            parts.append(f"task={label_value(task)}")
        if job is not None:
            parts.append(f"job={label_value(job)}")
        return ",".join(parts)

    def pod_name(self, job: str, task: str) -> str:
        return pod_name(self.app, task, job)

    async def launch(self, job: str, task: str, manifest: dict[str, Any]) -> Any:
        """Create a pod from ``manifest``, named and labelled for this app, ``task`` and ``job``."""
        manifest = dict(manifest)
        meta = dict(manifest.get("metadata") or {})
        meta["name"] = self.pod_name(job, task)
        meta.pop("generateName", None)
        meta["namespace"] = self.namespace
        labels = dict(meta.get("labels") or {})
        labels.update(app=label_value(self.app), task=label_value(task), job=label_value(job))
        meta["labels"] = labels
        annotations = dict(meta.get("annotations") or {})
        annotations[JOB_ANNOTATION] = job
        annotations[TASK_ANNOTATION] = task
        meta["annotations"] = annotations
        manifest["metadata"] = meta
        return await self._call(
            f"create pod {meta['name']}",
            lambda: self.v1.create_namespaced_pod(self.namespace, manifest),
            idempotent=False,
        )

    async def query(
        self, job: str | None = None, task: str | None = None, include_terminating: bool = False
    ) -> list[Any]:
        """The pods labelled for this app (and ``task``/``job`` when given).

        Pods being deleted (``deletionTimestamp`` set, still in their grace period) are left out
        unless ``include_terminating``: a task has already forgotten them, and must neither adopt
        them again nor count them as live."""
        result = await self._call(
            "list pods",
            lambda: self.v1.list_namespaced_pod(self.namespace, label_selector=self._selector(job, task)),
        )
        pods = list(result.items or [])
        # Filter here too: not every server (e.g. an emulator) honours label selectors.
        want = {"app": label_value(self.app)}
        if task is not None:
            want["task"] = label_value(task)
        pods = [p for p in pods if all((p.metadata.labels or {}).get(k) == v for k, v in want.items())]
        if job is not None:
            pods = [p for p in pods if job_of(p) == job]
        if not include_terminating:
            pods = [p for p in pods if p.metadata.deletion_timestamp is None]
        return pods

    async def annotate(self, pod: Any, annotations: dict[str, str]) -> None:
        """Add ``annotations`` to ``pod`` on the server (and to the object given)."""
        name = pod.metadata.name
        body = {"metadata": {"annotations": annotations}}
        await self._call(f"annotate pod {name}", lambda: self.v1.patch_namespaced_pod(name, self.namespace, body))
        pod.metadata.annotations = {**(pod.metadata.annotations or {}), **annotations}

    async def delete(self, pod: Any) -> None:
        """Destroy ``pod`` (already gone is fine)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        name = pod.metadata.name
        try:
            await self._call(f"delete pod {name}", lambda: self.v1.delete_namespaced_pod(name, self.namespace))
        except ApiException as e:
            if e.status != 404:
                raise

    async def logs(self, pod: Any, timeout: float = 10) -> str:
        """The logs of ``pod``."""
        name = pod.metadata.name

        async def read() -> bytes:
            # Raw bytes: with content preloaded, kubernetes_asyncio parses a log that looks like
            # JSON ("14\n" came back as "14", '{"a": 1}' as "{'a': 1}").
            response = await self.v1.read_namespaced_pod_log(
                name, self.namespace, _request_timeout=timeout, _preload_content=False
            )
            try:
                data: bytes = await response.read()
                return data
            finally:
                response.release()

        raw = await self._call(f"read the logs of pod {name}", read)
        return raw.decode(errors="replace")


def job_of(pod: Any) -> str | None:
    """The exact job id of a pod created by a PodManager."""
    meta = pod.metadata
    ann = meta.annotations or {}
    if JOB_ANNOTATION in ann:
        job: str = ann[JOB_ANNOTATION]
        return job
    label: str | None = (meta.labels or {}).get("job")
    return label
