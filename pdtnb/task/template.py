"""JobTemplate: a task's jinja2 template, compiled once and rendered for each job.

ProcessTask renders a shell script with it, KubeTask a pod manifest. The template is source text
or the path of a file holding it. It may name ``job``, ``task`` and whatever else the task
provides, and any of the task's links, whose ``info(job)`` is read only when the template uses
it. Undefined names are errors (StrictUndefined), nothing is HTML-escaped, and the
``shell_quote`` filter quotes a value for the shell (``cat {{ inp | shell_quote }}``). Every
problem is a TaskConfigError naming the task, the job and the cause, raised before the task
starts anything.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from ..errors import TaskConfigError
from ..fingerprint import environment_text, hash_text

__all__ = ["JobTemplate", "render_environment"]


def render_environment() -> jinja2.Environment:
    """The jinja2 environment task templates are rendered in: StrictUndefined, no autoescaping,
    the trailing newline kept, and the ``shell_quote`` filter."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["shell_quote"] = lambda value: shlex.quote(str(value))
    return env


_ENV = render_environment()
_CREDENTIAL = re.compile(r"pass|secret|token|key|credential|auth", re.IGNORECASE)


class JobTemplate:
    """The template of task ``task`` (its name, for messages): ``source`` is jinja2 text, or a path
    (an ``os.PathLike``, or a one-line string naming an existing file)."""

    def __init__(self, task: str, source: str | os.PathLike[str]):
        self.task = task
        self.source = source
        self._compiled: jinja2.Template | None = None
        self._names: frozenset[str] = frozenset()
        self._error: TaskConfigError | None = None

    def _text(self) -> str:
        source = self.source
        if isinstance(source, os.PathLike):
            return Path(source).read_text()
        if not isinstance(source, str):
            raise TaskConfigError(f"task {self.task!r}: template must be a string or a path, not {source!r}")
        if "\n" not in source and len(source) < 4096:
            try:
                if os.path.isfile(source):
                    return Path(source).read_text()
            except OSError:
                pass
        return source

    def compile(self) -> jinja2.Template:
        """The compiled template (a syntax error is raised again on every later call)."""
        if self._error is not None:
            raise self._error
        if self._compiled is None:
            try:
                ast = _ENV.parse(self._text())
                names = jinja2.meta.find_undeclared_variables(ast)
                compiled = _ENV.from_string(ast)
            except jinja2.TemplateSyntaxError as e:
                self._error = TaskConfigError(
                    f"task {self.task!r}: the template has a syntax error at line {e.lineno}: {e.message}"
                )
                raise self._error from None
            except OSError as e:
                raise TaskConfigError(f"task {self.task!r}: cannot read the template file: {e}") from e
            self._names = frozenset(names) - set(_ENV.globals)
            self._compiled = compiled
        return self._compiled

    def fingerprint_parts(self, environment: Mapping[str, Any]) -> dict[str, str]:
        """The parts of a template task's fingerprint (:mod:`pdtnb.fingerprint`): ``template``,
        the text without its ``{# #}`` comments, blank lines and trailing blanks, and
        ``environment``, the values the task renders
        it with for every job (the names of credentials, whose change alters no result, left out:
        a hash of a weak secret could be guessed)."""
        tokens = _ENV.lex(self._text())
        text = "".join(value for _, kind, value in tokens if not kind.startswith("comment"))
        # Blank lines and trailing blanks mean nothing to a shell or to YAML: not a change.
        text = "\n".join(line.rstrip() for line in text.splitlines() if line.strip())
        parts = {"template": hash_text(text)}
        kept = {k: v for k, v in environment.items() if not _CREDENTIAL.search(str(k))}
        if kept:
            parts["environment"] = hash_text(environment_text(kept))
        return parts

    @property
    def names(self) -> frozenset[str]:
        """The names the template uses without defining them."""
        self.compile()
        return self._names

    async def render(self, job: str, links: Mapping[str, Any], values: Mapping[str, Any]) -> str:
        """The text for ``job``: ``values`` (``job``, ``task`` and whatever the task provides) and the
        ``info(job)`` of each link in ``links`` the template names."""
        template = self.compile()
        where = f"task {self.task!r}, job {job!r}"
        missing = sorted(n for n in self._names if n not in links and n not in values)
        if missing:
            which = ", ".join(repr(n) for n in missing)
            verb = "is" if len(missing) == 1 else "are"
            raise TaskConfigError(
                f"{where}: the template refers to {which}, which {verb} not a link of this task "
                f"(links: {', '.join(sorted(links))}; also {', '.join(values)})"
            )
        link_names = [n for n in self._names if n in links and n not in values]
        context: dict[str, Any] = {}
        if link_names:
            try:
                infos = await asyncio.gather(*(links[n].repo.info(job) for n in link_names))
            except Exception as e:
                raise TaskConfigError(f"{where}: could not read a linked value for the template: {e!r}") from e
            context.update(zip(link_names, infos))
        context.update(values)
        try:
            return template.render(context)
        except Exception as e:
            raise TaskConfigError(f"{where}: the template failed to render: {type(e).__name__}: {e}") from e
