"""The failure loop: find, explain, retry and kill jobs, returning data instead of printing.

The command line (``failed``, ``show``, ``why``, ``retry``, ``kill``), the ``%pdt`` magics and the
dashboard all call these functions and render what they return, so a job is explained the same
way everywhere. Each result has a ``to_text()`` for terminals and ``to_dict()`` for JSON.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .admin import delete_jobs, resolve_task
from .errors import PdtnbError, TaskConfigError, short_job_id
from .lease import LeaseHeldError, acting
from .outcomes import base_of, outcome_index
from .outdated import outdated_jobs, outdated_reasons
from .record import JobRecord, Outcome, read_record
from .repository.base import Repository
from .status import pipeline_trace
from .task.base import Task, utcnow

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = [
    "FailedJob",
    "JobDetails",
    "Explanation",
    "RetryResult",
    "failed_jobs",
    "show_job",
    "why_job",
    "retry_jobs",
    "kill_job",
    "short_id",
]


def short_id(job: str, limit: int = 100) -> str:
    """A job id as messages show it: cut past ``limit`` characters (ids can be long or hostile)."""
    return job if len(job) <= limit else short_job_id(job, limit)


def _check_job(task: Task, job: str) -> None:
    if not Repository.is_valid_job_id(job) and not any(link.repo.is_valid_job_id(job) for link in task.links.values()):
        raise PdtnbError(f"invalid job id {short_id(job)!r} for task {task.name!r}")


# ---- failed ----------------------------------------------------------------------------------


@dataclass
class FailedJob:
    """One failed (or retrying, or unreadable) job of one task."""

    task: str
    job: str
    state: str
    attempt: int
    reason: str
    end_time: datetime | None = None
    retry_at: datetime | None = None

    def line(self) -> str:
        """``TASK JOB ATTEMPT REASON`` (with the retry time for a retrying job)."""
        reason = self.reason
        if self.state == "retrying" and self.retry_at is not None:
            reason = f"{reason} (retry at {self.retry_at.isoformat(timespec='seconds')})"
        return f"{self.task} {self.job} {self.attempt} {reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "job": self.job,
            "state": self.state,
            "attempt": self.attempt,
            "reason": self.reason,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
        }


async def failed_jobs(pipeline: Pipeline, tasks: list[str] | None = None) -> list[FailedJob]:
    """Every failed or retrying job of the given tasks (all by default), with its reason, in task
    order then job order. Records that cannot be read are listed as ``corrupt``."""
    chosen = [resolve_task(pipeline, t) for t in tasks] if tasks else list(pipeline.tasks.values())
    out: list[FailedJob] = []
    for task in chosen:
        done = task.done_repository
        if done is None:
            continue
        index = await outcome_index(done).refresh(done, full=done.change_token() is None)
        live_repo = task.live_repository
        live = await live_repo.job_ids() if live_repo is not None else frozenset()
        for job, problem in sorted(index.corrupt.items()):
            out.append(FailedJob(task.name, job, "corrupt", 0, f"unreadable record: {problem}"))
        jobs = sorted(j for j in index.failed | index.retrying.keys() if j not in live)
        for job in jobs:
            try:
                record = read_record(await done.info(job))
            except Exception as e:
                out.append(FailedJob(task.name, job, "corrupt", 0, f"unreadable record: {e}"))
                continue
            if record.succeeded:
                continue  # rewritten since the index was read
            state = "retrying" if record.retrying else "failed"
            out.append(
                FailedJob(task.name, job, state, record.attempt, record.reason_line(), record.end_time, record.retry_at)
            )
    return out


# ---- show ------------------------------------------------------------------------------------


@dataclass
class JobDetails:
    """Everything about one job of one task: its state, its record and its inputs."""

    task: str
    job: str
    state: str
    record: JobRecord | None
    inputs: list[tuple[str, bool]] = field(default_factory=list)
    live: Any = None
    #: For an outdated job: what changed in its task's code since it ran, one phrase per part.
    changed: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "job": self.job,
            "state": self.state,
            "record": self.record.to_dict() if self.record is not None else None,
            "inputs": {name: present for name, present in self.inputs},
            "live": self.live,
            "changed": self.changed,
        }

    def user_frames_first(self) -> tuple[list[Any], list[Any]]:
        """The record's frames split into the user's and the rest (pdtnb, libraries)."""
        frames = self.record.frames if self.record is not None else []
        return [f for f in frames if f.user], [f for f in frames if not f.user]

    def to_text(self) -> str:
        """Readable lines: state, timings, the failure with the user's frames, output tails,
        attempts and inputs."""
        lines = [f"{self.task} {short_id(self.job)}: {self.state}"]
        r = self.record
        if self.live is not None:
            lines.append(f"  running: {self.live}")
        if self.changed:
            lines.append(f"  outdated: since it ran, {'; '.join(self.changed)}")
        if r is not None:
            lines.extend(_record_lines(r))
        if self.inputs:
            shown = ", ".join(f"{name} {'present' if present else 'MISSING'}" for name, present in self.inputs)
            lines.append(f"  inputs: {shown}")
        return "\n".join(lines) + "\n"


def _record_lines(r: JobRecord) -> list[str]:
    lines = [f"  attempt {r.attempt}: {r.outcome}" + (f" on {r.host}" if r.host else "")]
    if r.start_time is not None:
        took = f", took {(r.end_time - r.start_time).total_seconds():.3f} s" if r.end_time else ""
        lines.append(f"  started {r.start_time.isoformat()}{took}")
    if r.failed:
        lines.append(f"  reason: {r.reason_line()}")
        if r.retry_at is not None:
            lines.append(f"  next attempt due at {r.retry_at.isoformat(timespec='seconds')}")
        user = [f for f in r.frames if f.user]
        if user:
            lines.append("  traceback (your code; innermost last):")
            for f in user:
                lines.append(f'    File "{f.file}", line {f.line}, in {f.function}')
                if f.code:
                    lines.append(f"      {f.code}")
            hidden = len(r.frames) - len(user)
            if hidden:
                noun = "frame" if hidden == 1 else "frames"
                lines.append(f"    ({hidden} {noun} of pdtnb and libraries not shown: `cat` the record for all)")
            if r.error_type:
                lines.append(f"  {r.error_type}: {r.message or ''}".rstrip())
        elif r.traceback:
            lines.append("  traceback:")
            lines.extend("    " + line for line in r.traceback.splitlines())
        elif r.error_type:
            lines.append(f"  {r.error_type}: {r.message or ''}".rstrip())
    for label, tail in (("stdout", r.stdout_tail), ("stderr", r.stderr_tail)):
        if tail:
            lines.append(f"  {label} (last lines):")
            lines.extend("    " + line for line in tail.splitlines()[-20:])
    if r.history:
        lines.append("  earlier attempts:")
        for h in r.history:
            earlier = read_record(h)
            lines.append(f"    {earlier.attempt}: {earlier.outcome}: {earlier.reason_line()}")
    return lines


async def _state_of(pipeline: Pipeline, task: Task, job: str) -> str:
    trace = await pipeline_trace(pipeline, [job])
    return (trace.task(task.name).job_states or {}).get(job, "waiting")


async def _known_anywhere(pipeline: Pipeline, job: str) -> bool:
    for t in pipeline.tasks.values():
        for link in t.links.values():
            try:
                if await link.repo.contains(job):
                    return True
            except Exception:
                continue
    return False


async def show_job(pipeline: Pipeline, task_name: str, job: str) -> JobDetails:
    """Everything about ``job`` of ``task_name`` (raises PdtnbError for a job no repository holds)."""
    task = resolve_task(pipeline, task_name)
    _check_job(task, job)
    if not await _known_anywhere(pipeline, job):
        raise PdtnbError(f"no repository of this pipeline holds job {short_id(job)!r}")
    state = await _state_of(pipeline, task, job)
    record = None
    done = task.done_repository
    if done is not None and await done.contains(job):
        try:
            record = read_record(await done.info(job))
        except Exception as e:
            state = "corrupt"
            record = JobRecord.from_dict(f"unreadable: {e}")
    inputs = []
    for name, link in task.links.items():
        if link.required_for_start:
            inputs.append((name, await link.repo.contains(job)))
    live = None
    live_repo = task.live_repository
    if live_repo is not None and await live_repo.contains(job):
        try:
            live = await live_repo.info(job)
        except Exception:
            live = "yes"
        if isinstance(live, dict):
            live = ", ".join(f"{k} {v}" for k, v in live.items())
    changed = outdated_reasons(task, record) if state == "outdated" and record is not None else None
    return JobDetails(task.name, job, state, record, inputs, live, changed)


# ---- why -------------------------------------------------------------------------------------


@dataclass
class Explanation:
    """Why a job is or is not running, in words."""

    task: str
    job: str
    state: str
    reasons: list[str]

    def to_text(self) -> str:
        return f"{self.task} {short_id(self.job)}: {self.state}\n" + "".join(f"  - {r}\n" for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "job": self.job, "state": self.state, "reasons": list(self.reasons)}


async def why_job(pipeline: Pipeline, task_name: str, job: str) -> Explanation:
    """Why ``job`` of ``task_name`` is in its state: which required links lack it, which inhibiting
    links hold it, which upstream job failed, which quota holds it, which hook skips it, when its
    retry is due."""
    task = resolve_task(pipeline, task_name)
    _check_job(task, job)
    if not await _known_anywhere(pipeline, job):
        raise PdtnbError(f"no repository of this pipeline holds job {short_id(job)!r}")
    state = await _state_of(pipeline, task, job)
    reasons: list[str] = []
    if task.disabled:
        reasons.append(f"task {task.name} is disabled: none of its jobs is launched")
    done = task.done_repository
    record = None
    if done is not None and await done.contains(job):
        try:
            record = read_record(await done.info(job))
        except Exception as e:
            reasons.append(f"its record in {task.name}.{task.done_link} cannot be read: {e}")
    if state == "live":
        reasons.append("it is running now")
    elif record is not None:
        reasons.extend(_record_reasons(task, job, state, record))
    upstream_failures = await _upstream_failures(pipeline, task, job)
    if state in ("waiting", "blocked", "ready"):
        reasons.extend(upstream_failures)
        reasons.extend(await _link_reasons(task, job))
    if state == "ready":
        reasons.extend(await _ready_reasons(pipeline, task, job))
    if not reasons:
        reasons.append(f"it is {state}")
    return Explanation(task.name, job, state, reasons)


def _record_reasons(task: Task, job: str, state: str, record: JobRecord) -> list[str]:
    """What the job's record in the done link says about its last attempt (a success, possibly
    outdated, or a failure and its retry), and the command that would run it again."""
    reasons: list[str] = []
    when = f" at {record.end_time.isoformat(timespec='seconds')}" if record.end_time else ""
    if record.succeeded and state == "done":
        reasons.append(f"attempt {record.attempt} succeeded{when}; `rm {task.name}.{task.done_link} {job}` re-runs it")
    elif record.succeeded and state == "outdated":
        changes = outdated_reasons(task, record) or ["the task's code changed"]
        reasons.append(
            f"attempt {record.attempt} succeeded{when}, but the task's code has changed since: " + "; ".join(changes)
        )
        again = (
            "it runs again at the next launch phase (rerun_outdated)"
            if task.rerun_outdated
            else (f"`retry {task.name} {job} --outdated` runs it again (`-r`: and what was made from it downstream)")
        )
        reasons.append(again)
    elif record.failed:
        reasons.append(f"attempt {record.attempt} ended: {record.outcome}: {record.reason_line()}")
        if record.retrying and record.retry_at is not None:
            wait = (record.retry_at - utcnow()).total_seconds()
            due = "now" if wait <= 0 else f"in {wait:.0f} s"
            reasons.append(f"its next attempt is due {due} ({record.retry_at.isoformat(timespec='seconds')})")
        else:
            reasons.append(f"no retry is scheduled: `retry {task.name} {job}` makes it ready again")
    return reasons


async def _link_reasons(task: Task, job: str) -> list[str]:
    """The links holding a job that has not started: required links that lack it (or whose upstream
    job has not finished), then inhibiting links (other than done and live) that hold it."""
    reasons: list[str] = []
    for name, link in task.links.items():
        if link.required_for_start and not link.require_success and not await link.repo.contains(job):
            reasons.append(f"required link {task.name}.{name} does not hold it")
        elif link.required_for_start and link.require_success and not await base_of(link.repo).contains(job):
            reasons.append(f"required link {task.name}.{name} does not hold it (the upstream job has not finished)")
    for name, link in task.links.items():
        if link.inhibits_start and await link.repo.contains(job) and name not in (task.done_link, task.live_link):
            reasons.append(f"inhibiting link {task.name}.{name} holds it")
    return reasons


async def _ready_reasons(pipeline: Pipeline, task: Task, job: str) -> list[str]:
    """What stands between a ready job and its launch: the task's quota, its priority, a hook's
    veto; with neither quota nor veto in the way, that it goes at the next launch phase."""
    quota = _quota_reasons(task)
    reasons = list(quota)
    if pipeline.priority is not None:
        reasons.append(f"its priority is {pipeline.priority(task.name, job)}: higher priorities launch first")
    veto = await _veto_reason(pipeline, task, job)
    if veto is not None:
        reasons.append(veto)
    elif not quota:
        reasons.append("it will be launched in the next launch phase (`update`, `run`, or Step launch)")
    return reasons


async def _veto_reason(pipeline: Pipeline, task: Task, job: str) -> str | None:
    """Why a hook skips the ready ``job`` (:mod:`pdtnb.hooks`): the veto this pipeline object met
    at its last launch phase, else (another process runs the pipeline: ``why`` from a terminal)
    the answer the hooks' ``before_launch`` give now; None when they let it go."""
    last = pipeline.last_veto(task.name, job)
    if last is not None:
        reason, when = last
        return f"skipped by a hook at the launch phase of {when.isoformat(timespec='seconds')}: {reason}"
    hooks = task.hook_set
    if hooks is None or not hooks.gates:
        return None
    veto = await hooks.admit(task, job)
    return None if veto is None else f"a hook skips it (asked now): {veto}"


