"""The command-line coroutines and main(), called in this process."""

from __future__ import annotations

import io
import sys

import pytest
import yaml

import pdtnb


async def run_all(pipeline) -> None:
    await pipeline.run(timeout=5)


async def test_print_status_and_trace(load_pipeline, seed, capsys):
    seed(j1="hello", j2="world")
    pipeline = load_pipeline()
    async with pipeline:
        await run_all(pipeline)
        capsys.readouterr()
        await pdtnb.print_status(pipeline, False)
        out, err = capsys.readouterr()
        assert out == (
            "stage1\nstage1.inp 2\nstage1.opts 0\nstage1.done 2\nstage1.a 2\n\n"
            "stage2\nstage2.a 2\nstage2.done 2\nstage2.b 2\n\n"
        )
        # the extra summary goes to stderr, commented, so stdout keeps pydatatask's shape
        assert "# stage1: ready 0, live 0, done 2, failed 0, retrying 0, blocked 0, waiting 0" in err.splitlines()

        await pdtnb.print_trace(pipeline, False, ["j2", "j5"])
        out, _ = capsys.readouterr()
        lines = out.split("\n")
        assert lines[0] == "stage1"
        assert lines[1].split() == ["stage1.inp", "j2"]
        assert lines[2].split() == ["stage1.opts"]
        assert lines[5] == ""
        assert lines[6] == "stage2"
        assert [line.split()[0] for line in lines[7:10]] == ["stage2.a", "stage2.done", "stage2.b"]


async def test_list_and_delete_data(load_pipeline, seed, capsys, data_dir):
    seed(j1="hello", j2="world", j3="later")
    pipeline = load_pipeline()
    async with pipeline:
        await pipeline.update()  # stage1 for all three
        await pdtnb.delete_data(pipeline, "stage1.done", False, ["j3"])
        capsys.readouterr()
        await pdtnb.list_data(pipeline, ["stage1.inp - stage1.done"])
        assert capsys.readouterr().out == "j3\n"
        await pdtnb.list_data(pipeline, ["stage1.a", "stage1.done"])  # several names: their union
        assert capsys.readouterr().out.split() == ["j1", "j2", "j3"]

        await run_all(pipeline)
        capsys.readouterr()
        await pdtnb.delete_data(pipeline, "stage1.a", True, ["j1"])
        deleted = {tuple(line.split()) for line in capsys.readouterr().out.splitlines()}
        # stage1.a and everything downstream of it; stage1's own done record is upstream
        assert deleted == {("j1", "stage1.a"), ("j1", "stage2.done"), ("j1", "stage2.b")}
        assert not (data_dir / "b" / "j1.yaml").exists()
        assert (data_dir / "b" / "j2.yaml").exists()
        assert (data_dir / "inp" / "j1").exists()


async def test_delete_all_jobs(load_pipeline, seed, data_dir):
    seed(j1="a", j2="b")
    pipeline = load_pipeline()
    async with pipeline:
        await run_all(pipeline)
        await pdtnb.delete_data(pipeline, "stage2.b", False, ["__all__"])
    assert list((data_dir / "b").iterdir()) == []
    assert len(list((data_dir / "a").iterdir())) == 2


async def test_cat_data_writes_bytes(load_pipeline, seed, capsysbinary):
    seed(j1="hello")
    pipeline = load_pipeline()
    async with pipeline:
        await run_all(pipeline)
        capsysbinary.readouterr()
        await pdtnb.cat_data(pipeline, "stage1.a", "j1")
        assert capsysbinary.readouterr().out == b"HELLO"
        await pdtnb.cat_data(pipeline, "stage2.b", "j1")
        assert yaml.safe_load(capsysbinary.readouterr().out) == {"text": "HELLO", "length": 5}


async def test_launch_coroutine(load_pipeline, seed, capsys, data_dir):
    seed(j1="abc")
    pipeline = load_pipeline()
    async with pipeline:
        assert await pdtnb.launch(pipeline, "stage1", "j1", False, True, False) == 0
        assert (data_dir / "a" / "j1").read_text() == "ABC"
        (data_dir / "a" / "j1").unlink()
        capsys.readouterr()
        assert await pdtnb.launch(pipeline, "stage1", "j1", False, True, False) == 1
        assert "not ready" in capsys.readouterr().err
        assert not (data_dir / "a" / "j1").exists()
        assert await pdtnb.launch(pipeline, "stage1", "j1", False, True, True) == 0
        assert (data_dir / "a" / "j1").read_text() == "ABC"
        with pytest.raises(pdtnb.InvalidJobIdError, match=r"\.\./x"):
            await pdtnb.launch(pipeline, "stage1", "../x", False, True, True)
        with pytest.raises(pdtnb.UnknownNameError, match="stage1"):
            await pdtnb.launch(pipeline, "stage7", "j1", False, True, True)


async def test_inject_data_reads_stdin_to_the_end(load_pipeline, monkeypatch, data_dir):
    payload = b"x" * (3 << 20) + b"end"  # more than one read chunk
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
    pipeline = load_pipeline()
    async with pipeline:
        await pdtnb.inject_data(pipeline, "stage1.inp", "big")
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"suffix: '?'\n")))
        await pdtnb.inject_data(pipeline, "stage1.opts", "big")
        assert await pipeline.tasks["stage1"].links["opts"].repo.info("big") == {"suffix": "?"}
    assert (data_dir / "inp" / "big").read_bytes() == payload


async def test_inject_data_rejects_malformed_yaml(load_pipeline, monkeypatch, data_dir):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"suffix: [1, 2\n")))
    pipeline = load_pipeline()
    async with pipeline:
        with pytest.raises(pdtnb.MetadataParseError, match="j1"):
            await pdtnb.inject_data(pipeline, "stage1.opts", "j1")
    assert not (data_dir / "opts" / "j1.yaml").exists()


def test_main_in_process(load_pipeline, seed, capsys, data_dir):
    seed(j1="hi")
    assert pdtnb.main(load_pipeline(), argv=["run"]) == 0
    assert (data_dir / "a" / "j1").read_text() == "HI"
    capsys.readouterr()
    assert pdtnb.main(load_pipeline(), argv=["ls", "stage2.b"]) == 0
    assert capsys.readouterr().out == "j1\n"
    with pytest.raises(SystemExit) as info:
        pdtnb.main(load_pipeline(), argv=["ls", "stage9.b"])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "stage9" in err and "stage1" in err and "stage2" in err


def test_main_instrument_adds_a_command(load_pipeline, capsys):
    seen = []

    async def hello(pipeline, name):
        seen.append((pipeline.is_open, name))
        print(f"hello {name}")

    def instrument(sub):
        p = sub.add_parser("hello", help="Say hello")
        p.add_argument("name")
        p.set_defaults(func=hello)

    pipeline = load_pipeline()
    assert pdtnb.main(pipeline, instrument=instrument, argv=["hello", "world"]) == 0
    assert seen == [(True, "world")]
    assert capsys.readouterr().out == "hello world\n"
    assert not pipeline.is_open
