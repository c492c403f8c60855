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
from kubelet import Kubelet

from pdtnb.managers.pod import PodManager

CONTEXT = os.environ.get("PDTNB_TEST_KUBE_CONTEXT")


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
            for pod in await pm.query(include_terminating=True):
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
