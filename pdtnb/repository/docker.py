"""A repository whose keys are the tags of a repository in a Docker (OCI distribution) registry.

Talks the registry HTTP API v2 directly (tags/list, manifest HEAD, manifest DELETE by digest) over the
aiohttp session of a ``docker_registry_client_async.DockerRegistryClientAsync``, reusing that client's
credentials (``~/.docker/config.json`` or ``add_credentials``) and token handling. A plain
``aiohttp.ClientSession`` is accepted as well, for anonymous registries.

The protocol is ``DRCA_DEFAULT_PROTOCOL`` (read by docker_registry_client_async when it is imported,
``https`` by default); pass ``protocol="http"`` for a plain-HTTP registry such as a local test one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from collections.abc import Set as AbstractSet
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

from ..errors import PdtnbError
from .base import Repository

__all__ = ["DockerRepository", "DockerRegistryError"]

#: Manifest media types accepted when resolving a tag to its digest.
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
_TAGS_PAGE = 1000
_LINK_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


class DockerRegistryError(PdtnbError, ConnectionError):
    """A Docker registry could not be used: unreachable, refused the credentials, timed out or answered
    with an error. The message names the endpoint and the repository."""


class DockerRepository(Repository):
    """The tags of ``repository`` in the registry at ``domain``; job ids are tags.

    :param registry: a callable returning a ``DockerRegistryClientAsync`` (usually a session resource)
        or an ``aiohttp.ClientSession``.
    :param domain: the registry endpoint, e.g. ``index.docker.io`` or ``127.0.0.1:5000``.
    :param repository: the repository within the registry, e.g. ``myname/myrepo``.
    :param protocol: ``http`` or ``https``; default ``DRCA_DEFAULT_PROTOCOL`` or ``https``.
    :param timeout: seconds allowed for each registry request.
    """

    # Docker tags: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}; job ids are the default alphanumerics, at most 128.
    MAX_JOB_ID_LENGTH = 128

    def __init__(
        self,
        registry: Callable[[], Any],
        domain: str,
        repository: str,
        *,
        protocol: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._registry = registry
        self.domain = domain
        self.repository = repository
        self._protocol = protocol
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<DockerRepository {self.domain}/{self.repository}>"

    # ---- plumbing --------------------------------------------------------------------------

    @property
    def registry(self) -> Any:
        """The registry client (raises SessionClosedError if its session is not open)."""
        return self._registry()

    @property
    def protocol(self) -> str:
        if self._protocol:
            return self._protocol
        try:
            from docker_registry_client_async import DockerRegistryClientAsync
        except ImportError:  # pragma: no cover - plain aiohttp use
            return "https"
        return DockerRegistryClientAsync.DEFAULT_PROTOCOL

    @property
    def base_url(self) -> str:
        return f"{self.protocol}://{self.domain}/v2/{self.repository}"

    def _error(self, what: str, why: object) -> DockerRegistryError:
        return DockerRegistryError(
            f"Docker registry {self.protocol}://{self.domain} (repository {self.repository!r}): {what}: {why}"
        )

    async def _session_and_headers(self, accept: str | None, push: bool = False) -> tuple[Any, dict[str, str]]:
        client = self.registry
        headers: dict[str, str] = {}
        if accept:
            headers["Accept"] = accept
        if hasattr(client, "_get_client_session"):  # DockerRegistryClientAsync
            from docker_registry_client_async import ImageName

            scope = f"repository:{self.repository}:{'pull,push' if push else 'pull'}"
            image = ImageName(self.repository, endpoint=self.domain)
            headers = await client._get_request_headers(
                image_name=image, protocol=self.protocol, headers=headers, scope=scope
            )
            session = await client._get_client_session()
            return session, headers
        return client, headers

    async def _request(
        self, method: str, url: str, what: str, accept: str | None = None, push: bool = False
    ) -> tuple[int, Any, Any]:
        """Do one request; return (status, headers, json body or None). Transport errors, timeouts
        and authentication refusals become DockerRegistryError."""
        import aiohttp

        async def go() -> tuple[int, Any, Any]:
            session, headers = await self._session_and_headers(accept, push)
            async with session.request(method, url, headers=headers) as resp:
                body = None
                if method == "GET" and resp.status < 300:
                    body = await resp.json(content_type=None)
                elif resp.status >= 400 and method != "HEAD":
                    body = await resp.text()
                return resp.status, resp.headers, body

        try:
            status, headers, body = await asyncio.wait_for(go(), self.timeout)
        except asyncio.TimeoutError:
            raise self._error(what, f"no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as e:
            raise self._error(what, f"{type(e).__name__}: {e}") from None
        except OSError as e:
            raise self._error(what, e) from None
        if status in (401, 403):
            raise self._error(what, f"HTTP {status}: credentials refused or missing")
        return status, headers, body

    # ---- Repository interface --------------------------------------------------------------

    async def validate(self) -> None:
        """Check that the registry answers ``GET /v2/`` and accepts our credentials."""
        status, _, body = await self._request(
            "GET", f"{self.protocol}://{self.domain}/v2/", "checking the registry API (GET /v2/)"
        )
        if status != 200:
            raise self._error("checking the registry API (GET /v2/)", f"HTTP {status} {body or ''}".strip())

    async def _tags(self) -> list[str]:
        url: str | None = f"{self.base_url}/tags/list?n={_TAGS_PAGE}"
        tags: list[str] = []
        seen: set[str | None] = set()
        while url:
            status, headers, body = await self._request("GET", url, "listing tags")
            if status == 404:  # repository does not exist yet
                return tags
            if status != 200:
                raise self._error("listing tags", f"HTTP {status} {body or ''}".strip())
            tags.extend((body or {}).get("tags") or [])
            link = headers.get("Link")
            match = _LINK_NEXT.search(link) if link else None
            if not match:
                break
            url = urljoin(url, match.group(1))
            last = parse_qs(urlparse(url).query).get("last", [None])[0]
            if last in seen:  # a registry repeating itself; stop rather than loop
                break
            seen.add(last)
        return tags

    async def unfiltered_iter(self) -> AsyncIterator[str]:
        for tag in await self._tags():
            yield tag

    async def _list_job_ids(self) -> AbstractSet[str]:
        return self._valid_subset(await self._tags())

    async def contains(self, item: str) -> bool:
        if not self.is_valid_job_id(item):
            return False
        status, _, _ = await self._request(
            "HEAD", f"{self.base_url}/manifests/{item}", f"checking tag {item!r}", accept=MANIFEST_ACCEPT
        )
        if status == 200:
            return True
        if status == 404:
            return False
        raise self._error(f"checking tag {item!r}", f"HTTP {status}")

    async def info(self, job: str) -> dict[str, str]:
        """``{"withdomain": "DOMAIN/REPO:job", "withoutdomain": "REPO:job"}``."""
        return {
            "withdomain": f"{self.domain}/{self.repository}:{job}",
            "withoutdomain": f"{self.repository}:{job}",
        }

    async def delete(self, job: str) -> None:
        """Delete the manifest the tag ``job`` points to (and so the tag); succeeds when absent.

        Other tags pointing at the same manifest disappear too: the registry API deletes by digest.
        """
        self.check_job_id(job)
        what = f"resolving tag {job!r}"
        status, headers, _ = await self._request(
            "HEAD", f"{self.base_url}/manifests/{job}", what, accept=MANIFEST_ACCEPT
        )
        if status == 404:
            return
        digest = headers.get("Docker-Content-Digest")
        if status != 200 or not digest:
            raise self._error(what, f"HTTP {status}, digest {digest!r}")
        what = f"deleting tag {job!r} (manifest {digest})"
        status, _, body = await self._request("DELETE", f"{self.base_url}/manifests/{digest}", what, push=True)
        if status in (200, 202, 404):
            return
        if status == 405:
            raise self._error(what, "HTTP 405: deletion is disabled on this registry (storage.delete.enabled)")
        raise self._error(what, f"HTTP {status} {body or ''}".strip())
