"""JsonLinesLog: one JSON line per job event, whole lines only, rotated by size."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pdtnb import InProcessMetadataRepository, InProcessSyncTask, JsonLinesLog, Pipeline, Retry, Session


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def run_jobs(log: JsonLinesLog, n: int, fail: set[str] = frozenset()) -> InProcessMetadataRepository:
    done = InProcessMetadataRepository()

    @InProcessSyncTask("work", done)
    async def work(job, inp):
        if job in fail:
            raise ValueError(f'{job}: "quoted"\nand a second line ü')

    work.link("inp", InProcessMetadataRepository({f"j{i:03}": i for i in range(n)}), is_input=True)
    async with Pipeline([work], Session(), hooks=[log]) as pipeline:
        await pipeline.run(timeout=10)
    return done


async def test_one_line_per_event_readable_by_json_and_pandas(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "events.jsonl"
    await run_jobs(JsonLinesLog(path), 5, fail={"j002"})
    events = read_lines(path)
    assert len(events) == 10
    launches = [e for e in events if e["event"] == "launch"]
    outcomes = {e["job"]: e for e in events if e["event"] == "outcome"}
    assert sorted(e["job"] for e in launches) == [f"j{i:03}" for i in range(5)]
    assert all(e["attempt"] == 1 and e["host"] and e["pid"] == os.getpid() for e in launches)
    ok, bad = outcomes["j000"], outcomes["j002"]
    assert ok["outcome"] == "success" and ok["duration"] >= 0 and ok["start"] <= ok["end"]
    assert bad["outcome"] == "failure" and bad["error_type"] == "ValueError" and bad["retrying"] is False
    assert bad["reason"].startswith("ValueError: j002")
    assert all({"event", "time", "task", "job", "host"} <= e.keys() for e in events)

    try:
        import pandas
    except ImportError:
        return  # pandas is optional: the json check above is the format's contract
    frame = pandas.read_json(path, lines=True)
    assert len(frame) == 10 and set(frame["event"]) == {"launch", "outcome"}
    assert frame.loc[frame["job"] == "j002", "outcome"].dropna().tolist() == ["failure"]


async def test_attempts_of_a_retried_job(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    done = InProcessMetadataRepository()
    tries = {"n": 0}

    @InProcessSyncTask("flaky", done, retry=Retry(attempts=3, delay=0.01, jitter=0))
    async def flaky(job, inp):
        tries["n"] += 1
        if tries["n"] < 3:
            raise RuntimeError("not yet")

    flaky.link("inp", InProcessMetadataRepository({"j": 1}), is_input=True)
    async with Pipeline([flaky], Session(), hooks=[JsonLinesLog(path)]) as pipeline:
        await pipeline.run(timeout=10)
    outcomes = [(e["attempt"], e["outcome"], e.get("retrying")) for e in read_lines(path) if e["event"] == "outcome"]
    assert outcomes == [(1, "failure", True), (2, "failure", True), (3, "success", None)]
    assert [e["attempt"] for e in read_lines(path) if e["event"] == "launch"] == [1, 2, 3]


def event(i: int) -> dict:
    return {"event": "outcome", "task": "t", "job": f"job-{i:04}", "pad": "x" * 40}


def test_rotation_by_size_keeps_the_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = JsonLinesLog(path, max_bytes=1000, backups=2)
    for i in range(100):
        log.write(event(i))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    for name in files:
        assert 0 < (tmp_path / name).stat().st_size <= 1000
    newest, older, oldest = (read_lines(tmp_path / n) for n in files)
    jobs = [e["job"] for e in oldest + older + newest]
    assert jobs == [f"job-{i:04}" for i in range(100 - len(jobs), 100)], "in order, the newest kept"


def test_no_backups_empties_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = JsonLinesLog(path, max_bytes=500, backups=0)
    for i in range(30):
        log.write(event(i))
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]
    assert path.stat().st_size <= 500 and read_lines(path)[-1]["job"] == "job-0029"


def test_a_line_cut_by_a_crash_does_not_spoil_the_next_ones(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event":"launch","job":"a"}\n{"event":"outc')  # a power loss mid-line
    log = JsonLinesLog(path)
    log.write(event(1))
    log.write(event(2))
    lines = path.read_text().splitlines()
    assert lines[1] == '{"event":"outc' and len(lines) == 4
    complete = [json.loads(line) for line in lines if line.endswith("}")]
    assert [e.get("job") for e in complete] == ["a", "job-0001", "job-0002"]


def test_a_rotation_by_another_writer_is_followed(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    first, second = JsonLinesLog(path, max_bytes=400, backups=3), JsonLinesLog(path, max_bytes=400, backups=3)
    for i in range(40):
        (first if i % 2 else second).write(event(i))
    every = [e["job"] for p in sorted(tmp_path.iterdir(), reverse=True) for e in read_lines(p)]
    assert every[-1] == "job-0039" and path.stat().st_size <= 400
    assert len(every) == len(set(every)), "no line written twice"
    assert sorted(every) == every and len(every) >= 12
