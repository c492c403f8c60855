"""Helpers for the Docker registry tests: run a real Debian ``docker-registry`` (distribution) on
127.0.0.1, and push small images to it through the registry HTTP API, without a Docker engine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from servers import free_port

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


class RegistryServer:
    """A ``docker-registry serve CONFIG.yml`` process listening on 127.0.0.1:port, deletes enabled."""

    def __init__(self, root: Path, binary: str | None = None) -> None:
        self.binary = binary or shutil.which("docker-registry") or "/usr/bin/docker-registry"
        self.root = root
        self.port = free_port()
        self.domain = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.domain}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        storage = self.root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        self.log = open(self.root / "registry.log", "wb")  # closed in stop()
        self.proc = subprocess.Popen([self.binary, "serve", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}: {self.read_log()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.url}/v2/ within {timeout} s")

    def read_log(self) -> str:
        try:
            return (self.root / "registry.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()


def _request(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.headers, r.read()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload_blob(base: str, repository: str, data: bytes) -> str:
    """Upload ``data`` as a blob (POST an upload, then a monolithic PUT with the digest)."""
    digest = digest_of(data)
    status, headers, _ = _request("POST", f"{base}/v2/{repository}/blobs/uploads/")
    assert status == 202, status
    location = headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    status, _, _ = _request(
        "PUT", f"{location}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"}
    )
    assert status == 201, status
    return digest


def push_image(base: str, repository: str, tags: list[str], payload: bytes = b"pdtnb") -> str:
    """Push a tiny schema2 image (one config blob, one layer blob) to ``repository`` under each of
    ``tags``; return the manifest digest. ``base`` is ``http://host:port``."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "note": payload.hex()}
    ).encode()
    layer = payload
    config_digest = upload_blob(base, repository, config)
    layer_digest = upload_blob(base, repository, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": config_digest,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": layer_digest,
                }
            ],
        }
    ).encode()
    for tag in tags:
        status, _, _ = _request(
            "PUT", f"{base}/v2/{repository}/manifests/{tag}", manifest, {"Content-Type": MANIFEST_V2}
        )
        assert status == 201, status
    return digest_of(manifest)


def registry_from_env() -> str | None:
    """``PDTNB_TEST_DOCKER_REGISTRY`` (``host:port``, plain HTTP, deletes enabled) when set."""
    return os.environ.get("PDTNB_TEST_DOCKER_REGISTRY") or None
