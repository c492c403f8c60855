"""KubeTask and KubeFunctionTask inside whole pipelines, against the emulated Kubernetes API server
(kmock), or a real cluster when PDTNB_TEST_KUBE_CONTEXT is set: ``Pipeline.run`` with a quota and
a second stage, a pipeline restarted while its pods run, and the command line run as separate
programs (``launch``, ``status``, ``update``, and the pod's own command) talking to the same API
server.

The test plays the kubelet (see conftest.py). The command-line tests run their programs with
``asyncio.create_subprocess_exec``: the emulator serves from this test's event loop, so a
blocking ``subprocess.run`` would deadlock it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import pdtnb
from pdtnb import (
    FileRepository,
    InProcessSyncTask,
    Pipeline,
    ResourceManager,
    Resources,
    Session,
    YamlMetadataFileRepository,
)
from pdtnb.managers.pod import PodManager, job_of

if TYPE_CHECKING:
    from kubelet import Kubelet

RUN_TIMEOUT = 8.0

# Each job prints "output of JOB" and exits with the code its input asks for, so that on a real
# cluster the pods produce what the emulated kubelet below pretends they did.
WORK_TEMPLATE = """\
apiVersion: v1
kind: Pod
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo output of {{ job }}; exit {{ inp.exit }}"]
    resources:
      requests:
        cpu: "{{ env.cpu }}"
        memory: 100Mi
"""


# ---- helpers --------------------------------------------------------------------------------


def pod_creations(kubelet: Kubelet) -> int | None:
    """How many pod creations the emulated API server received (None on a real cluster)."""
    if not kubelet.emulated:
        return None
    import kmock

    return sum(
        1
        for r in kubelet.emulator
        if r.action == kmock.action.CREATE and r.resource is not None and r.resource.plural == "pods"
    )


class Node:
    """Plays the kubelet for every pod of the app, in the background: each new pod is started,
    then finished ``hold`` seconds later with ``exit_code(job)`` and the logs ``output of JOB``.

    Records the jobs in the order their pods appeared (a job whose pod is created again appears
    twice) and the largest number of pods that existed at once (finished pods still hold their
    reservation until the pipeline reaps them, so that is what the quota bounds).
    """

    def __init__(self, podman: PodManager, kubelet: Kubelet, exit_code: Callable[[str], int], hold: float = 0.15):
        self.podman = podman
        self.kubelet = kubelet
        self.exit_code = exit_code
        self.hold = hold
        self.appeared: list[str] = []
        self.finished: list[str] = []
        self.max_pods = 0
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        started: dict[str, float] = {}
        finished: set[str] = set()
        while True:
            pods = await self.podman.query()
            self.max_pods = max(self.max_pods, len(pods))
            names = {p.metadata.name for p in pods}
            for gone in set(started) - names:  # reaped: a pod of that name again is a new pod
                started.pop(gone)
                finished.discard(gone)
            for pod in pods:
                name, job = pod.metadata.name, job_of(pod)
                phase = pod.status.phase if pod.status is not None else None
                if name not in started:
                    self.appeared.append(job)
                    started[name] = loop.time()
                    if self.kubelet.emulated:
                        # A pod is bound to its node before it runs. (Kubelet.finish patches the
                        # node after the phase, which a fast pipeline can reap in between.)
                        await self.kubelet.set_phase(name, "Running", node="node-a")
                    elif phase not in ("Running", "Succeeded", "Failed"):
                        await self.kubelet.run(name)
                elif name not in finished and loop.time() - started[name] >= self.hold:
                    await self.kubelet.finish(name, self.exit_code(job), logs=f"output of {job}\n")
                    finished.add(name)
                    self.finished.append(job)
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> Node:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        if self._task.done():
            self._task.result()  # the kubelet itself failed: say why
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def counting(calls: list[str], method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a bound coroutine method ``method(job, ...)`` to record each job it is called for."""

    async def wrapper(job: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(job)
        return await method(job, *args, **kwargs)

    return wrapper


async def everything_released(rm: ResourceManager) -> bool:
    """Whether the whole quota can be reserved again (then gives it back)."""
    await rm.flush()
    whole = Resources(rm.quota.cpu, rm.quota.mem)
    if await rm.reserve(whole) is not None:
        return False
    await rm.relinquish(whole)
    return True


async def read_blob(repo: FileRepository, job: str) -> str:
    async with await repo.open(job, "r") as fp:
        return await fp.read()


def pdtnb_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("pdtnb")]


