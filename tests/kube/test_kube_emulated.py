"""PodManager and KubeTask against an emulated Kubernetes API server (kmock), or a real cluster
when PDTNB_TEST_KUBE_CONTEXT is set. On the emulator the test plays the kubelet; the templates' commands
really do what the test then pretends (print ``output of JOB``, exit with ``inp.code``), so the same
tests hold on a real cluster, where the image is ``PDTNB_TEST_KUBE_IMAGE`` (default busybox)."""

from __future__ import annotations

import os
import socket
from decimal import Decimal

import pytest

import pdtnb
from pdtnb import InProcessBlobRepository, InProcessMetadataRepository, ResourceManager, Resources, TaskConfigError
from pdtnb.managers.pod import KubeConnectionError, PodManager, pod_name
from pdtnb.repository.kube import LiveKubeRepository
from pdtnb.task.kube import KubeFunctionTask, KubeTask

EMULATED = not os.environ.get("PDTNB_TEST_KUBE_CONTEXT")
IMAGE = os.environ.get("PDTNB_TEST_KUBE_IMAGE", "busybox")
Mi64 = 64 * 1024**2

TEMPLATE = """\
apiVersion: v1
kind: Pod
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {{ env.image }}
    command: ["sh", "-c", "echo output of {{ job }}; sleep {{ inp.sleep }}; exit {{ inp.code }}"]
    resources:
      requests:
        cpu: 500m
        memory: 64Mi
"""


def make_task(podman: PodManager, quota: Resources | None = None, **kw):
    inp = InProcessMetadataRepository()
    logs = InProcessBlobRepository()
    done = kw.pop("done", None)
    if done is None:
        done = InProcessMetadataRepository()
    rm = ResourceManager(quota or Resources.parse(cpu=2, mem="4Gi"))
    task = KubeTask("work", lambda: podman, rm, kw.pop("template", TEMPLATE), logs, done, env={"image": IMAGE}, **kw)
    task.link("inp", inp, is_input=True)
    return task, inp, logs, done, rm


def test_pod_names_are_valid_and_case_distinct():
    a, b = pod_name("app", "Task_1", "JobA"), pod_name("app", "Task_1", "joba")
    assert a != b
    for n in (a, b, pod_name("x" * 80, "y", "Z" * 80)):
        assert len(n) <= 63 and n == n.lower() and n[0].isalnum() and n[-1].isalnum()


async def test_pod_manager_launch_query_logs_delete_on_emulated_api_server(kube):
    pm, kubelet = kube
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    }
    p1 = await pm.launch("Job1", "t", manifest)
    p2 = await pm.launch("job1", "t", manifest)
    assert p1.metadata.name != p2.metadata.name
    assert p1.metadata.labels["app"] == pm.app and p1.metadata.labels["task"] == "t"
    assert {p.metadata.name for p in await pm.query()} == {p1.metadata.name, p2.metadata.name}
    assert [p.metadata.name for p in await pm.query(job="Job1", task="t")] == [p1.metadata.name]
    assert await pm.query(task="other") == []
    kubelet.set_logs(p1.metadata.name, "hello\n")
    if kubelet.emulator is not None:
        assert await pm.logs(p1) == "hello\n"
    await pm.delete(p1)
    await pm.delete(p1)  # already gone is fine
    assert [p.metadata.name for p in await pm.query()] == [p2.metadata.name]


