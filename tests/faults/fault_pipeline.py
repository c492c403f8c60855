"""The pipeline the fault-injection suite drives through its command line (copied into each test's
tmp_path as ``pipeline.py``; its data lives next to it, in ``data/``).

Up to three stages over file repositories, chained in this order (each reads the previous
stage's output, the first reads ``inp``):

    s1  InProcessSyncTask  async body, output in s1_out, records in s1_done
    s2  ExecutorTask       ThreadPoolExecutor(3), output in s2_out, records in s2_done
    s3  ProcessTask        LocalLinuxManager (files under data/work), stdout in s3_out,
                           records in s3_done, running jobs in s3_pids

Each stage's output is the previous value, then the line ``STAGE JOB``, then the line
``sum SHA256`` of everything before it, so a truncated or doubled value is detected. Every body
start appends ``STAGE JOB PID`` to data/calls.log in one write to a file opened with O_APPEND (the
process stage with the shell's ``>>``), so the tests count how often each body ran; every body
that gets to its end appends ``STAGE-end JOB PID``.

Environment:
    FAULT_STAGES   which stages exist, comma-separated (default ``s1,s2,s3``)
    FAULT_SLEEP    each body sleeps a random time up to this many seconds (default 0.05)
    FAULT_HOSTILE  ``STAGE:JOB=KIND,...``: that body misbehaves. KIND is ``hang`` (s1: awaits for
                   an hour; s2: blocks its thread for 60 s), ``exit`` (sys.exit(3)), ``kbint``
                   (raises KeyboardInterrupt), ``unencodable`` (an exception whose message holds
                   a lone surrogate, as os.fsdecode gives for undecodable bytes), ``badstr`` (an
                   exception whose __str__ raises), ``orphan`` (s3: starts a detached
                   ``sleep 30`` that outlives the job, then exits 5), ``stubborn`` (s1: swallows
                   every cancellation), ``block`` (s1: time.sleep(60) inside the async
                   body, blocking the event loop)
    FAULT_S3_TIMEOUT  the process stage's timeout in seconds (default none)
    FAULT_PIDS_DELAY  every write to s3_pids waits this many seconds first (default 0)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pdtnb

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
LOG = DATA / "calls.log"
STAGES = [s for s in os.environ.get("FAULT_STAGES", "s1,s2,s3").split(",") if s]
SLEEP = float(os.environ.get("FAULT_SLEEP", "0.05"))
HOSTILE: dict[tuple[str, str], str] = {}
for _item in os.environ.get("FAULT_HOSTILE", "").split(","):
    if _item:
        _where, _kind = _item.split("=")
        _stage, _job = _where.split(":")
        HOSTILE[(_stage, _job)] = _kind


def log_start(stage: str, job: str) -> None:
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{stage} {job} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def next_value(previous: bytes, stage: str, job: str) -> bytes:
    body = previous + f"{stage} {job}\n".encode()
    return body + f"sum {hashlib.sha256(body).hexdigest()}\n".encode()


PIDS_DELAY = float(os.environ.get("FAULT_PIDS_DELAY", "0"))


class SlowPids(pdtnb.YamlMetadataFileRepository):
    """A pids repository slow to write: holds a launch between the spawn and its pids entry."""

    async def dump(self, job, data):
        await asyncio.sleep(PIDS_DELAY)
        await super().dump(job, data)


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of BadStr raises")


def misbehave(stage: str, job: str) -> None:
    """The hostile behaviours that are the same in both function stages."""
    kind = HOSTILE.get((stage, job))
    if kind == "exit":
        sys.exit(3)
    if kind == "kbint":
        raise KeyboardInterrupt
    if kind == "unencodable":
        raise ValueError("cannot open " + os.fsdecode(b"bad-\xff.txt"))
    if kind == "badstr":
        raise BadStr()


inp = pdtnb.FileRepository(DATA / "inp")
session = pdtnb.Session()
tasks: list[pdtnb.Task] = []
resource_managers: list[pdtnb.ResourceManager] = []
previous: tuple[str, pdtnb.FileRepository, pdtnb.Task | None] = ("inp", inp, None)


def chain(task: pdtnb.Task) -> None:
    """Link ``task``'s input: the previous stage's output (plugged), or ``inp``."""
    _name, repo, upstream = previous
    task.link("src", repo, is_input=True)
    if upstream is not None:
        task.link("up_done", upstream.done_repository, required_for_start=True)


if "s1" in STAGES:
    s1_out = pdtnb.FileRepository(DATA / "s1_out")
    s1_done = pdtnb.YamlMetadataFileRepository(DATA / "s1_done")

    @pdtnb.InProcessSyncTask("s1", s1_done)
    async def s1(job, src, out):
        log_start("s1", job)
        if HOSTILE.get(("s1", job)) == "hang":
            await asyncio.sleep(3600)
        if HOSTILE.get(("s1", job)) == "block":
            time.sleep(60)  # noqa: ASYNC251 - blocks the event loop itself, on purpose: nothing can cancel it
        while HOSTILE.get(("s1", job)) == "stubborn":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # swallows every cancellation
        await asyncio.sleep(random.uniform(0, SLEEP))
        misbehave("s1", job)
        async with await src.open(job, "rb") as fp:
            data = await fp.read()
        async with await out.open(job, "wb") as fp:
            await fp.write(next_value(data, "s1", job))
        log_start("s1-end", job)

    chain(s1)
    s1.link("out", s1_out, is_output=True)
    tasks.append(s1)
    previous = ("s1_out", s1_out, s1)

if "s2" in STAGES:
    s2_out = pdtnb.FileRepository(DATA / "s2_out")
    s2_done = pdtnb.YamlMetadataFileRepository(DATA / "s2_done")
    executor = ThreadPoolExecutor(3)

    @pdtnb.ExecutorTask("s2", executor, s2_done)
    def s2(job, src, out):
        log_start("s2", job)
        if HOSTILE.get(("s2", job)) == "hang":
            time.sleep(60)
        time.sleep(random.uniform(0, SLEEP))
        misbehave("s2", job)
        data = Path(src.fullpath(job)).read_bytes()
        target = Path(out.fullpath(job))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(next_value(data, "s2", job))  # in place: a kill may leave it half-written
        log_start("s2-end", job)

    chain(s2)
    s2.link("out", s2_out, is_output=True)
    tasks.append(s2)
    previous = ("s2_out", s2_out, s2)

if "s3" in STAGES:
    s3_out = pdtnb.FileRepository(DATA / "s3_out")
    s3_done = pdtnb.YamlMetadataFileRepository(DATA / "s3_done")
    s3_pids = SlowPids(DATA / "s3_pids") if PIDS_DELAY else pdtnb.YamlMetadataFileRepository(DATA / "s3_pids")

    @session.resource
    async def procman():
        yield pdtnb.LocalLinuxManager("faults", local_path=DATA / "work")

    quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=6, mem="1Gi"))
    resource_managers.append(quota)
    orphans = " ".join(job for (stage, job), kind in HOSTILE.items() if stage == "s3" and kind == "orphan")
    template = f"""
