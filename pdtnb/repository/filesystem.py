"""Repositories on the local filesystem: one file or one directory per job.

Writes are atomic: a value is written to a temporary file in the same directory and renamed over
the final name only when the stream closes without error, so a crash, a Ctrl-C or an exception
inside ``async with`` never leaves a half-written value where a reader (or the scheduler) would
take it as done. Temporary files start with ``.pdtnb-tmp-PID-`` (the writing process) and
listings ignore them; those whose writer is gone are removed when a pipeline first takes control
(:meth:`FileRepositoryBase.sweep`).

With ``durable=True`` each write is also fsynced, file and directory, before it counts as done:
renames are atomic on a crash of the process, but only an fsync makes them survive a power loss or
a kernel crash. It costs two disk flushes per value, so it is off by default: measured by
``bench/durability.py`` (bench/README.md) on a 2-stage file pipeline of 2,000 jobs on ext4, about
0.5 ms per write, which made the run 1.7 times as long (9.0 s instead of 5.3 s for 8,000 writes).

A write that fails names the value's final path (``OSError.filename``), whatever step failed; on
a full disk, a quota, a read-only file system or an I/O error, the pipeline stops with
:class:`~pdtnb.StorageFaultError` rather than record the job as failed (docs/failures.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from ..errors import InvalidJobIdError
from ..streams import AReadStream, AReadText, AWriteStream, AWriteText, CommitOnExit
from . import listing
from .base import RESERVED_PREFIX, BlobRepository, Repository, check_mode

if TYPE_CHECKING:
    from ..lease.files import FileLease

__all__ = [
    "FileRepositoryBase",
    "FileRepository",
    "DirectoryRepository",
    "TMP_PREFIX",
    "atomic_write_bytes",
    "named_error",
    "remove_stale_temporaries",
]

log = logging.getLogger("pdtnb.repository")

TMP_PREFIX = RESERVED_PREFIX + "tmp-"
#: pdtnb's side files (the outcome cache) in a repository's directory.
META_DIR = RESERVED_PREFIX + "meta"
T = TypeVar("T")


def _make_temp(directory: Path) -> tuple[int, str]:
    """Create a new temporary file in ``directory`` with the permissions the umask gives a new
    file (mkstemp would make it 0600, and the rename would carry that over to the value). Its name
    carries this process's id, so that a later cleanup can tell a live writer's file from one left
    by a writer that died."""
    while True:
        tmp = str(directory / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def named_error(exc: OSError, path: Path) -> OSError:
    """``exc``, or an ``OSError`` of the same errno naming ``path`` when ``exc`` names no file (a
    failed ``write``, ``close`` or ``fsync``) or only a temporary file: an error must say where
    the value was going (``no space left on device`` alone does not say which disk)."""
    filename = exc.filename
    if exc.errno is None:
        return exc
    if filename is not None and not os.path.basename(os.fsdecode(filename)).startswith(TMP_PREFIX):
        return exc
    return OSError(exc.errno, exc.strerror, str(path))


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a rename (blocking);
    ``durable`` fsyncs the file before the rename and the directory after it. On an error the
    temporary file is removed, and an ``OSError`` names ``path`` (see :func:`named_error`)."""
    tmp: str | None = None
    try:
        fd, tmp = _make_temp_creating(path.parent)
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if durable:
            fsync_directory(path.parent)
    except BaseException as e:
        if tmp is not None:
            with _suppress_oserror():
                os.unlink(tmp)
        if isinstance(e, OSError):
            named = named_error(e, path)
            if named is not e:
                raise named from e
        raise


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return exc_type is not None and issubclass(exc_type, OSError)


def remove_stale_temporaries(directory: Path, max_age: float = 3600.0) -> list[Path]:
    """Remove the temporary files of interrupted writes in ``directory``: those whose writing
    process is no longer running, and any older than ``max_age`` seconds (its process id may have
    been reused). Returns what was removed."""
    import psutil

    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(TMP_PREFIX):
            continue
        pid_text = name[len(TMP_PREFIX) :].split("-", 1)[0]
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        alive = pid_text.isdigit() and psutil.pid_exists(int(pid_text))
        if alive and age < max_age:
            continue
        try:
            os.unlink(entry.path)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            continue
        removed.append(Path(entry.path))
    return removed


