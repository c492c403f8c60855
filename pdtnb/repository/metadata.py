"""Metadata stored as YAML documents in a blob repository (files here; S3 in :mod:`pdtnb.repository.s3`).

YAML is always loaded with the safe loader: a metadata file can never construct Python objects.
A document that does not parse raises :class:`~pdtnb.errors.MetadataParseError` naming the file.
"""

from __future__ import annotations

import asyncio
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidJobIdError, MetadataParseError
from .base import NO_RECORD, SUCCESS, BlobRepository, MetadataRepository
from .filesystem import FileRepository, atomic_write_bytes

__all__ = [
    "YamlMetadataRepository",
    "YamlMetadataFileRepository",
    "yaml_load",
    "yaml_dump",
    "plain_success",
    "quick_success",
]

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


_TIME = (
    rb"([0-9]{4}-[0-9]{2}-[0-9]{2})[ T](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    rb"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
)
_HOST = rb"[A-Za-z][A-Za-z0-9.-]{0,252}|[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
#: The lines of a plain success record (pdtnb's, and pydatatask's), each value in a form whose
#: YAML meaning cannot fail to load: a host name starting with a letter (or an IPv4 address), an
#: attempt number, times on real dates.
_SUCCESS_LINES = {
    b"result": re.compile(rb"success"),
    b"attempt": re.compile(rb"[1-9][0-9]{0,8}"),
    b"start_time": re.compile(_TIME),
    b"end_time": re.compile(_TIME),
    b"host": re.compile(_HOST),
}
_TIMES = (_SUCCESS_LINES[b"start_time"], _SUCCESS_LINES[b"end_time"])
#: pdtnb's own layout, matched at once (the lines are checked one by one otherwise).
#: A hex digest that YAML reads as a string: at least one letter (the dumper quotes all-digit ones).
_HEX = rb"(?=[0-9]*[a-f])[0-9a-f]{%d}"
#: A fingerprint part's name as the dumper writes it plain: ``body``, ``calls clean_title``.
_PART = rb"[A-Za-z_][A-Za-z0-9_.<>]*(?: [A-Za-z_][A-Za-z0-9_.<>]*)?"
_PDTNB_SUCCESS = re.compile(
    rb"result: success\nattempt: [1-9][0-9]{0,8}\nstart_time: "
    + _TIME
    + rb"\nend_time: "
    + _TIME
    + rb"\nhost: (?:"
    + _HOST
    + rb")\n"
    + rb"(?:fingerprint: ("
    + _HEX % 16
    + rb")\n"
    + rb"(?:fingerprint_parts:\n(?:  "
    + _PART
    + rb": "
    + _HEX % 12
    + rb"\n)+)?)?"
)
_DATES: dict[bytes, bool] = {}


def _real_date(text: bytes) -> bool:
    """Whether ``YYYY-MM-DD`` is a date that exists (remembered: records share few dates)."""
    known = _DATES.get(text)
    if known is None:
        try:
            datetime(int(text[:4]), int(text[5:7]), int(text[8:10]))
            known = True
        except ValueError:
            known = False
        if len(_DATES) > 10_000:
            _DATES.clear()
        _DATES[text] = known
    return known


def quick_success(text: bytes) -> Any:
    """What the YAML loader would make of a success record, as far as the outcome index needs
    (its result and its fingerprint's digest), without parsing it: :data:`SUCCESS`, a dict with
    the digest (pdtnb's layout with a fingerprint), or None when the parser must read it."""
    if len(text) > 4000 or not text.endswith(b"\n"):
        return None
    match = _PDTNB_SUCCESS.fullmatch(text)
    if match is not None:
        if not (_real_date(match[1]) and _real_date(match[2])):
            return None
        return {"result": "success", "fingerprint": match[3].decode()} if match[3] else SUCCESS
    return SUCCESS if len(text) <= 600 and _success_lines(text) else None


