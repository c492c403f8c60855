"""A wrong pipeline file is one error naming the file, the line and the column of the mistake,
whatever the mistake and whatever the syntax (YAML, TOML, JSON), and nothing is created before
the whole file validates."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from decl_support import assert_at, cli, refusal, write

import pdtnb
from pdtnb.declarative.command import main as command_main

# ---- the schema --------------------------------------------------------------------------------


def test_an_unknown_key_is_reported_where_the_key_is_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        version: 1
        repositories:
          done:
            kind: InProcessMetadataRepository
            bogus: 1
          inline: {kind: InProcessBlobRepository, dtaa: {}}
        """,
    )
    assert_at(refusal(path), path, 5, 5, "repositories.done: unknown key 'bogus'")
    path.write_text(path.read_text().replace("    bogus: 1\n", ""))
    assert_at(refusal(path), path, 5, 43, "unknown key 'dtaa'", "did you mean 'data'?")


def test_a_value_of_the_wrong_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        repositories:
          books:
            kind: FileRepository
            basedir: 3
        """,
    )
    assert_at(refusal(path), path, 4, 14, "repositories.books.basedir: 3 is not of type 'string'")
    path = write(
        tmp_path,
        "q.yaml",
        """
        repositories:
          done: {kind: InProcessMetadataRepository}
        tasks:
          t:
            kind: in-process
            func: 12
            done: done
        """,
    )
    assert_at(refusal(path), path, 6, 11, "tasks.t.func: 12 is not of type 'string'")


def test_an_unknown_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        repositories:
          books:
            kind: FileRepo
            basedir: books
        """,
    )
    assert_at(
        refusal(path),
        path,
        3,
        11,
        "'FileRepo' is not one of",
        "did you mean 'FileRepository'?",
        "nor an import path package.module:Class",
    )
    path = write(
        tmp_path,
        "q.yaml",
        """
        tasks:
          t:
            kind: in-procss
        """,
    )
    assert_at(refusal(path), path, 3, 11, "tasks.t.kind: 'in-procss' is not one of", "did you mean 'in-process'?")


def test_a_template_given_twice_or_not_at_all(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        tasks:
          t:
            kind: process
            manager: procs
            resource_manager: cpus
            job_resources: {cpu: 1}
            pids: pids
            template: "echo {{ job }}"
            template_file: job.sh
        """,
    )
    assert_at(refusal(path), path, 2, 3, "tasks.t: give one of template, template_file, not both")
    text = path.read_text().replace('    template: "echo {{ job }}"\n', "")
    path.write_text(text.replace("    template_file: job.sh\n", ""))
    error = refusal(path)
    assert_at(error, path, 2, 3, "tasks.t: give one of template, template_file")
    assert "not both" not in error.reason


def test_a_missing_argument_and_a_bad_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        repositories:
          books:
            kind: FileRepository
        """,
    )
    assert_at(refusal(path), path, 2, 3, "repositories.books: 'basedir' is required")
    path = write(
        tmp_path,
        "q.yaml",
        """
        repositories:
          "my books": {kind: FileRepository, basedir: books}
        """,
    )
    assert_at(refusal(path), path, 2, 3, "'my books' is not a valid name")


# ---- what the schema cannot say ----------------------------------------------------------------


def test_an_unknown_class(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        repositories:
          done:
            kind: nosuch.module:Cls
        """,
    )
    assert_at(
        refusal(path),
        path,
        3,
        11,
        "repository 'done': class 'nosuch.module:Cls' cannot be imported",
        "No module named 'nosuch'",
    )
    path = write(
        tmp_path,
        "q.yaml",
        """
        repositories:
          done:
            kind: json:JSONDecoder
        """,
    )
    assert_at(refusal(path), path, 3, 11, "'json:JSONDecoder' is not a pdtnb Repository class")


def test_an_unknown_function(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        repositories:
          done: {kind: InProcessMetadataRepository}
        tasks:
          t:
            kind: in-process
            func: decl_bodies:nosuch
            done: done
        """,
    )
    assert_at(
        refusal(path),
        path,
        7,
        11,
        "task 't': func 'decl_bodies:nosuch': module 'decl_bodies' has no attribute 'nosuch'",
    )
    path.write_text(path.read_text().replace("decl_bodies:nosuch", "no_such_bodies:double"))
    assert_at(refusal(path), path, 7, 11, "cannot be imported", "No module named 'no_such_bodies'")