async def _upstream_failures(pipeline: Pipeline, task: Task, job: str, depth: int = 0) -> list[str]:
    """Why ``job`` is held upstream: the failed upstream attempt, followed through blocked tasks."""
    found: list[str] = []
    for name, upstream in pipeline.upstream_tasks(task):
        up_done = upstream.done_repository
        link = task.links[name]
        if up_done is None or base_of(link.repo) is not link.repo:
            continue
        if await up_done.contains(job):
            try:
                up = read_record(await up_done.info(job))
            except Exception as e:
                found.append(f"upstream {upstream.name} {job} has an unreadable record: {e}")
                continue
            if up.failed:
                verdict = "will be retried" if up.retrying else "failed"
                found.append(f"upstream {upstream.name} {job} {verdict}: {up.reason_line()}")
        elif depth < 20:
            deeper = await _upstream_failures(pipeline, upstream, job, depth + 1)
            if deeper:
                found.append(f"upstream {upstream.name} {job} is blocked")
                found.extend(deeper)
    return found


def _quota_reasons(task: Task) -> list[str]:
    manager = getattr(task, "resource_manager", None) or getattr(task, "resources", None)
    used = getattr(manager, "used", None)
    quota = getattr(manager, "quota", None)
    if used is None or quota is None:
        return []
    return [f"quota: its resource manager has {used} in use of {quota}"]


