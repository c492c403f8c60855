"""AggregateOr/And, Blocking, RelatedItem and Map repositories, over in-memory and filesystem children."""

from __future__ import annotations

import string

import pytest

from pdtnb import (
    AggregateAndRepository,
    AggregateOrRepository,
    BlobRepository,
    BlockingRepository,
    DirectoryRepository,
    FileRepository,
    InProcessBlobRepository,
    InProcessMetadataRepository,
    MapRepository,
    MetadataRepository,
    RelatedItemRepository,
    YamlMetadataFileRepository,
)
from pdtnb.repository import listing_snapshot


def meta(*jobs: str, **values) -> InProcessMetadataRepository:
    data = {job: f"v-{job}" for job in jobs}
    data.update(values)
    return InProcessMetadataRepository(data)


class CountingMetadataRepository(InProcessMetadataRepository):
    """A translator that counts how it is read (the combinator under test is not touched)."""

    def __init__(self, data):
        super().__init__(data)
        self.info_calls = 0
        self.info_all_calls = 0

    async def info(self, job):
        self.info_calls += 1
        return await super().info(job)

    async def info_all(self):
        self.info_all_calls += 1
        return await super().info_all()


class DashMetadataRepository(InProcessMetadataRepository):
    CHARSET = string.ascii_letters + string.digits + "-"


# ---- AggregateOrRepository -------------------------------------------------------------------------


async def test_or_lists_union_and_contains(listed):
    a, b = meta("j1", "j2"), meta("j2", "j3")
    repo = AggregateOrRepository(a=a, b=b)
    assert await listed(repo) == {"j1", "j2", "j3"}
    for job in ("j1", "j2", "j3"):
        assert await repo.contains(job)
    assert not await repo.contains("j4")
    # listings follow the children
    await b.dump("j9", 1)
    assert await listed(repo) == {"j1", "j2", "j3", "j9"}


async def test_or_info_maps_child_names_to_child_info(tmp_path):
    a = meta("j1")
    files = FileRepository(tmp_path, ".txt")
    repo = AggregateOrRepository(meta=a, files=files)
    assert await repo.info("j1") == {"meta": "v-j1", "files": str(tmp_path / "j1.txt")}
    assert await repo.info_all() == {"j1": {"meta": "v-j1", "files": str(tmp_path / "j1.txt")}}


async def test_or_delete_deletes_from_every_child_and_absent_is_fine(listed):
    a, b = meta("j1", "j2"), meta("j1", "j3")
    repo = AggregateOrRepository(a=a, b=b)
    await repo.delete("j1")
    assert a.data == {"j2": "v-j2"} and b.data == {"j3": "v-j3"}
    assert await listed(repo) == {"j2", "j3"}
    await repo.delete("j1")
    await repo.delete("never")
    assert await listed(repo) == {"j2", "j3"}


async def test_or_of_nothing_is_empty(listed):
    repo = AggregateOrRepository()
    assert await listed(repo) == set()
    assert not await repo.contains("x")


# ---- AggregateAndRepository ------------------------------------------------------------------------


async def test_and_lists_intersection_and_contains(listed):
    a, b, c = meta("j1", "j2", "j3"), meta("j2", "j3"), meta("j3", "j2", "j4")
    repo = AggregateAndRepository(a=a, b=b, c=c)
    assert await listed(repo) == {"j2", "j3"}
    assert await repo.contains("j2")
    assert not await repo.contains("j1")
    assert not await repo.contains("j4")
    await b.delete("j2")
    assert await listed(repo) == {"j3"}
    assert not await repo.contains("j2")


async def test_and_of_nothing_is_empty(listed):
    repo = AggregateAndRepository()
    assert await listed(repo) == set()
    assert not await repo.contains("x")


async def test_and_info_info_all_delete(listed):
    a, b = meta("j1", "j2"), meta("j2")
    repo = AggregateAndRepository(first=a, second=b)
    assert await repo.info("j2") == {"first": "v-j2", "second": "v-j2"}
    assert await repo.info_all() == {"j2": {"first": "v-j2", "second": "v-j2"}}
    await repo.delete("j2")
    assert "j2" not in a.data and "j2" not in b.data
    assert a.data == {"j1": "v-j1"}
    await repo.delete("j2")
    await repo.delete("never")
    assert await listed(repo) == set()


