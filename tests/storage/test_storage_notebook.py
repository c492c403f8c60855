"""notebooks/storage.ipynb executed top to bottom on a real Jupyter kernel (nbclient) against the
real servers: a moto S3 server and a SecantusDB started with ``--auth`` (or the servers named by
``PDTNB_TEST_S3_ENDPOINT`` / ``PDTNB_TEST_MONGODB_URL``).

The endpoints and credentials reach the kernel only through its environment, as the notebook
documents. The test checks what the notebook showed (the ``%pdt status`` counts before and after
the run, the values ``%pdt cat`` printed), what it really stored (read back here with pymongo and
aiobotocore, independently of pdtnb), that neither the S3 secret key nor the MongoDB password
appears anywhere in the executed notebook, and that the notebook exports (``python -m pdtnb
export``) as a script whose ``status`` sees the same jobs.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from mongoserver import mongo_auth_server, mongo_server
from nbexec import cell_text, execute, write_kernelspec
from s3server import s3_client

pymongo = pytest.importorskip("pymongo")
pytest.importorskip("aiobotocore")

from pdtnb.notebook.export import main as export_main  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "storage.ipynb"
CELL_TIMEOUT = 60

#: The books the notebook writes (three uploaded by code, one with ``%%pdt inject``).
BOOKS = {
    "river": "The river froze from the edges inward.\nUnder the floor the water kept moving.\n",
    "orchard": "Nine apple trees stood in three rows.\n",
    "harbour": "Boats came in at dusk.\nThe nets were hung to dry along the wall.\n",
    "lighthouse": "Every evening the keeper climbed the steps.\nHe counted them aloud.\nThe sea was calm.\n",
}


def summary_of(text: str) -> dict[str, Any]:
    """What the notebook's ``summarize`` task stores for ``text``."""
    words = re.findall(r"[\w']+", text)
    return {"words": len(words), "lines": len(text.splitlines()), "longest": max(words, key=len)}


# ---- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mongo(service_unavailable):
    """(URL with credentials, the password or None). A SecantusDB with ``--auth`` and one user, so
    the URL the notebook gets holds a password, unless PDTNB_TEST_MONGODB_URL names a server."""
    external = os.environ.get("PDTNB_TEST_MONGODB_URL")
    if external:
        with mongo_server() as url:
            yield url, None
        return
    password = "mongo-pw-" + uuid.uuid4().hex
    try:
        ctx = mongo_auth_server("notebook", password)
        url, _port = ctx.__enter__()
    except RuntimeError as e:
        service_unavailable("MongoDB (SecantusDB --auth)", str(e))
    try:
        yield url.replace("mongodb://", f"mongodb://notebook:{password}@"), password
    finally:
        ctx.__exit__(None, None, None)


@pytest.fixture
def credentials(s3):
    """(access key, secret key) for the notebook: a secret made for this run (moto accepts any), or
    the external endpoint's."""
    if s3.external:
        return s3.access_key, s3.secret_key
    return "notebook-access-key", f"s3-secret-{uuid.uuid4().hex}"


@pytest.fixture
def places(s3, mongo, credentials):
    """A fresh bucket name and database name for the notebook; both removed afterwards (what matters
    on external servers)."""
    run_id = uuid.uuid4().hex[:8]
    bucket, database = f"pdtnb-nb-{run_id}", f"pdtnb_nb_{run_id}"
    yield bucket, database

    async def remove_bucket() -> None:
        async with s3_client(s3.url, *credentials) as c:
            try:
                listing = await c.list_objects_v2(Bucket=bucket)
            except c.exceptions.NoSuchBucket:
                return
            for obj in listing.get("Contents", []):
                await c.delete_object(Bucket=bucket, Key=obj["Key"])
            await c.delete_bucket(Bucket=bucket)

    asyncio.run(remove_bucket())
    client = pymongo.MongoClient(mongo[0], serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(database)
    finally:
        client.close()


# ---- running the notebook ---------------------------------------------------------------------


def output_of(nb: Any, source: str) -> str:
    """What the code cell whose source is exactly ``source`` showed (asserted unique)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.strip() == source]
    assert len(cells) == 1, f"{len(cells)} cells are {source!r}"
    return cell_text(cells[0])


def output_containing(nb: Any, fragment: str) -> str:
    """What the code cell whose source contains ``fragment`` showed (asserted unique)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and fragment in c.source]
    assert len(cells) == 1, f"{len(cells)} cells contain {fragment!r}"
    return cell_text(cells[0])


def counts(status_text: str) -> dict[str, int]:
    """The state counts (``# summarize: ready R, live L, done D, failed F``) and the per-link job
    counts (``summarize.LINK N``, as ``"LINK jobs"``) of a ``%pdt status`` result."""
    match = re.search(r"# summarize: ready (\d+), live (\d+), done (\d+), failed (\d+)", status_text)
    assert match, f"no summary line in {status_text!r}"
    found = dict(zip(("ready", "live", "done", "failed"), map(int, match.groups())))
    found.update({f"{link} jobs": int(n) for link, n in re.findall(r"^summarize\.(\w+) (\d+)$", status_text, re.M)})
    return found