class AtomicFileWriter(CommitOnExit):
    """A binary write stream that becomes visible at its final path only on a clean close.

    Its system calls run on the event loop unless ``offload`` (see :class:`FileRepositoryBase`):
    on a local disk each takes microseconds, less than handing it to a thread and back."""

    def __init__(self, path: Path, durable: bool = False, offload: bool = False):
        self.path = path
        self.durable = durable
        self.offload = offload
        self._fd: int | None = None
        self._tmp: str | None = None

    async def _start(self) -> AtomicFileWriter:
        try:
            if self.offload:
                self._fd, self._tmp = await asyncio.to_thread(_make_temp_creating, self.path.parent)
            else:
                self._fd, self._tmp = _make_temp_creating(self.path.parent)
        except OSError as e:
            raise named_error(e, self.path) from e
        return self

    async def write(self, data: bytes) -> int:
        assert self._fd is not None, "write after close"
        try:
            if self.offload:
                await asyncio.to_thread(_write_all, self._fd, data)
            else:
                _write_all(self._fd, data)
        except OSError as e:  # names the value's path; ``async with`` then aborts (removes the temporary)
            named = named_error(e, self.path)
            if named is e:
                raise
            raise named from e
        return len(data)

    def _commit(self, fd: int, tmp: str) -> None:
        try:
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        if self.durable:
            fsync_directory(self.path.parent)

    async def close(self) -> None:
        """Rename the temporary file over the final path (fsyncing both first, if ``durable``)."""
        if self._tmp is None or self._fd is None:
            return
        tmp, self._tmp = self._tmp, None
        fd, self._fd = self._fd, None
        try:
            if self.offload or self.durable:
                await asyncio.to_thread(self._commit, fd, tmp)
            else:
                self._commit(fd, tmp)
        except BaseException as e:
            with _suppress_oserror():
                os.close(fd)  # still open if the fsync failed
            with _suppress_oserror():
                os.unlink(tmp)
            if isinstance(e, OSError):
                named = named_error(e, self.path)
                if named is not e:
                    raise named from e
            raise

    async def abort(self) -> None:
        """Throw away what was written; the previous value, if any, stays."""
        if self._tmp is None:
            return
        tmp, self._tmp = self._tmp, None
        fd, self._fd = self._fd, None
        if fd is not None:
            with _suppress_oserror():
                os.close(fd)
        with _suppress_oserror():
            os.unlink(tmp)