async def test_kube_task_runs_a_job_to_success_on_emulated_api_server(kube):
    pm, kubelet = kube
    task, inp, logs, done, rm = make_task(pm)
    await inp.dump("J1", {"code": 0, "sleep": 2})
    assert await task.launch("J1") is None
    live = task.links["live"].repo
    assert isinstance(live, LiveKubeRepository)
    assert await live.contains("J1")
    assert [j async for j in live] == ["J1"]
    assert rm.used.cpu == Decimal("0.5") and rm.used.mem == Mi64
    assert await task.launch("J1") is None  # already live: nothing more is created
    assert len(await pm.query()) == 1
    (pod,) = await pm.query(job="J1")
    spec = pod.spec.containers[0]
    assert spec.image == IMAGE and "echo output of J1; sleep 2; exit 0" in spec.command[2]
    await task.update()
    assert not await done.contains("J1")
    await kubelet.run(pod.metadata.name)
    await task.update()
    assert not await done.contains("J1")
    await kubelet.finish(pod.metadata.name, exit_code=0, logs="output of J1\n", node="node-a")
    await task.update()
    record = await done.info("J1")
    assert record["result"] == "success" and record["phase"] == "Succeeded" and record["exit_code"] == 0
    assert record["image"] == IMAGE and record["node"] == ("node-a" if kubelet.emulated else pod.spec.node_name)
    assert record["start_time"] is not None and record["end_time"] is not None
    # the launch time is ours (microseconds), the finish time the kubelet's (seconds): never reversed
    assert record["start_time"] <= record["end_time"]
    async with await logs.open("J1", "rb") as fp:
        assert await fp.read() == b"output of J1\n"
    assert await pm.query() == []
    assert rm.used.cpu == 0 and rm.used.mem == 0
    assert not await live.contains("J1")


async def test_kube_task_records_failed_and_evicted_pods_on_emulated_api_server(kube):
    pm, kubelet = kube
    task, inp, _logs, done, rm = make_task(pm)
    for j in ("A", "B"):
        await inp.dump(j, {"code": 3, "sleep": 0})
        await task.launch(j)
    (pa,) = await pm.query(job="A")
    (pb,) = await pm.query(job="B")
    await kubelet.finish(pa.metadata.name, exit_code=3)
    if kubelet.emulated:  # a real cluster cannot be made to evict a pod on demand
        await kubelet.set_phase(pb.metadata.name, "Failed", reason="Evicted")
    else:
        await kubelet.finish(pb.metadata.name, exit_code=3)
    await task.update()
    ra, rb = await done.info("A"), await done.info("B")
    assert ra["result"] == "failure" and ra["exit_code"] == 3 and ra["phase"] == "Failed"
    assert rb["result"] == "failure"
    if kubelet.emulated:
        assert rb["reason"] == "Evicted"
    assert rm.used.cpu == 0 and await pm.query() == []


async def test_kube_task_vanished_pod_is_recorded_as_failed_on_emulated_api_server(kube):
    pm, _kubelet = kube
    task, inp, _logs, done, rm = make_task(pm)
    await inp.dump("V", {"code": 0, "sleep": 60})
    await task.launch("V")
    (pod,) = await pm.query(job="V")
    await pm.delete(pod)  # someone else removed it
    await task.update()
    record = await done.info("V")
    assert record["result"] == "failure" and "vanished" in record["reason"]
    assert rm.used.cpu == 0


async def test_kube_task_delete_releases_without_done_on_emulated_api_server(kube):
    pm, _kubelet = kube
    task, inp, _logs, done, rm = make_task(pm)
    await inp.dump("D", {"code": 0, "sleep": 60})
    await task.launch("D")
    await task.links["live"].repo.delete("D")
    assert await pm.query() == []
    assert rm.used.cpu == 0
    await task.update()
    assert not await done.contains("D")


async def test_kube_task_quota_refuses_launch_on_emulated_api_server(kube):
    pm, _kubelet = kube
    task, inp, _logs, _done, _rm = make_task(pm, quota=Resources.parse(cpu=1, mem="8Gi"))
    for j in ("Q1", "Q2", "Q3"):
        await inp.dump(j, {"code": 0, "sleep": 60})
    assert await task.launch("Q1") is None
    assert await task.launch("Q2") is None
    assert await task.launch("Q3") is False
    assert len(await pm.query()) == 2


async def test_kube_task_launch_window_on_emulated_api_server(kube):
    pm, _kubelet = kube
    task, inp, _logs, _done, _rm = make_task(pm, quota=Resources.parse(cpu=8, mem="80Gi", launches=1))
    for j in ("W1", "W2"):
        await inp.dump(j, {"code": 0, "sleep": 60})
    assert await task.launch("W1") is None
    assert await task.launch("W2") is False


