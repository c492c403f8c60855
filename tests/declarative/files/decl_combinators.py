"""Bodies, a mapping function and a user repository class for combinators.yaml (named
``decl_combinators:NAME`` there)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pdtnb


def triple(value: Any) -> Any:
    """MapRepository's ``func``: the view's info is three times the base's."""
    return 3 * value


class TaggedRepository(pdtnb.YamlMetadataFileRepository):
    """A user's repository class, declared by import path: every value it stores is tagged."""

    def __init__(self, filename: str, tag: str):
        super().__init__(filename)
        self.tag = tag

    async def dump(self, job: str, data: Any) -> None:
        await super().dump(job, {"tag": self.tag, "value": data})


async def mark(job: str, gate: Any, out: Any) -> None:
    """Runs once per job its gate (an aggregate or blocking view) holds."""
    await out.dump(job, "ran")


async def read_view(job: str, view: Any, out: Any) -> None:
    """Copies what a computed view (map, related item) says of the job."""
    await out.dump(job, await view.info(job))


async def make_dir(job: str, nums: Any, dirs: Any) -> None:
    """Writes a directory per job (DirectoryRepository)."""
    await dirs.mkdir(job)
    value = str(await nums.info(job))
    await asyncio.to_thread(Path(dirs.fullpath(job), "value.txt").write_text, value)
