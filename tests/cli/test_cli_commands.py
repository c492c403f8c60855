"""The administration command line, through real subprocesses of a pipeline script."""

from __future__ import annotations

import json
import re

import pytest
import yaml

SUBCOMMANDS = [
    "update",
    "run",
    "status",
    "trace",
    "failed",
    "show",
    "why",
    "retry",
    "kill",
    "rm",
    "ls",
    "cat",
    "inject",
    "launch",
    "shell",
    "fuse",
]


def parse_blocks(stdout: str, value: str = r"\d+") -> list[tuple[str, list[tuple[str, str]]]]:
    """Parse pydatatask's status/trace shape strictly: per task a name line, ``TASK.LINK VALUE``
    lines, then one empty line. Returns [(task, [(link, value), ...]), ...]."""
    assert stdout.endswith("\n"), repr(stdout)
    lines = stdout.split("\n")[:-1]
    blocks: list[tuple[str, list[tuple[str, str]]]] = []
    i = 0
    while i < len(lines):
        task = lines[i]
        assert re.fullmatch(r"[A-Za-z0-9_-]+", task), f"expected a task name line, got {task!r}"
        i += 1
        rows = []
        pattern = re.compile(rf"{re.escape(task)}\.([A-Za-z0-9_]+) ({value})")
        while i < len(lines) and lines[i] != "":
            m = pattern.fullmatch(lines[i])
            assert m, f"bad line {lines[i]!r} in the block of {task}"
            rows.append((m.group(1), m.group(2)))
            i += 1
        assert i < len(lines), f"block of {task} is not ended by an empty line"
        i += 1  # the empty line
        blocks.append((task, rows))
    return blocks


def assert_one_line_error(result, *needles: str) -> str:
    assert result.returncode != 0
    err = result.stderr.strip()
    assert "Traceback" not in result.stderr, result.stderr
    assert err, "no error message on stderr"
    assert len(err.splitlines()) == 1, f"expected one line, got:\n{result.stderr}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


# ---- help --------------------------------------------------------------------------------------


def test_help_lists_all_subcommands(cli):
    result = cli("--help")
    assert result.returncode == 0
    usage = result.stdout
    assert "{" + ",".join(SUBCOMMANDS) + "}" in usage
    for cmd in SUBCOMMANDS:
        assert re.search(rf"^\s+{cmd}\s+\S", usage, re.M), f"{cmd} has no help line"


def test_no_subcommand_is_a_usage_error(cli):
    result = cli()
    assert result.returncode == 2
    assert "usage:" in result.stderr


# ---- inject ------------------------------------------------------------------------------------


def test_inject_blob_from_stdin_stops_at_end_of_input(cli, data_dir):
    payload = "line one\nline two\n" * 1000
    result = cli("inject", "stage1.inp", "j1", input=payload)
    assert result.returncode == 0, result.stderr
    assert (data_dir / "inp" / "j1").read_text() == payload
    ls = cli("ls", "stage1.inp")
    assert ls.stdout == "j1\n"


def test_inject_empty_input_stores_empty_blob(cli, data_dir):
    result = cli("inject", "stage1.inp", "e1", input="")
    assert result.returncode == 0, result.stderr
    assert (data_dir / "inp" / "e1").read_bytes() == b""


def test_inject_metadata_parses_yaml(cli, data_dir):
    result = cli("inject", "stage1.opts", "j1", input="suffix: '!'\nlevels: [1, 2]\n")
    assert result.returncode == 0, result.stderr
    stored = yaml.safe_load((data_dir / "opts" / "j1.yaml").read_text())
    assert stored == {"suffix": "!", "levels": [1, 2]}
    # and the pipeline uses it
    cli("inject", "stage1.inp", "j1", input="hi")
    assert cli("run").returncode == 0
    assert (data_dir / "a" / "j1").read_text() == "HI!"