def test_a_link_to_an_undefined_repository(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        repositories:
          numbers: {kind: InProcessMetadataRepository}
          done: {kind: InProcessMetadataRepository}
        tasks:
          t:
            kind: in-process
            func: decl_bodies:double
            done: done
            links:
              numbers: {repo: numbers, kind: input}
              doubled: {repo: doubeld, kind: output}
        """,
    )
    assert_at(
        refusal(path),
        path,
        12,
        23,
        "task 't': link doubled: repository 'doubeld' is not a declared repository",
        "repositories: done, numbers",
    )
    # a constructor argument naming a repository, too
    path.write_text(path.read_text().replace("done: done", "done: dnoe").replace("doubeld", "numbers"))
    assert_at(refusal(path), path, 9, 11, "task 't': done 'dnoe' is not a declared repository")


def test_a_plug_into_an_undefined_task(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        repositories:
          done: {kind: InProcessMetadataRepository}
        tasks:
          t:
            kind: in-process
            func: decl_bodies:report
            done: done
            plug: [double]
        """,
    )
    assert_at(refusal(path), path, 9, 12, "task 't': plugs into 'double', which is not a declared task")
    path.write_text(path.read_text().replace("plug: [double]", "plug: {task: t}"))
    assert_at(refusal(path), path, 9, 11, "task 't': a task cannot plug into itself")


def test_a_missing_environment_variable_is_reported_where_it_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        repositories:
          books:
            kind: FileRepository
            basedir: "${HOME_OF_BOOKS:-books}/${BOOK_SHELF}"
        """,
    )
    assert_at(refusal(path), path, 4, 39, "the environment variable BOOK_SHELF is not set", "${BOOK_SHELF:-default}")
    # in a template block, on the line that names it
    path = write(
        tmp_path,
        "q.yaml",
        """
        tasks:
          t:
            kind: process
            template: |
              #!/bin/sh
              echo {{ job }} > "${OUT_DIR}/x"
        """,
    )
    assert_at(refusal(path), path, 6, 25, "OUT_DIR is not set")


def test_a_cycle_through_plug_is_listed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        repositories:
          a-done: {kind: InProcessMetadataRepository}
          b-done: {kind: InProcessMetadataRepository}
          c-done: {kind: InProcessMetadataRepository}
        tasks:
          a:
            kind: in-process
            func: decl_bodies:report
            done: a-done
            plug: c
          b:
            kind: in-process
            func: decl_bodies:report
            done: b-done
            plug: a
          c:
            kind: in-process
            func: decl_bodies:report
            done: c-done
            plug: b
        """,
    )
    assert_at(refusal(path), path, 7, 3, "the tasks form a cycle: a -> b -> c -> a")


def test_a_cycle_through_an_output_another_task_takes_as_input(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        repositories:
          left: {kind: InProcessMetadataRepository}
          right: {kind: InProcessMetadataRepository}
          done-1: {kind: InProcessMetadataRepository}
          done-2: {kind: InProcessMetadataRepository}
        tasks:
          one:
            kind: in-process
            func: decl_bodies:negate
            done: done-1
            links:
              source: {repo: right, kind: input}
              negated: {repo: left, kind: output}
          two:
            kind: in-process
            func: decl_bodies:negate
            done: done-2
            links:
              source: {repo: left, kind: [input]}
              negated: {repo: right, is_output: true}
        """,
    )
    assert_at(refusal(path), path, 8, 3, "the tasks form a cycle: one -> two -> one")
    # the done records of another task, required, are an edge too
    path.write_text(path.read_text().replace("{repo: right, kind: input}", "{repo: done-2, kind: required}"))
    assert_at(refusal(path), path, 8, 3, "the tasks form a cycle: one -> two -> one")


def test_a_cycle_through_a_process_task_s_stdout_and_stdin(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        resources:
          procs: {kind: local-processes, app: decl}
        quotas:
          cpus: {cpu: 1, mem: 1Gi}
        repositories:
          pids: {kind: InProcessMetadataRepository}
          out: {kind: InProcessBlobRepository}
          back: {kind: InProcessBlobRepository}
          done: {kind: InProcessMetadataRepository}
        tasks:
          shell:
            kind: process
            manager: procs
            resource_manager: cpus
            job_resources: {cpu: 1}
            pids: pids
            stdin: back
            stdout: out
            template: "cat"
          python:
            kind: in-process
            func: decl_bodies:negate
            done: done
            links:
              source: {repo: out, kind: input}
              negated: {repo: back, kind: output}
        """,
    )
    assert_at(refusal(path), path, 12, 3, "the tasks form a cycle: shell -> python -> shell")


