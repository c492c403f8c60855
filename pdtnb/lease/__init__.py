"""One controller at a time: the lease a pipeline's acting commands hold.

See :mod:`pdtnb.lease.base` for the two kinds and their guarantees, and docs/concepts.md for where
a pipeline keeps its lease by default and how to choose another place.
"""

from .base import LEASE_HELD_EXIT, Holder, Lease, LeaseHeldError, LeaseLostError, acting
from .files import FileLease
from .mongo import MongoLease
from .record import RecordLease
from .s3 import S3Lease

__all__ = [
    "LEASE_HELD_EXIT",
    "Holder",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "acting",
    "FileLease",
    "RecordLease",
    "S3Lease",
    "MongoLease",
]
