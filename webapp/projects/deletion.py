"""Deleting projects (one, or all of a team's): what goes, and making it go.

A deletion cancels the jobs still queued or running (a running job's worker sees the cancel, or
its lease vanish with its row, within seconds, and stops its jailed step), deletes the rows, and
then the files in storage: datasets, artifacts, job checkpoints and the uploads they kept, so the
team's quota is released. A file a stopping job writes after that is an orphan, which the
periodic sweep (webapp/core/cleanup.py) removes.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from webapp.core import files
from webapp.core.broadcast import broadcast, project_group
from webapp.datasets.models import Dataset
from webapp.jobs.models import ACTIVE_STATES, Job
from webapp.jobs.services import job_cancel
from webapp.projects.models import Project
from webapp.registry.models import Artifact, Model
from webapp.uploads.models import Upload
from webapp.uploads.services import upload_delete


@dataclass(frozen=True)
class Contents:
    """What deleting some projects takes with it: the confirmation page lists it."""

    projects: int
    datasets: int
    models: int
    artifacts: int
    jobs: int
    active_jobs: list[Job]
    uploads: int
    bytes: int


def _uploads(project_ids: list[int]) -> "QuerySet[Upload]":  # noqa: F821
    """Uploads kept by the projects' datasets and artifacts (failed imports keep theirs), and those
    still arriving for them."""
    arriving = Q(claimed=False, metadata__project__in=[str(pid) for pid in project_ids])
    kept = Q(id__in=Dataset.objects.filter(project_id__in=project_ids).values("upload_id")) | Q(
        id__in=Artifact.uploads.through.objects.filter(artifact__model__project_id__in=project_ids).values("upload_id")
    )
    return Upload.objects.filter(arriving | kept)


def contents_of(project_ids: list[int], *, extra_uploads=None) -> Contents:
    datasets = Dataset.objects.filter(project_id__in=project_ids)
    artifacts = Artifact.objects.filter(model__project_id__in=project_ids)
    uploads = _uploads(project_ids) if extra_uploads is None else _uploads(project_ids) | extra_uploads
    jobs = Job.objects.filter(project_id__in=project_ids)
    return Contents(
        projects=len(project_ids),
        datasets=datasets.count(),
        models=Model.objects.filter(project_id__in=project_ids).count(),
        artifacts=artifacts.count(),
        jobs=jobs.count(),
        active_jobs=list(jobs.filter(state__in=ACTIVE_STATES).only("id", "kind", "state", "project_id").order_by("id")),
        uploads=uploads.count(),
        bytes=sum(
            query.aggregate(total=Sum(field))["total"] or 0
            for query, field in ((datasets, "size_bytes"), (artifacts, "size_bytes"), (uploads.distinct(), "length"))
        ),
    )


def projects_delete(project_ids: list[int], *, extra_uploads=None) -> None:
    """Cancel their active jobs, delete their rows, then their files (and the uploads given)."""
    for job in Job.objects.filter(project_id__in=project_ids, state__in=ACTIVE_STATES):
        job_cancel(job=job)
    prefixes = [f"datasets/{pk}" for pk in Dataset.objects.filter(project_id__in=project_ids).values_list("id", flat=True)]
    prefixes += [f"artifacts/{pk}" for pk in Artifact.objects.filter(model__project_id__in=project_ids).values_list("id", flat=True)]
    prefixes += [f"jobs/{pk}" for pk in Job.objects.filter(project_id__in=project_ids).values_list("id", flat=True)]
    uploads = list((_uploads(project_ids) | extra_uploads) if extra_uploads is not None else _uploads(project_ids))
    with transaction.atomic():
        Project.objects.filter(id__in=project_ids).delete()
        for project_id in project_ids:
            broadcast(project_group(project_id), {"type": "project.deleted", "project": {"id": project_id}})
    for prefix in prefixes:
        files.delete_tree(prefix)
    for upload in {upload.id: upload for upload in uploads}.values():
        upload_delete(upload=upload)


# Storage folders named by a row's id: a folder whose row is gone is an orphan.
OWNED_FOLDERS = {"datasets": Dataset, "artifacts": Artifact, "jobs": Job}


def orphan_files_sweep() -> list[str]:
    """Delete the folders of rows that no longer exist: what a job stored or published while its
    project was being deleted. A job's new artifact row commits with its files (one transaction,
    registry.services.artifact_record), so a folder written within SWEEP_GRACE_SECONDS may be a
    publish in flight whose row is not visible yet: it waits for a later sweep."""
    swept, cutoff = [], timezone.now() - timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    for top, table in OWNED_FOLDERS.items():
        names = [name for name in files.folders(top) if name.isdigit()]
        alive = {str(pk) for pk in table.objects.filter(id__in=[int(name) for name in names]).values_list("id", flat=True)}
        for name in set(names) - alive:
            if any(written >= cutoff for _, written in files.listing(f"{top}/{name}")):
                continue
            files.delete_tree(f"{top}/{name}")
            swept.append(f"{top}/{name}")
    return swept
