"""Quantization's API, form and report, with rows made directly in the database (no worker): what
is refused before a job exists, who may ask, and what the INT8 artifact's pages say."""

import html

import pytest

from tests.helpers import make_artifact, make_dataset, make_model, signed_in
from tests.jobs_helpers import make_project
from webapp.jobs.models import Job, JobState
from webapp.registry.models import Origin
from webapp.teams.models import Membership, Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(team_a):
    return make_project(team_a, "Colour sorter")


@pytest.fixture
def model(project, alice):
    return make_model(project, alice)


@pytest.fixture
def fp32(model):
    return make_artifact(model, fmt="state_dict", origin=Origin.TRAINED)


@pytest.fixture
def dataset(project):
    return make_dataset(project)


def api_quantize(user, artifact, **body):
    return signed_in(user).post(f"/api/v1/artifacts/{artifact.id}/quantize/", body, content_type="application/json")


QUANTIZATION = {
    "method": "accuracy", "calibration_images": 36, "dataset": None, "dataset_name": "colours v1",
    "fp32": {"images": 9, "top1": 0.9556, "top5": 1.0}, "int8": {"images": 9, "top1": 0.9333, "top5": 1.0},
    "drop": 0.0223, "target": {"max_drop": 0.01, "drop_type": "absolute", "allowed": 0.01, "met": False},
    "restored": ["/features/0/Conv", "/classifier/Gemm"], "quantized_layers": 8, "log": [],
    "warnings": ["The accuracy target was not met: the drop is 2.2 points, more than the 1.0 points allowed."],
    "seconds": {"quantizing": 3.2, "measuring INT8": 0.4}, "folder": "/tmp/x",
    "settings": {"method": "accuracy", "subset_size": 36, "preset": "mixed", "fast_bias_correction": False,
                 "model_type": "", "ignored_scope": ["re:.*downsample.*"], "max_drop": 1.0, "drop_type": "absolute"},
}


# --- REST API ------------------------------------------------------------------------------------


def test_it_starts_a_quantize_job_on_the_optimize_queue(alice, fp32, dataset):
    response = api_quantize(alice, fp32, dataset=dataset.id, subset_size=20, ignored_scope=["re:.*head.*", " "])
    assert response.status_code == 201, response.content
    job = Job.objects.get(id=response.json()["id"])
    assert (job.kind, job.queue, job.state) == ("quantize", "optimize", JobState.QUEUED)
    assert job.params["artifact"] == fp32.id and job.params["dataset"] == dataset.id and job.params["subset_size"] == 20
    assert job.params["ignored_scope"] == ["re:.*head.*"] and job.params["fast_bias_correction"] is True
    assert response.json()["inputs"] == {"artifacts": [fp32.id], "datasets": [dataset.id]}
    assert job.model_id == fp32.model_id  # its INT8 artifact will be the model's


def test_it_sends_quantization_aware_training_to_the_train_queue(alice, fp32, dataset):
    response = api_quantize(alice, fp32, dataset=dataset.id, method="qat", epochs=2)
    assert response.status_code == 201, response.content
    assert response.json()["queue"] == "train" and response.json()["params"]["epochs"] == 2


def test_it_takes_a_form_encoded_body(alice, fp32, dataset):
    response = signed_in(alice).post(f"/api/v1/artifacts/{fp32.id}/quantize/",
                                     {"dataset": dataset.id, "preset": "mixed", "ignored_scope": ["a", "re:b.*"]})
    assert response.status_code == 201, response.content
    assert response.json()["params"]["preset"] == "mixed" and response.json()["params"]["ignored_scope"] == ["a", "re:b.*"]


def test_it_answers_404_for_a_dataset_of_another_team(alice, charlie, team_c, fp32):
    theirs = make_dataset(make_project(team_c, "Theirs"))
    response = api_quantize(alice, fp32, dataset=theirs.id)
    assert response.status_code == 404
    assert not Job.objects.filter(kind="quantize").exists()


def test_it_answers_404_to_another_teams_user(charlie, team_c, fp32, dataset):
    assert api_quantize(charlie, fp32, dataset=dataset.id).status_code == 404


def test_a_viewer_may_not_quantize(team_a, fp32, dataset):
    from tests.conftest import make_user

    viewer = make_user("dora")
    Membership.objects.create(team=team_a, user=viewer, role=Role.VIEWER)
    assert api_quantize(viewer, fp32, dataset=dataset.id).status_code == 403
    assert "quantize-form" not in signed_in(viewer).get(f"/artifacts/{fp32.id}/").content.decode()


def test_it_asks_for_a_dataset(alice, fp32):
    response = api_quantize(alice, fp32)
    assert response.status_code == 400
    assert response.json() == {"params.dataset": ["Choose a dataset."]}


def test_it_refuses_an_int8_artifact(alice, model, fp32, dataset):
    int8 = make_artifact(model, fmt="openvino_ir", precision="int8", origin=Origin.QUANTIZED, parent=fp32)
    response = api_quantize(alice, int8, dataset=dataset.id)
    assert response.status_code == 400
    assert "INT8 already" in response.json()["non_field_errors"][0]
    assert not Job.objects.filter(kind="quantize").exists()