def plain_success(text: bytes) -> bool:
    """Whether ``text`` is certainly a YAML mapping whose ``result`` is ``success``, without
    parsing it: one ``key: value`` line for each of a success record's keys, in any order, each
    value of a form the safe loader reads without fail. Anything else (a failure, another key, a
    comment, a quoted value, an impossible date) is for the YAML parser: the answer is never a
    guess. Parsing 300,000 records took a first cold status over a minute; this check takes a
    few microseconds."""
    if len(text) > 600 or not text.endswith(b"\n"):
        return False
    match = _PDTNB_SUCCESS.fullmatch(text)
    if match is not None:
        return _real_date(match[1]) and _real_date(match[2])
    return _success_lines(text)


def _success_lines(text: bytes) -> bool:
    """:func:`plain_success` line by line, for a record not in pdtnb's own layout (another order,
    pydatatask's keys): one known key per line, each value of a form the loader cannot misread."""
    lines = text[:-1].split(b"\n")
    if len(lines) > len(_SUCCESS_LINES):
        return False
    seen: set[bytes] = set()
    for line in lines:
        key, _, value = line.partition(b": ")
        pattern = _SUCCESS_LINES.get(key)
        if pattern is None or key in seen:
            return False
        match = pattern.fullmatch(value)
        if match is None or (pattern in _TIMES and not _real_date(match[1])):
            return False
        seen.add(key)
    return b"result" in seen


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

    async def read_records(self, jobs: list[str]) -> list[Any]:
        """Read the records (64 at a time), parsing only those that are not plain successes."""
        gate = asyncio.Semaphore(64)

        async def one(job: str) -> Any:
            async with gate:
                try:
                    async with await self.open(job, "rb") as fp:
                        text = await fp.read()
                except (FileNotFoundError, KeyError):
                    return NO_RECORD
            quick = quick_success(text)
            return quick if quick is not None else yaml_load(text, f"{self!r} job {job!r}")

        return list(await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True))


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

    def _record_path(self, job: str) -> str:
        """:meth:`fullpath` as a string, cheaply for the bulk reads of listed jobs (the same
        refusal of an invalid id)."""
        if self.case_insensitive or not self.is_valid_job_id(job) or "/" in job or job in (".", ".."):
            return str(self.fullpath(job))
        base = self.__dict__.get("_pdtnb_base")
        if base is None:
            base = self.__dict__["_pdtnb_base"] = os.fspath(self.basedir) + os.sep
        return base + job + self.extension

    def _read_record(self, job: str) -> Any:
        """For :meth:`read_records`: :data:`SUCCESS` without parsing, the parsed value,
        :data:`NO_RECORD` when absent, or the exception."""
        try:
            path = self._record_path(job)
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                text = os.read(fd, 4096)
                if len(text) == 4096:  # a large record (a failure with a traceback)
                    text += b"".join(iter(lambda: os.read(fd, 1 << 16), b""))
            finally:
                os.close(fd)
        except FileNotFoundError:
            return NO_RECORD
        except Exception as e:
            return e
        quick = quick_success(text)
        if quick is not None:
            return quick
        try:
            return yaml_load(text, str(path))
        except Exception as e:
            return e

    async def read_records(self, jobs: list[str]) -> list[Any]:
        """Read the records in a few threads (opening and reading release the interpreter),
        parsing only those that are not plain successes (:func:`plain_success`)."""
        if len(jobs) < 64:
            return [await self._io(self._read_record, job) for job in jobs]
        step = -(-len(jobs) // 4)
        chunks = [jobs[i : i + step] for i in range(0, len(jobs), step)]

        def read_chunk(chunk: list[str]) -> list[Any]:
            return [self._read_record(j) for j in chunk]

        parts = await asyncio.gather(*(asyncio.to_thread(read_chunk, chunk) for chunk in chunks))
        return [value for part in parts for value in part]

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
