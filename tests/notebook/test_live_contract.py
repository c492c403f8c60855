"""A live view that forgets part of its contract fails when its class is made, not when a user
first displays it (ipywidgets' metaclass rules out ABCMeta, so LiveView checks it itself)."""

from __future__ import annotations

import ipywidgets
import pytest

from pdtnb.notebook.live import LiveView
from pdtnb.notebook.status_view import LiveStatus, Progress, _FeedHTML


def test_a_view_missing_methods_is_refused_when_defined():
    with pytest.raises(TypeError, match="Half must define snapshot_html, snapshot_text"):

        class Half(LiveView, ipywidgets.HTML):
            def render(self, feed):
                pass

    with pytest.raises(TypeError, match="NoBody must define _body"):

        class NoBody(_FeedHTML):
            pass


def test_the_shipped_views_meet_it():
    for cls in (LiveStatus, Progress):
        assert all(callable(getattr(cls, name)) for name in cls.REQUIRED)
