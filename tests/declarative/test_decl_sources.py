"""What a pipeline file may be written as: YAML, TOML or JSON for the same pipeline, split over
files with ``include`` (paths relative to each file), with ``${ENV}``, ``${ENV:-default}`` and
``$$``, and YAML read with the YAML 1.2 core schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from decl_support import EXAMPLE, FILES, write

import pdtnb
from pdtnb.declarative.source import Dumper, Loader


def shape(pipeline: pdtnb.Pipeline) -> dict[str, Any]:
    """A pipeline's tasks: their class, body, and every link with its repository and flags."""
    return {
        name: (
            type(task).__name__,
            task.func,
            {
                link: (
                    repr(spec.repo),
                    spec.is_input,
                    spec.is_output,
                    spec.is_status,
                    spec.required_for_start,
                    spec.inhibits_start,
                    spec.required_for_output,
                    spec.inhibits_output,
                    spec.require_success,
                )
                for link, spec in task.links.items()
            },
        )
        for name, task in pipeline.tasks.items()
    }


@pytest.mark.parametrize("form", ["books.toml", "books.json"])
def test_toml_and_json_forms_of_the_example_are_the_same_pipeline(form: str, tmp_path: Path) -> None:
    environ = {"PDTNB_EXAMPLE_DIR": str(tmp_path / "work"), "PDTNB_EXAMPLE_BOOKS": str(tmp_path / "books")}
    yaml_pipeline = pdtnb.load(EXAMPLE / "pipeline.yaml", environ=environ)
    other = pdtnb.load(FILES / form, environ=environ)
    assert shape(other) == shape(yaml_pipeline)
    assert list(other.tasks) == ["summary", "index"]
    assert other.tasks["summary"].func.__module__ == "bodies"
    assert other.tasks["index"].links["reports"].repo is other.tasks["summary"].links["reports"].repo
    # without the environment, each file's default path is relative to that file
    defaults = pdtnb.load(FILES / form, environ={})
    books = defaults.tasks["summary"].links["books"].repo.basedir
    assert books.resolve() == (EXAMPLE / "books").resolve()
    assert defaults.tasks["summary"].done.basedir.resolve() == (FILES / "work" / "results").resolve()


async def test_a_pipeline_split_over_files_with_paths_relative_to_each(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "site/main.yaml",
        """
        import_paths: ["@FILES@"]
        include: [parts/storage.yaml, ../shared/tasks.yaml]
        repositories:
          numbers: {kind: InProcessMetadataRepository, data: {a: 1, b: 2}}
        tasks:
          double:
            kind: in-process
            func: decl_bodies:negate
            done: double-done
            links:
              source: {repo: numbers, kind: input}
              negated: {repo: negated, kind: output}
        """,
    )
    write(
        tmp_path,
        "site/parts/storage.yaml",
        """
        repositories:
          negated: {kind: YamlMetadataFileRepository, filename: data/negated}
          double-done: {kind: YamlMetadataFileRepository, filename: data/double-done}
        """,
    )
    write(
        tmp_path,
        "shared/tasks.yaml",
        """
        repositories:
          reports: {kind: FileRepository, basedir: out/reports, extension: .txt}
          report-done: {kind: InProcessMetadataRepository}
        tasks:
          report:
            kind: in-process
            func: shared_bodies:report
            done: report-done
            plug: double
            links:
              reports: {repo: reports, kind: output}
        import_paths: [lib]
        """,
    )
    write(
        tmp_path,
        "shared/lib/shared_bodies.py",
        """
        async def report(job, negated, reports):
            async with await reports.open(job, "w") as fp:
                await fp.write(f"{job} = {await negated.info(job)}\\n")
        """,
    )
    document = pdtnb.check(main)
    assert [p.resolve() for p in document.files] == [
        main,
        tmp_path / "site/parts/storage.yaml",
        tmp_path / "shared/tasks.yaml",
    ]
    pipeline = pdtnb.load(main)
    async with pipeline:
        await pipeline.run(timeout=10)
    assert sorted(p.name for p in (tmp_path / "site/parts/data/negated").iterdir()) == ["a.yaml", "b.yaml"]
    reports = tmp_path / "shared/out/reports"
    assert {p.name: p.read_text() for p in reports.iterdir()} == {"a.txt": "a = -1\n", "b.txt": "b = -2\n"}
    assert not (tmp_path / "site/out").exists() and not (tmp_path / "site/data").exists()


