"""Metadata stored as YAML documents in a blob repository (files here; S3 in :mod:`pdtnb.repository.s3`).

YAML is always loaded with the safe loader: a metadata file can never construct Python objects.
A document that does not parse raises :class:`~pdtnb.errors.MetadataParseError` naming the file.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidJobIdError, MetadataParseError
from .base import BlobRepository, MetadataRepository
from .filesystem import FileRepository, atomic_write_bytes

__all__ = ["YamlMetadataRepository", "YamlMetadataFileRepository", "yaml_load", "yaml_dump"]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """The safe dumper, writing multi-line strings as block scalars (``|``), so that ``cat`` of a
    job record shows a traceback or an output tail as lines instead of one escaped string."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_str(data)


_Dumper.add_representer(str, _represent_str)


def yaml_load(text: bytes | str, where: str) -> Any:
    """Parse one YAML document safely; a syntax error names ``where``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MetadataParseError(f"malformed YAML in {where}{at}: {problem}") from None


def yaml_dump(data: Any) -> bytes:
    """Serialize ``data`` as safe YAML (plain data only: dicts, lists, strings, numbers, dates)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True).encode("utf-8")


class YamlMetadataRepository(BlobRepository, MetadataRepository):
    """Metadata kept as one YAML document per job in a blob repository.

    Subclass it together with a blob repository (as :class:`YamlMetadataFileRepository` does).
    ``info`` of an absent job is None.
    """

    async def info(self, job: str) -> Any:
        try:
            async with await self.open(job, "rb") as fp:
                text = await fp.read()
        except (FileNotFoundError, KeyError):
            return None
        return yaml_load(text, f"{self!r} job {job!r}")

    async def dump(self, job: str, data: Any) -> None:
        self.check_job_id(job)
        body = yaml_dump(data)
        async with await self.open(job, "wb") as fp:
            await fp.write(body)


class YamlMetadataFileRepository(YamlMetadataRepository, FileRepository):
    """YAML metadata in a directory, one ``JOB.yaml`` file per job, written atomically.

    Anything at a job's path holds the job, a directory included: a directory where a record
    belongs is a corrupt record (reading it fails, and status and ``failed`` show it), not a
    missing one, which would make its job run again on every ``run``.
    """

    def _entry_matches(self, entry: os.DirEntry[str]) -> bool:
        return True

    async def contains(self, item: str) -> bool:
        try:
            path = self.fullpath(item)
        except InvalidJobIdError:
            return False
        return await self._io(os.path.exists, path)

    def __init__(
        self,
        filename: str | Path,
        extension: str = ".yaml",
        case_insensitive: bool = False,
        *,
        durable: bool = False,
        offload: bool = False,
    ):
        super().__init__(
            filename, extension=extension, case_insensitive=case_insensitive, durable=durable, offload=offload
        )

    def _read(self, job: str) -> Any:
        path = self.fullpath(job)
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        return yaml_load(text, str(path))

    async def info(self, job: str) -> Any:
        return await self._io(self._read, job)

    async def info_all(self) -> dict[str, Any]:
        jobs = sorted(await self.job_ids())

        def read_all() -> dict[str, Any]:
            return {job: self._read(job) for job in jobs}

        return await asyncio.to_thread(read_all)

    async def dump(self, job: str, data: Any) -> None:
        path = self.fullpath(job)
        body = yaml_dump(data)
        if self.durable:  # two fsyncs: milliseconds, never on the event loop
            await asyncio.to_thread(atomic_write_bytes, path, body, True)
        else:
            await self._io(atomic_write_bytes, path, body, False)
