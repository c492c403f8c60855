"""One controller at a time on pipelines kept in S3 (moto) and MongoDB (SecantusDB): the lease is a
record replaced by compare-and-swap (conditional PUT; a filtered find_one_and_replace), renewed by
its holder. A frozen holder loses it after its time to live and, thawed, stops before acting
again (fencing); a dead holder on this host is replaced at once.

The pipeline and holder scripts are tests/lease/lease_pipeline.py and holder.py, run as subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest
from s3server import s3_client

sys.path.insert(0, str(Path(__file__).parents[1] / "lease"))
from common import HOLDER, Runner, one_error_line, stop

from pdtnb.lease import LEASE_HELD_EXIT


@pytest.fixture(params=["s3", "mongo"])
def store(request, tmp_path):
    """A Runner whose pipeline keeps its records (and so its lease) in S3 or MongoDB."""
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3")
        bucket = f"lease-{uuid.uuid4().hex[:12]}"

        async def make_bucket() -> None:
            async with s3_client(endpoint.url, endpoint.access_key, endpoint.secret_key) as c:
                await c.create_bucket(Bucket=bucket)

        asyncio.run(make_bucket())
        return Runner(tmp_path, STORE="s3", S3_URL=endpoint.url, BUCKET=bucket)
    url = request.getfixturevalue("mongo_url")
    return Runner(tmp_path, STORE="mongo", MONGO_URL=url, COLLECTION=f"done_{uuid.uuid4().hex[:12]}")


def test_a_second_controller_is_refused_naming_the_holder(store):
    first = store.start("run", SLEEP="8")
    try:
        store.wait_for_log()
        refused = store("run")
        assert refused.returncode == LEASE_HELD_EXIT, refused.stderr
        line = one_error_line(refused.stderr)
        assert f"lease_pipeline.py run (pid {first.pid} on" in line, line
        assert ("s3://" in line) if store.env["STORE"] == "s3" else ("pdtnb_leases" in line), line
        status = store("status")
        assert status.returncode == 0 and f"(pid {first.pid}" in status.stderr, status.stderr
        _, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        assert store("run").returncode == 0  # released at the end
    finally:
        stop(first)
    assert set(store.runs().values()) == {1}


def _stored_lease(store: Runner) -> dict:
    """The lease record as the store holds it now (read directly, not through pdtnb)."""
    if store.env["STORE"] == "s3":

        async def read() -> dict:
            async with s3_client(store.env["S3_URL"], "testing", "testing") as c:
                response = await c.get_object(Bucket=store.env["BUCKET"], Key="done/.pdtnb-lease")
                async with response["Body"] as body:
                    return json.loads(await body.read())

        return asyncio.run(read())
    from pymongo import MongoClient

    with MongoClient(store.env["MONGO_URL"], serverSelectionTimeoutMS=5000) as client:
        name = f"pdtnb_lease_test.{store.env['COLLECTION']}"
        return client["pdtnb_lease_test"]["pdtnb_leases"].find_one({"_id": name})["lease"]


def _log(store: Runner) -> list[str]:
    path = store.data / "log"
    return path.read_text().splitlines() if path.exists() else []


def test_a_frozen_holder_loses_the_lease_and_acts_no_more_when_it_thaws(store):
    a = store.start(script=HOLDER, NAME="A", TTL="2")
    b = None
    try:
        assert a.stdout.readline().strip() == "acquired"
        time.sleep(0.5)
        os.killpg(a.pid, signal.SIGSTOP)  # frozen: not dead, not renewing
        time.sleep(0.2)  # a renewal A sent just before it froze lands
        last = _stored_lease(store)
        assert last["holder"]["command"] == "holder A", last
        b = store.start(script=HOLDER, NAME="B", TTL="2")
        assert b.stdout.readline().strip() == "acquired"
        # Not before the time to live has passed since A's last stored renewal, and not much after.
        taken_after = time.time() - last["renewed"]
        assert 2 <= taken_after < 8, taken_after
        time.sleep(0.5)
        os.killpg(a.pid, signal.SIGCONT)
        _, err = a.communicate(timeout=20)
        assert a.returncode == 3 and "lost: " in err and "taken over by holder B" in err, err
        time.sleep(0.3)
        assert b.poll() is None, "the new holder keeps acting"
    finally:
        stop(a)
        if b is not None:
            stop(b)
    lines = _log(store)
    first_b = lines.index("B tick")
    assert "A tick" not in lines[first_b:], "the thawed holder acted after losing the lease"


def test_a_dead_holder_on_this_host_is_replaced_at_once(store):
    a = store.start(script=HOLDER, NAME="A", TTL="60")
    try:
        assert a.stdout.readline().strip() == "acquired"
        os.killpg(a.pid, signal.SIGKILL)
        a.communicate(timeout=10)
        started = time.monotonic()
        run = store("run", SLEEP="0")
        assert run.returncode == 0, run.stderr
        assert time.monotonic() - started < 10, "no need to wait out the 60 s time to live"
        assert "taking over the lease" in run.stderr  # logged as a warning
    finally:
        stop(a)
