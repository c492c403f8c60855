"""``python -m pdtnb``: administer a pipeline file, and tools that work on notebooks.

``python -m pdtnb -f pipeline.yaml COMMAND ...`` administers the pipeline a file declares
(:mod:`pdtnb.declarative`) with every command of :func:`pdtnb.main` (``run``, ``status``,
``failed``, ...), plus ``check`` (validate the file, open nothing) and ``graph -o FILE`` (draw it,
no kernel needed). ``python -m pdtnb schema`` prints the pipeline files' JSON Schema.
``python -m pdtnb export NOTEBOOK.ipynb -o SCRIPT.py`` writes a notebook's pipeline as a
standalone script (see :mod:`pdtnb.notebook.export`). A pipeline script is administered by
running it (``python SCRIPT.py run``). Anything else prints the usage and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """\
usage: python -m pdtnb -f PIPELINE_FILE COMMAND [ARGS...]
       python -m pdtnb export NOTEBOOK.ipynb -o SCRIPT.py [--pipeline NAME]
       python -m pdtnb schema

  -f FILE   administer the pipeline a YAML, TOML or JSON file declares: every command of a
            pipeline script (run, status, failed, why, retry, ...; `-f FILE --help` lists them),
            plus `check` (validate the file, open nothing) and `graph -o OUT.svg|OUT.png`
  export    write a notebook's pipeline as a standalone script ending with pdtnb.main(pipeline);
            `python -m pdtnb export --help` for the details
  schema    print the JSON Schema of pipeline files

A pipeline script is administered by running it: python SCRIPT.py {run,status,launch,...}
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``python -m pdtnb ARGS``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and (args[0] in ("-f", "--file") or args[0].startswith("--file=")):
        from .declarative.command import main as file_main

        if "=" in args[0]:
            return file_main(args[0].partition("=")[2], args[1:])
        if len(args) < 2:
            print("error: -f needs a pipeline file: python -m pdtnb -f pipeline.yaml COMMAND", file=sys.stderr)
            return 2
        return file_main(args[1], args[2:])
    if args and args[0] == "schema":
        from .declarative.schema import schema_text

        sys.stdout.write(schema_text())
        return 0
    if args and args[0] == "export":
        try:
            from .notebook.export import main as export_main
        except ImportError as e:  # the notebook extra is missing
            print(
                f"error: python -m pdtnb export needs the notebook extra: pip install 'pdtnb[notebook]' ({e})",
                file=sys.stderr,
            )
            return 2
        return export_main(args[1:])
    if args and args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    sys.stderr.write(USAGE)
    if args:
        print(f"error: unknown command {args[0]!r}: give -f PIPELINE_FILE, export or schema", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
