"""notebooks/kubernetes.ipynb executed top to bottom on a real Jupyter kernel (nbclient), its
KubeTask talking over HTTP to kmock's emulated Kubernetes API server.

The notebook's kernel is another process, so the emulator runs in a background thread with its
own event loop (nbclient's execution blocks this thread), and the notebook reaches it through
``PDTNB_KUBE_HOST``. The emulator stores pods but runs none: an :class:`EmulatedCluster` plays the
kubelet from the same thread, through the API as a kubelet would: it starts each new pod of the
notebook's app, then ends it as the pod's command would on a real node (``echo $(echo "$TEXT" | wc -w) words``:
it prints the word count of the text the template put in the pod's environment, and exits 0).

The test checks what the notebook showed (the ``%pdt status`` counts at each step, the quota
holding two jobs back, ``%pdt update`` reaping, the logs and done record ``%pdt cat`` printed),
what it left in its work directory (a done record and the right word count for every pod), and
what the API server saw (one pod per job, never more than the quota's two at once, none left), and
that the notebook exports (``python -m pdtnb export``) as a script whose ``status`` sees the same.
"""

from __future__ import annotations

import ast
import asyncio
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from kubelet import Kubelet
from nbexec import cell_text, execute, write_kernelspec

kmock = pytest.importorskip("kmock")
pytest.importorskip("kubernetes_asyncio")

from pdtnb.managers.pod import PodManager, job_of  # noqa: E402
from pdtnb.notebook.export import main as export_main  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "kubernetes.ipynb"
CELL_TIMEOUT = 60
IMAGE = "busybox:1.36"  # the notebook's default
NODE = "node-emulated"

#: The notebook's inputs, and the word counts its pods print.
TEXTS = {
    "river": "The river froze from the edges inward. Under the floor the water kept moving.",
    "orchard": "Nine apple trees stood in three rows.",
    "harbour": "Boats came in at dusk, and the nets were hung to dry along the wall.",
    "lighthouse": "Every evening the keeper climbed the steps and counted them aloud.",
}
WORDS = {job: len(text.split()) for job, text in TEXTS.items()}


# ---- the emulated cluster ---------------------------------------------------------------------


