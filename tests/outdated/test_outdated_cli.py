"""Outdated results through the command line, in subprocesses, on a 3-stage file pipeline whose
script the tests edit between runs, as a user edits a script between cron runs:

    parse   (in-process)  raw/JOB -> parsed/JOB through clean()
    count   (process)     a shell template: the length of parsed/JOB into its stdout
    report  (executor)    counts/JOB -> report/JOB
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

JOBS = ["j1", "j2", "j3", "j4"]

SCRIPT = textwrap.dedent(
    '''
    import os
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import pdtnb

    DATA = Path(os.environ["DATA"])
    raw = pdtnb.FileRepository(DATA / "raw")
    parsed = pdtnb.FileRepository(DATA / "parsed")
    parse_done = pdtnb.YamlMetadataFileRepository(DATA / "parse_done")
    counts = pdtnb.FileRepository(DATA / "counts")
    count_done = pdtnb.YamlMetadataFileRepository(DATA / "count_done")
    pids = pdtnb.YamlMetadataFileRepository(DATA / "pids")
    report = pdtnb.FileRepository(DATA / "report")
    report_done = pdtnb.YamlMetadataFileRepository(DATA / "report_done")


    def clean(text):
        return text.strip()


    @pdtnb.InProcessSyncTask("parse", parse_done)
    async def parse(job, raw, parsed):
        async with await raw.open(job, "r") as fp:
            text = await fp.read()
        async with await parsed.open(job, "w") as fp:
            await fp.write(clean(text) + "\\n")


    parse.link("raw", raw, is_input=True)
    parse.link("parsed", parsed, is_output=True)
    session = pdtnb.Session()


    @session.resource
    async def procman():
        yield pdtnb.LocalLinuxManager("pdtnb-outdated", local_path=DATA / "work")


    quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=8, mem="1Gi"))
    count = pdtnb.ProcessTask(
        "count", procman, quota, pdtnb.Resources.parse(cpu=1, mem="16Mi"), pids,
        """
    if [ "{{ job }}" = "$SLOW_JOB" ]; then sleep 2; fi
    echo "length of {{ job }}"
    wc -c < {{ parsed }}
    """,
        done=count_done, stdout=counts, environ={"SLOW_JOB": os.environ.get("SLOW_JOB", "")},
    )
    count.poll_interval = 0.1
    count.plug(parse)


    @pdtnb.ExecutorTask("report", ThreadPoolExecutor(2), report_done, rerun_outdated=True)
    def make_report(job, stdout, report):
        text = Path(stdout.fullpath(job)).read_text()
        Path(report.fullpath(job)).parent.mkdir(parents=True, exist_ok=True)
        Path(report.fullpath(job)).write_text(f"{job}: {text.split()[-1]} bytes\\n")


    make_report.plug(count)
    make_report.link("report", report, is_output=True)
    pipeline = pdtnb.Pipeline([parse, count, make_report], session, [quota])

    if __name__ == "__main__":
        sys.exit(pdtnb.main(pipeline))
    '''
)


class Script:
    """The pipeline script in a directory of its own, edited and run by the tests."""

    def __init__(self, tmp_path: Path):
        self.data = tmp_path / "data"
        (self.data / "raw").mkdir(parents=True)
        for i, job in enumerate(JOBS, 1):
            (self.data / "raw" / job).write_text(f"  value {i}  \n")
        self.path = tmp_path / "pipeline.py"
        self.text = SCRIPT
        self.path.write_text(self.text)
        self.env = {**os.environ, "DATA": str(self.data), "PYTHONUNBUFFERED": "1"}

    def edit(self, old: str, new: str) -> None:
        assert self.text.count(old) == 1, old
        self.text = self.text.replace(old, new)
        self.path.write_text(self.text)

    def __call__(
        self, *args: str, check: int | None = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, str(self.path), *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check is not None:
            assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def states(self) -> dict[str, dict]:
        return {t["name"]: t for t in json.loads(self("status", "--json").stdout)["tasks"]}

    def counts(self, state: str) -> dict[str, int]:
        return {name: t[state] for name, t in self.states().items()}

    def record(self, done: str, job: str) -> dict:
        return yaml.safe_load((self.data / done / f"{job}.yaml").read_text())


@pytest.fixture
def script(tmp_path) -> Script:
    return Script(tmp_path)


def test_edits_that_change_no_code_leave_results_done_and_a_code_change_makes_them_outdated(script):
    script("run")
    assert script.counts("done") == {"parse": 4, "count": 4, "report": 4}
    first = {job: script.record("parse_done", job) for job in JOBS}
    assert all(r["fingerprint"] and r["fingerprint_parts"]["calls clean"] for r in first.values())

    # Comments, a docstring, blank lines, reformatting, a template comment: no code changed.
    script.edit(
        "def clean(text):\n    return text.strip()",
        'def clean(text):\n    """No blanks."""\n\n    return text.strip( )  # both ends',
    )
    script.edit("async def parse(job, raw, parsed):\n", "async def parse(job, raw, parsed):\n    # read, clean\n")
    script.edit('echo "length of {{ job }}"', 'echo "length of {{ job }}"  {# shown in the log #}')
    assert script.counts("outdated") == {"parse": 0, "count": 0, "report": 0}
    assert "outdated" not in script("status").stderr, "the summary says nothing of outdated jobs when none is"

    # A change in the helper the body calls: parse's results are outdated, and nothing else's.
    script.edit("return text.strip( )  # both ends", "return text.strip().upper()")
    states = script.states()
    assert {n: (t["done"], t["outdated"]) for n, t in states.items()} == {
        "parse": (0, 4),
        "count": (4, 0),
        "report": (4, 0),
    }
    assert all(t["total"] == 4 for t in states.values()), "each job in exactly one state"
    assert "# parse: ready 0, live 0, done 0, outdated 4, failed 0," in script("status").stderr
    why = script("why", "parse", "j2").stdout
    assert why.startswith("parse j2: outdated\n"), why
    assert "the task's code has changed since: the function clean it calls changed" in why
    assert "`retry parse j2 --outdated` runs it again" in why
    show = script("show", "parse", "j2").stdout
    assert show.startswith("parse j2: outdated\n  outdated: since it ran, the function clean it calls changed\n"), show

    # Nothing re-runs by itself: a run leaves them outdated (report has rerun_outdated, but its
    # own code did not change).
    script("run")
    assert script.counts("outdated")["parse"] == 4
    assert script.record("parse_done", "j1")["end_time"] == first["j1"]["end_time"]

    # retry --outdated -r: parse's jobs and what was made from them downstream run again.
    out = script("retry", "parse", "--outdated", "-r").stdout
    assert out.startswith("parse: reset 4 jobs (j1, j2, j3, j4); cleared"), out
    assert script.counts("ready")["parse"] == 4
    script("run")
    assert script.counts("done") == {"parse": 4, "count": 4, "report": 4}
    assert script.counts("outdated") == {"parse": 0, "count": 0, "report": 0}
    assert (script.data / "parsed" / "j3").read_text() == "VALUE 3\n", "made by the new code"
    assert (script.data / "report" / "j3").read_text() == "j3: 8 bytes\n"

    # Asking for jobs that are not outdated is refused, naming the job.
    refused = script("retry", "parse", "j1", "--outdated", check=1)
    assert "parse j1 succeeded with the task's code as it is now: it is not outdated" in refused.stderr


def test_a_template_change_makes_process_jobs_outdated_and_rerun_outdated_reruns_by_itself(script):
    script("run")
    script.edit('echo "length of {{ job }}"', 'echo "bytes in {{ job }}"')
    assert script.counts("outdated") == {"parse": 0, "count": 4, "report": 0}
    assert "its template changed" in script("why", "count", "j1").stdout
    script.edit('{"SLOW_JOB": os.environ.get("SLOW_JOB", "")}', '{"SLOW_JOB": os.environ.get("SLOW_JOB", "j9")}')
    assert "its template's environment changed" in script("why", "count", "j1").stdout

    # report says rerun_outdated=True: a change of its body re-runs its jobs at the next run,
    # and nothing else.
    before = {job: script.record("count_done", job)["end_time"] for job in JOBS}
    script.edit('f"{job}: {text.split()[-1]} bytes\\n"', 'f"{job} has {text.split()[-1]} bytes\\n"')
    assert script.counts("outdated")["report"] == 4
    assert "it runs again at the next launch phase (rerun_outdated)" in script("why", "report", "j1").stdout
    script("run")
    assert (script.data / "report" / "j2").read_text() == "j2 has 8 bytes\n"
    assert script.counts("outdated") == {"parse": 0, "count": 4, "report": 0}
    assert {job: script.record("count_done", job)["end_time"] for job in JOBS} == before


def test_a_process_job_records_the_code_it_was_launched_with_not_the_code_that_reaps_it(script):
    """A job launched before an edit and reaped after it (by another process) is outdated at once."""
    script("run")
    script("retry", "count", "j1", "--outdated", check=1)  # not outdated: refused
    (script.data / "count_done" / "j1.yaml").unlink()  # j1 runs again...
    launched = script("launch", "count", "j1", env={"SLOW_JOB": "j1"})  # ...slowly, in the background
    assert launched.returncode == 0, launched.stderr
    script.edit('echo "length of {{ job }}"', 'echo "size of {{ job }}"')  # the script is edited meanwhile
    time.sleep(2.5)
    script("run", env={"SLOW_JOB": "j1"})  # reaps j1, with the new script
    record = script.record("count_done", "j1")
    assert record["result"] == "success"
    states = script.states()["count"]
    assert states["outdated"] == 4, "j1 ran the old template, like the others"
    assert "its template changed" in script("why", "count", "j1").stdout
