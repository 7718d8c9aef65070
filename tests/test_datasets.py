"""Datasets through the real worker: upload → import job → report, items, gallery data; hostile
archives refused with nothing left behind; immutability and who may see what."""

import hashlib
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import Client

from tests.archive_builders import class_entries, image_bytes, make_tar, make_zip, patch, tar_entry
from tests.helpers import signed_in, uploaded
from tests.servers import wait_for
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobInput, JobState
from webapp.projects.models import Project
from webapp.uploads.models import Upload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
MiB = 2**20




def import_dataset(client: Client, project: Project, upload: Upload, **fields) -> Dataset:
    response = client.post(
        f"/api/v1/projects/{project.id}/datasets/",
        {"name": "pets", "upload": str(upload.id), "sha256": upload.sha256, **fields},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    dataset = Dataset.objects.get(id=response.json()["id"])
    wait_for(lambda: Job.objects.get(id=dataset.import_job_id).is_terminal, timeout=60, what="the import job")
    dataset.refresh_from_db()
    return dataset


@pytest.fixture
def project(team_a, alice) -> Project:
    return Project.objects.create(team=team_a, name="Vision", created_by=alice)


def test_an_archive_becomes_a_dataset_with_a_report_and_items(worker_host, alice, project, tmp_path):
    upload = uploaded(alice, project, make_zip(tmp_path / "pets.zip", class_entries()))
    client = signed_in(alice)
    dataset = import_dataset(client, project, upload, seed=7)
    assert dataset.state == "ready", dataset.import_job.error
    assert dataset.classes == ["cat", "dog"] and dataset.image_count == 12
    assert dataset.archive_sha256 == hashlib.sha256((tmp_path / "pets.zip").read_bytes()).hexdigest()
    assert not Upload.objects.filter(id=upload.id).exists()  # the archive's work is done

    report = client.get(f"/api/v1/datasets/{dataset.id}/report/").json()
    assert report["split"] == {"source": "generated", "seed": 7, "val_fraction": 0.2}
    assert {row["name"]: row["total"] for row in report["classes"]} == {"cat": 6, "dog": 6}
    assert report["skipped"] == [{"path": "pets/cat/broken.png", "reason": report["skipped"][0]["reason"]}]
    assert "image" in report["skipped"][0]["reason"]

    items = client.get(f"/api/v1/datasets/{dataset.id}/items/?label=dog&split=val").json()
    assert items["count"] >= 1 and all(item["label"] == "dog" and item["split"] == "val" for item in items["results"])
    thumb = client.get(f"/datasets/{dataset.id}/thumbs/{items['results'][0]['index']}.jpg")
    assert thumb.status_code == 200 and b"".join(thumb.streaming_content)[:2] == b"\xff\xd8"
    assert default_storage.exists(f"{dataset.storage_prefix}/index.json")
    job = Job.objects.get(id=dataset.import_job_id)
    stages = [event.data["stage"] for event in job.events.filter(kind="stage")]
    assert stages == ["unpacking", "validating", "publishing"]
    assert job.result["images"] == 12 and job.result["skipped"] == 1


def test_a_new_upload_under_the_same_name_is_the_next_version(worker_host, alice, project, tmp_path):
    client = signed_in(alice)
    first = import_dataset(client, project, uploaded(alice, project, make_zip(tmp_path / "a.zip", class_entries())))
    second = import_dataset(client, project, uploaded(alice, project, make_tar(tmp_path / "b.tgz", class_entries(3), mode="w:gz")))
    assert (first.version, second.version) == (1, 2) and second.image_count == 6


def _symlink_zip(path: Path) -> Path:
    link = zipfile.ZipInfo("pets/cat/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return make_zip(path, [*class_entries(2), (link, b"/etc/passwd")])


def _encrypted_zip(path: Path) -> Path:
    archive = make_zip(path, [("pets/cat/a.png", image_bytes("PNG", (1, 2, 3)))])
    patch(archive, b"PK\x03\x04", 6, b"\x01")
    patch(archive, b"PK\x01\x02", 8, b"\x01")
    return archive


def _truncated_zip(path: Path) -> Path:
    archive = make_zip(path, [(name, os.urandom(4000)) for name, _ in class_entries(3)])
    archive.write_bytes(archive.read_bytes()[:9000])
    return archive


HOSTILE = {
    "zip slip": (lambda p: make_zip(p, [*class_entries(2), ("../../evil.txt", b"pwned")]), "../../evil.txt"),
    "absolute path": (lambda p: make_tar(p, [("/tmp/evil.txt", b"pwned")]), "/tmp/evil.txt"),
    "drive letter": (lambda p: make_zip(p, [("C:/evil.txt", b"pwned")]), "C:/evil.txt"),
    "backslash": (lambda p: make_zip(p, [("..\\evil.txt", b"pwned")]), "..\\evil.txt"),
    "zip symlink": (_symlink_zip, "pets/cat/link"),
    "tar symlink": (lambda p: make_tar(p, [tar_entry("pets/evil", type=tarfile.SYMTYPE, linkname="/etc")]), "pets/evil"),
    "tar hardlink": (lambda p: make_tar(p, [tar_entry("pets/evil", type=tarfile.LNKTYPE, linkname="/etc/passwd")]), "pets/evil"),
    "device file": (lambda p: make_tar(p, [tar_entry("pets/evil", type=tarfile.CHRTYPE, devmajor=1, devminor=3)]), "pets/evil"),
    "zip bomb": (lambda p: make_zip(p, [("pets/cat/zeros.png", bytes(40 * MiB))]), "pets/cat/zeros.png"),
    "tar.gz bomb": (lambda p: make_tar(p, [("pets/cat/zeros.png", bytes(40 * MiB))], mode="w:gz"), "pets/cat/zeros.png"),
    "encrypted zip": (_encrypted_zip, "pets/cat/a.png"),
    "corrupt zip": (_truncated_zip, None),
    "not an archive": (lambda p: p.write_bytes(image_bytes("PNG", (1, 2, 3))) and p, "data.zip"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_archives_are_refused_naming_the_entry_and_leave_nothing(case, worker_host, alice, project, tmp_path):
    build, entry = HOSTILE[case]
    archive = tmp_path / "data.zip"
    build(archive)
    before = {p for p in settings.DATA_DIR.rglob("*") if "logs" not in p.parts}
    dataset = import_dataset(signed_in(alice), project, uploaded(alice, project, archive))
    job = Job.objects.get(id=dataset.import_job_id)
    assert job.state == JobState.FAILED and dataset.state == "failed"
    if entry:
        assert f"“{entry}”" in job.error, job.error
    assert "damaged" in job.error or "Refused" in job.error or "not a zip or tar" in job.error
    assert not default_storage.exists(dataset.storage_prefix) and not dataset.items.exists()
    after = {p for p in settings.DATA_DIR.rglob("*") if "logs" not in p.parts}
    new = {p for p in after - before if "test-vintner.sqlite3" not in p.name}
    assert new <= {settings.MEDIA_ROOT / "uploads" / str(dataset.upload_id), settings.MEDIA_ROOT / "uploads"}, new
    assert not any(p.name == "evil.txt" for p in Path("/tmp").glob("evil.txt")) and not any(
        p.name == "evil.txt" for p in settings.DATA_DIR.rglob("evil.txt")
    )
    assert dataset.upload_id  # kept: the user may delete the dataset, and with it the archive


def test_a_failed_dataset_can_be_deleted_with_its_archive(worker_host, alice, project, tmp_path):
    client = signed_in(alice)
    archive = tmp_path / "data.zip"
    archive.write_bytes(b"plain text, not an archive")
    dataset = import_dataset(client, project, uploaded(alice, project, archive))
    assert dataset.state == "failed"
    assert client.delete(f"/api/v1/datasets/{dataset.id}/").status_code == 204
    assert not Dataset.objects.exists() and not Upload.objects.exists()


def test_deleting_a_dataset_a_job_uses_is_refused_with_the_reason(worker_host, alice, project, tmp_path):
    client = signed_in(alice)
    dataset = import_dataset(client, project, uploaded(alice, project, make_zip(tmp_path / "a.zip", class_entries())))
    user = Job.objects.create(project=project, kind="probe", queue="optimize", state=JobState.RUNNING)
    JobInput.objects.create(job=user, kind="dataset", dataset=dataset)
    response = client.delete(f"/api/v1/datasets/{dataset.id}/")
    assert response.status_code == 400
    assert f"job #{user.id}" in str(response.json()) and "in use" in str(response.json())
    Job.objects.filter(id=user.id).update(state=JobState.SUCCEEDED)
    assert client.delete(f"/api/v1/datasets/{dataset.id}/").status_code == 204
    assert not default_storage.exists(dataset.storage_prefix)


def test_a_checksum_that_does_not_match_is_refused_before_any_job(alice, project, tmp_path):
    upload = uploaded(alice, project, make_zip(tmp_path / "a.zip", class_entries(2)))
    response = signed_in(alice).post(
        f"/api/v1/projects/{project.id}/datasets/", {"name": "pets", "upload": str(upload.id), "sha256": "0" * 64},
        content_type="application/json",
    )
    assert response.status_code == 400 and "arrived damaged" in str(response.json())
    assert not Dataset.objects.exists() and not Job.objects.exists()


def test_nobody_sees_another_teams_dataset(worker_host, alice, charlie, team_c, project, tmp_path):
    dataset = import_dataset(signed_in(alice), project, uploaded(alice, project, make_zip(tmp_path / "a.zip", class_entries())))
    outsider = signed_in(charlie)
    for url in [
        f"/api/v1/datasets/{dataset.id}/", f"/api/v1/datasets/{dataset.id}/report/", f"/api/v1/datasets/{dataset.id}/items/",
        f"/api/v1/projects/{project.id}/datasets/", f"/datasets/{dataset.id}/", f"/datasets/{dataset.id}/gallery/",
        f"/datasets/{dataset.id}/thumbs/0.jpg",
    ]:
        assert outsider.get(url).status_code == 404, url
    assert outsider.delete(f"/api/v1/datasets/{dataset.id}/").status_code == 404
    # and another team's upload cannot be imported into one's own project
    own = Project.objects.create(team=team_c, name="Mine", created_by=charlie)
    stolen = uploaded(alice, project, make_zip(tmp_path / "b.zip", class_entries(2)))
    response = outsider.post(f"/api/v1/projects/{own.id}/datasets/", {"name": "x", "upload": str(stolen.id)}, content_type="application/json")
    assert response.status_code == 400 and "No such upload" in str(response.json())


def test_import_jobs_cannot_be_submitted_by_hand(alice, project):
    response = signed_in(alice).post(
        f"/api/v1/projects/{project.id}/jobs/", {"kind": "dataset_import", "params": {"dataset": 1}}, content_type="application/json"
    )
    assert response.status_code == 400


def test_deleting_a_project_cancels_its_jobs_and_deletes_its_rows_and_files(worker_host, alice, team_a, project, tmp_path):
    from django.core.files.base import ContentFile

    from webapp.core.quota import team_bytes_used
    from webapp.datasets.models import DatasetItem
    from webapp.jobs.models import JobEvent
    from webapp.registry.models import Artifact, Model
    from workers.runner import scratch_dir

    client = signed_in(alice)
    ready = import_dataset(client, project, uploaded(alice, project, make_zip(tmp_path / "a.zip", class_entries())))
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"plain text, not an archive")
    failed = import_dataset(client, project, uploaded(alice, project, junk))  # keeps its archive
    assert ready.state == "ready" and failed.state == "failed" and failed.upload_id
    model = Model.objects.create(project=project, name="net")
    artifact = Artifact.objects.create(model=model, origin="uploaded", format="onnx", size_bytes=5)
    default_storage.save(f"{artifact.storage_prefix}/model.onnx", ContentFile(b"bytes"))
    running = client.post(f"/api/v1/projects/{project.id}/jobs/", {"kind": "probe", "params": {
        "rounds": 200, "seconds_per_round": 0.2, "matrix_size": 64}}, content_type="application/json").json()["id"]
    wait_for(scratch_dir(running, 1).exists, timeout=30, what="the probe's scratch folder")
    default_storage.save(f"jobs/{running}/checkpoint-1.pth", ContentFile(b"state"))
    keys = [ready.storage_prefix, artifact.storage_prefix, f"jobs/{running}", f"uploads/{failed.upload_id}"]
    assert all(default_storage.exists(key) for key in keys) and team_bytes_used(team_a) > 0

    page = client.get(f"/projects/{project.id}/delete/")  # the confirmation lists what goes
    assert page.status_code == 200 and not Job.objects.filter(state=JobState.CANCELLED).exists()
    text = page.content.decode()
    for testid, shown in [("datasets", "2"), ("models", "1"), ("uploads", "1")]:
        assert f'data-testid="delete-{testid}">{shown}' in text, testid
    assert f"#{running}</a>" in text and "will be cancelled" in text

    response = client.post(f"/projects/{project.id}/delete/")
    assert response.status_code == 302 and response.url == f"/teams/{team_a.id}/"
    for table in (Project, Dataset, DatasetItem, Job, JobEvent, JobInput, Model, Artifact, Upload):
        assert not table.objects.exists(), table.__name__
    assert not any(default_storage.exists(key) for key in keys)
    assert team_bytes_used(team_a) == 0  # the quota is released
    # The worker stopped the running probe: its attempt ended and removed its folder.
    wait_for(lambda: not scratch_dir(running, 1).parent.exists(), timeout=20, what="the deleted job's attempt to end")
    assert not default_storage.exists(f"jobs/{running}")
