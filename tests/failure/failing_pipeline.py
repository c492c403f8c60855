"""A 3-stage file pipeline where jobs fail on purpose, driven through its command line by the tests.

    parse   (in-process)  reads raw/JOB, writes parsed/JOB; raises on jobs listed in FAIL_PARSE
    count   (process)     wc -c of parsed/JOB into its stdout; exits 3 on jobs listed in FAIL_COUNT
    report  (executor)    writes report/JOB from count's stdout

Environment: DATA (the data directory), FAIL_PARSE / FAIL_COUNT (space-separated job ids),
RETRIES (attempts for count, 1 = no retry), SLOW (a job whose count sleeps 60 s), and
FIXED (a file whose existence makes every job succeed: "fixing the bug").
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pdtnb

DATA = Path(os.environ["DATA"])
FAIL_PARSE = set(os.environ.get("FAIL_PARSE", "").split())
FAIL_COUNT = set(os.environ.get("FAIL_COUNT", "").split())
RETRIES = int(os.environ.get("RETRIES", "1"))
SLOW = os.environ.get("SLOW", "")
FIXED = DATA / "fixed"

raw = pdtnb.FileRepository(DATA / "raw")
parsed = pdtnb.FileRepository(DATA / "parsed")
parse_done = pdtnb.YamlMetadataFileRepository(DATA / "parse_done")
counts = pdtnb.FileRepository(DATA / "counts")
count_done = pdtnb.YamlMetadataFileRepository(DATA / "count_done")
pids = pdtnb.YamlMetadataFileRepository(DATA / "pids")
report = pdtnb.FileRepository(DATA / "report")
report_done = pdtnb.YamlMetadataFileRepository(DATA / "report_done")


def check_input(job: str, text: str) -> None:
    if job in FAIL_PARSE and not FIXED.exists():
        raise ValueError(f"cannot parse {job}: {text.strip()!r} is not a number")


@pdtnb.InProcessSyncTask("parse", parse_done)
async def parse(job, raw, parsed):
    async with await raw.open(job, "r") as fp:
        text = await fp.read()
    check_input(job, text)
    async with await parsed.open(job, "w") as fp:
        await fp.write(text.strip() + "\n")


parse.link("raw", raw, is_input=True)
parse.link("parsed", parsed, is_output=True)

session = pdtnb.Session()


@session.resource
async def procman():
    yield pdtnb.LocalLinuxManager("pdtnb-failing", local_path=DATA / "work")


quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=8, mem="1Gi"))
fail_list = " ".join(sorted(FAIL_COUNT))
count = pdtnb.ProcessTask(
    "count",
    procman,
    quota,
    pdtnb.Resources.parse(cpu=1, mem="16Mi"),
    pids,
    f"""
case " {fail_list} " in *" {{{{ job }}}} "*)
  if [ ! -e {FIXED} ]; then echo "counting {{{{ job }}}}: the input is corrupt" >&2; exit 3; fi ;;
esac
if [ "{{{{ job }}}}" = "{SLOW}" ]; then sleep 60; fi
echo "counting {{{{ job }}}}"
wc -c < {{{{ parsed }}}}
""",
    done=count_done,
    stdout=counts,
    retry=pdtnb.Retry(attempts=RETRIES, delay=0.2, jitter=0) if RETRIES > 1 else None,
)
count.plug(parse)

executor = ThreadPoolExecutor(2)


@pdtnb.ExecutorTask("report", executor, report_done)
def make_report(job, stdout, report):
    text = Path(stdout.fullpath(job)).read_text()
    out = Path(report.fullpath(job))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"{job}: {text.split()[-1]} bytes\n")


make_report.plug(count)
make_report.link("report", report, is_output=True)

pipeline = pdtnb.Pipeline([parse, count, make_report], session, [quota])

if __name__ == "__main__":
    sys.exit(pdtnb.main(pipeline))
