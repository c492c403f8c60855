"""Process managers: where a :class:`~pdtnb.ProcessTask`'s processes run and its files live."""

from .base import AbstractProcessManager
from .local import LocalLinuxManager

__all__ = ["AbstractProcessManager", "LocalLinuxManager"]
