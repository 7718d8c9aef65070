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
    # What it reads is in JobInput (job.reads); what it makes or trains, here. SET_NULL: deleting
    # the model leaves the job's history, which names the model in its params too.
    model = models.ForeignKey("registry.Model", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs",
                              help_text="The model it trains or whose new artifact it makes.")
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
    # Its turn: when it took one of its team's slots on its queue (TEAM_RUNNING_JOBS) and could go
    # to the broker. Null while it waits in the database for a slot (webapp/jobs/services.py).
    released_at = models.DateTimeField(null=True, blank=True)
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
        indexes = [
            models.Index(fields=["state", "lease_expires_at"]),
            models.Index(fields=["queue", "state", "released_at"], name="job_turns"),
            # a project's job list, newest first, a page at a time
            models.Index(fields=["project", "-created_at", "-id"], name="job_project_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.id} ({self.state})"

    @property
    def kind_label(self) -> str:
        from webapp.jobs.kinds import KINDS

        return KINDS[self.kind].label if self.kind in KINDS else self.kind

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class InputKind(models.TextChoices):
    DATASET = "dataset"
    ARTIFACT = "artifact"


class JobInput(models.Model):
    """One dataset or artifact a job reads: what the "in use" guards ask and the job's inputs show.

    Deleting what a job reads is refused by the services while the job is active (queued or
    running), and allowed once it has finished. So the link is SET_NULL, neither PROTECT (which
    would forbid ever deleting a dataset a finished job read, its own import included) nor
    CASCADE (which would make a finished job seem to have read nothing): the row stays, saying
    "read a dataset, since deleted" through `kind`, and the job's params keep the id. The check
    holds every row to its kind, so a row never names both; the submit service makes each with
    exactly one set."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="reads")
    kind = models.CharField(max_length=10, choices=InputKind.choices)
    dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="read_by")
    artifact = models.ForeignKey("registry.Artifact", null=True, blank=True, on_delete=models.SET_NULL, related_name="read_by")

    class Meta:
        ordering = ["job", "id"]  # the order the service gave them
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind=InputKind.DATASET, artifact__isnull=True)
                | models.Q(kind=InputKind.ARTIFACT, dataset__isnull=True),
                name="job_input_is_its_kind_only",
            ),
            models.UniqueConstraint(fields=["job", "dataset"], condition=models.Q(dataset__isnull=False),
                                    name="job_reads_a_dataset_once"),
            models.UniqueConstraint(fields=["job", "artifact"], condition=models.Q(artifact__isnull=False),
                                    name="job_reads_an_artifact_once"),
        ]

    def __str__(self) -> str:
        target = self.dataset_id if self.kind == InputKind.DATASET else self.artifact_id
        return f"job #{self.job_id} reads {self.kind} #{target or '(deleted)'}"


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
