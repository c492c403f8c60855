"""Task links: dispositions, plug, the link-set properties and the default ready repository."""

from __future__ import annotations

import pytest

import pdtnb


class BareTask(pdtnb.Task):
    """A task that launches nothing; enough to test links and readiness."""

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)
        self.launched: list[str] = []

    async def update(self) -> bool:
        return False

    async def launch(self, job: str) -> None:
        self.launched.append(job)


def repo(*jobs: str) -> pdtnb.InProcessMetadataRepository:
    return pdtnb.InProcessMetadataRepository({j: j for j in jobs})


DISPOSITIONS = (
    "is_input",
    "is_output",
    "is_status",
    "inhibits_start",
    "required_for_start",
    "inhibits_output",
    "required_for_output",
)


def flags(link: pdtnb.Link) -> dict[str, bool]:
    return {d: getattr(link, d) for d in DISPOSITIONS}


def test_link_defaults_required_for_start_to_is_input():
    t = BareTask("t")
    t.link("a", repo(), is_input=True)
    t.link("b", repo())
    assert t.links["a"].required_for_start is True
    assert t.links["a"].required_for_output is False
    assert t.links["b"].required_for_start is False


def test_link_defaults_required_for_output_to_is_output():
    t = BareTask("t")
    t.link("out", repo(), is_output=True)
    assert t.links["out"].required_for_output is True
    assert t.links["out"].required_for_start is False


def test_link_explicit_values_override_defaults():
    t = BareTask("t")
    t.link("a", repo(), is_input=True, required_for_start=False)
    t.link("b", repo(), is_output=True, required_for_output=False)
    t.link("c", repo(), required_for_start=True, required_for_output=True)
    assert t.links["a"].required_for_start is False
    assert t.links["b"].required_for_output is False
    assert t.links["c"].required_for_start is True
    assert t.links["c"].required_for_output is True


def test_link_keeps_repository_and_all_dispositions():
    t = BareTask("t")
    r = repo()
    t.link("s", r, is_status=True, inhibits_start=True, inhibits_output=True)
    link = t.links["s"]
    assert link.repo is r
    assert flags(link) == {
        "is_input": False,
        "is_output": False,
        "is_status": True,
        "inhibits_start": True,
        "required_for_start": False,
        "inhibits_output": True,
        "required_for_output": False,
    }


def test_link_set_properties_map_names_to_repositories():
    t = BareTask("t")
    r_in, r_out, r_status, r_block, r_gate, r_inh_out = (repo() for _ in range(6))
    t.link("in", r_in, is_input=True)
    t.link("out", r_out, is_output=True)
    t.link("st", r_status, is_status=True, inhibits_output=True)
    t.link("block", r_block, inhibits_start=True)
    t.link("gate", r_gate, required_for_start=True)
    t.link("inh", r_inh_out, inhibits_output=True)

    assert t.input == {"in": r_in}
    assert t.output == {"out": r_out}
    assert t.status == {"st": r_status}
    assert t.inhibits_start == {"block": r_block}
    assert t.required_for_start == {"in": r_in, "gate": r_gate}
    assert t.inhibits_output == {"st": r_status, "inh": r_inh_out}
    assert t.required_for_output == {"out": r_out}
    # identity, not equality: the properties hand out the linked repositories themselves
    assert t.input["in"] is r_in


def test_link_rejects_non_repository():
    t = BareTask("t")
    with pytest.raises(TypeError, match="link 'x'"):
        t.link("x", {"not": "a repo"})  # type: ignore[arg-type]


async def test_ready_is_and_of_required_minus_or_of_inhibits():
    t = BareTask("t")
    t.link("a", repo("j1", "j2", "j3", "j4", "j5"), is_input=True)
    t.link("b", repo("j2", "j3", "j4", "j5", "j6"), required_for_start=True)
    t.link("no1", repo("j3"), inhibits_start=True)
    t.link("no2", repo("j5", "j9"), inhibits_start=True)
    # links that neither gate nor inhibit must not change readiness
    t.link("other", repo("j7"), is_output=True)
    assert set(await t.ready.job_ids()) == {"j2", "j4"}
    assert await t.ready.contains("j2")
    assert not await t.ready.contains("j1")  # not in b
    assert not await t.ready.contains("j3")  # inhibited
    assert not await t.ready.contains("j9")  # only in an inhibitor
    assert sorted([j async for j in t.ready]) == ["j2", "j4"]


