"""Pipeline files run end to end against the real servers of the other tests (issue 15).

Each back end has a pipeline file in ``servers/`` whose endpoints, credentials and directories
are ``${ENV}`` references, set here through ``pdtnb.load(path, environ=...)`` (or the process
environment, for the one run as ``python -m pdtnb -f FILE run``). The files declare every
session-resource kind (s3, mongo, python, ssh, ssh-processes, local-processes, docker-registry,
kubernetes, pods), the server-backed repository kinds (S3BucketRepository,
YamlMetadataS3Repository, MongoMetadataRepository, DockerRepository) and the process, kube and
kube-function task kinds; the tests check what the servers hold afterwards.

The servers are the other tests' (started by their helpers): a moto S3 server
(tests/storage/s3server.py, or PDTNB_TEST_S3_ENDPOINT), a SecantusDB MongoDB-wire server
(tests/storage/mongoserver.py, or PDTNB_TEST_MONGODB_URL), the Debian docker-registry
(tests/storage/registryserver.py, or PDTNB_TEST_DOCKER_REGISTRY), an OpenSSH sshd
(tests/process/sshd.py) and the emulated Kubernetes API server kmock, the test playing the
kubelet (tests/kube/kubelet.py), or a real cluster when PDTNB_TEST_KUBE_CONTEXT names a kubeconfig
context. A server that cannot be started skips its test, or fails it under
PDTNB_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

TESTS = Path(__file__).resolve().parents[1]
for _helpers in ("storage", "process", "kube"):  # the server helpers, imported by name
    if str(TESTS / _helpers) not in sys.path:
        sys.path.append(str(TESTS / _helpers))

from server_fixtures import mongo_url, registry_domain, s3  # noqa: E402  (the storage servers' fixtures)

import pdtnb  # noqa: E402
from pdtnb import FileRepository, YamlMetadataFileRepository  # noqa: E402

__all__ = ["s3", "mongo_url", "registry_domain"]  # fixtures used by name below

SERVERS = Path(__file__).resolve().parent / "servers"
KUBE_CONTEXT = os.environ.get("PDTNB_TEST_KUBE_CONTEXT")
RUN_TIMEOUT = 30.0


def load(name: str, **variables: str) -> Any:
    """The pipeline of ``servers/NAME``, its ``${ENV}`` read from the environment plus ``variables``."""
    return pdtnb.load(SERVERS / name, environ={**os.environ, **variables})


async def run(pipeline: Any, timeout: float = RUN_TIMEOUT) -> Any:
    async with pipeline:
        return await pipeline.run(timeout=timeout)


async def read_text(repo: Any, job: str) -> str:
    async with await repo.open(job, "r") as fp:
        return await fp.read()


# ---- the servers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd_server(service_unavailable: Any) -> Iterator[Any]:
    pytest.importorskip("asyncssh", reason="could not import asyncssh")
    from sshd import start_sshd, stop_sshd

    try:
        server = start_sshd()
    except (RuntimeError, OSError) as e:
        service_unavailable("OpenSSH server", str(e))
    yield server
    stop_sshd(server)


@pytest.fixture
def shared_dirs() -> Iterator[Any]:
    """Make directories under /tmp that the sshd test user may write in (pytest's tmp_path is
    root's only); all removed afterwards."""
    made: list[Path] = []

    def make(kind: str, writable: bool = True) -> Path:
        path = Path(f"/tmp/pdtnb-decl-{kind}-{uuid.uuid4().hex[:10]}")
        if writable:
            path.mkdir(mode=0o777)
            path.chmod(0o777)
        made.append(path)
        return path

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


# ---- S3 ----------------------------------------------------------------------------------------

BOOKS = {
    "river": "The river froze from the edges inward.\nUnder the floor the water kept moving.\n",
    "orchard": "Nine apple trees stood in three rows.\n",
    "lighthouse": "Every evening the keeper climbed the steps.\nHe counted them aloud.\nThe sea was calm.\n",
}


async def test_s3_repositories_declared_and_run_on_moto(s3: Any) -> None:
    from s3server import s3_client

    bucket = f"decl-{uuid.uuid4().hex[:12]}"
    key, secret = s3.access_key or "testing", s3.secret_key or "testing"
    async with s3_client(s3.url, key, secret) as client:
        await client.create_bucket(Bucket=bucket)
        for job, text in BOOKS.items():
            await client.put_object(Bucket=bucket, Key=f"books/{job}.txt", Body=text.encode())

        pipeline = load("s3.yaml", DECL_S3_URL=s3.url, DECL_S3_KEY=key, DECL_S3_SECRET=secret, DECL_S3_BUCKET=bucket)
        summary = await run(pipeline)
        assert (summary.launched, summary.succeeded, summary.failed) == (3, 3, 0)

        listed = await client.list_objects_v2(Bucket=bucket)
        keys = {item["Key"] for item in listed.get("Contents", [])}
        assert {k for k in keys if k.startswith("reports/")} == {f"reports/{job}.txt" for job in BOOKS}
        records = {k for k in keys if k.startswith("done/") and not k.startswith("done/.pdtnb-")}  # not the lease
        assert records == {f"done/{job}.yaml" for job in BOOKS}
        for job, text in BOOKS.items():
            report = await client.get_object(Bucket=bucket, Key=f"reports/{job}.txt")
            body = (await report["Body"].read()).decode()
            assert body == f"{job}: {len(text.split())} words, {len(text.splitlines())} lines\n"
            assert report["ContentType"] == "text/plain"  # the declared mimetype
            done = await client.get_object(Bucket=bucket, Key=f"done/{job}.yaml")
            record = yaml.safe_load(await done["Body"].read())
            assert record["result"] == "success", record

        # A second run over the same bucket finds everything done.
        assert (
            await run(
                load("s3.yaml", DECL_S3_URL=s3.url, DECL_S3_KEY=key, DECL_S3_SECRET=secret, DECL_S3_BUCKET=bucket)
            )
        ).launched == 0


# ---- MongoDB, run from the command line ---------------------------------------------------------

ORDERS = {
    "o1": {"customer": "ada", "lines": [{"qty": 2, "price": 3}, {"qty": 1, "price": 10}]},
    "o2": {"customer": "bob", "lines": [{"qty": 5, "price": 1}]},
}


def test_mongo_repositories_and_python_resource_run_as_python_m_pdtnb_f(mongo_url: str, tmp_path: Path) -> None:
    from pymongo import MongoClient

    database = f"decl_{uuid.uuid4().hex[:12]}"
    client: Any = MongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
    try:
        db = client[database]
        db["orders"].insert_many([{"_id": job, "data": order} for job, order in ORDERS.items()])
        env = {**os.environ, "DECL_MONGO_URL": mongo_url, "DECL_MONGO_DB": database}
        ran = subprocess.run(
            [sys.executable, "-m", "pdtnb", "-f", str(SERVERS / "mongo.toml"), "run", "--timeout", str(RUN_TIMEOUT)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT + 30,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        assert "2 launched" in ran.stderr, ran.stderr

        totals = {doc["_id"]: doc["data"] for doc in db["orders.totals"].find()}
        assert totals == {
            "o1": {"customer": "ada", "total": 16, "lines": 2},
            "o2": {"customer": "bob", "total": 5, "lines": 1},
        }
        # job records hold datetimes, which the repository keeps as YAML text: {"_id", "yaml"}
        done = {
            doc["_id"]: yaml.safe_load(doc["yaml"]) if "yaml" in doc else doc["data"]
            for doc in db["orders.done"].find()
        }
        assert set(done) == set(ORDERS) and all(r["result"] == "success" for r in done.values()), done
        audit = {doc["_id"]: doc["data"] for doc in db["audit"].find()}  # the python resource's collection
        assert audit == {job: {"summarized_by": "summarize"} for job in ORDERS}
    finally:
        client.drop_database(database)
        client.close()


# ---- a Docker registry -----------------------------------------------------------------------------


async def test_docker_repository_tags_are_jobs_on_the_registry(registry_domain: str, tmp_path: Path) -> None:
    pytest.importorskip("docker_registry_client_async", reason="could not import docker_registry_client_async")
    from registryserver import push_image

    image = f"pdtnb/decl{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(push_image, f"http://{registry_domain}", image, ["v1", "v2"])
    variables = {"DECL_REGISTRY": registry_domain, "DECL_IMAGE": image, "DECL_WORK": str(tmp_path)}
    described = YamlMetadataFileRepository(tmp_path / "described")
    done = YamlMetadataFileRepository(tmp_path / "done")

    assert (await run(load("docker.yaml", **variables))).launched == 2
    for tag in ("v1", "v2"):
        assert await described.info(tag) == {
            "withdomain": f"{registry_domain}/{image}:{tag}",
            "withoutdomain": f"{image}:{tag}",
        }
        assert (await done.info(tag))["result"] == "success"

    # A tag pushed later is a new job: the next run launches it alone.
    await asyncio.to_thread(push_image, f"http://{registry_domain}", image, ["v3"], b"later")
    summary = await run(load("docker.yaml", **variables))
    assert (summary.launched, summary.succeeded) == (1, 1)
    assert await described.job_ids() == {"v1", "v2", "v3"}


# ---- process tasks over SSH and on this machine --------------------------------------------------


def ssh_variables(server: Any, tmp_path: Path, shared_dirs: Any, known_hosts: Path | None = None) -> dict[str, str]:
    return {
        "DECL_SSH_HOST": server.host,
        "DECL_SSH_PORT": str(server.port),
        "DECL_SSH_USER": server.user,
        "DECL_SSH_KEY": str(server.client_key),
        "DECL_SSH_KNOWN_HOSTS": str(known_hosts or server.known_hosts),
        "DECL_SSH_REMOTE": str(shared_dirs("remote", writable=False)),  # made by the manager, as the ssh user
        "DECL_SSH_OUT": str(shared_dirs("ssh-out")),
        "DECL_LOCAL_OUT": str(shared_dirs("local-out")),
        "DECL_WORK": str(tmp_path),
    }


async def test_process_tasks_over_ssh_and_locally(sshd_server: Any, tmp_path: Path, shared_dirs: Any) -> None:
    numbers = YamlMetadataFileRepository(tmp_path / "numbers")
    jobs = {"a": 1, "b": 20, "c": 300}
    for job, n in jobs.items():
        await numbers.dump(job, {"n": n})
    variables = ssh_variables(sshd_server, tmp_path, shared_dirs)
    pipeline = load("ssh.yaml", **variables)

    summary = await run(pipeline)
    assert (summary.launched, summary.succeeded, summary.failed) == (6, 6, 0)
    ssh_uid = pwd.getpwnam(sshd_server.user).pw_uid
    for task, out, user in (
        ("remote", variables["DECL_SSH_OUT"], sshd_server.user),
        ("local", variables["DECL_LOCAL_OUT"], getpass.getuser()),
    ):
        for job, n in jobs.items():
            written = Path(out) / f"{job}.txt"
            assert written.read_text() == f"{job} {2 * n} {user}\n", task
            if task == "remote":  # written by the job the ssh user ran, not by this process
                assert written.stat().st_uid == ssh_uid
            stdout = FileRepository(tmp_path / f"{task}-stdout", ".txt")
            assert await read_text(stdout, job) == f"{task} wrote {job}\nto stderr\n"  # stderr: STDOUT
            record = await YamlMetadataFileRepository(tmp_path / f"{task}-done").info(job)
            assert record["result"] == "success" and record["exit_code"] == 0, record
        assert await YamlMetadataFileRepository(tmp_path / f"{task}-pids").job_ids() == set()
    assert (Path(variables["DECL_SSH_REMOTE"]) / "decl").stat().st_uid == ssh_uid


async def test_ssh_resource_refuses_a_host_key_not_in_known_hosts(
    sshd_server: Any, tmp_path: Path, shared_dirs: Any
) -> None:
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sshd_server.host}]:{sshd_server.port} {other}\n")
    await YamlMetadataFileRepository(tmp_path / "numbers").dump("a", {"n": 1})
    pipeline = load("ssh.yaml", **ssh_variables(sshd_server, tmp_path, shared_dirs, known_hosts))
    with pytest.raises(pdtnb.SSHConnectionError, match="host key not verified"):
        await run(pipeline)
    assert await YamlMetadataFileRepository(tmp_path / "remote-done").job_ids() == set()  # nothing ran


# ---- Kubernetes: kmock, or a real cluster ---------------------------------------------------------


class Node:
    """Plays the kubelet for the emulated API server, in the background: a new pod is bound and
    started; a ``work`` pod ends 0.1 s later with the exit code its job asks for and
    the logs ``output of JOB``; an ``fn`` pod runs its command here (``python -m pdtnb -f ...
    launch fn JOB --force --sync``) and ends as that did. Counts the pods it saw."""

    def __init__(self, podman: Any, kubelet: Any, codes: dict[str, int], cwd: Path, env: dict[str, str]):
        self.podman, self.kubelet, self.codes, self.cwd, self.env = podman, kubelet, codes, cwd, env
        self.seen: list[tuple[str, str]] = []
        self.outputs: dict[str, tuple[int, str]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def _loop(self) -> None:
        from pdtnb.managers.pod import job_of

        started: set[str] = set()
        while True:
            for pod in await self.podman.query():
                name = pod.metadata.name
                if name in started:
                    continue
                started.add(name)
                task, job = pod.metadata.labels["task"], job_of(pod)
                self.seen.append((task, job))
                await self.kubelet.set_phase(name, "Running", node="node-a")
                command = list(pod.spec.containers[0].command)
                pod_env = {e.name: e.value for e in pod.spec.containers[0].env or []}
                self._tasks.append(asyncio.create_task(self._play(task, job, name, command, pod_env)))
            await asyncio.sleep(0.02)

    async def _play(self, task: str, job: str, name: str, command: list[str], pod_env: dict[str, str]) -> None:
        if task == "fn":
            assert command[:3] == ["python3", "-m", "pdtnb"], command
            # The pod's environment names its job: its `launch --sync` runs the body without
            # waiting for the lease the controller holds (the records are shared files here).
            assert pod_env.get("PDTNB_FUNCTION_JOB") == f"fn/{job}", pod_env
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *command[1:],
                cwd=self.cwd,
                env={**self.env, **pod_env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
            code, logs = proc.returncode or 0, out.decode()
            self.outputs[job] = (code, logs)
        else:
            await asyncio.sleep(0.1)
            code, logs = self.codes[job], f"output of {job}\n"
        await self.kubelet.finish(name, code, logs=logs)

    async def __aenter__(self) -> Node:
        self._tasks.append(asyncio.create_task(self._loop()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# One function job: its pod's command is a whole `python -m pdtnb -f` program (seconds to start).
FUNCTION_JOBS = {"F1": 21}


async def test_kube_and_kube_function_tasks_on_kmock_emulated_api_server(tmp_path: Path) -> None:
    """On the emulator (kmock): a KubeTask and a KubeFunctionTask whose pods run
    ``python -m pdtnb -f kube-function.yaml launch fn JOB --sync`` here, the API server reached
    with the file's bearer token. With PDTNB_TEST_KUBE_CONTEXT: the KubeTask on that cluster."""
    from kubelet import Kubelet

    from pdtnb.managers.pod import PodManager

    codes = {"J1": 0, "J2": 3}
    jobs = YamlMetadataFileRepository(tmp_path / "jobs")
    for job, code in codes.items():
        await jobs.dump(job, {"exit": code})
    app = "pdtnb-decl-" + uuid.uuid4().hex[:6]
    variables = {"DECL_WORK": str(tmp_path), "DECL_KUBE_APP": app}
    work_done = YamlMetadataFileRepository(tmp_path / "work-done")
    work_logs = FileRepository(tmp_path / "work-logs", ".log")

    if KUBE_CONTEXT:  # a real cluster: its kubelet runs the pods (busybox); the function task is not run
        namespace = os.environ.get("PDTNB_TEST_KUBE_NAMESPACE", "default")
        pipeline = load("kube.yaml", DECL_KUBE_API="kube-cluster.yaml", DECL_KUBE_NAMESPACE=namespace, **variables)
        pipeline.tasks["work"].poll_interval = 0.5
        try:
            summary = await run(pipeline, timeout=300)
        finally:

            async def kube_config() -> Any:
                from kubernetes_asyncio import client, config

                c = client.Configuration()
                await config.load_kube_config(context=KUBE_CONTEXT, client_configuration=c)
                return c

            cleanup = PodManager(app, namespace, kube_config)
            for pod in await cleanup.query(include_terminating=True):
                await cleanup.delete(pod)
            await cleanup.close()
        assert summary.launched == len(codes)
        for job, code in codes.items():
            record = await work_done.info(job)
            assert record["exit_code"] == code and record["result"] == ("success" if code == 0 else "failure")
            assert await read_text(work_logs, job) == f"output of {job}\n"
        return

    kmock = pytest.importorskip("kmock", reason="could not import kmock")
    from kubernetes_asyncio import client

    numbers = YamlMetadataFileRepository(tmp_path / "numbers")
    for job, n in FUNCTION_JOBS.items():
        await numbers.dump(job, {"n": n})
    token = "decl-" + uuid.uuid4().hex
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.resources["v1/pods"] = {"namespaced": True}  # so that an empty list is not a 404
        host = str(server.url).rstrip("/")
        variables.update(
            DECL_KUBE_API="kube-emulator.yaml", DECL_KUBE_HOST=host, DECL_KUBE_TOKEN=token, DECL_KUBE_NAMESPACE="declns"
        )

        def config() -> Any:
            c = client.Configuration()
            c.host = host
            return c

        observer = await PodManager(app, "declns", config).connect()  # the test's own view, as the kubelet
        pipeline = load("kube-function.yaml", **variables)
        for task in pipeline.tasks.values():
            task.poll_interval = 0.05  # the emulator cannot tell a task that a pod ended
        try:
            async with Node(observer, Kubelet(observer, emulator), codes, SERVERS, {**os.environ, **variables}) as node:
                summary = await run(pipeline)
            assert await observer.query() == [], "every pod is reaped"
        finally:
            await observer.close()

    assert summary.launched == 3
    assert sorted(node.seen) == [("fn", "F1"), ("work", "J1"), ("work", "J2")], "one pod per job"
    for job, code in codes.items():
        record = await work_done.info(job)
        assert record["result"] == ("success" if code == 0 else "failure"), record
        assert record["exit_code"] == code and record["node"] == "node-a"
        assert await read_text(work_logs, job) == f"output of {job}\n"
    doubled = YamlMetadataFileRepository(tmp_path / "doubled")
    for job, n in FUNCTION_JOBS.items():
        code, output = node.outputs[job]
        assert code == 0, output
        assert f"fn: job {job} got {{'n': {n}}}" in output
        assert await doubled.info(job) == {"doubled": 2 * n}
        assert (await YamlMetadataFileRepository(tmp_path / "func-done").info(job))["result"] == "success"
        kube_record = await YamlMetadataFileRepository(tmp_path / "kube-done").info(job)
        assert kube_record["result"] == "success" and kube_record["image"] == "python:3-slim", kube_record
        assert await read_text(FileRepository(tmp_path / "fn-logs", ".log"), job) == output

    # The pipeline reached the API server with the declared token (the test's observer sends none).
    creations = [
        r
        for r in emulator
        if r.action == kmock.action.CREATE and r.resource is not None and r.resource.plural == "pods"
    ]
    assert len(creations) == 3
    assert all(r.headers.get("Authorization") == f"Bearer {token}" for r in creations)
    assert {r.headers.get("Authorization") for r in emulator} == {None, f"Bearer {token}"}
