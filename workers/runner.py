"""Runs one attempt of a job: claim it, give it a folder of its own, run its pipeline step in the
jail, map every way it can end to a terminal state with a sentence for the user, and leave no
partial output behind."""

import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from webapp.core.files import delete_tree
from webapp.core.quota import QuotaExceeded
from webapp.jobs import services
from webapp.jobs.kinds import KINDS
from webapp.jobs.models import ACTIVE_STATES, Job, JobState
from workers.jail import Jail, Limits, run_jailed
from workers.pipeline.reporting import Cancelled, JobError
from workers.progress import JobReporter

log = logging.getLogger(__name__)


@dataclass
class JobRun:
    job: Job
    reporter: JobReporter
    scratch: Path  # this attempt's private folder; removed when the attempt ends

    @property
    def params(self) -> dict:
        return self.job.params

    @property
    def step(self) -> str:
        """The pipeline entry its kind declares (webapp/jobs/kinds.py), run in the jail."""
        return KINDS[self.job.kind].step_name

    @property
    def checkpoint(self) -> dict | None:
        return self.job.checkpoint

    @property
    def work(self) -> Path:
        """The jailed step's work folder: its outputs, to check and publish once it has ended."""
        return self.scratch / "jail" / "work"

    @property
    def inputs(self) -> Path:
        """Where the worker stages what the step reads, when storage is not a local folder."""
        return self.scratch / "inputs"

    @property
    def jail(self) -> Jail:
        return worker_jail(self.job.id)

    @property
    def jail_tmp(self) -> Path:
        """The jail's /tmp, where the worker may leave what the step needs a writable copy of."""
        return self.scratch / "jail" / "tmp"

    def jailed(self, step: str, request: dict, *, reads: list[Path], environment: dict | None = None,
               writes: list[Path] = (), **checkpoints) -> dict:
        """Run pipeline step `step` in the jail; it sees `reads` (read-only), `writes` and its work folder.
        `checkpoints`: run_jailed's on_checkpoint or on_checkpoint_file, for a step that resumes."""
        jail = self.jail
        if environment:
            jail = replace(jail, environment=(*jail.environment, *environment.items()))
        return run_jailed(step, {**request, "work": str(self.work)}, jail=jail, folder=self.scratch / "jail",
                          reads=reads, writes=writes, reporter=self.reporter, **checkpoints)


JAIL_USERS = 1000  # a root worker's jobs run as JAIL_UID + (job number mod this)


def worker_jail(job_id: int) -> Jail:
    """This worker's jail for a job, from its settings: a job may use the host's cores for its whole
    time limit, and runs as a user of its own, so its process limit is its alone."""
    limits = Limits(
        memory_bytes=int(settings.JAIL_MEMORY_GB * 2**30),
        cpu_seconds=settings.JOB_TIME_LIMIT * (os.cpu_count() or 1),
        wall_seconds=settings.JOB_TIME_LIMIT,
        max_processes=settings.JAIL_MAX_PROCESSES,
        max_file_bytes=int(settings.JAIL_MAX_FILE_GB * 2**30),
    )
    return Jail(mode=settings.VINTNER_JAIL, uid=settings.JAIL_UID + job_id % JAIL_USERS, limits=limits,
                readable=(settings.TORCH_HOME / "hub" / "checkpoints",),
                environment=(("TORCH_HOME", str(settings.TORCH_HOME)),),  # torch looks for the weights there
                cancel_grace_seconds=settings.JOB_CANCEL_GRACE_SECONDS)


def scratch_dir(job_id: int, attempt: int) -> Path:
    return settings.DATA_DIR / "scratch" / f"job-{job_id}" / f"attempt-{attempt}"


