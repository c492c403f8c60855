"""DockerRepository against a real Docker registry: the Debian ``docker-registry`` package
(distribution 2.8) started on 127.0.0.1 for this module, or ``PDTNB_TEST_DOCKER_REGISTRY=host:port``
(plain HTTP, ``storage.delete.enabled: true``). Images are pushed through the registry API."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from registryserver import free_port, push_image

from pdtnb.errors import PdtnbError
from pdtnb.repository.docker import DockerRegistryError, DockerRepository

drca = pytest.importorskip("docker_registry_client_async", reason="could not import docker_registry_client_async")

_names = itertools.count()


@pytest.fixture
async def client():
    c = drca.DockerRegistryClientAsync()
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def repo_name() -> str:
    return f"pdtnb/test{next(_names)}x{int(time.time() * 1000)}"


def make_repo(client, domain: str, name: str, **kwargs) -> DockerRepository:
    return DockerRepository(lambda: client, domain, name, protocol="http", **kwargs)


async def push(domain: str, name: str, tags: list[str], payload: bytes = b"pdtnb") -> str:
    return await asyncio.to_thread(push_image, f"http://{domain}", name, tags, payload)


async def test_listing_contains_info(client, registry_domain, repo_name, listed):
    repo = make_repo(client, registry_domain, repo_name)
    await repo.validate()
    assert await listed(repo) == set()  # the repository does not exist yet
    await push(registry_domain, repo_name, ["job1", "job2", "job3"])
    assert await listed(repo) == {"job1", "job2", "job3"}
    assert await repo.contains("job2")
    assert not await repo.contains("nope")
    assert not await repo.contains("bad.tag")
    assert await repo.info("job1") == {
        "withdomain": f"{registry_domain}/{repo_name}:job1",
        "withoutdomain": f"{repo_name}:job1",
    }
    assert await repo.info("absent") == {
        "withdomain": f"{registry_domain}/{repo_name}:absent",
        "withoutdomain": f"{repo_name}:absent",
    }


async def test_many_tags(client, registry_domain, repo_name, listed):
    # distribution 2.8 returns every tag in one response (its tags/list ignores n); the repository
    # still follows Link headers, for registries that paginate.
    tags = [f"t{i}" for i in range(150)]
    await push(registry_domain, repo_name, tags)
    repo = make_repo(client, registry_domain, repo_name)
    assert await listed(repo) == set(tags)


async def test_delete(client, registry_domain, repo_name, listed):
    await push(registry_domain, repo_name, ["keep"], b"one")
    await push(registry_domain, repo_name, ["gone"], b"two")
    repo = make_repo(client, registry_domain, repo_name)
    assert await repo.contains("gone")
    await repo.delete("gone")
    assert not await repo.contains("gone")
    assert await listed(repo) == {"keep"}
    await repo.delete("gone")  # already absent
    await repo.delete("neverexisted")
    assert await listed(repo) == {"keep"}


async def test_delete_in_missing_repository(client, registry_domain, repo_name):
    await make_repo(client, registry_domain, repo_name).delete("job")


async def test_invalid_tags_skipped_with_one_warning(client, registry_domain, repo_name, listed, repo_warnings):
    await push(registry_domain, repo_name, ["good1", "bad.tag", "bad-tag", "good2"])
    repo = make_repo(client, registry_domain, repo_name)
    assert await listed(repo) == {"good1", "good2"}
    assert await listed(repo) == {"good1", "good2"}
    warnings = repo_warnings()
    assert len(warnings) == 1, warnings
    assert "bad.tag" in warnings[0] and "bad-tag" in warnings[0]


async def test_unreachable_registry_fails_fast(client):
    domain = f"127.0.0.1:{free_port()}"  # nothing listens there
    repo = make_repo(client, domain, "pdtnb/nothing", timeout=5)
    start = time.monotonic()
    with pytest.raises(DockerRegistryError) as info:
        await repo.validate()
    assert time.monotonic() - start < 5
    assert domain in str(info.value) and "pdtnb/nothing" in str(info.value)
    assert isinstance(info.value, PdtnbError)
    with pytest.raises(DockerRegistryError):
        await repo.job_ids()


async def test_timeout_is_reported(client):
    # a server that accepts connections and never answers
    async def silent(reader, writer):
        await asyncio.sleep(30)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        repo = make_repo(client, f"127.0.0.1:{port}", "pdtnb/slow", timeout=1)
        start = time.monotonic()
        with pytest.raises(DockerRegistryError, match="no answer within 1 s") as info:
            await repo.validate()
        assert time.monotonic() - start < 4
        assert f"127.0.0.1:{port}" in str(info.value) and "pdtnb/slow" in str(info.value)
    finally:
        server.close()


async def test_refused_credentials(client):
    from aiohttp import web

    async def deny(request):
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", deny)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        repo = make_repo(client, f"127.0.0.1:{port}", "pdtnb/private", timeout=5)
        with pytest.raises(DockerRegistryError, match="credentials") as info:
            await repo.validate()
        assert "pdtnb/private" in str(info.value)
    finally:
        await runner.cleanup()


async def test_link_header_pagination(client):
    # distribution 2.8 ignores ``n`` on tags/list, so pagination is checked against a small server
    # that pages the way the distribution spec (and distribution 3, Harbor, ...) does: n, last, Link.
    from aiohttp import web

    tags = [*sorted(f"t{i:03d}" for i in range(250)), "bad.tag"]

    async def tag_list(request):
        n = int(request.query.get("n", "100"))
        n = min(n, 100)
        last = request.query.get("last")
        start = tags.index(last) + 1 if last else 0
        page = tags[start : start + n]
        headers = {}
        if start + n < len(tags):
            headers["Link"] = f'</v2/pdtnb/paged/tags/list?n={n}&last={page[-1]}>; rel="next"'
        return web.json_response({"name": "pdtnb/paged", "tags": page}, headers=headers)

    app = web.Application()
    app.router.add_get("/v2/pdtnb/paged/tags/list", tag_list)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        repo = make_repo(client, f"127.0.0.1:{port}", "pdtnb/paged")
        assert await repo.job_ids() == {t for t in tags if t != "bad.tag"}
    finally:
        await runner.cleanup()