class Stage1:
    """The KubeTask stage with its file repositories under ``base``."""

    def __init__(self, base: Path, podman: Callable[[], PodManager], rm: ResourceManager, cpu: str):
        self.inp = YamlMetadataFileRepository(base / "inp")
        self.logs = FileRepository(base / "logs", ".log")
        self.done = YamlMetadataFileRepository(base / "done")
        self.task = pdtnb.KubeTask("work", podman, rm, WORK_TEMPLATE, self.logs, self.done, env={"cpu": cpu})
        self.task.link("inp", self.inp, is_input=True)
        self.task.poll_interval = 0.02  # 1 s by default: the emulator cannot tell the task a pod ended


# ---- 1. a whole pipeline run ----------------------------------------------------------------


async def test_pipeline_runs_kube_stage_then_in_process_stage_within_quota_on_emulated_api_server(
    kube, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="pdtnb")
    pm, kubelet = kube
    codes = {"J1": 0, "J2": 1, "J3": 0, "J4": 0, "J5": 1, "J6": 0}
    rm = ResourceManager(Resources.parse(cpu=2, mem="8Gi"))  # 1 CPU per pod: 2 pods at once
    s1 = Stage1(tmp_path, lambda: pm, rm, cpu="1")
    summary = YamlMetadataFileRepository(tmp_path / "summary")
    done2 = YamlMetadataFileRepository(tmp_path / "done2")
    seen_by_stage2: dict[str, tuple[bool, bool, bool]] = {}

    @InProcessSyncTask("summarize", done2)
    async def summarize(job, logs, work_done, work_live, summary):
        # What stage 1 had left when this job started here: its output, its outcome, its pod.
        seen_by_stage2[job] = (await logs.contains(job), await work_done.contains(job), await work_live.contains(job))
        record = await work_done.info(job)
        await summary.dump(
            job, {"result": record["result"], "exit_code": record["exit_code"], "log": await read_blob(logs, job)}
        )

    summarize.plug(s1.task, require_success=False)  # a report: it sees the failed jobs too
    summarize.link("summary", summary, is_output=True)
    assert {"logs", "work_done", "work_live"} <= set(summarize.links)

    for job, code in codes.items():
        await s1.inp.dump(job, {"exit": code})
    pipeline = Pipeline([s1.task, summarize], Session(), [rm], poll_interval=0.02)
    async with pipeline, Node(pm, kubelet, lambda job: codes[job]) as node:
        result = await pipeline.run(timeout=RUN_TIMEOUT)

    assert result.launched == 2 * len(codes)  # each job once in each stage
    assert sorted(node.appeared) == sorted(codes), "a pod was created twice, or never"
    assert node.max_pods == 2, f"the quota allows 2 pods at once; {node.max_pods} existed at the same time"
    for job, code in codes.items():
        record = await s1.done.info(job)
        assert record["result"] == ("success" if code == 0 else "failure"), (job, record)
        assert record["exit_code"] == code and record["phase"] == ("Succeeded" if code == 0 else "Failed")
        if kubelet.emulated:
            assert record["node"] == "node-a"
        assert await read_blob(s1.logs, job) == f"output of {job}\n"
        assert (await done2.info(job))["result"] == "success", await done2.info(job)
        assert await summary.info(job) == {"result": record["result"], "exit_code": code, "log": f"output of {job}\n"}
    # Stage 2 ran once per job, and only once stage 1's output and outcome were in and its pod gone.
    assert seen_by_stage2 == {job: (True, True, False) for job in codes}
    assert await pm.query() == []
    assert await everything_released(rm)
    assert pdtnb_errors(caplog) == []


# ---- 1b. retries of evicted pods --------------------------------------------------------------