def _make_temp_creating(directory: Path) -> tuple[int, str]:
    """:func:`_make_temp`, creating ``directory`` first if it does not exist yet."""
    try:
        return _make_temp(directory)
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        return _make_temp(directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FileReader:
    """A binary read stream over a local file (its reads run on the event loop unless
    ``offload``; see :class:`FileRepositoryBase`)."""

    def __init__(self, fp: io.FileIO, offload: bool = False):
        self._fp = fp
        self.offload = offload

    async def read(self, n: int | None = None) -> bytes:
        size = -1 if n is None else n
        if self.offload:
            return await asyncio.to_thread(self._fp.read, size)
        return self._fp.read(size) or b""

    async def close(self) -> None:
        self._fp.close()

    async def __aenter__(self) -> FileReader:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._fp.close()


class FileRepositoryBase(Repository):
    """A local directory in which each job is the name ``JOB + extension``.

    ``case_insensitive`` makes the extension match regardless of case when listing. ``durable``
    fsyncs every write, file and directory, so that it survives a power loss or a kernel crash, not
    only a crash of the process; it adds about 0.5 ms per write on an ordinary disk, which made a
    2-stage file pipeline of 2,000 jobs run 1.7 times as long (``bench/durability.py``).

    Small file operations (open, read, write, rename, stat) run on the event loop: on a local disk
    each takes a few microseconds, while handing one to a thread and back costs tens, and a job
    does several. ``offload=True`` runs each in a thread instead, for a network filesystem where
    one can take milliseconds. Listing a directory always runs in a thread.
    """

    _remember_listed_ids = False

    def __init__(
        self,
        basedir: str | os.PathLike[str],
        extension: str = "",
        case_insensitive: bool = False,
        *,
        durable: bool = False,
        offload: bool = False,
    ):
        self.basedir = basedir  # made absolute by the property
        self.extension = extension
        self.case_insensitive = case_insensitive
        self.durable = durable
        self.offload = offload

    @property
    def basedir(self) -> Path:
        """The directory, absolute: a relative path given to the constructor (or assigned) is
        taken relative to the current directory *then*, so that ``info(job)`` (the path a process
        or pod template gets) still names the file from a job's own working directory, and a later
        ``chdir`` does not move the repository. ``os.path.abspath``, not ``resolve()``: symbolic
        links are kept as given."""
        return self._basedir

    @basedir.setter
    def basedir(self, value: str | os.PathLike[str]) -> None:
        self._basedir = Path(os.path.abspath(Path(value).expanduser()))
        self.__dict__.pop("_pdtnb_base", None)  # YamlMetadataFileRepository's cached prefix

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.basedir / ('*' + self.extension)}>"

    def fullpath(self, job: str) -> Path:
        """The path of ``job``'s file. Refuses an invalid id, so no id can point outside ``basedir``.

        With ``case_insensitive``, an existing file whose extension differs only in case is the
        job's file (``A1.TXT`` for job ``A1`` and extension ``.txt``).
        """
        if not self.is_valid_job_id(job) or "/" in job or "\0" in job or job in (".", ".."):
            raise InvalidJobIdError(job, self, self.MAX_JOB_ID_LENGTH)
        path = self.basedir / (job + self.extension)
        if self.case_insensitive and self.extension and not path.exists():
            return self._case_variant(job) or path
        return path

    def _case_variant(self, job: str) -> Path | None:
        wanted = (job + self.extension).lower()
        try:
            with os.scandir(self.basedir) as it:
                for entry in it:
                    name = entry.name
                    if name.startswith(job) and name.lower() == wanted and name[: len(job)] == job:
                        return self.basedir / name
        except FileNotFoundError:
            pass
        return None

    async def info(self, job: str) -> str:
        """The full path of ``job``'s file, as a string (for templates)."""
        return str(self.fullpath(job))

    def _entry_matches(self, entry: os.DirEntry[str]) -> bool:
        return entry.is_file()

    #: A change of the directory's mtime within this many nanoseconds of reading it may be in
    #: the same clock tick as the reading (file times come from a coarse clock): not a stamp.
    _RACY_NS = listing.RACY_NS

    def _stamp(self) -> tuple[int, int, int, int] | None:
        """The directory's device, inode, mtime and ctime: every entry created, removed or renamed
        in it changes the mtime, and setting the mtime back by hand (``touch -d``, ``rsync -t``)
        changes the ctime."""
        try:
            st = os.stat(self.basedir)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)

    def _racy(self, stamp: tuple[int, ...] | None) -> bool:
        return listing.racy(stamp)

    def _identities(self, unchanged_since: Any, jobs: Iterable[str] | None) -> tuple[dict[str, str] | None, Any]:
        if jobs is not None:
            out: dict[str, str] = {}
            for job in jobs:
                try:
                    st = os.stat(self.fullpath(job), follow_symlinks=False)
                except (OSError, InvalidJobIdError):
                    continue
                out[job] = f"{st.st_ino}:{st.st_ctime_ns}"
            return out, None
        stamp = self._stamp()
        if stamp is None:
            return {}, None
        if unchanged_since is not None and tuple(unchanged_since) == stamp and not self._racy(stamp):
            return None, stamp  # no file created, removed or renamed in since the stamp
        found: dict[str, str] = {}
        try:
            for job, entry in self._entries():
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                found[job] = f"{st.st_ino}:{st.st_ctime_ns}"
        except FileNotFoundError:
            return {}, None
        return found, (None if self._racy(stamp) else stamp)

    async def identities(
        self, unchanged_since: Any = None, jobs: Iterable[str] | None = None
    ) -> tuple[dict[str, str] | None, Any]:
        """Identities are ``INODE:CTIME`` (a stat per file); the stamp is the directory's device,
        inode and mtime, which every file created, removed or renamed in changes."""
        found, stamp = await asyncio.to_thread(self._identities, unchanged_since, jobs)
        if found is not None:
            valid = self._valid_subset(found)
            if len(valid) != len(found):
                found = {job: ident for job, ident in found.items() if job in valid}
        return found, stamp

    async def stamped_listing(self) -> tuple[Any, AbstractSet[str]] | None:
        """The listing with the directory's stamp it was taken at (None with ``offload``, or while
        the directory keeps changing within its clock tick)."""
        if self.offload or not self._stamp_proves_listing:
            return None
        await self._make_meta_dir()
        for attempt in range(2):
            ids = await self._list_job_ids()
            kept = self._listing
            if kept is not None and kept.ids is ids:
                return kept.stamp, ids
            if attempt == 0:  # changed a moment ago: wait past the clock tick and look again
                await asyncio.sleep(self._RACY_NS / 1e9)
        return None

    def adopt_listing(self, stamp: Any, jobs: AbstractSet[str]) -> None:
        if self.offload or not self._stamp_proves_listing or stamp is None:
            return
        now = self._stamp()
        if now is None or list(now) != list(stamp) or self._racy(now):
            return
        # Whether temporary files are there is not known: the next sweep scans.
        self._listing = listing.Listing(now, frozenset(jobs), True)

    async def keep_listing(self) -> None:
        """Write the current listing to the side file ``.pdtnb-meta/listing`` for the next
        process (large directories only; see :mod:`pdtnb.repository.listing`)."""
        kept = self._listing
        if kept is None or kept.kept or len(kept.ids) < listing.KEEP_AT_LEAST or self.offload:
            return
        try:
            if not await self._make_meta_dir():
                # Creating it changed the directory's stamp: list again once the new stamp is
                # past the clock tick (once in the directory's life).
                await asyncio.sleep(self._RACY_NS / 1e9)
                await self._list_job_ids()
                kept = self._listing
                if kept is None:
                    return
            if self._stamp() != kept.stamp:
                return
            path = self._sidecar_path(listing.SIDECAR)
            if not await asyncio.to_thread(self._holds_listing, path, kept):
                await asyncio.to_thread(atomic_write_bytes, path, listing.encode(kept))
        except OSError as e:
            log.debug("%r: could not keep the listing: %s", self, e)
            return
        self._listing = dataclasses.replace(kept, kept=True)

    @staticmethod
    def _holds_listing(path: Path, kept: listing.Listing) -> bool:
        try:
            with open(path, "rb") as fp:
                return listing.header_matches(fp.readline(200), kept)
        except OSError:
            return False

    async def _make_meta_dir(self) -> bool:
        """Create ``.pdtnb-meta/`` (for side files) if missing; True if it was there already.
        Creating it changes the directory's stamp, so callers take their stamp after this."""
        meta = self.basedir / META_DIR
        if meta.is_dir():
            return True
        await asyncio.to_thread(meta.mkdir, parents=True, exist_ok=True)
        return False

    @property
    def _listing(self) -> listing.Listing | None:
        return self.__dict__.get("_pdtnb_listing")

    @_listing.setter
    def _listing(self, value: listing.Listing | None) -> None:
        self.__dict__["_pdtnb_listing"] = value

    def _kept_listing(self, stamp: Any) -> listing.Listing | None:
        """The side file's listing, if it was taken at ``stamp`` (the directory's now)."""
        try:
            with open(self._sidecar_path(listing.SIDECAR), "rb") as fp:
                data = fp.read()
        except OSError:
            return None
        found = listing.decode(data, stamp)
        if found is not None and len(self._valid_subset(found.ids)) != len(found.ids):
            return None
        return found

    def _sidecar_path(self, name: str) -> Path:
        """Side files live in ``.pdtnb-meta/``, so that writing one does not change the
        directory of the jobs (whose mtime is the listing's stamp)."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"not a side file name: {name!r}")
        return self.basedir / META_DIR / name

    async def read_sidecar(self, name: str) -> bytes | None:
        path = self._sidecar_path(name)

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None

        return await asyncio.to_thread(read)

    async def write_sidecar(self, name: str, data: bytes) -> bool:
        await asyncio.to_thread(atomic_write_bytes, self._sidecar_path(name), data, False)
        return True

    def _entries(
        self, reserved: list[str] | None = None, links: list[str] | None = None
    ) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """``(job, entry)`` for every directory entry that holds a job: the one scan behind the
        listing and the identities (pdtnb's own ``.pdtnb-`` names skipped, the extension cut;
        they are appended to ``reserved`` if given, and every symbolic link's name to ``links``)."""
        ext = self.extension.lower() if self.case_insensitive else self.extension
        cut = len(self.extension)
        with os.scandir(self.basedir) as it:
            for entry in it:
                name = entry.name
                if name.startswith(RESERVED_PREFIX):
                    if reserved is not None:
                        reserved.append(name)
                    continue
                test = name.lower() if self.case_insensitive else name
                if ext and (not test.endswith(ext) or len(name) == cut):
                    continue
                if links is not None and entry.is_symlink():
                    links.append(name)
                if self._entry_matches(entry):
                    yield (name[: len(name) - cut] if cut else name), entry

    def _scan(self) -> list[str]:
        try:
            return [job for job, _ in self._entries()]
        except FileNotFoundError:
            return []

    def _scan_stamped(self) -> tuple[list[str], bool, bool]:
        """The listing; whether the directory's stamp vouches for it (not when an entry is a
        symbolic link, whose target can appear or vanish without the directory changing); and
        whether it holds temporary files (for :meth:`sweep`)."""
        reserved: list[str] = []
        links: list[str] = []
        try:
            jobs = [job for job, _ in self._entries(reserved, links)]
        except FileNotFoundError:
            return [], False, False
        return jobs, not links, any(name.startswith(TMP_PREFIX) for name in reserved)

    #: Whether the listing depends only on the directory's own entries, so that an unchanged
    #: stamp (:meth:`_stamp`) proves an unchanged listing.
    _stamp_proves_listing = True

    async def unfiltered_iter(self) -> AsyncIterator[str]:
        for name in await asyncio.to_thread(self._scan):
            yield name

    async def _list_job_ids(self) -> AbstractSet[str]:
        """The directory's job ids. On a local disk (not ``offload``) the listing is kept with the
        directory's stamp and reused while the stamp is unchanged (:mod:`pdtnb.repository.listing`):
        a ``stat`` instead of reading and checking every entry, which is what makes a status of
        100,000 unchanged files, a notebook's live table or a quiet round of the update loop
        cheap. The first listing in a process may come from the side file a status or a run left.
        Network file systems cache directory attributes, so with ``offload`` every listing reads
        the directory."""
        if self.offload or not self._stamp_proves_listing:
            return self._valid_subset(await asyncio.to_thread(self._scan))
        stamp = self._stamp()
        kept = self._listing
        if kept is not None and stamp is not None and kept.stamp == stamp:
            return kept.ids
        trusted = stamp is not None and not self._racy(stamp)
        if kept is None and trusted:
            found = await asyncio.to_thread(self._kept_listing, stamp)
            if found is not None:
                self._listing = found
                return found.ids
        names, vouched, temporaries = await asyncio.to_thread(self._scan_stamped)
        ids = frozenset(self._valid_subset(names))
        self._listing = listing.Listing(stamp, ids, temporaries) if vouched and trusted and stamp else None
        return ids

    async def contains(self, item: str) -> bool:
        try:
            path = self.fullpath(item)
        except InvalidJobIdError:
            return False
        return await self._io(os.path.isfile, path)

    async def _io(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)``, a small blocking file operation: on the event loop, or in a thread
        with ``offload`` (see the class's docstring)."""
        if self.offload:
            return await asyncio.to_thread(func, *args)
        return func(*args)

    def lease_place(self) -> FileLease:
        """A ``flock`` on ``.pdtnb-meta/lease`` in ``basedir`` (names starting ``.pdtnb-`` are never
        jobs; in a subdirectory, taking and releasing it do not change the listing's stamp)."""
        from ..lease.files import FileLease

        return FileLease(self.basedir / META_DIR / "lease")

    async def validate(self) -> None:
        """Create ``basedir`` if needed and check that it is writable."""
        try:
            await asyncio.to_thread(self.basedir.mkdir, parents=True, exist_ok=True)
        except OSError as e:
            raise PermissionError(f"{self!r}: cannot create directory {self.basedir}: {e}") from e
        if not os.access(self.basedir, os.W_OK | os.X_OK):
            raise PermissionError(f"{self!r}: directory {self.basedir} is not writable")

    async def sweep(self) -> None:
        """Remove the temporary files of interrupted writes whose writer is gone (see
        :func:`remove_stale_temporaries`). A pipeline sweeps each repository when it first takes
        control, not when it opens: a ``status`` deletes nothing. When the directory's last listing
        (still current by its stamp) saw no temporary file, there is nothing to scan."""
        kept = self._listing
        if kept is not None and not kept.temporaries and not self.offload and kept.stamp == self._stamp():
            return
        removed = await asyncio.to_thread(remove_stale_temporaries, self.basedir)
        if removed:
            log.info("%r: removed %d temporary files of interrupted writes", self, len(removed))


class FileRepository(FileRepositoryBase, BlobRepository):
    """A directory of files, one per job, read and written as streams."""

    @overload
    async def open(self, job: str, mode: Literal["r"] = "r") -> AReadText: ...
    @overload
    async def open(self, job: str, mode: Literal["rb"]) -> AReadStream: ...
    @overload
    async def open(self, job: str, mode: Literal["w"]) -> AWriteText: ...
    @overload
    async def open(self, job: str, mode: Literal["wb"]) -> AWriteStream: ...

    async def open(self, job: str, mode: str = "r") -> Any:
        check_mode(mode, self)
        path = self.fullpath(job)
        if mode.startswith("w"):
            writer = await AtomicFileWriter(path, self.durable, self.offload)._start()
            return AWriteText(writer) if mode == "w" else writer
        try:
            fp = await self._io(io.FileIO, path, "rb")
        except FileNotFoundError:
            raise FileNotFoundError(f"{self!r}: no file for job {job!r} ({path})") from None
        reader = FileReader(fp, self.offload)
        return AReadText(reader) if mode == "r" else reader

    async def delete(self, job: str) -> None:
        """Remove ``job``'s file. An empty directory in its place (a corrupt value) is removed
        too; a directory with contents is refused, naming it, rather than deleted recursively."""
        try:
            path = self.fullpath(job)
            await self._io(os.unlink, path)
        except (FileNotFoundError, InvalidJobIdError):
            pass
        except IsADirectoryError:
            try:
                await self._io(os.rmdir, path)
            except OSError as e:
                raise OSError(
                    e.errno, f"{self!r}: cannot delete job {job!r}: {path} is a directory that is not empty"
                ) from None


class DirectoryRepository(FileRepositoryBase):
    """A directory of directories, one per job (for tasks that produce many files).

    With ``discard_empty``, an empty directory does not count as holding its job.
    """

    def __init__(self, *args: Any, discard_empty: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.discard_empty = discard_empty

    @property
    def _stamp_proves_listing(self) -> bool:  # type: ignore[override]
        # With discard_empty, a job comes and goes with its directory's contents, which do not
        # change this directory's stamp.
        return not self.discard_empty

    def _entry_matches(self, entry: os.DirEntry[str]) -> bool:
        if not entry.is_dir():
            return False
        if self.discard_empty:
            with os.scandir(entry.path) as inner:
                return next(inner, None) is not None
        return True

    async def mkdir(self, job: str) -> None:
        """Create ``job``'s directory (and ``basedir``); nothing happens if it exists."""
        await asyncio.to_thread(self.fullpath(job).mkdir, parents=True, exist_ok=True)

    async def contains(self, item: str) -> bool:
        try:
            path = self.fullpath(item)
        except InvalidJobIdError:
            return False

        def check() -> bool:
            if not path.is_dir():
                return False
            if not self.discard_empty:
                return True
            with os.scandir(path) as inner:
                return next(inner, None) is not None

        return await asyncio.to_thread(check)

    async def delete(self, job: str) -> None:
        try:
            path = self.fullpath(job)
        except InvalidJobIdError:
            return

        def remove() -> None:
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass

        await asyncio.to_thread(remove)