# ---- the test ---------------------------------------------------------------------------------


def test_storage_notebook_runs_over_s3_and_mongodb(s3, mongo, credentials, places, tmp_path, monkeypatch):
    mongo_url, mongo_password = mongo
    bucket, database = places
    access, secret = credentials

    # committed without outputs, parameters first
    source = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in source.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell is not tagged parameters"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs not stripped"

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    kernel = write_kernelspec(tmp_path / "jupyter", "pdtnb-storage-notebook")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("PDTNB_S3_ENDPOINT", s3.url)
    monkeypatch.setenv("PDTNB_S3_BUCKET", bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PDTNB_MONGO_URL", mongo_url)
    monkeypatch.setenv("PDTNB_MONGO_DB", database)

    nb = execute(NOTEBOOK, tmp_path, kernel, CELL_TIMEOUT)
    nbformat.write(nb, tmp_path / "storage.executed.ipynb")  # to look at when a check fails

    # no secret in any output, nor anywhere in the executed notebook
    executed = nbformat.writes(nb)
    assert secret not in executed, "the S3 secret key appears in the executed notebook"
    if mongo_password:
        assert mongo_password not in executed, "the MongoDB password appears in the executed notebook"
        assert "notebook:***@" in executed  # the masked URL was shown instead
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o["output_type"] == "error"], cell.source
            assert "Traceback" not in cell_text(cell), cell_text(cell)

    # what the notebook showed
    shown = output_containing(nb, "def masked")
    assert s3.url in shown and bucket in shown and database in shown, shown
    assert f"bucket {bucket} created" in output_containing(nb, "head_bucket")
    statuses = [cell_text(c) for c in nb.cells if c.cell_type == "code" and c.source.strip() == "%pdt status"]
    assert len(statuses) == 2
    before, after = counts(statuses[0]), counts(statuses[1])
    assert before == {
        "ready": 4,
        "live": 0,
        "done": 0,
        "failed": 0,
        "books jobs": 4,
        "done jobs": 0,
        "summaries jobs": 0,
    }
    assert after == {
        "ready": 0,
        "live": 0,
        "done": 4,
        "failed": 0,
        "books jobs": 4,
        "done jobs": 4,
        "summaries jobs": 4,
    }
    assert output_of(nb, "%pdt ls summarize.books").split() == [*sorted(BOOKS), "(4", "jobs)"]
    assert "4 launched, 0 failed launches" in output_containing(nb, "%pdt wait --timeout")
    assert yaml.safe_load(output_of(nb, "%pdt cat summarize.summaries lighthouse")) == summary_of(BOOKS["lighthouse"])
    record = yaml.safe_load(output_of(nb, "%pdt cat summarize.done lighthouse"))
    assert record["result"] == "success" and record["end_time"] >= record["start_time"]
    assert "launch phase: 0 ready, 0 launched" in output_of(nb, "%pdt step")  # nothing is redone

    # what is really in MongoDB, read with pymongo (not through pdtnb)
    client = pymongo.MongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    try:
        db = client[database]
        stored = {doc["_id"]: doc["data"] for doc in db["summaries"].find({})}
        assert stored == {job: summary_of(text) for job, text in BOOKS.items()}
        dones = {doc["_id"]: yaml.safe_load(doc["yaml"]) for doc in db["summarize_done"].find({})}
        assert set(dones) == set(BOOKS)
        assert all(r["result"] == "success" for r in dones.values()), dones
    finally:
        client.close()

    # what is really in the bucket
    async def objects() -> dict[str, str]:
        async with s3_client(s3.url, access, secret) as c:
            listing = await c.list_objects_v2(Bucket=bucket)
            found = {}
            for obj in listing.get("Contents", []):
                response = await c.get_object(Bucket=bucket, Key=obj["Key"])
                async with response["Body"] as body:
                    found[obj["Key"]] = (await body.read()).decode()
            return found

    assert asyncio.run(objects()) == {f"books/{job}.txt": text for job, text in BOOKS.items()}

    # exported as a script (the pdtnb-skip cells left out), the same pipeline from a terminal
    script = tmp_path / "storage.py"
    assert export_main([str(NOTEBOOK), "-o", str(script)]) == 0  # python -m pdtnb export, in this process
    status = subprocess.run(
        [sys.executable, str(script), "status"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        "summarize",
        "summarize.books 4",
        "summarize.done 4",
        "summarize.summaries 4",
        "",
    ]
    assert "# summarize: ready 0, live 0, done 4, failed 0" in status.stderr
    assert secret not in status.stdout + status.stderr
