"""Unlabelled datasets, with rows made directly in the database (no worker): plain post-training
quantization takes one whatever the model's classes; the jobs that score or train refuse it before
a job exists, saying they need labels; the pages say what it is good for; and the worker believes an
import's index that says it made an unlabelled dataset only where it holds together."""

import pytest

from tests.helpers import make_artifact, make_dataset, make_model, make_unlabelled_dataset, signed_in, uploaded
from tests.jobs_helpers import make_project
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job
from webapp.registry.models import Origin
from workers.kinds.dataset_import import described
from workers.pipeline.reporting import JobError

pytestmark = pytest.mark.django_db

NEEDS_LABELS = "is unlabelled: usable for calibration only"


@pytest.fixture
def project(team_a):
    return make_project(team_a, "Fruit")


@pytest.fixture
def fp32(project, alice):
    return make_artifact(make_model(project, alice), fmt="state_dict", origin=Origin.TRAINED)


@pytest.fixture
def photos(project):
    return make_unlabelled_dataset(project)


def post(user, path: str, **body):
    return signed_in(user).post(path, body, content_type="application/json")


def test_plain_ptq_takes_an_unlabelled_dataset_whatever_the_models_classes(alice, fp32, photos):
    assert fp32.model.labels == ["blue", "green", "red"]
    response = post(alice, f"/api/v1/artifacts/{fp32.id}/quantize/", dataset=photos.id, method="ptq", subset_size=20)
    assert response.status_code == 201, response.content
    job = Job.objects.get(id=response.json()["id"])
    assert (job.kind, job.params["method"], job.params["dataset"]) == ("quantize", "ptq", photos.id)


@pytest.mark.parametrize("method, words", [("accuracy", "Quantization with accuracy control"),
                                           ("qat", "Quantization-aware training")])
def test_other_quantization_methods_refuse_an_unlabelled_dataset_up_front(alice, fp32, photos, method, words):
    response = post(alice, f"/api/v1/artifacts/{fp32.id}/quantize/", dataset=photos.id, method=method)
    assert response.status_code == 400
    message = response.json()["params.dataset"][0]
    assert NEEDS_LABELS in message and f"{words} needs labels" in message
    assert not Job.objects.exists()


def test_evaluation_and_training_refuse_an_unlabelled_dataset_up_front(alice, project, fp32, photos):
    response = post(alice, f"/api/v1/artifacts/{fp32.id}/evaluate/", dataset=photos.id)
    assert response.status_code == 400 and "Evaluation needs labels" in response.json()["params.dataset"][0]
    response = post(alice, f"/api/v1/projects/{project.id}/train/", dataset=photos.id, model_name="fruit",
                    architecture="small_cnn")
    assert response.status_code == 400 and "Training needs labels" in response.json()["params.dataset"][0]
    assert not Job.objects.exists() and project.models.filter(name="fruit").count() == 0


def test_ptq_on_unlabelled_images_still_checks_the_images(alice, fp32, photos, project):
    fp32.inspection = {**fp32.inspection, "inputs": [{"name": "x", "shape": [1, 1, 16, 16], "dtype": "f32"}]}
    fp32.save(update_fields=["inspection"])
    response = post(alice, f"/api/v1/artifacts/{fp32.id}/quantize/", dataset=photos.id)
    assert response.status_code == 400 and "1-channel input" in response.json()["params.dataset"][0]
    few = make_unlabelled_dataset(project, name="few", images=6)
    fp32.inspection["inputs"][0]["shape"] = [1, 3, 16, 16]
    fp32.save(update_fields=["inspection"])
    response = post(alice, f"/api/v1/artifacts/{fp32.id}/quantize/", dataset=few.id)
    assert response.status_code == 400 and "calibration needs at least 10" in response.json()["params.dataset"][0]
    assert not Job.objects.exists()


def test_the_forms_offer_an_unlabelled_dataset_for_plain_ptq_only(alice, project, fp32, photos):
    labelled = make_dataset(project)
    page = signed_in(alice).get(f"/artifacts/{fp32.id}/").content.decode()
    quantize = page[page.index('data-testid="quantize-form"'):]
    quantize = quantize[:quantize.index("</select>")]
    assert f'<option value="{photos.id}" data-unlabelled>' in quantize
    assert "unlabelled · 20 images · post-training only" in quantize
    assert f'<option value="{labelled.id}" selected>' in quantize  # the model's classes first: it also measures
    evaluate = page[page.index('data-testid="evaluate-form"'):]
    evaluate = evaluate[:evaluate.index("</select>")]
    assert f'value="{labelled.id}"' in evaluate and f'value="{photos.id}"' not in evaluate
    train = signed_in(alice).get(f"/projects/{project.id}/train/").content.decode()
    train = train[train.index('name="dataset"'):]
    train = train[:train.index("</select>")]
    assert f'value="{labelled.id}"' in train and f'value="{photos.id}"' not in train


