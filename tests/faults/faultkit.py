"""The harness of the fault-injection suite: a copy of fault_pipeline.py in a test's directory, run
as a real program in its own session; the expected values; the invariants checked after every
fault; the processes the test started, found again (by a token in their environment) and ended.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

SOURCE = Path(__file__).with_name("fault_pipeline.py")
TMP_PREFIX = ".pdtnb-tmp-"
#: The lease file a controller keeps in the pipeline's first file repository: not a value.
LEASE_PREFIX = ".pdtnb-"  # pdtnb's own files (the lease, the outcome cache), not jobs
ALL_STAGES = ("s1", "s2", "s3")
KIND = {"s1": "in-process", "s2": "executor", "s3": "process"}

#: ``PDTNB_FAULT_SEED`` replays a failed run of the trials: every assertion message names it.
SEED = int(os.environ.get("PDTNB_FAULT_SEED", "20261130"))


def trial_rng(kind: str, trial: int) -> random.Random:
    """The random source of one trial: the same seed and trial give the same delays."""
    return random.Random(f"{SEED}-{kind}-{trial}")


def job_ids(n: int) -> list[str]:
    return [f"j{i}" for i in range(1, n + 1)]


def input_value(job: str) -> bytes:
    return f"input {job}\n".encode() + b"x" * 200 + b"\n"


def next_value(previous: bytes, stage: str, job: str) -> bytes:
    body = previous + f"{stage} {job}\n".encode()
    return body + f"sum {hashlib.sha256(body).hexdigest()}\n".encode()


def expected_values(job: str, stages: tuple[str, ...]) -> dict[str, bytes]:
    """Each stage's output for ``job`` in a pipeline of ``stages``."""
    out, value = {}, input_value(job)
    for stage in stages:
        value = next_value(value, stage, job)
        out[stage] = value
    return out


def out_dir(stage: str) -> str:
    return f"{stage}_out"


@dataclass
class Result:
    returncode: int | None
    stdout: str
    stderr: str
    elapsed: float

    def __str__(self) -> str:
        return f"rc={self.returncode} elapsed={self.elapsed:.2f}s\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


@dataclass
class Snapshot:
    """What the repositories held right after a fault: which bodies had started (from the log),
    which jobs had a done record, which process jobs a pids entry."""

    starts: collections.Counter
    done: dict[str, set[str]]
    pids: set[str]

    def in_flight(self, stage: str) -> set[str]:
        """Jobs of ``stage`` whose body had started and that had no done record (for the process
        stage: and no pids entry either, the window between spawn and the entry's write)."""
        started = {job for (s, job), _ in self.starts.items() if s == stage}
        out = started - self.done.get(stage, set())
        if stage == "s3":
            out -= self.pids
        return out