def test_two_tasks_with_one_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        repositories:
          done: {kind: InProcessMetadataRepository}
        tasks:
          t:
            kind: in-process
            func: decl_bodies:report
            done: done
          t:
            kind: in-process
        """,
    )
    assert_at(refusal(path), path, 9, 3, "'t' is given twice in this mapping (first on line 5)")


def test_two_tasks_with_one_name_across_an_include(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        "main.yaml",
        """
        import_paths: ["@FILES@"]
        include: [more/tasks.yaml]
        repositories:
          done: {kind: InProcessMetadataRepository}
        tasks:
          t:
            kind: in-process
            func: decl_bodies:report
            done: done
        """,
    )
    more = write(
        tmp_path,
        "more/tasks.yaml",
        """
        tasks:
          u: {kind: in-process, func: "decl_bodies:report", done: done}
          t: {kind: in-process, func: "decl_bodies:report", done: done}
        """,
    )
    error = refusal(main)
    assert_at(error, more, 3, 3, "two tasks are named 't'")
    assert f"the other is at {main}:6:3" in error.reason


def test_a_template_that_does_not_compile_is_reported_on_its_bad_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        resources:
          procs: {kind: local-processes, app: decl}
        quotas:
          cpus: {cpu: 1, mem: 1Gi}
        repositories:
          pids: {kind: InProcessMetadataRepository}
        tasks:
          t:
            kind: process
            manager: procs
            resource_manager: cpus
            job_resources: {cpu: 1}
            pids: pids
            template: |
              #!/bin/sh
              echo {{ job }}
              {% if job %}
              echo {{ job | }}
              {% endif %}
        """,
    )
    assert_at(refusal(path), path, 18, 7, "task 't': the template does not compile", "(template line 4)")
    # on one line: at the template's value
    text = path.read_text()
    path.write_text(text[: text.index("template: |")] + 'template: "echo {{ job }"\n')
    assert_at(refusal(path), path, 14, 15, "the template does not compile", "(template line 1)")
    # in a template file: in that file
    template = write(tmp_path, "templates/job.sh.j2", "#!/bin/sh\n{% for x in %}\n")
    path.write_text(text[: text.index("template: |")] + "template_file: templates/job.sh.j2\n")
    assert_at(refusal(path), template, 2, 1, "the template does not compile")


# ---- syntax --------------------------------------------------------------------------------------