async def test_kube_task_timeout_on_emulated_api_server(kube):
    pm, kubelet = kube
    calls = []

    class MyTask(KubeTask):
        async def handle_timeout(self, pod):
            calls.append(pod.metadata.name)
            await super().handle_timeout(pod)

    inp = InProcessMetadataRepository()
    done = InProcessMetadataRepository()
    rm = ResourceManager(Resources.parse(cpu=2, mem="4Gi"))
    task = MyTask("work", lambda: pm, rm, TEMPLATE, None, done, timeout=0.05, env={"image": IMAGE})
    task.link("inp", inp, is_input=True)
    await inp.dump("T", {"code": 0, "sleep": 3600})
    await task.launch("T")
    (pod,) = await pm.query(job="T")
    await kubelet.run(pod.metadata.name)
    import asyncio

    await asyncio.sleep(0.1)
    await task.update()
    assert calls == [pod.metadata.name]
    record = await done.info("T")
    assert record["result"] == "timeout" and record["timed_out"] and "timeout" in record["reason"]
    assert await pm.query() == []


@pytest.mark.parametrize(
    "template, message",
    [
        ("apiVersion: v1\nkind: Job\nspec: {}\n", "kind Pod"),
        (TEMPLATE.replace("Never", "Always"), "restartPolicy"),
        (TEMPLATE.replace("Never", "OnFailure"), "restartPolicy: Never \\(it has 'OnFailure'"),
        (TEMPLATE + "---\n" + TEMPLATE, "exactly one"),
        (TEMPLATE.replace("{{ job }}", "{{ nope }}"), "nope"),
        ("kind: Pod\n  bad: [\n", "YAML"),
    ],
)
async def test_kube_task_rejects_bad_manifests_before_creating_anything_on_emulated_api_server(kube, template, message):
    pm, _kubelet = kube
    task, inp, _logs, _done, rm = make_task(pm, template=template)
    await inp.dump("B", {"code": 0, "sleep": 0})
    with pytest.raises(TaskConfigError, match=message):
        await task.launch("B")
    assert await pm.query() == []
    assert rm.used is None or rm.used.cpu == 0


# pydatatask 0.4.7's KubeTask sets restartPolicy: Never itself, so its templates leave it out.
TEMPLATE_WITHOUT_POLICY = TEMPLATE.replace("  restartPolicy: Never\n", "")


def test_check_manifest_sets_restart_policy_never_when_absent():
    assert "restartPolicy" not in TEMPLATE_WITHOUT_POLICY
    task, _inp, _logs, _done, _rm = make_task(PodManager("app", "ns", lambda: None), template=TEMPLATE_WITHOUT_POLICY)
    text = TEMPLATE_WITHOUT_POLICY.replace("{{ env.image }}", "busybox").replace("{{ job }}", "J")
    text = text.replace("{{ inp.sleep }}", "0").replace("{{ inp.code }}", "0")
    assert task.check_manifest("J", text)["spec"]["restartPolicy"] == "Never"
    # an explicit null is "absent" too; Never stays Never; anything else is refused, named
    assert (
        task.check_manifest("J", text.replace("spec:\n", "spec:\n  restartPolicy: null\n"))["spec"]["restartPolicy"]
        == "Never"
    )
    assert (
        task.check_manifest("J", text.replace("spec:\n", "spec:\n  restartPolicy: Never\n"))["spec"]["restartPolicy"]
        == "Never"
    )
    for policy in ("Always", "OnFailure"):
        with pytest.raises(TaskConfigError, match=f"it has '{policy}'"):
            task.check_manifest("J", text.replace("spec:\n", f"spec:\n  restartPolicy: {policy}\n"))