async def test_ready_follows_repository_changes():
    inp = repo("j1")
    done = repo()
    t = BareTask("t")
    t.link("inp", inp, is_input=True)
    t.link("done", done, is_status=True, inhibits_start=True)
    assert set(await t.ready.job_ids()) == {"j1"}
    await done.dump("j1", {"result": "success"})
    await inp.dump("j2", "x")
    assert set(await t.ready.job_ids()) == {"j2"}


async def test_ready_override_replaces_links():
    override = repo("z1")
    t = BareTask("t", ready=override)
    t.link("inp", repo("j1"), is_input=True)
    assert t.ready is override
    assert set(await t.ready.job_ids()) == {"z1"}


async def test_disabled_task_gathers_no_ready_jobs():
    enabled = BareTask("on")
    enabled.link("inp", repo("j1", "j2"), is_input=True)
    disabled = BareTask("off", disabled=True)
    disabled.link("inp", repo("j1", "j2"), is_input=True)
    pipeline = pdtnb.Pipeline([enabled, disabled], pdtnb.Session())
    async with pipeline:
        assert await pipeline.gather_ready_jobs(enabled) == {"j1", "j2"}
        assert await pipeline.gather_ready_jobs(disabled) == set()
        await pipeline.update()
        status = await pdtnb.pipeline_status(pipeline)
    assert sorted(enabled.launched) == ["j1", "j2"]
    assert disabled.launched == []
    assert status.task("off").ready == 0
    assert status.task("off").disabled is True


async def test_disabled_attribute_set_after_construction_is_honoured():
    done = pdtnb.InProcessMetadataRepository()
    calls = []

    @pdtnb.InProcessSyncTask("t", done)
    async def t(job):
        calls.append(job)

    t.link("inp", repo("j1"), is_input=True)
    t.disabled = True
    pipeline = pdtnb.Pipeline([t], pdtnb.Session())
    async with pipeline:
        assert await pipeline.update() is False
        await pipeline.run(timeout=2)
    assert calls == []
    assert done.data == {}


# ---- plug ----------------------------------------------------------------------------------


def producer() -> tuple[BareTask, dict[str, pdtnb.Repository]]:
    up = BareTask("up")
    repos = {
        "inp": repo(),
        "out1": repo(),
        "out2": repo(),
        "done": repo(),
        "live": repo(),
        "scratch": repo(),
    }
    up.link("inp", repos["inp"], is_input=True)
    up.link("out1", repos["out1"], is_output=True)
    up.link("out2", repos["out2"], is_output=True, required_for_output=False)
    up.link("done", repos["done"], is_status=True, inhibits_start=True, required_for_output=True)
    up.link("live", repos["live"], is_status=True, inhibits_start=True, inhibits_output=True)
    up.link("scratch", repos["scratch"])  # no disposition at all: never plugged
    return up, repos


def test_plug_meta_true_transfers_dispositions():
    up, repos = producer()
    down = BareTask("down")
    down.plug(up)

    assert set(down.links) == {"out1", "out2", "up_done", "up_live"}
    # output links become inputs under their own names
    assert down.links["out1"].repo is repos["out1"]
    expected = {**dict.fromkeys(DISPOSITIONS, False), "is_input": True, "required_for_start": True}
    assert flags(down.links["out1"]) == expected
    # an output that is not required_for_output still becomes an input, and an input link
    # defaults to required_for_start, as Task.link documents
    assert down.links["out2"].repo is repos["out2"]
    assert down.links["out2"].is_input is True
    assert down.links["out2"].required_for_start is True
    # required_for_output -> required_for_start, named OUTPUTTASK_LINK, not an input
    assert down.links["up_done"].repo is repos["done"]
    assert flags(down.links["up_done"]) == {**dict.fromkeys(DISPOSITIONS, False), "required_for_start": True}
    # inhibits_output -> inhibits_start
    assert down.links["up_live"].repo is repos["live"]
    assert flags(down.links["up_live"]) == {**dict.fromkeys(DISPOSITIONS, False), "inhibits_start": True}


