"""The ``fuse`` command: a pipeline's repositories mounted as a filesystem.

``python pipeline.py fuse MOUNTPOINT`` shows one directory per task, in it one directory per
link, in it one file per job: a metadata repository's job as YAML (what ``cat`` prints), a blob
repository's job as its bytes, a repository that holds no values (a live or ready listing) as an
empty file. So ``ls``, ``grep -r``, ``less`` and scripts can browse a pipeline's data without
knowing where or how each repository stores it (files, S3, MongoDB, memory of this process).

Why the choices below:

* **Read-only by default.** A mount is for looking; writing is acting on the pipeline, so it is
  asked for with ``--writable``, and then the mount holds the pipeline's lease for its whole life
  like any acting command (``run``, ``inject``): a second controller is refused while it is
  mounted, and a mount is refused (exit 75, or ``--wait``) while another controller acts. A
  read-only mount takes no lease, as ``status`` and ``cat`` take none.
* **A write is an inject.** Bytes written to a job's file are buffered until the file is closed
  (flushed), then stored in one piece through :func:`pdtnb.admin.inject_value`, the function behind
  the ``inject`` command: the same job id check (a name that is not a valid job id is refused with
  ``EINVAL`` when the file is created; no name can reach a path outside a repository) and, for
  metadata, the same safe YAML parsing (malformed YAML fails ``close()`` with ``EINVAL`` and stores
  nothing). Nothing half-written is ever visible to the pipeline.
* **Fresh listings.** Every ``readdir`` lists the repository anew (``job_ids()``); the kernel may
  keep a job's existence and attributes for :data:`ENTRY_TTL` seconds (1 s), and files are opened
  with ``direct_io`` so no page cache outlives a read. Sizes in a directory listing are 0 (with
  no caching) so that listing 1,000 jobs reads no value; ``stat`` (``ls -l``) reads the value to
  report its exact size, since repositories have no size operation.
* **asyncio.** pdtnb's repositories are asyncio code; pyfuse3 runs on trio unless switched, so
  :func:`load_pyfuse3` switches it to asyncio (``pyfuse3.asyncio.enable()``) and the filesystem
  runs on the command's own event loop, next to the opened pipeline.

This module is part of the core: it imports neither IPython nor ipywidgets, and pyfuse3 only when
the command runs (the ``fuse`` extra: ``pip install 'pdtnb[fuse]'``, which needs the system's
libfuse3).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from ..errors import PdtnbError

if TYPE_CHECKING:
    from ..pipeline import Pipeline

__all__ = ["ENTRY_TTL", "MISSING", "load_pyfuse3", "serve"]

log = logging.getLogger("pdtnb.fuse")

#: Seconds the kernel may keep a job file's existence and attributes (size) before asking again.
ENTRY_TTL = 1.0

#: The one line printed when pyfuse3 cannot be imported.
MISSING = (
    "the fuse command needs pyfuse3: pip install 'pdtnb[fuse]' (it builds against libfuse3: "
    "apt-get install fuse3 libfuse3-dev pkg-config)"
)


def load_pyfuse3() -> Any:
    """Import pyfuse3 switched to asyncio, or raise :class:`PdtnbError` with :data:`MISSING`.

    pyfuse3 3.4 and later ship the switch as ``pyfuse3.asyncio``; older releases as the
    top-level module ``pyfuse3_asyncio``. Both replace pyfuse3's trio calls by asyncio ones for
    the whole process, which is what a pdtnb command (one event loop, asyncio) wants."""
    try:
        import pyfuse3
    except ImportError as e:  # not installed, or libfuse3.so missing
        raise PdtnbError(f"{MISSING} ({e})") from None
    try:
        import pyfuse3.asyncio as switch
    except ImportError:
        try:
            import pyfuse3_asyncio as switch  # type: ignore[no-redef]
        except ImportError as e:
            raise PdtnbError(f"{MISSING} (this pyfuse3 has no asyncio support: {e})") from None
    switch.enable()
    return pyfuse3


async def serve(
    pipeline: Pipeline,
    mountpoint: str | os.PathLike[str],
    *,
    writable: bool = False,
    wait: float | None = None,
) -> int:
    """Mount ``pipeline`` (opened) at ``mountpoint`` and serve it until it is unmounted
    (``fusermount3 -u``, returns 0) or this coroutine is cancelled (Ctrl-C, SIGTERM: it unmounts,
    then lets the cancellation through).

    ``writable`` allows writing jobs and holds the pipeline's lease while mounted (``wait``
    seconds to wait for it, as ``--wait``)."""
    pyfuse3 = load_pyfuse3()
    path = _mount_point(mountpoint)
    if writable:
        async with pipeline.control("fuse", wait=wait):
            return await _mounted(pyfuse3, pipeline, path, writable)
    return await _mounted(pyfuse3, pipeline, path, writable)


def _mount_point(mountpoint: str | os.PathLike[str]) -> str:
    """The absolute mount point, refused unless it is a directory that is not mounted on yet.
    Checked before mounting only: once mounted, a stat of it from this process (whose event loop
    answers the filesystem's requests) would wait for itself."""
    path = os.path.abspath(os.fspath(mountpoint))
    if not os.path.isdir(path):
        raise PdtnbError(f"mount point {os.fspath(mountpoint)!r} is not a directory")
    if os.path.ismount(path):
        raise PdtnbError(f"{path} is already a mount point")
    return path


async def _mounted(pyfuse3: Any, pipeline: Pipeline, path: str, writable: bool) -> int:
    from .operations import PipelineFS

    fs = PipelineFS(pipeline, writable=writable)
    options = set(pyfuse3.default_options) | {"fsname=pdtnb", "subtype=pdtnb"}
    if not writable:
        options.add("ro")  # the kernel refuses every write with EROFS before asking us
    try:
        pyfuse3.init(fs, path, options)
    except RuntimeError as e:
        raise PdtnbError(
            f"cannot mount {path}: {e} (is /dev/fuse present, and fusermount3 installed for non-root users?)"
        ) from None
    mode = "writable, holding the pipeline's lease" if writable else "read-only"
    print(
        f"# mounted {len(pipeline.tasks)} tasks at {path} ({mode}); Ctrl-C or `fusermount3 -u {path}` unmounts",
        file=sys.stderr,
        flush=True,
    )
    # pyfuse3.main in a task of its own: cancelling this coroutine must not cancel pyfuse3's
    # nursery mid-request (its asyncio nursery would leave workers behind), but stop it in order.
    loop_task = asyncio.ensure_future(pyfuse3.main())
    try:
        await asyncio.wait({loop_task})
        if not loop_task.cancelled() and loop_task.exception() is not None:
            log.warning("the filesystem loop ended: %s", loop_task.exception())
        print(f"# {path} was unmounted", file=sys.stderr, flush=True)
        return 0
    finally:
        await _stop(pyfuse3, fs, loop_task)


async def _stop(pyfuse3: Any, fs: Any, loop_task: asyncio.Future[Any]) -> None:
    """End pyfuse3's loop, then unmount. Requests being answered get half a second; then their
    workers are cancelled (a cancelled handler sends no reply, so nothing is answered after the
    session is gone), so that the signal's grace period (1.5 s) is never exceeded."""
    if not loop_task.done():
        try:
            pyfuse3.terminate()
        except Exception as e:  # a reader woken at that instant: the exit flag is set anyway
            log.debug("terminate: %s", e)
        done, _ = await asyncio.wait({loop_task}, timeout=0.5)
        if not done:
            fs.cancel_busy()
            done, _ = await asyncio.wait({loop_task}, timeout=0.3)
        if not done:
            # Workers still waiting for the device (a wake-up lost to a race): pyfuse3's asyncio
            # nursery names them pyfuse-NN. None may read the device once the session is gone.
            for task in asyncio.all_tasks():
                if str(getattr(task, "name", "")).startswith("pyfuse-"):
                    task.cancel()
            loop_task.cancel()
            await asyncio.wait({loop_task}, timeout=0.2)
    try:
        pyfuse3.close(unmount=True)
    except Exception as e:
        log.warning("unmounting failed: %s", e)
