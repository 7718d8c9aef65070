from django.conf import settings
from django.db import models

from webapp.projects.models import Project


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)
TERMINAL_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Job(models.Model):
    """One long step (import, training, conversion, ...). The row is the truth about it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=40)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    params = models.JSONField(default=dict)
    inputs = models.JSONField(default=dict, help_text="Ids of the datasets and artifacts the job reads.")
    idempotency_key = models.CharField(max_length=100, null=True, blank=True)

    state = models.CharField(max_length=10, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=100, blank=True)
    queue = models.CharField(max_length=20)
    task_id = models.CharField(max_length=100, blank=True, help_text="The Celery task of the latest enqueue.")
    worker_host = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # The lease: who runs the job now and until when, renewed while it runs. A second delivery of
    # the same task (broker visibility timeout, reconciler) finds a live lease and does nothing.
    lease_owner = models.CharField(max_length=255, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    checkpoint = models.JSONField(null=True, blank=True, help_text="Where a resumed attempt continues from.")

    error = models.TextField(blank=True, help_text="What went wrong, in words a user understands.")
    error_detail = models.TextField(blank=True, help_text="The technical detail: exception and traceback.")
    result = models.JSONField(default=dict)
    last_seq = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "created_by", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="one_job_per_idempotency_key",
            )
        ]
        indexes = [models.Index(fields=["state", "lease_expires_at"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.id} ({self.state})"

    @property
    def kind_label(self) -> str:
        from webapp.jobs.kinds import KINDS

        return KINDS[self.kind].label if self.kind in KINDS else self.kind

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class EventKind(models.TextChoices):
    LOG = "log"
    PROGRESS = "progress"
    STAGE = "stage"
    METRIC = "metric"
    STATE = "state"


class JobEvent(models.Model):
    """Every log line, progress change, metric point and state change, numbered per job."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=EventKind.choices)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="one_event_per_seq")]

    def as_message(self) -> dict:
        return {"seq": self.seq, "kind": self.kind, "data": self.data, "at": self.created_at.timestamp()}