async def test_evicted_pod_is_retried_and_exit_code_is_not_on_emulated_api_server(kube, tmp_path, caplog):
    """``Retry(on=("Evicted",))``: an evicted pod is launched again, as attempt 2 with the first
    attempt in its history; a pod that exits 3 is not retried."""
    from pdtnb import Retry
    from pdtnb.record import JobRecord, Outcome
    from pdtnb.task.kube import ATTEMPT_ANNOTATION

    caplog.set_level(logging.WARNING, logger="pdtnb")
    pm, kubelet = kube
    if not kubelet.emulated:
        pytest.skip("a real cluster cannot be made to evict a pod on demand")
    rm = ResourceManager(Resources.parse(cpu=2, mem="8Gi"))
    s1 = Stage1(tmp_path, lambda: pm, rm, cpu="500m")
    s1.task.retry = Retry(attempts=2, delay=0, on=("Evicted",))
    await s1.inp.dump("E", {"exit": 0})
    await s1.inp.dump("X", {"exit": 3})
    pipeline = Pipeline([s1.task], Session(), [rm], poll_interval=0.02)
    async with pipeline:
        report = await pipeline.launch_phase()
        assert report.launched == 2
        (pe,) = await pm.query(job="E")
        (px,) = await pm.query(job="X")
        assert pe.metadata.annotations[ATTEMPT_ANNOTATION] == "1"
        await kubelet.set_phase(
            pe.metadata.name, "Failed", reason="Evicted", node="node-a", message="The node was low on resource: memory."
        )
        await kubelet.finish(px.metadata.name, 3, logs="output of X\n")
        await pipeline.update_phase()
        first = JobRecord.from_dict(await s1.done.info("E"))
        assert first.outcome is Outcome.FAILURE and first.reason == "Evicted" and first.attempt == 1
        assert first.retry_at is not None
        failed = JobRecord.from_dict(await s1.done.info("X"))
        assert failed.exit_code == 3 and failed.retry_at is None and failed.stdout_tail == "output of X\n"

        report = await pipeline.launch_phase()  # the retry of E is due at once (delay 0); X is not retried
        assert (report.launched, report.retried) == (1, 1)
        assert await pm.query(job="X") == []
        (pe2,) = await pm.query(job="E")
        assert pe2.metadata.annotations[ATTEMPT_ANNOTATION] == "2"
        await kubelet.finish(pe2.metadata.name, 0, logs="output of E\n")
        await pipeline.update_phase()
        result = await pipeline.run(timeout=RUN_TIMEOUT)  # nothing more to do
        assert result.launched == 0

    second = await s1.done.info("E")
    assert second["result"] == "success" and second["attempt"] == 2
    record = JobRecord.from_dict(second)
    assert record.succeeded and record.attempt == 2 and record.exit_code == 0
    (earlier,) = record.history
    assert earlier["attempt"] == 1 and earlier["result"] == "failure" and earlier["reason"] == "Evicted"
    assert "history" not in earlier
    assert (await s1.done.info("X"))["attempt"] == 1
    assert await read_blob(s1.logs, "E") == "output of E\n"
    assert pod_creations(kubelet) == 3
    assert await pm.query() == [] and await everything_released(rm)
    assert pdtnb_errors(caplog) == []


# ---- 2. restart while pods run --------------------------------------------------------------


