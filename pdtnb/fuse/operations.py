"""The filesystem behind ``fuse``: pyfuse3 request handlers over a pipeline's repositories.

Imported only once pyfuse3 is (see :func:`pdtnb.fuse.load_pyfuse3`). Inodes: 1 is the root, then
one per task directory and one per link directory, fixed for the mount (a pipeline's tasks and
links do not change while it is open); a job file gets an inode the first time it is seen in a
link directory and keeps it for the mount, so the kernel's ``forget`` needs no bookkeeping (a
mount that sees a million jobs keeps a million small entries).

Every handler goes through :func:`_guarded`: pyfuse3 answers a request only when its handler
returns or raises ``FUSEError``, so any other exception is turned into an errno here (and logged,
since an errno is all the reading program sees) instead of leaving the caller hanging.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import logging
import os
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pyfuse3

from .. import admin
from ..errors import InvalidJobIdError, MetadataParseError, PdtnbError
from ..lease import LeaseHeldError, LeaseLostError
from ..repository.base import BlobRepository, MetadataRepository, Repository
from ..repository.metadata import yaml_dump, yaml_load
from . import ENTRY_TTL

if TYPE_CHECKING:
    from ..pipeline import Pipeline

__all__ = ["PipelineFS"]

log = logging.getLogger("pdtnb.fuse")

#: Task and link directories never change during a mount: the kernel may keep them this long.
DIR_TTL = 60.0
#: Bytes of a file being read or written kept in memory before spilling to a temporary file.
SPOOL_BYTES = 8 << 20
#: How a job's value is shown: YAML of ``info()``, the blob's bytes, or nothing (presence only).
METADATA, BLOB, PRESENCE = "metadata", "blob", "presence"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class _Dir:
    """The root or a task directory: fixed children (name to inode)."""

    def __init__(self, ino: int, parent: int, children: dict[str, int] | None = None):
        self.ino = ino
        self.parent = parent
        self.children: dict[str, int] = children if children is not None else {}


class _LinkDir:
    """A task's link: a directory of the linked repository's jobs."""

    def __init__(self, ino: int, parent: int, task: str, link: str, repo: Repository):
        self.ino = ino
        self.parent = parent
        self.repo = repo
        #: The ``TASK.LINK`` name the admin functions take.
        self.data = f"{task}.{link}"
        # Metadata first: a YAML-in-files repository is also a blob repository (as ``cat`` does).
        self.kind = (
            METADATA if isinstance(repo, MetadataRepository) else BLOB if isinstance(repo, BlobRepository) else PRESENCE
        )


class _Reader:
    """An open job file being read: the value streams in as far as reads ask for it, kept in a
    spooled temporary file so that reads at any offset (``less``, ``tail``) work on a stream."""

    def __init__(self, chunks: AsyncIterator[bytes]):
        self._chunks = chunks
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        self._have = 0
        self._eof = False
        self._lock = asyncio.Lock()

    async def fill(self, upto: int) -> None:
        while self._have < upto and not self._eof:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._eof = True
                break
            self._spool.seek(self._have)
            self._spool.write(chunk)
            self._have += len(chunk)

    async def read(self, off: int, size: int) -> bytes:
        async with self._lock:
            await self.fill(off + size)
            if off >= self._have:
                return b""
            self._spool.seek(off)
            return self._spool.read(min(size, self._have - off))

    async def close(self) -> None:
        try:
            await self._chunks.aclose()  # type: ignore[attr-defined]
        finally:
            self._spool.close()


class _Writer:
    """An open job file being written: bytes collect in a spooled temporary file and are stored
    in one piece when the file is flushed (closed). Opened without ``O_TRUNC``, the job's current
    value is loaded before the first write, so writing in place changes only what is written."""

    def __init__(self, link: _LinkDir, job: str, ino: int, *, loaded: bool, dirty: bool):
        self.link = link
        self.job = job
        self.ino = ino
        self.loaded = loaded
        self.dirty = dirty
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        self.lock = asyncio.Lock()

    @property
    def size(self) -> int:
        self._spool.seek(0, os.SEEK_END)
        return self._spool.tell()

    async def load(self, value: Callable[[], AsyncIterator[bytes]]) -> None:
        if self.loaded:
            return
        self.loaded = True
        self._spool.seek(0)
        try:
            async for chunk in value():
                self._spool.write(chunk)
        except FileNotFoundError:
            self._spool.seek(0)
        self._spool.truncate()

    def write(self, off: int, data: bytes) -> None:
        self._spool.seek(off)  # past the end: the gap reads as zeros, as in a file
        self._spool.write(data)
        self.dirty = True

    def truncate(self, size: int) -> None:
        end = self.size
        if size < end:
            self._spool.truncate(size)
        elif size > end:
            self._spool.seek(end)
            self._spool.write(b"\0" * (size - end))
        self.dirty = True

    def read(self, off: int, size: int) -> bytes:
        self._spool.seek(off)
        return self._spool.read(size)

    def getvalue(self) -> bytes:
        self._spool.seek(0)
        return self._spool.read()

    def reader(self) -> Callable[[int], Awaitable[bytes]]:
        """An async ``read(n)`` over the whole buffer, the source :func:`admin.inject_value` takes."""
        self._spool.seek(0)

        async def read(n: int) -> bytes:
            return self._spool.read(n)

        return read

    def close(self) -> None:
        self._spool.close()


class _Listing:
    """An open directory: its entries as listed by the ``readdir`` that started at offset 0, so
    that the kernel's follow-up calls (a large directory takes several) page through one listing."""

    def __init__(self, ino: int):
        self.ino = ino
        self.entries: list[tuple[str, int]] | None = None


