"""Fixtures for the ``fuse`` command: a small file-backed pipeline script, and a real mount of it
served by ``python pipeline.py fuse MOUNT`` in a subprocess (unmounted and ended at teardown)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PIPELINE_SCRIPT = textwrap.dedent(
    '''
    """inp (blobs) and opts (YAML) feed an in-process task that writes out (blobs) and done."""

    from pathlib import Path

    import pdtnb

    BASE = Path(__file__).resolve().parent / "data"

    inp = pdtnb.FileRepository(BASE / "inp")
    opts = pdtnb.YamlMetadataFileRepository(BASE / "opts")
    out = pdtnb.FileRepository(BASE / "out")
    done = pdtnb.YamlMetadataFileRepository(BASE / "done")


    @pdtnb.InProcessSyncTask("shout", done)
    async def shout(job, inp, opts, out):
        async with await inp.open(job, "r") as fp:
            text = await fp.read()
        options = await opts.info(job) or {}
        async with await out.open(job, "w") as fp:
            await fp.write(text.upper() + str(options.get("suffix", "")))


    shout.link("inp", inp, is_input=True)
    shout.link("opts", opts, is_input=True, required_for_start=False)
    shout.link("out", out, is_output=True)

    pipeline = pdtnb.Pipeline([shout], pdtnb.Session())

    if __name__ == "__main__":
        pdtnb.main(pipeline)
    '''
)


def fuse_available(service_unavailable: Callable[[str, str], None]) -> None:
    """Skip (fail under PDTNB_REQUIRE_SERVICES=1) unless this machine can mount a FUSE filesystem
    with pyfuse3."""
    if not os.path.exists("/dev/fuse"):
        service_unavailable("fuse", "/dev/fuse is missing (no FUSE in this kernel or container)")
    try:
        import pyfuse3  # noqa: F401
    except ImportError as e:
        service_unavailable("fuse", f"pyfuse3 is not installed (pip install 'pdtnb[fuse]'): {e}")
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        service_unavailable("fuse", "fusermount3 is missing (apt-get install fuse3), needed to mount as a user")


@dataclass
class Mount:
    """A served mount: ``path`` is the mount point, ``proc`` the ``fuse`` process."""

    script: Path
    path: Path
    proc: subprocess.Popen[str]
    stderr: Path
    extra: list[str] = field(default_factory=list)

    def cli(self, *args: str, input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """The pipeline's own command line (``ls``, ``cat``, ...), as another process."""
        return subprocess.run(
            [sys.executable, str(self.script), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.script.parent,
        )

    def sh(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A shell command run in the mount point, in another process."""
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout, cwd=self.path)

    def py(self, code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Python code run in another process, with ``MOUNT`` the mount point."""
        return subprocess.run(
            [sys.executable, "-c", f"MOUNT = {str(self.path)!r}\n" + textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self) -> str:
        return self.stderr.read_text() if self.stderr.exists() else ""


def seed(base: Path, jobs: dict[str, str], opts: dict[str, str]) -> None:
    data = base / "data"
    for name in ("inp", "opts", "out", "done"):
        (data / name).mkdir(parents=True, exist_ok=True)
    for job, text in jobs.items():
        (data / "inp" / job).write_text(text)
    for job, text in opts.items():
        (data / "opts" / f"{job}.yaml").write_text(text)


def wait_mounted(mount: Mount, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.ismount(mount.path):
            return
        if mount.proc.poll() is not None:
            pytest.fail(f"fuse exited with {mount.proc.returncode} before mounting:\n{mount.log()}")
        time.sleep(0.05)
    pytest.fail(f"not mounted after {timeout} s:\n{mount.log()}")


def force_unmount(path: Path) -> None:
    if os.path.ismount(path):
        for command in (["fusermount3", "-u", "-z", str(path)], ["umount", "-l", str(path)]):
            if shutil.which(command[0]):
                subprocess.run(command, capture_output=True, timeout=20)
                if not os.path.ismount(path):
                    return


@pytest.fixture
def mount_pipeline(tmp_path: Path, service_unavailable: Callable[[str, str], None]) -> Iterator[Callable[..., Mount]]:
    """``mount_pipeline(*options, jobs=..., opts=...)``: write the script, seed its data, start
    ``fuse MOUNT *options`` and wait for the mount."""
    fuse_available(service_unavailable)
    started: list[Mount] = []

    def start(
        *options: str, jobs: dict[str, str] | None = None, opts: dict[str, str] | None = None, run_first: bool = True
    ) -> Mount:
        script = tmp_path / "pipeline.py"
        script.write_text(PIPELINE_SCRIPT)
        seed(
            tmp_path,
            {"a1": "hello\n", "b2": "world\n"} if jobs is None else jobs,
            {"a1": "suffix: '!'\n"} if opts is None else opts,
        )
        mount_path = tmp_path / "mnt"
        mount_path.mkdir(exist_ok=True)
        stderr = tmp_path / f"fuse-{len(started)}.log"
        probe = Mount(script, mount_path, None, stderr)  # type: ignore[arg-type]
        if run_first:
            result = probe.cli("run", timeout=60)
            assert result.returncode == 0, result.stderr
        with open(stderr, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(script), "fuse", str(mount_path), *options],
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
            )
        mount = Mount(script, mount_path, proc, stderr, list(options))
        started.append(mount)
        wait_mounted(mount)
        return mount

    yield start
    for mount in started:
        if mount.proc.poll() is None:
            mount.proc.send_signal(signal.SIGINT)
            try:
                mount.proc.wait(10)
            except subprocess.TimeoutExpired:
                mount.proc.kill()
                mount.proc.wait(10)
        force_unmount(mount.path)


@pytest.fixture
def blocked_script(tmp_path: Path) -> Path:
    """The pipeline script, run with pyfuse3 made unimportable (a meta path finder refuses it)."""
    blocker = textwrap.dedent(
        """
        import sys


        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pyfuse3", "pyfuse3_asyncio"):
                    raise ImportError(f"No module named {name!r} (blocked by the test)")
                return None


        sys.meta_path.insert(0, _Block())
        """
    )
    seed(tmp_path, {"a1": "hello\n"}, {})
    script = tmp_path / "blocked.py"
    script.write_text(blocker + PIPELINE_SCRIPT)
    return script
