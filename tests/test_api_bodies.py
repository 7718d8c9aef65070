"""The API's job-starting endpoints take a form-encoded body as well as JSON (curl -F, a plain
HTML form): one value a name, and every value of the parameters that take several."""

import pytest

from tests.helpers import make_artifact, make_dataset, make_model, signed_in
from tests.jobs_helpers import make_project
from webapp.jobs.models import Job
from webapp.projects.models import Project
from webapp.registry.models import Model, Origin

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(team_a, alice):
    return make_artifact(make_model(make_project(team_a), alice), fmt="state_dict", origin=Origin.TRAINED)


@pytest.fixture
def dataset(trained):
    return make_dataset(trained.model.project)


def started(response) -> Job:
    assert response.status_code == 201, response.content
    return Job.objects.get(id=response.json()["id"])


def test_convert_takes_one_value_a_name(alice, trained):
    job = started(signed_in(alice).post(f"/api/v1/artifacts/{trained.id}/convert/",
                                        {"shape": "dynamic_batch", "samples": "6", "embed_preprocessing": "true"}))
    assert (job.params["shape"], job.params["samples"], job.params["embed_preprocessing"]) == ("dynamic_batch", 6, True)


def test_benchmark_takes_each_hint_given(alice, trained):
    fp32 = make_artifact(trained.model, parent=trained)
    job = started(signed_in(alice).post(f"/api/v1/artifacts/{fp32.id}/benchmark/",
                                        {"seconds": "2", "hints": ["latency", "throughput"], "layer_counters": "false"}))
    assert (job.params["seconds"], job.params["hints"], job.params["layer_counters"]) == (2.0, ["latency", "throughput"], False)


def test_evaluate_and_train_take_their_dataset(alice, trained, dataset):
    client = signed_in(alice)
    evaluation = started(client.post(f"/api/v1/artifacts/{trained.id}/evaluate/", {"dataset": dataset.id, "split": "train"}))
    assert (evaluation.params["dataset"], evaluation.params["split"]) == (dataset.id, "train")
    training = started(client.post(f"/api/v1/projects/{dataset.project_id}/train/",
                                   {"dataset": dataset.id, "model_name": "again", "epochs": "2"}))
    assert (training.params["dataset"], training.params["epochs"], training.params["model_name"]) == (dataset.id, 2, "again")


def test_a_form_encoded_body_is_checked_like_json(alice, trained):
    response = signed_in(alice).post(f"/api/v1/artifacts/{trained.id}/convert/", {"shape": ["static", "round"]})
    assert response.status_code == 400 and "params.shape" in response.json()  # the last value counts, as in Django
    assert not Job.objects.exists()


def test_a_job_without_its_dataset_is_a_field_error(alice, trained):
    client = signed_in(alice)
    for url in (f"/api/v1/projects/{trained.model.project_id}/train/", f"/api/v1/artifacts/{trained.id}/evaluate/"):
        response = client.post(url, {"model_name": "again"})
        assert response.status_code == 400 and response.json()["params.dataset"][0].startswith("Choose a dataset"), url
    assert not Job.objects.exists()


def test_a_conversion_checked_on_a_dataset_that_is_no_number_is_a_field_error(alice, trained):
    response = signed_in(alice).post(f"/api/v1/artifacts/{trained.id}/convert/", {"dataset": "pets"})
    assert response.status_code == 400 and "params.dataset" in response.json()  # was int("pets"): a 500
    assert not Job.objects.exists()


def test_it_refuses_an_init_artifact_that_is_no_id_naming_the_field(alice, trained, dataset):
    for value in ("abc", "²", 1.5, 2**64):  # "abc" and "²" were int(): a 500; 1.5 was taken as artifact 1
        response = signed_in(alice).post(f"/api/v1/projects/{dataset.project_id}/train/",
                                         {"dataset": dataset.id, "model_name": "again", "init_artifact": value},
                                         content_type="application/json")
        assert response.status_code == 400 and "params.init_artifact" in response.json(), value
    assert not Job.objects.exists() and Model.objects.count() == 1


