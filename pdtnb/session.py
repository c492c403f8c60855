"""The Session: async resources defined in sync code, opened together, closed together.

A pipeline is usually declared at module level, where nothing can be awaited. ``Session.resource``
turns an async generator (connect, ``yield`` the client, disconnect) into a plain callable that
repositories and tasks keep; calling it returns the live object once the session is open. The same
session can be opened again after it was closed, which is what a notebook user does with
``%pdt close`` / ``%pdt open``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from types import TracebackType
from typing import Any, TypeVar, cast

from .errors import SessionClosedError

__all__ = ["Session"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Session:
    """Owns async resources for the lifetime of an ``async with session`` block (or open/close)."""

    def __init__(self) -> None:
        self._defs: dict[str, Callable[[], AsyncGenerator[Any, None]]] = {}
        self._generators: dict[str, AsyncGenerator[Any, None]] = {}
        self.resources: dict[str, Any] = {}
        self._open = False

    @property
    def is_open(self) -> bool:
        """Whether the session's resources are live."""
        return self._open

    def definitions(self) -> dict[str, Callable[[], AsyncGenerator[Any, None]]]:
        """The resources registered with :meth:`resource`, by name, in registration order (the
        async generator functions, not the live values)."""
        return dict(self._defs)

    def resource(self, manager: Callable[[], AsyncGenerator[T, None]]) -> Callable[[], T]:
        """Register an async generator that yields exactly one live resource, then tears it down.

        Returns a callable giving that resource while the session is open. Calling it while the
        session is closed raises :class:`SessionClosedError` naming the resource.
        """
        name = getattr(manager, "__name__", repr(manager))
        if name in self._defs:
            raise ValueError(f"session already has a resource named {name!r}")
        self._defs[name] = manager

        def get() -> T:
            try:
                return cast(T, self.resources[name])  # the value `manager` yielded
            except KeyError:
                raise SessionClosedError(
                    f"resource {name!r} was used but its session is not open; open the pipeline "
                    "(async with pipeline:, pipeline.open(), or %pdt open) first"
                ) from None

        get.__name__ = name
        get.__qualname__ = name
        get.__doc__ = manager.__doc__
        return get

    async def __aenter__(self) -> Session:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Start every resource, in definition order.

        If one fails, the ones already started are closed again before the error propagates, and
        the error names the resource.
        """
        if self._open:
            raise RuntimeError("session is already open")
        self._open = True
        for name, manager in self._defs.items():
            gen = manager()
            try:
                value = await gen.__anext__()
            except StopAsyncIteration:
                await self.close()
                raise RuntimeError(f"session resource {name!r} finished without yielding a value") from None
            except BaseException as e:
                await self.close()
                if isinstance(e, Exception) and _reraisable(e):
                    raise type(e)(f"could not open session resource {name!r}: {e}") from e
                raise
            self._generators[name] = gen
            self.resources[name] = value

    async def close(self) -> None:
        """Tear down every live resource, in reverse order; errors are logged, not raised, so one
        failing teardown cannot leak the others."""
        for name in reversed(list(self._generators)):
            gen = self._generators.pop(name)
            self.resources.pop(name, None)
            try:
                await gen.__anext__()
            except StopAsyncIteration:
                pass
            except Exception:
                log.exception("error while closing session resource %r", name)
            else:
                log.warning("session resource %r yielded more than once; closing it anyway", name)
                await gen.aclose()
        self.resources.clear()
        self._open = False


def _reraisable(e: Exception) -> bool:
    """Whether ``type(e)(message)`` rebuilds the exception faithfully (plain single-message errors)."""
    try:
        clone = type(e)("x")
    except Exception:
        return False
    return type(clone) is type(e) and len(e.args) <= 1
