"""A real Debian OpenSSH server on 127.0.0.1 for the SSHLinuxManager tests.

Needs the ``openssh-server`` Debian package (``/usr/sbin/sshd``) and root (to create the test
user). The server gets a generated host key, a test user ``pdtnbssh`` (made with ``useradd -m``
and unlocked with ``usermod -p '*'``) whose only way in is a generated client key, and a
``known_hosts`` file built from the host key. It is stopped by its PID.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from servers import free_port

SSHD = "/usr/sbin/sshd"
USER = "pdtnbssh"


@dataclass
class SSHServer:
    host: str
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    host_pubkey: str
    directory: Path
    pid: int

    def connect_kwargs(self) -> dict:
        return {
            "host": self.host,
            "port": self.port,
            "username": self.user,
            "client_keys": [str(self.client_key)],
            "known_hosts": str(self.known_hosts),
        }


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True, capture_output=True)
    subprocess.run(["usermod", "-p", "*", USER], check=True, capture_output=True)


def start_sshd() -> SSHServer:
    """Start sshd; raises RuntimeError (with the reason) if it cannot be started here."""
    import asyncssh

    if not os.path.exists(SSHD):
        raise RuntimeError(f"{SSHD} is missing (apt-get install -y openssh-server)")
    if os.geteuid() != 0:
        raise RuntimeError("the sshd test server needs root (to create its test user)")
    _ensure_user()
    directory = Path(tempfile.mkdtemp(prefix="pdtnb-sshd-"))
    directory.chmod(0o755)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(str(directory / "host_key"))
    (directory / "host_key").chmod(0o600)
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(str(directory / "client_key"))
    (directory / "client_key").chmod(0o600)
    (directory / "authorized_keys").write_bytes(client_key.export_public_key())
    (directory / "authorized_keys").chmod(0o644)
    port = free_port()
    host_pubkey = host_key.export_public_key().decode().strip()
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pubkey}\n")
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {directory / 'host_key'}\n"
        f"PidFile {directory / 'sshd.pid'}\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        f"AllowUsers {USER}\nSubsystem sftp internal-sftp\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nStrictModes no\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"sshd -t rejected the config: {check.stderr.strip()}")
    log = directory / "sshd.log"
    started = subprocess.run([SSHD, "-f", str(config), "-E", str(log)], capture_output=True, text=True)
    if started.returncode != 0:
        raise RuntimeError(f"sshd did not start: {started.stderr.strip()} {log.read_text() if log.exists() else ''}")
    pidfile = directory / "sshd.pid"
    deadline = time.monotonic() + 10
    while True:
        try:
            pid = int(pidfile.read_text().strip())
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not listen on port {port}: {log.read_text()}") from None
            time.sleep(0.05)
    return SSHServer(
        "127.0.0.1", port, USER, directory / "client_key", directory / "known_hosts", host_pubkey, directory, pid
    )


def stop_sshd(server: SSHServer) -> None:
    try:
        os.kill(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    shutil.rmtree(server.directory, ignore_errors=True)