def test_it_refuses_a_dataset_in_superscript_digits_naming_the_field(alice, trained, dataset):
    # "²".isdigit() is True, and int("²") fails: it was a 500
    for body in ({"dataset": "²", "model_name": "again"}, {"dataset": f"{dataset.id}²", "model_name": "again"}):
        response = signed_in(alice).post(f"/api/v1/projects/{dataset.project_id}/train/", body)
        assert response.status_code == 400 and response.json()["params.dataset"] == ["Choose a dataset."], body
    assert not Job.objects.exists() and Model.objects.count() == 1


def test_a_seed_is_one_numpy_takes(alice, trained, dataset):
    url = f"/api/v1/projects/{dataset.project_id}/train/"
    for seed in (2**64, 2**32):  # 2**64 was stored, then refused by the job; numpy takes 32 bits
        refused = signed_in(alice).post(url, {"dataset": dataset.id, "model_name": "again", "seed": seed},
                                        content_type="application/json")
        assert refused.status_code == 400 and "params.seed" in refused.json(), seed
    assert not Job.objects.exists() and Model.objects.count() == 1
    largest = started(signed_in(alice).post(url, {"dataset": dataset.id, "model_name": "again", "seed": 2**32 - 1},
                                            content_type="application/json"))
    assert largest.params["seed"] == 2**32 - 1


def test_a_json_body_that_is_no_object_is_refused(alice, trained, dataset):
    client = signed_in(alice)
    for url in (f"/api/v1/projects/{dataset.project_id}/train/", f"/api/v1/artifacts/{trained.id}/convert/",
                f"/api/v1/artifacts/{trained.id}/evaluate/", f"/api/v1/artifacts/{trained.id}/benchmark/", "/api/v1/projects/"):
        for body in ("[1, 2]", '"abc"', "5", "null"):  # dict() of it, or .get() on it, was a 500
            response = client.post(url, body, content_type="application/json")
            assert response.status_code == 400 and list(response.json()) == ["non_field_errors"], (url, body)
    assert not Job.objects.exists() and Model.objects.count() == 1 and Project.objects.count() == 1


# --- unknown keys: a 400 naming each, and nothing made --------------------------------------------


def test_an_unknown_job_parameter_is_named_and_starts_nothing(alice, trained, dataset):
    client = signed_in(alice)
    project = trained.model.project
    train = client.post(f"/api/v1/projects/{project.id}/train/", {"dataset": dataset.id, "model_name": "m", "epochz": 3},
                        content_type="application/json")
    assert train.status_code == 400 and "epochz" in train.json()["params.epochz"][0]
    probe = client.post(f"/api/v1/projects/{project.id}/jobs/", {"kind": "probe", "params": {"roundz": 1}},
                        content_type="application/json")
    assert probe.status_code == 400 and "params.roundz" in probe.json()
    matrix = client.post(f"/api/v1/artifacts/{make_artifact(trained.model, parent=trained).id}/benchmark/",
                         {"matrix": [{"batch": 1, "streams": 1, "threads": 4}]}, content_type="application/json")
    assert matrix.status_code == 400 and "threads" in str(matrix.json()["params.matrix"])
    assert not Job.objects.exists()
    assert list(Model.objects.values_list("name", flat=True)) == [trained.model.name]  # no model "m" either


def test_an_unknown_key_of_the_other_json_apis_is_named_and_changes_nothing(alice, team_a, trained):
    client = signed_in(alice)
    project = client.post("/api/v1/projects/", {"team": team_a.id, "name": "P", "colour": "red"},
                          content_type="application/json")
    assert project.status_code == 400 and "colour" in project.json()
    assert not Project.objects.filter(name="P").exists()
    model = trained.model
    edit = client.patch(f"/api/v1/models/{model.id}/", {"name": "renamed", "preprocessing": {**model.preprocessing, "gamma": 2}},
                        content_type="application/json")
    assert edit.status_code == 400 and "gamma" in str(edit.json()["preprocessing"])
    rename = client.patch(f"/api/v1/teams/{team_a.id}/", {"name": "B", "owner": "charlie"}, content_type="application/json")
    assert rename.status_code == 400 and "owner" in rename.json()
    model.refresh_from_db()
    team_a.refresh_from_db()
    assert (model.name, team_a.name) == ("colours", "Team A")
