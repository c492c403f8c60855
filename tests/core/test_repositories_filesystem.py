"""FileRepository, DirectoryRepository and YamlMetadataFileRepository on real temporary directories."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import string
import sys
from pathlib import Path

import pytest
import yaml

from pdtnb import (
    DirectoryRepository,
    FileRepository,
    InvalidJobIdError,
    MetadataParseError,
    YamlMetadataFileRepository,
)
from pdtnb.errors import short_job_id

INVALID_IDS = ["../etc", "a/b", "", "a.b", "x" * 300, "a b", "..", ".", "/etc/passwd", "a\x00b"]
TMP_PREFIX = ".pdtnb-tmp-"


class DashFileRepository(FileRepository):
    CHARSET = string.ascii_letters + string.digits + "-"


class PermissiveFileRepository(FileRepository):
    """A subclass whose charset lets path-like characters through the id check itself."""

    CHARSET = string.ascii_letters + string.digits + "./\\-_ "
    CHARSET_START_END = CHARSET


def tree(root: Path) -> set[str]:
    """Every path under ``root``, relative, to compare the filesystem before and after an operation."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


async def read_text(repo, job: str) -> str:
    async with await repo.open(job, "r") as fp:
        return await fp.read()


async def write_text(repo, job: str, text: str) -> None:
    async with await repo.open(job, "w") as fp:
        await fp.write(text)


# ---- FileRepository ------------------------------------------------------------------------------


async def test_file_repository_round_trip(tmp_path, listed):
    repo = FileRepository(tmp_path / "files")
    await write_text(repo, "one", "héllo €\n")
    async with await repo.open("two", "wb") as fp:
        await fp.write(b"\x00\xff")
    assert (tmp_path / "files" / "one").read_bytes() == "héllo €\n".encode()
    assert await read_text(repo, "one") == "héllo €\n"
    async with await repo.open("two", "rb") as fp:
        assert await fp.read() == b"\x00\xff"
    assert await listed(repo) == {"one", "two"}
    assert await repo.contains("one")
    assert not await repo.contains("three")


async def test_file_repository_missing_basedir_lists_nothing_and_write_creates_it(tmp_path, listed):
    repo = FileRepository(tmp_path / "not" / "yet")
    assert await listed(repo) == set()
    assert not await repo.contains("a")
    await write_text(repo, "a", "x")
    assert await listed(repo) == {"a"}


async def test_file_repository_validate_creates_basedir(tmp_path):
    repo = FileRepository(tmp_path / "made")
    await repo.validate()
    assert (tmp_path / "made").is_dir()


async def test_file_repository_info_is_the_full_path(tmp_path):
    repo = FileRepository(tmp_path, ".txt")
    await write_text(repo, "job", "content")
    info = await repo.info("job")
    assert isinstance(info, str)
    assert Path(info) == tmp_path / "job.txt"
    assert (tmp_path / "job.txt").read_text() == "content"
    # meaningful for an absent job too
    assert Path(await repo.info("absent")) == tmp_path / "absent.txt"
    assert await repo.info_all() == {"job": str(tmp_path / "job.txt")}


async def test_file_repository_extension(tmp_path, listed):
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "b.dat").write_text("B")
    (tmp_path / ".txt").write_text("no job name")
    (tmp_path / "sub.txt").mkdir()  # a directory is not a file job
    repo = FileRepository(tmp_path, ".txt")
    assert await listed(repo) == {"a"}
    assert await repo.contains("a")
    assert not await repo.contains("b")
    assert not await repo.contains("sub")
    assert await read_text(repo, "a") == "A"
    await write_text(repo, "c", "C")
    assert (tmp_path / "c.txt").read_text() == "C"


async def test_file_repository_case_insensitive_extension_listing(tmp_path, listed):
    (tmp_path / "A1.TXT").write_text("upper")
    (tmp_path / "b2.txt").write_text("lower")
    (tmp_path / "c3.Txt").write_text("mixed")
    (tmp_path / "d4.dat").write_text("other")
    assert await listed(FileRepository(tmp_path, ".txt")) == {"b2"}
    assert await listed(FileRepository(tmp_path, ".txt", case_insensitive=True)) == {"A1", "b2", "c3"}


async def test_file_repository_case_insensitive_job_is_usable(tmp_path):
    """A job listed through a case-insensitive extension must also be found by contains() and open()."""
    (tmp_path / "A1.TXT").write_text("upper")
    repo = FileRepository(tmp_path, ".txt", case_insensitive=True)
    assert "A1" in await repo.job_ids()
    assert await repo.contains("A1")
    assert await read_text(repo, "A1") == "upper"


