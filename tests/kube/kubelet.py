"""Kubelet: the test playing the node for an emulated API server (kmock), or waiting for the real
kubelet on a real cluster. Imported by name (pytest puts this directory on sys.path)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from pdtnb.managers.pod import PodManager


class Kubelet:
    """What the test uses to play the node.

    On the emulator nothing runs, so the test moves pods itself: ``run`` sets phase Running and
    ``finish`` registers the logs and sets Succeeded (exit code 0) or Failed. On a real cluster
    (PDTNB_TEST_KUBE_CONTEXT) the real kubelet does that: the same calls wait until the pod gets
    there by itself, so the pod's command must produce the outcome the test expects (the tests'
    templates print ``output of JOB`` and exit with the code they are given).
    """

    def __init__(self, podman: PodManager, emulator: Any | None):
        self.podman = podman
        self.emulator = emulator

    @property
    def emulated(self) -> bool:
        return self.emulator is not None

    async def _wait_phase(self, pod_name: str, phases: set[str], timeout: float = 180) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            pod = await self.podman.v1.read_namespaced_pod(pod_name, self.podman.namespace)
            if pod.status is not None and pod.status.phase in phases:
                return pod
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"pod {pod_name} did not reach {sorted(phases)} in {timeout} s")
            await asyncio.sleep(0.5)

    async def set_phase(
        self,
        pod_name: str,
        phase: str,
        exit_code: int | None = None,
        reason: str | None = None,
        node: str | None = None,
        message: str | None = None,
        container_reason: str | None = None,
    ) -> None:
        """Emulator only: patch the pod's status the way a kubelet would. ``reason`` and
        ``message`` are the pod's (``Evicted``), ``container_reason`` the terminated container's
        (``OOMKilled``, ``Error``)."""
        assert self.emulated, "set_phase is for the emulator; use run/finish"
        status: dict[str, Any] = {"phase": phase}
        if reason is not None:
            status["reason"] = reason
        if message is not None:
            status["message"] = message
        if exit_code is not None:
            # what a kubelet reports: now, to the second
            finished = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            terminated: dict[str, Any] = {"exitCode": exit_code, "finishedAt": finished}
            if container_reason is not None:
                terminated["reason"] = container_reason
            status["containerStatuses"] = [
                {
                    "name": "main",
                    "image": "busybox",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ]
        if node is not None:  # scheduled before it ends, so a fast reaper never sees an ended pod without a node
            await self.podman.v1.patch_namespaced_pod(pod_name, self.podman.namespace, {"spec": {"nodeName": node}})
        await self.podman.v1.patch_namespaced_pod_status(pod_name, self.podman.namespace, {"status": status})

    def set_logs(self, pod_name: str, text: str) -> None:
        if self.emulated:
            self.emulator[f"get /api/v1/namespaces/{self.podman.namespace}/pods/{pod_name}/log"] << text.encode()

    async def run(self, pod_name: str) -> None:
        """The pod starts running."""
        if self.emulated:
            await self.set_phase(pod_name, "Running")
        else:
            await self._wait_phase(pod_name, {"Running", "Succeeded", "Failed"})

    async def finish(self, pod_name: str, exit_code: int = 0, logs: str = "", node: str = "node-a") -> None:
        """The pod's container ends with ``exit_code`` after printing ``logs``."""
        if self.emulated:
            self.set_logs(pod_name, logs)
            await self.set_phase(pod_name, "Succeeded" if exit_code == 0 else "Failed", exit_code=exit_code, node=node)
        else:
            await self._wait_phase(pod_name, {"Succeeded", "Failed"})