async def test_restarted_pipeline_adopts_running_pods_and_reaps_each_once_on_emulated_api_server(
    kube, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="pdtnb")
    pm, kubelet = kube
    jobs = ["J1", "J2", "J3", "J4"]
    quota = Resources.parse(cpu="1500m", mem="8Gi")  # 3 pods of 500m

    # Pipeline A launches what the quota allows, its pods start running, then it goes away
    # without reaping anything (as after a crash).
    rm_a = ResourceManager(quota)
    a = Stage1(tmp_path, lambda: pm, rm_a, cpu="500m")
    dumps_a: list[str] = []
    a.done.dump = counting(dumps_a, a.done.dump)
    for job in jobs:
        await a.inp.dump(job, {"exit": 0})
    pipeline_a = Pipeline([a.task], Session(), [rm_a], poll_interval=0.02)
    async with pipeline_a:
        report = await pipeline_a.launch_phase()
        assert (report.launched, report.refused) == (3, 1)
        live_a = {job_of(p) for p in await pm.query()}
        assert len(live_a) == 3
        for pod in await pm.query():
            await kubelet.run(pod.metadata.name)
        if kubelet.emulated:  # (a real cluster's pods may already have ended: A would reap them)
            await pipeline_a.update_phase()  # running pods are left alone
    assert dumps_a == []
    assert await a.done.job_ids() == set()
    creations_before = pod_creations(kubelet)

    # Pipeline B: new objects throughout, the same repositories on disk and the same app and
    # namespace on the cluster.
    pm_b = PodManager(pm.app, pm.namespace, pm._config_fn)
    launched_b: list[str] = []
    pm_b.launch = counting(launched_b, pm_b.launch)
    rm_b = ResourceManager(quota)
    b = Stage1(tmp_path, lambda: pm_b, rm_b, cpu="500m")
    b.task.env["release"] = "2"  # B's code differs from A's (its template's environment)
    dumps_b: list[str] = []
    b.done.dump = counting(dumps_b, b.done.dump)
    pipeline_b = Pipeline([b.task], Session(), [rm_b], poll_interval=0.02)
    try:
        async with pipeline_b:
            # Before any pod ends, B counts the three it found: the fourth job does not fit yet.
            report = await pipeline_b.launch_phase()
            assert (report.ready, report.launched, report.refused) == (1, 0, 1)
            assert launched_b == []
            async with Node(pm, kubelet, lambda job: 0, hold=0.02) as node:
                await pipeline_b.run(timeout=RUN_TIMEOUT)
    finally:
        await pm_b.close()

    missing = set(jobs) - live_a
    assert launched_b == sorted(missing), "B created a pod again for a job whose pod it should have adopted"
    if creations_before is not None:
        assert creations_before == 3 and pod_creations(kubelet) == 4
    assert sorted(dumps_b) == jobs, "every job is recorded done exactly once"
    a_print, b_print = a.task.fingerprint(), b.task.fingerprint()
    assert a_print is not None and b_print is not None and a_print.digest != b_print.digest
    for job in jobs:
        record = await b.done.info(job)
        assert record["result"] == "success" and record["exit_code"] == 0
        assert await read_blob(b.logs, job) == f"output of {job}\n"
        # Each record names the code its pod was launched with (its annotations), not the reaper's.
        launched_by = a_print if job in live_a else b_print
        kept = (record["fingerprint"], record["fingerprint_parts"])
        assert kept == (launched_by.digest, dict(launched_by.parts)), job
    assert node.max_pods <= 3
    assert await pm.query() == []
    assert await everything_released(rm_b)
    assert pdtnb_errors(caplog) == []


# ---- 3 and 4. the command line, as separate programs ----------------------------------------

SCRIPT = textwrap.dedent(
    '''
    """A pipeline with a KubeTask ("work") and a KubeFunctionTask ("fn"), for
    tests/kube/test_kube_pipeline_emulated.py. The API server is PDTNB_KUBE_HOST (the emulator) or
    the kube config context PDTNB_TEST_KUBE_CONTEXT."""

    import os
    from pathlib import Path

    import pdtnb

    BASE = Path(__file__).resolve().parent / "data"
    session = pdtnb.Session()


    async def kube_config():
        from kubernetes_asyncio import client, config

        c = client.Configuration()
        if os.environ.get("PDTNB_KUBE_HOST"):
            c.host = os.environ["PDTNB_KUBE_HOST"]
        else:
            await config.load_kube_config(context=os.environ["PDTNB_TEST_KUBE_CONTEXT"], client_configuration=c)
        return c


    @session.resource
    async def podman():
        pm = pdtnb.PodManager(os.environ["PDTNB_KUBE_APP"], os.environ["PDTNB_KUBE_NAMESPACE"], kube_config)
        try:
            yield pm
        finally:
            await pm.close()


    quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=2, mem="4Gi"))

    inp = pdtnb.YamlMetadataFileRepository(BASE / "inp")
    work_logs = pdtnb.FileRepository(BASE / "work_logs")
    work_done = pdtnb.YamlMetadataFileRepository(BASE / "work_done")
    work = pdtnb.KubeTask("work", podman, quota, """WORK_TEMPLATE""", work_logs, work_done, env={"cpu": "500m"})
    work.link("inp", inp, is_input=True)

    fn_in = pdtnb.YamlMetadataFileRepository(BASE / "fn_in")
    fn_out = pdtnb.YamlMetadataFileRepository(BASE / "fn_out")
    fn_logs = pdtnb.FileRepository(BASE / "fn_logs")
    kube_done = pdtnb.YamlMetadataFileRepository(BASE / "kube_done")
    func_done = pdtnb.YamlMetadataFileRepository(BASE / "func_done")

    FUNC_TEMPLATE = """\\
    kind: Pod
    spec:
      restartPolicy: Never
      containers:
      - name: leader
        image: python:3-slim
        command: [python3, "{{ argv0 }}", launch, "{{ task }}", "{{ job }}", --force, --sync]
        resources: {requests: {cpu: 100m, memory: 256Mi}}
    """


    @pdtnb.KubeFunctionTask("fn", podman, quota, FUNC_TEMPLATE, fn_logs, kube_done, func_done)
    async def fn(job, fn_in, fn_out):
        value = await fn_in.info(job)
        print(f"fn: job {job} got {value}", flush=True)
        if value.get("fail"):
            raise RuntimeError(f"asked to fail on {job}")
        await fn_out.dump(job, {"doubled": value["n"] * 2})


    fn.link("fn_in", fn_in, is_input=True)
    fn.link("fn_out", fn_out, is_output=True)

    pipeline = pdtnb.Pipeline([work, fn], session, [quota])

    if __name__ == "__main__":
        pdtnb.main(pipeline)
    '''
).replace('"""WORK_TEMPLATE"""', repr(WORK_TEMPLATE))