async def test_file_repository_case_insensitive_write_and_delete_reach_the_existing_file(tmp_path, listed):
    (tmp_path / "A1.TXT").write_text("upper")
    repo = FileRepository(tmp_path, ".txt", case_insensitive=True)
    assert Path(await repo.info("A1")) == tmp_path / "A1.TXT"
    await write_text(repo, "A1", "replaced")
    assert await listed(repo) == {"A1"}
    assert await read_text(repo, "A1") == "replaced"
    await repo.delete("A1")
    assert await listed(repo) == set()
    assert not await repo.contains("A1")
    assert list(tmp_path.iterdir()) == []


async def test_file_repository_open_absent_job_names_it(tmp_path):
    repo = FileRepository(tmp_path)
    with pytest.raises(FileNotFoundError, match="ghost"):
        await repo.open("ghost", "r")


async def test_file_repository_rejects_unknown_mode(tmp_path):
    repo = FileRepository(tmp_path)
    with pytest.raises(ValueError):
        await repo.open("a", "a")
    assert tree(tmp_path) == set()


async def test_file_repository_delete_and_delete_absent(tmp_path, listed):
    repo = FileRepository(tmp_path, ".txt")
    await write_text(repo, "a", "1")
    await write_text(repo, "b", "2")
    await repo.delete("a")
    assert await listed(repo) == {"b"}
    assert not (tmp_path / "a.txt").exists()
    await repo.delete("a")
    await repo.delete("never")
    await FileRepository(tmp_path / "nodir").delete("x")
    assert await listed(repo) == {"b"}


async def test_file_repository_skips_invalid_names_with_one_warning(tmp_path, listed, repo_warnings):
    (tmp_path / "good").write_text("g")
    (tmp_path / "bad.name").write_text("b")
    (tmp_path / "with space").write_text("b")
    repo = FileRepository(tmp_path)
    assert await listed(repo) == {"good"}
    warnings = repo_warnings()
    assert len(warnings) == 1, warnings
    assert "'bad.name'" in warnings[0] and "'with space'" in warnings[0]
    assert await listed(repo) == {"good"}
    assert repo_warnings() == warnings


async def test_file_repository_custom_charset(tmp_path, listed):
    repo = DashFileRepository(tmp_path)
    await write_text(repo, "a-b", "dash")
    assert await listed(repo) == {"a-b"}
    assert await repo.contains("a-b")
    assert await read_text(repo, "a-b") == "dash"
    with pytest.raises(InvalidJobIdError):
        await repo.open("a_b", "w")


@pytest.mark.parametrize("mode", ["w", "wb"])
@pytest.mark.parametrize("bad", INVALID_IDS)
async def test_file_repository_write_refuses_invalid_id(tmp_path, bad, mode):
    base = tmp_path / "deep" / "base"
    base.mkdir(parents=True)
    repo = FileRepository(base)
    before = tree(tmp_path)
    with pytest.raises(InvalidJobIdError) as info:
        await repo.open(bad, mode)
    assert short_job_id(bad) in str(info.value)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("bad", INVALID_IDS)
def test_fullpath_refuses_invalid_ids(tmp_path, bad):
    with pytest.raises(InvalidJobIdError):
        FileRepository(tmp_path).fullpath(bad)


@pytest.mark.parametrize("extension", ["", ".txt"])
@pytest.mark.parametrize(
    "job",
    ["..", ".", "../x", "a/../../x", "/etc/passwd", "x/..", "./x", "..\\x", "...", " ", "a/b", "-", "_"],
)
def test_fullpath_never_escapes_basedir_even_with_a_permissive_charset(tmp_path, job, extension):
    base = tmp_path / "base"
    base.mkdir()
    repo = PermissiveFileRepository(base, extension)
    try:
        path = repo.fullpath(job)
    except InvalidJobIdError as e:
        assert short_job_id(job) in str(e)
        return
    assert path.parent.resolve() == base.resolve(), path
    assert path.resolve().parent == base.resolve(), path
    assert path.name not in ("", ".", "..")