async def test_kube_task_without_restart_policy_launches_a_never_pod_on_emulated_api_server(kube):
    pm, kubelet = kube
    task, inp, _logs, done, _rm = make_task(pm, template=TEMPLATE_WITHOUT_POLICY)
    await inp.dump("N", {"code": 0, "sleep": 0})
    assert (await task.render("N"))["spec"]["restartPolicy"] == "Never"
    assert await task.launch("N") is None
    (pod,) = await pm.query(job="N")
    assert pod.spec.restart_policy == "Never"
    await kubelet.finish(pod.metadata.name, exit_code=0, logs="output of N\n")
    await task.update()
    assert (await done.info("N"))["result"] == "success"


async def test_unreachable_api_server_names_it():
    from kubernetes_asyncio import client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def cfg():
        c = client.Configuration()
        c.host = f"http://127.0.0.1:{port}"
        return c

    pm = PodManager("app", "ns", cfg)
    try:
        with pytest.raises(KubeConnectionError, match=f"127.0.0.1:{port}"):
            await pm.query()
    finally:
        await pm.close()


FUNC_TEMPLATE = """\
kind: Pod
spec:
  restartPolicy: Never
  containers:
  - name: leader
    image: busybox
    command: [python3, "{{ argv0 }}", launch, "{{ task }}", "{{ job }}", --force, --sync]
    resources: {requests: {cpu: 100m, memory: 256Mi}}
"""


@pytest.mark.skipif(not EMULATED, reason="on a real cluster the pod needs an image holding this pipeline's script")
async def test_kube_function_task_on_emulated_api_server(kube):
    pm, kubelet = kube
    inp, out = InProcessMetadataRepository(), InProcessMetadataRepository()
    kdone, fdone = InProcessMetadataRepository(), InProcessMetadataRepository()
    rm = ResourceManager(Resources.parse(cpu=2, mem="4Gi"))

    @KubeFunctionTask("fn", lambda: pm, rm, FUNC_TEMPLATE, None, kdone, fdone, script="pipeline.py")
    async def fn(job, inp, out):
        await out.dump(job, {"doubled": (await inp.info(job)) * 2})

    fn.link("inp", inp, is_input=True)
    fn.link("out", out, is_output=True)
    await fn.validate()
    await inp.dump("F", 21)
    # In the pipeline: a pod is created.
    assert await fn.launch("F") is None
    (pod,) = await pm.query(job="F")
    cmd = pod.spec.containers[0].command
    assert cmd[1] == "pipeline.py" and cmd[3:5] == ["fn", "F"] and cmd[-1] == "--sync"
    await kubelet.set_phase(pod.metadata.name, "Succeeded", exit_code=0)
    await fn.update()
    assert (await kdone.info("F"))["result"] == "success"
    # Inside the pod (the CLI's launch --sync): the body runs in-process.
    fn.synchronous = True
    assert await fn.launch("F") is None
    assert await out.info("F") == {"doubled": 42}
    assert (await fdone.info("F"))["result"] == "success"


async def test_restarted_task_adopts_its_pods_on_emulated_api_server(kube):
    pm, kubelet = kube
    task, inp, _logs, _done, _rm = make_task(pm)
    await inp.dump("R", {"code": 0, "sleep": 2})
    await task.launch("R")
    # A new pipeline (new task object, new ResourceManager) finds the pod and counts it.
    task2, inp2, _, done2, rm2 = make_task(pm, quota=Resources.parse(cpu="0.5", mem="8Gi"))
    await inp2.dump("R", {"code": 0, "sleep": 2})
    await inp2.dump("S", {"code": 0, "sleep": 2})
    assert await task2.launch("R") is None  # already live: not launched again
    assert await task2.launch("S") is False  # the adopted pod holds the whole CPU quota
    (pod,) = await pm.query(job="R")
    await kubelet.finish(pod.metadata.name, exit_code=0, logs="output of R\n")
    await task2.update()
    assert (await done2.info("R"))["result"] == "success"
    assert rm2.used.cpu == 0


