"""The session resources a pipeline file can declare: clients, connections and process managers.

Each kind is an async generator factory whose keyword parameters are what the file gives
(described to the schema by :func:`pdtnb.declarative.kinds.params_of`, like the classes): it
opens the resource when the session opens and closes it when the session closes, as a
``@session.resource`` function in a Python pipeline does. A parameter annotated
``Callable[[], ...]`` names another resource (an SSH process manager names its connection).
Secrets come from ``${ENV}`` in the file, never from the file itself, and never reach a log: the
factories pass them to the client and keep no copy.

The back ends' libraries are imported when the session opens, so that ``check`` validates a file
without them (a missing extra is reported when the file is loaded).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

__all__ = ["RESOURCE_KINDS", "EXTRAS"]


async def s3(
    endpoint_url: str | None = None,
    region_name: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    addressing_style: str | None = None,
) -> AsyncIterator[Any]:
    """An aiobotocore S3 client (``S3BucketRepository``, ``YamlMetadataS3Repository``). Without
    keys, botocore's usual chain (environment, profile, instance role) supplies them.
    ``addressing_style`` is botocore's: ``path`` for the S3-compatible servers whose buckets are
    not host names (MinIO, Ceph, moto), ``virtual`` or ``auto`` (the default)."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    if addressing_style not in (None, "auto", "path", "virtual"):
        raise ValueError(f"addressing_style must be auto, path or virtual, not {addressing_style!r}")
    options: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "region_name": region_name,
        "aws_access_key_id": aws_access_key_id,
        "aws_secret_access_key": aws_secret_access_key,
        "aws_session_token": aws_session_token,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if addressing_style is not None:
        options["config"] = AioConfig(s3={"addressing_style": addressing_style})
    async with get_session().create_client("s3", **options) as client:
        yield client


async def mongo(url: str, database: str, collection: str, server_selection_timeout: float = 10.0) -> AsyncIterator[Any]:
    """A MongoDB collection (``MongoMetadataRepository``), through pymongo's asyncio client."""
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(url, serverSelectionTimeoutMS=int(server_selection_timeout * 1000))
    try:
        yield client[database][collection]
    finally:
        await client.close()


async def ssh(
    host: str,
    port: int = 22,
    username: str | None = None,
    password: str | None = None,
    client_keys: list[str] | None = None,
    known_hosts: str | None = None,
    connect_timeout: float = 10.0,
) -> AsyncIterator[Any]:
    """An asyncssh connection (for ``ssh-processes``), opened by :func:`pdtnb.managers.ssh.connect`:
    a failure is an ``SSHConnectionError`` naming ``host:port``. The host key is always verified:
    against ``known_hosts`` (a file, relative to the pipeline file) or, without it,
    ``~/.ssh/known_hosts``; ``client_keys`` are paths relative to the pipeline file too."""
    from ..managers.ssh import connect

    options: dict[str, Any] = {"port": port, "connect_timeout": connect_timeout}
    if username is not None:
        options["username"] = username
    if password is not None:
        options["password"] = password
    if client_keys is not None:
        options["client_keys"] = client_keys
    if known_hosts is not None:
        options["known_hosts"] = known_hosts
    async with connect(host, **options) as conn:
        yield conn


async def kubernetes(
    host: str | None = None,
    config_file: str | None = None,
    context: str | None = None,
    in_cluster: bool = False,
    token: str | None = None,
    verify_ssl: bool | None = None,
) -> AsyncIterator[Any]:
    """A kubernetes_asyncio ``Configuration`` (for ``pods``): an API server's ``host`` (with a
    bearer ``token``), a kubeconfig file and context, or the pod's own service account.
    ``verify_ssl`` given overrides what the kubeconfig says (``insecure-skip-tls-verify``);
    left out, the kubeconfig's choice stands, and a ``host`` is verified."""
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=cfg)
    elif host is None:
        await config.load_kube_config(config_file=config_file, context=context, client_configuration=cfg)
    else:
        cfg.host = host.rstrip("/")
        if token is not None:
            # kubernetes_asyncio sends api_key["BearerToken"] (with its prefix) as Authorization
            cfg.api_key = {"BearerToken": token}
            cfg.api_key_prefix = {"BearerToken": "Bearer"}
    if verify_ssl is not None:
        cfg.verify_ssl = verify_ssl
    yield cfg


