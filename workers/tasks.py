"""Celery tasks: thin glue. Each job kind declared in webapp/jobs/kinds.py is a task `jobs.<kind>`
whose body is its worker module's `perform` (workers/kinds/<kind>.py): stage what the job reads,
run its step in the jail (`run.jailed`: workers/pipeline/steps.py), publish what the step made,
checked; workers/runner.py does the rest. Nothing here opens a model or an archive."""

from collections.abc import Callable
from importlib import import_module

from celery import shared_task
from django.conf import settings

from webapp.hosts.services import host_report
from webapp.jobs.kinds import KINDS, JobKind
from workers.jail import jail_problem
from workers.pipeline.hostinfo import probe_host
from workers.runner import JobRun, execute


@shared_task(bind=True, name="hosts.report_capabilities")
def report_capabilities(self) -> None:
    """Runs on the host it describes: it is routed to that worker's own direct queue."""
    jail = {"mode": settings.VINTNER_JAIL, "problem": jail_problem() if settings.VINTNER_JAIL == "bwrap" else "",
            "memory_gb": settings.JAIL_MEMORY_GB, "max_processes": settings.JAIL_MAX_PROCESSES}
    host_report(hostname=self.request.hostname, capabilities={**probe_host(), "jail": jail})


def job_task(kind: JobKind) -> Callable:
    """The Celery task `jobs.<kind>`: claim the job, perform it, record how it ended."""
    body: Callable[[JobRun], dict] = import_module(kind.worker_module).perform

    def run(self, job_id: int) -> None:
        execute(self, job_id, body)

    run.__name__, run.__doc__ = kind.name, body.__doc__
    return shared_task(bind=True, name=kind.task_name)(run)


TASKS = {name: job_task(kind) for name, kind in KINDS.items()}