class Cli:
    """The pipeline script in ``tmp_path`` and how to run it as a program against the API server."""

    def __init__(self, tmp_path: Path, pm: PodManager):
        self.dir = tmp_path
        self.script = tmp_path / "pipeline.py"
        self.script.write_text(SCRIPT)
        self.data = tmp_path / "data"
        self.env = dict(os.environ, PDTNB_KUBE_APP=pm.app, PDTNB_KUBE_NAMESPACE=pm.namespace)
        self.env.pop("PDTNB_KUBE_HOST", None)
        if not os.environ.get("PDTNB_TEST_KUBE_CONTEXT"):
            self.env["PDTNB_KUBE_HOST"] = pm.host

    async def exec(self, *argv: str, merge: bool = False) -> tuple[int, str, str]:
        """Run ``argv`` in the script's directory; (exit code, stdout, stderr), or stderr merged
        into stdout with ``merge``."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.dir,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge else asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode, out.decode(), (err or b"").decode()

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        return await self.exec(sys.executable, str(self.script), *args)

    async def ok(self, *args: str) -> str:
        code, out, err = await self(*args)
        assert code == 0, f"pipeline.py {' '.join(args)} exited {code}:\n{out}\n{err}"
        return out

    async def counts(self, task: str) -> tuple[int, int, int, int]:
        """The task's (ready, live, done, failed) counts, from ``status --json``."""
        (entry,) = [t for t in json.loads(await self.ok("status", "--json"))["tasks"] if t["name"] == task]
        return entry["ready"], entry["live"], entry["done"], entry["failed"]


async def test_cli_launch_status_update_in_subprocesses_on_emulated_api_server(kube, tmp_path):
    pm, kubelet = kube
    cli = Cli(tmp_path, pm)
    await YamlMetadataFileRepository(cli.data / "inp").dump("J1", {"exit": 0})

    await cli.ok("launch", "work", "J1")
    (pod,) = await pm.query()
    assert job_of(pod) == "J1" and pod.metadata.labels["task"] == "work"
    assert "echo output of J1; exit 0" in pod.spec.containers[0].command[2]
    await kubelet.run(pod.metadata.name)

    # Three commands at once, to keep the test short (each program takes about a second to start).
    (code, out, err), counts, (again, _, again_err) = await asyncio.gather(
        cli("status"), cli.counts("work"), cli("launch", "work", "J1")
    )
    assert code == 0, err
    assert {"work.inp 1", "work.live 1", "work.done 0", "work.logs 0"} <= set(out.splitlines())
    assert "# work: ready 0, live 1, done 0, failed 0" in err
    assert counts == (0, 1, 0, 0)  # status --json: (ready, live, done, failed)
    # Launching it again by hand is refused: it is not ready while its pod exists.
    assert again == 1 and "not ready" in again_err
    assert len(await pm.query()) == 1

    await kubelet.finish(pod.metadata.name, 0, logs="output of J1\n")
    await cli.ok("update")
    assert await pm.query() == []
    record = await YamlMetadataFileRepository(cli.data / "work_done").info("J1")
    assert record["result"] == "success" and record["exit_code"] == 0
    assert await read_blob(FileRepository(cli.data / "work_logs"), "J1") == "output of J1\n"
    assert await cli.counts("work") == (0, 0, 1, 0)
    if kubelet.emulated:
        assert pod_creations(kubelet) == 1


