"""Sphinx configuration for pdtnb's documentation.

Build it (warnings are errors, as in the test suite)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The pages are Markdown, read by myst-parser; the API reference is generated from the docstrings
by autodoc (the docstrings are reStructuredText: ``literal``, :class:`roles`, ``:param:`` fields).
No extension needs the network: intersphinx is deliberately not enabled.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document the working tree, installed or not

import pdtnb  # noqa: E402

project = "pdtnb"
author = "pdtnb developers"
copyright = "pdtnb developers"
release = pdtnb.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: Markdown pages as they are, plus the few extensions they use.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: members in source order, type hints in the signatures, classes shown with their bases.
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
add_module_names = False
python_use_unqualified_type_names = True

# Cross-references that do not resolve (types from other libraries, without intersphinx) are fine.
nitpicky = False

html_theme = "furo"
html_title = f"pdtnb {release}"
html_static_path: list[str] = []

