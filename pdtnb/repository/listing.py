"""A directory's listing kept with the directory's stamp: in memory, and in a side file for the
next process.

Listing a directory of 100,000 files and checking every name takes about a tenth of a second on a
local disk; a ``stat`` of the directory takes microseconds. The directory's stamp (device, inode,
mtime and ctime) changes whenever an entry is created,
removed or renamed in it, and whenever its times are set by hand, so a listing taken at a stamp
stays true while the stamp does. A stamp read within the file system's clock tick of the last
change is never trusted (:func:`racy`): a second change in the same tick would not alter it.

Side files are kept only for large directories (:data:`KEEP_AT_LEAST` jobs), written when a
status or a run ends (``Repository.keep_listing``)
rather than at every scan, and read only on a process's first listing of the directory. A side
file that cannot be written (a read-only input directory) costs the next process a scan.
"""

from __future__ import annotations

import json
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

__all__ = ["Listing", "KEEP_AT_LEAST", "SIDECAR", "racy", "encode", "decode"]

#: Directories with fewer jobs are scanned in a few milliseconds: no side file for them.
KEEP_AT_LEAST = 10_000
#: The side file's name in the directory's ``.pdtnb-meta/``.
SIDECAR = "listing"
_FORMAT = 1
#: A change within this many nanoseconds of reading the stamp may share the clock tick.
RACY_NS = 100_000_000
#: File systems that keep whole seconds (FAT keeps two): their tick is much longer.
_COARSE_RACY_NS = 2_100_000_000

Stamp = tuple[int, int, int, int]


@dataclass(frozen=True)
class Listing:
    """The job ids a directory held at ``stamp``, and whether it held temporary files then."""

    stamp: Stamp
    ids: frozenset[str]
    temporaries: bool
    #: Whether the side file holds this very listing (nothing to write).
    kept: bool = False


def racy(stamp: tuple[int, ...] | None, now_ns: int | None = None) -> bool:
    """Whether ``stamp`` (…, mtime_ns, ctime_ns) is too recent to vouch for the directory: a
    change in the same clock tick would leave it as it is. Times in whole seconds mean a
    coarse file system, whose tick is up to two seconds."""
    if stamp is None:
        return True
    now = time.time_ns() if now_ns is None else now_ns
    mtime, ctime = stamp[-2], stamp[-1]
    window = _COARSE_RACY_NS if mtime % 1_000_000_000 == 0 and ctime % 1_000_000_000 == 0 else RACY_NS
    return now - mtime < window or now - ctime < window


def encode(listing: Listing) -> bytes:
    """The side file: a JSON header line, then the ids as one JSON array (parsed at C speed)."""
    header = {"format": _FORMAT, "stamp": list(listing.stamp), "count": len(listing.ids), "tmp": listing.temporaries}
    return json.dumps(header).encode() + b"\n" + json.dumps(list(listing.ids), separators=(",", ":")).encode()


def header_matches(first_line: bytes, listing: Listing) -> bool:
    """Whether a side file starting with ``first_line`` already holds ``listing``."""
    try:
        header = json.loads(first_line)
        return (
            header.get("format") == _FORMAT
            and tuple(header.get("stamp") or ()) == tuple(listing.stamp)
            and header.get("count") == len(listing.ids)
        )
    except Exception:
        return False


def decode(data: bytes, stamp: Stamp) -> Listing | None:
    """The listing in side file ``data`` if it was taken at ``stamp``; None otherwise, or if the
    file is damaged in any way."""
    try:
        head, body = data.split(b"\n", 1)
        header: dict[str, Any] = json.loads(head)
        if header.get("format") != _FORMAT or tuple(header.get("stamp") or ()) != tuple(stamp):
            return None
        ids = json.loads(body)
        if not isinstance(ids, list) or len(ids) != header["count"] or not all(type(j) is str for j in ids):
            return None
        return Listing(stamp, frozenset(ids), bool(header.get("tmp", True)), kept=True)
    except Exception:
        return None


def same(ids: AbstractSet[str], listing: Listing | None) -> bool:
    """Whether ``ids`` is the very set ``listing`` holds."""
    return listing is not None and listing.ids is ids
