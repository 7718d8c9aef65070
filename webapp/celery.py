"""The Celery app: Redis broker, queues `train` (GPU hosts) and `optimize` (CPU hosts)."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("vintner", include=["workers.tasks", "workers.presence"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("train"), Queue("optimize"))

QUEUES = tuple(queue.name for queue in app.conf.task_queues)
