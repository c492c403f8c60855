"""A one-task file pipeline with hooks, driven through its command line by test_hooks_cli.py.

Environment: DATA (the data directory), VETO (space-separated jobs a hook skips, with a reason).
Every job event goes to DATA/events.jsonl.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pdtnb

DATA = Path(os.environ["DATA"])
VETO = set(os.environ.get("VETO", "").split())

inp = pdtnb.YamlMetadataFileRepository(DATA / "inp")
out = pdtnb.YamlMetadataFileRepository(DATA / "out")
done = pdtnb.YamlMetadataFileRepository(DATA / "done")


class Window:
    """Skips the jobs listed in VETO."""

    def before_launch(self, task, job):
        return f"{job} waits for the night window" if job in VETO else None


@pdtnb.InProcessSyncTask("t", done, hooks=[Window()])
async def work(job, inp, out):
    await out.dump(job, await inp.info(job) + 1)


work.link("inp", inp, is_input=True)
work.link("out", out, is_output=True)

pipeline = pdtnb.Pipeline([work], pdtnb.Session(), hooks=[pdtnb.JsonLinesLog(DATA / "events.jsonl")])

if __name__ == "__main__":
    sys.exit(pdtnb.main(pipeline))