def test_plug_meta_false_links_outputs_only():
    up, repos = producer()
    down = BareTask("down")
    down.plug(up, meta=False)
    assert set(down.links) == {"out1", "out2"}
    for name in ("out1", "out2"):
        assert down.links[name].repo is repos[name]
        assert down.links[name].is_input is True
        # with meta=False the input still defaults required_for_start to is_input
        assert down.links[name].required_for_start is True
        assert down.links[name].inhibits_start is False


def test_plug_output_links_allowlist():
    up, repos = producer()
    down = BareTask("down")
    down.plug(up, output_links=["out2"])
    assert down.input == {"out2": repos["out2"]}
    assert "out1" not in down.input
    # meta dispositions are still transferred regardless of the allowlist
    assert down.required_for_start["up_done"] is repos["done"]
    assert down.inhibits_start["up_live"] is repos["live"]


async def test_plugged_task_waits_for_upstream_completion():
    """With meta, a job written to the output but not yet done upstream is not ready downstream."""
    up, repos = producer()
    down = BareTask("down")
    down.plug(up)
    for j in ("j1", "j2", "j3"):
        await repos["out1"].dump(j, 1)
        await repos["out2"].dump(j, 2)
    await repos["done"].dump("j2", {"result": "success"})
    await repos["done"].dump("j3", {"result": "success"})
    await repos["live"].dump("j3", "running again")
    assert set(await down.ready.job_ids()) == {"j2"}


async def test_plug_translator_gives_related_item_repository():
    up, repos = producer()
    await repos["out1"].dump("src1", {"v": 1})
    await repos["out1"].dump("src2", {"v": 2})
    await repos["out2"].dump("src1", 1)
    await repos["out2"].dump("src2", 2)
    await repos["done"].dump("src1", {"result": "success"})
    translator = pdtnb.InProcessMetadataRepository({"a1": "src1", "a2": "src2", "a3": "missing"})
    down = BareTask("down")
    down.plug(up, translator=translator)

    linked = down.links["out1"].repo
    assert isinstance(linked, pdtnb.RelatedItemRepository)
    assert isinstance(down.links["up_done"].repo, pdtnb.RelatedItemRepository)
    assert set(await linked.job_ids()) == {"a1", "a2"}
    assert await linked.contains("a1")
    assert not await linked.contains("a3")
    assert await linked.info("a2") == {"v": 2}
    # readiness goes through the translation too: only src1 is done upstream
    assert set(await down.ready.job_ids()) == {"a1"}


async def test_plug_translator_deletes_only_when_allowed():
    up, repos = producer()
    await repos["out1"].dump("src1", 1)
    translator = pdtnb.InProcessMetadataRepository({"a1": "src1"})

    keep = BareTask("keep")
    keep.plug(up, translator=translator)
    await keep.links["out1"].repo.delete("a1")
    assert await repos["out1"].contains("src1")

    drop = BareTask("drop")
    drop.plug(up, translator=translator, translate_allow_deletes=True)
    await drop.links["out1"].repo.delete("a1")
    assert not await repos["out1"].contains("src1")


def test_relinking_a_name_to_another_repository_warns(caplog):
    import logging

    from pdtnb import InProcessMetadataRepository, InProcessSyncTask

    first, second = InProcessMetadataRepository(), InProcessMetadataRepository()
    task = InProcessSyncTask("t", InProcessMetadataRepository())
    caplog.set_level(logging.WARNING, logger="pdtnb")
    task.link("out", first, is_output=True)
    task.link("out", first, is_output=True)  # the same repository again: nothing to say
    assert not [r for r in caplog.records if "linked again" in r.getMessage()]
    task.link("out", second, is_input=True)
    messages = [r.getMessage() for r in caplog.records if "linked again" in r.getMessage()]
    assert len(messages) == 1 and "'t'" in messages[0] and "'out'" in messages[0]
    assert task.links["out"].repo is second