async def run_function_pod(cli: Cli, pm: PodManager, kubelet: Kubelet, job: str) -> tuple[Any, int, str]:
    """``launch fn JOB`` in a subprocess, then run the created pod's command here, as the pod
    would: (the pod, its exit code, its output)."""
    await cli.ok("launch", "fn", job)
    (pod,) = await pm.query(job=job)
    command = list(pod.spec.containers[0].command)
    assert command == ["python3", "pipeline.py", "launch", "fn", job, "--force", "--sync"]
    await kubelet.run(pod.metadata.name)
    code, output, _ = await cli.exec(sys.executable, *command[1:], merge=True)
    # Running the function did not create another pod.
    assert [p.metadata.name for p in await pm.query()] == [pod.metadata.name]
    assert pod_creations(kubelet) == 1
    return pod, code, output


async def test_kube_function_task_round_trip_through_the_cli_emulated_only(kube, tmp_path):
    pm, kubelet = kube
    if not kubelet.emulated:
        pytest.skip("runs the pod's command on this machine, which only an emulated cluster allows")
    cli = Cli(tmp_path, pm)
    await YamlMetadataFileRepository(cli.data / "fn_in").dump("J1", {"n": 21})
    kube_done = YamlMetadataFileRepository(cli.data / "kube_done")
    func_done = YamlMetadataFileRepository(cli.data / "func_done")

    pod, code, output = await run_function_pod(cli, pm, kubelet, "J1")
    assert code == 0, output
    assert "fn: job J1 got {'n': 21}" in output
    assert await YamlMetadataFileRepository(cli.data / "fn_out").info("J1") == {"doubled": 42}
    assert (await func_done.info("J1"))["result"] == "success"
    assert not await kube_done.contains("J1")  # the pipeline has not seen the pod end yet

    await kubelet.finish(pod.metadata.name, code, logs=output)
    await cli.ok("update")
    assert await pm.query() == []
    record = await kube_done.info("J1")
    assert record["result"] == "success" and record["exit_code"] == 0 and record["image"] == "python:3-slim"
    assert await read_blob(FileRepository(cli.data / "fn_logs"), "J1") == output
    assert await cli.counts("fn") == (0, 0, 1, 0)


async def test_kube_function_task_failure_through_the_cli_emulated_only(kube, tmp_path):
    pm, kubelet = kube
    if not kubelet.emulated:
        pytest.skip("runs the pod's command on this machine, which only an emulated cluster allows")
    cli = Cli(tmp_path, pm)
    await YamlMetadataFileRepository(cli.data / "fn_in").dump("J2", {"n": 1, "fail": True})
    kube_done = YamlMetadataFileRepository(cli.data / "kube_done")
    func_done = YamlMetadataFileRepository(cli.data / "func_done")

    pod, code, output = await run_function_pod(cli, pm, kubelet, "J2")
    assert code != 0, output
    assert "RuntimeError: asked to fail on J2" in output
    assert not await YamlMetadataFileRepository(cli.data / "fn_out").contains("J2")
    frecord = await func_done.info("J2")
    assert frecord["result"] == "failure" and "asked to fail on J2" in frecord["message"]

    await kubelet.finish(pod.metadata.name, code, logs=output)
    await cli.ok("update")  # reaps, then launches what is ready: not the failed job
    assert await pm.query() == []
    record = await kube_done.info("J2")
    assert record["result"] == "failure" and record["exit_code"] == code and record["phase"] == "Failed"
    assert await read_blob(FileRepository(cli.data / "fn_logs"), "J2") == output
    assert await cli.counts("fn") == (0, 0, 0, 1)


# ---- 5. the script KubeFunctionTask pods run, exported from a notebook ---------------------------

