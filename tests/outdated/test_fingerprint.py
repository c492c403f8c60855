"""A task's fingerprint (pdtnb.fingerprint): what counts as a change of its code and what does not.

Bodies are written to real module files and imported, so their source is read as it is for a
user's script; each test edits the file and imports it again, as a user re-runs a script.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import pdtnb
from pdtnb.fingerprint import combine, describe_changes, function_parts

_names = itertools.count()

BASE = '''
import pdtnb

LIMIT = 3


def clean(text):
    return text.strip()


def shout(text):
    return clean(text).upper()


def unused(text):
    return text * 2


async def body(job, inp, out):
    """Copy the input, shouted."""
    async with await inp.open(job, "r") as fp:
        text = await fp.read()
    async with await out.open(job, "w") as fp:
        await fp.write(shout(text)[:LIMIT])
'''


def load(tmp_path: Path, source: str) -> ModuleType:
    """Import ``source`` as a fresh module from a file (a script run again)."""
    name = f"fp_module_{next(_names)}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def parts(tmp_path: Path, source: str) -> dict[str, str]:
    return function_parts(load(tmp_path, source).body)


def test_the_body_and_every_function_of_its_module_it_reaches_are_parts(tmp_path):
    got = parts(tmp_path, BASE)
    # shout directly, clean through shout; unused and the imported pdtnb are not parts.
    assert sorted(got) == ["body", "calls clean", "calls shout"]


@pytest.mark.parametrize(
    "edit",
    [
        ("# comment", lambda s: s.replace("async def body", "# a new comment\nasync def body")),
        ("inline comment", lambda s: s.replace("text = await fp.read()", "text = await fp.read()  # read it")),
        ("docstring", lambda s: s.replace('"""Copy the input, shouted."""', '"""Shout the input: a new text."""')),
        ("no docstring", lambda s: s.replace('    """Copy the input, shouted."""\n', "")),
        ("blank lines", lambda s: s.replace("\n\ndef shout", "\n\n\n\n\ndef shout")),
        ("formatting", lambda s: s.replace("return clean(text).upper()", "return clean( text ).upper( )")),
        ("a helper's comment", lambda s: s.replace("return text.strip()", "return text.strip()  # no blanks")),
        ("an unused function", lambda s: s.replace("return text * 2", "return text * 3")),
        ("a decorator", lambda s: s.replace("async def body", "@staticmethod\nasync def body")),
    ],
    ids=lambda e: e[0],
)
def test_what_does_not_change_the_code_does_not_change_the_fingerprint(tmp_path, edit):
    before = parts(tmp_path, BASE)
    edited = edit[1](BASE)
    assert edited != BASE
    if "staticmethod" in edited:  # a decorator is not the body: fingerprint what it wraps
        module = load(tmp_path, edited)
        assert function_parts(module.body.__func__) == before
        return
    assert parts(tmp_path, edited) == before


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        (lambda s: s.replace("[:LIMIT]", "[:LIMIT + 1]"), ["body"]),
        (lambda s: s.replace("return text.strip()", "return text.lstrip()"), ["calls clean"]),
        (lambda s: s.replace(".upper()", ".lower()"), ["calls shout"]),
        (lambda s: s.replace("async def body(job, inp, out):", "async def body(job, out, inp):"), ["body"]),
    ],
    ids=["body", "a helper reached through another", "a helper it calls", "its parameters"],
)
def test_a_change_of_code_changes_the_part_it_is_in(tmp_path, edit, changed):
    before = parts(tmp_path, BASE)
    after = parts(tmp_path, edit(BASE))
    assert sorted(k for k in before if before[k] != after.get(k)) == changed
    assert combine(before).digest != combine(after).digest


def test_a_helper_redefined_after_the_task_counts_without_redefining_the_task(tmp_path):
    """A notebook re-runs only the cell of a helper: the body's globals name the new function."""
    module = load(tmp_path, BASE)
    before = function_parts(module.body)
    exec(compile("def clean(text):\n    return text.strip().title()\n", module.__file__, "exec"), module.__dict__)
    after = function_parts(module.body)
    assert before["body"] == after["body"] and before["calls clean"] != after["calls clean"]


def test_plain_values_bound_to_the_body_are_a_part(tmp_path):
    module = load(tmp_path, BASE)
    one = function_parts(functools.partial(module.body, limit=1))
    two = function_parts(functools.partial(module.body, limit=2))
    assert one["body"] == two["body"] and one["bound"] != two["bound"]

    def make(threshold):
        async def body(job, inp):
            return threshold

        return body

    assert function_parts(make(0.5))["bound"] != function_parts(make(0.7))["bound"]
    assert function_parts(make(0.5)) == function_parts(make(0.5))
    assert "bound" not in function_parts(make(object())), "only plain data: an object's repr is no fingerprint"


def test_a_function_without_source_is_fingerprinted_by_its_code():
    namespace: dict = {}
    exec("async def body(job):\n    return 1\n", namespace)
    again: dict = {}
    exec("async def body(job):\n    # a comment\n    return 1\n", again)
    other: dict = {}
    exec("async def body(job):\n    return 2\n", other)
    assert function_parts(namespace["body"]) == function_parts(again["body"])
    assert function_parts(namespace["body"]) != function_parts(other["body"])


def test_a_template_task_fingerprints_its_text_without_comments_and_its_environment(tmp_path):
    def task(template: str, environ: dict[str, str] | None = None) -> pdtnb.ProcessTask:
        quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=1))
        return pdtnb.ProcessTask(
            "p",
            lambda: None,
            quota,
            pdtnb.Resources.parse(cpu=1),
            pdtnb.InProcessMetadataRepository(),
            template,
            environ=environ,
        )

    base = task("echo {{ job }}\n").fingerprint()
    assert base is not None and sorted(base.parts) == ["template"]
    assert task("echo {{ job }}{# a note #}\n").fingerprint() == base, "a template comment is not a change"
    assert task("echo {{ job }}!\n").fingerprint().parts["template"] != base.parts["template"]
    with_env = task("echo {{ job }}\n", {"MODE": "fast"}).fingerprint()
    assert with_env.parts["template"] == base.parts["template"]
    slow = task("echo {{ job }}\n", {"MODE": "slow"}).fingerprint()
    assert with_env.parts["environment"] != slow.parts["environment"]
    # A credential's change changes no result, and even a hash of it must not be kept.
    assert task("echo {{ job }}\n", {"MODE": "fast", "API_TOKEN": "a"}).fingerprint() == with_env
    template_file = tmp_path / "job.sh"
    template_file.write_text("echo {{ job }}\n")
    assert task(template_file).fingerprint() == base, "a template file is its text"


def test_changes_are_described_by_part():
    old = {"body": "a", "calls clean": "b", "bound": "c"}
    new = {"body": "a", "calls clean": "x", "calls shout": "y"}
    assert describe_changes(old, new) == [
        "what is bound to its body is gone",
        "the function clean it calls changed",
        "the function shout it calls was added",
    ]
    assert describe_changes(None, new) == ["the task's code changed (the record does not say which part)"]
