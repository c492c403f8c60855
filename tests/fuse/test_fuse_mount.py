"""``python pipeline.py fuse MOUNT``: a real mount, browsed and written by other processes with
ordinary tools (ls, cat, grep, Python's open), and stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import yaml


def test_tasks_links_and_jobs_are_directories_and_files(mount_pipeline):
    mount = mount_pipeline()
    assert mount.sh("ls").stdout.split() == ["shout"]
    assert sorted(mount.sh("ls shout").stdout.split()) == ["done", "inp", "opts", "out"]
    assert mount.sh("ls shout/inp").stdout.split() == ["a1", "b2"]
    assert mount.sh("ls shout/out").stdout.split() == ["a1", "b2"]
    assert mount.sh("ls shout/opts").stdout.split() == ["a1"]
    # blobs are their bytes, metadata is YAML (what `cat` prints)
    assert mount.sh("cat shout/inp/a1").stdout == "hello\n"
    assert mount.sh("cat shout/out/a1 shout/out/b2").stdout == "HELLO\n!WORLD\n"
    assert yaml.safe_load(mount.sh("cat shout/opts/a1").stdout) == {"suffix": "!"}
    done = yaml.safe_load(mount.sh("cat shout/done/b2").stdout)
    assert done["result"] == "success"
    assert mount.sh("cat shout/done/a1").stdout == mount.cli("cat", "shout.done", "a1").stdout
    # grep -r finds data across repositories
    found = mount.sh("grep -r -l WORLD .").stdout.split()
    assert found == ["./shout/out/b2"]
    assert "./shout/done/a1" in mount.sh("grep -r -l 'result: success' .").stdout.split()
    # Python's open, stat sizes, and a missing or invalid job
    result = mount.py(
        """
        import os
        path = os.path.join(MOUNT, "shout", "out", "a1")
        print(os.path.getsize(path), open(path, "rb").read())
        print(os.path.exists(os.path.join(MOUNT, "shout", "out", "zz9")),
              os.path.exists(os.path.join(MOUNT, "shout", "out", "bad.name")),
              os.path.isdir(os.path.join(MOUNT, "shout", "out")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["7 b'HELLO\\n!'", "False False True"]
    assert "ls: cannot access" in mount.sh("ls shout/nolink").stderr


def test_listings_follow_the_repositories(mount_pipeline):
    mount = mount_pipeline()
    assert mount.sh("ls shout/inp").stdout.split() == ["a1", "b2"]
    inject = mount.cli("inject", "shout.inp", "c3", input="again\n")
    assert inject.returncode == 0, inject.stderr
    assert mount.sh("ls shout/inp").stdout.split() == ["a1", "b2", "c3"]
    assert mount.sh("cat shout/inp/c3").stdout == "again\n"
    rm = mount.cli("rm", "shout.inp", "b2")
    assert rm.returncode == 0, rm.stderr
    assert mount.sh("ls shout/inp").stdout.split() == ["a1", "c3"]
    time.sleep(1.1)  # the kernel may keep a job's entry for ENTRY_TTL (1 s)
    assert mount.sh("cat shout/inp/b2").returncode != 0


def test_read_only_mount_refuses_writes(mount_pipeline):
    mount = mount_pipeline()
    result = mount.py(
        """
        import errno, os
        for path, mode in ((os.path.join(MOUNT, "shout", "inp", "new1"), "w"),
                           (os.path.join(MOUNT, "shout", "inp", "a1"), "w"),
                           (os.path.join(MOUNT, "shout", "inp", "a1"), "a")):
            try:
                open(path, mode).close()
            except OSError as e:
                print(errno.errorcode[e.errno])
            else:
                print("written")
        """
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) <= {"EROFS", "EACCES"}, result.stdout
    assert len(result.stdout.split()) == 3
    assert mount.cli("ls", "shout.inp").stdout.split() == ["a1", "b2"]
    assert mount.cli("cat", "shout.inp", "a1").stdout == "hello\n"


def test_writable_mount_stores_jobs_as_inject_does(mount_pipeline):
    mount = mount_pipeline("--writable")
    # a new blob through the shell, a new one through Python, metadata as YAML
    assert mount.sh("printf 'from the shell\\n' > shout/inp/new1").returncode == 0
    result = mount.py(
        """
        import os
        with open(os.path.join(MOUNT, "shout", "inp", "new2"), "wb") as fp:
            fp.write(b"part one, ")
            fp.write(b"part two\\n")
        with open(os.path.join(MOUNT, "shout", "opts", "new2"), "w") as fp:
            fp.write("suffix: '?'\\nlevel: 3\\n")
        """
    )
    assert result.returncode == 0, result.stderr
    assert mount.cli("ls", "shout.inp").stdout.split() == ["a1", "b2", "new1", "new2"]
    assert mount.cli("cat", "shout.inp", "new1").stdout == "from the shell\n"
    assert mount.cli("cat", "shout.inp", "new2").stdout == "part one, part two\n"
    assert yaml.safe_load(mount.cli("cat", "shout.opts", "new2").stdout) == {"suffix": "?", "level": 3}
    assert mount.sh("cat shout/inp/new2").stdout == "part one, part two\n"
    # overwriting an existing job replaces its value
    assert mount.sh("printf 'replaced\\n' > shout/inp/a1").returncode == 0
    assert mount.cli("cat", "shout.inp", "a1").stdout == "replaced\n"
    # the mount holds the lease: another acting command is refused (75) while it is mounted
    refused = mount.cli("inject", "shout.inp", "x9", input="no\n")
    assert refused.returncode == 75, refused.stderr
    assert "fuse" in refused.stderr
    # and so is a second writable mount, before it mounts anything
    other = mount.path.parent / "mnt2"
    other.mkdir()
    second = mount.cli("fuse", str(other), "--writable")
    assert second.returncode == 75, second.stderr
    assert "controlled by" in second.stderr and not os.path.ismount(other)


def test_writable_mount_refuses_bad_names_and_malformed_yaml(mount_pipeline):
    mount = mount_pipeline("--writable")
    result = mount.py(
        """
        import errno, os
        def attempt(*parts, text="x: 1\\n"):
            try:
                with open(os.path.join(MOUNT, *parts), "w") as fp:
                    fp.write(text)
            except OSError as e:
                return errno.errorcode[e.errno]
            return "stored"
        print(attempt("shout", "inp", "bad.name"))
        print(attempt("shout", "inp", "..hidden"))
        print(attempt("shout", "opts", "c3", text="key: [unclosed\\n"))
        print(attempt("shout", "opts", "c4", text=""))
        print(attempt("shout", "newfile"))
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[:2] == ["EINVAL", "EINVAL"], result.stdout
    assert lines[2] in ("EINVAL", "EIO") and lines[3] in ("EINVAL", "EIO"), result.stdout
    assert lines[4] in ("EPERM", "EACCES", "EROFS"), result.stdout
    assert mount.cli("ls", "shout.opts").stdout.split() == ["a1"], "nothing half-stored"
    assert mount.cli("ls", "shout.inp").stdout.split() == ["a1", "b2"]
    assert not any(p.name.startswith(("bad", ".")) for p in (mount.script.parent / "data" / "inp").iterdir())
    assert "malformed YAML" in mount.log()


def test_ctrl_c_unmounts_and_exits_130(mount_pipeline):
    mount = mount_pipeline()
    assert mount.sh("ls shout/inp").stdout.split() == ["a1", "b2"]
    start = time.monotonic()
    mount.proc.send_signal(signal.SIGINT)
    code = mount.proc.wait(10)
    elapsed = time.monotonic() - start
    assert code == 130, mount.log()
    assert elapsed < 3, elapsed
    assert not os.path.ismount(mount.path)
    assert os.listdir(mount.path) == []


def test_sigterm_unmounts_and_exits_143(mount_pipeline):
    mount = mount_pipeline("--writable")
    mount.proc.send_signal(signal.SIGTERM)
    assert mount.proc.wait(10) == 143, mount.log()
    assert not os.path.ismount(mount.path)
    # the lease went with it: acting commands work again
    assert mount.cli("inject", "shout.inp", "x9", input="yes\n").returncode == 0


def test_listing_a_thousand_jobs(mount_pipeline):
    jobs = {f"j{i:04d}": f"value {i}\n" for i in range(1000)}
    mount = mount_pipeline(jobs=jobs, opts={}, run_first=False)
    start = time.monotonic()
    listed = mount.sh("ls shout/inp").stdout.split()
    elapsed = time.monotonic() - start
    assert listed == sorted(jobs)
    assert elapsed < 10, elapsed
    assert mount.sh("cat shout/inp/j0999").stdout == "value 999\n"


def test_missing_pyfuse3_is_one_line(tmp_path, blocked_script):
    """Without pyfuse3 the command says what to install, in one line, and exits 1 (no FUSE needed)."""
    (tmp_path / "mnt").mkdir()
    result = subprocess.run(
        [sys.executable, str(blocked_script), "fuse", str(tmp_path / "mnt")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "pip install 'pdtnb[fuse]'" in lines[0] and "libfuse3" in lines[0]
    assert not os.path.ismount(tmp_path / "mnt")