def test_inject_malformed_yaml_fails_with_one_line_error(cli, data_dir):
    result = cli("inject", "stage1.opts", "j1", input="key: [1, 2\nother: }\n")
    assert_one_line_error(result, "j1")
    assert not (data_dir / "opts" / "j1.yaml").exists()


@pytest.mark.parametrize("target", ["stage1.inp", "stage1.opts"])
def test_inject_invalid_job_id_fails_and_writes_nothing(cli, tmp_path, target):
    def files():
        return {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}

    before = files()
    result = cli("inject", target, "../x", input="payload: 1\n")
    assert_one_line_error(result, "../x")
    assert files() == before
    assert not (tmp_path / "data" / "x").exists()
    assert not (tmp_path / "data" / "x.yaml").exists()


# ---- run, status, trace (read-only, on the shared pipeline) -------------------------------------


def test_run_then_status_prints_pydatatask_shape(shared):
    result = shared.cli("status")
    assert result.returncode == 0, result.stderr
    blocks = parse_blocks(result.stdout)
    assert blocks == [
        ("stage1", [("inp", "3"), ("opts", "0"), ("done", "2"), ("a", "2")]),
        ("stage2", [("a", "2"), ("done", "2"), ("b", "2")]),
    ]
    assert result.stdout == (
        "stage1\nstage1.inp 3\nstage1.opts 0\nstage1.done 2\nstage1.a 2\n\n"
        "stage2\nstage2.a 2\nstage2.done 2\nstage2.b 2\n\n"
    )
    assert (shared.data_dir / "a" / "j1").read_text() == "HELLO"


def test_status_all_shows_hidden_links(shared):
    blocks = dict(parse_blocks(shared.cli("status", "--all").stdout))
    # the gate on stage1's done records is neither input, output nor status: shown only with --all
    assert blocks["stage2"] == [("a", "2"), ("done", "2"), ("stage1_done", "2"), ("b", "2")]
    assert blocks["stage1"] == [("inp", "3"), ("opts", "0"), ("done", "2"), ("a", "2")]


def test_status_json(shared):
    result = shared.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    tasks = {t["name"]: t for t in data["tasks"]}
    assert set(tasks) == {"stage1", "stage2"}
    assert {k: tasks["stage1"][k] for k in ("ready", "live", "done", "failed")} == {
        "ready": 1,
        "live": 0,
        "done": 2,
        "failed": 0,
    }
    assert {k: tasks["stage2"][k] for k in ("ready", "live", "done", "failed")} == {
        "ready": 0,
        "live": 0,
        "done": 2,
        "failed": 0,
    }
    counts = {link["name"]: link["count"] for link in tasks["stage1"]["links"]}
    assert counts == {"inp": 3, "opts": 0, "done": 2, "a": 2}


def test_trace_prints_job_ids_in_status_shape(shared):
    result = shared.cli("trace", "j1", "j3", "j9")
    assert result.returncode == 0, result.stderr
    blocks = parse_blocks(result.stdout, value=r"[A-Za-z0-9 ]*")
    assert [task for task, _ in blocks] == ["stage1", "stage2"]
    assert [link for link, _ in blocks[0][1]] == ["inp", "opts", "done", "a"]
    assert [link for link, _ in blocks[1][1]] == ["a", "done", "b"]
    rows = {(task, link): value.split() for task, links in blocks for link, value in links}
    assert rows == {
        ("stage1", "inp"): ["j1", "j3"],
        ("stage1", "opts"): [],
        ("stage1", "done"): ["j1"],
        ("stage1", "a"): ["j1"],
        ("stage2", "a"): ["j1"],
        ("stage2", "done"): ["j1"],
        ("stage2", "b"): ["j1"],
    }


def test_trace_json_has_job_states(shared):
    data = json.loads(shared.cli("trace", "--json", "j1", "j3").stdout)
    states = {t["name"]: t["job_states"] for t in data["tasks"]}
    assert states == {"stage1": {"j1": "done", "j3": "ready"}, "stage2": {"j1": "done", "j3": "waiting"}}


