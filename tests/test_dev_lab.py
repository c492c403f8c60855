"""``./dev lab``: from a checkout to JupyterLab on notebooks/ in one command.

The command runs in a subprocess on this test's own venv (``PDTNB_VENV``) and a chosen free port
(``PDTNB_LAB_PORT``), with a terminal as standard input, as when a newcomer types it: it prints
the URL with its token; the server answers ``/api/status``, lists the example notebooks, and has a
kernel running the venv's python; an extra argument reaches jupyter lab; one SIGINT (Ctrl-C) stops
it (the server's "Shut down? (y/[n])" question is answered) and frees the port. Nothing is
installed: the test runs only where ``./dev`` already set the venv up (``./dev test`` does, before
running the suite), and checks ``./dev`` said nothing about installing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+)")
START_TIMEOUT = 120  # seconds: JupyterLab's first start on a busy 2-core machine


def venv_set_up(venv: Path) -> bool:
    """What ``venv_has_extra notebook`` in ./dev checks: a stamp for this pyproject.toml."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    for stamp in venv.glob(".pdtnb-installed-*"):
        extras = stamp.name[len(".pdtnb-installed-") :].split(",")
        if ("notebook" in extras or "all" in extras) and stamp.read_text().strip() == digest:
            return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing listens on the port, and a server could listen there again (SO_REUSEADDR, as servers
    bind: the connections this test made may linger in TIME_WAIT, which is not being taken)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def api(port: int, token: str, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, (path, response.status)
        return json.loads(response.read())


def test_dev_lab_serves_the_notebooks_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    if not venv_set_up(venv) or importlib.util.find_spec("jupyterlab") is None:
        pytest.skip(f"{venv} is not set up by ./dev for this pyproject.toml (./dev test does): ./dev lab would install")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_PATH", "JUPYTER_TOKEN")}
    env.update(
        PDTNB_VENV=str(venv),
        PDTNB_LAB_PORT=str(port),
        # Keep the server's files out of the home directory, and the user's configuration out.
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
    )
    primary, secondary = pty.openpty()  # a terminal on stdin: the server asks before shutting down
    lines: list[str] = []
    proc = subprocess.Popen(
        [str(ROOT / "dev"), "lab", "--ServerApp.log_level=DEBUG"],
        cwd=tmp_path,
        env=env,
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    os.close(secondary)
    assert proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:
        for line in stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        found = None
        while found is None and time.monotonic() < deadline and proc.poll() is None:
            found = next((m for m in map(URL.search, list(lines)) if m), None)
            time.sleep(0.2)
        assert found is not None, f"no URL printed (exit {proc.poll()}):\n{''.join(lines)}"
        assert int(found.group(1)) == port
        token = found.group(2)
        assert len(token) >= 32

        status = None
        while status is None and time.monotonic() < deadline:
            assert proc.poll() is None, f"./dev lab exited {proc.returncode}:\n{''.join(lines)}"
            try:
                status = api(port, token, "/api/status")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        assert status is not None and "started" in status, "".join(lines)
        with pytest.raises(urllib.error.HTTPError) as denied:  # the token is required
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/", timeout=10)
        assert denied.value.code in (401, 403)

        contents = api(port, token, "/api/contents/")
        listed = {entry["name"] for entry in contents["content"]}
        expected = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
        assert "quickstart.ipynb" in expected and expected <= listed, listed

        specs = api(port, token, "/api/kernelspecs")["kernelspecs"]
        ours = {
            name
            for name, spec in specs.items()
            if Path(spec["spec"]["argv"][0]).parent.resolve() == (venv / "bin").resolve()
        }
        assert "python3" in ours, {name: spec["spec"]["argv"] for name, spec in specs.items()}

        output = "".join(lines)
        assert "[D " in output  # --ServerApp.log_level=DEBUG reached jupyter lab
        assert "installing" not in output, output
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: one is enough
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            pytest.fail(f"./dev lab did not stop on SIGINT within 30 s:\n{''.join(lines)}")
        finally:
            os.close(primary)
            reader.join(timeout=10)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{''.join(lines)}"
    assert "Shut down this Jupyter server" not in "".join(lines)  # one Ctrl-C, no question
    deadline = time.monotonic() + 10
    while not port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert port_is_free(port), f"port {port} still taken after ./dev lab exited"
