"""SSHLinuxManager over a real OpenSSH server on 127.0.0.1 (see sshd.py): jobs, quotas, timeouts,
kill, and the connection failure modes of :func:`pdtnb.managers.ssh.connect`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

asyncssh = pytest.importorskip("asyncssh")

import recovery_pipeline  # noqa: E402
from proc_helpers import blob, kill_job_tree, running  # noqa: E402
from sshd import SSHServer, free_port, start_sshd, stop_sshd  # noqa: E402

from pdtnb import (  # noqa: E402
    InProcessBlobRepository,
    InProcessMetadataRepository,
    Pipeline,
    ProcessTask,
    ResourceManager,
    Resources,
    Session,
    SSHConnectionError,
)
from pdtnb.managers.ssh import SSHLinuxManager, connect  # noqa: E402
from pdtnb.repository.metadata import yaml_load  # noqa: E402


@pytest.fixture(scope="session")
def sshd_server(service_unavailable: Any) -> Iterator[SSHServer]:
    try:
        server = start_sshd()
    except (RuntimeError, OSError, FileNotFoundError) as exc:
        service_unavailable("OpenSSH server", str(exc))
    yield server
    stop_sshd(server)


@pytest.fixture
def remote_root() -> Iterator[Path]:
    """A directory the test user's jobs work in (made by the manager itself, as that user)."""
    path = Path(f"/tmp/pdtnb-ssh-test-{uuid.uuid4().hex[:12]}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_rig(
    server: SSHServer,
    remote_root: Path,
    template: str,
    jobs: dict[str, Any],
    *,
    quota: int = 4,
    with_stdin: bool = False,
    **kwargs: Any,
) -> Any:
    session = Session()

    @session.resource
    async def ssh():
        async with connect(**server.connect_kwargs()) as conn:
            yield conn

    @session.resource
    async def procman():
        yield SSHLinuxManager("app", ssh, remote_root)

    inp = InProcessMetadataRepository()
    inp.data.update(jobs)
    stdin = InProcessBlobRepository() if with_stdin else None
    rig = type("Rig", (), {})()
    rig.session, rig.procman, rig.inp, rig.stdin = session, procman, inp, stdin
    rig.stdout, rig.stderr = InProcessBlobRepository(), InProcessBlobRepository()
    rig.done, rig.pids = InProcessMetadataRepository(), InProcessMetadataRepository()
    rig.resources = ResourceManager(Resources.parse(cpu=quota, mem="4Gi"))
    rig.task = ProcessTask(
        "t",
        procman,
        rig.resources,
        Resources.parse(cpu=1, mem="1Mi"),
        rig.pids,
        template,
        done=rig.done,
        stdin=stdin,
        stdout=rig.stdout,
        stderr=rig.stderr,
        **kwargs,
    )
    if not with_stdin:
        rig.task.link("inp", inp, is_input=True)
    rig.pipeline = Pipeline([rig.task], session, [rig.resources])
    return rig