# ---- retry -----------------------------------------------------------------------------------


@dataclass
class RetryResult:
    """What ``retry`` reset: (job, repository) pairs deleted, and the jobs now ready again."""

    task: str
    jobs: list[str]
    deleted: list[tuple[str, str]]

    def to_text(self, limit: int = 20) -> str:
        if not self.jobs:
            return f"{self.task}: nothing to retry\n"
        shown = ", ".join(short_id(j) for j in self.jobs[:limit])
        more = f" and {len(self.jobs) - limit} more" if len(self.jobs) > limit else ""
        downstream = [d for d in self.deleted if not d[1].startswith(f"{self.task}.")]
        extra = f"; cleared {len(downstream)} downstream entries" if downstream else ""
        noun = "job" if len(self.jobs) == 1 else "jobs"
        return f"{self.task}: reset {len(self.jobs)} {noun} ({shown}{more}){extra}\n"

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "jobs": self.jobs, "deleted": [list(d) for d in self.deleted]}


@acting("retry")
async def retry_jobs(
    pipeline: Pipeline,
    task_name: str,
    jobs: list[str] | None = None,
    *,
    failed: bool = False,
    outdated: bool = False,
    recursive: bool = False,
) -> RetryResult:
    """Make failed jobs of ``task_name`` ready again by clearing their records (``failed``: every
    failed, retrying or unreadable one); ``outdated``: the jobs done by code that has changed
    since (:mod:`pdtnb.outdated`), every one, or those of ``jobs`` when given; ``recursive``
    also clears what the jobs' records fed downstream. A job that is live, succeeded (and, with
    ``outdated``, is not outdated), or has no record is refused with its reason."""
    task = resolve_task(pipeline, task_name)
    done = task.done_repository
    if done is None:
        raise PdtnbError(f"task {task.name!r} has no done repository: its failures are not recorded")
    chosen = list(jobs or [])
    stale: set[str] = set(await outdated_jobs(task)) if outdated else set()
    if outdated and not chosen:
        chosen = sorted(stale)
        if not chosen:
            return RetryResult(task.name, [], [])
    if failed:
        chosen += [f.job for f in await failed_jobs(pipeline, [task.name]) if f.job not in chosen]
    elif not chosen:
        raise PdtnbError(
            "retry: give one or more jobs, --failed for every failed job of the task, "
            "or --outdated for every job done by code that has changed since"
        )
    live_repo = task.live_repository
    for job in chosen:
        _check_job(task, job)
        if live_repo is not None and await live_repo.contains(job):
            raise PdtnbError(f"{task.name} {short_id(job)} is running; kill it first")
        if not await done.contains(job):
            raise PdtnbError(f"{task.name} {short_id(job)} has no record to retry (it never ran, or was reset)")
        try:
            record = read_record(await done.info(job))
        except Exception:
            continue  # an unreadable record: clearing it is the fix
        if record.succeeded and job not in stale:
            if outdated:
                raise PdtnbError(
                    f"{task.name} {short_id(job)} succeeded with the task's code as it is now: it is not outdated"
                )
            raise PdtnbError(
                f"{task.name} {short_id(job)} succeeded; use `rm {task.name}.{task.done_link} {job}` to run it again"
            )
    if not chosen:
        return RetryResult(task.name, [], [])
    deleted = await delete_jobs(pipeline, f"{task.name}.{task.done_link}", chosen, recursive)
    index = outcome_index(done)
    for job in chosen:
        index.note_deleted(job)
    pipeline.wake()
    return RetryResult(task.name, chosen, deleted)