def test_a_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        repositories:
          done: {kind: InProcessMetadataRepository
          other: {kind: InProcessMetadataRepository}
        """,
    )
    assert_at(refusal(path), path, 3, 8, "invalid YAML")
    path = write(tmp_path, "q.yaml", "repositories:\n  done: {kind: x}\n\tother: 1\n")
    assert_at(refusal(path), path, 3, 1, "invalid YAML", "cannot start any token")


def test_toml_errors_have_their_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.toml",
        """
        [repositories.done]
        kind = "InProcessMetadataRepository"

        [repositories.books]
        kind = "FileRepository"
        basedir = books
        """,
    )
    assert_at(refusal(path), path, 6, 11, "invalid TOML")
    path = write(
        tmp_path,
        "q.toml",
        """
        [repositories.books]
        kind = "FileRepository"
        basedir = "books"
        extension = 5

        [tasks.t]
        kind = "process"
        template = \"\"\"
        [ -f x ] && echo {{ job }}
        bogus = 1
        \"\"\"
        manager = "procs"
        resource_manager = "cpus"
        job_resources = {cpu = 1}
        pids = "pids"

        [resources]
        procs = {kind = "local-processes", app = "decl"}
        [quotas]
        cpus = {cpu = 1, mem = "1Gi"}
        [repositories.pids]
        kind = "InProcessMetadataRepository"
        """,
    )
    assert_at(refusal(path), path, 4, 13, "repositories.books.extension: 5 is not of type 'string'")
    path.write_text(path.read_text().replace("extension = 5", "extenson = '.txt'"))
    assert_at(refusal(path), path, 4, 1, "unknown key 'extenson'", "did you mean 'extension'?")
    # a multi-line string's lines are neither keys nor tables: the keys after it are in tasks.t,
    # and the template's error is on its line
    path.write_text(path.read_text().replace("extenson", "extension").replace('pids = "pids"', 'pids = "pdis"'))
    assert_at(refusal(path), path, 15, 8, "task 't': pids 'pdis' is not a declared repository")
    path.write_text(path.read_text().replace('"pdis"', '"pids"').replace("{{ job }}", "{{ job }"))
    assert_at(refusal(path), path, 9, 1, "the template does not compile")


def test_json_errors_have_their_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.json",
        """
        {
          "repositories": {
            "done": {"kind": "InProcessMetadataRepository",}
          }
        }
        """,
    )
    assert_at(refusal(path), path, 3, 52, "invalid JSON")
    path = write(
        tmp_path,
        "q.json",
        """
        {
          "repositories": {
            "done": {"kind": "InProcessMetadataRepository"},
            "books": {"kind": "FileRepository", "basedir": ["books"]}
          }
        }
        """,
    )
    assert_at(refusal(path), path, 4, 52, "repositories.books.basedir: ['books'] is not of type 'string'")
    path = write(
        tmp_path,
        "r.json",
        """
        {
          "repositories": {
            "done": {"kind": "InProcessMetadataRepository"},
            "done": {"kind": "InProcessBlobRepository"}
          }
        }
        """,
    )
    assert_at(refusal(path), path, 4, 5, "'done' is given twice in this mapping (first on line 3)")


# ---- includes and quotas -------------------------------------------------------------------------


def test_a_missing_included_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        include:
          - repositories.yaml
          - tasks.yaml
        """,
    )
    write(tmp_path, "repositories.yaml", "repositories: {done: {kind: InProcessMetadataRepository}}\n")
    assert_at(refusal(path), path, 3, 5, "included file 'tasks.yaml' does not exist")


def test_an_include_cycle(tmp_path: Path) -> None:
    top = write(tmp_path, "top.yaml", "include: [a.yaml]\n")
    write(tmp_path, "a.yaml", "include: [sub/b.yaml]\n")
    b = write(tmp_path, "sub/b.yaml", "repositories: {}\ninclude: [../a.yaml]\n")
    assert_at(refusal(top), b, 2, 11, "include cycle: a.yaml -> sub/b.yaml -> a.yaml")


def test_a_file_included_twice(tmp_path: Path) -> None:
    top = write(tmp_path, "top.yaml", "include: [a.yaml, b.yaml]\n")
    write(tmp_path, "a.yaml", "include: [common.yaml]\n")
    b = write(tmp_path, "b.yaml", "repositories: {}\ninclude:\n  - ./common.yaml\n")
    write(tmp_path, "common.yaml", "repositories: {done: {kind: InProcessMetadataRepository}}\n")
    assert_at(refusal(top), b, 3, 5, "common.yaml is included twice")


def test_a_bad_quota_quantity(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        quotas:
          cpus:
            cpu: 2
            mem: 4 GB
        """,
    )
    assert_at(refusal(path), path, 4, 10, "quota 'cpus': mem: invalid quantity '4 GB'")
    path = write(
        tmp_path,
        "q.yaml",
        """
        resources:
          procs: {kind: local-processes, app: decl}
        quotas:
          cpus: {cpu: 1, mem: 1Gi}
        repositories:
          pids: {kind: InProcessMetadataRepository}
        tasks:
          t:
            kind: process
            manager: procs
            resource_manager: cpus
            job_resources: {cpu: 1x}
            pids: pids
            template: "echo {{ job }}"
        """,
    )
    assert_at(refusal(path), path, 12, 26, "task 't': job_resources.cpu: invalid quantity '1x'")


def test_a_retry_naming_no_exception(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        repositories:
          done: {kind: InProcessMetadataRepository}
        tasks:
          t:
            kind: in-process
            func: decl_bodies:report
            done: done
            retry:
              on: [ValueError, ValueEror]
        """,
    )
    assert_at(refusal(path), path, 10, 24, "retry.on: 'ValueEror' is neither a builtin exception")
    path.write_text(path.read_text().replace("ValueEror", "decl_bodies:report"))
    assert_at(refusal(path), path, 10, 24, "retry.on: 'decl_bodies:report' is not an exception class")


# ---- the command line ------------------------------------------------------------------------------


