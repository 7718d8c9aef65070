"""Quota and claims under races: bytes are reserved atomically, job outputs count, and an upload is
claimed by exactly one dataset or model. Real threads against the real database; the state after
(rows, bytes, files) is asserted, not only the answers."""

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.test import Client

from tests.archive_builders import class_entries, make_zip
from tests.helpers import at_once, make_artifact, make_model, uploaded
from webapp.core.quota import QuotaExceeded, team_bytes_used, team_quota_bytes
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job
from webapp.optimize.services import artifact_convert
from webapp.projects.models import Project
from webapp.registry.models import Artifact, Model, Origin
from webapp.registry.services import artifact_record
from webapp.uploads import services as uploads
from webapp.uploads.models import Upload

MiB = 2**20


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def project(team_a, alice) -> Project:
    team_a.storage_quota_gb = 1
    team_a.save()
    return Project.objects.create(team=team_a, name="Vision", created_by=alice)


def clients(user, count: int) -> list[Client]:
    made = [Client() for _ in range(count)]
    for client in made:
        client.force_login(user)
    return made


def test_parallel_uploads_reserve_no_more_than_the_quota(transactional_db, alice, project):
    # 50 uploads of 30 MiB ask for 1.46 GiB of a 1 GiB quota: 34 fit.
    results = at_once(50, lambda i: uploads.upload_create(team=project.team, user=alice, filename=f"{i}.zip",
                                                          length=30 * MiB, metadata={}))
    made = [r for r in results if isinstance(r, Upload)]
    refused = [r for r in results if isinstance(r, uploads.UploadError)]
    assert len(made) == 34 and len(refused) == 16 and all(r.status == 413 for r in refused)
    assert "storage quota left" in str(refused[0])
    assert Upload.objects.count() == 34 and team_bytes_used(project.team) <= team_quota_bytes(project.team)
    assert all(uploads.part_path(u).exists() for u in made)
    # Abandoning one gives its bytes back.
    uploads.upload_delete(upload=made[0])
    uploads.upload_create(team=project.team, user=alice, filename="again.zip", length=30 * MiB, metadata={})
    assert Upload.objects.count() == 34


def test_an_upload_claimed_in_parallel_makes_one_dataset(transactional_db, alice, project, tmp_path):
    upload = uploaded(alice, project, make_zip(tmp_path / "a.zip", class_entries(2)))
    posters = clients(alice, 20)
    body = {"name": "pets", "upload": str(upload.id), "sha256": upload.sha256}
    responses = at_once(20, lambda i: posters[i].post(f"/api/v1/projects/{project.id}/datasets/", body,
                                                      content_type="application/json"))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19, codes
    conflict = next(r for r in responses if r.status_code == 409)
    assert "already used by a dataset or model" in str(conflict.json())
    assert Dataset.objects.count() == 1 and Job.objects.filter(kind="dataset_import").count() == 1
    upload.refresh_from_db()
    assert upload.claimed and Dataset.objects.get().upload_id == upload.id


def test_an_upload_claimed_in_parallel_makes_one_model_artifact(transactional_db, alice, project, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really a model, but it is never opened here")
    upload = uploaded(alice, project, path)
    posters = clients(alice, 10)
    body = {"name": "net", "uploads": [str(upload.id)]}
    responses = at_once(10, lambda i: posters[i].post(f"/api/v1/projects/{project.id}/models/", body,
                                                      content_type="application/json"))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    assert Artifact.objects.count() == 1 and Job.objects.filter(kind="model_import").count() == 1
    assert Model.objects.count() == 1


def ir_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "model.xml").write_bytes(b"<net/>")
    (folder / "model.bin").write_bytes(b"\0" * (2 * MiB))
    return folder


def stored_artifacts() -> set[str]:
    return set(default_storage.listdir("artifacts")[0]) if default_storage.exists("artifacts") else set()


def test_a_job_output_over_the_quota_is_not_kept_and_leaves_nothing(db, alice, project, tmp_path):
    model = make_model(project, alice)
    job = Job.objects.create(project=project, kind="convert", created_by=alice, queue="optimize", model=model)
    Upload.objects.create(team=project.team, created_by=alice, filename="big", length=team_quota_bytes(project.team) - MiB,
                          expires_at="2100-01-01T00:00Z")
    stored_before = stored_artifacts()
    with pytest.raises(QuotaExceeded, match="storage quota left"):
        artifact_record(parent=None, job=job, origin=Origin.CONVERTED, folder=ir_folder(tmp_path / "a"), fmt="openvino_ir",
                        primary="model.xml", inspection={}, metrics={}, model=model)
    # No new folder (an earlier test's folder may go: rolled-back tests reuse artifact ids).
    assert not Artifact.objects.exists() and stored_artifacts() <= stored_before
    # With room it is kept and counted.
    Upload.objects.all().delete()
    artifact = artifact_record(parent=None, job=job, origin=Origin.CONVERTED, folder=ir_folder(tmp_path / "b"),
                               fmt="openvino_ir", primary="model.xml", inspection={}, metrics={}, model=model)
    assert artifact.size_bytes == 2 * MiB + 6 and team_bytes_used(project.team) == artifact.size_bytes


def test_a_job_whose_output_cannot_fit_is_refused_before_it_exists(db, alice, project):
    source = make_artifact(make_model(project, alice), fmt="onnx", precision="fp32", origin=Origin.UPLOADED)
    Artifact.objects.filter(id=source.id).update(size_bytes=team_quota_bytes(project.team) // 2 + MiB)
    source.refresh_from_db()
    with pytest.raises(ValidationError, match="would not fit: This needs"):
        artifact_convert(artifact=source, user=alice, params={"precision": "fp32"})
    assert not Job.objects.exists()
    # Half of it as FP16 fits.
    artifact_convert(artifact=source, user=alice, params={"precision": "fp16"})
    assert Job.objects.filter(kind="convert").count() == 1


def test_a_training_run_that_cannot_fit_is_refused_before_it_exists(db, alice, project):
    from tests.helpers import make_dataset
    from webapp.registry.services import model_train

    project.team.storage_quota_gb = 1
    project.team.save()
    Upload.objects.create(team=project.team, created_by=alice, filename="big", expires_at="2100-01-01T00:00Z",
                          length=team_quota_bytes(project.team) - 40 * MiB)  # resnet18's weights are 45 MB
    with pytest.raises(ValidationError, match="Training would not fit"):
        model_train(project=project, user=alice, dataset=make_dataset(project), params={"model_name": "net",
                                                                                     "architecture": "resnet18"})
    assert not Job.objects.exists()
