"""What a job reads (JobInput rows) and the model it makes (Job.model): the services record them,
the API shows them in the old JSON shape, the "in use" guards ask them across the team's
projects, and a model's training runs stay its own when it is renamed."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from tests.helpers import make_artifact, make_dataset, make_model, signed_in
from tests.jobs_helpers import make_project
from webapp.datasets.models import Dataset
from webapp.jobs.kinds import DIRECT_KINDS, KINDS
from webapp.jobs.models import Job, JobInput, JobState
from webapp.optimize import services as optimize
from webapp.registry.models import Artifact, Model, Origin

pytestmark = pytest.mark.django_db

TINY = {"architecture": "small_cnn", "epochs": 1}


@pytest.fixture
def vision(team_a):
    return make_project(team_a, "Vision")


@pytest.fixture
def robots(team_a):
    """Another project of the same team."""
    return make_project(team_a, "Robots")


@pytest.fixture
def dataset(vision):
    return make_dataset(vision)


def train(user, project, dataset, **params):
    response = signed_in(user).post(f"/api/v1/projects/{project.id}/train/",
                                    {"dataset": dataset.id, "model_name": "colours", **TINY, **params},
                                    content_type="application/json")
    assert response.status_code == 201, response.content
    return Job.objects.get(id=response.json()["id"]), response.json()


def with_files(dataset: Dataset) -> Dataset:
    default_storage.save(f"{dataset.storage_prefix}/index.json", ContentFile(b"[]"))
    return dataset


# --- what the services record ---------------------------------------------------------------------


def test_it_records_what_a_training_run_reads_and_makes_its_model_at_the_start(alice, vision, dataset):
    init = make_artifact(make_model(vision, alice), fmt="state_dict", origin=Origin.TRAINED)
    job, body = train(alice, vision, dataset, init_artifact=init.id)
    assert [(row.kind, row.dataset_id, row.artifact_id) for row in job.reads.all()] == [
        ("dataset", dataset.id, None), ("artifact", None, init.id)]
    assert body["inputs"] == {"datasets": [dataset.id], "artifacts": [init.id]}  # the shape clients know
    assert job.model == init.model and body["model"] == init.model_id


def test_a_first_run_of_a_new_name_makes_the_model_it_trains(alice, vision, dataset):
    job, _ = train(alice, vision, dataset, model_name="  fresh  ")
    model = Model.objects.get(project=vision, name="fresh")
    assert job.model == model and not model.artifacts.exists()  # its artifact comes when the run ends


def test_a_refused_run_makes_no_model(alice, vision, dataset):
    response = signed_in(alice).post(f"/api/v1/projects/{vision.id}/train/",
                                     {"dataset": dataset.id, "model_name": "x" * 101, **TINY}, content_type="application/json")
    assert response.status_code == 400 and "params.model_name" in response.json()
    assert not Model.objects.exists() and not Job.objects.exists() and not JobInput.objects.exists()


def test_a_benchmark_reads_its_torch_reference_once_and_makes_no_model(alice, vision):
    trained = make_artifact(make_model(vision, alice), fmt="state_dict", origin=Origin.TRAINED)
    ir = make_artifact(trained.model, parent=trained)
    job = optimize.artifact_benchmark(artifact=ir, user=alice, params={"hints": ["latency"]})
    assert [row.artifact_id for row in job.reads.all()] == [ir.id, trained.id] and job.model is None
    itself = optimize.artifact_benchmark(artifact=trained, user=alice, params={"hints": ["latency"]})
    assert [row.artifact_id for row in itself.reads.all()] == [trained.id]  # its own reference, once


def test_the_project_jobs_list_shows_inputs_in_the_old_shape(alice, vision, dataset):
    job, _ = train(alice, vision, dataset)
    listed = signed_in(alice).get(f"/api/v1/projects/{vision.id}/jobs/").json()
    assert [(entry["id"], entry["inputs"]) for entry in listed] == [(job.id, {"datasets": [dataset.id], "artifacts": []})]


def test_a_row_names_one_thing_of_its_kind(alice, vision, dataset):
    job, _ = train(alice, vision, dataset)
    artifact = make_artifact(job.model)
    with pytest.raises(IntegrityError), transaction.atomic():
        JobInput.objects.create(job=job, kind="dataset", dataset=dataset, artifact=artifact)
    with pytest.raises(IntegrityError), transaction.atomic():
        JobInput.objects.create(job=job, kind="artifact", dataset=dataset)
    assert job.reads.count() == 1


def test_kinds_clients_may_submit_read_nothing(alice):
    """The generic endpoint records no inputs: a kind whose params name a dataset or artifact
    must go through a service that checks access and records what it reads."""
    names = {"dataset", "artifact", "init_artifact", "reference"}
    assert DIRECT_KINDS and all(not names & set(KINDS[kind].serializer().fields) for kind in DIRECT_KINDS)


# --- the "in use" guards, across the team ---------------------------------------------------------


def test_it_refuses_deleting_a_dataset_an_active_job_of_another_project_reads(alice, vision, robots, dataset):
    with_files(dataset)
    job, _ = train(alice, robots, dataset)  # robots trains on vision's dataset
    client = signed_in(alice)
    response = client.delete(f"/api/v1/datasets/{dataset.id}/")
    assert response.status_code == 400
    assert f"job #{job.id}" in str(response.json()) and "in use" in str(response.json())
    assert Dataset.objects.filter(id=dataset.id).exists() and dataset.items.count() == 45
    assert default_storage.exists(f"{dataset.storage_prefix}/index.json")
    Job.objects.filter(id=job.id).update(state=JobState.FAILED)
    assert client.delete(f"/api/v1/datasets/{dataset.id}/").status_code == 204
    assert not default_storage.exists(f"{dataset.storage_prefix}/index.json")
    # the finished job still says it read a dataset, since deleted; its params keep the id
    assert [(row.kind, row.dataset_id) for row in job.reads.all()] == [("dataset", None)]
    assert client.get(f"/api/v1/jobs/{job.id}/").json()["inputs"] == {"datasets": [], "artifacts": []}


def test_it_refuses_deleting_an_artifact_or_its_model_that_a_job_of_another_project_reads(alice, vision, robots, dataset):
    init = make_artifact(make_model(vision, alice), fmt="state_dict", origin=Origin.TRAINED)
    job, _ = train(alice, robots, dataset, model_name="tuned", init_artifact=init.id)
    client = signed_in(alice)
    for url in (f"/api/v1/artifacts/{init.id}/", f"/api/v1/models/{init.model_id}/"):
        response = client.delete(url)
        assert response.status_code == 400 and f"job #{job.id}" in str(response.json()), url
    assert Artifact.objects.filter(id=init.id).exists() and Model.objects.filter(id=init.model_id).exists()


def test_it_refuses_deleting_a_model_a_run_is_training(alice, vision, dataset):
    job, _ = train(alice, vision, dataset)
    response = signed_in(alice).delete(f"/api/v1/models/{job.model_id}/")
    assert response.status_code == 400 and f"training job #{job.id}" in str(response.json())
    assert Model.objects.filter(id=job.model_id).exists()
    Job.objects.filter(id=job.id).update(state=JobState.CANCELLED)
    assert signed_in(alice).delete(f"/api/v1/models/{job.model_id}/").status_code == 204
    job.refresh_from_db()
    assert job.model is None and job.params["model_name"] == "colours"  # the run stays, naming it


# --- a model's runs -----------------------------------------------------------------------------


def test_renaming_a_model_keeps_its_training_runs(alice, vision, dataset):
    first, _ = train(alice, vision, dataset)
    second, _ = train(alice, vision, dataset)
    Job.objects.filter(id=first.id).update(state=JobState.FAILED)
    client = signed_in(alice)
    response = client.patch(f"/api/v1/models/{first.model_id}/", {"name": "hues"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["name"] == "hues"
    page = client.get(f"/models/{first.model_id}/runs/").content.decode()
    assert "Training runs of hues" in page and "2 runs" in page
    assert f'data-job="{first.id}"' in page and f'data-job="{second.id}"' in page
    assert f'href="/models/{first.model_id}/"><b>hues</b>' in client.get(f"/jobs/{first.id}/").content.decode()