async def test_the_command_line_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        repositories:
          left: {kind: InProcessMetadataRepository}
          right: {kind: InProcessMetadataRepository}
          done-1: {kind: InProcessMetadataRepository}
        tasks:
          one:
            kind: in-process
            func: decl_bodies:negate
            done: done-1
            links:
              source: {repo: right, kind: input}
              negated: {repo: left, kind: output}
          two:
            kind: in-process
            func: decl_bodies:negate
            done: done-1
            plug: one
            links:
              negated: {repo: right, kind: output}
        """,
    )
    bad = write(tmp_path, "q.toml", '[repositories.done]\nkind = "InProcessMetadataRepository"\nsize = 3\n')
    cycle, unknown = await asyncio.gather(
        asyncio.to_thread(cli, "-f", str(path), "check"), asyncio.to_thread(cli, "-f", str(bad), "status")
    )
    assert (cycle.returncode, cycle.stdout) == (1, "")
    assert cycle.stderr == (
        f"error: {path}:7:3: the tasks form a cycle: one -> two -> one "
        "(through plug, or an output another task takes as input)\n"
    )
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == (
        f"error: {bad}:3:1: repositories.done: unknown key 'size' (the keys here are: data, kind)\n"
    )


# ---- nothing is created before the whole file validates --------------------------------------------


async def test_nothing_is_created_when_the_last_task_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        resources:
          procs: {kind: local-processes, app: decl, local_path: work/processes}
        repositories:
          numbers: {kind: YamlMetadataFileRepository, filename: work/numbers}
          doubled: {kind: FileRepository, basedir: work/doubled}
          done: {kind: YamlMetadataFileRepository, filename: work/done}
          other-done: {kind: YamlMetadataFileRepository, filename: work/other-done}
          negated: {kind: InProcessMetadataRepository}
        tasks:
          double:
            kind: in-process
            func: decl_bodies:negate
            done: done
            links:
              source: {repo: numbers, kind: input}
              negated: {repo: doubled, kind: output}
          last:
            kind: in-process
            func: decl_bodies:negate
            done: other-done
            retry: {attempts: 0}
            links:
              source: {repo: doubled, kind: input}
              negated: {repo: negated, kind: output}
        """,
    )
    with pytest.raises(pdtnb.DeclarationError, match=r"p\.yaml:22:23: tasks\.last\.retry\.attempts"):
        pdtnb.load(path)
    with pytest.raises(pdtnb.DeclarationError):
        pdtnb.check(path)
    result = await asyncio.to_thread(cli, "-f", str(path), "run")
    assert result.returncode == 1 and "tasks.last.retry.attempts: 0 is less than the minimum of 1" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["p.yaml"]
    assert not work.exists()

    # what only the built pipeline shows (the body's parameters against the task's links) is
    # found by load and by the command line's check, before anything is opened
    path.write_text(
        path.read_text()
        .replace("retry: {attempts: 0}", "retry: {attempts: 1}")
        .replace("negated: {repo: negated", "negate: {repo: negated")
    )
    pdtnb.check(path)
    with pytest.raises(pdtnb.DeclarationError) as info:
        pdtnb.load(path)
    assert_at(
        info.value,
        path,
        20,
        11,
        "task 'last': its function takes parameter 'negated' but the task has no "
        "link of that name (links: done, negate, source)",
    )
    assert command_main(str(path), ["check"]) == 1
    assert capsys.readouterr().err == f"error: {info.value}\n"
    assert not work.exists()

    # made right: check and load create nothing; opening the pipeline does
    path.write_text(path.read_text().replace("negate: {repo: negated", "negated: {repo: negated"))
    pdtnb.check(path)
    pipeline = pdtnb.load(path)
    assert not work.exists()
    async with pipeline:
        assert (work / "doubled").is_dir()


def test_a_task_that_could_never_start(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        """
        import_paths: ["@FILES@"]
        repositories:
          done: {kind: InProcessMetadataRepository}
          out: {kind: InProcessMetadataRepository}
        tasks:
          orphan:
            kind: in-process
            func: decl_bodies:low
            done: done
            links:
              low_in: {repo: out, kind: output}
        """,
    )
    pdtnb.check(path)
    with pytest.raises(pdtnb.DeclarationError) as info:
        pdtnb.load(path)
    assert_at(info.value, path, 6, 3, "task 'orphan' has no input")
