"""Models trained somewhere else, uploaded and used through real workers: their own class names
matched to a dataset's by name, never by the folders' sorted order; a model that is no image model
refused for image jobs before any job exists; a failure said in a sentence with the whole
underlying message in the details."""

from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from tests.helpers import SMALL, make_artifact, make_dataset, make_model, signed_in, uploaded
from tests.jobs_helpers import make_project, wait_done
from tests.model_builders import ColourReader, audio_torchscript, colour_onnx, unconvertible_onnx
from webapp.jobs.models import Job, JobState
from webapp.optimize import services as optimize
from webapp.registry import services as registry
from webapp.registry.models import Artifact

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True),
              pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning", "ignore::DeprecationWarning")]


def imported(user, project, path: Path, name: str) -> Artifact:
    artifact = registry.model_upload(project=project, user=user, name=name, uploads=[uploaded(user, project, path)])
    job = wait_done(artifact.job_id, timeout=180)
    assert job.state == JobState.SUCCEEDED, job.error_detail
    return Artifact.objects.select_related("model").get(id=artifact.id)


def painted_dataset(project, classes=("blue", "green", "red")):
    """A ready dataset whose validation images are painted in their class's colour, in storage."""
    colours = {"red": (220, 30, 30), "green": (30, 220, 30), "blue": (30, 30, 220)}
    dataset = make_dataset(project, classes=list(classes), train=0, val=4)
    images = Path(default_storage.path(dataset.storage_prefix)) / "images"
    for item in dataset.items.all():
        (images / item.path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), colours[item.label]).save(images / item.path)
    return dataset


def test_stored_labels_in_another_order_than_the_folders_are_matched_by_name(worker_host, alice, team_a, tmp_path):
    project = make_project(team_a)
    artifact = imported(alice, project, colour_onnx(tmp_path / "colour_reader.onnx"), "colour reader")
    model = artifact.model
    assert (model.labels, model.labels_confirmed) == (ColourReader.LABELS, False)  # red, green, blue: to confirm
    assert model.labels_source == "the ONNX model's metadata"
    assert (model.scores, model.output_index, artifact.num_classes) == ("probabilities", 0, 3)  # [1, 3, 1, 1]

    registry.model_update(model=model, preprocessing=SMALL)  # its 16 × 16 input, as its owner sets it on the page
    dataset = painted_dataset(project)
    assert dataset.classes == ["blue", "green", "red"]  # sorted folders: the reverse of the model's outputs
    job = wait_done(optimize.artifact_evaluate(artifact=artifact, user=alice, dataset=dataset, params={}).id, timeout=180)
    assert job.state == JobState.SUCCEEDED, job.error_detail
    assert job.result["labels"] == ColourReader.LABELS
    assert job.result["images"] == 12 and job.result["top1"] == 1.0  # in the sorted order, red and blue swap: a third right


def test_a_dataset_whose_classes_do_not_map_onto_the_labels_is_refused_naming_both(alice, team_a):
    project = make_project(team_a)
    model = make_model(project, alice)  # labels blue, green, red
    artifact = make_artifact(model)
    pets = make_dataset(project, classes=["cat", "dog", "red"], name="pets")
    client, jobs = signed_in(alice), Job.objects.count()
    for action, body in (("evaluate", {"dataset": pets.id}), ("quantize", {"dataset": pets.id, "method": "accuracy"})):
        response = client.post(f"/api/v1/artifacts/{artifact.id}/{action}/", body, content_type="application/json")
        assert response.status_code == 400, response.content
        said = str(response.json())
        assert "labels blue, green, red" in said and "classes cat, dog, red" in said and "(cat, dog not among" in said
    assert Job.objects.count() == jobs


