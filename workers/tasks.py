"""Celery tasks: thin glue. Each job kind is a task `jobs.<kind>` that loads the job, calls
the pipeline and returns the result summary; workers/runner.py does the rest."""

from collections.abc import Callable

from celery import shared_task

from webapp.hosts.services import host_report
from workers.pipeline.hostinfo import probe_host
from workers.pipeline.probe import ProbeConfig, run_probe
from workers.runner import JobRun, execute


@shared_task(bind=True, name="hosts.report_capabilities")
def report_capabilities(self) -> None:
    """Runs on the host it describes: it is routed to that worker's own direct queue."""
    host_report(hostname=self.request.hostname, capabilities=probe_host())


def job_task(kind: str) -> Callable:
    def register(body: Callable[[JobRun], dict]):
        def run(self, job_id: int) -> None:
            execute(self, job_id, body)

        run.__doc__ = body.__doc__
        return shared_task(bind=True, name=f"jobs.{kind}")(run)

    return register


@job_task("probe")
def probe(run: JobRun) -> dict:
    """Measure this worker's matmul throughput."""
    config = ProbeConfig(
        rounds=run.params["rounds"], seconds_per_round=run.params["seconds_per_round"], matrix_size=run.params["matrix_size"]
    )
    result = run_probe(config, run.reporter, resume=run.checkpoint)
    return {"devices": result.summary()}