def test_ls_repository_and_set_expressions(shared):
    assert shared.cli("ls", "stage1.inp").stdout.split() == ["j1", "j2", "j3"]
    result = shared.cli("ls", "stage1.inp - stage2.done")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "j3\n"
    assert shared.cli("ls", "(stage1.inp & stage1.done) | stage1.opts").stdout.split() == ["j1", "j2"]


def test_ls_refuses_code(shared):
    result = shared.cli("ls", "__import__('os').system('touch pwned')")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert not (shared.data_dir.parent / "pwned").exists()


def test_cat_blob_and_metadata(shared):
    blob = shared.cli("cat", "stage1.a", "j2")
    assert blob.returncode == 0, blob.stderr
    assert blob.stdout == "WORLD"
    meta = shared.cli("cat", "stage2.b", "j1")
    assert meta.returncode == 0, meta.stderr
    assert yaml.safe_load(meta.stdout) == {"text": "HELLO", "length": 5}


def test_cat_missing_job_is_an_error(shared):
    assert_one_line_error(shared.cli("cat", "stage1.a", "j3"), "j3")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("ls", "nosuch.inp"), ("nosuch", "stage1", "stage2")),
        (("cat", "stage1.nolink", "j1"), ("nolink", "inp", "opts", "done", "a")),
        (("launch", "nosuch", "j1"), ("nosuch", "stage1", "stage2")),
        (("inject", "stage2.nolink", "j1"), ("nolink", "stage2")),
    ],
)
def test_unknown_names_give_one_line_error(shared, args, needles):
    result = shared.cli(*args, input="x")
    assert result.returncode == 1
    assert_one_line_error(result, *needles)


# ---- commands that change data (each on its own pipeline) --------------------------------------


def test_status_counts_follow_the_data(cli, seed):
    seed(j1="x", j2="y", j3="z")
    assert cli("update").returncode == 0  # one round: stage1 only
    blocks = dict(parse_blocks(cli("status").stdout))
    assert dict(blocks["stage1"]) == {"inp": "3", "opts": "0", "done": "3", "a": "3"}
    assert dict(blocks["stage2"]) == {"a": "3", "done": "0", "b": "0"}


def test_status_json_counts_failures(cli, seed, data_dir):
    seed(j1="ok", j2="bad")
    assert cli("inject", "stage1.opts", "j2", input="fail: true\n").returncode == 0
    assert cli("run", "--timeout", "10").returncode == 1, "a job failed during the run"
    tasks = {t["name"]: t for t in json.loads(cli("status", "--json").stdout)["tasks"]}
    assert tasks["stage1"]["failed"] == 1
    assert tasks["stage2"]["blocked"] == 1
    assert tasks["stage1"]["done"] == 1
    record = yaml.safe_load((data_dir / "done1" / "j2.yaml").read_text())
    assert record["result"] == "failure"
    assert "asked to fail on j2" in record["message"]
    assert "Traceback" in record["traceback"]


def test_run_processes_everything_and_is_idempotent(cli, seed, calls, data_dir):
    seed(j1="hello", j2="world")
    result = cli("run", "--timeout", "10")
    assert result.returncode == 0, result.stderr
    assert sorted(calls()) == ["stage1 j1", "stage1 j2", "stage2 j1", "stage2 j2"]
    assert yaml.safe_load((data_dir / "b" / "j2.yaml").read_text()) == {"text": "WORLD", "length": 5}
    assert cli("run").returncode == 0
    assert len(calls()) == 4


def test_run_launch_once(cli, seed, data_dir):
    seed(j1="a")
    assert cli("run", "--launch-once").returncode == 0
    assert (data_dir / "a" / "j1").exists()
    assert not (data_dir / "b" / "j1.yaml").exists()


# ---- rm ----------------------------------------------------------------------------------------