async def test_terminating_pods_are_neither_live_nor_adopted_on_emulated_api_server(kube):
    pm, _kubelet = kube
    task, inp, _logs, _done, _rm = make_task(pm)
    await inp.dump("G", {"code": 0, "sleep": 60})
    await task.launch("G")
    (pod,) = await pm.query(job="G")
    if EMULATED:  # what a real API server shows during a deletion's grace period (the finalizer keeps
        # the emulator from removing the object at once)
        await pm.v1.patch_namespaced_pod(
            pod.metadata.name,
            pm.namespace,
            {"metadata": {"finalizers": ["pdtnb.test/hold"], "deletionTimestamp": "2026-01-01T00:00:00Z"}},
        )
    else:
        await pm.v1.delete_namespaced_pod(pod.metadata.name, pm.namespace, grace_period_seconds=30)
    assert await pm.query(job="G") == []
    assert len(await pm.query(job="G", include_terminating=True)) == 1
    assert not await task.links["live"].repo.contains("G")
    task2, _, _, _, rm2 = make_task(pm)
    await task2.update()  # a restarted pipeline does not adopt the dying pod
    assert rm2.used is None or rm2.used.cpu == 0


async def test_reaping_gives_up_after_repeated_failures_on_emulated_api_server(kube):
    pm, kubelet = kube

    class BrokenLogs(InProcessBlobRepository):
        async def open(self, job, mode="r"):
            raise OSError("disk full")

    inp, done = InProcessMetadataRepository(), InProcessMetadataRepository()
    rm = ResourceManager(Resources.parse(cpu=2, mem="4Gi"))
    task = KubeTask("work", lambda: pm, rm, TEMPLATE, BrokenLogs(), done, env={"image": IMAGE})
    task.link("inp", inp, is_input=True)
    await inp.dump("L", {"code": 0, "sleep": 0})
    await task.launch("L")
    (pod,) = await pm.query(job="L")
    await kubelet.finish(pod.metadata.name, exit_code=0, logs="output of L\n")
    for _attempt in range(2):
        await task.update()
        assert not await done.contains("L") and len(await pm.query(job="L")) == 1  # kept for a retry
    await task.update()
    record = await done.info("L")
    assert record["result"] == "failure" and "disk full" in record["reason"]
    assert await pm.query() == [] and rm.used.cpu == 0


@pytest.mark.parametrize("text", ["14\n", '{"words": 14}\n', "null\n", "caf\u00e9 \u2713\n", ""])
async def test_logs_are_kept_byte_for_byte_on_emulated_api_server(kube, text):
    pm, kubelet = kube
    template = TEMPLATE.replace("echo output of {{ job }}", 'printf %s \\"$TEXT\\"').replace(
        "    resources:", "    env: [{name: TEXT, value: {{ env.text | tojson }}}]\n    resources:"
    )
    task, inp, logs, done, _rm = make_task(pm, template=template)
    task.env["text"] = text
    await inp.dump("T", {"code": 0, "sleep": 0})
    await task.launch("T")
    (pod,) = await pm.query(job="T")
    await kubelet.finish(pod.metadata.name, exit_code=0, logs=text)
    await task.update()
    assert (await done.info("T"))["result"] == "success"
    async with await logs.open("T", "rb") as fp:
        assert (await fp.read()).decode() == text


async def test_kube_function_task_from_a_kernel_needs_script_on_emulated_api_server(kube, monkeypatch):
    pm, _kubelet = kube
    rm = ResourceManager(Resources.parse(cpu=2, mem="4Gi"))
    fn = KubeFunctionTask(
        "fn",
        lambda: pm,
        rm,
        FUNC_TEMPLATE,
        None,
        InProcessMetadataRepository(),
        InProcessMetadataRepository(),
        func=lambda job: None,
    )
    monkeypatch.setattr("sys.argv", ["/venv/lib/python3/site-packages/ipykernel_launcher.py", "-f", "k.json"])
    with pytest.raises(TaskConfigError, match="script="):
        await fn.launch("K")
    assert await pm.query() == []
    monkeypatch.setattr("sys.argv", ["/home/me/books/pipeline.py", "run"])
    assert await fn.launch("K") is None
    (pod,) = await pm.query(job="K")
    assert pod.spec.containers[0].command[1] == "pipeline.py"


