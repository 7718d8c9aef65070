"""One Celery worker per GPU of this host, each pinned to its own (CUDA_VISIBLE_DEVICES) under
its own node name; on a host without a GPU, the usual single worker.

    python -m workers.gpus -Q train --hostname train@%h --loglevel INFO
    python -m workers.gpus --gpus-per-worker 4 -Q train --hostname train@%h     # multi-GPU trainings
    python -m workers.gpus --ping -Q train --hostname train@%h                  # health check

Every option but the launcher's own goes to `celery -A webapp worker` as it is, except three it
sets per worker: the node name (`train@%h` becomes `train-gpu3@%h`), the concurrency (1: a GPU
runs one job at a time) and the queues: a worker that owns n GPUs and takes `train` also takes
`train_gpus_<k>` for every k up to n that a training may ask for (workers/pipeline/params.py), so
a job on k GPUs reaches only a worker that owns that many. The host's GPUs are split in order into
workers of `--gpus-per-worker` each (the rest, if any, makes a smaller one).

The launcher stays in front: it passes SIGTERM and SIGINT on to every worker (Celery's warm
shutdown lets running jobs finish) and starts again, after a pause, a worker that ended by itself.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from workers.pipeline.params import GPU_COUNTS, gpu_queue

RESTART_SECONDS = 5


@dataclass(frozen=True)
class Worker:
    name: str  # its node name, e.g. train-gpu3@%h
    gpus: tuple[str, ...]  # the host's ids of the GPUs it owns (CUDA_VISIBLE_DEVICES); () on a CPU host
    argv: tuple[str, ...]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        return env


def host_gpus() -> list[str]:
    """The host's ids of the GPUs this process may use: CUDA_VISIBLE_DEVICES' entries, else 0…n-1."""
    from workers.pipeline.hostinfo import owned_gpus

    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # count through NVML: no CUDA context here
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    owned = owned_gpus()
    return (owned if owned is not None else [str(index) for index in range(count)])[:count]


def plan(celery_args: list[str], gpus: list[str], per_worker: int = 1) -> list[Worker]:
    """The workers to start for these celery worker options on a host with these GPUs."""
    queues = (_option(celery_args, "-Q", "--queues") or "train").split(",")
    name = _option(celery_args, "-n", "--hostname") or "train@%h"
    if not gpus:
        return [Worker(name, (), ("celery", "-A", "webapp", "worker", *celery_args))]
    prefix, _, host = name.partition("@")
    workers = []
    for start in range(0, len(gpus), per_worker):
        owned = tuple(gpus[start:start + per_worker])
        own_name = f"{prefix}-gpu{owned[0]}" + (f"-{owned[-1]}" if len(owned) > 1 else "") + (f"@{host}" if host else "")
        own_queues = queues + [gpu_queue(n) for n in GPU_COUNTS if 1 < n <= len(owned) and "train" in queues]
        args = _set(_set(_set(celery_args, ("-Q", "--queues"), ",".join(own_queues)), ("-n", "--hostname"), own_name),
                    ("-c", "--concurrency"), "1")
        workers.append(Worker(own_name, owned, ("celery", "-A", "webapp", "worker", *args)))
    return workers


def run(workers: list[Worker]) -> int:
    """Start the workers and keep them up until SIGTERM or SIGINT, which each of them gets."""
    stopping, children = False, []

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children += [subprocess.Popen(worker.argv, env=worker.environment()) for worker in workers]
    ended_at: dict[int, float] = {}
    while not stopping:
        time.sleep(0.5)
        for index, child in enumerate(children):
            if child.poll() is None or stopping:
                continue
            ended_at.setdefault(index, time.monotonic())
            if time.monotonic() - ended_at[index] >= RESTART_SECONDS:  # not in a tight loop if it cannot start
                print(f"worker {workers[index].name} ended ({child.returncode}); starting it again", file=sys.stderr)
                children[index] = subprocess.Popen(workers[index].argv, env=workers[index].environment())
                del ended_at[index]
    codes = [child.wait() for child in children]
    return next((code if code > 0 else 128 - code for code in codes if code), 0)  # a signal as a shell says it


def ping(workers: list[Worker]) -> int:
    """0 when every worker this host should run answers a ping (a container's health check)."""
    import socket

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    from webapp.celery import app

    names = [worker.name.replace("%h", socket.gethostname()) for worker in workers]
    replies = {name for reply in app.control.ping(destination=names, timeout=10) for name in reply}
    missing = [name for name in names if name not in replies]
    if missing:
        print(f"no answer from {', '.join(missing)}", file=sys.stderr)
    return 1 if missing else 0


def _option(argv: list[str], short: str, long: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg in (short, long) and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return None


def _set(argv: list[str], names: tuple[str, str], value: str) -> list[str]:
    """argv with the option `names` set to value (replaced where given, else added)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(names[1] + "="):
            out.append(arg)
    return [*out, names[1], value]


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The launcher's own options, and the rest: the celery worker's."""
    parser = argparse.ArgumentParser(prog="python -m workers.gpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus-per-worker", type=int, default=1, help="GPUs each worker owns (default 1)")
    parser.add_argument("--ping", action="store_true", help="check that every worker answers, then exit")
    ours, celery_args = parser.parse_known_args(argv)
    if ours.gpus_per_worker < 1:
        parser.error("--gpus-per-worker must be at least 1")
    return ours, celery_args


def main(argv: list[str] | None = None) -> int:
    ours, celery_args = parse(argv)
    workers = plan(celery_args, host_gpus(), ours.gpus_per_worker)
    return ping(workers) if ours.ping else run(workers)


if __name__ == "__main__":
    sys.exit(main())
