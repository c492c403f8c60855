"""Colours and labels shared by the status table, the graph and the dashboard."""

from __future__ import annotations

#: Fill colour of each job state (colour-blind-safe palette, Okabe-Ito).
STATE_COLOURS: dict[str, str] = {
    "ready": "#56B4E9",   # sky blue
    "live": "#E69F00",    # orange
    "done": "#009E73",    # green
    "failed": "#D55E00",  # vermillion
    "idle": "#BBBBBB",    # grey
}

STATES: tuple[str, ...] = ("ready", "live", "done", "failed")