def test_kubernetes_doc_example_renders_to_a_valid_pod():
    """The manifest in docs/kubernetes.md renders (values with quotes included) and passes the checks."""
    import asyncio
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md").read_text()
    template = re.search(r'    """\n(    apiVersion: v1\n.*?)    """', doc, re.S).group(1)
    books = InProcessMetadataRepository()
    task = KubeTask(
        "fetch",
        lambda: None,
        ResourceManager(Resources.parse(cpu=1, mem="1Gi")),
        template,
        None,
        None,
        env={"image": "busybox:1.36"},
    )
    task.link("books", books, is_input=True)

    async def render():
        await books.dump("b1", {"url": 'https://example.org/a "quoted" book?x=1&y=2'})
        return await task.render("b1")

    manifest = asyncio.run(render())
    container = manifest["spec"]["containers"][0]
    assert container["env"] == [{"name": "URL", "value": 'https://example.org/a "quoted" book?x=1&y=2'}]
    assert container["command"][2] == 'wget -qO- "$URL" | wc -w'


@pytest.mark.parametrize("job", ['J1"', "J1\n    evil: true", "J 1", "{{ env }}", "-J1", "", "J1;reboot"])
async def test_job_ids_cannot_escape_the_template_on_emulated_api_server(kube, job):
    from pdtnb import InvalidJobIdError

    pm, _kubelet = kube
    task, _inp, _logs, _done, rm = make_task(pm)
    with pytest.raises(InvalidJobIdError, match="Kubernetes pod"):
        await task.launch(job)
    assert await pm.query() == []
    assert rm.used is None or rm.used.cpu == 0


async def test_kube_function_task_without_a_function_is_refused_at_validation(kube):
    pm, _kubelet = kube
    rm = ResourceManager(Resources.parse(cpu=2, mem="4Gi"))
    fn = KubeFunctionTask(
        "fn",
        lambda: pm,
        rm,
        FUNC_TEMPLATE,
        None,
        InProcessMetadataRepository(),
        InProcessMetadataRepository(),
        script="pipeline.py",
    )
    fn.link("inp", InProcessMetadataRepository(), is_input=True)
    with pytest.raises(TaskConfigError, match="'fn' has no function"):
        await fn.validate()


# ---- job records, kill, retries ---------------------------------------------------------------


async def quota_free(rm: ResourceManager) -> bool:
    """Whether the whole quota can be reserved (as counted from the tasks now), then gives it back."""
    await rm.flush()
    whole = Resources(rm.quota.cpu, rm.quota.mem)
    if await rm.reserve(whole) is not None:
        return False
    await rm.relinquish(whole)
    return True


async def test_kube_task_kill_deletes_the_pod_and_records_killed_on_emulated_api_server(kube):
    from pdtnb import Pipeline, Session
    from pdtnb.record import JobRecord, Outcome

    pm, kubelet = kube
    task, inp, _logs, done, rm = make_task(pm)
    await inp.dump("K", {"code": 0, "sleep": 3600})
    assert await task.kill("K") is False  # no pod: nothing to kill
    await task.launch("K")
    (pod,) = await pm.query(job="K")
    await kubelet.run(pod.metadata.name)
    kubelet.set_logs(pod.metadata.name, "output of K\n")
    # Another pipeline watching the same pod (as a second controller would).
    other, _, _, _, other_rm = make_task(pm, done=done)
    await other.update()
    assert not await quota_free(other_rm)  # it counts the pod

    assert await task.kill("K") is True
    assert await pm.query(job="K") == []
    record = JobRecord.from_dict(await done.info("K"))
    assert record.outcome is Outcome.KILLED and record.reason == "killed by request"
    assert record.start_time is not None and record.extra["pod"] == pod.metadata.name
    if kubelet.emulated:
        assert record.stdout_tail == "output of K\n"
    assert await quota_free(rm)
    assert await task.kill("K") is False  # already gone

    # The other pipeline finds the pod gone: it keeps the record, and lets its reservation go.
    await other.update()
    assert JobRecord.from_dict(await done.info("K")).outcome is Outcome.KILLED
    assert await quota_free(other_rm)
    # A whole round of a pipeline neither overwrites it nor launches the job again.
    pipeline = Pipeline([task], Session(), [rm])
    async with pipeline:
        await pipeline.update_phase()
        report = await pipeline.launch_phase()
    assert report.launched == 0 and await pm.query() == []
    assert (await done.info("K"))["result"] == "killed"