echo "s3 {{{{ job }}}} $$" >> {LOG}
case " {orphans} " in *" {{{{ job }}}} "*)
  setsid sleep 30 > /dev/null 2>&1 < /dev/null &
  echo "s3 {{{{ job }}}}: left a child behind" >&2
  exit 5 ;;
esac
sleep $(awk 'BEGIN {{ srand(); printf "%.3f", rand() * {SLEEP} }}')
cat {{{{ src | shell_quote }}}} > value
echo "s3 {{{{ job }}}}" >> value
cat value
echo "sum $(sha256sum < value | cut -d' ' -f1)"
echo "s3-end {{{{ job }}}} $$" >> {LOG}
"""
    s3 = pdtnb.ProcessTask(
        "s3",
        procman,
        quota,
        pdtnb.Resources.parse(cpu=1, mem="16Mi"),
        s3_pids,
        template,
        done=s3_done,
        stdout=s3_out,
        timeout=float(os.environ["FAULT_S3_TIMEOUT"]) if os.environ.get("FAULT_S3_TIMEOUT") else None,
    )
    chain(s3)
    tasks.append(s3)

pipeline = pdtnb.Pipeline(tasks, session, resource_managers)

if __name__ == "__main__":
    sys.exit(pdtnb.main(pipeline))