def test_an_audio_model_is_refused_for_every_image_job_before_a_job_exists(worker_host, alice, team_a, tmp_path):
    project = make_project(team_a)
    audio = imported(alice, project, audio_torchscript(tmp_path / "keyword_spotter.pt"), "keyword spotter")
    assert audio.inspection["traces"] is False  # its forward() failed on an image batch at inspection
    dataset = make_dataset(project, classes=["yes", "no", "up", "down"], name="words")
    client, jobs = signed_in(alice), Job.objects.count()
    submissions = [
        (f"/api/v1/artifacts/{audio.id}/convert/", {}),
        (f"/api/v1/artifacts/{audio.id}/evaluate/", {"dataset": dataset.id}),
        (f"/api/v1/artifacts/{audio.id}/quantize/", {"dataset": dataset.id}),
        (f"/api/v1/artifacts/{audio.id}/benchmark/", {"seconds": 1}),
        (f"/api/v1/projects/{project.id}/train/", {"dataset": dataset.id, "model_name": "spotter", "architecture": "resnet18",
                                                   "init_artifact": audio.id}),
    ]
    for url, body in submissions:
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 400, (url, response.content)
        said = str(response.json())
        assert "is not an image model" in said and "mat1 and mat2 shapes cannot be multiplied" in said, (url, said)
    assert Job.objects.count() == jobs  # nothing was queued, nothing half-made
    assert Artifact.objects.filter(model__project=project).count() == 1


def test_a_failure_is_a_sentence_with_the_whole_underlying_message_in_the_details(worker_host, alice, team_a, tmp_path):
    project = make_project(team_a)
    dataset = painted_dataset(project)
    mystery = make_artifact(make_model(project, alice), fmt="onnx")  # its rows; its file below
    folder = tmp_path / "mystery"
    folder.mkdir()
    unconvertible_onnx(folder / "model.onnx")
    registry.artifact_publish(artifact=mystery, folder=folder, fmt="onnx", primary="model.onnx",
                              inspection=mystery.inspection)
    job = wait_done(optimize.artifact_evaluate(artifact=mystery, user=alice, dataset=dataset, params={}).id, timeout=180)
    assert job.state == JobState.FAILED
    assert job.error == "OpenVINO could not load the model: Model wasn't fully converted."
    # OpenVINO's whole message, source locations and all, then the traceback
    assert job.error_detail.startswith("Exception from src/inference/src/cpp/core.cpp")
    assert "No conversion rule found for operations: com.example.custom.Mystery" in job.error_detail
    assert "Traceback" in job.error_detail
    page = signed_in(alice).get(f"/jobs/{job.id}/").content.decode()
    assert 'data-testid="job-error-details"' in page and "com.example.custom.Mystery" in page


def test_the_api_confirms_or_sets_labels_and_says_which_output_holds_the_scores(alice, bob, team_a):
    project = make_project(team_a)
    model = make_model(project, alice)
    make_artifact(model)  # one output, [1, 3]
    registry.model_update(model=model, labels=[])
    warning = registry.model_take_inspection(model=model, inspection={
        "labels": ["red", "green", "blue"], "labels_source": "labels.txt in the zip", "scores": "probabilities"})
    assert warning == ""
    client, url = signed_in(bob), f"/api/v1/models/{model.id}/"
    shown = client.get(url).json()
    assert (shown["labels"], shown["labels_source"], shown["labels_confirmed"], shown["scores"]) == (
        ["red", "green", "blue"], "labels.txt in the zip", False, "probabilities")
    assert client.patch(url, {"labels_confirmed": True}, content_type="application/json").json()["labels_confirmed"] is True
    refused = client.patch(url, {"output_index": 1}, content_type="application/json")
    assert refused.status_code == 400 and "The model has 1 output; choose one from 0 to 0." in str(refused.json())
    assert client.patch(url, {"scores": "softmaxed"}, content_type="application/json").status_code == 400
    model.refresh_from_db()
    assert (model.labels_confirmed, model.output_index, model.scores) == (True, 0, "probabilities")
    # another artifact whose file names the classes in another order: the model's stay, and the job log says so
    assert "model “colours” keeps its labels red, green, blue" in registry.model_take_inspection(
        model=model, inspection={"labels": ["blue", "green", "red"], "labels_source": "the ONNX model's metadata"})