class _NoSuchJob(Exception):
    pass


def _guarded(method: F) -> F:
    """Answer every request: an exception other than FUSEError becomes an errno (logged).
    Also tracks the worker running each request, so a stop can cancel requests that hang."""

    @functools.wraps(method)
    async def wrapper(self: PipelineFS, *args: Any) -> Any:
        task = asyncio.current_task()
        if task is not None:
            self._busy.add(task)
        try:
            return await method(self, *args)
        except pyfuse3.FUSEError:
            raise
        except Exception as e:
            raise pyfuse3.FUSEError(_errno_for(e, method.__name__)) from None
        finally:
            if task is not None:
                self._busy.discard(task)

    return wrapper  # type: ignore[return-value]


def _errno_for(e: BaseException, operation: str) -> int:
    """The errno a program sees for ``e``; everything but a missing job is logged, because the
    errno alone ("Invalid argument", "Input/output error") does not say what was wrong."""
    if isinstance(e, (_NoSuchJob, FileNotFoundError, KeyError)):
        return errno.ENOENT
    if isinstance(e, (InvalidJobIdError, MetadataParseError)):
        code = errno.EINVAL
    elif isinstance(e, LeaseHeldError):
        code = errno.EAGAIN
    elif isinstance(e, LeaseLostError):
        code = errno.EIO
    elif isinstance(e, OSError) and e.errno:
        code = e.errno
    else:
        code = errno.EIO
    log.warning("%s: %s", operation, e)
    return code


