"""Tasks: the units of work a pipeline launches and reaps."""

from .base import STDOUT, Link, Task
from .executor import ExecutorTask
from .inprocess import InProcessSyncTask
from .process import ProcessTask

__all__ = ["STDOUT", "Link", "Task", "ExecutorTask", "InProcessSyncTask", "ProcessTask"]
