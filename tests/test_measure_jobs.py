"""Benchmark and evaluation through real workers, on the variants of a model trained in the test:
its PyTorch weights, the FP32 IR and the INT8 IR."""

import pytest
from django.core.exceptions import ValidationError

from tests.jobs_helpers import events, make_project, wait_done
from tests.test_train_job import colours_dataset, start_training
from webapp.jobs.models import JobState
from webapp.registry import services as registry
from webapp.registry.models import Artifact

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def done(job):
    finished = wait_done(job.id, timeout=300)
    assert finished.state == JobState.SUCCEEDED, finished.error_detail
    return finished


@pytest.fixture
def variants(worker_host, alice, team_a, tmp_path):
    """(dataset, PyTorch artifact, FP32 IR, INT8 IR) of one trained model."""
    project = make_project(team_a)
    dataset = colours_dataset(alice, project, tmp_path)
    trained = Artifact.objects.get(id=done(start_training(alice, project, dataset, epochs=5)).result["artifact"])
    fp32 = Artifact.objects.get(id=done(registry.artifact_convert(artifact=trained, user=alice, params={})).result["artifact"])
    int8_job = registry.artifact_quantize(artifact=fp32, user=alice, dataset=dataset, params={"subset_size": 20})
    int8 = Artifact.objects.get(id=done(int8_job).result["artifact"])
    return dataset, trained, fp32, int8


def test_benchmark_measures_hints_matrix_layers_and_torch_eager_on_one_host(variants, alice):
    _, trained, fp32, int8 = variants
    job = done(registry.artifact_benchmark(artifact=int8, user=alice, params={
        "seconds": 1, "matrix": [{"batch": 2, "streams": 1}]}))
    result = job.result
    assert job.queue == "optimize" and result["reference"] == trained.id  # the nearest PyTorch ancestor
    assert [m["label"] for m in result["measurements"]] == ["latency hint", "throughput hint", "batch 2 × 1 stream"]
    for measurement in result["measurements"]:
        latency = measurement["latency_ms"]
        assert measurement["fps"] > 0 and measurement["iterations"] > 10
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert result["host"]["cpu"] and "isa" in result["host"] and result["host"]["openvino"]
    assert result["torch"]["label"] == "torch eager" and result["torch"]["fps"] > 0
    assert result["speedup_latency"] == pytest.approx(result["torch_latency_ms"] / result["latency_ms"])
    # per-layer counters: the convolutions ran in INT8, and the table sums to the whole
    convolutions = [layer for layer in result["layers"] if layer["type"] == "Convolution" and layer["status"] == "EXECUTED"]
    assert convolutions and all(layer["precision"] in ("I8", "U8") for layer in convolutions)
    assert sum(kind["share"] for kind in result["layer_types"]) == pytest.approx(1.0, abs=0.01)
    assert {"measuring OpenVINO", "measuring torch eager"} <= {e.data["stage"] for e in events(job.id, "stage")}

    plain = done(registry.artifact_benchmark(artifact=fp32, user=alice, params={
        "seconds": 1, "hints": ["latency"], "layer_counters": False, "torch_reference": False}))
    assert [m["hint"] for m in plain.result["measurements"]] == ["latency"] and plain.result["layers"] == []
    assert "torch" not in plain.result and plain.result["reference"] is None

    eager = done(registry.artifact_benchmark(artifact=trained, user=alice, params={"seconds": 1}))
    assert eager.result["measurements"] == [] and eager.result["latency_ms"] == eager.result["torch"]["latency_ms"]["p50"]


def test_evaluation_scores_every_format_on_a_split(variants, alice):
    dataset, trained, fp32, int8 = variants
    val = dataset.items.filter(split="val").count()
    scores = {}
    for artifact in (trained, fp32, int8):
        job = done(registry.artifact_evaluate(artifact=artifact, user=alice, dataset=dataset, params={"split": "val"}))
        result = job.result
        assert result["images"] == val and sum(map(sum, result["confusion"])) == val
        assert result["labels"] == artifact.model.labels and len(result["confusion"]) == 3
        scores[artifact.format + artifact.precision] = result["top1"]
    # the PyTorch weights and their FP32 IR score the same crops the same way; training said so too
    assert scores["state_dictfp32"] == scores["openvino_irfp32"] == trained.metrics["training"]["final"]["val_top1"]
    assert scores["openvino_irint8"] == int8.metrics["quantization"]["int8"]["top1"]
    with pytest.raises(ValidationError, match="has no test images to evaluate on"):
        registry.artifact_evaluate(artifact=trained, user=alice, dataset=dataset, params={"split": "test"})

