"""A notebook's controllers live as long as their pipelines: re-running a pipeline's cell many
times must not keep every earlier pipeline (and its in-memory data) alive, and the kernel's exit
must still find every pipeline the notebook opened."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pdtnb
from pdtnb.notebook import controller_for
from pdtnb.notebook.controller import all_controllers


def _pipeline(size: int = 1000) -> pdtnb.Pipeline:
    data = pdtnb.InProcessMetadataRepository({f"j{i}": "x" * 100 for i in range(size)})

    @pdtnb.InProcessSyncTask("t", pdtnb.InProcessMetadataRepository())
    async def t(job: str, data: object) -> None:
        pass

    t.link("data", data, is_input=True)
    return pdtnb.Pipeline([t], pdtnb.Session())


def test_a_redefined_pipeline_goes_with_its_controller() -> None:
    refs = []
    for _ in range(5):  # the cell `pipeline = ...` run five times, a view made each time
        pipeline = _pipeline()
        controller = controller_for(pipeline, "pipeline")
        assert controller_for(pipeline) is controller  # one controller per pipeline
        assert controller in all_controllers()
        refs.append((weakref.ref(pipeline), weakref.ref(controller)))
    del pipeline, controller
    gc.collect()
    assert [(p() is None, c() is None) for p, c in refs] == [(True, True)] * 5


def test_an_open_pipeline_stays_findable_until_it_is_closed() -> None:
    async def scenario() -> None:
        pipeline = _pipeline(3)
        controller = controller_for(pipeline, "opened")
        await controller.open()
        ref = weakref.ref(pipeline)
        del pipeline
        gc.collect()
        assert ref() is not None and controller in all_controllers()  # the exit must close it
        await controller.close()
        del controller
        gc.collect()
        assert ref() is None

    asyncio.run(scenario())
