"""The pipeline administration operations, returning data instead of printing.

The command line (:mod:`pdtnb.cli`), the ``%pdt`` magics and the notebook widgets all call these,
so ``rm``, ``ls``, ``cat``, ``inject`` and ``launch`` behave the same everywhere. Names are given
as ``TASK.LINK`` for a repository or ``TASK`` for a task, as in pydatatask; a wrong name raises
:class:`~pdtnb.errors.UnknownNameError` listing the valid ones.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import InvalidJobIdError, JobLaunchError, PdtnbError, StorageFaultError, UnknownNameError, storage_fault
from .lease import acting
from .repository.base import BlobRepository, MetadataRepository, Repository
from .repository.metadata import yaml_dump, yaml_load
from .task.base import DEFAULT_LAUNCH, LaunchOptions, Task, launch_with

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = [
    "resolve_task",
    "resolve_repository",
    "resolve_target",
    "evaluate_listing",
    "read_value",
    "delete_jobs",
    "inject_value",
    "launch_job",
    "LaunchOutcome",
]


def resolve_task(pipeline: Pipeline, name: str) -> Task:
    """The task called ``name``; UnknownNameError lists the tasks otherwise."""
    try:
        return pipeline.tasks[name]
    except KeyError:
        raise UnknownNameError(f"no task named {name!r}; tasks: {', '.join(pipeline.tasks) or 'none'}") from None


def resolve_repository(pipeline: Pipeline, name: str) -> Repository:
    """The repository linked as ``TASK.LINK``."""
    if name.count(".") != 1:
        raise UnknownNameError(f"{name!r} is not a repository name: use TASK.LINK, e.g. {_example(pipeline)}")
    task_name, link_name = name.split(".")
    task = resolve_task(pipeline, task_name)
    try:
        return task.links[link_name].repo
    except KeyError:
        raise UnknownNameError(
            f"task {task_name!r} has no link {link_name!r}; its links: {', '.join(task.links) or 'none'}"
        ) from None


def resolve_target(pipeline: Pipeline, name: str) -> Repository | Task:
    """``TASK.LINK`` (a repository) or ``TASK`` (a task)."""
    return resolve_repository(pipeline, name) if "." in name else resolve_task(pipeline, name)


def _example(pipeline: Pipeline) -> str:
    for task in pipeline.tasks.values():
        for link in task.links:
            return f"{task.name}.{link}"
    return "task.link"


# ---- ls: set expressions over repositories ---------------------------------------------------

_SET_OPS = {ast.BitOr: "__or__", ast.BitAnd: "__and__", ast.Sub: "__sub__", ast.BitXor: "__xor__"}


async def evaluate_listing(pipeline: Pipeline, expression: str) -> list[str]:
    """The sorted jobs of a set expression over repositories, e.g. ``"a.input - b.done"``.

    Operands are ``TASK.LINK``; operators are ``|`` (union), ``&`` (intersection), ``-``
    (difference) and ``^``, with parentheses. Several space-separated names are united. Nothing
    else is evaluated (pydatatask used ``eval`` here).
    """
    text = expression.strip()
    if not text:
        raise PdtnbError("nothing to list: give one or more TASK.LINK names")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        # "a.x b.y" (several names) means their union.
        parts = text.split()
        try:
            trees = [ast.parse(p, mode="eval").body for p in parts]
        except SyntaxError:
            raise PdtnbError(f"cannot parse listing expression {expression!r}") from None
        tree = trees[0]
        for other in trees[1:]:
            tree = ast.BinOp(left=tree, op=ast.BitOr(), right=other)

    cache: dict[str, AbstractSet[str]] = {}

    async def ev(node: ast.AST) -> AbstractSet[str]:
        if isinstance(node, ast.BinOp) and type(node.op) in _SET_OPS:
            left, right = await ev(node.left), await ev(node.right)
            combined: set[str] = getattr(set(left), _SET_OPS[type(node.op)])(set(right))
            return combined
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            name = f"{node.value.id}.{node.attr}"
            if name not in cache:
                cache[name] = await _listing_of(pipeline, name)
            return cache[name]
        raise PdtnbError(
            f"unsupported listing expression {ast.unparse(node)!r}: use TASK.LINK names with | & - ^ and ()"
        )

    return sorted(await ev(tree))


async def _listing_of(pipeline: Pipeline, name: str) -> AbstractSet[str]:
    task_name, link = name.split(".")
    # pydatatask let task names with dashes be written with underscores in expressions.
    if task_name not in pipeline.tasks:
        for real in pipeline.tasks:
            if real.replace("-", "_") == task_name:
                task_name = real
                break
    return await resolve_repository(pipeline, f"{task_name}.{link}").job_ids()


# ---- cat / inject ----------------------------------------------------------------------------


async def read_value(pipeline: Pipeline, data: str, job: str) -> AsyncIterator[bytes]:
    """Yield the stored value of ``job`` in ``TASK.LINK`` as bytes: a blob's content, or a
    metadata value as YAML."""
    repo = resolve_repository(pipeline, data)
    # Metadata first: a YAML-in-files repository is also a blob repository, but its values are data.
    if isinstance(repo, MetadataRepository):
        if not await repo.contains(job):
            raise PdtnbError(f"{data} has no job {job!r}")
        yield yaml_dump(await repo.info(job))
    elif isinstance(repo, BlobRepository):
        if not await repo.contains(job):
            raise PdtnbError(f"{data} has no job {job!r}")
        async with await repo.open(job, "rb") as fp:
            while True:
                chunk = await fp.read(1 << 16)
                if not chunk:
                    return
                yield chunk
    else:
        raise PdtnbError(f"{data} is a {type(repo).__name__}, which holds no values to print")


@acting("inject")
async def inject_value(
    pipeline: Pipeline,
    data: str,
    job: str,
    source: bytes | str | Callable[[int], Awaitable[bytes]],
    *,
    parsed: Any = None,
) -> Repository:
    """Store a value for ``job`` in ``TASK.LINK``.

    For a blob repository ``source`` is bytes, text, or an async ``read(n)`` function that is
    called until it returns ``b""``. For a metadata repository ``source`` is YAML (or pass the
    object itself as ``parsed``). The job id is checked before anything is read or written.
    """
    repo = resolve_repository(pipeline, data)
    repo.check_job_id(job)
    if isinstance(repo, MetadataRepository):  # before blob: YAML files are both, and must parse
        if parsed is None:
            if callable(source):
                chunks = []
                while chunk := await source(1 << 20):
                    chunks.append(chunk)
                source = b"".join(chunks)
            parsed = yaml_load(source, f"the value given for {data} job {job!r}")
        await repo.dump(job, parsed)
    elif isinstance(repo, BlobRepository):
        async with await repo.open(job, "wb") as fp:
            if isinstance(source, str):
                await fp.write(source.encode())
            elif isinstance(source, (bytes, bytearray, memoryview)):
                await fp.write(bytes(source))
            else:
                while True:
                    chunk = await source(1 << 20)
                    if not chunk:
                        break
                    await fp.write(chunk)
    else:
        raise PdtnbError(f"{data} is a {type(repo).__name__}, which cannot store values")
    return repo


# ---- rm --------------------------------------------------------------------------------------


@acting("rm")
async def delete_jobs(pipeline: Pipeline, data: str, jobs: list[str], recursive: bool = False) -> list[tuple[str, str]]:
    """Delete ``jobs`` from ``TASK.LINK`` (or from a task's repositories), and with ``recursive``
    from everything downstream. ``["__all__"]`` means every job. Returns (job, repository label)
    pairs of what was deleted."""
    target = resolve_target(pipeline, data)
    if jobs != ["__all__"]:
        for job in jobs:
            if not Repository.is_valid_job_id(job):
                raise InvalidJobIdError(job, data)
    labels = _repo_labels(pipeline)
    deleted: list[tuple[str, str]] = []
    for node in pipeline.dependants(target, recursive):
        if not isinstance(node, Repository):
            continue
        if jobs == ["__all__"]:
            present = sorted(await node.job_ids())
        else:
            present = [j for j in jobs if await node.contains(j)]
        await asyncio.gather(*(node.delete(j) for j in present))
        deleted.extend((j, labels.get(id(node), repr(node))) for j in present)
    return deleted


def _repo_labels(pipeline: Pipeline) -> dict[int, str]:
    labels: dict[int, str] = {}
    for task in pipeline.tasks.values():
        for name, link in task.links.items():
            labels.setdefault(id(link.repo), f"{task.name}.{name}")
    return labels


# ---- launch ----------------------------------------------------------------------------------


@dataclass
class LaunchOutcome:
    """What a manual launch did: ``started``, or ``refused`` by a quota, ``not_ready``, or
    ``vetoed`` by a hook's ``before_launch`` (``reason`` says why)."""

    task: str
    job: str
    state: str
    done: Any = None
    reason: str | None = None

    def refusal(self) -> str | None:
        """Why the job was not started, one line for every front end (None when it was); the
        caller adds how to force it (``--force``, a checkbox) where that applies."""
        where = f"{self.task}:{self.job}"
        if self.state == "not_ready":
            return f"{where} is not ready to launch"
        if self.state == "refused":
            return f"{where} was refused by a resource quota"
        if self.state == "vetoed":
            return f"{where} was skipped by {self.reason}"
        return None

    @property
    def forcible(self) -> bool:
        """Whether launching with ``force`` would start it anyway (not ready, or vetoed)."""
        return self.state in ("not_ready", "vetoed")


@acting("launch")
async def launch_job(
    pipeline: Pipeline,
    task_name: str,
    job: str,
    sync: bool = False,
    meta: bool = True,
    force: bool = False,
    wait: bool | None = None,
) -> LaunchOutcome:
    """Start ``job`` of ``task_name`` by hand.

    Without ``force`` the job must be ready. ``sync`` runs it to completion in this process where
    the task supports that. Jobs of tasks whose work dies with this process (executor threads) are
    waited for unless ``wait=False``.
    """
    task = resolve_task(pipeline, task_name)
    for link_name, link in task.links.items():
        if not link.repo.is_valid_job_id(job):
            raise InvalidJobIdError(job, f"task {task_name!r} (link {link_name!r})")
    if not Repository.is_valid_job_id(job):
        raise InvalidJobIdError(job, f"task {task_name!r}")
    if not force and not await task.ready.contains(job):
        return LaunchOutcome(task_name, job, "not_ready")
    previous = await task.previous_record(job) if meta else None
    options = LaunchOptions(sync=sync, metadata=meta, force=force, previous=previous)
    # A launch by hand is asked as a launch phase asks, unless forced.
    reason = await pipeline.admit(task, job, options.attempt, ask=not force)
    if reason is not None:
        return LaunchOutcome(task_name, job, "vetoed", reason=reason)
    task.stamp_fingerprint()  # the code as it is now is what this job runs
    if options == DEFAULT_LAUNCH:
        options = DEFAULT_LAUNCH
    try:
        started = await launch_with(task, job, options)
    except StorageFaultError:
        raise  # the disk failed, not the job: nothing recorded
    except Exception as e:
        fault = storage_fault(e, note=f"nothing was lost: {task_name} {job} stays ready")
        if fault is not None:
            raise fault from e
        await task.record_failure(job, e, phase="launch", options=options)
        raise JobLaunchError(task_name, job, e) from e
    if started is False:
        return LaunchOutcome(task_name, job, "refused")
    if wait is None:
        wait = not getattr(task, "jobs_outlive_process", True)
    if wait and not sync:
        await _wait_for(task, job)
    done_repo = task.done_repository
    done = await done_repo.info(job) if done_repo is not None and await done_repo.contains(job) else None
    return LaunchOutcome(task_name, job, "started", done)


async def _wait_for(task: Task, job: str) -> None:
    live = task.live_repository
    while live is not None and await live.contains(job):
        await asyncio.sleep(0.02)
        await task.update()
    await task.update()
