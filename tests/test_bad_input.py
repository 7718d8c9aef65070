"""Inputs that once answered 500 (issue 22): each is refused naming its field (the API: a 400; a
page: its form again with the message), and nothing is created or changed. Rows are made directly
in the database; no worker runs."""

import pytest

from tests.helpers import SMALL, make_artifact, make_dataset, make_model, signed_in, uploaded
from tests.jobs_helpers import make_project
from webapp.datasets.models import Dataset
from webapp.jobs.events import events_append
from webapp.jobs.models import Job, JobEvent, JobState
from webapp.projects.models import Project
from webapp.registry.models import Artifact, Model, Origin

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(team_a):
    return make_project(team_a)


@pytest.fixture
def model(project, alice):
    return make_model(project, alice)


@pytest.fixture
def archive(tmp_path, alice, project):
    """A finished upload nothing uses yet (its bytes are never read: every request here is refused)."""
    path = tmp_path / "pets.zip"
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return uploaded(alice, project, path)


def said(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- training ------------------------------------------------------------------------------------


def test_the_train_form_names_an_init_artifact_or_dataset_that_is_no_id(alice, project, model):
    make_artifact(model, fmt="state_dict", origin=Origin.TRAINED)
    dataset = make_dataset(project)
    client = signed_in(alice)
    response = client.post(f"/projects/{project.id}/train/", {"dataset": dataset.id, "model_name": "x", "init_artifact": "abc"})
    assert response.status_code == 200 and said(response) == ["init_artifact: Choose an artifact to fine-tune from by its id, or none."]
    response = client.post(f"/projects/{project.id}/train/", {"dataset": "²", "model_name": "x"})  # "²".isdigit()
    assert response.status_code == 200 and said(response) == ["dataset: Choose a dataset."]
    assert not Job.objects.exists() and list(Model.objects.values_list("name", flat=True)) == ["colours"]


# --- job events ----------------------------------------------------------------------------------


def test_the_events_endpoint_names_an_after_or_limit_that_is_no_number(alice, project):
    job = Job.objects.create(project=project, kind="probe", created_by=alice, queue="optimize", state=JobState.RUNNING)
    events_append(job.id, [("log", {"level": "info", "message": "one"})])
    client = signed_in(alice)
    for query, field in [("after=²", "after"), ("limit=²", "limit"), (f"after={2**70}", "after"),
                         ("limit=" + "9" * 5000, "limit"), ("after=-1", "after")]:
        response = client.get(f"/api/v1/jobs/{job.id}/events/?{query}")
        assert response.status_code == 400 and list(response.json()) == [field], query
    assert client.get(f"/api/v1/jobs/{job.id}/events/?after=0&limit=5").json()["events"][0]["data"]["message"] == "one"
    assert JobEvent.objects.filter(job=job).count() == 1 and Job.objects.get(id=job.id).last_seq == 1


# --- models --------------------------------------------------------------------------------------


def test_a_class_count_beyond_any_classifier_is_refused_naming_the_field(alice, project, archive):
    client = signed_in(alice)
    for value in (1e30, 2**70, 1_000_001):  # 2**70 overflowed the column: a 500
        response = client.post(f"/api/v1/projects/{project.id}/models/",
                               {"name": "big", "uploads": [str(archive.id)], "architecture": "resnet18", "num_classes": value},
                               content_type="application/json")
        assert response.status_code == 400 and "num_classes" in response.json(), value
    for value in ("1e30", str(2**70), "²"):
        response = client.post(f"/projects/{project.id}/models/new/",
                               {"name": "big", "uploads": [str(archive.id)], "architecture": "resnet18", "num_classes": value})
        assert said(response) == ["num_classes: The class count is a whole number from 1 to 1000000."], value
    assert not Model.objects.exists() and not Artifact.objects.exists() and not Job.objects.exists()
    archive.refresh_from_db()
    assert not archive.claimed


def test_a_mean_or_std_that_is_nan_or_infinite_is_refused_naming_the_field(alice, model):
    client = signed_in(alice)
    for name, value in [("mean", "NaN"), ("std", "Infinity"), ("mean", "-inf"), ("std", "1e400")]:
        response = client.patch(f"/api/v1/models/{model.id}/", {"preprocessing": {**SMALL, name: [value]}},
                                content_type="application/json")  # NaN reached the JSON column: a 500
        assert response.status_code == 400 and list(response.json()) == [f"preprocessing.{name}"], value
    page = client.post(f"/models/{model.id}/edit/", {"name": "colours", "input_height": "16", "input_width": "16",
                                                     "layout": "NCHW", "color": "RGB", "mean": "nan", "std": "0.25"}, follow=True)
    assert said(page) == ["mean: Mean is one number or three (one per channel), each finite."]
    model.refresh_from_db()
    assert model.preprocessing == SMALL


# --- datasets ------------------------------------------------------------------------------------


def test_a_dataset_seed_beyond_its_column_or_an_upload_that_is_no_id_is_refused(alice, project, archive):
    client = signed_in(alice)
    response = client.post(f"/api/v1/projects/{project.id}/datasets/",
                           {"name": "pets", "upload": str(archive.id), "seed": 2**31}, content_type="application/json")
    assert response.status_code == 400 and list(response.json()) == ["seed"]
    page = client.post(f"/projects/{project.id}/datasets/new/", {"name": "pets", "upload": str(archive.id), "seed": str(2**70)})
    assert said(page) == ["seed: The seed is a whole number from 0 to 2147483647."]
    page = client.post(f"/projects/{project.id}/datasets/new/", {"name": "pets", "upload": "abc"})  # not a UUID: a 500
    assert said(page) == ["upload: Choose an archive and wait for it to upload."]
    assert not Dataset.objects.exists() and not Job.objects.exists()
    archive.refresh_from_db()
    assert not archive.claimed


# --- projects ------------------------------------------------------------------------------------


def test_a_team_that_is_no_id_is_refused_naming_the_field(alice, project):
    client = signed_in(alice)
    for team in ("²", str(2**70)):
        response = client.get("/api/v1/projects/", {"team": team})
        assert response.status_code == 400 and list(response.json()) == ["team"], team
    for team in ("²", 2**70):  # the membership check before validation ran int() on it, or the query overflowed
        response = client.post("/api/v1/projects/", {"team": team, "name": "Merlot"}, content_type="application/json")
        assert response.status_code == 400 and list(response.json()) == ["team"], team
    assert list(Project.objects.values_list("name", flat=True)) == ["Vision"]
