"""Colours and labels shared by the status table, the graph and the dashboard."""

from __future__ import annotations

#: Fill colour of each job state, in the status table and on the graph's task nodes.
STATE_COLOURS: dict[str, str] = {
    "ready": "#F6C85F",
    "live": "#5DA5DA",
    "done": "#7BC67B",
    "failed": "#E15759",
    "idle": "#E2E6EB",
}

STATES: tuple[str, ...] = ("ready", "live", "done", "failed")