@dataclass
class Pipe:
    """One copy of the fault pipeline in ``root``, with ``n`` input jobs."""

    root: Path
    stages: tuple[str, ...] = ALL_STAGES
    n: int = 30
    sleep: float = 0.05
    hostile: dict[tuple[str, str], str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.script = self.root / "pipeline.py"
        self.data = self.root / "data"
        shutil.copyfile(SOURCE, self.script)
        (self.data / "inp").mkdir(parents=True, exist_ok=True)
        for job in self.jobs:
            (self.data / "inp" / job).write_bytes(input_value(job))

    @property
    def jobs(self) -> list[str]:
        return job_ids(self.n)

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "FAULT_STAGES": ",".join(self.stages),
            "FAULT_SLEEP": str(self.sleep),
            "FAULT_HOSTILE": ",".join(f"{s}:{j}={k}" for (s, j), k in self.hostile.items()),
            "FAULT_TOKEN": self.token,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        env.pop("PYTEST_CURRENT_TEST", None)
        return env

    # ---- running the command line ---------------------------------------------------------

    def start(self, *args: str) -> subprocess.Popen:
        """``python pipeline.py ARGS`` in a new session, its output in files (read by ``finish``)."""
        n = len(self.started)
        out = open(self.root / f"cmd{n}.out", "w+b")  # closed by finish
        err = open(self.root / f"cmd{n}.err", "w+b")
        proc = subprocess.Popen(
            [sys.executable, str(self.script), *args],
            cwd=self.root,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        proc.files = (out, err)  # type: ignore[attr-defined]
        proc.t0 = time.monotonic()  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float = 60) -> Result:
        """Wait for ``proc`` (SIGKILL its group past ``timeout``: returncode None then)."""
        try:
            proc.wait(timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.wait()
            code = None
        elapsed = time.monotonic() - proc.t0  # type: ignore[attr-defined]
        texts = []
        for fp in proc.files:  # type: ignore[attr-defined]
            fp.seek(0)
            texts.append(fp.read().decode("utf-8", "backslashreplace"))
            fp.close()
        return Result(code, texts[0], texts[1], elapsed)

    def cli(self, *args: str, timeout: float = 60) -> Result:
        return self.finish(self.start(*args), timeout)

    def status(self) -> tuple[Result, dict[str, dict]]:
        result = self.cli("status", "--json", timeout=30)
        try:
            tasks = {t["name"]: t for t in json.loads(result.stdout)["tasks"]}
        except (ValueError, KeyError):
            tasks = {}
        return result, tasks

    def wait_for_first_body(self, proc: subprocess.Popen, timeout: float = 20) -> bool:
        """Until a body has started (the log exists); False if the program ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.exists():
                return True
            if proc.poll() is not None:
                return False
            time.sleep(0.005)
        return False

    def wait_for_start(self, stage: str, job: str, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (stage, job) in self.starts():
                return True
            time.sleep(0.01)
        return False

    # ---- what is on disk ------------------------------------------------------------------

    @property
    def log(self) -> Path:
        return self.data / "calls.log"

    def starts(self) -> collections.Counter:
        """How many times each (stage, job) body started."""
        return self._count(lambda stage: not stage.endswith("-end"))

    def ends(self) -> collections.Counter:
        """How many times each (stage, job) body got to its end."""
        ended = self._count(lambda stage: stage.endswith("-end"))
        return collections.Counter({(s[: -len("-end")], j): c for (s, j), c in ended.items()})

    def log_lines(self, stage: str, job: str) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line for line in lines if line.split()[1] == job and line.split()[0].startswith(stage)]

    def _count(self, which) -> collections.Counter:
        counter: collections.Counter = collections.Counter()
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                stage, job, _pid = line.split()
                if which(stage):
                    counter[(stage, job)] += 1
        return counter

    def records(self, stage: str) -> dict[str, object]:
        """The done records of ``stage`` that parse, by job (others are left out)."""
        out = {}
        directory = self.data / f"{stage}_done"
        if directory.is_dir():
            for path in directory.iterdir():
                if path.name.startswith(TMP_PREFIX) or not path.name.endswith(".yaml") or not path.is_file():
                    continue
                try:
                    out[path.name[: -len(".yaml")]] = yaml.safe_load(path.read_text())
                except (yaml.YAMLError, OSError, UnicodeDecodeError):
                    continue
        return out

    def names(self, directory: str) -> set[str]:
        path = self.data / directory
        return {p.name for p in path.iterdir() if not p.name.startswith(LEASE_PREFIX)} if path.is_dir() else set()

    def snapshot(self) -> Snapshot:
        done = {}
        for stage in self.stages:
            done[stage] = {
                name[: -len(".yaml")]
                for name in self.names(f"{stage}_done")
                if name.endswith(".yaml") and not name.startswith(TMP_PREFIX)
            }
        pids = {
            n[: -len(".yaml")] for n in self.names("s3_pids") if n.endswith(".yaml") and not n.startswith(TMP_PREFIX)
        }
        return Snapshot(self.starts(), done, pids)

    def temporaries(self) -> list[str]:
        """Every temporary file under the data directory (file repositories' and the process
        manager's)."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.data):
            for name in filenames + dirnames:
                if name.startswith(TMP_PREFIX) or name.endswith(".tmp"):
                    found.append(os.path.relpath(os.path.join(dirpath, name), self.data))
        return sorted(found)

    def job_dirs_left(self) -> list[str]:
        """Job directories the process manager still holds (none once every job is reaped)."""
        base = self.data / "work" / "faults" / "s3"
        return sorted(p.name for p in base.iterdir()) if base.is_dir() else []

    # ---- the invariants -------------------------------------------------------------------

    def check_complete(self, jobs: list[str] | None = None) -> list[str]:
        """Problems with the outputs: each stage holds exactly one complete value per job (of
        ``jobs``, default all) and nothing else; every done record a success; no pids entry, no
        temporary file, no job directory left."""
        jobs = self.jobs if jobs is None else jobs
        problems = []
        for stage in self.stages:
            names = self.names(out_dir(stage))
            if names != set(jobs):
                extra, missing = sorted(names - set(jobs)), sorted(set(jobs) - names)
                problems.append(f"{stage} output: extra {extra[:10]}, missing {missing[:10]}")
            for job in sorted(names & set(jobs)):
                got = (self.data / out_dir(stage) / job).read_bytes()
                want = expected_values(job, self.stages)[stage]
                if got != want:
                    problems.append(f"{stage} {job}: output is not complete/correct: {got[-120:]!r}")
            records = self.records(stage)
            done_names = {n[: -len(".yaml")] for n in self.names(f"{stage}_done")}
            if done_names != set(jobs):
                problems.append(f"{stage} done: {sorted(done_names ^ set(jobs))[:10]} differ from the jobs")
            bad = sorted(j for j, r in records.items() if not (isinstance(r, dict) and r.get("result") == "success"))
            if bad:
                problems.append(f"{stage} done records not successes: {bad[:10]}")
        if "s3" in self.stages:
            left = self.names("s3_pids")
            if left:
                problems.append(f"s3 pids entries left: {sorted(left)[:10]}")
            dirs = self.job_dirs_left()
            if dirs:
                problems.append(f"process job directories left: {dirs[:10]}")
        tmp = self.temporaries()
        if tmp:
            problems.append(f"temporary files left: {tmp[:10]}")
        return problems

    def check_status(self, jobs: list[str] | None = None) -> list[str]:
        """Problems with ``status --json``: every task has done == N and nothing else."""
        n = len(self.jobs if jobs is None else jobs)
        result, tasks = self.status()
        problems = []
        if result.returncode != 0 or not tasks:
            return [f"status --json failed: {result}"]
        if sorted(tasks) != sorted(self.stages):
            problems.append(f"status lists tasks {sorted(tasks)}")
        for name, t in tasks.items():
            counts = {k: t.get(k) for k in ("ready", "live", "done", "failed", "retrying", "blocked", "waiting")}
            if counts != {"ready": 0, "live": 0, "done": n, "failed": 0, "retrying": 0, "blocked": 0, "waiting": 0}:
                problems.append(f"status {name}: {counts} (want done={n}, the rest 0)")
            if t.get("total") != n:
                problems.append(f"status {name}: total {t.get('total')} != {n}")
            for link in t["links"]:
                want = 0 if link["name"] in ("live", "pids") else n
                if link["count"] != want:
                    problems.append(f"status {name}.{link['name']}: count {link['count']} != {want}")
        return problems

    def duplicates(self) -> dict[tuple[str, str], int]:
        return {key: c for key, c in self.starts().items() if c > 1}

    def check_runs(self, allowed: set[tuple[str, str]]) -> list[str]:
        """Problems with the body runs: every job's body ran, once, except those in ``allowed``
        (at most twice)."""
        starts = self.starts()
        problems = []
        for stage in self.stages:
            never = [j for j in self.jobs if (stage, j) not in starts]
            if never:
                problems.append(f"{stage}: bodies never ran for {never[:10]}")
        for key, count in sorted(starts.items()):
            if count > 1 and (key not in allowed or count > 2):
                problems.append(
                    f"{key[0]} ({KIND[key[0]]}) {key[1]}: body ran {count} times (not in flight at the fault;"
                    f" log: {self.log_lines(*key)})"
                )
        return problems

    # ---- processes ------------------------------------------------------------------------

    def ours(self) -> list[psutil.Process]:
        """Every live process carrying this pipeline's token: its controllers, their jobs and
        whatever the jobs left behind."""
        found = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.pid != os.getpid() and proc.environ().get("FAULT_TOKEN") == self.token:
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                kill_group(proc)
                proc.wait()
            for fp in getattr(proc, "files", ()):
                fp.close()
        for proc in self.ours():
            try:
                proc.kill()
            except psutil.Error:
                pass


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group ``proc`` leads (it was started in a new session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
