"""The node shapes, as matplotlib paths: a repository is a drum (a cylinder seen from the front)."""

from __future__ import annotations

import math

from matplotlib.path import Path

__all__ = ["drum_path", "drum_rim"]

_STEPS = 24  # points along half an ellipse


def _half_ellipse(x: float, y: float, rx: float, ry: float, lower: bool, ends: bool) -> list[tuple[float, float]]:
    """The lower (left to right) or upper (right to left) half of an ellipse centred on (x, y)."""
    steps = range(_STEPS + 1) if ends else range(1, _STEPS)
    sign, turn = (-1, 1) if lower else (1, -1)
    return [
        (x - turn * rx * math.cos(math.pi * i / _STEPS), y + sign * ry * math.sin(math.pi * i / _STEPS)) for i in steps
    ]


def drum_path(x: float, y: float, w: float, h: float, cap: float) -> Path:
    """The outline of a drum ``w`` by ``h`` centred on (x, y), its caps ``cap`` high."""
    left, right, top, bottom = x - w / 2, x + w / 2, y + h / 2 - cap, y - h / 2 + cap
    points = [(left, top), (left, bottom)]
    points += _half_ellipse(x, bottom, w / 2, cap, lower=True, ends=False)
    points += [(right, bottom), (right, top)]
    points += _half_ellipse(x, top, w / 2, cap, lower=False, ends=False)
    points += [(left, top), (left, top)]
    return Path(points, [Path.MOVETO] + [Path.LINETO] * (len(points) - 2) + [Path.CLOSEPOLY])


def drum_rim(x: float, y: float, w: float, h: float, cap: float) -> Path:
    """The front arc of a drum's top cap (drawn over :func:`drum_path`)."""
    return Path(_half_ellipse(x, y + h / 2 - cap, w / 2, cap, lower=True, ends=True))