class PipelineFS(pyfuse3.Operations):
    """The pyfuse3 operations of one mount of ``pipeline`` (opened before the mount)."""

    supports_dot_lookup = True
    enable_writeback_cache = False

    def __init__(self, pipeline: Pipeline, *, writable: bool = False):
        super().__init__()
        self.pipeline = pipeline
        self.writable = writable
        self._busy: set[asyncio.Task[Any]] = set()
        self._uid, self._gid = os.getuid(), os.getgid()
        self._mounted_ns = time.time_ns()
        root = _Dir(pyfuse3.ROOT_INODE, pyfuse3.ROOT_INODE)
        self._dirs: dict[int, _Dir | _LinkDir] = {root.ino: root}
        self._links: list[_LinkDir] = []
        counter = itertools.count(root.ino + 1)
        for task in pipeline.tasks.values():
            if not _nameable(task.name):
                log.warning("task %r cannot be a directory name: not shown", task.name)
                continue
            tdir = _Dir(next(counter), root.ino)
            root.children[task.name] = tdir.ino
            self._dirs[tdir.ino] = tdir
            for link_name, link in task.links.items():
                if not _nameable(link_name):
                    continue
                ldir = _LinkDir(next(counter), tdir.ino, task.name, link_name, link.repo)
                tdir.children[link_name] = ldir.ino
                self._dirs[ldir.ino] = ldir
                self._links.append(ldir)
        self._next_ino = counter
        self._job_inos: dict[tuple[int, str], int] = {}
        self._jobs: dict[int, tuple[_LinkDir, str]] = {}
        self._sizes: dict[int, tuple[float, int]] = {}
        self._next_fh = itertools.count(1)
        self._readers: dict[int, _Reader] = {}
        self._writers: dict[int, _Writer] = {}
        self._listings: dict[int, _Listing] = {}

    def cancel_busy(self) -> None:
        """Cancel the requests still being answered (at unmount, after a grace period)."""
        for task in list(self._busy):
            task.cancel()

    # ---- inodes and attributes ---------------------------------------------------------------

    def _job_ino(self, link: _LinkDir, job: str) -> int:
        key = (link.ino, job)
        ino = self._job_inos.get(key)
        if ino is None:
            ino = self._job_inos[key] = next(self._next_ino)
            self._jobs[ino] = (link, job)
        return ino

    def _job_of(self, ino: int) -> tuple[_LinkDir, str]:
        try:
            return self._jobs[ino]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _link_dir(self, ino: int) -> _LinkDir:
        node = self._dirs.get(ino)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if not isinstance(node, _LinkDir):
            # Tasks and the root hold only what the pipeline declares.
            raise pyfuse3.FUSEError(errno.EPERM)
        return node

    def _stored_by(self, link: _LinkDir) -> bool:
        return self.writable and link.kind != PRESENCE

    def _attrs(self, ino: int, mode: int, size: int, timeout: float, mtime_ns: int) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = ino
        attrs.st_mode = mode
        attrs.st_nlink = 2 if stat.S_ISDIR(mode) else 1
        attrs.st_size = size
        attrs.st_blocks = (size + 511) // 512
        attrs.st_blksize = 4096
        attrs.st_uid = self._uid
        attrs.st_gid = self._gid
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = mtime_ns
        attrs.entry_timeout = timeout
        attrs.attr_timeout = timeout
        return attrs

    def _dir_attrs(self, ino: int) -> pyfuse3.EntryAttributes:
        node = self._dirs[ino]
        writable = isinstance(node, _LinkDir) and self._stored_by(node)
        return self._attrs(ino, stat.S_IFDIR | (0o755 if writable else 0o555), 0, DIR_TTL, self._mounted_ns)

    def _file_mode(self, link: _LinkDir) -> int:
        return stat.S_IFREG | (0o644 if self._stored_by(link) else 0o444)

    async def _file_attrs(self, ino: int) -> pyfuse3.EntryAttributes:
        """A job file's attributes with its exact size: the size of an open, written buffer, else
        of the value (read to count it, kept :data:`ENTRY_TTL` seconds). ENOENT when the job is
        gone (or, for a file just created, not stored yet and no longer open)."""
        link, job = self._job_of(ino)
        writer = self._writer_of(ino)
        now = time.monotonic()
        if writer is not None and writer.loaded:
            size = writer.size
        else:
            kept = self._sizes.get(ino)
            if kept is not None and now - kept[0] < ENTRY_TTL:
                size = kept[1]
            else:
                size = 0
                async for chunk in self._value(link, job):
                    size += len(chunk)
                self._sizes[ino] = (now, size)
        return self._attrs(ino, self._file_mode(link), size, ENTRY_TTL, time.time_ns())

    def _writer_of(self, ino: int) -> _Writer | None:
        for writer in self._writers.values():
            if writer.ino == ino:
                return writer
        return None

    async def _value(self, link: _LinkDir, job: str) -> AsyncIterator[bytes]:
        """A job's content, as ``cat`` prints it: YAML for metadata, bytes for blobs, nothing for
        a repository that holds no values. Raises :class:`_NoSuchJob` when it has no such job."""
        repo = link.repo
        if not await repo.contains(job):
            raise _NoSuchJob(job)
        if link.kind == METADATA:
            try:
                value = await repo.info(job)
            except MetadataParseError as e:  # a corrupt record: reading it fails, as with a bad disk
                raise OSError(errno.EIO, str(e)) from None
            yield yaml_dump(value)
        elif link.kind == BLOB:
            assert isinstance(repo, BlobRepository)
            async with await repo.open(job, "rb") as fp:
                while chunk := await fp.read(1 << 16):
                    yield chunk

    # ---- lookup and listing ------------------------------------------------------------------

    @_guarded
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        node = self._dirs.get(parent_inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOTDIR if parent_inode in self._jobs else errno.ENOENT)
        if name == b".":
            return self._dir_attrs(parent_inode)
        if name == b"..":
            return self._dir_attrs(node.parent)
        text = os.fsdecode(name)
        if isinstance(node, _Dir):
            child = node.children.get(text)
            if child is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._dir_attrs(child)
        if not node.repo.is_valid_job_id(text):
            raise pyfuse3.FUSEError(errno.ENOENT)  # no job can have this name
        return await self._file_attrs(self._job_ino(node, text))

    @_guarded
    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        if inode in self._dirs:
            return self._dir_attrs(inode)
        return await self._file_attrs(inode)

    @_guarded
    async def opendir(self, inode: int, ctx: Any = None) -> int:
        if inode not in self._dirs:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = next(self._next_fh)
        self._listings[fh] = _Listing(inode)
        return fh

    @_guarded
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        listing = self._listings[fh]
        node = self._dirs[listing.ino]
        if start_id == 0 or listing.entries is None:
            if isinstance(node, _Dir):
                listing.entries = list(node.children.items())
            else:
                listing.entries = [(job, self._job_ino(node, job)) for job in sorted(await node.repo.job_ids())]
        now = time.time_ns()
        for index in range(start_id, len(listing.entries)):
            name, ino = listing.entries[index]
            if ino in self._dirs:
                attrs = self._dir_attrs(ino)
            else:
                # Size 0 and no caching: a listing reads no values; stat asks again (getattr).
                attrs = self._attrs(ino, self._file_mode(self._jobs[ino][0]), 0, 0, now)
                attrs.entry_timeout = ENTRY_TTL
            if not pyfuse3.readdir_reply(token, os.fsencode(name), attrs, index + 1):
                break

    @_guarded
    async def releasedir(self, fh: int) -> None:
        self._listings.pop(fh, None)

    @_guarded
    async def statfs(self, ctx: Any = None) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_namemax = Repository.MAX_JOB_ID_LENGTH
        return data

    # ---- reading -----------------------------------------------------------------------------

    @_guarded
    async def open(self, inode: int, flags: int, ctx: Any = None) -> pyfuse3.FileInfo:
        if inode in self._dirs:
            raise pyfuse3.FUSEError(errno.EISDIR)
        link, job = self._job_of(inode)
        fh = next(self._next_fh)
        if flags & os.O_ACCMODE == os.O_RDONLY:
            reader = _Reader(self._value(link, job))
            try:
                await reader.fill(1)  # a job deleted since it was listed fails here, with ENOENT
            except BaseException:
                await reader.close()
                raise
            self._readers[fh] = reader
        else:
            self._check_writable(link)
            truncate = bool(flags & os.O_TRUNC)
            self._writers[fh] = _Writer(link, job, inode, loaded=truncate, dirty=truncate)
        # direct_io: every read comes to us, so a size seen earlier never cuts a value short.
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    @_guarded
    async def read(self, fh: int, off: int, size: int) -> bytes:
        reader = self._readers.get(fh)
        if reader is not None:
            return await reader.read(off, size)
        writer = self._writers[fh]
        async with writer.lock:
            await writer.load(lambda: self._value(writer.link, writer.job))
            return writer.read(off, size)

    @_guarded
    async def release(self, fh: int) -> None:
        reader = self._readers.pop(fh, None)
        if reader is not None:
            await reader.close()
            return
        writer = self._writers.get(fh)
        if writer is None:
            return
        try:
            async with writer.lock:
                if writer.dirty:  # not flushed: store it now (an error can only be logged)
                    await self._store(writer)
        finally:
            self._writers.pop(fh, None)
            writer.close()

    # ---- writing -----------------------------------------------------------------------------

    def _check_writable(self, link: _LinkDir) -> None:
        if not self.writable:
            raise pyfuse3.FUSEError(errno.EROFS)
        if link.kind == PRESENCE:
            log.warning("%s holds no values to write: it cannot be written", link.data)
            raise pyfuse3.FUSEError(errno.EPERM)

    @_guarded
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any = None
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        link = self._link_dir(parent_inode)
        self._check_writable(link)
        job = os.fsdecode(name)
        link.repo.check_job_id(job)  # InvalidJobIdError: EINVAL, before anything is stored
        ino = self._job_ino(link, job)
        fh = next(self._next_fh)
        self._writers[fh] = _Writer(link, job, ino, loaded=True, dirty=True)
        attrs = self._attrs(ino, self._file_mode(link), 0, ENTRY_TTL, time.time_ns())
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False), attrs

    @_guarded
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        writer = self._writers.get(fh)
        if writer is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        async with writer.lock:
            await writer.load(lambda: self._value(writer.link, writer.job))
            writer.write(off, buf)
        return len(buf)

    @_guarded
    async def flush(self, fh: int) -> None:
        """Store what was written (the program's ``close()`` waits for this and sees its error)."""
        writer = self._writers.get(fh)
        if writer is not None:
            async with writer.lock:
                if writer.dirty:
                    await self._store(writer)

    @_guarded
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.flush(fh)

    @_guarded
    async def setattr(
        self, inode: int, attr: pyfuse3.EntryAttributes, fields: Any, fh: int | None, ctx: Any = None
    ) -> pyfuse3.EntryAttributes:
        if inode in self._dirs:
            return self._dir_attrs(inode)
        if fields.update_size:
            link, job = self._job_of(inode)
            self._check_writable(link)
            writer = self._writers.get(fh) if fh is not None else self._writer_of(inode)
            if writer is not None:
                async with writer.lock:
                    if attr.st_size:
                        await writer.load(lambda: self._value(link, job))
                    else:
                        writer.loaded = True
                    writer.truncate(attr.st_size)
            else:  # truncate(2) of a file nobody has open: a write of its own
                writer = _Writer(link, job, inode, loaded=attr.st_size == 0, dirty=True)
                try:
                    await writer.load(lambda: self._value(link, job))
                    writer.truncate(attr.st_size)
                    await self._store(writer)
                finally:
                    writer.close()
        # Modes, owners and times are not stored: accepted so that touch and cp -p work.
        return await self._file_attrs(inode)

    async def _store(self, writer: _Writer) -> None:
        """Store the buffer as the job's value through ``inject``'s own function (job id check,
        lease, YAML parsing). Malformed YAML stores nothing and fails with EINVAL."""
        writer.dirty = False  # one attempt per change: a failed close is not retried at release
        link, job = writer.link, writer.job
        try:
            if link.kind == METADATA:
                raw = writer.getvalue()
                if not raw.strip():
                    raise MetadataParseError(f"an empty file is not a value for {link.data} job {job!r}")
                parsed = yaml_load(raw, f"the value written to {link.data} job {job!r}")
                await admin.inject_value(self.pipeline, link.data, job, raw, parsed=parsed)
            else:
                await admin.inject_value(self.pipeline, link.data, job, writer.reader())
        except (PdtnbError, OSError) as e:
            raise pyfuse3.FUSEError(_errno_for(e, f"storing {link.data} {job}")) from None
        finally:
            # Every directory showing this repository's job must count its size again.
            for other in self._links:
                if other.repo is link.repo:
                    ino = self._job_inos.get((other.ino, job))
                    if ino is not None:
                        self._sizes.pop(ino, None)
        log.info("stored %s %s (%d bytes)", link.data, job, writer.size)

    # ---- what a pipeline's data cannot do ----------------------------------------------------

    @_guarded
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any = None) -> None:
        if not self.writable:
            raise pyfuse3.FUSEError(errno.EROFS)
        log.warning("deleting through the mount is not supported: use `rm TASK.LINK JOB` (and -r)")
        raise pyfuse3.FUSEError(errno.EPERM)

    @_guarded
    async def rename(self, *args: Any) -> None:
        raise pyfuse3.FUSEError(errno.EROFS if not self.writable else errno.EPERM)

    @_guarded
    async def mkdir(self, *args: Any) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS if not self.writable else errno.EPERM)


def _nameable(name: str) -> bool:
    return bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")
