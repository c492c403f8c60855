"""What a controller that died mid-way leaves behind is cleaned by the next one: a process job's
directory that no pids entry refers to (the controller was killed between recording the job's
outcome and removing its directory) is removed when the task first updates, while the directory
of a job still running is kept."""

from __future__ import annotations

import pdtnb


async def test_orphaned_job_directories_are_swept_and_live_ones_kept(tmp_path):
    session = pdtnb.Session()

    @session.resource
    async def procman():
        yield pdtnb.LocalLinuxManager("sweep", tmp_path / "procs")

    raw = pdtnb.InProcessMetadataRepository({"live": 1, "new": 2})
    done = pdtnb.YamlMetadataFileRepository(tmp_path / "done")
    pids = pdtnb.YamlMetadataFileRepository(tmp_path / "pids")
    quota = pdtnb.ResourceManager(pdtnb.Resources.parse(cpu=4, mem="1Gi"))
    task = pdtnb.ProcessTask(
        "p",
        procman,
        quota,
        pdtnb.Resources.parse(cpu=1, mem="1Mi"),
        pids,
        'if [ "{{ job }}" = live ]; then sleep 1; fi\n',
        done=done,
    )
    task.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task], session, [quota]) as pipeline:
        await pipeline.update()  # both jobs start; "live" runs for a second
        await done.dump("orphan", {"result": "success"})  # reaped before the crash...
        orphan = task.basedir / "orphan"  # ...whose directory the crash left
        (orphan / "cwd").mkdir(parents=True)
        (orphan / "stdout").write_text("left over\n")
        basedir = task.basedir
    assert (basedir / "live").is_dir()

    task2 = pdtnb.ProcessTask(
        "p",
        procman,
        quota,
        pdtnb.Resources.parse(cpu=1, mem="1Mi"),
        pids,
        "true\n",
        done=done,
    )
    task2.link("raw", raw, is_input=True)
    async with pdtnb.Pipeline([task2], session, [quota]) as pipeline:
        await pipeline.update_only_update()
        assert not orphan.exists(), "the orphaned directory was swept"
        assert (basedir / "live").is_dir() or await done.contains("live"), "a live job's directory is kept"
        await pipeline.run(timeout=20)
    assert read_all(done) == {"live", "new", "orphan"}
    assert (await done.info("live"))["result"] == "success"
    assert sorted(p.name for p in basedir.iterdir()) == []


def read_all(repo: pdtnb.YamlMetadataFileRepository) -> set[str]:
    return {p.stem for p in repo.basedir.glob("*.yaml")}