def test_the_dataset_page_says_unlabelled_and_shows_no_class_counts(alice, photos):
    page = signed_in(alice).get(f"/datasets/{photos.id}/").content.decode()
    assert "unlabelled: usable for calibration only" in page and 'data-testid="unlabelled-note"' in page
    assert 'data-testid="class-chart"' not in page and 'data-testid="train-on-dataset"' not in page
    assert page.count("/thumbs/") == 12 and "20 images · no labels" in page  # the preview: the first 12
    gallery = signed_in(alice).get(f"/datasets/{photos.id}/gallery/").content.decode()
    assert gallery.count('data-testid="gallery-item"') == 20 and 'data-testid="filter-label"' not in gallery


def test_the_upload_api_takes_an_explicit_choice_and_refuses_an_unknown_one(alice, project, tmp_path):
    archive = tmp_path / "photos.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # what it holds is the import's business
    response = post(alice, f"/api/v1/projects/{project.id}/datasets/", name="photos",
                    upload=str(uploaded(alice, project, archive).id), labelling="sometimes")
    assert response.status_code == 400 and "labelling" in response.json()
    assert not Dataset.objects.exists() and not Job.objects.exists()
    response = post(alice, f"/api/v1/projects/{project.id}/datasets/", name="photos",
                    upload=str(uploaded(alice, project, archive).id), labelling="unlabelled")
    assert response.status_code == 201, response.content
    assert response.json()["labelling"] == "unlabelled" == Dataset.objects.get().labelling


ITEM = {"path": "train/a.png", "label": "", "split": "train", "width": 4, "height": 4, "mode": "RGB", "format": "PNG",
        "thumb": "thumbs/000000.jpg"}
FILES = {"images/train/a.png": 10, "thumbs/000000.jpg": 5, "index.json": 99}


@pytest.mark.parametrize("labelling", ["auto", "unlabelled"])
def test_the_worker_believes_an_unlabelled_index_that_holds_together(labelling):
    index = {"labelled": False, "classes": [], "items": [ITEM], "report": {}}
    items, classes, labelled = described(index, FILES, images=1, labelling=labelling)
    assert (len(items), classes, labelled) == (1, [], False)


@pytest.mark.parametrize("index, labelling", [
    ({"labelled": False, "classes": [], "items": [ITEM]}, "labelled"),  # not what the uploader asked for
    ({"labelled": True, "classes": ["x", "y"], "items": [{**ITEM, "label": "x"}]}, "unlabelled"),
    ({"labelled": False, "classes": ["x"], "items": [ITEM]}, "auto"),  # unlabelled with classes
    ({"labelled": False, "classes": [], "items": [{**ITEM, "label": "x"}]}, "auto"),  # an unlabelled item with one
    ({"labelled": False, "classes": [], "items": [{**ITEM, "split": "val"}]}, "auto"),  # calibration reads train
    ({"labelled": True, "classes": [], "items": [ITEM]}, "auto"),  # labelled without classes
])
def test_the_worker_publishes_nothing_from_an_index_that_does_not_hold_together(index, labelling):
    with pytest.raises(JobError, match="nothing was published"):
        described({**index, "report": {}}, FILES, images=1, labelling=labelling)


def test_the_pages_of_an_int8_artifact_calibrated_without_labels_say_nothing_was_measured(alice, fp32, photos):
    facts = {"method": "ptq", "calibration_images": 20, "dataset": photos.id, "dataset_name": "photos v1",
             "fp32": None, "int8": None, "drop": None, "target": None, "restored": [], "quantized_layers": 4,
             "warnings": [], "seconds": {"quantizing": 1.0}, "settings": {"method": "ptq", "preset": "performance"}}
    int8 = make_artifact(fp32.model, precision="int8", origin=Origin.QUANTIZED, parent=fp32,
                         metrics={"quantization": facts})
    client = signed_in(alice)
    page = client.get(f"/artifacts/{int8.id}/").content.decode()
    assert "Calibrated on unlabelled images: accuracy was not measured" in page and "20 unlabelled images" in page
    assert 'data-testid="quantization-accuracy"' not in page
    page = client.get(f"/models/{fp32.model_id}/").content.decode()
    assert 'data-field="int8-top1"' not in page
    compare = client.get(f"/api/v1/models/{fp32.model_id}/compare/")
    assert compare.status_code == 200
    rows = {row["artifact"]: row for row in compare.json()["rows"]}
    assert rows[int8.id]["top1"] is None
