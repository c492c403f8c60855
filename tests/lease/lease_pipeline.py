"""A pipeline for the lease tests, its records where ``STORE`` says: ``files`` (DATA/...), ``s3``
(the moto endpoint in S3_URL) or ``mongo`` (MONGO_URL). Each body appends ``JOB PID`` to DATA/log
(one write, O_APPEND) and sleeps SLEEP seconds (all jobs at once: a run lasts about SLEEP), so a
test can count how often each body ran."""

import asyncio
import os
from pathlib import Path

import pdtnb

DATA = Path(os.environ["DATA"])
STORE = os.environ.get("STORE", "files")
SLEEP = float(os.environ.get("SLEEP", "0.3"))
N = int(os.environ.get("N", "6"))
session = pdtnb.Session()

if STORE == "s3":
    import aiobotocore.session

    @session.resource
    async def bucket():
        s3 = aiobotocore.session.get_session()
        async with s3.create_client(
            "s3",
            endpoint_url=os.environ["S3_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ) as client:
            yield client

    done = pdtnb.YamlMetadataS3Repository(bucket, os.environ["BUCKET"], "done/")
elif STORE == "mongo":
    from pymongo import AsyncMongoClient

    @session.resource
    async def collection():
        client = AsyncMongoClient(os.environ["MONGO_URL"], serverSelectionTimeoutMS=5000)
        try:
            yield client["pdtnb_lease_test"][os.environ["COLLECTION"]]
        finally:
            await client.close()

    done = pdtnb.MongoMetadataRepository(collection)
else:
    done = pdtnb.YamlMetadataFileRepository(DATA / "done")

inputs = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(N)})


@pdtnb.InProcessSyncTask("work", done)
async def work(job):
    fd = os.open(DATA / "log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{job} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    await asyncio.sleep(SLEEP)


work.link("inputs", inputs, is_input=True)
pipeline = pdtnb.Pipeline([work], session)

if __name__ == "__main__":
    pdtnb.main(pipeline)
