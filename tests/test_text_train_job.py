"""The train job for text: a tiny BERT fine-tuned through a real worker and jail publishes a
transformers artifact of a text model with the job page's curves; runs that pair text with images,
or take image-only settings, are refused before any row exists."""

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.utils import timezone

from tests.helpers import make_artifact, make_dataset, signed_in
from tests.jobs_helpers import events, make_project, wait_done
from tests.text_builders import tiny_classifier_folder, topic_rows
from webapp.core import files
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobState
from webapp.registry import services as registry
from webapp.registry.models import Artifact, Model
from workers.jail import checked_tree
from workers.pipeline.text.rows import TextRow, write_text_dataset

CLASSES = ["food", "sport", "weather"]


def text_dataset(project, tmp_path: Path, *, name: str = "topics") -> Dataset:
    """A ready text dataset, its folder published as the import publishes one."""
    rows = [TextRow(text=row["text"], label=row["label"], split="train" if i < 120 else "val", line=i + 2)
            for i, row in enumerate(topic_rows(160))]
    dataset = Dataset.objects.create(project=project, name=name, modality="text", archive_name=f"{name}.csv",
                                     archive_sha256="0" * 64, imported_at=timezone.now(), classes=CLASSES,
                                     image_count=len(rows))
    files.publish_tree(write_text_dataset(tmp_path / name, classes=CLASSES, rows=rows, report={}),
                       dataset.storage_prefix)
    return dataset


def text_artifact(project, user, tmp_path: Path, labels=("sport", "weather", "food")) -> Artifact:
    """A ready transformers artifact of a text model: a tiny random BERT, published by the registry."""
    model = Model.objects.create(project=project, name="tiny-bert", modality="text", labels=list(labels),
                                 created_by=user)
    artifact = Artifact.objects.create(model=model, origin="uploaded", created_by=user)
    folder = tiny_classifier_folder(tmp_path / "bert", list(labels))
    checked_tree(folder)  # plain modes, as the worker publishes (save_pretrained writes weights 0600)
    registry.artifact_publish(artifact=artifact, folder=folder, fmt="transformers", primary="config.json",
                              inspection={"inputs": [{"name": "input_ids", "shape": [None, None], "dtype": "i64"}],
                                          "outputs": [{"name": "logits", "shape": [None, 3], "dtype": "f32"}],
                                          "precision": "fp32", "modality": "text"})
    artifact.refresh_from_db()
    return artifact


def metric(job_id: int, name: str) -> list[float]:
    return [e.data["value"] for e in events(job_id, "metric") if e.data["name"] == name]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_fine_tuning_a_text_model_publishes_a_transformers_artifact_with_curves(worker_host, alice, team_a, tmp_path):
    project = make_project(team_a)
    dataset, init = text_dataset(project, tmp_path), text_artifact(project, alice, tmp_path)
    job = registry.model_train(project=project, user=alice, dataset=dataset, init=init, params={
        "model_name": "topics", "epochs": 2, "batch_size": 16, "lr": 2e-3, "max_length": 32})
    assert job.params["architecture"] == "bert-mini" and job.model.modality == "text"
    job = wait_done(job.id, timeout=240)
    assert job.state == JobState.SUCCEEDED, job.error_detail

    # the curves the job page draws (that the model learns is test_text_training's)
    accuracy, f1 = metric(job.id, "epoch/val_top1"), metric(job.id, "epoch/val_f1")
    assert len(accuracy) == 2 and len(f1) == 2 and len(metric(job.id, "epoch/train_loss")) == 2
    assert metric(job.id, "train/loss") and metric(job.id, "train/lr")  # per step (the reporter may average)
    assert job.result["val_top1"] == max(accuracy) and job.result["best_epoch"] in (1, 2)
    log = "\n".join(e.data["message"] for e in events(job.id, "log"))
    assert "2 epochs of 8 steps" in log and "longer than max_length 32" in log

    artifact = Artifact.objects.get(id=job.result["artifact"])
    assert (artifact.origin, artifact.format, artifact.primary, artifact.parent_id) == ("trained", "transformers",
                                                                                         "config.json", init.id)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {entry["name"] for entry in artifact.files}
    assert artifact.num_classes == 3 and artifact.inspection["labels"] == CLASSES
    assert [tensor["name"] for tensor in artifact.inspection["inputs"]] == ["input_ids", "attention_mask",
                                                                             "token_type_ids"]
    assert (artifact.model.modality, artifact.model.labels) == ("text", CLASSES)
    assert artifact.metrics["training"]["token_lengths"]["max_length"] == 32
    assert not default_storage.exists(f"jobs/{job.id}")  # no checkpoints left
    # the job page draws it as it draws an image run
    client = signed_in(alice)
    page = client.get(f"/jobs/{job.id}/")
    assert page.status_code == 200 and f"fine-tuning artifact #{init.id}" in page.content.decode()
    assert client.get(f"/models/{artifact.model_id}/runs/").status_code == 200


@pytest.mark.django_db
def test_text_and_images_do_not_mix_and_image_settings_are_refused_for_text(alice, team_a, tmp_path):
    project = make_project(team_a)
    images, text = make_dataset(project), text_dataset(project, tmp_path)
    bert = make_artifact(Model.objects.create(project=project, name="tiny-bert", modality="text", labels=CLASSES,
                                              created_by=alice), fmt="transformers")
    state_dict = make_artifact(Model.objects.create(project=project, name="colours", labels=CLASSES,
                                                    created_by=alice), fmt="state_dict")
    models_before = set(Model.objects.values_list("id", flat=True))

    def refused(dataset, init=None, **params) -> str:
        with pytest.raises(ValidationError) as caught:
            registry.model_train(project=project, user=alice, dataset=dataset, init=init,
                                 params={"model_name": "new-model", **params})
        return " ".join(f"{field}: {' '.join(messages)}" for field, messages in caught.value.message_dict.items())

    assert refused(images, bert) == ("params.init_artifact: Model “tiny-bert” reads text; dataset “colours v1” holds "
                                     "images. Choose a model and a dataset of the same kind.")
    assert "reads images; dataset “topics v1” holds text rows" in refused(text, state_dict)
    assert "reads images" in refused(text, model_name="colours")  # an image model's name
    assert refused(text, architecture="resnet18").startswith("params.architecture: resnet18 is an image architecture")
    assert refused(images, architecture="bert-tiny").startswith("params.architecture: bert-tiny is a text model shape")
    assert "max_length is a text-training setting" in refused(images, architecture="small_cnn", max_length=64)
    assert refused(text, optimizer="sgd", augment="none") == (
        "params.optimizer: optimizer, augment are image-training settings; text training uses AdamW with a linear "
        "warm-up and decay. Leave them unset for a text dataset.")
    response = signed_in(alice).post(f"/api/v1/projects/{project.id}/train/", {
        "dataset": images.id, "init_artifact": bert.id, "model_name": "new-model"}, content_type="application/json")
    assert response.status_code == 400 and "reads text" in response.content.decode()
    # nothing was made: no job, no model
    assert not Job.objects.exists() and set(Model.objects.values_list("id", flat=True)) == models_before

    # the defaults a form sends for every run are no image settings
    job = registry.model_train(project=project, user=alice, dataset=text, params={
        "model_name": "scratch", "flip": False, "amp": True, "pretrained": True, "keep_best_on_cancel": False,
        "momentum": "0.9", "checkpoint_minutes": "5"})  # workers: empty on the form (the cores decide), not sent
    assert job.params["architecture"] == "bert-mini" and job.params["init_artifact"] is None
    assert Model.objects.get(name="scratch").modality == "text"
