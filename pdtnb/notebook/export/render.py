"""Writing the script: the kept code, the parameters prelude, the replay list, ``pdtnb.main``."""

from __future__ import annotations

import ast
import datetime as _dt
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...script import ENV_PREFIX
from .analysis import ExportPlan
from .cells import ExportError, shorten

# ---- the script ---------------------------------------------------------------------------------

_PRELUDE = """\
# ---- added by pdtnb export: parameters (--param NAME=VALUE before the subcommand, or {env_prefix}NAME)
from pdtnb.script import Parameters as _PdtnbParameters

_pdtnb_param = _PdtnbParameters({parameters}, main=__name__ == "__main__")
"""

_LOADS = """\
# ---- added by pdtnb export: the `%pdt load` files, found where they were relative to this script
# at export time, or else at the absolute path the notebook read them from
from pathlib import Path as _PdtnbPath

_PDTNB_HERE = _PdtnbPath(__file__).resolve().parent


def _pdtnb_file(relative, exported_from):
    beside = _PDTNB_HERE / relative
    return beside if beside.exists() or not _PdtnbPath(exported_from).exists() else _PdtnbPath(exported_from)
"""

_REPLAY = """\
# ---- added by pdtnb export --actions: `python {script} replay` performs these, in order ----------
_PDTNB_ACTIONS = [
{actions}]
"""


def _literal(value: Any) -> str | None:
    """``repr(value)`` when it reads back as an equal literal, else None."""
    text = repr(value)
    try:
        back = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return text if back == value and type(back) is type(value) else None


def _render_action(number: int, action: Any) -> str:
    """One entry of ``_PDTNB_ACTIONS`` for a controller :class:`~pdtnb.notebook.controller.Action`."""
    kind: str = action.kind
    args: dict[str, Any] = dict(action.args)
    entry: dict[str, str] = {"kind": repr(kind)}
    if kind == "inject":
        value = args.pop("value")
        text = _literal(value)
        entry.update({k: repr(v) for k, v in args.items()})
        if text is not None:
            entry["value"] = text
        else:
            from ...repository.metadata import yaml_dump

            try:
                entry["yaml"] = repr(yaml_dump(value).decode("utf-8"))
            except Exception:
                raise ExportError(
                    f"--actions: action {number} (inject {args.get('data')} {args.get('job')}) stored a "
                    f"{type(value).__name__}, which can be written neither as a Python literal nor as YAML"
                ) from None
    else:
        if kind == "run":
            args.pop("forever", None)  # a --forever run is replayed until the pipeline is quiet
        for key, value in args.items():
            text = _literal(value)
            if text is None:
                raise ExportError(f"--actions: action {number} ({kind}) has an argument {key} that is not a literal")
            entry[key] = text
    body = ", ".join(f"{k!r}: {v}" for k, v in entry.items())
    at = getattr(action, "at", None)
    stamp = f"  # {at.astimezone(_dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC" if isinstance(at, _dt.datetime) else ""
    return f"    {{{body}}},{stamp}\n"


def render_script(plan: ExportPlan, actions: Sequence[Any] | None = None, script_name: str = "SCRIPT") -> str:
    """The text of the script for ``plan``; with ``actions`` (controller actions, possibly empty)
    it also has the ``replay`` subcommand."""
    params = ", ".join(f"{p.name!r}: {_literal(p.default) or repr(p.default)}" for p in plan.parameters)
    doc = [
        f"Exported from {plan.origin} by `pdtnb export`: the notebook's pipeline as a command-line tool.",
        "",
        f"    python {script_name} [--param NAME=VALUE]... {{update,run,status,trace,rm,ls,cat,inject,launch,shell"
        + (",replay" if actions is not None else "")
        + "} ...",
        "",
    ]
    if plan.parameters:
        doc.append("Parameters (--param NAME=VALUE before the subcommand, or the environment variable):")
        doc.extend(f"    {p.name} = {shorten(repr(p.default))}  ({p.env}; {p.cell})" for p in plan.parameters)
    else:
        doc.append("Parameters: none (tag a notebook cell 'parameters' to have some).")
    if actions is not None:
        doc += ["", f"`replay` performs the {len(actions)} actions taken in the notebook session, in order."]
    lines = ["#!/usr/bin/env python3", '"""' + "\n".join(doc).replace('"""', "'''").replace("\\", "\\\\") + '\n"""']
    lines.extend(plan.future_imports)
    lines.append("")
    lines.append(_PRELUDE.format(parameters="{" + params + "}", env_prefix=ENV_PREFIX))
    if plan.loads:
        lines.append(_LOADS)
    for header, code in plan.chunks:
        lines.append(f"# %% {header}")
        lines.append(code)
    instrument = ""
    if actions is not None:
        entries = "".join(_render_action(n, a) for n, a in enumerate(actions, 1))
        lines.append(_REPLAY.format(script=script_name, actions=entries))
        instrument = ", instrument=_pdtnb_replay_command(_PDTNB_ACTIONS)"
    if plan.pdtnb_alias is not None:
        module, importing = plan.pdtnb_alias, ""
    elif plan.pdtnb_taken:
        module, importing = "_pdtnb", "    import pdtnb as _pdtnb\n\n"
    else:
        module, importing = "pdtnb", "    import pdtnb\n\n"
    if instrument:
        importing += "    from pdtnb.script import replay_command as _pdtnb_replay_command\n\n"
    lines.append(f'\nif __name__ == "__main__":\n{importing}    {module}.main({plan.pipeline}{instrument})\n')
    text = "\n".join(lines)
    try:
        compile(text, script_name, "exec")
    except SyntaxError as e:  # the kept code compiled cell by cell; a failure here is a statement
        raise ExportError(  # that only compiles inside a function, such as `return` at the top level
            f"the exported script is not valid Python at line {e.lineno} ({shorten(e.text or '')}): {e.msg}"
        ) from None
    return text


def write_script(text: str, output: str | os.PathLike[str], *, notebook: Path | None = None) -> Path:
    """Write ``text`` to ``output`` (executable, since it starts with ``#!``), refusing to
    overwrite the notebook it came from."""
    path = Path(output).expanduser()
    if notebook is not None and path.exists() and path.resolve() == notebook.resolve():
        raise ExportError(f"output {output}: that is the notebook being exported; choose another path")
    if path.is_dir():
        raise ExportError(f"output {output}: is a directory; give the script's file name")
    try:
        path.write_text(text, encoding="utf-8")
        mode = path.stat().st_mode
        path.chmod(mode | ((mode & 0o444) >> 2) | stat.S_IXUSR)
    except OSError as e:
        raise ExportError(f"output {output}: cannot write it: {e.strerror or e}") from None
    return path


def summary(plan: ExportPlan, actions: Sequence[Any] | None) -> str:
    """One line saying what the script holds."""
    parts = [f"pipeline {plan.pipeline!r}"]
    if plan.parameters:
        parts.append(f"parameters {', '.join(p.name for p in plan.parameters)}")
    else:
        parts.append("no parameters")
    if actions is not None:
        parts.append(f"{len(actions)} actions to replay")
    return "; ".join(parts)
