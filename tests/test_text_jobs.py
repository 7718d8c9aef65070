"""Text models measured as jobs: a quantize job through the real worker and jail on a tiny BERT IR
and a text dataset published as their jobs would publish them, its INT8 IR downloaded as a zip
with classify_text.py, which then classifies a sentence in a fresh process; the evaluate step on
rows; and the refusals that pair only text models with text datasets."""

import json
import shutil
import subprocess
import sys
import zipfile

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from tests.fakes import FakeReporter
from tests.helpers import make_artifact, make_dataset, signed_in
from tests.jobs_helpers import make_project, wait_done
from tests.test_text_measure import LABELS, text_ir
from tests.text_builders import tiny_classifier_folder, topic_rows
from webapp.core.files import publish_tree
from webapp.core.modality import Modality
from webapp.datasets.models import Dataset
from webapp.jobs.models import Job, JobState
from webapp.optimize import services as optimize
from webapp.registry.models import Artifact, Model, Origin
from webapp.registry.services import artifact_publish
from workers.pipeline import steps
from workers.pipeline.reporting import JobError, Span
from workers.pipeline.text.rows import TextRow, write_text_dataset


def text_rows() -> list[TextRow]:
    made = [TextRow(text=r["text"], label=r["label"], split="train") for r in topic_rows(30, seed=1)]
    made += [TextRow(text=r["text"], label=r["label"], split="val") for r in topic_rows(24, seed=2)]
    return made


def publish_text_dataset(project, folder) -> Dataset:
    write_text_dataset(folder, classes=LABELS, rows=text_rows(), report={})
    dataset = Dataset.objects.create(project=project, name="topics", archive_name="topics.csv", archive_sha256="0" * 64,
                                     imported_at=timezone.now(), classes=LABELS, modality=Modality.TEXT)
    publish_tree(shutil.copytree(folder, folder.with_name("published-dataset")), dataset.storage_prefix)
    return dataset


