"""pdtnb: data pipelines with pydatatask's model, driven from Jupyter or the command line.

Everything a pipeline script needs is importable from here, under pydatatask 0.4's names, so a
pydatatask script is ported by changing ``import pydatatask`` to ``import pdtnb as pydatatask``.
Optional back ends (S3, MongoDB, Docker, SSH, Kubernetes, Dask) load on first use and need their
extra (``pip install 'pdtnb[s3]'`` ...).
"""

from __future__ import annotations

from .cli import (
    cat_data,
    delete_data,
    inject_data,
    launch,
    list_data,
    main,
    print_failed,
    print_kill,
    print_retry,
    print_show,
    print_status,
    print_trace,
    print_why,
    run,
    shell,
    update,
)
from .declarative import DeclarationError, NotDeclarableError, check, dump, load
from .errors import (
    InvalidJobIdError,
    JobLaunchError,
    KubeConnectionError,
    MetadataParseError,
    PdtnbError,
    PipelineStateError,
    SessionClosedError,
    SSHConnectionError,
    StorageFaultError,
    TaskConfigError,
    UnknownNameError,
)
from .failures import (
    Explanation,
    FailedJob,
    JobDetails,
    RetryResult,
    failed_jobs,
    kill_job,
    retry_jobs,
    show_job,
    why_job,
)
from .fingerprint import Fingerprint
from .hooks import Hook, JsonLinesLog, Webhook
from .lease import FileLease, Lease, LeaseHeldError, LeaseLostError, MongoLease, S3Lease
from .managers import AbstractProcessManager, LocalLinuxManager
from .outdated import outdated_jobs, outdated_reasons, reset_outdated
from .pipeline import LaunchReport, Pipeline, RunSummary
from .record import Frame, JobRecord, Outcome
from .repository import (
    AggregateAndRepository,
    AggregateOrRepository,
    BlobRepository,
    BlockingRepository,
    DirectoryRepository,
    ExecutorLiveRepo,
    FileRepository,
    FileRepositoryBase,
    InProcessBlobRepository,
    InProcessBlobStream,
    InProcessMetadataRepository,
    MapRepository,
    MetadataRepository,
    RelatedItemRepository,
    Repository,
    YamlMetadataFileRepository,
    YamlMetadataRepository,
)
from .resources import ResourceManager, Resources, ResourceType, parse_quantity
from .retry import Retry
from .session import Session
from .status import JOB_STATES, PipelineStatus, StatusTracker, TaskStatus, pipeline_status, pipeline_trace
from .streams import AReadStream, AReadText, AWriteStream, AWriteText, async_copyfile, async_copyfile_str, roundrobin
from .task import STDOUT, ExecutorTask, InProcessSyncTask, Link, ProcessTask, Task
from .task.base import LaunchOptions

__version__ = "0.1.0"


# Back ends with optional dependencies load on first use, so `import pdtnb` stays light.
_LAZY: dict[str, tuple[str, str]] = {
    "SSHLinuxManager": ("pdtnb.managers.ssh", "ssh"),
    "S3BucketRepository": ("pdtnb.repository.s3", "s3"),
    "S3BucketInfo": ("pdtnb.repository.s3", "s3"),
    "YamlMetadataS3Repository": ("pdtnb.repository.s3", "s3"),
    "S3Error": ("pdtnb.repository.s3", "s3"),
    "S3ConnectionError": ("pdtnb.repository.s3", "s3"),
    "MongoMetadataRepository": ("pdtnb.repository.mongo", "mongo"),
    "MongoError": ("pdtnb.repository.mongo", "mongo"),
    "DockerRepository": ("pdtnb.repository.docker", "docker"),
    "DockerRegistryError": ("pdtnb.repository.docker", "docker"),
    "PodManager": ("pdtnb.managers.pod", "kube"),
    "KubeTask": ("pdtnb.task.kube", "kube"),
    "KubeFunctionTask": ("pdtnb.task.kube", "kube"),
    "LiveKubeRepository": ("pdtnb.repository.kube", "kube"),
    "DaskTask": ("pdtnb.task.dask", "dask"),
    "DaskExecutor": ("pdtnb.task.dask", "dask"),
    "DaskJobLost": ("pdtnb.task.dask", "dask"),
}


def __getattr__(name: str) -> object:
    """Import an optional back end on first use; a missing extra is named in the error."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, extra = _LAZY[name]
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"pdtnb.{name} needs the {extra!r} extra: pip install 'pdtnb[{extra}]' ({e})") from e
    return getattr(module, name)


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext pdtnb``: register the ``%pdt`` magics (needs the ``notebook`` extra).

    Imported lazily so that the core never imports IPython or ipywidgets.
    """
    from .notebook.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext pdtnb``: close the pipeline the magics opened and remove the magics."""
    from .notebook.extension import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "Fingerprint",
    "outdated_jobs",
    "outdated_reasons",
    "reset_outdated",
    "Lease",
    "FileLease",
    "S3Lease",
    "MongoLease",
    "LeaseHeldError",
    "LeaseLostError",
    "main",
    "update",
    "run",
    "print_status",
    "print_trace",
    "list_data",
    "cat_data",
    "delete_data",
    "inject_data",
    "launch",
    "shell",
    "print_failed",
    "print_show",
    "print_why",
    "print_retry",
    "print_kill",
    "failed_jobs",
    "show_job",
    "why_job",
    "retry_jobs",
    "kill_job",
    "FailedJob",
    "JobDetails",
    "Explanation",
    "RetryResult",
    "JobRecord",
    "Outcome",
    "Frame",
    "Retry",
    "Hook",
    "JsonLinesLog",
    "Webhook",
    "LaunchOptions",
    "TaskStatus",
    "JOB_STATES",
    "Pipeline",
    "LaunchReport",
    "RunSummary",
    "Session",
    "Repository",
    "BlobRepository",
    "MetadataRepository",
    "FileRepositoryBase",
    "FileRepository",
    "DirectoryRepository",
    "YamlMetadataRepository",
    "YamlMetadataFileRepository",
    "InProcessMetadataRepository",
    "InProcessBlobRepository",
    "InProcessBlobStream",
    "AggregateOrRepository",
    "AggregateAndRepository",
    "BlockingRepository",
    "RelatedItemRepository",
    "MapRepository",
    "ExecutorLiveRepo",
    "Link",
    "Task",
    "InProcessSyncTask",
    "ExecutorTask",
    "ProcessTask",
    "AbstractProcessManager",
    "LocalLinuxManager",
    "STDOUT",
    "ResourceManager",
    "Resources",
    "ResourceType",
    "parse_quantity",
    "AReadStream",
    "AWriteStream",
    "AReadText",
    "AWriteText",
    "async_copyfile",
    "async_copyfile_str",
    "roundrobin",
    "PipelineStatus",
    "pipeline_status",
    "pipeline_trace",
    "StatusTracker",
    "load_ipython_extension",
    "unload_ipython_extension",
    "PdtnbError",
    "load",
    "check",
    "dump",
    "DeclarationError",
    "NotDeclarableError",
    "InvalidJobIdError",
    "JobLaunchError",
    "SessionClosedError",
    "MetadataParseError",
    "TaskConfigError",
    "PipelineStateError",
    "UnknownNameError",
    "SSHConnectionError",
    "KubeConnectionError",
    "StorageFaultError",
]
# The lazy names are left out of __all__ on purpose: `from pdtnb import *` must not need every extra.


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
