"""``python -m pdtnb``: tools that work on notebooks rather than on one pipeline.

``python -m pdtnb export NOTEBOOK.ipynb -o SCRIPT.py`` writes the notebook's pipeline as a
standalone script (see :mod:`pdtnb.notebook.export`). Administering a pipeline stays the job of
the pipeline's own script (``python SCRIPT.py run``, through :func:`pdtnb.main`), so this entry
point has no other subcommand: anything else prints the usage and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """\
usage: python -m pdtnb export NOTEBOOK.ipynb -o SCRIPT.py [--pipeline NAME]

  export    write a notebook's pipeline as a standalone script ending with pdtnb.main(pipeline);
            `python -m pdtnb export --help` for the details

A pipeline script is administered by running it: python SCRIPT.py {run,status,launch,...}
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``python -m pdtnb ARGS``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "export":
        try:
            from .notebook.export import main as export_main
        except ImportError as e:  # the notebook extra is missing
            print(f"error: python -m pdtnb export needs the notebook extra: pip install 'pdtnb[notebook]' ({e})",
                  file=sys.stderr)
            return 2
        return export_main(args[1:])
    if args and args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    sys.stderr.write(USAGE)
    if args:
        print(f"error: unknown command {args[0]!r}: the only command is export", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