async def test_and_over_filesystem_children(tmp_path, listed):
    files = FileRepository(tmp_path / "f")
    dirs = DirectoryRepository(tmp_path / "d")
    yml = YamlMetadataFileRepository(tmp_path / "y")
    for job in ("a", "b", "c"):
        async with await files.open(job, "w") as fp:
            await fp.write(job)
    await dirs.mkdir("b")
    await dirs.mkdir("c")
    await yml.dump("c", 1)
    await yml.dump("b", 2)
    await yml.dump("z", 3)
    assert await listed(AggregateAndRepository(f=files, d=dirs, y=yml)) == {"b", "c"}
    assert await listed(AggregateOrRepository(f=files, d=dirs, y=yml)) == {"a", "b", "c", "z"}


# ---- BlockingRepository ------------------------------------------------------------------------------


@pytest.mark.parametrize("enumerate_unless", [True, False])
async def test_blocking_lists_source_minus_unless(listed, enumerate_unless):
    source, unless = meta("j1", "j2", "j3"), meta("j2", "x9")
    repo = BlockingRepository(source, unless, enumerate_unless=enumerate_unless)
    assert await listed(repo) == {"j1", "j3"}
    assert await repo.contains("j1")
    assert not await repo.contains("j2")
    assert not await repo.contains("x9")
    await unless.dump("j1", 1)
    await unless.delete("j2")
    assert await listed(repo) == {"j2", "j3"}


@pytest.mark.parametrize("enumerate_unless", [True, False])
async def test_blocking_info_and_delete_go_to_source(listed, enumerate_unless):
    source, unless = meta("j1", "j2"), meta("j2")
    repo = BlockingRepository(source, unless, enumerate_unless=enumerate_unless)
    assert await repo.info("j1") == "v-j1"
    assert await repo.info_all() == {"j1": "v-j1"}
    await repo.delete("j1")
    assert "j1" not in source.data
    assert unless.data == {"j2": "v-j2"}
    await repo.delete("j1")
    await repo.delete("never")
    assert await listed(repo) == set()


async def test_blocking_with_unless_on_disk(tmp_path, listed):
    inputs = meta("a", "b", "c")
    done = YamlMetadataFileRepository(tmp_path)
    await done.dump("b", {"ok": True})
    for enumerate_unless in (True, False):
        ready = BlockingRepository(inputs, done, enumerate_unless=enumerate_unless)
        assert await listed(ready) == {"a", "c"}


async def test_ready_style_composition(listed):
    """The default ready repository of a task: AND(required) unless OR(inhibiting)."""
    inp1, inp2 = meta("a", "b", "c", "d"), meta("a", "b", "c")
    done, live = meta("a"), meta("b")
    ready = BlockingRepository(AggregateAndRepository(i1=inp1, i2=inp2), AggregateOrRepository(done=done, live=live))
    assert await listed(ready) == {"c"}
    assert await ready.contains("c")
    assert not await ready.contains("a")
    assert not await ready.contains("d")


# ---- RelatedItemRepository ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefetch", [True, False])
async def test_related_item_listing_contains_info(listed, prefetch):
    base = meta(t1="base-1", t2="base-2", t3="base-3")
    translator = meta(a="t1", b="t2", c="missing-in-base", d=5)
    repo = RelatedItemRepository(base, translator, prefetch_lookup=prefetch)
    assert await listed(repo) == {"a", "b"}
    assert await repo.contains("a")
    assert not await repo.contains("c")  # translation points nowhere
    assert not await repo.contains("d")  # translation is not a job id
    assert not await repo.contains("zz")  # no translation at all
    assert await repo.info("a") == "base-1"
    assert await repo.info("b") == "base-2"
    assert await repo.info_all() == {"a": "base-1", "b": "base-2"}


@pytest.mark.parametrize("prefetch", [True, False])
async def test_related_item_sees_translator_changes_on_next_listing(listed, prefetch):
    base = meta("t1", "t2")
    translator = meta(a="t1")
    repo = RelatedItemRepository(base, translator, prefetch_lookup=prefetch)
    assert await listed(repo) == {"a"}
    await translator.dump("b", "t2")
    await translator.dump("a", "nothing")
    assert await listed(repo) == {"b"}
    assert await repo.info("b") == "v-t2"


@pytest.mark.parametrize("prefetch", [True, False])
@pytest.mark.parametrize("allow_deletes", [True, False])
async def test_related_item_delete(listed, prefetch, allow_deletes):
    base = meta("t1", "t2")
    translator = meta(a="t1", b="t2")
    repo = RelatedItemRepository(base, translator, allow_deletes=allow_deletes, prefetch_lookup=prefetch)
    await listed(repo)
    await repo.delete("a")
    if allow_deletes:
        assert set(base.data) == {"t2"}
        assert await listed(repo) == {"b"}
    else:
        assert set(base.data) == {"t1", "t2"}
        assert await listed(repo) == {"a", "b"}
    # the translator is never deleted from
    assert translator.data == {"a": "t1", "b": "t2"}
    await repo.delete("a")
    await repo.delete("never")
    assert translator.data == {"a": "t1", "b": "t2"}