@pytest.mark.skipif(not EMULATED, reason="marks a pod as its killer would, then leaves it: emulator only")
async def test_pod_marked_killed_is_recorded_killed_by_whoever_finds_it_on_emulated_api_server(kube):
    """A pipeline that marked a pod killed and then died before recording it: another pipeline
    records the job as killed, whether it finds the pod still there or being deleted."""
    from pdtnb.task.kube import KILLED_ANNOTATION

    pm, kubelet = kube
    task, inp, _logs, done, rm = make_task(pm)
    for job in ("M1", "M2"):
        await inp.dump(job, {"code": 0, "sleep": 3600})
        await task.launch(job)
    p1, p2 = (await pm.query(job="M1"))[0], (await pm.query(job="M2"))[0]
    for pod in (p1, p2):
        await kubelet.run(pod.metadata.name)
        await pm.v1.patch_namespaced_pod(
            pod.metadata.name, pm.namespace, {"metadata": {"annotations": {KILLED_ANNOTATION: "request"}}}
        )
    # M2's pod is being deleted (its grace period): not listed, so it looks vanished.
    await pm.v1.patch_namespaced_pod(
        p2.metadata.name,
        pm.namespace,
        {"metadata": {"finalizers": ["pdtnb.test/hold"], "deletionTimestamp": "2026-01-01T00:00:00Z"}},
    )
    await task.update()
    for job in ("M1", "M2"):
        record = await done.info(job)
        assert record["result"] == "killed" and record["reason"] == "killed by request", record
    assert await pm.query() == [] and rm.used.cpu == 0


async def test_failed_pod_record_holds_exit_code_reason_and_log_tail_on_emulated_api_server(kube):
    from pdtnb import Retry
    from pdtnb.record import LIMITS, JobRecord, Outcome

    pm, kubelet = kube
    if not kubelet.emulated:
        pytest.skip("a real cluster cannot be made to OOM-kill a pod on demand")
    # No logs repository: the record keeps the end of the logs all the same.
    task, inp, _logs, done, _rm = make_task(pm, retry=Retry(attempts=2, delay=60, on=("OOMKilled",)))
    task.logs = None
    del task.links["logs"]
    await inp.dump("O", {"code": 137, "sleep": 0})
    await task.launch("O")
    (pod,) = await pm.query(job="O")
    output = "".join(f"line {i} of O\n" for i in range(1000))  # about 14 KiB
    kubelet.set_logs(pod.metadata.name, output)
    await kubelet.set_phase(
        pod.metadata.name,
        "Failed",
        exit_code=137,
        node="node-b",
        container_reason="OOMKilled",
        message="the container used too much memory",
    )
    await task.update()
    stored = await done.info("O")
    assert stored["result"] == "failure"
    record = JobRecord.from_dict(stored)
    assert record.outcome is Outcome.FAILURE and record.attempt == 1
    assert record.exit_code == 137 and record.reason == "OOMKilled"
    assert record.message == "the container used too much memory"
    assert record.host == "node-b" and record.extra["node"] == "node-b" and record.extra["phase"] == "Failed"
    assert record.extra["image"] == IMAGE and record.extra["pod"] == pod.metadata.name
    assert record.stdout_tail is not None and record.stdout_tail.endswith("line 998 of O\nline 999 of O\n")
    assert "earlier bytes cut" in record.stdout_tail and "line 0 of O\n" not in record.stdout_tail
    assert len(record.stdout_tail) < LIMITS["tail"] + 100
    assert record.retry_at is not None  # Retry(on=("OOMKilled",)) matches the container's reason
    assert record.reason_line().startswith("exit code 137 (OOMKilled): line 999 of O")
    # `show` tells the same, as the CLI and the notebook print it
    details = await pdtnb.show_job(pdtnb.Pipeline([task], pdtnb.Session()), task.name, "O")
    text = details.to_text()
    assert details.state == "retrying" and "exit code 137 (OOMKilled)" in text
    assert "next attempt due at" in text and "line 999 of O" in text and "on node-b" in text


