"""The storage sweep (webapp/core/sweep.py) and the worker's scratch sweep: what killed attempts
left goes once it is older than the grace; anything a row names, or a publish may still be
writing, stays."""

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from tests.helpers import SMALL, make_artifact
from tests.jobs_helpers import make_project
from webapp.core import files
from webapp.core.quota import team_bytes_used
from webapp.core.sweep import storage_sweep
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobState
from webapp.registry.models import Model, Origin
from webapp.registry.services import artifact_record
from workers.runner import scratch_dir, scratch_sweep

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)


def put(key: str, *, age: timedelta = 2 * HOUR) -> str:
    path = Path(default_storage.path(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 100)
    then = time.time() - age.total_seconds()
    os.utime(path, (then, then))
    return key


def job(project, state: str) -> Job:
    return Job.objects.create(project=project, kind="convert", queue="optimize", state=state)


def test_it_removes_what_no_row_names_and_keeps_the_rest(team_a, alice):
    project = make_project(team_a)
    model = Model.objects.create(project=project, name="m", preprocessing=SMALL, created_by=alice)
    ready = make_artifact(model)
    publishing = make_artifact(model, job=job(project, JobState.RUNNING))
    publishing.ready_at = None
    publishing.save(update_fields=["ready_at"])
    failed_import = Dataset.objects.create(project=project, name="d", import_job=job(project, JobState.FAILED))
    finished, running = job(project, JobState.SUCCEEDED), job(project, JobState.RUNNING)
    used = team_bytes_used(team_a)
    kept = [put(f"{ready.storage_prefix}/model.xml"), put(f"{publishing.storage_prefix}/model.bin"),
            put(f"jobs/{running.id}/checkpoint-1.pth"), put("artifacts/999999/young.bin", age=timedelta(minutes=5)),
            put("elsewhere/not-ours.txt")]
    gone = [put("artifacts/999998/model.bin"), put(f"{failed_import.storage_prefix}/images/a.png"),
            put(f"jobs/{finished.id}/checkpoint-3.pth"), put("uploads/999997")]
    assert storage_sweep(grace=HOUR) == {"rows": 0, "objects": len(gone), "unfinished_uploads": 0}
    assert all(default_storage.exists(key) for key in kept)
    assert not any(default_storage.exists(key) for key in gone)
    assert team_bytes_used(team_a) == used  # nobody was charged for them, nobody is refunded
    for key in kept:
        files.delete_file(key)


def test_it_removes_an_artifact_a_killed_publish_left_unfinished(team_a, alice):
    project = make_project(team_a)
    model = Model.objects.create(project=project, name="m", preprocessing=SMALL, created_by=alice)
    orphan = make_artifact(model, job=job(project, JobState.FAILED))
    uploaded = make_artifact(model, origin=Origin.UPLOADED, job=job(project, JobState.FAILED))
    for artifact in (orphan, uploaded):
        artifact.ready_at = None
        artifact.save(update_fields=["ready_at"])
    type(orphan).objects.filter(id__in=[orphan.id, uploaded.id]).update(created_at=orphan.created_at - 2 * HOUR)
    half = put(f"{orphan.storage_prefix}/model.bin", age=timedelta(0))
    assert storage_sweep(grace=HOUR)["rows"] == 1
    assert list(model.artifacts.values_list("id", flat=True)) == [uploaded.id]  # a failed upload is the user's to see
    assert not default_storage.exists(half)


def test_a_worker_removes_the_scratch_of_jobs_that_are_over(team_a):
    project = make_project(team_a)
    over, active = job(project, JobState.FAILED), job(project, JobState.RUNNING)
    for one in (over, active):
        scratch_dir(one.id, 1).mkdir(parents=True)
    (settings.DATA_DIR / "scratch" / "job-999999").mkdir()  # its row is gone
    swept = scratch_sweep()
    assert over.id in swept and 999999 in swept and active.id not in swept
    assert scratch_dir(active.id, 1).exists() and not scratch_dir(over.id, 1).parent.exists()


def test_a_publish_that_stops_halfway_leaves_no_artifact_row(team_a, alice, tmp_path):
    project = make_project(team_a)
    model = Model.objects.create(project=project, name="m", preprocessing=SMALL, created_by=alice)
    source = make_artifact(model)
    folder = tmp_path / "ir"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"weights")  # no model.xml: the publish fails after its row was made
    with pytest.raises(StopIteration):
        artifact_record(parent=source, job=job(project, JobState.RUNNING), origin=Origin.CONVERTED, folder=folder,
                        fmt="openvino_ir", primary="model.xml", inspection={}, metrics={})
    assert list(model.artifacts.values_list("id", flat=True)) == [source.id]
