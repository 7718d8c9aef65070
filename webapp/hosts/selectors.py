from webapp.hosts.models import WorkerHost


def hosts_by_status() -> tuple[list[WorkerHost], list[WorkerHost]]:
    """(online, offline) worker hosts; hosts are shared by all teams and hold no team data."""
    hosts = list(WorkerHost.objects.all())
    return [h for h in hosts if h.is_online], [h for h in hosts if not h.is_online]


def most_training_gpus() -> int:
    """The most GPUs of one host that any known worker (online or not: a fleet scaled to zero is
    still the fleet) trains a job on: n for one that takes `train_gpus_<n>`, 1 for one that takes
    `train`, 0 when none trains."""
    most = 0
    for queues in WorkerHost.objects.values_list("queues", flat=True):
        for queue in queues or []:
            if queue == "train":
                most = max(most, 1)
            elif queue.startswith("train_gpus_") and queue.removeprefix("train_gpus_").isdigit():
                most = max(most, int(queue.removeprefix("train_gpus_")))
    return most