async def test_reading_paths_cannot_escape_either(tmp_path):
    (tmp_path / "secret").write_text("do not read")
    repo = FileRepository(tmp_path / "base")
    assert not await repo.contains("../secret")
    with pytest.raises(InvalidJobIdError):
        await repo.open("../secret", "r")
    await repo.delete("../secret")
    assert (tmp_path / "secret").read_text() == "do not read"


async def test_files_written_respect_the_umask(tmp_path):
    """Atomic writes must not leave the 0600 mode of a private temporary file on the final file."""
    old = os.umask(0o022)
    try:
        files = FileRepository(tmp_path / "f")
        await write_text(files, "j", "x")
        meta = YamlMetadataFileRepository(tmp_path / "m")
        await meta.dump("j", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f" / "j").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "m" / "j.yaml").stat().st_mode) == 0o644


# ---- atomic writes ---------------------------------------------------------------------------------


def _repo(kind: str, base: Path):
    return FileRepository(base) if kind == "file" else YamlMetadataFileRepository(base)


async def _current_value(kind: str, repo, job: str):
    return await read_text(repo, job) if kind == "file" else await repo.info(job)


OLD_TEXT = "old: value\n"
OLD_VALUE = {"old": "value"}


@pytest.mark.parametrize("kind", ["file", "yaml"])
async def test_exception_inside_write_block_leaves_no_value(tmp_path, kind, listed, repo_warnings):
    repo = _repo(kind, tmp_path)
    await write_text(repo, "old", OLD_TEXT)
    for job in ("old", "fresh"):
        with pytest.raises(RuntimeError, match="boom"):
            async with await repo.open(job, "w") as fp:
                await fp.write("partial: " + "x" * 100_000)
                raise RuntimeError("boom")
    assert await listed(repo) == {"old"}
    assert not await repo.contains("fresh")
    assert await _current_value(kind, repo, "old") == (OLD_TEXT if kind == "file" else OLD_VALUE)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(TMP_PREFIX)], os.listdir(tmp_path)
    assert repo_warnings() == []


@pytest.mark.parametrize("kind", ["file", "yaml"])
async def test_value_is_visible_only_after_close(tmp_path, kind, listed):
    repo = _repo(kind, tmp_path)
    await write_text(repo, "old", OLD_TEXT)
    new_fp = await repo.open("new", "w")
    old_fp = await repo.open("old", "w")
    await new_fp.write("new: ")
    await old_fp.write("old: repl")
    assert await listed(repo) == {"old"}
    assert not await repo.contains("new")
    assert await _current_value(kind, repo, "old") == (OLD_TEXT if kind == "file" else OLD_VALUE)
    await new_fp.write("done\n")
    await old_fp.write("aced\n")
    await new_fp.close()
    await old_fp.close()
    assert await listed(repo) == {"old", "new"}
    if kind == "file":
        assert await read_text(repo, "new") == "new: done\n"
        assert await read_text(repo, "old") == "old: replaced\n"
    else:
        assert await repo.info("new") == {"new": "done"}
        assert await repo.info("old") == {"old": "replaced"}


