"""What every live view (live table, dashboard, progress bars) shares: its feed, following a
redefined pipeline, and how it is displayed so that a saved notebook keeps its last state.

**Feed.** A view subscribes to its controller's :class:`~pdtnb.notebook.feed.StatusFeed` and
renders each snapshot; it runs no refresh loop of its own.

**Redefinition.** When the notebook redefines the pipeline, the old controller is retired
(:meth:`PipelineController.retire`) and the feed says so: a view made with ``follow=True`` (the
default) moves to :meth:`PipelineController.current`, one made with ``follow=False`` greys out,
says that it shows an old definition, and refuses to act. The old definition is retired at the
end of the cell that rebinds the pipeline's variable (IPython's ``post_run_cell``), as the next
``%pdt`` action or click would: so a view shows at once what the new definition's status is (the
jobs its changed code made outdated, say), never the replaced definition's counts as current.

**Display.** A view is displayed as one output carrying three representations: the widget view,
a ``text/html`` snapshot and a ``text/plain`` rendering of the status. JupyterLab picks the widget
view whenever the widget manager is installed and the output is trusted (its renderer has the
highest rank); when the output is untrusted (a notebook run elsewhere, e.g. by nbclient or
papermill), the widget renderer is skipped as unsafe and the sanitized ``text/html`` shows; text-only
frontends and exports show the ``text/plain``. A trusted output whose widget model is gone (the
notebook reopened after its kernel ended, without saved widget state) would show *"Error
displaying widget: model not found"*: so each view is displayed with a display id, and when it
ends (``close()``, or the kernel shutting down or restarting) the output is replaced, through
``update_display_data``, by a static HTML copy of its last state, which is what the notebook then
saves. While it lives, the HTML carries a CSS timer that, when no update has arrived for a while
(a busy kernel, a dead one), says so instead of "running" forever.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
import weakref
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .controller import PipelineController
    from .feed import StatusFeed, Subscription

__all__ = ["LiveView", "finalize_all", "STALE_CSS"]

log = logging.getLogger("pdtnb.notebook")

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: A CSS timer, restarted by each update (the markup is replaced), that reveals
#: ``.pdtnb-stale`` and dims ``.pdtnb-live-marker`` when no update came for a while; a widget the
#: frontend knows to be disconnected (kernel restarting) shows it at once.
STALE_CSS = """
@keyframes pdtnb-reveal {to {max-width: 80em;}}
@keyframes pdtnb-dim {to {opacity: 0.45; text-decoration: line-through;}}
.pdtnb-stale {display: inline-block; max-width: 0; overflow: hidden; white-space: nowrap; vertical-align: bottom;
  color: #B03A2E; animation: pdtnb-reveal 0s linear var(--pdtnb-stale-after, 15s) forwards;}
.pdtnb-live-marker {animation: pdtnb-dim 0s linear var(--pdtnb-stale-after, 15s) forwards;}
.jupyter-widgets-disconnected .pdtnb-stale {max-width: 80em; animation: none;}
.jupyter-widgets-disconnected .pdtnb-live-marker {opacity: 0.45; text-decoration: line-through; animation: none;}
"""

_views: weakref.WeakSet[LiveView] = weakref.WeakSet()
#: Run states at which a view refreshes the snapshot its outputs carry (see ``refresh_display``).
_MILESTONES = ("finished", "stopped", "failed", "closed")
_hook_installed = False
_lock = threading.Lock()


def stale_html(taken_at: datetime | None, interval: float) -> str:
    """The hidden notice the CSS timer reveals, and the variable that sets its delay."""
    when = f"{taken_at:%H:%M:%S} UTC" if taken_at is not None else "the first status"
    after = max(15.0, 6 * interval)
    return (
        f' <span class="pdtnb-stale" style="--pdtnb-stale-after:{after:.0f}s">· no update since {when}: '
        f"the kernel is busy, or it stopped</span>"
    )


def redefined_note(controller: Any) -> str:
    """The one line a view shows after the notebook redefined the pipeline it was showing."""
    when = f"{controller.retired_at:%H:%M:%S} UTC" if controller.retired_at else "just now"
    name = controller.name or "the pipeline"
    return f"the notebook redefined {name} at {when}: this view now shows the new definition"


class LiveView:
    """Mixin for an ipywidgets widget that shows a controller's feed (see the module docstring).

    Subclasses implement ``render(feed)`` (update the widget from the feed),
    ``snapshot_html(note)`` (static HTML of the last state, ``note`` saying what it is) and
    ``snapshot_text()``; they call :meth:`_init_live` in ``__init__``. ipywidgets' metaclass cannot
    be combined with ``ABCMeta``, so the contract is checked when a subclass is created (pass
    ``abstract=True`` for an intermediate base).
    """

    #: The methods every concrete view defines (see :meth:`__init_subclass__`).
    REQUIRED: tuple[str, ...] = ("render", "snapshot_html", "snapshot_text")

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not abstract:
            missing = [name for name in cls.REQUIRED if not callable(getattr(cls, name, None))]
            if missing:
                raise TypeError(f"{cls.__name__} must define {', '.join(missing)} (a LiveView)")

    controller: PipelineController
    interval: float
    follow: bool
    refreshes: int
    #: Whether the view shows an old definition and refuses to act (``follow=False`` only).
    stale: bool
    #: Whether the view ended (closed, or its kernel shut down): its outputs are static copies.
    ended: bool

    def _init_live(self, controller: PipelineController, interval: float, follow: bool) -> None:
        self.follow = follow
        self.controller = controller.current() if follow else controller
        self.controller.name_from_namespace()
        self.interval = interval
        self.refreshes = 0
        self.stale = False
        self.ended = False
        self.redefined_note = ""
        self._sub: Subscription | None = None
        self._started = False
        self._display_ids: list[str] = []
        self._milestone: tuple[str, int] | None = None
        self._snapshot_stale = False

    # ---- the feed ------------------------------------------------------------------------------

    @property
    def feed(self) -> StatusFeed:
        """The feed this view follows (its controller's)."""
        feed: StatusFeed = self.controller.feed
        return feed

    def start(self) -> Any:
        """Follow the feed (call on the pipeline's loop); returns the view."""
        self._started = True
        if self.controller.retired and self.follow:
            self._attach(self.controller.current())
        if self._sub is None:
            self._sub = self.feed.subscribe(self._on_feed, self.interval)
        if self.controller.retired:
            self._on_feed(self.feed)
        else:
            self.feed.start()
            if self.feed.last is not None:
                self._on_feed(self.feed)
        return self

    def _attach(self, controller: PipelineController) -> None:
        """Move to ``controller``'s feed."""
        if self._sub is not None:
            self.feed.unsubscribe(self._sub)
            self._sub = None
        self.controller = controller
        if self._started:
            self._sub = self.feed.subscribe(self._on_feed, self.interval)
            if not controller.retired:
                try:
                    self.feed.start()
                except RuntimeError:  # no running loop (called from another thread)
                    pass

    def _on_feed(self, feed: StatusFeed) -> None:
        if self.ended or feed.controller is not self.controller:
            return
        controller = self.controller
        if controller.retired:
            if self.follow:
                newer = controller.current()
                self.redefined_note = redefined_note(controller)
                self._attach(newer)
                self.on_redefined(controller, newer)
                if newer.feed.last is not None and not newer.retired:
                    self._on_feed(newer.feed)
            else:
                self._go_stale()
            return
        self.refreshes += 1
        self.render(feed)
        milestone = (feed.state.phase, id(controller))
        if milestone != self._milestone:
            previous, self._milestone = self._milestone, milestone
            if previous is not None and feed.state.phase in _MILESTONES:
                self._snapshot_stale = True  # sent when the current (or next) cell ends

    def _go_stale(self) -> None:
        if self.stale:
            return
        self.stale = True
        if self._sub is not None:
            self.feed.unsubscribe(self._sub)
            self._sub = None
        self.on_stale()

    def on_redefined(self, old: PipelineController, new: PipelineController) -> None:
        """Hook: the view moved from ``old`` to ``new`` (the pipeline was redefined)."""

    def on_stale(self) -> None:
        """Hook: the view shows an old definition and must refuse to act from now on."""

    def stale_notice(self) -> str:
        """The one-line notice of a view of an old definition."""
        name = self.controller.name or "the pipeline"
        when = f" at {self.controller.retired_at:%H:%M:%S} UTC" if self.controller.retired_at else ""
        return (
            f"this view drives an old definition of {name}, replaced{when} when the notebook redefined it; "
            "it no longer acts: show the new one (%pdt dashboard)"
        )

    if TYPE_CHECKING:  # defined by every concrete view (checked in __init_subclass__)

        def render(self, feed: StatusFeed) -> None: ...

        # the widget's own (a concrete view is an ipywidgets widget)
        def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | dict[str, Any] | None: ...

        def snapshot_html(self, note: str) -> str: ...

        def snapshot_text(self) -> str: ...

    # ---- display -------------------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display

        bundle = None if self.ended else self._repr_mimebundle_()
        data = dict(bundle[0] if isinstance(bundle, tuple) else bundle or {})
        if WIDGET_VIEW not in data:
            display(self._static_bundle(self._end_note or "a static copy"), raw=True)
            return
        display_id = uuid.uuid4().hex
        self._display_ids.append(display_id)
        _register(self)
        display(self._live_bundle(data), raw=True, display_id=display_id)

    def _live_bundle(self, data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        data["text/plain"] = self.snapshot_text()
        data["text/html"] = self.snapshot_html("a snapshot: this view is live only in a running kernel with widgets")
        return data

    def refresh_display(self) -> None:
        """Bring the snapshot the outputs carry beside the widget view up to date (what a notebook
        saved without widget state, or opened untrusted, shows).

        Done after milestones only (a run ended, the pipeline closed), at the end of the cell that
        runs then or next (IPython's ``post_run_cell``): JupyterLab draws the widget view anew on an
        update, so it must be rare; and an update sent from the loop's background task would carry
        (with ipykernel 7) the request of the cell that started the view, long finished, which
        nbclient (papermill, CI) ignores, while one sent as part of a cell is applied by both."""
        self._snapshot_stale = False
        if self.ended or not self._display_ids:
            return
        try:
            bundle = self._repr_mimebundle_()
            data = dict(bundle[0] if isinstance(bundle, tuple) else bundle or {})
            if WIDGET_VIEW not in data:
                return
            data = self._live_bundle(data)
            for display_id in self._display_ids:
                _update_display(data, display_id)
        except Exception:
            log.exception("could not update the snapshot of a pdtnb view")

    _end_note = ""

    def _static_bundle(self, note: str) -> dict[str, str]:
        return {"text/plain": self.snapshot_text(), "text/html": self.snapshot_html(note)}

    def finalize(self, note: str) -> None:
        """Replace every output showing this view by a static copy of its last state (from any
        thread); the view then counts as ended."""
        if self.ended:
            return
        self.ended = True
        self._end_note = note
        if not self._display_ids:
            return
        try:
            bundle = self._static_bundle(note)
            for display_id in self._display_ids:
                _update_display(bundle, display_id)
        except Exception:
            log.exception("could not replace a pdtnb view by its static copy")

    def _end_live(self) -> None:
        """Unsubscribe (closing the widget)."""
        if self._sub is not None:
            self.feed.unsubscribe(self._sub)
            self._sub = None
        self._started = False


def _update_display(bundle: dict[str, Any], display_id: str) -> None:
    from IPython.display import update_display

    update_display(bundle, raw=True, display_id=display_id)


def _now() -> str:
    return f"{datetime.now(timezone.utc):%H:%M:%S} UTC"


def _register(view: LiveView) -> None:
    global _hook_installed
    with _lock:
        _views.add(view)
        if _hook_installed:
            return
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover
            return
        shell = get_ipython()
        if shell is None or not hasattr(shell, "observe") or "exit_now" not in getattr(shell, "trait_names", list)():
            return
        shell.observe(_on_exit_now, names=["exit_now"])
        events = getattr(shell, "events", None)
        if events is not None:
            events.register("post_run_cell", _after_cell)
        _hook_installed = True


def _after_cell(*_: Any) -> None:
    try:
        _follow_redefinitions()
    except Exception:
        log.debug("following a redefined pipeline failed", exc_info=True)
    _refresh_stale_snapshots()


def _follow_redefinitions() -> None:
    """Retire every definition a live view shows whose notebook variable now holds another
    Pipeline (the user re-ran its cell), in favour of the new one (:meth:`PipelineController.latest`,
    what the next action would do): following views move to it, the others grey out."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    seen: set[int] = set()
    for view in list(_views):
        if view.ended or view.stale or not view._started:
            continue
        controller = view.controller.current()
        if id(controller) in seen:
            continue
        seen.add(id(controller))
        if controller.rebound() is None or _held_elsewhere(controller):
            continue
        loop = controller.loop or running
        if loop is None or loop.is_closed():
            continue
        from .kernel_loop import submit

        submit(_retire_quietly(controller), loop)


def _held_elsewhere(controller: PipelineController) -> bool:
    """Whether another notebook variable still holds the controller's pipeline (``old = pipeline``
    before redefining it): then it was not replaced, as ``%pdt`` also judges."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    namespace = getattr(shell, "user_ns", {}) if shell is not None else {}
    return any(
        v is controller.pipeline for k, v in list(namespace.items()) if k != controller.name and not k.startswith("_")
    )


async def _retire_quietly(controller: PipelineController) -> None:
    if controller.retired:
        return  # a %pdt line or a click did it meanwhile (and said so)
    try:
        newest = await controller.latest()
    except Exception:
        log.debug("retiring a redefined pipeline failed", exc_info=True)
        return
    if newest is not controller and controller.retired:
        controller.retired_unannounced = True  # the next %pdt line says so


def _refresh_stale_snapshots(*_: Any) -> None:
    for view in list(_views):
        if view._snapshot_stale:
            view.refresh_display()


def _on_exit_now(change: dict[str, Any]) -> None:
    # ipykernel sets shell.exit_now when it receives a shutdown (or restart) request, before it
    # replies: the frontend still listens, so the outputs can be replaced by their static copies.
    if change.get("new"):
        finalize_all(f"the kernel shut down at {_now()}; this is the last state it showed")


def finalize_all(note: str) -> None:
    """Replace the outputs of every live view by static copies (the kernel is going away)."""
    for view in list(_views):
        view.finalize(note)
