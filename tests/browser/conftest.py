"""The browser tests' fixtures: a JupyterLab server, a chromium page and the helpers (``lab.py``)."""

from lab import jl, lab, page  # noqa: F401  (fixtures)
