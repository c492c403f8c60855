"""Kubernetes benchmark: N jobs of a KubeTask through the kmock emulated API server.

    .venv/bin/python bench/kube.py [--jobs 200] [--concurrency 50] [--repeat 3]

There is no real API server here, so this measures pdtnb's own cost per pod (render and check the
manifest, reserve, create, list, reap: logs, done record, delete, release) plus the emulator's
HTTP round trips, not a cluster's scheduling. A coroutine plays the kubelet: it finishes every
pod it sees (phase Succeeded, exit code 0, logs) as soon as it appears. The pipeline's
``run`` is timed until every job is done; every job's done record and logs are then checked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

TEMPLATE = """\
apiVersion: v1
kind: Pod
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo {{ job }}"]
    resources: {requests: {cpu: 1, memory: 64Mi}}
"""


async def kubelet(pm, stop: asyncio.Event, emulator) -> int:
    """Finish every pod as soon as it appears; returns the most pods seen at once."""
    finished: set[str] = set()
    most = 0
    while not stop.is_set():
        pods = await pm.query()
        most = max(most, len(pods))
        for pod in pods:
            name = pod.metadata.name
            if name in finished:
                continue
            finished.add(name)
            emulator[f"get /api/v1/namespaces/{pm.namespace}/pods/{name}/log"] << f"{name}\n".encode()
            await pm.v1.patch_namespaced_pod_status(name, pm.namespace, {"status": {
                "phase": "Succeeded", "containerStatuses": [{
                    "name": "main", "image": "busybox", "imageID": "", "ready": False, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T00:00:00Z"}}}]}})
        await asyncio.sleep(0.02)
    return most


async def once(n: int, concurrency: int) -> dict:
    import kmock
    from kubernetes_asyncio import client

    import pdtnb

    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.resources["v1/pods"] = {"namespaced": True}

        def cfg():
            c = client.Configuration()
            c.host = str(server.url).rstrip("/")
            return c

        pm = pdtnb.PodManager("bench", "bench", cfg)
        await pm.connect()
        session = pdtnb.Session()
        inp = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(n)})
        logs, done = pdtnb.InProcessBlobRepository(), pdtnb.InProcessMetadataRepository()
        quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=concurrency, mem="1Ti"))
        task = pdtnb.KubeTask("work", lambda: pm, quota, TEMPLATE, logs, done)
        task.poll_interval = 0.05
        task.link("inp", inp, is_input=True)
        pipeline = pdtnb.Pipeline([task], session, [quota])
        stop = asyncio.Event()
        async with pipeline:
            kube_task = asyncio.create_task(kubelet(pm, stop, emulator))
            start = time.perf_counter()
            await pipeline.run()
            elapsed = time.perf_counter() - start
            stop.set()
            most = await kube_task
        records = [await done.info(f"j{i}") for i in range(n)]
        bad = [r for r in records if not r or r["result"] != "success"]
        if bad:
            raise SystemExit(f"{len(bad)} jobs did not succeed: {bad[:3]}")
        for i in range(n):
            async with await logs.open(f"j{i}", "rb") as fp:
                assert (await fp.read()).strip(), f"no logs for j{i}"
        if await pm.query():
            raise SystemExit("pods were left on the emulator")
        await pm.close()
        return {"seconds": elapsed, "pods_per_s": n / elapsed, "most_live": most}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    results = [asyncio.run(once(args.jobs, args.concurrency)) for _ in range(args.repeat)]
    best = min(results, key=lambda r: r["seconds"])
    print(f"KubeTask on the emulated API server: {args.jobs} pods, quota {args.concurrency} at once")
    for r in results:
        print(f"  run {r['seconds']:.2f} s = {r['pods_per_s']:.0f} pods/s (most live at once: {r['most_live']})")
    print(f"best of {args.repeat}: {best['seconds']:.2f} s = {best['pods_per_s']:.0f} pods/s", file=sys.stdout)


if __name__ == "__main__":
    main()
