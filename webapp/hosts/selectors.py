from webapp.hosts.models import WorkerHost


def hosts_by_status() -> tuple[list[WorkerHost], list[WorkerHost]]:
    """(online, offline) worker hosts; hosts are shared by all teams and hold no team data."""
    hosts = list(WorkerHost.objects.all())
    return [h for h in hosts if h.is_online], [h for h in hosts if not h.is_online]
