"""What the Python-function tasks share: the decorator form and binding links to parameters.

A function task's body is ``async def body(job, some_link, other_link)``: each parameter other
than ``job`` names a link, and receives that link's repository. The binding is checked when the
pipeline opens, so a typo in a parameter name fails at once with the task and parameter named,
not at the first launch.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import TaskConfigError
from ..fingerprint import function_parts
from .base import Task

__all__ = ["FunctionBinding", "FunctionTask"]


class FunctionBinding:
    """The body of a function task and the repositories its parameters receive."""

    def __init__(self, task: Task, func: Callable[..., Any] | None):
        self.task = task
        self.func = func
        self._repos: dict[str, Any] = {}
        self._wants_job = False
        self.target: Callable[..., Any] | None = None
        self.leading_job = False
        self.args: tuple[Any, ...] = ()

    def bind(self) -> None:
        """Resolve each parameter to a link; raise TaskConfigError naming what is missing."""
        task = self.task
        if self.func is None:
            raise TaskConfigError(f"task {task.name!r} has no function: use it as a decorator or pass func=...")
        try:
            sig = inspect.signature(self.func, follow_wrapped=True)
        except (TypeError, ValueError) as e:
            raise TaskConfigError(f"task {task.name!r}: cannot inspect its function: {e}") from e
        repos: dict[str, Any] = {}
        wants_job = False
        for pname, param in sig.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if pname == "job":
                wants_job = True
            elif pname in task.links:
                repos[pname] = task.links[pname].repo
            elif param.default is param.empty:
                raise TaskConfigError(
                    f"task {task.name!r}: its function takes parameter {pname!r} but the task has no link "
                    f"of that name (links: {', '.join(sorted(task.links)) or 'none'})"
                )
        self._repos = repos
        self._wants_job = wants_job
        self.partial: Callable[..., Any] = functools.partial(self.func, **repos)
        # The common shape, ``body(job, link, link...)`` with every parameter bound in order, is
        # called positionally (no keyword dict to build per call): ``target(job, *args)``, or
        # ``target(*args)`` for a body without ``job``; None for any other shape.
        self.target = None
        self.args = ()
        params = list(sig.parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if (
            params
            and all(p.kind in positional and (p.name == "job" or p.name in repos) for p in params)
            and (not wants_job or params[0].name == "job")
            and _positional_names(self.func) == tuple(p.name for p in params)
        ):
            self.target = self.func
            self.leading_job = wants_job
            self.args = tuple(repos[p.name] for p in params if p.name != "job")

    def kwargs(self, job: str) -> dict[str, Any]:
        """The keyword arguments for one call of the body."""
        args = dict(self._repos)
        if self._wants_job:
            args["job"] = job
        return args

    def call(self, job: str) -> Any:
        """Call the body for ``job`` (returns its coroutine, for an async body)."""
        target = self.target
        if target is not None:
            return target(job, *self.args) if self.leading_job else target(*self.args)
        if self._wants_job:
            return self.partial(job=job)
        return self.partial()


def _positional_names(func: Callable[..., Any]) -> tuple[str, ...] | None:
    """The names of a plain function's positional parameters, from its code (not from a
    ``__signature__`` or ``__wrapped__`` a wrapper may show); None for anything else."""
    if not inspect.isfunction(func):
        return None
    code = func.__code__
    if code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS) or code.co_kwonlyargcount:
        return None
    return code.co_varnames[: code.co_argcount]


_T = TypeVar("_T", bound="FunctionTask")


class FunctionTask(Task):
    """A task whose body is a Python function: usable as a decorator, bound at validation.

    Subclasses set ``self._binding = FunctionBinding(self, func)`` in their constructor.
    """

    _binding: FunctionBinding

    @property
    def binding(self) -> FunctionBinding:
        """The body and the repositories its parameters receive: bound when the pipeline opens,
        or earlier by whoever wants a wrong parameter reported sooner (:meth:`FunctionBinding.bind`)."""
        return self._binding

    @property
    def func(self) -> Callable[..., Any] | None:
        """The task body."""
        return self._binding.func

    @func.setter
    def func(self, value: Callable[..., Any] | None) -> None:
        self._binding.func = value

    def __call__(self: _T, f: Callable[..., Any]) -> _T:
        """Use the task as a decorator: ``@InProcessSyncTask("name", done)`` above the body."""
        self.func = f
        return self

    async def validate(self) -> None:
        await super().validate()
        self._binding.bind()

    def fingerprint_parts(self) -> dict[str, str] | None:
        """The body's source and that of the functions of its module it calls (see
        :func:`pdtnb.fingerprint.function_parts`)."""
        func = self.func
        return None if func is None else function_parts(func)
