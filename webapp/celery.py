"""The Celery app: Redis broker, queues `train` (GPU hosts), `train_gpus_<n>` (trainings on n GPUs
of one host: workers that own that many, workers/gpus.py) and `optimize` (CPU hosts)."""

import os

from celery import Celery
from kombu import Queue

from workers.pipeline.params import GPU_QUEUES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("vintner", include=["workers.tasks", "workers.presence"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("train"), *(Queue(name) for name in GPU_QUEUES), Queue("optimize"))

QUEUES = tuple(queue.name for queue in app.conf.task_queues)
