"""Repositories: key-value stores keyed by job id. See :mod:`pdtnb.repository.base` for the model."""

from .base import BlobRepository, MetadataRepository, Repository, listing_snapshot
from .combinators import (
    AggregateAndRepository,
    AggregateOrRepository,
    BlockingRepository,
    MapRepository,
    RelatedItemRepository,
)
from .filesystem import DirectoryRepository, FileRepository, FileRepositoryBase
from .live import ExecutorLiveRepo
from .memory import InProcessBlobRepository, InProcessBlobStream, InProcessMetadataRepository
from .metadata import YamlMetadataFileRepository, YamlMetadataRepository

__all__ = [
    "Repository",
    "BlobRepository",
    "MetadataRepository",
    "listing_snapshot",
    "AggregateAndRepository",
    "AggregateOrRepository",
    "BlockingRepository",
    "MapRepository",
    "RelatedItemRepository",
    "FileRepositoryBase",
    "FileRepository",
    "DirectoryRepository",
    "ExecutorLiveRepo",
    "InProcessMetadataRepository",
    "InProcessBlobRepository",
    "InProcessBlobStream",
    "YamlMetadataRepository",
    "YamlMetadataFileRepository",
]