class EmulatedCluster:
    """kmock's API server plus a kubelet, on an event loop of their own in a background thread.

    Each pod of ``app`` is moved to Running when first seen, then, ``hold`` seconds later, gets
    the logs its command would print and the phase Succeeded with exit code 0 on ``NODE``.
    Records the jobs in the order their pods appeared and the most pods that existed at once.
    """

    def __init__(self, app: str, namespace: str, hold: float = 0.3):
        self.app = app
        self.namespace = namespace
        self.hold = hold
        self.url = ""
        self.jobs: list[str] = []
        self.most_at_once = 0
        self.left: list[str] | None = None  # pods still on the server when stopped
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="emulated-cluster", daemon=True)

    def __enter__(self) -> EmulatedCluster:
        self._thread.start()
        if not self._ready.wait(30) or self.error is not None:
            self._halt()
            raise RuntimeError(f"the emulated API server did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._halt()

    def _halt(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the emulated cluster's thread did not stop"

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:
            self.error = e
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from kubernetes_asyncio import client

        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            emulator.resources["v1/pods"] = {"namespaced": True}  # so that an empty list is not a 404
            self.url = str(server.url).rstrip("/")

            def configuration() -> Any:
                c = client.Configuration()
                c.host = self.url
                return c

            podman = PodManager(self.app, self.namespace, configuration)
            await podman.connect()
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            try:
                await self._kubelet(podman, emulator)
                self.left = [p.metadata.name for p in await podman.query(include_terminating=True)]
            finally:
                await podman.close()

    async def _kubelet(self, podman: PodManager, emulator: Any) -> None:
        assert self._stop is not None
        kubelet = Kubelet(podman, emulator)
        started: dict[str, float] = {}
        finished: set[str] = set()
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            pods = await podman.query()
            self.most_at_once = max(self.most_at_once, len(pods))
            for pod in pods:
                name = pod.metadata.name
                if name not in started:
                    self.jobs.append(job_of(pod))
                    started[name] = loop.time()
                    await kubelet.run(name)
                elif name not in finished and loop.time() - started[name] >= self.hold:
                    finished.add(name)
                    env = {e.name: e.value for e in pod.spec.containers[0].env or []}
                    logs = f"{len(env['TEXT'].split())} words\n"  # what the pod's command prints
                    await kubelet.finish(name, 0, logs=logs, node=NODE)
            try:
                await asyncio.wait_for(self._stop.wait(), 0.1)
            except asyncio.TimeoutError:
                pass


# ---- running the notebook ---------------------------------------------------------------------


def outputs_of(nb: Any, source: str) -> list[str]:
    """What each code cell whose source is exactly ``source`` showed, in order."""
    return [cell_text(c) for c in nb.cells if c.cell_type == "code" and c.source.strip() == source]


def output_of(nb: Any, source: str) -> str:
    (text,) = outputs_of(nb, source)
    return text


def output_containing(nb: Any, fragment: str) -> str:
    """What the code cell whose source contains ``fragment`` showed (asserted unique)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and fragment in c.source]
    assert len(cells) == 1, f"{len(cells)} cells contain {fragment!r}"
    return cell_text(cells[0])


def counts(status_text: str) -> dict[str, int]:
    """The state counts (``# count: ready R, live L, done D, failed F``) and per-link job counts
    (``count.LINK N``) of a ``%pdt status`` result."""
    match = re.search(r"# count: ready (\d+), live (\d+), done (\d+), failed (\d+)", status_text)
    assert match, f"no summary line in {status_text!r}"
    found = dict(zip(("ready", "live", "done", "failed"), map(int, match.groups())))
    found.update({f"{link} jobs": int(n) for link, n in re.findall(r"^count\.(\w+) (\d+)$", status_text, re.M)})
    return found


# ---- the test ---------------------------------------------------------------------------------


def test_kubernetes_notebook_runs_its_pods_on_emulated_api_server(tmp_path, monkeypatch):
    source = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in source.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell is not tagged parameters"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs not stripped"

    app, namespace = f"nbtest-{uuid.uuid4().hex[:6]}", "notebooks"
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    kernel = write_kernelspec(tmp_path / "jupyter", "pdtnb-kubernetes-notebook")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kube-config"))  # only PDTNB_KUBE_HOST may be used
    monkeypatch.delenv("PDTNB_KUBE_IMAGE", raising=False)
    monkeypatch.delenv("PDTNB_KUBE_WORKDIR", raising=False)
    monkeypatch.setenv("PDTNB_KUBE_NAMESPACE", namespace)
    monkeypatch.setenv("PDTNB_KUBE_APP", app)
    monkeypatch.setenv("PDTNB_KUBE_WAIT_TIMEOUT", "30")

    with EmulatedCluster(app, namespace) as cluster:
        monkeypatch.setenv("PDTNB_KUBE_HOST", cluster.url)
        nb = execute(
            NOTEBOOK,
            tmp_path,
            kernel,
            CELL_TIMEOUT,
            lambda: f"\nthe emulated cluster failed: {cluster.error!r}" if cluster.error else "",
        )
        # exported as a script (the pdtnb-skip cells left out), it finds the same jobs and no pods
        script = tmp_path / "pipeline.py"
        exported = export_main([str(NOTEBOOK), "-o", str(script)])  # python -m pdtnb export, in this process
        status = subprocess.run(
            [sys.executable, str(script), "status"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    nbformat.write(nb, tmp_path / "kubernetes.executed.ipynb")  # to look at when a check fails
    assert cluster.error is None, f"the emulated cluster failed: {cluster.error!r}"

    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o["output_type"] == "error"], cell.source
            assert "Traceback" not in cell_text(cell), cell_text(cell)
    assert cluster.url in output_containing(nb, "API server:")

    # the steps, as %pdt showed them
    statuses = [counts(text) for text in outputs_of(nb, "%pdt status")]
    assert len(statuses) == 4
    fresh, launched, reaped, final = statuses
    assert fresh == {
        "ready": 4,
        "live": 0,
        "done": 0,
        "failed": 0,
        "texts jobs": 4,
        "live jobs": 0,
        "logs jobs": 0,
        "done jobs": 0,
    }
    assert "count:river launched" in output_of(nb, "%pdt launch count river")
    # the quota (1 CPU, 500m a pod) lets one more pod start next to river's and holds two back
    assert "launch phase: 3 ready, 1 launched, 0 failed to launch, 2 held back" in output_of(nb, "%pdt launch")
    pods_shown = output_containing(nb, "quota.quota")
    assert len(re.findall(r"requests 500m CPU and 64Mi", pods_shown)) == 2, pods_shown
    assert "job river" in pods_shown
    assert launched == {
        "ready": 2,
        "live": 2,
        "done": 0,
        "failed": 0,
        "texts jobs": 4,
        "live jobs": 2,
        "logs jobs": 0,
        "done jobs": 0,
    }
    phases = ast.literal_eval(output_containing(nb, "await wait_for_pods_to_end()"))
    assert list(phases.values()) == ["Succeeded", "Succeeded"], phases
    assert "tasks with live or reaped jobs: count" in output_of(nb, "%pdt update")
    assert reaped == {
        "ready": 2,
        "live": 0,
        "done": 2,
        "failed": 0,
        "texts jobs": 4,
        "live jobs": 0,
        "logs jobs": 2,
        "done jobs": 2,
    }
    assert output_of(nb, "%pdt cat count.logs river") == f"{WORDS['river']} words\n"
    record = yaml.safe_load(output_of(nb, "%pdt cat count.done river"))
    assert record["result"] == "success" and record["phase"] == "Succeeded" and record["exit_code"] == 0
    assert (record["image"], record["node"]) == (IMAGE, NODE)
    assert "pods left: 0" in output_containing(nb, "while await pipeline.update()")
    assert final == {
        "ready": 0,
        "live": 0,
        "done": 4,
        "failed": 0,
        "texts jobs": 4,
        "live jobs": 0,
        "logs jobs": 4,
        "done jobs": 4,
    }
    table = output_containing(nb, "for job in sorted(await done.job_ids())").splitlines()
    assert [line.split()[:2] for line in table] == [[job, "success"] for job in sorted(TEXTS)]
    for line in table:
        assert f"{WORDS[line.split()[0]]} words" in line and f"node {NODE}" in line
    assert output_of(nb, "%pdt ls count.done").split() == [*sorted(TEXTS), "(4", "jobs)"]
    assert exported == 0, "the notebook did not export as a script"
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == ["count", "count.texts 4", "count.live 0", "count.done 4", "count.logs 4", ""]
    assert "# count: ready 0, live 0, done 4, failed 0" in status.stderr

    # what the notebook left in its work directory
    work = tmp_path / "kubernetes-work"
    for job, words in WORDS.items():
        done = yaml.safe_load((work / "count-done" / f"{job}.yaml").read_text())
        assert done["result"] == "success" and done["exit_code"] == 0 and done["node"] == NODE, done
        # the end time is the container's, to the second as Kubernetes keeps it
        assert abs((done["end_time"] - done["start_time"]).total_seconds()) < 60, done
        assert (work / "logs" / f"{job}.txt").read_text() == f"{words} words\n"

    # what the API server saw: one pod per job, within the quota, all reaped
    assert sorted(cluster.jobs) == sorted(TEXTS), cluster.jobs
    assert cluster.jobs[0] == "river"  # launched by hand first
    assert cluster.most_at_once == 2
    assert cluster.left == []
