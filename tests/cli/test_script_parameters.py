"""pdtnb.script.Parameters: what an exported script does with --param and PDTNB_PARAM_*."""

from __future__ import annotations

import pytest

from pdtnb.script import Parameters


def test_param_options_before_the_subcommand_are_taken_off_argv() -> None:
    argv = ["pipeline.py", "--param", "n=3", "--param=flag=no", "-v", "launch", "t", "j", "--param", "x=1"]
    params = Parameters({"n": 1, "flag": True, "x": 0}, argv=argv, environ={})
    assert argv == ["pipeline.py", "-v", "launch", "t", "j", "--param", "x=1"]  # after the subcommand: untouched
    assert params("n", 1) == 3 and params("flag", True) is False and params("x", 0) == 0


def test_environment_overrides_default_and_option_overrides_environment() -> None:
    env = {"PDTNB_PARAM_DATA_DIR": "/env", "PDTNB_PARAM_ITEMS": "[1, 2]", "PDTNB_PARAM_RATE": "0.5"}
    params = Parameters(
        {"data_dir": "d", "items": (), "rate": 1.0}, argv=["s", "--param", "data_dir=/cli"], environ=env
    )
    assert params("data_dir", "d") == "/cli"
    assert params("items", ()) == (1, 2)
    assert params("rate", 1.0) == 0.5


def test_not_main_leaves_argv_alone() -> None:
    argv = ["pytest", "--param", "n=3"]
    params = Parameters({"n": 1}, main=False, argv=argv, environ={})
    assert argv == ["pytest", "--param", "n=3"] and params("n", 1) == 1


@pytest.mark.parametrize(
    "argv, environ, message",
    [
        (["s", "--param", "nope=1", "run"], {}, "--param nope: no such parameter; parameters: n"),
        (["s", "--param", "n"], {}, "write --param NAME=VALUE"),
        (["s", "--param"], {}, "--param needs NAME=VALUE"),
        (["s", "--param", "n=three"], {}, "--param n='three': parameter n takes an int value"),
        (["s"], {"PDTNB_PARAM_N": "3.5"}, "PDTNB_PARAM_N='3.5': parameter n takes an int value"),
    ],
)
def test_bad_parameters_exit_2_naming_the_option(argv, environ, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        Parameters({"n": 1}, argv=argv, environ=environ)("n", 1)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
