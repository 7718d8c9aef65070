"""Quantization through real workers: a model trained in the test is quantized by all three
methods (post-training, with accuracy control, quantization-aware training); each INT8 IR is a
child in the lineage with its accuracy before and after, and loads and runs."""

import numpy as np
import openvino as ov
import pytest
from django.core.files.storage import default_storage

from tests.jobs_helpers import events, make_project, wait_done
from tests.test_train_job import colours_dataset, start_training
from webapp.jobs.models import JobState
from webapp.optimize import services as optimize
from webapp.registry.models import Artifact
from workers.pipeline.feeding import InputSpec

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def quantize(alice, artifact, dataset, **params):
    job = optimize.artifact_quantize(artifact=artifact, user=alice, dataset=dataset, params=params)
    done = wait_done(job.id, timeout=300)
    assert done.state == JobState.SUCCEEDED, done.error_detail
    return done, Artifact.objects.get(id=done.result["artifact"])


def logs(job_id: int) -> list[str]:
    return [e.data["message"] for e in events(job_id, "log")]


def predicts(artifact: Artifact, image, spec: InputSpec) -> int:
    compiled = ov.Core().compile_model(default_storage.path(f"{artifact.storage_prefix}/model.xml"), "CPU")
    scores = compiled(spec.load(image))[0]
    assert scores.shape == (1, 3)
    return int(np.argmax(scores))


def test_a_trained_model_quantizes_by_all_three_methods(worker_host, alice, team_a, tmp_path):
    project = make_project(team_a)
    dataset = colours_dataset(alice, project, tmp_path)
    training = wait_done(start_training(alice, project, dataset, epochs=6).id, timeout=240)
    assert training.state == JobState.SUCCEEDED, training.error_detail
    fp32 = Artifact.objects.get(id=training.result["artifact"])
    spec = InputSpec.of(fp32.model.preprocessing)
    red = next(dataset.items.filter(split="val", label="red").iterator())
    red_image = default_storage.path(f"{dataset.storage_prefix}/images/{red.path}")

    # post-training: the state_dict is converted first; the dataset has fewer train images than asked for
    job, int8 = quantize(alice, fp32, dataset, method="ptq")
    facts = int8.metrics["quantization"]
    assert (int8.origin, int8.format, int8.precision, int8.parent_id) == ("quantized", "openvino_ir", "int8", fp32.id)
    # scored on the same crops as training validated on: the FP32 figure is training's own
    assert abs(facts["fp32"]["top1"] - training.result["val_top1"]) <= 1 / facts["fp32"]["images"] + 1e-9
    assert facts["int8"]["images"] == dataset.items.filter(split="val").count() and facts["int8"]["top1"] > 0.6
    assert facts["drop"] == pytest.approx(facts["fp32"]["top1"] - facts["int8"]["top1"])
    assert facts["quantized_layers"] > 0 and facts["calibration_images"] == dataset.items.filter(split="train").count()
    assert any("Only 54 calibration images" in line for line in logs(job.id))
    stages = {e.data["stage"] for e in events(job.id, "stage")}
    assert {"converting", "quantizing", "measuring FP32", "measuring INT8", "publishing"} <= stages
    assert predicts(int8, red_image, spec) == fp32.model.labels.index("red")

    # accuracy control, on the FP32 IR this time, converted at another size than the model's (16):
    # the quantize feeds the IR the size it takes
    converted = wait_done(optimize.artifact_convert(artifact=fp32, user=alice, params={
        "input_height": 32, "input_width": 32}).id, timeout=120)
    ir = Artifact.objects.get(id=converted.result["artifact"])
    assert ir.inspection["inputs"][0]["shape"] == [1, 3, 32, 32] and fp32.model.preprocessing["input_size"] == [16, 16]
    job, controlled = quantize(alice, ir, dataset, method="accuracy", subset_size=30, max_drop=1.0)
    target = controlled.metrics["quantization"]["target"]
    assert target["drop_type"] == "absolute" and target["max_drop"] == pytest.approx(0.01)
    assert target["met"] == (controlled.metrics["quantization"]["drop"] <= 0.01 + 1e-9)
    assert job.result["target_met"] == target["met"] and controlled.parent_id == ir.id
    assert any(line.startswith("NNCF: Accuracy drop") for line in logs(job.id))

    # quantization-aware training: on the train queue, with training's curves
    job, trained = quantize(alice, fp32, dataset, method="qat", epochs=2, subset_size=20, batch_size=8, workers=0)
    assert job.queue == "train"
    facts = trained.metrics["quantization"]
    assert facts["method"] == "qat" and facts["int8"]["top1"] > 0.6 and trained.precision == "int8"
    assert len(trained.metrics["training"]["history"]) == 2
    assert len([e for e in events(job.id, "metric") if e.data["name"] == "epoch/val_top1"]) == 2
    assert predicts(trained, red_image, spec) == fp32.model.labels.index("red")
    assert not default_storage.exists(f"jobs/{job.id}")  # no checkpoints left

    lineage = {a.id: a.parent_id for a in Artifact.objects.filter(model=fp32.model)}
    assert lineage[int8.id] == lineage[trained.id] == fp32.id and lineage[controlled.id] == ir.id
