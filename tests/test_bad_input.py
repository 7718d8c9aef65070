"""Inputs that once answered 500 (issue 22): each is refused naming its field (the API: a 400; a
page: its form again with the message), and nothing is created or changed. Rows are made directly
in the database; no worker runs."""

import pytest

from tests.helpers import make_artifact, make_dataset, make_model, signed_in
from tests.jobs_helpers import make_project
from webapp.jobs.models import Job
from webapp.projects.models import Project
from webapp.registry.models import Model, Origin

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(team_a):
    return make_project(team_a)


@pytest.fixture
def model(project, alice):
    return make_model(project, alice)


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
