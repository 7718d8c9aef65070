"""Celery tasks: thin glue that loads rows, calls pipeline code and records the outcome."""

from celery import shared_task

from webapp.hosts.services import host_report
from workers.pipeline.hostinfo import probe_host


@shared_task(bind=True, name="hosts.report_capabilities")
def report_capabilities(self) -> None:
    """Runs on the host it describes: it is routed to that worker's own direct queue."""
    host_report(hostname=self.request.hostname, capabilities=probe_host())
