"""Kubernetes benchmark: N jobs of a KubeTask through the kmock emulated API server.

    .venv/bin/python bench/kube.py [--jobs 200] [--concurrency 50] [--repeat 3]

There is no real API server here, so this cannot measure a cluster. What it measures is pdtnb's
own cost per pod: render and check the manifest, reserve, create, list, reap (done record,
delete, release), in the pipeline's process, as CPU seconds of that process. The emulator and a
coroutine playing the kubelet (it finishes every pod it sees: phase Succeeded, exit code 0) run
in a child process, so their cost (kmock is slow: tens of milliseconds a request) shows in the wall
time but not in the CPU figure. Logs are not fetched (``logs=None``): kmock serves logs only
through one registered route per pod, which makes every later request slower.
``run`` is timed until every job is done; every job's done record is then checked.
"""

from __future__ import annotations

import argparse
import asyncio
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
            await pm.v1.patch_namespaced_pod_status(
                name,
                pm.namespace,
                {
                    "status": {
                        "phase": "Succeeded",
                        "containerStatuses": [
                            {
                                "name": "main",
                                "image": "busybox",
                                "imageID": "",
                                "ready": False,
                                "restartCount": 0,
                                "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T00:00:00Z"}},
                            }
                        ],
                    }
                },
            )
        await asyncio.sleep(0.02)
    return most


def _serve(conn, namespace: str) -> None:
    """Child process: the emulator and the kubelet, until the parent says stop."""

    async def serve() -> None:
        import kmock
        from kubernetes_asyncio import client

        import pdtnb

        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            emulator.resources["v1/pods"] = {"namespaced": True}
            cfg = client.Configuration()
            cfg.host = str(server.url).rstrip("/")
            pm = pdtnb.PodManager("bench", namespace, lambda: cfg)
            await pm.connect()
            stop = asyncio.Event()
            conn.send(cfg.host)
            loop = asyncio.get_running_loop()
            loop.add_reader(conn.fileno(), stop.set)
            most = await kubelet(pm, stop, emulator)
            conn.recv()
            conn.send(most)
            await pm.close()

    asyncio.run(serve())


async def once(n: int, concurrency: int) -> dict:
    import multiprocessing

    from kubernetes_asyncio import client

    import pdtnb

    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(child, "bench"), daemon=True)
    proc.start()
    host = parent.recv()

    def cfg():
        c = client.Configuration()
        c.host = host
        return c

    pm = pdtnb.PodManager("bench", "bench", cfg)
    await pm.connect()
    session = pdtnb.Session()
    inp = pdtnb.InProcessMetadataRepository({f"j{i}": i for i in range(n)})
    done = pdtnb.InProcessMetadataRepository()
    quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=concurrency, mem="1Ti"))
    task = pdtnb.KubeTask("work", lambda: pm, quota, TEMPLATE, None, done)
    task.poll_interval = 0.05
    task.link("inp", inp, is_input=True)
    pipeline = pdtnb.Pipeline([task], session, [quota])
    async with pipeline:
        cpu0, start = time.process_time(), time.perf_counter()
        await pipeline.run()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    left = await pm.query()
    await pm.close()
    parent.send("stop")
    most = parent.recv()
    proc.join(10)
    records = [await done.info(f"j{i}") for i in range(n)]
    bad = [r for r in records if not r or r["result"] != "success"]
    if bad:
        raise SystemExit(f"{len(bad)} jobs did not succeed: {bad[:3]}")
    if left:
        raise SystemExit(f"{len(left)} pods were left on the emulator")
    return {"seconds": elapsed, "cpu": cpu, "pods_per_s": n / elapsed, "most_live": most}


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
        print(
            f"  run {r['seconds']:.2f} s wall = {r['pods_per_s']:.0f} pods/s; pipeline process CPU "
            f"{r['cpu']:.2f} s = {1000 * r['cpu'] / args.jobs:.1f} ms/pod (most live at once: {r['most_live']})"
        )
    print(
        f"best of {args.repeat}: {best['seconds']:.2f} s wall, {1000 * best['cpu'] / args.jobs:.1f} ms CPU per pod "
        "in the pipeline's process"
    )


if __name__ == "__main__":
    main()