async def docker_registry() -> AsyncIterator[Any]:
    """A docker-registry-client-async client (``DockerRepository``)."""
    import docker_registry_client_async as drca

    client = drca.DockerRegistryClientAsync()
    try:
        yield client
    finally:
        await client.close()


async def local_processes(app: str, local_path: str = "/tmp/pydatatask", offload: bool = False) -> AsyncIterator[Any]:
    """A ``LocalLinuxManager``: process tasks' jobs run on this machine."""
    from ..managers import LocalLinuxManager

    yield LocalLinuxManager(app, local_path, offload=offload)


async def ssh_processes(
    app: str,
    ssh: Callable[[], Any],
    remote_path: str = "/tmp/pydatatask",
    max_sessions: int = 10,
    max_watches: int = 4,
) -> AsyncIterator[Any]:
    """An ``SSHLinuxManager`` over the ``ssh`` resource named: process tasks' jobs run there."""
    from ..managers.ssh import SSHLinuxManager

    yield SSHLinuxManager(app, ssh, remote_path, max_sessions=max_sessions, max_watches=max_watches)


async def pods(app: str, namespace: str, kubernetes: Callable[[], Any] | None = None) -> AsyncIterator[Any]:
    """A ``PodManager`` (``KubeTask``, ``KubeFunctionTask``) in ``namespace``, configured by the
    ``kubernetes`` resource named (without one: the local kubeconfig, or the pod's account)."""
    from ..managers.pod import PodManager

    manager = PodManager(app, namespace, kubernetes)
    try:
        yield manager
    finally:
        await manager.close()


async def python(factory: Callable[..., Any], args: dict[str, Any] | None = None) -> AsyncIterator[Any]:
    """Any resource: ``factory`` (``package.module:function``) is an async generator function
    that yields it once, as for ``@session.resource``, called with ``args``; what follows its
    ``yield`` runs when the session closes."""
    generator = factory(**(args or {}))
    if not inspect.isasyncgen(generator):
        raise TypeError(
            f"the factory {_qualname(factory)} of a python resource must be an async generator "
            f"function (it yields the resource once), but it returned {type(generator).__name__}"
        )
    try:
        value = await generator.__anext__()
    except StopAsyncIteration:
        raise RuntimeError(f"the factory {_qualname(factory)} finished without yielding its resource") from None
    try:
        yield value
    finally:
        try:
            await generator.__anext__()
        except StopAsyncIteration:
            pass
        else:
            await generator.aclose()
            raise RuntimeError(f"the factory {_qualname(factory)} yielded more than once")


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


#: The kinds, by the name a file gives in ``kind:``.
RESOURCE_KINDS: dict[str, Callable[..., AsyncIterator[Any]]] = {
    "s3": s3,
    "mongo": mongo,
    "ssh": ssh,
    "kubernetes": kubernetes,
    "docker-registry": docker_registry,
    "local-processes": local_processes,
    "ssh-processes": ssh_processes,
    "pods": pods,
    "python": python,
}

#: The extra each kind needs, and the module that tells whether it is installed.
EXTRAS: dict[str, tuple[str, str]] = {
    "s3": ("s3", "aiobotocore"),
    "mongo": ("mongo", "pymongo"),
    "ssh": ("ssh", "asyncssh"),
    "kubernetes": ("kube", "kubernetes_asyncio"),
    "docker-registry": ("docker", "docker_registry_client_async"),
    "ssh-processes": ("ssh", "asyncssh"),
    "pods": ("kube", "kubernetes_asyncio"),
}

#: Parameters of resource kinds that are paths on this machine, relative to the pipeline file.
LOCAL_PATHS = {
    ("ssh", "known_hosts"),
    ("ssh", "client_keys"),
    ("local-processes", "local_path"),
    ("kubernetes", "config_file"),
}


def extra_missing(kind: str) -> str | None:
    """The extra ``kind`` needs when it is not installed, else None."""
    need = EXTRAS.get(kind)
    if need is None:
        return None
    try:
        importlib.import_module(need[1])
    except ImportError:
        return need[0]
    return None


def resolve_path(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return os.path.normpath(path if path.is_absolute() else base / path)