def test_rm_deletes_from_one_repository(cli, ran, data_dir):
    result = cli("rm", "stage1.a", "j1")
    assert result.returncode == 0, result.stderr
    assert not (data_dir / "a" / "j1").exists()
    assert (data_dir / "a" / "j2").exists()
    assert (data_dir / "inp" / "j1").exists()
    assert (data_dir / "b" / "j1.yaml").exists()
    assert (data_dir / "done1" / "j1.yaml").exists()


def test_rm_recursive_deletes_downstream(cli, ran, data_dir):
    result = cli("rm", "-r", "stage1.a", "j1")
    assert result.returncode == 0, result.stderr
    for gone in ("a/j1", "b/j1.yaml", "done2/j1.yaml"):
        assert not (data_dir / gone).exists(), gone
    # upstream data and other jobs are kept
    for kept in ("inp/j1", "done1/j1.yaml", "a/j2", "b/j2.yaml", "done2/j2.yaml"):
        assert (data_dir / kept).exists(), kept
    ls = cli("ls", "stage2.b")
    assert ls.stdout.split() == ["j2"]


def test_rm_recursive_from_input_lets_the_job_rerun(cli, ran, data_dir, seed, calls):
    assert cli("rm", "-r", "stage1.inp", "j1").returncode == 0
    for gone in ("inp/j1", "a/j1", "b/j1.yaml", "done1/j1.yaml", "done2/j1.yaml"):
        assert not (data_dir / gone).exists(), gone
    assert (data_dir / "b" / "j2.yaml").exists()
    seed(j1="again")
    assert cli("run").returncode == 0
    assert (data_dir / "a" / "j1").read_text() == "AGAIN"
    assert calls().count("stage1 j1") == 2
    assert calls().count("stage1 j2") == 1


def test_rm_invalid_job_id(cli, ran, data_dir):
    assert_one_line_error(cli("rm", "stage1.a", "../inp/j1"), "../inp/j1")
    assert (data_dir / "inp" / "j1").exists()


# ---- launch ------------------------------------------------------------------------------------


def test_launch_ready_job(cli, seed, data_dir, calls):
    seed(j1="abc")
    result = cli("launch", "stage1", "j1")
    assert result.returncode == 0, result.stderr
    assert (data_dir / "a" / "j1").read_text() == "ABC"
    assert calls() == ["stage1 j1"]
    assert yaml.safe_load((data_dir / "done1" / "j1.yaml").read_text())["result"] == "success"


def test_launch_non_ready_job_needs_force(cli, ran, data_dir, calls):
    (data_dir / "a" / "j1").unlink()
    result = cli("launch", "stage1", "j1")
    assert result.returncode != 0
    assert "j1" in result.stderr and "ready" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (data_dir / "a" / "j1").exists()
    assert calls().count("stage1 j1") == 1

    forced = cli("launch", "--force", "stage1", "j1")
    assert forced.returncode == 0, forced.stderr
    assert (data_dir / "a" / "j1").read_text() == "HELLO"
    assert calls().count("stage1 j1") == 2


def test_launch_no_meta_writes_no_done_entry(cli, seed, data_dir):
    seed(j1="abc")
    result = cli("launch", "--no-meta", "stage1", "j1")
    assert result.returncode == 0, result.stderr
    assert (data_dir / "a" / "j1").read_text() == "ABC"
    assert not (data_dir / "done1" / "j1.yaml").exists()


def test_launch_failing_job_reports_failure(cli, seed, data_dir):
    seed(j1="abc")
    assert cli("inject", "stage1.opts", "j1", input="fail: yes\n").returncode == 0
    result = cli("launch", "stage1", "j1")
    assert result.returncode != 0
    assert "asked to fail on j1" in result.stderr
    assert yaml.safe_load((data_dir / "done1" / "j1.yaml").read_text())["result"] == "failure"


@pytest.mark.parametrize("job", ["../x", ".."])
def test_launch_invalid_job_id(cli, seed, job, calls, data_dir):
    seed(j1="x")
    assert_one_line_error(cli("launch", "--force", "stage1", job), job)
    assert calls() == []  # nothing ran
    assert sorted(p.name for p in (data_dir / "done1").iterdir()) == []
