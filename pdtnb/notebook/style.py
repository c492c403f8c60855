"""Colours and labels shared by the status table, the graph and the dashboard."""

from __future__ import annotations

#: Fill colour of each job state, in the status table and on the graph's task nodes.
STATE_COLOURS: dict[str, str] = {
    "ready": "#F6C85F",
    "live": "#5DA5DA",
    "done": "#7BC67B",
    "failed": "#E15759",
    "idle": "#E2E6EB",
    "retrying": "#F28E2B",
    "blocked": "#B07AA1",
    "waiting": "#9C9C9C",
}

#: The job states the status table has a column for (all of :data:`pdtnb.JOB_STATES`).
STATES: tuple[str, ...] = ("waiting", "ready", "live", "done", "failed", "retrying", "blocked")

#: The states a task node of the graph is drawn in.
NODE_STATES: tuple[str, ...] = ("ready", "live", "done", "failed", "idle")
