"""LocalLinuxManager on its own: spawn, return codes, streams, liveness across pid reuse, kill, watch."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from proc_helpers import running

from pdtnb import STDOUT, AbstractProcessManager, LocalLinuxManager
from pdtnb.managers.local import _get_boot_id, _read_stat, parse_identifier


async def wait_dead(manager: LocalLinuxManager, ident: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while ident in await manager.get_live_pids({ident}):
        if time.monotonic() > deadline:
            raise AssertionError(f"{ident} still running after {timeout} s")
        await asyncio.sleep(0.01)


def script(tmp_path: Path, body: str, name: str = "exe") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    return str(path)  # not executable: spawn must make it so


@pytest.fixture
def manager(tmp_path: Path) -> LocalLinuxManager:
    return LocalLinuxManager("app", tmp_path / "base")


def test_is_a_process_manager(manager: LocalLinuxManager, tmp_path: Path) -> None:
    assert isinstance(manager, AbstractProcessManager)
    assert manager.basedir == tmp_path / "base" / "app"
    assert LocalLinuxManager("x").basedir == Path("/tmp/pydatatask/x")
    with pytest.raises(ValueError):
        LocalLinuxManager("../escape")


async def test_spawn_streams_and_return_code(manager: LocalLinuxManager, tmp_path: Path) -> None:
    (tmp_path / "in").write_text("line one\nline two\n")
    exe = script(tmp_path, 'cat; echo "to err" >&2; pwd; echo "$EXTRA"; exit 7\n')
    (tmp_path / "cwd").mkdir()
    ident = await manager.spawn(
        [exe],
        {"EXTRA": "extra value"},
        str(tmp_path / "cwd"),
        str(tmp_path / "rc"),
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        str(tmp_path / "err"),
    )
    assert isinstance(ident, str)
    await wait_dead(manager, ident)
    assert (tmp_path / "rc").read_text().strip() == "7"
    assert not (tmp_path / "rc.tmp").exists()
    assert (tmp_path / "out").read_text() == f"line one\nline two\n{tmp_path / 'cwd'}\nextra value\n"
    assert (tmp_path / "err").read_text() == "to err\n"


async def test_stderr_interleaved_and_null_streams(manager: LocalLinuxManager, tmp_path: Path) -> None:
    exe = script(tmp_path, "echo a; echo b >&2; echo c; read x || echo 'stdin is empty'\n")
    ident = await manager.spawn([exe], {}, str(tmp_path), str(tmp_path / "rc"), None, str(tmp_path / "out"), STDOUT)
    await wait_dead(manager, ident)
    assert (tmp_path / "out").read_text() == "a\nb\nc\nstdin is empty\n"
    ident = await manager.spawn([exe], {}, str(tmp_path), str(tmp_path / "rc2"), None, None, None)
    await wait_dead(manager, ident)
    assert (tmp_path / "rc2").read_text().strip() == "0"


async def test_environment_is_added_to_not_replacing(manager: LocalLinuxManager, tmp_path: Path) -> None:
    exe = script(tmp_path, 'echo "$PATH"; echo "$ADDED"\n')
    ident = await manager.spawn(
        [exe], {"ADDED": "yes"}, str(tmp_path), str(tmp_path / "rc"), None, str(tmp_path / "out"), None
    )
    await wait_dead(manager, ident)
    path_line, added = (tmp_path / "out").read_text().splitlines()
    assert path_line == os.environ["PATH"]
    assert added == "yes"


async def test_identifier_encodes_pid_start_time_and_boot(manager: LocalLinuxManager, tmp_path: Path) -> None:
    exe = script(tmp_path, "sleep 5\n")
    ident = await manager.spawn([exe], {}, str(tmp_path), str(tmp_path / "rc"), None, None, None)
    try:
        pid, start, boot = parse_identifier(ident)
        stat = _read_stat(pid)
        assert stat is not None and stat[3] == start
        assert boot == _get_boot_id()
        assert await manager.get_live_pids({ident}) == {ident}
        # A fresh manager (as after a pipeline restart) agrees, reading /proc.
        assert await LocalLinuxManager("app", tmp_path / "base").get_live_pids({ident}) == {ident}
    finally:
        await manager.kill(ident)
    await wait_dead(manager, ident)


async def test_recycled_pid_is_not_taken_for_the_job(manager: LocalLinuxManager) -> None:
    # This very process stands in for "a new process that got the old job's pid": same pid,
    # different start time. It must be reported dead and kill must leave it alone.
    me = os.getpid()
    stat = _read_stat(me)
    assert stat is not None
    boot = _get_boot_id()
    recycled = f"{me}:{stat[3] + 12345}:{boot}"
    other_boot = f"{me}:{stat[3]}:{'f' * 8 if boot != 'f' * 8 else '0' * 8}"
    genuine = f"{me}:{stat[3]}:{boot}"
    assert await manager.get_live_pids({recycled, other_boot, genuine}) == {genuine}
    await manager.kill(recycled)  # must not kill the test process
    await manager.kill(other_boot)
    assert running(me)


async def test_identifiers_are_strings_compared_consistently(manager: LocalLinuxManager) -> None:
    # pydatatask 0.4.7 stored bytes and compared them with strings; a bare pid (its format) is
    # still parsed, but nothing proves the process holding that pid now is the job's: never live,
    # never signalled. Dead or malformed identifiers are simply not live.
    me = str(os.getpid())
    assert await manager.get_live_pids({me}) == set()
    await manager.kill(me)  # must not kill the test process
    assert running(me)
    assert parse_identifier(me.encode()) == (int(me), None, None)
    assert await manager.get_live_pids({"999999999", "not-a-pid", "1:2:3:4"}) == set()


async def test_kill_stops_the_whole_group_and_still_records_the_code(
    manager: LocalLinuxManager, tmp_path: Path
) -> None:
    exe = script(tmp_path, f"sleep 30 & echo $! > {tmp_path}/bg\nsleep 30\n")
    ident = await manager.spawn([exe], {}, str(tmp_path), str(tmp_path / "rc"), None, None, None)
    deadline = time.monotonic() + 5
    while not (tmp_path / "bg").exists() or not (tmp_path / "bg").read_text().strip():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    background = int((tmp_path / "bg").read_text())
    assert running(background)
    await manager.kill(ident)
    await wait_dead(manager, ident)
    assert (tmp_path / "rc").read_text().strip() == "137"  # 128 + SIGKILL, written by the wrapper
    deadline = time.monotonic() + 5
    while running(background):
        assert time.monotonic() < deadline, "the job's background child survived kill"
        await asyncio.sleep(0.01)
    await manager.kill(ident)  # killing an ended process does nothing


async def test_kill_right_after_spawn(manager: LocalLinuxManager, tmp_path: Path) -> None:
    exe = script(tmp_path, "sleep 30\n")
    ident = await manager.spawn([exe], {}, str(tmp_path), str(tmp_path / "rc"), None, None, None)
    await manager.kill(ident)
    await wait_dead(manager, ident)


async def test_watch_calls_back_when_the_process_ends(manager: LocalLinuxManager, tmp_path: Path) -> None:
    exe = script(tmp_path, "sleep 0.2\n")
    ident = await manager.spawn([exe], {}, str(tmp_path), str(tmp_path / "rc"), None, None, None)
    ended = asyncio.Event()
    started = time.monotonic()
    cancel = manager.watch(ident, ended.set)
    assert cancel is not None
    await asyncio.wait_for(ended.wait(), 5)
    assert 0.15 < time.monotonic() - started < 3
    assert await manager.get_live_pids({ident}) == set()
    pid = parse_identifier(ident)[0]
    assert pid not in manager._children  # reaped at once: no zombie left behind
    cancel()  # cancelling after the fact is harmless


async def test_watch_by_another_manager_and_of_an_ended_process(manager: LocalLinuxManager, tmp_path: Path) -> None:
    # A second manager (a restarted pipeline's) watches a process it did not start.
    exe = script(tmp_path, "sleep 0.2\n")
    ident = await manager.spawn([exe], {}, str(tmp_path), str(tmp_path / "rc"), None, None, None)
    other = LocalLinuxManager("app", tmp_path / "base")
    ended = asyncio.Event()
    assert other.watch(ident, ended.set) is not None
    await asyncio.wait_for(ended.wait(), 5)
    assert await other.get_live_pids({ident}) == set()
    # Watching something already gone calls back promptly.
    gone = asyncio.Event()
    other.watch(ident, gone.set)
    await asyncio.wait_for(gone.wait(), 1)


async def test_cancelled_watch_does_not_call_back(manager: LocalLinuxManager, tmp_path: Path) -> None:
    exe = script(tmp_path, "sleep 0.1\n")
    ident = await manager.spawn([exe], {}, str(tmp_path), str(tmp_path / "rc"), None, None, None)
    calls: list[int] = []
    cancel = manager.watch(ident, lambda: calls.append(1))
    assert cancel is not None
    cancel()
    await wait_dead(manager, ident)
    await asyncio.sleep(0.05)
    assert calls == []


async def test_files(manager: LocalLinuxManager) -> None:
    d = manager.basedir / "a" / "b"
    await manager.mkdir(d)
    await manager.mkdir(d)  # mkdir -p semantics
    async with await manager.open(d / "f", "w") as fp:
        await fp.write("text")
    async with await manager.open(d / "f", "rb") as fp:
        assert await fp.read() == b"text"
    async with await manager.open(d / "g", "wb") as fp:
        await fp.write(b"\x00\xff")
    async with await manager.open(d / "g", "rb") as fp:
        assert await fp.read(1) == b"\x00"
    assert (await manager.mtime(d / "g")) is not None
    assert (await manager.mtime(d / "missing")) is None
    with pytest.raises(FileNotFoundError):
        await manager.open(d / "missing", "r")
    with pytest.raises(ValueError):
        await manager.open(d / "f", "a")  # type: ignore[arg-type]
    await manager.rmtree(manager.basedir / "a")
    assert not (manager.basedir / "a").exists()
    await manager.rmtree(manager.basedir / "a")  # absent: fine
