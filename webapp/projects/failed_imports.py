"""Failed imports: datasets whose import job failed and uploaded model files whose inspection
failed. They keep their uploaded archive (so the import can be tried again), which counts
against the team's quota; the project page lists them, and they are deleted by hand or by the
periodic sweep FAILED_IMPORT_EXPIRY_DAYS after they failed."""

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q, Sum
from django.utils import timezone

from webapp.datasets.models import Dataset
from webapp.datasets.services import dataset_delete
from webapp.jobs.models import ACTIVE_STATES
from webapp.registry.models import Artifact, Origin
from webapp.registry.services import artifact_delete
from webapp.uploads.models import Upload


@dataclass(frozen=True)
class FailedImports:
    datasets: list[Dataset]
    artifacts: list[Artifact]
    bytes: int  # what their kept uploads hold

    @property
    def count(self) -> int:
        return len(self.datasets) + len(self.artifacts)


def _failed(job_field: str, *, before: datetime | None) -> Q:
    """Not imported, and its import job is over (or gone); with `before`, it ended before then."""
    over = Q(**{f"{job_field}__isnull": True}) | ~Q(**{f"{job_field}__state__in": ACTIVE_STATES})
    if before is None:
        return over
    return over & (Q(**{f"{job_field}__finished_at__lt": before}) |
                   Q(**{f"{job_field}__finished_at__isnull": True, "created_at__lt": before}))


def failed_datasets(*, project_id: int | None = None, before: datetime | None = None):
    datasets = Dataset.objects.filter(_failed("import_job", before=before), imported_at__isnull=True)
    return datasets.filter(project_id=project_id) if project_id is not None else datasets


def failed_artifacts(*, project_id: int | None = None, before: datetime | None = None):
    artifacts = Artifact.objects.filter(_failed("job", before=before), origin=Origin.UPLOADED, ready_at__isnull=True)
    return artifacts.filter(model__project_id=project_id) if project_id is not None else artifacts


def failed_imports_of_project(project_id: int) -> FailedImports:
    datasets = list(failed_datasets(project_id=project_id).select_related("import_job").only(
        "id", "name", "version", "archive_name", "created_at", "upload_id", "import_job__error", "import_job__state"))
    artifacts = list(failed_artifacts(project_id=project_id).select_related("model", "job").only(
        "id", "source_names", "created_at", "model__id", "model__name", "job__error", "job__state"))
    upload_ids = [d.upload_id for d in datasets if d.upload_id]
    upload_ids += list(Artifact.uploads.through.objects.filter(artifact__in=artifacts).values_list("upload_id", flat=True))
    size = Upload.objects.filter(id__in=upload_ids).aggregate(total=Sum("length"))["total"] or 0
    return FailedImports(datasets=datasets, artifacts=artifacts, bytes=size)


def failed_imports_sweep(*, now: datetime | None = None) -> list[str]:
    """Delete failed imports older than FAILED_IMPORT_EXPIRY_DAYS, with their archives; a model
    left with no artifact by it goes too."""
    before = (now or timezone.now()) - timedelta(days=settings.FAILED_IMPORT_EXPIRY_DAYS)
    swept = []
    for dataset in failed_datasets(before=before):
        name = f"dataset {dataset.id}"
        with contextlib.suppress(ValidationError):  # a job reads it again (a retried import): kept
            dataset_delete(dataset=dataset)
            swept.append(name)
    for artifact in failed_artifacts(before=before).select_related("model"):
        model, name = artifact.model, f"artifact {artifact.id}"
        try:
            artifact_delete(artifact=artifact)
        except ValidationError:
            continue
        if not model.artifacts.exists() and not model.jobs.filter(state__in=ACTIVE_STATES).exists():
            model.delete()
        swept.append(name)
    return swept
