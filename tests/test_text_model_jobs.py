"""Text models through the real worker: a Hugging Face folder uploaded, inspected in the jail as a
text model and converted to an IR with its tokenizer, checked on a text dataset's rows; a folder
that asks for its own code refused with nothing kept; and the modality checks every job calls."""

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from tests.helpers import make_artifact, make_dataset, signed_in, uploaded
from tests.servers import wait_for
from tests.text_builders import tiny_classifier_folder, topic_rows
from webapp.core import files
from webapp.core.modality import Modality
from webapp.core.quota import team_bytes_used
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobState
from webapp.optimize import services as optimize
from webapp.projects.models import Project
from webapp.registry.models import Artifact, Model
from workers.pipeline.text.rows import TextRow, write_text_dataset

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TOPICS = ["sport", "weather", "food"]


@pytest.fixture
def project(team_a, alice) -> Project:
    return Project.objects.create(team=team_a, name="Words", created_by=alice)


def folder_zip(tmp_path: Path, *, config_change: dict | None = None) -> Path:
    folder = tiny_classifier_folder(tmp_path / "topics", TOPICS)
    if config_change:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **config_change}))
    with zipfile.ZipFile(tmp_path / "topics.zip", "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"topics/{file.name}")
    return tmp_path / "topics.zip"


def register(client, alice, project, path: Path) -> Artifact:
    response = client.post(f"/api/v1/projects/{project.id}/models/",
                           {"name": "topics", "uploads": [str(uploaded(alice, project, path).id)]},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    artifact = Artifact.objects.get(id=response.json()["id"])
    wait_for(lambda: Job.objects.get(id=artifact.job_id).is_terminal, timeout=180, what="the inspection job")
    artifact.refresh_from_db()
    return artifact


def text_dataset(project: Project, tmp_path: Path, classes=TOPICS, *, name: str = "topics") -> Dataset:
    """A ready text dataset, its folder published as the import would (workers/pipeline/text/rows.py)."""
    rows = [TextRow(text=row["text"], label=classes[i % len(classes)], split="val" if i % 4 == 0 else "train", line=i + 2)
            for i, row in enumerate(topic_rows(24))]
    folder = write_text_dataset(tmp_path / f"rows-{name}", classes=list(classes), rows=rows, report={})
    dataset = Dataset.objects.create(project=project, name=name, modality=Modality.TEXT, archive_name=f"{name}.csv",
                                     archive_sha256="0" * 64, imported_at=timezone.now(), classes=list(classes))
    files.publish_tree(folder, dataset.storage_prefix)
    return dataset


def test_a_model_folder_is_inspected_as_text_and_converts_with_its_tokenizer(worker_host, alice, project, tmp_path):
    client = signed_in(alice)
    source = register(client, alice, project, folder_zip(tmp_path))
    assert source.state == "ready", source.job.error
    model = Model.objects.get(id=source.model_id)
    assert (source.format, source.primary, model.modality) == ("transformers", "config.json", "text")
    assert (model.labels, model.labels_confirmed, model.labels_source) == (TOPICS, False, "config.json (id2label)")
    assert [i["name"] for i in source.inspection["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    page = client.get(f"/models/{model.id}/").content.decode()
    assert 'data-testid="text-model-facts"' in page and "64 tokens" in page and "BertTokenizer" in page
    assert "Input height" not in page and "Confirm these labels" in page  # no image preprocessing panel
    assert 'data-testid="convert-text-options"' in client.get(f"/artifacts/{source.id}/").content.decode()

    dataset = text_dataset(project, tmp_path)
    response = client.post(f"/api/v1/artifacts/{source.id}/convert/",
                           {"dataset": dataset.id, "sequence_length": "32", "tokenizer_ir": True, "samples": 5},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    wait_for(lambda: Job.objects.get(id=response.json()["id"]).is_terminal, timeout=180, what="the convert job")
    job = Job.objects.get(id=response.json()["id"])
    assert job.state == JobState.SUCCEEDED, job.error
    ir = Artifact.objects.get(id=job.result["artifact"])
    names = {entry["name"] for entry in ir.files}
    assert {"model.xml", "model.bin", "tokenizer/config.json", "tokenizer/tokenizer.json",
            "openvino_tokenizer.xml", "openvino_tokenizer.bin"} <= names
    assert (ir.format, ir.parent_id, ir.inspection["modality"]) == ("openvino_ir", source.id, "text")
    assert ir.inspection["inputs"][0]["shape"] == [None, 32] and ir.inspection["details"]["max_length"] == 64
    conversion = ir.metrics["conversion"]
    assert conversion["equivalence"]["source"] == "dataset" and conversion["equivalence"]["within_tolerance"]
    assert conversion["equivalence"]["samples"] == 5 and conversion["text"]["tokenizer_check"]["same_ids"] == 5
    report = client.get(f"/artifacts/{ir.id}/").content.decode()
    assert "Matches its source" in report and "batch dynamic × sequence 32" in report and "sentences of its" not in report
    assert 'data-testid="equivalence-worst"' in report and "same token ids on 5 of 5 sentences" in report
    # the download is usable alone: the IR, its tokenizer (with the labels) and metadata.json saying how to feed it
    response = client.get(f"/api/v1/artifacts/{ir.id}/download/")
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert {"model.xml", "tokenizer/config.json", "openvino_tokenizer.xml", "metadata.json"} <= set(bundle.namelist())
    assert json.loads(bundle.read("tokenizer/config.json"))["id2label"] == {"0": "sport", "1": "weather", "2": "food"}
    metadata = json.loads(bundle.read("metadata.json"))
    assert metadata["modality"] == "text" and "preprocessing" not in metadata
    assert metadata["tokenizer"] == {"folder": "tokenizer/", "class": "BertTokenizer", "max_length": 64,
                                     "openvino_tokenizer": "openvino_tokenizer.xml"}


def test_a_model_folder_asking_for_its_own_code_is_refused_and_nothing_is_kept(worker_host, alice, project, tmp_path):
    client = signed_in(alice)
    path = folder_zip(tmp_path, config_change={"auto_map": {"AutoModelForSequenceClassification": "evil.Model"}})
    artifact = register(client, alice, project, path)
    assert artifact.state == "failed"
    assert "asks for its own code (auto_map)" in artifact.job.error, artifact.job.error
    assert not artifact.ready_at and not artifact.files and not list(files.keys(artifact.storage_prefix))
    assert not Artifact.objects.filter(model=artifact.model).exclude(ready_at=None).exists()
    # only the uploaded archive is kept (to try again or delete, as every failed import): nothing published
    assert team_bytes_used(project.team) == path.stat().st_size
    assert Model.objects.get(id=artifact.model_id).modality == Modality.IMAGES  # nothing learnt from it


def test_jobs_pair_a_text_model_only_with_text_datasets_of_its_labels(alice, project, tmp_path):
    text_model = Model.objects.create(project=project, name="topics", modality=Modality.TEXT, labels=TOPICS)
    folder = make_artifact(text_model, fmt="transformers", origin="uploaded")
    images = make_dataset(project)
    jobs = Job.objects.count()
    with pytest.raises(ValidationError, match="Model “topics” reads text; dataset “colours v1” holds images"):
        optimize.artifact_convert(artifact=folder, user=alice, params={}, dataset=images)
    strangers = text_dataset(project, tmp_path, ["sport", "politics", "food"], name="news")
    with pytest.raises(ValidationError, match="has the labels politics, which model “topics” does not know"):
        optimize.artifact_convert(artifact=folder, user=alice, params={}, dataset=strangers)
    with pytest.raises(ValidationError, match="no image preprocessing to embed"):
        optimize.artifact_convert(artifact=folder, user=alice, params={"embed_preprocessing": True})
    bare = make_artifact(text_model, fmt="onnx", origin="uploaded")
    with pytest.raises(ValidationError, match="came without its tokenizer"):
        optimize.artifact_convert(artifact=bare, user=alice, params={})
    image_model = Model.objects.create(project=project, name="colours", labels=["blue", "green", "red"])
    ir = make_artifact(image_model)
    texts = text_dataset(project, tmp_path, name="sentences")
    with pytest.raises(ValidationError, match="Model “colours” reads images; dataset “sentences v1” holds text rows"):
        optimize.artifact_evaluate(artifact=ir, user=alice, dataset=texts, params={})
    with pytest.raises(ValidationError, match="Only a text model has a tokenizer"):
        optimize.artifact_convert(artifact=make_artifact(image_model, fmt="onnx"), user=alice, params={"tokenizer_ir": True})
    assert Job.objects.count() == jobs  # refused before any job row exists
    page = signed_in(alice).get(f"/models/{text_model.id}/").content.decode()
    assert 'data-testid="text-model-facts"' in page and "Input height" not in page and "tokenizer" in page
    assert signed_in(alice).get(f"/api/v1/models/{text_model.id}/").json()["modality"] == "text"


def test_a_model_reads_one_kind_of_input(alice, project):
    """An upload whose inspection says text, for a model that holds image artifacts, is refused before
    anything is published (workers/kinds/model_import.py); a new model takes it."""
    from workers.kinds.model_import import _modality
    from workers.pipeline.reporting import JobError

    images = Model.objects.create(project=project, name="colours")
    make_artifact(images)
    upload = Artifact.objects.create(model=images, origin="uploaded")
    with pytest.raises(JobError, match="Model “colours” reads images, and this upload reads text; upload it under "
                                       "another model name"):
        _modality(upload, {"modality": "text"})
    fresh = Artifact.objects.create(model=Model.objects.create(project=project, name="topics"), origin="uploaded")
    assert _modality(fresh, {"modality": "text"}) == Modality.TEXT


@pytest.mark.django_db  # no worker: the job is only submitted
def test_the_convert_form_takes_a_text_models_shape_and_tokenizer_choice(alice, project):
    model = Model.objects.create(project=project, name="topics", modality=Modality.TEXT, labels=TOPICS)
    folder = make_artifact(model, fmt="transformers", origin="uploaded")
    client = signed_in(alice)
    response = client.post(f"/artifacts/{folder.id}/convert/", {"batch": "2", "sequence_length": "dynamic",
                                                                  "precision": "fp16", "tokenizer_ir": "on"})
    job = Job.objects.get(kind="convert")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    assert (job.params["batch"], job.params["sequence_length"], job.params["tokenizer_ir"]) == ("2", "dynamic", True)
    refused = client.post(f"/api/v1/artifacts/{folder.id}/convert/", {"sequence_length": "0"},
                          content_type="application/json")
    assert refused.status_code == 400
    assert refused.json()["params.sequence_length"] == ["Write “dynamic”, or a whole number from 1 to 9999."]
    assert Job.objects.filter(kind="convert").count() == 1