def test_it_refuses_a_dataset_of_other_classes_naming_both(alice, project, fp32):
    pets = make_dataset(project, ["cat", "dog"], name="pets")
    response = api_quantize(alice, fp32, dataset=pets.id)
    assert response.status_code == 400
    message = response.json()["params.dataset"][0]
    assert "blue, green, red" in message and "cat, dog" in message
    assert not Job.objects.filter(kind="quantize").exists()


def test_it_refuses_quantization_aware_training_of_an_ir(alice, model, dataset):
    ir = make_artifact(model, fmt="openvino_ir", origin=Origin.CONVERTED)
    response = api_quantize(alice, ir, dataset=dataset.id, method="qat")
    assert response.status_code == 400
    assert "PyTorch state_dict" in response.json()["params.method"][0]


def test_an_unknown_method_is_a_field_error(alice, fp32, dataset):
    response = api_quantize(alice, fp32, dataset=dataset.id, method="magic")
    assert response.status_code == 400
    assert "not a valid choice" in response.json()["params.method"][0]


def test_a_bad_ignored_scope_pattern_is_a_field_error(alice, fp32, dataset):
    response = api_quantize(alice, fp32, dataset=dataset.id, ignored_scope=["re:("])
    assert response.status_code == 400
    assert "not a regular expression" in str(response.json()["params.ignored_scope"])


# --- the form on the artifact page ---------------------------------------------------------------


def test_the_form_shows_on_an_fp32_artifact_page_with_the_fitting_dataset_chosen(alice, project, fp32, dataset):
    make_dataset(project, ["cat", "dog"], name="pets")
    page = signed_in(alice).get(f"/artifacts/{fp32.id}/").content.decode()
    assert 'data-testid="quantize-form"' in page and "Quantize to INT8" in page
    assert f'<option value="{dataset.id}" selected>colours v1 · 3 classes' in page
    assert "pets v1 · 2 classes · 30 images · other classes" in page
    assert 'value="qat"' in page  # a state_dict may be trained
    assert "js/quantize_form" in page


def test_the_form_offers_no_qat_for_an_ir(alice, model):
    ir = make_artifact(model, fmt="openvino_ir", origin=Origin.CONVERTED)
    page = signed_in(alice).get(f"/artifacts/{ir.id}/").content.decode()
    assert 'data-testid="quantize-form"' in page and 'value="qat"' not in page


def test_the_form_is_not_offered_on_an_int8_artifact(alice, model, fp32):
    int8 = make_artifact(model, fmt="openvino_ir", precision="int8", origin=Origin.QUANTIZED, parent=fp32)
    page = signed_in(alice).get(f"/artifacts/{int8.id}/").content.decode()
    assert 'data-testid="quantize-form"' not in page and "js/quantize_form" not in page


def test_a_form_post_starts_the_job_and_goes_to_its_page(alice, fp32, dataset):
    client = signed_in(alice)
    response = client.post(f"/artifacts/{fp32.id}/quantize/", {
        "dataset": dataset.id, "method": "accuracy", "subset_size": "40", "preset": "performance", "model_type": "",
        "ignored_scope": "/features/0/Conv\r\n\r\nre:.*classifier.*\r\n", "max_drop": "0.5", "drop_type": "relative",
    })  # fast_bias_correction unchecked: the browser sends nothing for it
    job = Job.objects.get(kind="quantize")
    assert response.status_code == 302 and response.url == f"/jobs/{job.id}/"
    assert job.params["method"] == "accuracy" and job.params["subset_size"] == 40
    assert job.params["fast_bias_correction"] is False
    assert job.params["ignored_scope"] == ["/features/0/Conv", "re:.*classifier.*"]
    assert job.params["max_drop"] == 0.5 and job.params["drop_type"] == "relative"


