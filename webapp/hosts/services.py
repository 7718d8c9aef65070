from django.utils import timezone

from webapp.hosts.models import WorkerHost


def host_heartbeat(*, hostname: str, queues: list[str], starting: bool = False) -> bool:
    """Called from the worker's main process, so liveness does not wait behind a long job.
    Returns True when the row was (re)created, i.e. no capability report is on record."""
    now = timezone.now()
    defaults = {"queues": queues, "last_seen": now, "stopped_at": None}
    if starting:
        defaults["started_at"] = now
    _, created = WorkerHost.objects.update_or_create(hostname=hostname, defaults=defaults)
    return created


def host_report(*, hostname: str, capabilities: dict) -> WorkerHost:
    now = timezone.now()
    host, _ = WorkerHost.objects.update_or_create(
        hostname=hostname,
        defaults={"capabilities": capabilities, "reported_at": now, "last_seen": now, "stopped_at": None},
    )
    return host


def host_stopped(*, hostname: str) -> None:
    WorkerHost.objects.filter(hostname=hostname).update(stopped_at=timezone.now())
