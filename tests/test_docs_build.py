"""The documentation builds with Sphinx, warnings as errors, and holds what the pages promise.

One build (about 15 s) serves every test: the API reference documents the whole public API, the
notebook guide covers every ``%pdt`` subcommand and widget and shows its pictures, and the landing
page leads to every guide.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="could not import sphinx (the docs extra)")
pytest.importorskip("myst_parser", reason="could not import myst_parser (the docs extra)")
pytest.importorskip("furo", reason="could not import furo (the docs extra)")

import pdtnb

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ["quickstart", "notebook", "cli", "concepts", "processes", "storage", "kubernetes", "porting", "api/index"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the HTML site into a temporary directory; any warning fails the build."""
    tmp = tmp_path_factory.mktemp("docs")
    out = tmp / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += ["-d", str(tmp / "doctrees"), str(DOCS), str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0 or "WARNING" in result.stderr or "ERROR" in result.stderr:
        pytest.fail(
            f"sphinx -W --keep-going exited {result.returncode}:\n{result.stderr.strip()}\n{result.stdout[-3000:]}",
            pytrace=False,
        )
    return out


def page_text(path: Path) -> str:
    """The visible text of a built page: tags removed, entities decoded, whitespace collapsed."""
    raw = path.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())


def test_landing_page_leads_to_every_guide(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    for page in PAGES:
        assert (site / f"{page}.html").is_file(), f"{page}.html was not built"
        assert f'href="{page}.html' in index, f"index.html does not link to {page}.html"


def test_api_reference_documents_the_public_api(site: Path) -> None:
    ids: set[str] = set()
    for path in (site / "api").glob("*.html"):
        ids |= set(re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', path.read_text(encoding="utf-8")))
    assert "pdtnb.Pipeline" in ids
    assert "pdtnb.Pipeline.run" in ids

    public = set(pdtnb.__all__) | set(pdtnb._LAZY)
    missing = sorted(name for name in public if f"pdtnb.{name}" not in ids)
    assert not missing, f"public names of pdtnb without an entry in the API reference: {missing}"

    from pdtnb import notebook

    missing = sorted(name for name in notebook.__all__ if f"pdtnb.notebook.{name}" not in ids)
    assert not missing, f"public names of pdtnb.notebook without an entry in the API reference: {missing}"

    pipeline = page_text(site / "api" / "pipeline.html")
    assert "A set of tasks, the session their resources come from" in pipeline  # the docstring itself


def test_notebook_guide_covers_every_magic_and_widget(site: Path) -> None:
    pytest.importorskip("IPython", reason="could not import IPython (the notebook extra)")
    from pdtnb.notebook import magics

    source = (DOCS / "notebook.md").read_text(encoding="utf-8")
    subcommands = magics._build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    undocumented = sorted(sub for sub in subcommands if not re.search(rf"%pdt {re.escape(sub)}\b", source))
    assert not undocumented, f"%pdt subcommands missing from docs/notebook.md: {undocumented}"
    assert "%%pdt inject" in source

    guide = page_text(site / "notebook.html")
    for widget in ("Dashboard", "LiveStatus", "StatusTable", "PipelineGraph"):
        assert widget in guide, f"docs/notebook.md does not describe {widget}"

    built = (site / "notebook.html").read_text(encoding="utf-8")
    for image in ("dashboard.png", "graph-example.png"):
        assert re.search(rf'<img [^>]*src="_images/{re.escape(image)}"', built), f"notebook.html does not show {image}"
        assert (site / "_images" / image).stat().st_size > 1000


def test_quickstart_covers_install_script_and_notebook(site: Path) -> None:
    text = page_text(site / "quickstart.html")
    needles = ["pip install pdtnb", "pdtnb.main(pipeline)", "python pipeline.py run", "%load_ext pdtnb"]
    needles += ["%pdt status", "%pdt run", "%pdt dashboard", "notebooks/quickstart.ipynb", "./dev example"]
    for needle in needles:
        assert needle in text, f"the quickstart does not mention {needle!r}"
