"""Webhook against a real HTTP server started by each test (aiohttp.web on 127.0.0.1): the bodies
it receives, a retry after a failed attempt, a server that hangs (the run does not wait), posts
in flight when the pipeline finishes (drained at close), and URLs whose secrets are never logged."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

from pdtnb import InProcessMetadataRepository, InProcessSyncTask, Pipeline, Session, Webhook  # noqa: E402


@dataclass
class Server:
    """What the server received, and how it answers: ``fail_first`` failed answers (HTTP 503),
    then ``delay`` seconds before each answer (``hang``: until the test ends)."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    fail_first: int = 0
    delay: float = 0.0
    hang: bool = False
    headers: list[dict[str, str]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        self.headers.append(dict(request.headers))
        if self.attempts <= self.fail_first:
            return web.Response(status=503, text="try later")
        if self.hang:
            await self.released.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.bodies.append(body)
        return web.json_response({"ok": True})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_post("/{tail:.*}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    srv.url = f"http://127.0.0.1:{port}/hooks/T0001/SECRETKEY42?token=hushhush"
    yield srv
    srv.released.set()
    await runner.cleanup()


def pipeline_with(hook: Webhook | list[Webhook], n: int = 4, fail: frozenset[str] = frozenset({"j1"})) -> Pipeline:
    done = InProcessMetadataRepository()

    @InProcessSyncTask("work", done)
    async def work(job, inp):
        if job in fail:
            raise ValueError(f"cannot work on {job}")

    work.link("inp", InProcessMetadataRepository({f"j{i}": i for i in range(n)}), is_input=True)
    return Pipeline([work], Session(), hooks=hook if isinstance(hook, list) else [hook])


async def test_failures_are_posted_as_json(server: Server) -> None:
    hook = Webhook(server.url, headers={"Authorization": "Bearer abc"})
    async with pipeline_with(hook) as pipeline:
        summary = await pipeline.run(timeout=10)
    assert summary.failed == 1
    assert len(server.bodies) == 1, server.bodies
    body = server.bodies[0]
    assert (body["event"], body["task"], body["job"], body["outcome"]) == ("failure", "work", "j1", "failure")
    assert body["reason"] == "ValueError: cannot work on j1" and body["attempt"] == 1 and body["host"]
    assert server.headers[0]["Authorization"] == "Bearer abc"
    assert server.headers[0]["Content-Type"] == "application/json"
    assert (hook.delivered, hook.failed, hook.dropped) == (1, 0, 0)


async def test_a_failed_attempt_is_retried(server: Server) -> None:
    server.fail_first = 1
    hook = Webhook(server.url, on=("success", "failure"), retries=2)
    async with pipeline_with(hook, n=1, fail=frozenset()) as pipeline:
        await pipeline.run(timeout=10)
    assert server.attempts == 2 and [b["event"] for b in server.bodies] == ["success"]
    assert hook.delivered == 1 and hook.failed == 0


async def test_a_hanging_server_never_delays_the_run(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    server.hang = True
    hook = Webhook(server.url, timeout=0.5, retries=0, drain=5)
    pipeline = pipeline_with(hook, n=3, fail=frozenset({"j0", "j1", "j2"}))
    started = time.monotonic()
    async with pipeline:
        await pipeline.run(timeout=10)
        run_took = time.monotonic() - started
    closed_after = time.monotonic() - started
    assert run_took < 0.4, f"the run waited for the webhook ({run_took:.2f} s)"
    assert closed_after < 0.5 + 1.0, f"a post outlived its timeout ({closed_after:.2f} s)"
    assert hook.failed == 3 and hook.delivered == 0
    assert any("no answer within 0.5 s" in r.getMessage() for r in caplog.records)


async def test_posts_in_flight_are_drained_at_close(server: Server) -> None:
    server.delay = 0.3
    hook = Webhook(server.url, on=("launch", "success", "failure"), concurrency=2, drain=10)
    pipeline = pipeline_with(hook, n=4)
    async with pipeline:
        await pipeline.run(timeout=10)
        assert len(server.bodies) < 8, "posts are still in flight when the run returns"
    assert len(server.bodies) == 8 and hook.pending == 0
    kinds = sorted(b["event"] for b in server.bodies)
    assert kinds == ["failure"] + ["launch"] * 4 + ["success"] * 3


async def test_the_drain_has_a_deadline(server: Server) -> None:
    server.hang = True
    hook = Webhook(server.url, timeout=30, retries=0, drain=0.3)
    started = time.monotonic()
    async with pipeline_with(hook, n=2, fail=frozenset({"j0", "j1"})) as pipeline:
        await pipeline.run(timeout=10)
    assert time.monotonic() - started < 2.0
    assert hook.failed == 2 and hook.delivered == 0


async def test_a_full_queue_drops_events_and_never_blocks(server: Server) -> None:
    server.hang = True
    hook = Webhook(server.url, on=("success",), timeout=30, queue_size=2, concurrency=1, drain=0.1)
    async with pipeline_with(hook, n=10, fail=frozenset()) as pipeline:
        await pipeline.run(timeout=10)
    # One being posted, two queued, the rest dropped (seven or eight: the first post may start
    # before the later events come); nothing delivered, nothing waited for.
    assert hook.dropped in (7, 8) and hook.dropped + hook.failed == 10 and hook.delivered == 0


async def test_secrets_in_the_url_are_never_logged(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pdtnb")
    server.fail_first = 100
    secret_url = server.url.replace("http://", "http://alice:pa55word@")
    refused = "http://bob:s3cr3t@127.0.0.1:9/T0002/ANOTHERKEY77?sig=xyzzy"  # port 9: connection refused
    hooks = [Webhook(secret_url, retries=1), Webhook(refused, retries=1)]
    assert "SECRETKEY42" not in repr(hooks[0]) and "pa55word" not in hooks[0].name
    async with pipeline_with(hooks) as pipeline:
        await pipeline.run(timeout=10)
    assert server.attempts == 2 and all(h.failed == 1 for h in hooks)
    logged = caplog.text + json.dumps([r.args for r in caplog.records], default=str)
    for secret in ("SECRETKEY42", "hushhush", "pa55word", "alice", "s3cr3t", "ANOTHERKEY77", "xyzzy", "T0001"):
        assert secret not in logged, secret
    assert "http://127.0.0.1:9/…" in caplog.text


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="on must name"):
        Webhook("http://127.0.0.1/x", on=("failures",))
    with pytest.raises(ValueError, match="not an http"):
        Webhook("ftp://user:secret@host/x")
    with pytest.raises(ValueError) as info:
        Webhook("ftp://user:secret@host/x")
    assert "secret" not in str(info.value)