async def test_kube_task_launch_options_sync_and_no_metadata_on_emulated_api_server(kube):
    import asyncio

    from pdtnb import LaunchOptions
    from pdtnb.task.kube import ATTEMPT_ANNOTATION, METADATA_ANNOTATION

    pm, kubelet = kube
    task, inp, _logs, done, rm = make_task(pm)
    task.poll_interval = 0.02
    for job in ("S", "N"):
        await inp.dump(job, {"code": 0, "sleep": 0})

    # metadata=False: stored on the pod, honoured when it is reaped (by this or any pipeline).
    await task.launch("N", LaunchOptions(metadata=False))
    (pod,) = await pm.query(job="N")
    assert pod.metadata.annotations[METADATA_ANNOTATION] == "false"
    assert pod.metadata.annotations[ATTEMPT_ANNOTATION] == "1"
    await kubelet.finish(pod.metadata.name, 0, logs="output of N\n")
    other, _, _, _, _ = make_task(pm, done=done)
    await other.update()
    await task.update()  # this pipeline finds it gone: nothing to record either
    assert await pm.query() == [] and not await done.contains("N")

    # sync: the launch returns once the pod has ended and been reaped.
    async def kubelet_for_s():
        for _ in range(1000):
            pods = await pm.query(job="S")
            if pods:
                await kubelet.finish(pods[0].metadata.name, 0, logs="output of S\n")
                return
            await asyncio.sleep(0.01)

    helper = asyncio.create_task(kubelet_for_s())
    assert await task.launch("S", LaunchOptions(sync=True)) is None
    await helper
    record = await done.info("S")
    assert record["result"] == "success" and record["exit_code"] == 0
    assert record["stdout_tail"] == "output of S\n"
    assert await pm.query() == [] and await quota_free(rm)


@pytest.mark.skipif(not EMULATED, reason="on a real cluster the pod needs an image holding this pipeline's script")
async def test_kube_function_task_in_pod_records_the_function_failure_on_emulated_api_server(kube):
    from pdtnb import LaunchOptions
    from pdtnb.record import JobRecord, Outcome

    pm, _kubelet = kube
    inp = InProcessMetadataRepository()
    kdone, fdone = InProcessMetadataRepository(), InProcessMetadataRepository()
    rm = ResourceManager(Resources.parse(cpu=2, mem="4Gi"))

    @KubeFunctionTask("fn", lambda: pm, rm, FUNC_TEMPLATE, None, kdone, fdone, script="pipeline.py")
    async def fn(job, inp):
        if await inp.info(job) < 0:
            raise ValueError(f"negative input for {job}")

    fn.link("inp", inp, is_input=True)
    await fn.validate()
    await inp.dump("F", -1)
    await inp.dump("G", 1)
    # Inside the pod (the CLI's launch --sync): the body's failure goes to func_done, with its traceback.
    sync = LaunchOptions(sync=True)
    with pytest.raises(ValueError, match="negative input for F"):
        await fn.launch("F", sync)
    assert await fn.record_failure("F", ValueError("x"), "launch", sync) is False  # kube_done is the pod's
    record = JobRecord.from_dict(await fdone.info("F"))
    assert record.outcome is Outcome.FAILURE and record.error_type == "ValueError"
    assert record.message == "negative input for F" and any(f.function == "fn" for f in record.frames)
    assert await fn.launch("G", sync) is None
    assert JobRecord.from_dict(await fdone.info("G")).succeeded
    assert not await kdone.contains("F") and not await kdone.contains("G")
    assert await pm.query() == []