def test_a_form_post_with_a_dataset_of_other_classes_shows_the_error_and_starts_nothing(alice, project, fp32):
    pets = make_dataset(project, ["cat", "dog"], name="pets")
    response = signed_in(alice).post(f"/artifacts/{fp32.id}/quantize/", {"dataset": pets.id, "method": "ptq",
                                                                         "fast_bias_correction": "on"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/artifacts/{fp32.id}/"
    page = html.unescape(response.content.decode())
    assert ("dataset: The dataset's classes do not map onto the model's labels by name. Model “colours” has the labels "
            "blue, green, red; dataset “pets v1” has the classes cat, dog (cat, dog not among the model's).") in page
    assert not Job.objects.filter(kind="quantize").exists()


def test_a_form_post_without_a_dataset_says_so(alice, fp32):
    response = signed_in(alice).post(f"/artifacts/{fp32.id}/quantize/", {"method": "ptq"}, follow=True)
    assert "dataset: Choose a dataset." in response.content.decode()
    assert not Job.objects.filter(kind="quantize").exists()


def test_another_teams_user_gets_404_for_the_form_post(charlie, team_c, fp32, dataset):
    response = signed_in(charlie).post(f"/artifacts/{fp32.id}/quantize/", {"dataset": dataset.id})
    assert response.status_code == 404
    assert not Job.objects.filter(kind="quantize").exists()


# --- what an INT8 artifact's pages say -------------------------------------------------------------


def test_the_int8_artifact_page_reports_accuracy_before_and_after(alice, project, model, fp32, dataset):
    job = Job.objects.create(project=project, kind="quantize", params={"method": "accuracy"}, state=JobState.SUCCEEDED)
    int8 = make_artifact(model, fmt="openvino_ir", precision="int8", origin=Origin.QUANTIZED, parent=fp32, job=job,
                         metrics={"quantization": {**QUANTIZATION, "dataset": dataset.id}})
    page = signed_in(alice).get(f"/artifacts/{int8.id}/").content.decode()
    assert 'data-testid="quantization"' in page
    assert "Post-training quantization with accuracy control" in page
    assert "Target not met: the drop is 2.2 points, more than the 1.0 allowed, even with 2 layers put back" in page
    assert '<td class="end num" data-field="fp32">95.6 %</td>' in page
    assert '<td class="end num" data-field="int8">93.3 %</td>' in page
    assert '<td class="end num change down" data-field="change">−2.2 points</td>' in page
    assert '<td class="end num change same" data-field="change">0.0 points</td>' in page  # top-5
    assert "<code>/classifier/Gemm</code>" in page and "<code>re:.*downsample.*</code>" in page
    assert "36 images of the train split · mixed preset · full bias correction" in page
    assert "a top-1 drop of at most 1 point of top-1" in page and "8 quantized" in page
    assert f'href="/datasets/{dataset.id}/">colours v1</a>' in page
    assert "The accuracy target was not met" in page  # the job's warnings
    assert 'data-testid="quantize-form"' not in page

    # the model page's artifact list: the INT8 row says its top-1 and the change
    listing = signed_in(alice).get(f"/models/{model.id}/").content.decode()
    assert "· top-1 93.3 % <span class=\"change down\">(−2.2)</span>" in listing


def test_a_met_target_and_a_qat_run_say_so_plainly(alice, project, model, fp32, dataset):
    job = Job.objects.create(project=project, kind="quantize", params={"method": "qat"}, state=JobState.SUCCEEDED)
    facts = {**QUANTIZATION, "method": "qat", "target": None, "restored": [], "warnings": [], "drop": -0.0111,
             "int8": {"images": 9, "top1": 0.9667, "top5": 1.0}, "settings": {"ignored_scope": []}, "seconds": {}}
    qat = make_artifact(model, fmt="openvino_ir", precision="int8", origin=Origin.QUANTIZED, parent=fp32, job=job,
                        metrics={"quantization": facts, "training": {"epochs_run": 2, "best_epoch": 2, "device": "cpu"}})
    page = signed_in(alice).get(f"/artifacts/{qat.id}/").content.decode()
    assert "Quantization-aware training" in page and "Target" not in page
    assert '<td class="end num change up" data-field="change">+1.1 points</td>' in page
    assert "2 epochs of quantization-aware training, best epoch 2 on cpu" in page
    assert f'<a href="/jobs/{job.id}/">curves on the job page</a>' in page
    assert '<dd data-testid="quantization-kept">' in page and "none" in page

    accuracy = {**QUANTIZATION, "dataset": dataset.id, "drop": 0.0044, "restored": [],
                "target": {"max_drop": 0.01, "drop_type": "absolute", "allowed": 0.01, "met": True}}
    met = make_artifact(model, fmt="openvino_ir", precision="int8", origin=Origin.QUANTIZED, parent=fp32,
                        metrics={"quantization": accuracy})
    page = signed_in(alice).get(f"/artifacts/{met.id}/").content.decode()
    assert "Target met: the drop is 0.4 points, within the 1.0 allowed." in page


def test_the_job_page_of_quantization_aware_training_shows_the_training_charts(alice, project, fp32):
    client = signed_in(alice)
    qat = Job.objects.create(project=project, kind="quantize", params={"method": "qat", "artifact": fp32.id, "dataset": 1,
                                                                         "epochs": 3, "batch_size": 8, "subset_size": 20})
    page = client.get(f"/jobs/{qat.id}/").content.decode()
    assert 'data-testid="train-card">' in page and 'data-training="1"' in page and "Quantization-aware training of" in page
    assert "{#" not in page and "{%" not in page  # no template comment leaks into the page
    ptq = Job.objects.create(project=project, kind="quantize", params={"method": "ptq", "artifact": fp32.id, "dataset": 1},
                             state=JobState.SUCCEEDED, result={"artifact": fp32.id, "fp32_top1": 0.9, "int8_top1": 0.9})
    page = client.get(f"/jobs/{ptq.id}/").content.decode()
    assert 'data-testid="train-card" hidden' in page and 'data-training=""' in page
    assert f'<a href="/artifacts/{fp32.id}/"' in page  # the output link (job.result.artifact)
