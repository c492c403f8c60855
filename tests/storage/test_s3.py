"""S3BucketRepository, YamlMetadataS3Repository against a real moto server (or PDTNB_TEST_S3_ENDPOINT)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

import pytest
from s3server import free_port, moto_server, s3_client, s3_endpoint

from pdtnb.errors import InvalidJobIdError, MetadataParseError
from pdtnb.repository.s3 import (
    S3BucketInfo,
    S3BucketRepository,
    S3ConnectionError,
    S3Error,
    YamlMetadataS3Repository,
)

pytest.importorskip("aiobotocore")

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def endpoint(service_unavailable):
    try:
        ctx = s3_endpoint()
        ep = ctx.__enter__()
    except RuntimeError as e:
        service_unavailable("S3 (moto_server)", str(e))
    try:
        yield ep
    finally:
        ctx.__exit__(None, None, None)


@pytest.fixture
async def client(endpoint):
    async with s3_client(endpoint.url, endpoint.access_key, endpoint.secret_key) as c:
        yield c


@pytest.fixture
async def bucket(client):
    name = f"pdtnb-test-{uuid.uuid4().hex[:12]}"
    await client.create_bucket(Bucket=name)
    yield name
    # empty and remove the bucket (matters on a real external endpoint)
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            await client.delete_objects(Bucket=name, Delete={"Objects": keys})
    uploads = await client.list_multipart_uploads(Bucket=name)
    for up in uploads.get("Uploads", ()):
        await client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    await client.delete_bucket(Bucket=name)


@pytest.fixture
def repo(client, bucket):
    return S3BucketRepository(lambda: client, bucket, "data/", ".bin")


async def test_roundtrip_text_and_binary(repo, client, bucket):
    async with await repo.open("t1", "w") as fp:
        await fp.write("héllo\n")
        await fp.write("world")
    async with await repo.open("t1", "r") as fp:
        assert await fp.read() == "héllo\nworld"
    async with await repo.open("b1", "wb") as fp:
        await fp.write(b"\x00\x01")
        await fp.write(b"\xff" * 10)
    async with await repo.open("b1", "rb") as fp:
        assert await fp.read() == b"\x00\x01" + b"\xff" * 10
    # text read in small pieces, across the multi-byte character
    async with await repo.open("t1", "r") as fp:
        assert await fp.read(2) == "hé"
        assert await fp.read() == "llo\nworld"
    head = await client.head_object(Bucket=bucket, Key="data/b1.bin")
    assert head["ContentType"] == "application/octet-stream"
    assert head["ContentLength"] == 12
    # empty value
    async with await repo.open("e", "wb"):
        pass
    async with await repo.open("e", "rb") as fp:
        assert await fp.read() == b""


async def test_mimetype(client, bucket):
    r = S3BucketRepository(lambda: client, bucket, suffix=".txt", mimetype="text/plain")
    async with await r.open("a", "w") as fp:
        await fp.write("x")
    head = await client.head_object(Bucket=bucket, Key="a.txt")
    assert head["ContentType"] == "text/plain"


@pytest.mark.slow
async def test_multipart_write_and_streamed_read(repo, client, bucket):
    block = bytes(range(256)) * 4096  # 1 MiB
    total = 17 * MiB + 12345
    async with await repo.open("big", "wb") as fp:
        written = 0
        while written < total:
            piece = block[: min(len(block), total - written)]
            await fp.write(piece)
            written += len(piece)
    head = await client.head_object(Bucket=bucket, Key="data/big.bin")
    assert head["ContentLength"] == total
    # 8 MiB parts: 8 + 8 + 1.01 -> 3 parts, a multipart ETag ends with "-3"
    assert head["ETag"].strip('"').endswith("-3")
    # streamed read in chunks: every read returns at most the requested size
    got = 0
    chunks = 0
    async with await repo.open("big", "rb") as fp:
        while True:
            data = await fp.read(MiB)
            if not data:
                break
            assert len(data) <= MiB
            expected = (block * 18)[got % len(block) : got % len(block) + len(data)]
            assert data == expected
            got += len(data)
            chunks += 1
    assert got == total
    assert chunks >= 18


async def test_exception_inside_write_leaves_nothing(repo, client, bucket):
    with pytest.raises(RuntimeError, match="boom"):
        async with await repo.open("small", "wb") as fp:
            await fp.write(b"partial")
            raise RuntimeError("boom")
    assert not await repo.contains("small")
    with pytest.raises(RuntimeError, match="boom"):
        async with await repo.open("large", "wb") as fp:
            await fp.write(b"x" * (9 * MiB))  # one part already uploaded
            raise RuntimeError("boom")
    assert not await repo.contains("large")
    uploads = await client.list_multipart_uploads(Bucket=bucket)
    assert not uploads.get("Uploads")
    # text mode too, and an existing value is kept
    async with await repo.open("keep", "w") as fp:
        await fp.write("old")
    with pytest.raises(RuntimeError):
        async with await repo.open("keep", "w") as fp:
            await fp.write("new")
            raise RuntimeError("boom")
    async with await repo.open("keep", "r") as fp:
        assert await fp.read() == "old"


async def _put_many(client, bucket, keys, concurrency=64):
    sem = asyncio.Semaphore(concurrency)

    async def put(key):
        async with sem:
            await client.put_object(Bucket=bucket, Key=key, Body=b"x")

    await asyncio.gather(*(put(k) for k in keys))


@pytest.mark.slow
async def test_listing_more_than_1000_keys(repo, client, bucket):
    jobs = {f"job{i:05d}" for i in range(1200)}
    await _put_many(client, bucket, [f"data/{j}.bin" for j in jobs])
    assert await repo.job_ids() == jobs
    assert {j async for j in repo} == jobs
    assert len(await repo.info_all()) == 1200


async def test_prefix_suffix_mapping_and_foreign_keys(repo, client, bucket, caplog):
    keys = [
        "data/good1.bin",
        "data/good2.bin",
        "data/other.txt",  # wrong suffix: skipped silently
        "elsewhere/good3.bin",  # outside the prefix
        "data/sub/dir.bin",  # not a valid job id: skipped with a warning
        "data/bad-id.bin",  # not a valid job id
        "data/.bin",  # empty name
        "good4.bin",
    ]
    await _put_many(client, bucket, keys)
    with caplog.at_level(logging.WARNING, logger="pdtnb.repository"):
        assert await repo.job_ids() == {"good1", "good2"}
    warnings = [r for r in caplog.records if "not valid job ids" in r.getMessage()]
    assert len(warnings) == 1
    assert "bad-id" in warnings[0].getMessage()
    assert repo.object_name("good1") == "data/good1.bin"
    # the whole bucket, no prefix, no suffix
    everything = S3BucketRepository(lambda: client, bucket)
    assert await everything.job_ids() == set()  # every key has a "/" or a "."
    bare = S3BucketRepository(lambda: client, bucket, suffix=".bin")
    assert await bare.job_ids() == {"good4"}


async def test_contains_and_delete(repo, client, bucket):
    assert not await repo.contains("x1")
    async with await repo.open("x1", "wb") as fp:
        await fp.write(b"1")
    assert await repo.contains("x1")
    assert not await repo.contains("../x1")
    await repo.delete("x1")
    assert not await repo.contains("x1")
    await repo.delete("x1")  # missing: fine
    await repo.delete("neverexisted")
    with pytest.raises(FileNotFoundError, match="x1"):
        await repo.open("x1", "rb")


async def test_info_and_incluster_endpoint(repo, client, bucket, endpoint):
    info = await repo.info("j1")
    assert isinstance(info, S3BucketInfo)
    assert str(info) == info.uri == f"s3://{bucket}/data/j1.bin"
    assert info.endpoint.rstrip("/") == endpoint.url.rstrip("/")
    assert (info.bucket, info.prefix, info.suffix) == (bucket, "data/", ".bin")
    other = S3BucketRepository(lambda: client, bucket, "p/", incluster_endpoint="http://minio.svc:9000")
    info = await other.info("j2")
    assert info.endpoint == "http://minio.svc:9000"
    assert str(info) == f"s3://{bucket}/p/j2"


async def test_invalid_ids_refused(repo):
    for bad in ("../etc", "a/b", "", "x" * 500, "with space"):
        with pytest.raises(InvalidJobIdError):
            await repo.open(bad, "wb")
        with pytest.raises(InvalidJobIdError):
            await repo.open(bad, "w")
    meta = YamlMetadataS3Repository(repo._client, repo.bucket, "meta/")
    with pytest.raises(InvalidJobIdError):
        await meta.dump("../x", {"a": 1})


async def test_open_bad_mode(repo):
    with pytest.raises(ValueError):
        await repo.open("a", "a")


async def test_yaml_metadata(client, bucket):
    meta = YamlMetadataS3Repository(lambda: client, bucket, "meta/")
    assert await meta.info("m1") is None
    value = {"name": "x", "n": [1, 2, 3], "nested": {"ok": True}}
    await meta.dump("m1", value)
    assert await meta.info("m1") == value
    assert await meta.contains("m1")
    assert await meta.job_ids() == {"m1"}
    got = await client.get_object(Bucket=bucket, Key="meta/m1.yaml")
    assert got["ContentType"] == "text/yaml"
    async with got["Body"] as body:
        assert b"name: x" in await body.read()
    await meta.dump("m1", [1])
    assert await meta.info("m1") == [1]
    assert await meta.info_all() == {"m1": [1]}
    await client.put_object(Bucket=bucket, Key="meta/broken.yaml", Body=b"a: [1, 2\nb: }")
    with pytest.raises(MetadataParseError, match=r"meta/broken\.yaml"):
        await meta.info("broken")
    await meta.delete("m1")
    assert await meta.info("m1") is None


async def test_validate_ok(repo):
    await repo.validate()


async def test_validate_missing_bucket(client, endpoint):
    r = S3BucketRepository(lambda: client, f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(S3Error, match="does not exist") as e:
        await r.validate()
    assert endpoint.url.split("//")[1] in str(e.value)
    assert "missing-" in str(e.value)
    with pytest.raises(S3Error, match="does not exist"):
        async with await r.open("a", "wb") as fp:
            await fp.write(b"x")


async def test_validate_refuses_a_prefix_passed_as_the_bucket(client):
    """pydatatask's quickstart writes S3BucketRepository(bucket, "books/", ".txt"), the prefix in
    the bucket's place: the pipeline's open says so, before asking the server."""
    r = S3BucketRepository(lambda: client, "books/", ".txt")
    with pytest.raises(S3Error, match="'books/' is not a bucket name") as e:
        await r.validate()
    assert "prefix" in str(e.value) and "S3BucketRepository(client, 'BUCKET', 'books/', '.txt')" in str(e.value)


async def test_validate_server_down():
    port = free_port()  # nothing listens there
    async with s3_client(f"http://127.0.0.1:{port}", "a", "b", connect_timeout=1) as c:
        r = S3BucketRepository(lambda: c, "bucket")
        start = time.monotonic()
        with pytest.raises(S3ConnectionError) as e:
            await r.validate()
        assert time.monotonic() - start < 10
        message = str(e.value)
        assert f"127.0.0.1:{port}" in message
        assert "s3://bucket/" in message
        assert isinstance(e.value, ConnectionError)
        with pytest.raises(S3ConnectionError):
            await r.job_ids()
        with pytest.raises(S3ConnectionError):
            await r.open("a", "rb")


async def test_validate_timeout():
    """A server that accepts the connection but never answers: a clear error, not a hang."""
    server = await asyncio.start_server(lambda r, w: asyncio.sleep(30), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1, "mode": "standard"})
        async with get_session().create_client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="a",
            aws_secret_access_key="b",
            region_name="us-east-1",
            config=config,
        ) as c:
            r = S3BucketRepository(lambda: c, "bucket")
            start = time.monotonic()
            with pytest.raises(S3ConnectionError, match=f"127.0.0.1:{port}"):
                await r.validate()
            assert time.monotonic() - start < 10
    finally:
        server.close()


@pytest.mark.skipif(bool(os.environ.get("PDTNB_TEST_S3_ENDPOINT")), reason="needs a local moto_server")
async def test_validate_wrong_credentials(service_unavailable):
    try:
        ctx = moto_server(auth=True)
        ep = ctx.__enter__()
    except RuntimeError as e:
        service_unavailable("S3 (moto_server)", str(e))
    try:
        async with s3_client(ep.url, "AKIAWRONGWRONGWRONG0", "wrongsecret") as c:
            r = S3BucketRepository(lambda: c, "some-bucket")
            with pytest.raises(S3Error, match="access denied") as e:
                await r.validate()
            assert ep.url.split("//")[1] in str(e.value)
            assert "some-bucket" in str(e.value)
    finally:
        ctx.__exit__(None, None, None)


async def test_a_cold_status_of_s3_done_records_lists_instead_of_reading(client, bucket, monkeypatch):
    """The outcome cache (the object ``done/.pdtnb-outcomes``) keyed by ETag: a status in a new process reads
    no record whose object is unchanged, and reads exactly those rewritten meanwhile."""
    import pdtnb

    def pipeline() -> tuple[pdtnb.Pipeline, YamlMetadataS3Repository]:
        inputs = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(30)})
        done = YamlMetadataS3Repository(lambda: client, bucket, "done/")

        @pdtnb.InProcessSyncTask("t", done)
        async def t(job):
            if job in ("j4", "j9"):
                raise ValueError(job)

        t.link("inputs", inputs, is_input=True)
        return pdtnb.Pipeline([t], pdtnb.Session(), lease=False), done

    reads = {"n": 0}
    original_info = YamlMetadataS3Repository.info
    original_records = YamlMetadataS3Repository.read_records

    async def counting(self, job):
        reads["n"] += 1
        return await original_info(self, job)

    async def counting_records(self, jobs):  # the outcome index's bulk reads
        reads["n"] += len(jobs)
        return await original_records(self, jobs)

    monkeypatch.setattr(YamlMetadataS3Repository, "info", counting)
    monkeypatch.setattr(YamlMetadataS3Repository, "read_records", counting_records)

    async def counts() -> tuple[int, int]:
        p, _ = pipeline()
        async with p:
            status = await pdtnb.pipeline_status(p)
        return status.tasks[0].done, status.tasks[0].failed

    p, _ = pipeline()
    async with p:
        await p.run()
    reads["n"] = 0
    assert await counts() == (28, 2)
    assert reads["n"] == 0, "every outcome came from the cache"
    # Another process rewrites one success as a failure, and one failure as a success.
    await client.put_object(Bucket=bucket, Key="done/j5.yaml", Body=b"result: failure\nmessage: elsewhere\n")
    await client.put_object(Bucket=bucket, Key="done/j4.yaml", Body=b"result: success\n")
    reads["n"] = 0
    assert await counts() == (28, 2)
    assert reads["n"] == 2, "only the two rewritten objects were read"