async def test_related_item_prefetch_reads_translator_in_one_go():
    base = meta("t1", "t2", "t3")
    jobs = {f"j{i}": f"t{i % 3 + 1}" for i in range(10)}
    fetched = CountingMetadataRepository(dict(jobs))
    RelatedItem = RelatedItemRepository
    ids = await RelatedItem(base, fetched, prefetch_lookup=True).job_ids()
    assert ids == set(jobs)
    assert fetched.info_all_calls == 1 and fetched.info_calls == 0

    looked_up = CountingMetadataRepository(dict(jobs))
    ids = await RelatedItem(base, looked_up, prefetch_lookup=False).job_ids()
    assert ids == set(jobs)
    assert looked_up.info_all_calls == 0 and looked_up.info_calls == len(jobs)


@pytest.mark.parametrize("prefetch", [True, False])
async def test_related_item_duck_types_a_blob_repository(tmp_path, listed, prefetch):
    base = FileRepository(tmp_path, ".txt")
    async with await base.open("target", "w") as fp:
        await fp.write("the target's content")
    translator = meta(a="target", b="other")
    repo = RelatedItemRepository(base, translator, prefetch_lookup=prefetch)
    assert isinstance(repo, BlobRepository)
    assert await listed(repo) == {"a"}
    async with await repo.open("a", "r") as fp:
        assert await fp.read() == "the target's content"
    async with await repo.open("a", "rb") as fp:
        assert await fp.read() == b"the target's content"
    assert await repo.info("a") == str(tmp_path / "target.txt")
    # writing through the translation lands on the translated id
    async with await repo.open("b", "w") as fp:
        await fp.write("written via b")
    assert (tmp_path / "other.txt").read_text() == "written via b"
    assert not (tmp_path / "b.txt").exists()
    assert await listed(repo) == {"a", "b"}
    # a back end's own attributes are reachable
    assert repo.basedir == base.basedir


async def test_related_item_duck_types_an_in_process_blob_repository(listed):
    base = InProcessBlobRepository({"t1": b"bytes"})
    repo = RelatedItemRepository(base, meta(a="t1"))
    assert isinstance(repo, BlobRepository)
    async with await repo.open("a", "rb") as fp:
        assert await fp.read() == b"bytes"


@pytest.mark.parametrize("prefetch", [True, False])
async def test_related_item_duck_types_a_metadata_repository(listed, prefetch):
    base = InProcessMetadataRepository({"t1": {"k": 1}})
    translator = meta(a="t1", b="t2")
    repo = RelatedItemRepository(base, translator, prefetch_lookup=prefetch)
    assert isinstance(repo, MetadataRepository)
    assert await repo.info("a") == {"k": 1}
    await repo.dump("b", {"k": 2})
    assert base.data == {"t1": {"k": 1}, "t2": {"k": 2}}
    assert await listed(repo) == {"a", "b"}
    assert await repo.info("b") == {"k": 2}


@pytest.mark.parametrize("prefetch", [True, False])
async def test_related_item_duck_types_a_yaml_metadata_file_repository(tmp_path, listed, prefetch):
    """A YAML file repository is both a blob and a metadata repository; dump() must be translated."""
    base = YamlMetadataFileRepository(tmp_path)
    await base.dump("t1", {"k": 1})
    translator = meta(a="t1", b="t2")
    repo = RelatedItemRepository(base, translator, prefetch_lookup=prefetch)
    assert await repo.info("a") == {"k": 1}
    await repo.dump("b", {"k": 2})
    assert not (tmp_path / "b.yaml").exists(), "dump() wrote under the untranslated id"
    assert (tmp_path / "t2.yaml").is_file()
    assert await base.info("t2") == {"k": 2}
    assert await listed(repo) == {"a", "b"}
    assert isinstance(repo, MetadataRepository)
    assert isinstance(repo, BlobRepository)


async def test_related_item_never_reaches_the_base_with_an_untranslated_id(tmp_path):
    """A base method offered by the related repository must translate the id (or not be offered)."""
    base = FileRepository(tmp_path, ".txt")
    repo = RelatedItemRepository(base, meta(a="target"))
    assert repo.basedir == base.basedir  # plain attributes of the back end are available
    fullpath = getattr(repo, "fullpath", None)
    if fullpath is not None:
        assert fullpath("a") == tmp_path / "target.txt"
    assert await repo.info("a") == str(tmp_path / "target.txt")


