"""Runs one attempt of a job: claim it, hand the pipeline a reporter, map every way it can
end to a terminal state with a sentence for the user, and leave no partial output behind."""

import logging
import os
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections

from webapp.jobs import services
from webapp.jobs.models import Job, JobState
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
    def checkpoint(self) -> dict | None:
        return self.job.checkpoint


def scratch_dir(job_id: int) -> Path:
    return settings.DATA_DIR / "scratch" / f"job-{job_id}"


def execute(task, job_id: int, body: Callable[[JobRun], dict]) -> None:
    close_old_connections()
    host = task.request.hostname or "unknown"
    owner = f"{host}:{os.getpid()}:{task.request.id}"
    job = services.job_claim(job_id=job_id, owner=owner, host=host)
    if job is None:
        log.info("job %s is not queued any more; this delivery does nothing", job_id)
        return
    scratch = scratch_dir(job.id)
    scratch.mkdir(parents=True, exist_ok=True)
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
    except JobError as exc:
        error, detail = str(exc), traceback.format_exc()
    except Exception as exc:
        error = f"The job stopped on an unexpected error: {type(exc).__name__}: {exc}"
        detail = traceback.format_exc()
    finally:
        reporter.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if state == JobState.CANCELLED and not reporter.lease_lost:
        reporter.log("Cancelled; partial outputs removed.", level="warning")
        reporter.flush(final=True)
    services.job_finish(job_id=job.id, owner=owner, state=state, result=result, error=error, detail=detail)
