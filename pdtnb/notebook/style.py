"""Colours and labels shared by the status table, the graph and the dashboard."""

from __future__ import annotations

#: Fill colour of each job state, in the status table and on the graph's task nodes.
STATE_COLOURS: dict[str, str] = {
    "ready": "#F6C85F",
    "live": "#5DA5DA",
    "done": "#7BC67B",
    # Done by code that has changed since: an olive amber, apart from ready's yellow, retrying's
    # orange and failed's red (dark text on it, like ready's).
    "outdated": "#B5A33A",
    "failed": "#E15759",
    "idle": "#E2E6EB",
    "retrying": "#F28E2B",
    "blocked": "#B07AA1",
    "waiting": "#9C9C9C",
}

#: The colour of a state's name written on white, where its fill is too light to read.
STATE_TEXT_COLOURS: dict[str, str] = {"outdated": "#7A6B10"}

#: The job states the status table has a column for (all of :data:`pdtnb.JOB_STATES`).
STATES: tuple[str, ...] = ("waiting", "ready", "live", "done", "outdated", "failed", "retrying", "blocked")

#: The states whose badges and buttons carry dark text (light fills).
DARK_TEXT_STATES: tuple[str, ...] = ("ready", "waiting", "outdated")

#: The states a task node of the graph is drawn in (each in the legend).
NODE_STATES: tuple[str, ...] = ("ready", "live", "done", "failed", "idle")

#: The states a task node is drawn in now and then: in the legend only when a node is.
OCCASIONAL_NODE_STATES: tuple[str, ...] = ("outdated",)
