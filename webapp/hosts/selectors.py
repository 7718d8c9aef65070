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


def smallest_train_gpu() -> dict | None:
    """The GPU with the least memory among online workers that take train jobs ({host, name,
    memory_bytes}): a train job may land on any of them. None: none of them has a GPU."""
    online, _ = hosts_by_status()
    gpus = [{"host": host.hostname, "name": str(gpu.get("name") or "a GPU"), "memory_bytes": gpu["memory_bytes"]}
            for host in online if any(q == "train" or q.startswith("train_gpus_") for q in host.queues or [])
            for gpu in ((host.capabilities or {}).get("torch") or {}).get("cuda_gpus") or []
            if isinstance(gpu, dict) and type(gpu.get("memory_bytes")) is int and gpu["memory_bytes"] > 0]
    return min(gpus, key=lambda gpu: gpu["memory_bytes"]) if gpus else None