# ---- kill ------------------------------------------------------------------------------------


async def kill_job(pipeline: Pipeline, task_name: str, job: str) -> JobRecord | None:
    """Stop the live ``job`` of ``task_name`` and record it as killed; returns its record.

    When another controller is running the pipeline (it holds the lease), the job is marked for
    that controller to kill at its next round (:meth:`~pdtnb.Task.request_kill`; processes and
    pods), and this waits for the record it writes.
    """
    task = resolve_task(pipeline, task_name)
    _check_job(task, job)
    try:
        async with pipeline.control("kill"):
            return await _kill_here(pipeline, task, job)
    except LeaseHeldError as held:
        try:
            requested = await task.request_kill(job)
        except TaskConfigError as e:
            raise PdtnbError(f"{task.name} {short_id(job)}: {e}; {held}") from None
    if not requested:
        state = await _state_of(pipeline, task, job)
        raise PdtnbError(f"{task.name} {short_id(job)} is not running (it is {state})")
    return await _await_kill_record(task, job, KILL_REQUEST_WAIT)


#: How long ``kill`` waits for the controller running the pipeline to act on its request.
KILL_REQUEST_WAIT = 60.0


async def _kill_here(pipeline: Pipeline, task: Task, job: str) -> JobRecord | None:
    if not await task.kill(job):
        state = await _state_of(pipeline, task, job)
        raise PdtnbError(f"{task.name} {short_id(job)} is not running here (it is {state})")
    # The job may be reaped by a run going on in this process: give it a moment to record.
    return await _await_kill_record(task, job, 5.0)


async def _await_kill_record(task: Task, job: str, seconds: float) -> JobRecord | None:
    """The record of the killed ``job`` once written (None without a done repository, or if it
    did not come within ``seconds``)."""
    done = task.done_repository
    if done is None:
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    record = None
    while loop.time() < deadline:
        if await done.contains(job):
            record = read_record(await done.info(job))
            if record.outcome is not Outcome.SUCCESS:
                break
        await asyncio.sleep(0.05)
    return record
