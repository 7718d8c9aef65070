"""Training through real workers: the loss falls and accuracy rises, the best epoch becomes an
artifact that converts; a killed worker's run resumes from its checkpoint; cancel is quick."""

import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from tests.archive_builders import colour_classes, make_zip
from tests.helpers import signed_in, uploaded
from tests.jobs_helpers import events, make_project, wait_done
from tests.servers import wait_for
from webapp.datasets import services as datasets
from webapp.jobs import services as jobs
from webapp.jobs.models import Job, JobState
from webapp.registry import services as registry
from webapp.registry.models import Artifact

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TINY = {"architecture": "small_cnn", "input_size": 16, "batch_size": 8, "workers": 0, "lr": 0.01, "augment": "none",
        "checkpoint_minutes": 0}


def colours_dataset(alice, project, tmp_path):
    upload = uploaded(alice, project, make_zip(tmp_path / "colours.zip", colour_classes()))
    dataset = datasets.dataset_create(project=project, user=alice, name="colours", upload=upload, val_fraction=0.25)
    assert wait_done(dataset.import_job_id).state == JobState.SUCCEEDED
    dataset.refresh_from_db()
    return dataset


def start_training(alice, project, dataset, **params) -> Job:
    return registry.model_train(project=project, user=alice, dataset=dataset, params={"model_name": "colours", **TINY, **params})


def epoch_metric(job_id: int, name: str) -> list[float]:
    return [e.data["value"] for e in events(job_id, "metric") if e.data["name"] == name]


def test_a_run_learns_and_its_best_epoch_becomes_an_artifact_that_converts(worker_host, alice, team_a, tmp_path):
    project = make_project(team_a)
    dataset = colours_dataset(alice, project, tmp_path)
    job = wait_done(start_training(alice, project, dataset, epochs=6).id, timeout=240)
    assert job.state == JobState.SUCCEEDED, job.error_detail
    losses, top1 = epoch_metric(job.id, "epoch/train_loss"), epoch_metric(job.id, "epoch/val_top1")
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert max(top1) > 0.6 and job.result["val_top1"] == max(top1)
    assert any("cpu" in e.data["message"].lower() for e in events(job.id, "log"))  # says which device
    artifact = Artifact.objects.get(id=job.result["artifact"])
    assert (artifact.origin, artifact.format, artifact.architecture, artifact.num_classes) == ("trained", "state_dict", "small_cnn", 3)
    assert artifact.model.labels == ["blue", "green", "red"] and artifact.model.preprocessing["input_size"] == [16, 16]
    assert len(artifact.metrics["training"]["confusion"]) == 3
    assert not default_storage.exists(f"jobs/{job.id}")  # no checkpoints left
    # the images were decoded once into this host's cache (18 px squares for 16 px inputs), and a
    # later job on the same dataset version reads them from there (bound read-only)
    assert any(e.data["message"].startswith("Decoding 72 images for the cache") for e in events(job.id, "log"))
    assert list(settings.IMAGE_CACHE_DIR.glob(f"dataset-{dataset.id}-18px-*/data/manifest.json"))
    again = wait_done(start_training(alice, project, dataset, epochs=1).id, timeout=120)
    assert again.state == JobState.SUCCEEDED, again.error_detail
    assert not any("Decoding" in e.data["message"] for e in events(again.id, "log"))
    client = signed_in(alice)
    response = client.post(f"/api/v1/artifacts/{artifact.id}/convert/", {}, content_type="application/json")
    converted = wait_done(response.json()["id"], timeout=120)
    assert converted.state == JobState.SUCCEEDED, converted.error
    assert converted.result["within_tolerance"]


def test_cancel_stops_within_seconds_and_can_keep_the_best_epoch(worker_host, alice, team_a, tmp_path):
    project = make_project(team_a)
    dataset = colours_dataset(alice, project, tmp_path)
    job = start_training(alice, project, dataset, epochs=500, keep_best_on_cancel=True)
    wait_for(lambda: Job.objects.get(id=job.id).checkpoint, timeout=120, what="the first epoch's checkpoint")
    jobs.job_cancel(job=job)
    done = wait_done(job.id, timeout=15)
    assert done.state == JobState.CANCELLED
    kept = Artifact.objects.get(job=done)
    assert kept.state == "ready" and kept.origin == "trained"
    assert not default_storage.exists(f"jobs/{job.id}")  # no checkpoints left
