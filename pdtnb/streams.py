"""Asynchronous byte and text streams, and helpers to copy between them.

Repositories hand out streams instead of whole values so that blobs of any size move through a
pipeline with bounded memory. The protocols here are structural: any object with async ``read`` /
``write`` and ``close`` methods (aiofiles handles, S3 bodies, SFTP files) qualifies.
"""

from __future__ import annotations

import codecs
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "AReadStream",
    "AWriteStream",
    "AReadText",
    "AWriteText",
    "AsyncFile",
    "CommitOnExit",
    "async_copyfile",
    "async_copyfile_str",
    "roundrobin",
]

DEFAULT_BLOCKSIZE = 1024 * 1024


@runtime_checkable
class AReadStream(AbstractAsyncContextManager["AReadStream"], Protocol):
    """A stream of bytes to read asynchronously."""

    async def read(self, n: int | None = None) -> bytes:
        """Read and return up to ``n`` bytes, or the rest of the stream when ``n`` is None."""
        ...

    async def close(self) -> None:
        """Release the stream."""
        ...


@runtime_checkable
class AWriteStream(AbstractAsyncContextManager["AWriteStream"], Protocol):
    """A stream of bytes to write asynchronously."""

    async def write(self, data: bytes) -> object:
        """Write ``data`` to the stream (what it returns, a count for most streams, is not used)."""
        ...

    async def close(self) -> None:
        """Finish writing and release the stream."""
        ...


_W = TypeVar("_W", bound="_StreamWrapper")


class _StreamWrapper:
    """Shared context-manager plumbing of the text wrappers."""

    base: Any

    async def __aenter__(self: _W) -> _W:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A write stream that knows how to throw away a half-written value gets the chance to: an
        # exception inside ``async with`` must never commit partial data.
        if exc_type is not None and hasattr(self.base, "abort"):
            await self.base.abort()
        else:
            await self.close()

    async def close(self) -> None:
        """Close the underlying stream."""
        await self.base.close()


class CommitOnExit(ABC):
    """Context-manager behaviour of pdtnb's write streams: leaving ``async with`` normally commits
    (``close``); leaving it with an exception calls ``abort``, so a half-written value never
    replaces the previous one. Subclasses define ``close`` and ``abort``."""

    @abstractmethod
    async def close(self) -> None:
        """Commit what was written."""

    @abstractmethod
    async def abort(self) -> None:
        """Throw away what was written; the previous value, if any, stays."""

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            await self.abort()
        else:
            await self.close()


class AsyncFile:
    """A file handle whose ``read``/``write``/``close`` are coroutines (an aiofiles or asyncssh SFTP
    handle) made into a pdtnb stream: ``read(n=None)`` reads to the end by default, ``write``
    always returns the count written (SFTP handles return None), and it closes on ``async with``
    exit. One class for local files, SFTP files and repository readers, so they behave alike."""

    def __init__(self, handle: Any):
        self._fp = handle

    async def read(self, n: int | None = None) -> Any:
        return await self._fp.read(-1 if n is None else n)

    async def write(self, data: Any) -> int:
        written = await self._fp.write(data)
        return len(data) if written is None else written

    async def close(self) -> None:
        await self._fp.close()

    async def __aenter__(self) -> AsyncFile:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close()


class AReadText(_StreamWrapper):
    """Decode a byte stream to text, like :class:`io.TextIOWrapper` for reading only.

    Decoding is incremental, so a multi-byte character split across two reads is handled.
    """

    def __init__(self, base: AReadStream, encoding: str = "utf-8", errors: str = "strict", chunksize: int = 4096):
        self.base = base
        self.chunksize = chunksize
        self._decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
        self._buffer = ""
        self._eof = False

    async def read(self, n: int | None = None) -> str:
        """Read up to ``n`` characters, or the rest of the stream when ``n`` is None or negative."""
        if n is None or n < 0:
            rest = await self.base.read()
            out = self._buffer + self._decoder.decode(rest, final=True)
            self._buffer = ""
            self._eof = True
            return out
        while len(self._buffer) < n and not self._eof:
            chunk = await self.base.read(self.chunksize)
            if not chunk:
                self._buffer += self._decoder.decode(b"", final=True)
                self._eof = True
            else:
                self._buffer += self._decoder.decode(chunk)
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


class AWriteText(_StreamWrapper):
    """Encode text onto a byte stream, like :class:`io.TextIOWrapper` for writing only."""

    def __init__(self, base: AWriteStream, encoding: str = "utf-8", errors: str = "strict"):
        self.base = base
        self._encoder = codecs.getincrementalencoder(encoding)(errors=errors)

    async def write(self, data: str) -> int:
        """Write ``data``; returns the number of characters written."""
        await self.base.write(self._encoder.encode(data))
        return len(data)

    async def close(self) -> None:
        tail = self._encoder.encode("", final=True)
        if tail:
            await self.base.write(tail)
        await self.base.close()


async def async_copyfile(copyfrom: AReadStream, copyto: AWriteStream, blocksize: int = DEFAULT_BLOCKSIZE) -> None:
    """Copy bytes from one stream to another, ``blocksize`` at a time (memory stays bounded)."""
    while True:
        data = await copyfrom.read(blocksize)
        if not data:
            return
        await copyto.write(data)


async def async_copyfile_str(copyfrom: AReadText, copyto: AWriteText, blocksize: int = DEFAULT_BLOCKSIZE) -> None:
    """Copy text from one text stream to another, ``blocksize`` characters at a time."""
    while True:
        data = await copyfrom.read(blocksize)
        if not data:
            return
        await copyto.write(data)


async def roundrobin(iterables: list[AsyncIterable[Any]] | Any, *more: Any) -> AsyncIterator[Any]:
    """Interleave iterables: ``roundrobin(['ABC', 'D', 'EF'])`` (or ``roundrobin('ABC', 'D', 'EF')``)
    yields A D E B F C.

    Async and plain iterables may be mixed.
    """
    sources = [iterables, *more] if more else list(iterables)
    iterators: list[Any] = []
    for it in sources:
        iterators.append(it.__aiter__() if hasattr(it, "__aiter__") else iter(it))
    while iterators:
        still = []
        for it in iterators:
            try:
                item = await it.__anext__() if hasattr(it, "__anext__") else next(it)
            except (StopAsyncIteration, StopIteration):
                continue
            still.append(it)
            yield item
        iterators = still


class StderrIsStdout:
    """The type of :data:`STDOUT`: a process's standard error sent to its standard output. It lives
    here, below both the process managers and the tasks, because both use it."""

    def __repr__(self) -> str:
        return "STDOUT"


#: Pass as a ProcessTask's ``stderr`` to interleave standard error into the stdout repository.
STDOUT = StderrIsStdout()
