"""${NAME} where a number or a boolean is wanted: an environment variable is text, and a field
that takes a number takes one whole ${NAME} holding one (the schema says so to editors too)."""

from __future__ import annotations

from pathlib import Path

import pytest

import pdtnb

FILE = """\
pipeline: {poll_interval: "${POLL}", launch_concurrency: "${CONCURRENCY:-4}"}
resources:
  conn: {kind: ssh, host: worker1, port: "${PORT}", known_hosts: keys/known_hosts, client_keys: [keys/id]}
repositories:
  done: {kind: YamlMetadataFileRepository, filename: done, durable: "${DURABLE}"}
  inp: {kind: FileRepository, basedir: inp}
tasks:
  t: {kind: in-process, func: "os:getcwd", done: done, links: {inp: {repo: inp, kind: input}}}
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    (tmp_path / "p.yaml").write_text(FILE)
    return tmp_path / "p.yaml"


def test_a_whole_variable_gives_a_number_or_a_boolean_where_one_is_wanted(path):
    pipeline = pdtnb.load(path, environ={"POLL": "0.5", "PORT": "2222", "DURABLE": "true"})
    assert pipeline.poll_interval == 0.5 and pipeline.launch_concurrency == 4
    assert pipeline.tasks["t"].links["done"].repo.durable is True
    assert pipeline.declared_in == path and pipeline.declared_in.is_absolute()
    # The ssh resource got the port as a number, and its key paths relative to the file.
    factory = pipeline.session.definitions()["conn"]
    _, args = factory.declared  # what the file declared, as built
    assert args["port"] == 2222
    assert args["known_hosts"] == str(path.parent / "keys" / "known_hosts")
    assert args["client_keys"] == [str(path.parent / "keys" / "id")]


@pytest.mark.parametrize(
    ("environ", "written", "message"),
    [
        (
            {"POLL": "fast", "PORT": "22", "DURABLE": "true"},
            '"${POLL}"',
            "pipeline.poll_interval: 'fast' is not a number",
        ),
        ({"POLL": "1", "PORT": "22x", "DURABLE": "true"}, '"${PORT}"', "resources.conn.port: '22x' is not an integer"),
        (
            {"POLL": "1", "PORT": "22", "DURABLE": "yes"},
            '"${DURABLE}"',
            "repositories.done.durable: 'yes' is not a boolean",
        ),
    ],
)
def test_a_variable_that_is_not_what_is_wanted_is_refused_where_it_is_written(path, environ, written, message):
    with pytest.raises(pdtnb.DeclarationError) as caught:
        pdtnb.check(path, environ=environ)
    assert message in str(caught.value)
    line = next(i for i, text in enumerate(FILE.splitlines(), start=1) if written in text)
    column = FILE.splitlines()[line - 1].index(written) + 1
    assert (caught.value.where.line, caught.value.where.column) == (line, column)


def test_text_around_a_variable_stays_text(tmp_path):
    (tmp_path / "p.yaml").write_text(FILE.replace('port: "${PORT}"', 'port: "2${PORT}"'))
    with pytest.raises(pdtnb.DeclarationError, match=r"port: '222' is not an integer"):
        pdtnb.check(tmp_path / "p.yaml", environ={"POLL": "1", "PORT": "22", "DURABLE": "true"})
