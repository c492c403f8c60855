"""A whole pipeline over real servers, administered through the command line.

Input blobs in S3 (moto), an InProcessSyncTask, results in MongoDB (SecantusDB) and done records
as YAML in S3; then `inject`, `run`, `status`, `trace`, `cat` and `rm -r` run the script in a
subprocess, exactly as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mongoserver import mongo_server
from s3server import s3_client, s3_endpoint

SCRIPT = """
import os

import aiobotocore.session
from pymongo import AsyncMongoClient

import pdtnb

session = pdtnb.Session()


@session.resource
async def bucket():
    s3 = aiobotocore.session.get_session()
    async with s3.create_client(
        "s3", endpoint_url=os.environ["E2E_S3_URL"], region_name="us-east-1",
        aws_access_key_id=os.environ["E2E_S3_KEY"], aws_secret_access_key=os.environ["E2E_S3_SECRET"],
    ) as client:
        yield client


@session.resource
async def collection():
    client = AsyncMongoClient(os.environ["E2E_MONGO_URL"], serverSelectionTimeoutMS=5000)
    try:
        yield client["pdtnb_e2e"]["summaries"]
    finally:
        await client.close()


books = pdtnb.S3BucketRepository(bucket, "library", "books/", ".txt")
done = pdtnb.YamlMetadataS3Repository(bucket, "library", "done/")
summaries = pdtnb.MongoMetadataRepository(collection)


@pdtnb.InProcessSyncTask("summarize", done)
async def summarize(job, books, summaries):
    async with await books.open(job, "r") as fp:
        text = await fp.read()
    await summaries.dump(job, {"words": len(text.split()), "lines": len(text.splitlines())})


summarize.link("books", books, is_input=True)
summarize.link("summaries", summaries, is_output=True)
pipeline = pdtnb.Pipeline([summarize], session, [])

if __name__ == "__main__":
    pdtnb.main(pipeline)
"""

BOOKS = {
    "river": "The river froze from the edges inward.\nUnder the floor the water kept moving.\n",
    "orchard": "Nine apple trees stood in three rows.\n",
    "lighthouse": "Every evening the keeper climbed the steps.\nHe counted them aloud.\nThe sea was calm.\n",
}


@pytest.fixture(scope="module")
def servers(service_unavailable):
    try:
        s3 = s3_endpoint()
        endpoint = s3.__enter__()
    except RuntimeError as e:
        service_unavailable("moto S3 server", str(e))
    try:
        mongo = mongo_server()
        url = mongo.__enter__()
    except RuntimeError as e:
        s3.__exit__(None, None, None)
        service_unavailable("SecantusDB", str(e))
    yield endpoint, url
    mongo.__exit__(None, None, None)
    s3.__exit__(None, None, None)


@pytest.fixture
def cli(tmp_path: Path, servers):
    endpoint, mongo_url = servers

    async def make_bucket() -> None:
        async with s3_client(endpoint.url, endpoint.access_key or "key", endpoint.secret_key or "secret") as c:
            await c.create_bucket(Bucket="library")

    asyncio.run(make_bucket())
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "E2E_S3_URL": endpoint.url,
        "E2E_S3_KEY": endpoint.access_key or "key",
        "E2E_S3_SECRET": endpoint.secret_key or "secret",
        "E2E_MONGO_URL": mongo_url,
    }

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    return run


def test_pipeline_over_s3_and_mongodb_through_the_command_line(cli):
    for job, text in BOOKS.items():
        injected = cli("inject", "summarize.books", job, stdin=text)
        assert injected.returncode == 0, injected.stderr

    before = json.loads(cli("status", "--json").stdout)["tasks"][0]
    assert (before["ready"], before["done"], before["failed"]) == (3, 0, 0)

    ran = cli("run", "--timeout", "60")
    assert ran.returncode == 0, ran.stderr
    assert "3 launched" in ran.stderr

    status = cli("status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        "summarize",
        "summarize.books 3",
        "summarize.done 3",
        "summarize.summaries 3",
        "",
    ]
    assert "# summarize: ready 0, live 0, done 3, failed 0" in status.stderr

    trace = cli("trace", "river", "nosuch")
    assert trace.stdout.splitlines() == [
        "summarize",
        "summarize.books river",
        "summarize.done river",
        "summarize.summaries river",
        "",
    ]

    summary = cli("cat", "summarize.summaries", "lighthouse")
    assert summary.returncode == 0, summary.stderr
    text = BOOKS["lighthouse"]
    assert f"words: {len(text.split())}" in summary.stdout
    assert f"lines: {len(text.splitlines())}" in summary.stdout
    record = cli("cat", "summarize.done", "lighthouse")
    assert "result: success" in record.stdout
    book = cli("cat", "summarize.books", "orchard")
    assert book.stdout == BOOKS["orchard"]

    removed = cli("rm", "-r", "summarize.books", "river")
    assert removed.returncode == 0, removed.stderr
    lines = set(removed.stdout.splitlines())
    assert {"river summarize.books", "river summarize.done", "river summarize.summaries"} <= lines
    after = json.loads(cli("status", "--json").stdout)["tasks"][0]
    assert {link["name"]: link["count"] for link in after["links"]} == {"books": 2, "done": 2, "summaries": 2}
    assert cli("ls", "summarize.summaries").stdout.split() == ["lighthouse", "orchard"]


def test_an_unreachable_server_is_named_when_the_pipeline_opens(cli, tmp_path):
    script = tmp_path / "pipeline.py"
    env = {
        **os.environ,
        "E2E_S3_URL": "http://127.0.0.1:9",
        "E2E_S3_KEY": "k",
        "E2E_S3_SECRET": "s",
        "E2E_MONGO_URL": "mongodb://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, str(script), "status"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "127.0.0.1:9" in result.stderr, result.stderr