NOTEBOOK_CELLS = [
    ("parameters", 'DATA = "data"  # where the repositories live, relative to the script'),
    ("", SCRIPT.split("quota = ")[0].replace('Path(__file__).resolve().parent / "data"', "Path(DATA)")),
    (
        "",
        '''quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=2, mem="4Gi"))
fn_in = pdtnb.YamlMetadataFileRepository(BASE / "fn_in")
fn_out = pdtnb.YamlMetadataFileRepository(BASE / "fn_out")
fn_logs = pdtnb.FileRepository(BASE / "fn_logs")
kube_done = pdtnb.YamlMetadataFileRepository(BASE / "kube_done")
func_done = pdtnb.YamlMetadataFileRepository(BASE / "func_done")
FUNC_TEMPLATE = """
kind: Pod
spec:
  restartPolicy: Never
  containers:
  - name: leader
    image: registry.example.com/books:latest
    command: [python3, "{{ argv0 }}", launch, "{{ task }}", "{{ job }}", --force, --sync]
"""


@pdtnb.KubeFunctionTask("fn", podman, quota, FUNC_TEMPLATE, fn_logs, kube_done, func_done, script="pipeline.py")
async def fn(job, fn_in, fn_out):
    value = await fn_in.info(job)
    print(f"fn: job {job} got {value}", flush=True)
    await fn_out.dump(job, {"doubled": value["n"] * 2})


fn.link("fn_in", fn_in, is_input=True)
fn.link("fn_out", fn_out, is_output=True)
pipeline = pdtnb.Pipeline([fn], session, [quota])''',
    ),
    ("", "%load_ext pdtnb\n%pdt status"),
    ("", "pipeline"),
]


async def test_kube_function_task_runs_the_script_exported_from_a_notebook_emulated_only(kube, tmp_path):
    """The notebook -> `pdtnb export` -> pipeline.py -> pod chain: the pod's command, run here as the
    pod would run it, executes the exported script's `launch fn J1 --force --sync`."""
    import nbformat

    from pdtnb.notebook.export import main as export

    pm, kubelet = kube
    if not kubelet.emulated:
        pytest.skip("runs the pod's command on this machine, which only an emulated cluster allows")
    cli = Cli(tmp_path, pm)  # the environment pointing at the API server; the script is replaced below
    nb = nbformat.v4.new_notebook()
    for tag, source in NOTEBOOK_CELLS:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": [tag]} if tag else {}))
    nbformat.write(nb, tmp_path / "pipeline.ipynb")
    assert export([str(tmp_path / "pipeline.ipynb"), "-o", str(cli.script)]) == 0
    exported = cli.script.read_text()
    assert "%pdt" not in exported and "%load_ext" not in exported
    assert exported.rstrip().endswith("pdtnb.main(pipeline)")

    await YamlMetadataFileRepository(cli.data / "fn_in").dump("J1", {"n": 21})
    pod, code, output = await run_function_pod(cli, pm, kubelet, "J1")
    assert code == 0, output
    assert "fn: job J1 got {'n': 21}" in output
    assert await YamlMetadataFileRepository(cli.data / "fn_out").info("J1") == {"doubled": 42}
    assert (await YamlMetadataFileRepository(cli.data / "func_done").info("J1"))["result"] == "success"
    await kubelet.finish(pod.metadata.name, code, logs=output)
    await cli.ok("update")
    assert (await YamlMetadataFileRepository(cli.data / "kube_done").info("J1"))["result"] == "success"
    assert await read_blob(FileRepository(cli.data / "fn_logs"), "J1") == output
    assert await cli.counts("fn") == (0, 0, 1, 0)


async def test_cli_names_an_unreachable_api_server_in_one_line(kube, tmp_path):
    """Every command of a pipeline script whose API server is down ends with one `error:` line
    naming the server, and no traceback."""
    import socket

    pm, _kubelet = kube
    cli = Cli(tmp_path, pm)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    cli.env["PDTNB_KUBE_HOST"] = dead
    await YamlMetadataFileRepository(cli.data / "inp").dump("J1", {"exit": 0})
    # One after the other: run and launch act, and two controllers never act at once (the lease).
    results = [await cli("status"), await cli("run"), await cli("launch", "work", "J1")]
    for code, out, err in results:
        assert code == 1, (out, err)
        assert f"error: cannot reach the Kubernetes API server at {dead}" in err, err
        assert "Traceback" not in err, err