def publish_text_ir(project, user, folder) -> Artifact:
    """The tiny BERT's IR as the convert job publishes it: model.xml/bin, the tokenizer files and
    config.json in tokenizer/ (docs/architecture.md, "A text IR artifact folder")."""
    xml = text_ir(tiny_classifier_folder(folder / "hf", LABELS), folder / "ir")
    (xml.parent / "tokenizer").mkdir()
    for path in list(xml.parent.iterdir()):
        if path.is_file() and path.name not in ("model.xml", "model.bin"):
            path.rename(xml.parent / "tokenizer" / path.name)
    model = Model.objects.create(project=project, name="topics", labels=LABELS, modality=Modality.TEXT,
                                 created_by=user)
    artifact = Artifact.objects.create(model=model, origin=Origin.CONVERTED, num_classes=3, created_by=user)
    inspection = steps._ir_facts(xml.parent, Span(FakeReporter(), 0.0, 1.0))
    published = shutil.copytree(xml.parent, folder / "published")  # publishing moves the folder into storage
    artifact_publish(artifact=artifact, folder=published, fmt="openvino_ir", primary="model.xml", inspection=inspection)
    artifact.refresh_from_db()
    return artifact


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_quantize_job_then_the_deploy_zip_classifies_a_sentence(worker_host, alice, team_a, tmp_path):
    project = make_project(team_a)
    dataset = publish_text_dataset(project, tmp_path / "dataset")
    fp32 = publish_text_ir(project, alice, tmp_path)
    assert {"model.xml", "model.bin", "tokenizer/tokenizer.json", "tokenizer/config.json"} <= {f["name"] for f in fp32.files}

    job = optimize.artifact_quantize(artifact=fp32, user=alice, dataset=dataset, params={
        "method": "ptq", "subset_size": 30, "model_type": "transformer", "metric": "macro_f1"})
    finished = wait_done(job.id, timeout=300)
    assert finished.state == JobState.SUCCEEDED, finished.error_detail
    int8 = Artifact.objects.get(id=finished.result["artifact"])
    facts = int8.metrics["quantization"]
    assert facts["metric"] == "macro_f1" and facts["calibration_images"] == 30 and facts["int8"]["images"] == 24
    assert facts["drop"] == pytest.approx(facts["fp32"]["macro_f1"] - facts["int8"]["macro_f1"])
    assert facts["settings"]["model_type"] == "transformer" and facts["quantized_layers"] > 0
    assert int8.parent_id == fp32.id and int8.precision == "int8"
    assert {"tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json", "tokenizer/config.json"} <= {
        f["name"] for f in int8.files}  # carried with the INT8 IR

    # evaluated and benchmarked through the worker too: rows tokenized at 32 tokens, batch 2 × 16 tokens
    evaluated = wait_done(optimize.artifact_evaluate(artifact=int8, user=alice, dataset=dataset,
                                                     params={"split": "val", "max_length": 32}).id, timeout=300)
    assert evaluated.state == JobState.SUCCEEDED, evaluated.error_detail
    scores = evaluated.result
    assert scores["modality"] == "text" and scores["rows"] == 24 and scores["max_length"] == 32
    assert scores["accuracy"] == pytest.approx(facts["int8"]["top1"]) and len(scores["per_class"]) == 3
    measured = wait_done(optimize.artifact_benchmark(artifact=int8, user=alice, params={
        "seconds": 1, "hints": ["latency"], "layer_counters": False, "batch": 2, "sequence_length": 16}).id, timeout=300)
    assert measured.state == JobState.SUCCEEDED, measured.error_detail
    assert measured.result["shape"] == [2, 16] and measured.result["reference"] is None
    assert {m["batch"] for m in measured.result["measurements"]} == {2} and measured.result["latency_ms"] > 0

    # the download: the IR, its tokenizer, metadata.json and classify_text.py, run as a user would
    client = signed_in(alice)
    archive = tmp_path / "topics.zip"
    archive.write_bytes(b"".join(client.get(f"/api/v1/artifacts/{int8.id}/download/").streaming_content))
    folder = tmp_path / "deploy"
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(folder)
        names = set(bundle.namelist())
    assert {"model.xml", "model.bin", "tokenizer/tokenizer.json", "classify_text.py", "metadata.json", "SHA256SUMS"} <= names
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["modality"] == "text" and metadata["labels"] == LABELS
    assert "classify_text.py" in (folder / "SHA256SUMS").read_text()
    printed = subprocess.run([sys.executable, str(folder / "classify_text.py"), "the striker scored a goal"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    lines = [line.split("\t") for line in printed.stdout.splitlines()]
    assert sorted(label for label, _ in lines) == sorted(LABELS)
    assert sum(float(score) for _, score in lines) == pytest.approx(1.0, abs=0.01)
    assert [float(s) for _, s in lines] == sorted((float(s) for _, s in lines), reverse=True)


@pytest.mark.django_db
def test_evaluate_step_on_rows_and_the_modality_refusals(alice, team_a, tmp_path):
    project = make_project(team_a)
    dataset = publish_text_dataset(project, tmp_path / "dataset")
    fp32 = publish_text_ir(project, alice, tmp_path)
    staged = {"format": "openvino_ir", "folder": str(tmp_path / "ir"), "primary": "model.xml", "output": 0}
    request = {"text": True, "model": staged, "dataset": str(tmp_path / "dataset"), "split": "val", "labels": LABELS,
               "label_index": {name: i for i, name in enumerate(LABELS)}, "max_length": None}
    result = steps.evaluate(request, Span(FakeReporter(), 0.0, 1.0))
    assert result["rows"] == 24 and sum(map(sum, result["confusion"])) == 24 and result["max_length"] == 64
    assert result["accuracy"] == result["top1"] and 0 <= result["macro_f1"] <= 1
    assert [c["label"] for c in result["per_class"]] == LABELS and sum(c["support"] for c in result["per_class"]) == 24
    with pytest.raises(JobError, match="not among the model's labels"):
        steps.evaluate({**request, "label_index": {"sport": 0, "weather": 1}}, Span(FakeReporter(), 0.0, 1.0))
    with pytest.raises(JobError, match="at most 64"):
        steps.evaluate({**request, "max_length": 100}, Span(FakeReporter(), 0.0, 1.0))

    # a text model with an image dataset, and an image model with the text dataset: refused, no job
    images = make_dataset(project)
    for artifact, data in ((fp32, images), (make_artifact(Model.objects.create(
            project=project, name="colours", labels=LABELS, created_by=alice)), dataset)):
        for start in (lambda: optimize.artifact_evaluate(artifact=artifact, user=alice, dataset=data, params={}),
                      lambda: optimize.artifact_quantize(artifact=artifact, user=alice, dataset=data, params={})):
            with pytest.raises(ValidationError, match="of the same kind"):
                start()
    assert not Job.objects.filter(project=project).exists()


def text_evaluation(artifact, dataset, confusion: list[list[int]]) -> Job:
    """A succeeded text evaluation, its result as the evaluate job writes it."""
    from workers.pipeline.evaluation import class_report

    rows = sum(map(sum, confusion))
    accuracy = sum(confusion[i][i] for i in range(len(confusion))) / rows
    result = {"artifact": artifact.id, "dataset": dataset.id, "dataset_name": str(dataset), "split": "val",
              "labels": LABELS, "modality": "text", "rows": rows, "top1": accuracy, "accuracy": accuracy,
              "confusion": confusion, "max_length": 64, "truncated": 0, **class_report(confusion, LABELS)}
    return Job.objects.create(project=artifact.model.project, kind="evaluate", queue="optimize",
                              state=JobState.SUCCEEDED, params={"artifact": artifact.id, "dataset": dataset.id,
                                                                "split": "val"},
                              result=result, progress=1.0, finished_at=timezone.now())


@pytest.mark.django_db
def test_the_comparison_picks_within_a_drop_of_accuracy_or_macro_f1_and_the_page_shows_both(alice, team_a):
    from tests.test_measure_views import benchmark
    from webapp.optimize.comparison import compare

    project = make_project(team_a)
    dataset = Dataset.objects.create(project=project, name="topics", archive_name="t.csv", archive_sha256="0" * 64,
                                     imported_at=timezone.now(), classes=LABELS, modality=Modality.TEXT)
    model = Model.objects.create(project=project, name="topics", labels=LABELS, modality=Modality.TEXT, created_by=alice)
    fp32 = make_artifact(model)
    int8 = make_artifact(model, precision="int8", origin=Origin.QUANTIZED, parent=fp32)
    # INT8 loses 4.5 points of accuracy (66 → 63 of 67 rows), within the 5 allowed, but most of the small
    # class: its macro-F1 falls about 10 points
    text_evaluation(fp32, dataset, [[40, 0, 0], [0, 20, 0], [1, 0, 6]])
    text_evaluation(int8, dataset, [[40, 0, 0], [0, 20, 0], [4, 0, 3]])
    benchmark(fp32, latency=10.0, fps=100.0)
    benchmark(int8, latency=4.0, fps=250.0)
    assert compare(model, max_drop=0.05).best_latency.artifact == int8
    by_f1 = compare(model, max_drop=0.05, metric="macro_f1")
    assert by_f1.best_latency.artifact == fp32 and by_f1.as_dict()["metric"] == "macro_f1"

    client = signed_in(alice)
    answer = client.get(f"/api/v1/models/{model.id}/compare/?metric=macro_f1&max_drop=5").json()
    assert answer["best_latency"] == fp32.id and {row["macro_f1"] is not None for row in answer["rows"]} == {True}
    assert client.get(f"/api/v1/models/{model.id}/compare/?metric=f2").status_code == 400
    page = client.get(f"/models/{model.id}/compare/?metric=macro_f1").content.decode()
    assert 'data-testid="compare-metric"' in page and "Macro-F1 a pick may lose" in page
    body = client.get(f"/artifacts/{int8.id}/performance/").content.decode()
    assert 'data-testid="eval-macro-f1"' in body and 'data-testid="per-class"' in body and "Accuracy" in body
    assert 'data-class="food"' in body and "42.9 %" in body  # food's recall: 3 of 7