CRASH_SCRIPT = r"""
import asyncio, os, signal, sys
import pdtnb

async def main():
    kind, basedir, job = sys.argv[1:4]
    if kind == "file":
        repo = pdtnb.FileRepository(basedir)
    else:
        repo = pdtnb.YamlMetadataFileRepository(basedir)
    fp = await repo.open(job, "w")
    for _ in range(20):
        await fp.write("partial: " + "x" * 10000 + "\n")
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["file", "yaml"])
async def test_process_killed_mid_write_leaves_no_partial_value(tmp_path, kind, listed, repo_warnings):
    base = tmp_path / "repo"
    repo = _repo(kind, base)
    await write_text(repo, "old", OLD_TEXT)

    async def crash(job: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CRASH_SCRIPT,
            kind,
            str(base),
            job,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == -signal.SIGKILL, err.decode()
        assert out.decode().strip() == "written", err.decode()

    await asyncio.gather(crash("old"), crash("fresh"))

    assert await listed(repo) == {"old"}
    assert not await repo.contains("fresh")
    assert await _current_value(kind, repo, "old") == (OLD_TEXT if kind == "file" else OLD_VALUE)
    if kind == "yaml":
        assert await repo.info("fresh") is None
        assert await repo.info_all() == {"old": OLD_VALUE}
    # whatever temporary files the crash left behind are neither jobs nor cause for warnings
    leftovers = [p for p in os.listdir(base) if p not in ("old", "old.yaml")]
    for name in leftovers:
        assert name.removesuffix(".yaml") not in await repo.job_ids()
    assert repo_warnings() == []
    # and the repository keeps working
    await write_text(repo, "fresh", "fresh: 1\n")
    assert await listed(repo) == {"old", "fresh"}


# ---- DirectoryRepository ------------------------------------------------------------------------


async def test_directory_repository_mkdir_listing_info(tmp_path, listed):
    repo = DirectoryRepository(tmp_path / "dirs")
    assert await listed(repo) == set()
    await repo.mkdir("one")
    await repo.mkdir("two")
    (tmp_path / "dirs" / "afile").write_text("a file is not a job here")
    assert (tmp_path / "dirs" / "one").is_dir()
    assert await listed(repo) == {"one", "two"}
    assert await repo.contains("one")
    assert not await repo.contains("afile")
    assert not await repo.contains("three")
    assert Path(await repo.info("one")) == tmp_path / "dirs" / "one"
    assert await repo.info_all() == {"one": str(tmp_path / "dirs" / "one"), "two": str(tmp_path / "dirs" / "two")}


async def test_directory_repository_mkdir_is_idempotent(tmp_path):
    repo = DirectoryRepository(tmp_path)
    await repo.mkdir("j")
    (tmp_path / "j" / "inner.txt").write_text("keep me")
    await repo.mkdir("j")
    assert (tmp_path / "j" / "inner.txt").read_text() == "keep me"


async def test_directory_repository_with_extension(tmp_path, listed):
    repo = DirectoryRepository(tmp_path, ".out")
    await repo.mkdir("j")
    (tmp_path / "k").mkdir()
    assert (tmp_path / "j.out").is_dir()
    assert await listed(repo) == {"j"}


@pytest.mark.parametrize("discard_empty", [False, True])
async def test_directory_repository_discard_empty(tmp_path, listed, discard_empty):
    repo = DirectoryRepository(tmp_path, discard_empty=discard_empty)
    await repo.mkdir("empty")
    await repo.mkdir("full")
    (tmp_path / "full" / "f").write_text("x")
    expected = {"full"} if discard_empty else {"empty", "full"}
    assert await listed(repo) == expected
    assert await repo.contains("empty") is not discard_empty
    assert await repo.contains("full")
    (tmp_path / "empty" / "now").write_text("x")
    assert await listed(repo) == {"empty", "full"}
    assert await repo.contains("empty")


async def test_directory_repository_delete_and_delete_absent(tmp_path, listed):
    repo = DirectoryRepository(tmp_path)
    await repo.mkdir("j")
    (tmp_path / "j" / "sub").mkdir()
    (tmp_path / "j" / "sub" / "f").write_text("x")
    await repo.mkdir("k")
    await repo.delete("j")
    assert not (tmp_path / "j").exists()
    assert await listed(repo) == {"k"}
    await repo.delete("j")
    await repo.delete("never")
    await DirectoryRepository(tmp_path / "nodir").delete("x")
    assert await listed(repo) == {"k"}


@pytest.mark.parametrize("bad", INVALID_IDS)
async def test_directory_repository_mkdir_refuses_invalid_id(tmp_path, bad):
    base = tmp_path / "deep" / "base"
    base.mkdir(parents=True)
    repo = DirectoryRepository(base)
    before = tree(tmp_path)
    with pytest.raises(InvalidJobIdError) as info:
        await repo.mkdir(bad)
    assert short_job_id(bad) in str(info.value)
    assert tree(tmp_path) == before


async def test_directory_repository_skips_invalid_names_with_one_warning(tmp_path, listed, repo_warnings):
    (tmp_path / "ok").mkdir()
    (tmp_path / "not.ok").mkdir()
    repo = DirectoryRepository(tmp_path)
    assert await listed(repo) == {"ok"}
    assert await listed(repo) == {"ok"}
    warnings = repo_warnings()
    assert len(warnings) == 1 and "'not.ok'" in warnings[0], warnings


# ---- YamlMetadataFileRepository ------------------------------------------------------------------


async def test_yaml_round_trip(tmp_path, listed):
    repo = YamlMetadataFileRepository(tmp_path / "meta")
    value = {"name": "ünïcode €", "items": [1, 2.5, None, True], "nested": {"k": "v"}}
    await repo.dump("a", value)
    await repo.dump("b", [1, 2])
    await repo.dump("b", [3])  # replaces
    assert (tmp_path / "meta" / "a.yaml").is_file()
    assert await repo.info("a") == value
    assert await repo.info("b") == [3]
    assert await listed(repo) == {"a", "b"}
    assert await repo.contains("a")
    assert not await repo.contains("c")
    assert await repo.info_all() == {"a": value, "b": [3]}


async def test_yaml_dump_of_a_python_object_is_refused_and_keeps_the_old_value(tmp_path, listed):
    class Custom:
        pass

    repo = YamlMetadataFileRepository(tmp_path)
    await repo.dump("a", {"v": 1})
    with pytest.raises((ValueError, yaml.YAMLError)):
        await repo.dump("a", {"v": Custom()})
    with pytest.raises((ValueError, yaml.YAMLError)):
        await repo.dump("b", Custom())
    assert await repo.info("a") == {"v": 1}
    assert await listed(repo) == {"a"}
    assert sorted(os.listdir(tmp_path)) == ["a.yaml"]


async def test_yaml_info_of_absent_job_is_none(tmp_path):
    repo = YamlMetadataFileRepository(tmp_path)
    assert await repo.info("absent") is None
    assert await YamlMetadataFileRepository(tmp_path / "nodir").info("absent") is None


async def test_yaml_reads_files_written_by_hand_and_ignores_other_extensions(tmp_path, listed):
    (tmp_path / "hand.yaml").write_text("a: 1\nb: [x, y]\n")
    (tmp_path / "other.yml").write_text("a: 2\n")
    (tmp_path / "noext").write_text("a: 3\n")
    repo = YamlMetadataFileRepository(tmp_path)
    assert await listed(repo) == {"hand"}
    assert await repo.info("hand") == {"a": 1, "b": ["x", "y"]}
    assert await listed(YamlMetadataFileRepository(tmp_path, ".yml")) == {"other"}


async def test_yaml_delete_and_delete_absent(tmp_path, listed):
    repo = YamlMetadataFileRepository(tmp_path)
    await repo.dump("a", 1)
    await repo.dump("b", 2)
    await repo.delete("a")
    assert await listed(repo) == {"b"}
    assert await repo.info("a") is None
    await repo.delete("a")
    await repo.delete("never")
    assert await listed(repo) == {"b"}


async def test_yaml_malformed_file_raises_metadata_parse_error_naming_the_file(tmp_path):
    repo = YamlMetadataFileRepository(tmp_path)
    await repo.dump("good", {"a": 1})
    (tmp_path / "bad.yaml").write_text("a: [1, 2\nb: {\n")
    with pytest.raises(MetadataParseError) as info:
        await repo.info("bad")
    assert str(tmp_path / "bad.yaml") in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(MetadataParseError) as info:
        await repo.info_all()
    assert str(tmp_path / "bad.yaml") in str(info.value)
    assert await repo.info("good") == {"a": 1}


async def test_yaml_is_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.yaml").write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    (tmp_path / "evil2.yaml").write_text(f'x: !!python/object/apply:os.system ["touch {marker}"]\n')
    repo = YamlMetadataFileRepository(tmp_path)
    for job in ("evil", "evil2"):
        with pytest.raises(MetadataParseError) as info:
            await repo.info(job)
        assert str(tmp_path / f"{job}.yaml") in str(info.value)
    with pytest.raises(MetadataParseError):
        await repo.info_all()
    assert not marker.exists()


@pytest.mark.parametrize("bad", INVALID_IDS)
async def test_yaml_dump_and_open_refuse_invalid_id(tmp_path, bad):
    base = tmp_path / "deep" / "base"
    base.mkdir(parents=True)
    repo = YamlMetadataFileRepository(base)
    before = tree(tmp_path)
    with pytest.raises(InvalidJobIdError) as info:
        await repo.dump(bad, {"a": 1})
    assert short_job_id(bad) in str(info.value)
    for mode in ("w", "wb"):
        with pytest.raises(InvalidJobIdError):
            await repo.open(bad, mode)
    assert tree(tmp_path) == before


async def test_yaml_skips_invalid_names_with_one_warning(tmp_path, listed, repo_warnings):
    (tmp_path / "ok.yaml").write_text("1\n")
    (tmp_path / "not.ok.yaml").write_text("2\n")
    repo = YamlMetadataFileRepository(tmp_path)
    assert await listed(repo) == {"ok"}
    assert await repo.info_all() == {"ok": 1}
    warnings = repo_warnings()
    assert len(warnings) == 1 and "'not.ok'" in warnings[0], warnings
