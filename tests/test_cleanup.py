"""Failed imports are shown on the project page, counted and swept after their expiry; files
whose rows are gone are swept; through the real services and local storage."""

import os
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from tests.helpers import make_dataset, signed_in
from tests.jobs_helpers import make_project
from webapp.core.quota import team_bytes_used
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobState
from webapp.projects.deletion import orphan_files_sweep
from webapp.projects.failed_imports import failed_imports_sweep
from webapp.registry.models import Artifact, Model
from webapp.uploads.models import Upload

pytestmark = pytest.mark.django_db


def stored_upload(team, name: str, size: int) -> Upload:
    upload = Upload.objects.create(team=team, filename=name, length=size, offset=size, claimed=True,
                                   completed_at=timezone.now(), expires_at=timezone.now())
    default_storage.save(upload.storage_key, ContentFile(b"x" * size))
    return upload


def failed_job(project, kind: str, *, days_ago: float) -> Job:
    return Job.objects.create(project=project, kind=kind, queue="optimize", state=JobState.FAILED,
                              error=f"{kind} failed: not an archive", finished_at=timezone.now() - timedelta(days=days_ago))


def failed_dataset(project, name: str, *, days_ago: float) -> Dataset:
    return Dataset.objects.create(project=project, name=name, archive_name=f"{name}.zip", archive_sha256="0" * 64,
                                  upload=stored_upload(project.team, f"{name}.zip", 1000),
                                  import_job=failed_job(project, "dataset_import", days_ago=days_ago))


def failed_upload(project, name: str, *, days_ago: float) -> Artifact:
    model = Model.objects.create(project=project, name=name)
    artifact = Artifact.objects.create(model=model, origin="uploaded", source_names=[f"{name}.pt"],
                                       job=failed_job(project, "model_import", days_ago=days_ago))
    artifact.uploads.set([stored_upload(project.team, f"{name}.pt", 500)])
    return artifact


def test_it_shows_counts_and_sweeps_failed_imports_after_their_expiry(settings, alice, team_a):
    settings.FAILED_IMPORT_EXPIRY_DAYS = 7
    project = make_project(team_a)
    old_dataset = failed_dataset(project, "old", days_ago=8)
    old_model = failed_upload(project, "oldnet", days_ago=8)
    fresh = failed_dataset(project, "fresh", days_ago=1)
    ready = make_dataset(project)
    old_keys = [f"uploads/{old_dataset.upload_id}", f"uploads/{old_model.uploads.get().id}"]

    page = signed_in(alice).get(f"/projects/{project.id}/").content.decode()
    assert 'data-testid="failed-import-count">3<' in page and page.count('data-testid="failed-import"') == 3
    assert "not an archive" in page and "keep 2.4\xa0KB" in page and "7 days after" in page
    assert team_bytes_used(team_a) == 2500  # their archives count against the quota

    assert sorted(failed_imports_sweep()) == sorted([f"dataset {old_dataset.id}", f"artifact {old_model.id}"])
    assert set(Dataset.objects.values_list("id", flat=True)) == {fresh.id, ready.id}
    assert not Artifact.objects.exists() and not Model.objects.exists()  # the model had nothing else
    assert not any(default_storage.exists(key) for key in old_keys)
    assert default_storage.exists(f"uploads/{fresh.upload_id}") and team_bytes_used(team_a) == 1000
    assert failed_imports_sweep() == []  # nothing more is due


def test_it_sweeps_folders_whose_rows_are_gone_and_keeps_the_others(team_a):
    dataset = make_dataset(make_project(team_a))
    default_storage.save(f"{dataset.storage_prefix}/index.json", ContentFile(b"{}"))
    default_storage.save("artifacts/987654/model.onnx", ContentFile(b"left by a job of a deleted project"))
    default_storage.save("jobs/987654/checkpoint-1.pth", ContentFile(b"state"))
    default_storage.save("artifacts/987655/model.bin", ContentFile(b"a publish in flight: its row commits with it"))
    # The data folder is this test process's, shared with earlier tests: what they left (their rows
    # flushed) may be swept too, so only this test's own folders are asserted.
    ours = {"artifacts/987654", "jobs/987654", "artifacts/987655", dataset.storage_prefix}
    assert ours.isdisjoint(orphan_files_sweep())  # all written within the grace
    then = time.time() - settings.SWEEP_GRACE_SECONDS - 60
    for key in ("artifacts/987654/model.onnx", "jobs/987654/checkpoint-1.pth"):
        os.utime(default_storage.path(key), (then, then))
    assert ours.intersection(orphan_files_sweep()) == {"artifacts/987654", "jobs/987654"}
    assert default_storage.exists("artifacts/987655/model.bin")
    default_storage.delete("artifacts/987655/model.bin")
    assert default_storage.exists(f"{dataset.storage_prefix}/index.json")
    assert not default_storage.exists("artifacts/987654") and not default_storage.exists("jobs/987654")