def test_environment_variables_defaults_and_dollars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        repositories:
          values:
            kind: InProcessMetadataRepository
            data:
              set: "${DECL_GREETING}"
              inside: "<${DECL_GREETING}|${DECL_NUMBER}>"
              defaulted: "${DECL_MISSING:-fall back}"
              overridden: "${DECL_GREETING:-unused}"
              empty-default: "${DECL_MISSING:-}"
              dollars: "$$5 and $${DECL_GREETING}"
              shell: "echo $HOME ${1} $"
              number: ${DECL_NUMBER}
              secret: ${DECL_SECRET}
        """,
    )
    monkeypatch.setenv("DECL_GREETING", "hello")
    monkeypatch.setenv("DECL_NUMBER", "42")
    monkeypatch.setenv("DECL_SECRET", "${DECL_GREETING} $$ {x: 1}")
    monkeypatch.delenv("DECL_MISSING", raising=False)
    expected = {
        "set": "hello",
        "inside": "<hello|42>",
        "defaulted": "fall back",
        "overridden": "hello",
        "empty-default": "",
        "dollars": "$5 and ${DECL_GREETING}",
        "shell": "echo $HOME ${1} $",
        "number": "42",  # a string, as the environment gives it
        "secret": "${DECL_GREETING} $$ {x: 1}",  # a value is never read again
    }
    document = pdtnb.check(path)
    assert document.entries["repositories"]["values"].value["data"] == expected
    # an explicit environment replaces os.environ
    document = pdtnb.check(path, environ={"DECL_GREETING": "hi", "DECL_NUMBER": "7", "DECL_SECRET": "s"})
    assert document.entries["repositories"]["values"].value["data"]["inside"] == "<hi|7>"
    assert document.entries["repositories"]["values"].value["data"]["defaulted"] == "fall back"


def test_interpolated_values_reach_the_objects(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.toml",
        """
        import_paths = ["@FILES@"]
        [repositories.numbers]
        kind = "InProcessMetadataRepository"
        data = { a = 1 }
        [repositories.out]
        kind = "FileRepository"
        basedir = "${DECL_OUT}/negated"
        extension = "${DECL_EXT:-.txt}"
        [repositories.done]
        kind = "InProcessMetadataRepository"
        [tasks.t]
        kind = "in-process"
        func = "decl_bodies:${DECL_BODY}"
        done = "done"
        links.numbers = { repo = "numbers", kind = "input" }
        links.squares = { repo = "out", kind = "output" }
        """,
    )
    pipeline = pdtnb.load(path, environ={"DECL_OUT": str(tmp_path / "elsewhere"), "DECL_BODY": "square"})
    repo = pipeline.tasks["t"].links["squares"].repo
    assert (repo.basedir, repo.extension) == (tmp_path / "elsewhere" / "negated", ".txt")
    assert pipeline.tasks["t"].func.__name__ == "square"


def test_yaml_is_read_with_the_yaml_1_2_core_schema(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        repositories:
          values:
            kind: InProcessMetadataRepository
            data: {yes: no, on: off, y: n, octal: 0755, hex: 0x1F, new-octal: 0o17, date: 2024-01-01,
                   true: false, exponent: 1e3, sexagesimal: 1:30, nothing: null, tilde: ~}
        """,
    )
    data = pdtnb.check(path).entries["repositories"]["values"].value["data"]
    assert data == {
        "yes": "no",
        "on": "off",
        "y": "n",
        "octal": 755,
        "hex": 31,
        "new-octal": 15,
        "date": "2024-01-01",
        True: False,
        "exponent": 1000.0,
        "sexagesimal": "1:30",
        "nothing": None,
        "tilde": None,
    }


def test_the_dumper_writes_what_yaml_1_2_and_1_1_read_back_the_same() -> None:
    values = {
        "exponent": "1e3",
        "octal": "0o17",
        "leading-zero": "0755",
        "on": "on",
        "yes": "yes",
        "date": "2024-01-01",
        "null": "null",
        "infinity": ".inf",
        "text": "plain text",
        "number": 1e3,
        "flag": True,
        "none": None,
    }
    text = yaml.dump(values, Dumper=Dumper)
    assert yaml.load(text, Loader=Loader) == values
    assert yaml.safe_load(text) == values
    assert "exponent: '1e3'" in text  # PyYAML's own safe dumper writes it plain: 1000.0 for YAML 1.2
