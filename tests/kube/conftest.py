"""Kubernetes fixtures: an emulated API server (kmock), or a real cluster when
PDTNB_TEST_KUBE_CONTEXT names a kube config context. The test plays the kubelet: it moves
``status.phase`` through the API (patch of the status subresource) and, on the emulator,
registers the pods' logs."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pdtnb.managers.pod import PodManager

CONTEXT = os.environ.get("PDTNB_TEST_KUBE_CONTEXT")


class Kubelet:
    """What the test uses to play the node: set a pod's phase, give it logs."""

    def __init__(self, podman: PodManager, emulator: Any | None):
        self.podman = podman
        self.emulator = emulator

    async def set_phase(self, pod_name: str, phase: str, exit_code: int | None = None, reason: str | None = None,
                        node: str | None = None) -> None:
        status: dict[str, Any] = {"phase": phase}
        if reason is not None:
            status["reason"] = reason
        if exit_code is not None:
            status["containerStatuses"] = [{
                "name": "main", "image": "busybox", "imageID": "", "ready": False, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "finishedAt": "2026-01-01T00:00:00Z"}},
            }]
        await self.podman.v1.patch_namespaced_pod_status(pod_name, self.podman.namespace, {"status": status})
        if node is not None:
            await self.podman.v1.patch_namespaced_pod(pod_name, self.podman.namespace, {"spec": {"nodeName": node}})

    def set_logs(self, pod_name: str, text: str) -> None:
        if self.emulator is not None:
            self.emulator[f"get /api/v1/namespaces/{self.podman.namespace}/pods/{pod_name}/log"] << text.encode()


@pytest.fixture
async def kube() -> AsyncIterator[tuple[PodManager, Kubelet]]:
    app = "pdtnb-test-" + uuid.uuid4().hex[:6]
    if CONTEXT:
        from kubernetes_asyncio import client, config

        async def cfg() -> Any:
            c = client.Configuration()
            await config.load_kube_config(context=CONTEXT, client_configuration=c)
            return c

        pm = PodManager(app, os.environ.get("PDTNB_TEST_KUBE_NAMESPACE", "default"), cfg)
        try:
            yield pm, Kubelet(pm, None)
        finally:
            for pod in await pm.query():
                await pm.delete(pod)
            await pm.close()
        return
    kmock = pytest.importorskip("kmock")
    from kubernetes_asyncio import client

    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.resources["v1/pods"] = {"namespaced": True}  # so that an empty list is not a 404
        def cfg() -> Any:
            c = client.Configuration()
            c.host = str(server.url).rstrip("/")
            return c

        pm = PodManager(app, "testns", cfg)
        await pm.connect()
        try:
            yield pm, Kubelet(pm, emulator)
        finally:
            await pm.close()