# ---- MapRepository ------------------------------------------------------------------------------------


async def test_map_transforms_info(listed):
    base = InProcessMetadataRepository({"a": 1, "b": 2})
    repo = base.map(lambda v: v * 10)
    assert isinstance(repo, MapRepository)
    assert await listed(repo) == {"a", "b"}
    assert await repo.contains("a")
    assert not await repo.contains("c")
    assert await repo.info("b") == 20
    assert await repo.info_all() == {"a": 10, "b": 20}


async def test_map_accepts_an_async_function():
    async def describe(value):
        return {"value": value}

    repo = InProcessMetadataRepository({"a": 1}).map(describe)
    assert await repo.info("a") == {"value": 1}
    assert await repo.info_all() == {"a": {"value": 1}}


async def test_map_filter_applies_to_listing_contains_info_all(listed):
    base = InProcessMetadataRepository({"keep1": 1, "drop1": 2, "keep2": 3})

    async def only_keep(job: str) -> bool:
        return job.startswith("keep")

    repo = base.map(str, only_keep)
    assert await listed(repo) == {"keep1", "keep2"}
    assert await repo.contains("keep1")
    assert not await repo.contains("drop1")
    assert await repo.info_all() == {"keep1": "1", "keep2": "3"}


@pytest.mark.parametrize("allow_deletes", [True, False])
async def test_map_delete_reaches_base_only_when_allowed(listed, allow_deletes):
    base = InProcessMetadataRepository({"a": 1, "b": 2})
    repo = base.map(lambda v: v, allow_deletes=allow_deletes)
    await repo.delete("a")
    if allow_deletes:
        assert base.data == {"b": 2}
        assert await listed(repo) == {"b"}
    else:
        assert base.data == {"a": 1, "b": 2}
        assert await listed(repo) == {"a", "b"}
    await repo.delete("a")
    await repo.delete("never")


async def test_map_over_a_file_repository(tmp_path, listed):
    files = FileRepository(tmp_path, ".txt")
    async with await files.open("j", "w") as fp:
        await fp.write("x")
    repo = files.map(lambda path: path.upper())
    assert await listed(repo) == {"j"}
    assert await repo.info("j") == str(tmp_path / "j.txt").upper()


# ---- cross-cutting -------------------------------------------------------------------------------------


COMBINE_DASH_CHILD = {
    "or": lambda child: AggregateOrRepository(x=child),
    "and": lambda child: AggregateAndRepository(x=child),
    "blocking": lambda child: BlockingRepository(child, meta()),
    "map": lambda child: child.map(lambda v: v),
}


@pytest.mark.parametrize("kind", sorted(COMBINE_DASH_CHILD))
async def test_combinators_keep_ids_valid_in_their_children(listed, repo_warnings, kind):
    """Iteration and job_ids() of a combinator agree even when a child accepts extra characters."""
    child = DashMetadataRepository({"a-b": 1, "c": 2})
    assert await listed(child) == {"a-b", "c"}
    repo = COMBINE_DASH_CHILD[kind](child)
    assert await listed(repo) == {"a-b", "c"}
    assert await repo.contains("a-b")
    assert repo_warnings() == []


async def test_listing_snapshot_lists_each_repository_once_per_round():
    """Inside a snapshot every caller shares one listing per repository (the scheduler relies on
    it to read a repository shared by several tasks once per round); outside, listings are fresh,
    independent sets."""
    inputs = meta("a")
    calls = 0
    original = inputs._list_job_ids

    async def counting():
        nonlocal calls
        calls += 1
        return await original()

    inputs._list_job_ids = counting
    ready = BlockingRepository(inputs, meta())
    both = AggregateAndRepository(x=inputs, y=ready)
    with listing_snapshot():
        assert set(await ready.job_ids()) == {"a"}
        assert set(await both.job_ids()) == {"a"}
        assert set(await inputs.job_ids()) == {"a"}
    assert calls == 1
    await inputs.dump("b", 1)
    outside = await ready.job_ids()
    assert set(outside) == {"a", "b"}
    assert calls == 2
    copy = await inputs.job_ids()
    assert isinstance(copy, (set, frozenset))
    await inputs.dump("c", 1)
    assert set(copy) == {"a", "b"}, "a listing taken outside a snapshot must not change afterwards"
