from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class WorkerHost(models.Model):
    """A Celery worker as it last described itself (capabilities) and last proved alive (heartbeat)."""

    hostname = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)
    capabilities = models.JSONField(default=dict)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    reported_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    @property
    def is_online(self) -> bool:
        grace = timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)
        return self.stopped_at is None and self.last_seen >= timezone.now() - grace