@pytest.fixture
def rigs(sshd_server: SSHServer, remote_root: Path) -> Iterator[Any]:
    made: list[Any] = []

    def make(template: str, jobs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        rig = make_rig(sshd_server, remote_root, template, jobs or {}, **kwargs)
        made.append(rig)
        return rig

    yield make
    for rig in made:  # the server is this machine: clean up left-over jobs by pid
        for entry in rig.pids.data.values():
            ident = str(entry.get("pid", ""))
            if ident.count(":") == 2:
                kill_job_tree(int(ident.split(":")[0]))


def read_int(path: Path) -> int | None:
    """The integer in a file, or None if the file is missing or not yet written."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


async def run(rig: Any, timeout: float = 30) -> Any:
    async with rig.pipeline:
        return await rig.pipeline.run(timeout=timeout)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


# ---- jobs over SSH ------------------------------------------------------------------------------


async def test_stdin_stdout_stderr_and_remote_identity(rigs: Any, sshd_server: SSHServer) -> None:
    rig = rigs('cat; echo "err of {{ job }} $(id -un)" >&2; printf "tail"\n', with_stdin=True)
    payloads = {"a": "alpha\n", "b": "", "c": "x" * 100_000 + "\n"}
    for job, text in payloads.items():
        async with await rig.stdin.open(job, "w") as fp:
            await fp.write(text)
    await run(rig)
    for job, text in payloads.items():
        assert await blob(rig.stdout, job) == text + "tail"
        assert await blob(rig.stderr, job) == f"err of {job} {sshd_server.user}\n"
        record = rig.done.data[job]
        assert record["result"] == "success" and record["exit_code"] == 0
        assert record["start_time"] <= record["end_time"]
    assert rig.pids.data == {}


async def test_nonzero_exit_code(rigs: Any) -> None:
    rig = rigs("echo before; exit {{ inp }}\n", {"ok": 0, "big": 42})
    await run(rig)
    assert rig.done.data["ok"]["result"] == "success"
    assert rig.done.data["big"]["result"] == "failure" and rig.done.data["big"]["exit_code"] == 42
    assert await blob(rig.stdout, "big") == "before\n"


async def test_shebang_script_and_environment(rigs: Any) -> None:
    rig = rigs('#!/bin/sh\necho "$GREETING {{ job }}" "$(pwd)"\n', {"j": 1}, environ={"GREETING": "hi 'there'"})
    await run(rig)
    out = await blob(rig.stdout, "j")
    assert out.startswith("hi 'there' j ") and out.strip().endswith("/t/j/cwd")


async def test_quota_is_never_exceeded(rigs: Any) -> None:
    quota = 4
    rig = rigs("date +%s.%N\nsleep 0.1\ndate +%s.%N\n", {str(i): i for i in range(30)}, quota=quota)
    summary = await run(rig, timeout=40)
    assert summary.launched == 30
    assert all(r["result"] == "success" for r in rig.done.data.values()) and len(rig.done.data) == 30
    own = [tuple(map(float, (await blob(rig.stdout, job)).split())) for job in rig.inp.data]
    assert 2 <= max_overlap(own) <= quota
    assert rig.pids.data == {}


async def test_more_jobs_than_the_servers_channels(rigs: Any) -> None:
    # OpenSSH's default MaxSessions (10) is below the number of running jobs: the manager must
    # share its channels, not fail to open them.
    rig = rigs("sleep 0.2\necho {{ job }}\n", {str(i): i for i in range(24)}, quota=12)
    summary = await run(rig, timeout=40)
    assert summary.launched == 24
    assert all(r["result"] == "success" for r in rig.done.data.values()) and len(rig.done.data) == 24
    assert await blob(rig.stdout, "23") == "23\n"


async def test_timeout_kills_the_job_group(rigs: Any, remote_root: Path) -> None:
    rig = rigs(
        f"sleep 30 & echo $! > {remote_root}/bg_{{{{ job }}}}\necho started\nsleep 30\n",
        {"slow": 1},
        timeout=timedelta(seconds=0.5),
    )
    started = time.monotonic()
    await run(rig)
    assert 0.5 <= time.monotonic() - started < 8
    record = rig.done.data["slow"]
    assert record["result"] == "timeout" and record["timed_out"] is True and record["exit_code"] == 137
    assert await blob(rig.stdout, "slow") == "started\n"
    background = int((remote_root / "bg_slow").read_text())
    deadline = time.monotonic() + 5
    while running(background):
        assert time.monotonic() < deadline, "the timed-out job's background process survived"
        await asyncio.sleep(0.02)


async def test_manager_spawn_kill_liveness_and_files(sshd_server: SSHServer, remote_root: Path) -> None:
    async with connect(**sshd_server.connect_kwargs()) as conn:
        manager = SSHLinuxManager("m", lambda: conn, remote_root)
        assert manager.ssh is conn and str(manager.basedir) == f"{remote_root}/m"
        job = manager.basedir / "job"
        await manager.mkdir(job / "cwd")
        await manager.mkdir(job / "cwd")  # exists: no error
        async with await manager.open(job / "exe", "w") as fp:
            await fp.write("echo $$ > pid; sleep 30 & wait\n")
        async with await manager.open(job / "bin", "wb") as fp:
            await fp.write(b"\x00\xff")
        async with await manager.open(job / "bin", "rb") as fp:
            assert await fp.read() == b"\x00\xff"
        with pytest.raises(FileNotFoundError):
            await manager.open(job / "missing", "r")
        ident = await manager.spawn(
            ["/bin/sh", str(job / "exe")], {}, str(job / "cwd"), str(job / "return_code"), None, None, None
        )
        pid, start, boot = ident.split(":")
        assert int(pid) > 1 and int(start) > 0 and len(boot) == 8
        assert await manager.get_live_pids({ident, f"{pid}:{int(start) + 1}:{boot}", f"{pid}:{start}:00000000"}) == {
            ident
        }
        deadline = time.monotonic() + 5
        while (job_pid := read_int(Path(job / "cwd" / "pid"))) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        assert os.getpgid(job_pid) == job_pid != int(pid)  # the job leads its own process group
        ended = asyncio.Event()
        cancel = manager.watch(ident, ended.set)
        assert cancel is not None
        await manager.kill(ident)
        await asyncio.wait_for(ended.wait(), 5)
        assert await manager.get_live_pids({ident}) == set()
        async with await manager.open(job / "return_code", "r") as fp:
            assert (await fp.read()).strip() == "137"
        assert await manager.mtime(job / "return_code") is not None
        await manager.kill(ident)  # ended: nothing happens
        await manager.rmtree(manager.basedir)
        assert read_int(Path(manager.basedir)) is None


# ---- connection failure modes ----------------------------------------------------------------


async def open_session(**kwargs: Any) -> None:
    session = Session()

    @session.resource
    async def ssh():
        async with connect(**kwargs) as conn:
            yield conn

    async with session:
        ssh()


async def test_unreachable_port_is_a_clear_error_at_session_open(sshd_server: SSHServer) -> None:
    port = free_port()
    kwargs = dict(sshd_server.connect_kwargs(), port=port)
    started = time.monotonic()
    with pytest.raises(SSHConnectionError, match=f"127.0.0.1:{port}"):
        await open_session(**kwargs)
    assert time.monotonic() - started < 5


async def test_connect_timeout(sshd_server: SSHServer) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections but never speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(SSHConnectionError, match=f"127.0.0.1:{port}.*timed out"):
            await open_session(**dict(sshd_server.connect_kwargs(), port=port), connect_timeout=0.5)
        assert time.monotonic() - started < 3


async def test_wrong_client_key_is_refused(sshd_server: SSHServer) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(SSHConnectionError, match=f"127.0.0.1:{sshd_server.port} refused the login"):
        await open_session(**dict(sshd_server.connect_kwargs(), client_keys=[other]))


async def test_unknown_host_key_is_refused(sshd_server: SSHServer, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {other}\n")
    with pytest.raises(SSHConnectionError, match=f"127.0.0.1:{sshd_server.port}.*host key"):
        await open_session(**dict(sshd_server.connect_kwargs(), known_hosts=str(known)))
    # Explicit keys work the same way as a file.
    keys = ([asyncssh.import_public_key(other)], [], [])
    with pytest.raises(SSHConnectionError, match="host key"):
        await open_session(**dict(sshd_server.connect_kwargs(), known_hosts=keys))


async def test_host_keys_are_checked_unless_known_hosts_none(
    sshd_server: SSHServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/known_hosts: the default must not trust the server
    kwargs = sshd_server.connect_kwargs()
    del kwargs["known_hosts"]
    with pytest.raises(SSHConnectionError, match="host key"):
        await open_session(**kwargs)
    async with connect(**kwargs, known_hosts=None) as conn:  # only when asked for explicitly
        result = await conn.run("echo ok", check=True)
        assert result.stdout == "ok\n"


# ---- crash recovery over SSH ------------------------------------------------------------------

# recovery_pipeline.py's pipeline with its LocalLinuxManager replaced by an SSHLinuxManager.
_SSH_PIPELINE = """
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import recovery_pipeline
from pdtnb.managers.ssh import SSHLinuxManager, connect

async def main(root, kwargs):
    async with connect(**kwargs) as conn:
        recovery_pipeline.LocalLinuxManager = lambda app, path: SSHLinuxManager(app, lambda: conn, path)
        await recovery_pipeline.main(root)

asyncio.run(main(Path(sys.argv[1]), json.loads(sys.argv[2])))
"""


@pytest.fixture
def recovery_root() -> Iterator[Path]:
    """recovery_pipeline's directory, open to the SSH test user; every job is released afterwards."""
    root = Path(tempfile.mkdtemp(prefix="pdtnb-ssh-recovery-"))
    root.chmod(0o777)  # the jobs run as the SSH test user
    recovery_pipeline.prepare(root)
    yield root
    (root / "release" / "all").touch()
    time.sleep(0.2)
    shutil.rmtree(root, ignore_errors=True)


def start_first_pipeline(root: Path, kwargs: dict[str, Any]) -> subprocess.Popen:
    here = str(Path(__file__).resolve().parent)
    return subprocess.Popen([sys.executable, "-c", _SSH_PIPELINE, str(root), json.dumps(kwargs), here])


async def test_sigkill_and_restart_over_ssh(
    sshd_server: SSHServer, recovery_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_recovery import log_events, pids_entries, wait_for
    from test_recovery import max_overlap as max_event_overlap

    root = recovery_root
    kwargs = sshd_server.connect_kwargs()
    jobs, quota = recovery_pipeline.JOBS, recovery_pipeline.QUOTA
    first = start_first_pipeline(root, kwargs)
    try:
        await wait_for(
            lambda: len(pids_entries(root)) == quota and len(log_events(root)) == quota,
            f"the first pipeline to start {quota} jobs",
        )
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    before = pids_entries(root)
    running_jobs = sorted(before)
    async with connect(**kwargs) as conn:
        monkeypatch.setattr(
            recovery_pipeline, "LocalLinuxManager", lambda app, path: SSHLinuxManager(app, lambda: conn, path)
        )
        checker = SSHLinuxManager("recovery", lambda: conn, root / "procs")
        idents = {entry["pid"] for entry in before.values()}
        assert await checker.get_live_pids(idents) == idents  # the jobs outlived the pipeline

        ended, still_running = running_jobs[:2], running_jobs[2]
        for job in ended:
            (root / "release" / job).touch()
        rc_files = [root / "procs" / "recovery" / "work" / job / "return_code" for job in ended]
        await wait_for(lambda: all(p.exists() for p in rc_files), "the released jobs to end")

        pipeline, _ = recovery_pipeline.build(root)
        async with pipeline:
            await pipeline.update_only_update()
            assert {p.stem for p in (root / "done").glob("*.yaml")} == set(ended)
            assert set(pids_entries(root)) == {still_running}
            report = await pipeline.launch_phase()
            assert report.launched == quota - 1
            (root / "release" / "all").touch()
            summary = await pipeline.run(timeout=30)
    assert summary.launched == len(jobs) - quota - (quota - 1)
    events = log_events(root)
    assert sorted(job for kind, job, _ in events if kind == "start") == sorted(jobs), "lost or repeated"
    assert max_event_overlap(events) <= quota
    assert pids_entries(root) == {}
    for job in jobs:
        record = yaml_load((root / "done" / f"{job}.yaml").read_bytes(), job)
        assert record["result"] == "success" and record["exit_code"] == 0, (job, record)
        assert (root / "stdout" / job).read_text() == f"output of {job}\n"