def scratch_sweep() -> list[int]:
    """Remove this host's folders of jobs that are over: a killed attempt's, whose job then ran
    again elsewhere or was given up. A job still active keeps its folder (another worker process
    on this host may be running it)."""
    folders = {int(path.name.removeprefix("job-")): path
               for path in (settings.DATA_DIR / "scratch").glob("job-*") if path.name.removeprefix("job-").isdigit()}
    active = set(Job.objects.filter(id__in=folders, state__in=ACTIVE_STATES).values_list("id", flat=True))
    for job_id in folders.keys() - active:
        shutil.rmtree(folders[job_id], ignore_errors=True)
    return sorted(folders.keys() - active)


def _through_outages(write: Callable[[], object], *, first: float = 0.5, last: float = 8.0):
    """A write that outlives a brief database outage (a Postgres restart, a failover): tried again
    with backoff while the lease holds. It must be idempotent; job_finish is (it needs the lease),
    so a retried end never ends a later attempt. Past the lease the reconciler decides instead."""
    deadline, pause = time.monotonic() + settings.JOB_LEASE_SECONDS, first
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError):
            if time.monotonic() + pause > deadline:
                raise
            log.warning("database unreachable; trying again in %.1f s", pause)
            time.sleep(pause)
            close_old_connections()  # drops the connection the error came through, if it is broken
            pause = min(pause * 2, last)


def execute(task, job_id: int, body: Callable[[JobRun], dict]) -> None:
    close_old_connections()
    host = task.request.hostname or "unknown"
    owner = f"{host}:{os.getpid()}:{task.request.id}"
    job = services.job_claim(job_id=job_id, owner=owner, host=host)
    if job is None:
        log.info("job %s is not queued any more; this delivery does nothing", job_id)
        services.job_note_duplicate(job_id=job_id, host=host)
        return
    # A killed attempt on this host left its folder behind: it is swept before this one starts.
    shutil.rmtree(scratch_dir(job.id, 0).parent, ignore_errors=True)
    scratch = scratch_dir(job.id, job.attempts)
    scratch.mkdir(parents=True)
    reporter = JobReporter(job.id, owner, progress=job.progress, stage=job.stage).start()
    state, result, error, detail = JobState.FAILED, None, "", ""
    try:
        result = body(JobRun(job=job, reporter=reporter, scratch=scratch))
        state = JobState.SUCCEEDED
    except Cancelled:
        state = JobState.CANCELLED
    except SoftTimeLimitExceeded:
        error = f"The job ran past the time limit of {settings.JOB_TIME_LIMIT / 3600:g} hours and was stopped."
        detail = traceback.format_exc()
    except JobError as exc:  # the jail's carry what the jailed step said as detail
        error, detail = str(exc), getattr(exc, "detail", "") or traceback.format_exc()
    except QuotaExceeded as exc:  # what it made does not fit the team's quota: published nothing
        error, detail = f"What this job made was not kept: {exc}", traceback.format_exc()
    except (OperationalError, InterfaceError):
        # The database went away mid-attempt (a restart, a failover): the attempt records no end.
        # Its lease lapses and the reconciler runs the job again, after this attempt has stopped.
        log.warning("job %s: database unreachable; the attempt ends and the job is left to the reconciler",
                    job.id, exc_info=True)
        state = None
    except Exception as exc:
        error = f"The job stopped on an unexpected error: {type(exc).__name__}: {exc}"
        detail = traceback.format_exc()
    finally:
        reporter.close()
        shutil.rmtree(scratch.parent, ignore_errors=True)
    if state is None:  # left to the reconciler
        return
    if not Job.objects.filter(id=job.id).exists():  # its project or team was deleted while it ran
        log.info("job %s was deleted while it ran; removing what it stored since", job.id)
        delete_tree(f"jobs/{job.id}")
        return
    if state == JobState.CANCELLED and not reporter.lease_lost:
        reporter.log("Cancelled; partial outputs removed.", level="warning")
        reporter.flush(final=True)
    _through_outages(lambda: services.job_finish(job_id=job.id, owner=owner, state=state, result=result,
                                                error=error, detail=detail))
