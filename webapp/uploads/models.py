import uuid

from django.conf import settings
from django.db import models

from webapp.teams.models import Team


class Upload(models.Model):
    """One file arriving over the tus protocol, chunk by chunk, resumable from `offset`.

    While it arrives it lives in UPLOAD_DIR on the web host; once complete it moves to storage
    under `storage_key`, where a job (dataset import, model inspection) reads it. An upload that
    nothing claimed is deleted when it expires.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="uploads")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    filename = models.CharField(max_length=255)
    length = models.BigIntegerField()
    offset = models.BigIntegerField(default=0)
    metadata = models.JSONField(default=dict, help_text="The client's Upload-Metadata, decoded.")
    sha256 = models.CharField(max_length=64, blank=True, help_text="Of the whole file, once complete.")
    claimed = models.BooleanField(default=False, help_text="A dataset or model uses it; it no longer expires.")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.offset}/{self.length})"

    @property
    def complete(self) -> bool:
        return self.completed_at is not None

    @property
    def storage_key(self) -> str:
        return f"uploads/{self.id}"
