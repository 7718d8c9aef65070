"""Benchmark and evaluation through real workers, on the variants of a model trained in the test:
its PyTorch weights, the FP32 IR and the INT8 IR."""

import subprocess
import sys
import zipfile

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage

from tests.helpers import signed_in
from tests.jobs_helpers import events, make_project, wait_done
from tests.test_train_job import colours_dataset, start_training
from webapp.jobs.models import Job, JobState
from webapp.optimize import services as optimize
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
    fp32 = Artifact.objects.get(id=done(optimize.artifact_convert(artifact=trained, user=alice, params={})).result["artifact"])
    int8_job = optimize.artifact_quantize(artifact=fp32, user=alice, dataset=dataset, params={"subset_size": 20})
    int8 = Artifact.objects.get(id=done(int8_job).result["artifact"])
    return dataset, trained, fp32, int8


def test_benchmark_measures_hints_matrix_layers_and_torch_eager_on_one_host(variants, alice):
    _, trained, fp32, int8 = variants
    job = done(optimize.artifact_benchmark(artifact=int8, user=alice, params={
        "seconds": 1, "matrix": [{"batch": 2, "streams": 1}]}))
    result = job.result
    assert job.queue == "optimize" and result["reference"] == trained.id  # the nearest PyTorch ancestor
    default = result["host"]["default_precision"]  # bf16 on a CPU with AVX-512 BF16 or AMX
    labels = ["latency hint, f32", "throughput hint, f32"]
    if default != "f32":  # the device's default precision: rows of their own, named so
        labels += [f"latency hint, device default precision ({default})",
                   f"throughput hint, device default precision ({default})"]
    assert [m["label"] for m in result["measurements"]] == labels + ["batch 2 × 1 stream, f32"]
    assert [m["precision"] for m in result["measurements"] if not m["default_precision"]] == ["f32"] * 3
    assert all(m["precision"] == default for m in result["measurements"] if m["default_precision"])
    for measurement in [*result["measurements"], result["torch"]]:
        latency, rounds = measurement["latency_ms"], measurement["rounds"]
        assert measurement["fps"] > 0 and measurement["iterations"] >= 3 and len(rounds) == result["rounds"] == 3
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        # every figure the median of its rounds, with their spread
        assert measurement["fps"] == pytest.approx(sorted(r["fps"] for r in rounds)[1])
        assert latency["p50"] == pytest.approx(sorted(r["p50"] for r in rounds)[1])
        fps = [r["fps"] for r in rounds]
        assert measurement["spread"]["fps"] == pytest.approx((max(fps) - min(fps)) / measurement["fps"])
    assert result["host"]["cpu"] and "isa" in result["host"] and result["host"]["openvino"]
    assert set(result["load"]) >= {"other_cpu_share", "max_spread", "noisy", "reasons"}
    # torch eager ran in the same rounds, on the thread count of OpenVINO's latency hint
    assert result["torch"]["label"] == "torch eager" and result["torch"]["fps"] > 0
    assert result["torch"]["threads"] == result["measurements"][0]["threads"] > 0
    assert result["speedup_latency"] == pytest.approx(result["torch_latency_ms"] / result["latency_ms"])
    assert result["latency_ms"] == result["measurements"][0]["latency_ms"]["p50"]  # the f32 row's
    # per-layer counters: the convolutions ran in INT8, and the table sums to the whole
    convolutions = [layer for layer in result["layers"] if layer["type"] == "Convolution" and layer["status"] == "EXECUTED"]
    assert convolutions and all(layer["precision"] in ("I8", "U8") for layer in convolutions)
    assert sum(kind["share"] for kind in result["layer_types"]) == pytest.approx(1.0, abs=0.01)
    profile = result["layer_profile"]
    assert (profile["requests"], profile["precision"], profile["runs"]) == (1, "f32", 30) and profile["streams"] >= 1
    assert profile["total_ms"] == pytest.approx(sum(layer["ms"] for layer in result["layers"]), abs=1e-3)
    # the counters are running means since the first inference: taken as they are, that first one's
    # repacking made the layers add up to several times the latency
    assert 0 < profile["total_ms"] <= profile["profiled_latency_ms"] * 1.05 + 0.01
    stages = [e.data["stage"] for e in events(job.id, "stage")]
    assert stages.index("loading torch") < stages.index("compiling") < stages.index("measuring, round 1 of 3") < \
        stages.index("measuring, round 3 of 3") < stages.index("profiling layers")

    plain = done(optimize.artifact_benchmark(artifact=fp32, user=alice, params={
        "seconds": 1, "hints": ["latency"], "layer_counters": False, "torch_reference": False}))
    assert {m["hint"] for m in plain.result["measurements"]} == {"latency"} and plain.result["layers"] == []
    assert "torch" not in plain.result and plain.result["reference"] is None

    # a PyTorch artifact's measurement is torch eager, asked for or not
    eager = done(optimize.artifact_benchmark(artifact=trained, user=alice, params={"seconds": 1, "torch_reference": False}))
    assert eager.result["measurements"] == [] and eager.result["latency_ms"] == eager.result["torch"]["latency_ms"]["p50"]


def test_evaluation_scores_every_format_on_a_split(variants, alice):
    dataset, trained, fp32, int8 = variants
    val = dataset.items.filter(split="val").count()
    scores = {}
    for artifact in (trained, fp32, int8):
        job = done(optimize.artifact_evaluate(artifact=artifact, user=alice, dataset=dataset, params={"split": "val"}))
        result = job.result
        assert result["images"] == val and sum(map(sum, result["confusion"])) == val
        assert result["labels"] == artifact.model.labels and len(result["confusion"]) == 3
        scores[artifact.format + artifact.precision] = result["top1"]
    # the PyTorch weights and their FP32 IR score the same crops the same way; training said so too
    assert scores["state_dictfp32"] == scores["openvino_irfp32"] == trained.metrics["training"]["final"]["val_top1"]
    assert scores["openvino_irint8"] == int8.metrics["quantization"]["int8"]["top1"]
    with pytest.raises(ValidationError, match="has no test images to evaluate on"):
        optimize.artifact_evaluate(artifact=trained, user=alice, dataset=dataset, params={"split": "test"})



def test_compare_shows_every_variant_and_the_downloaded_snippet_names_the_right_label(variants, alice, charlie, tmp_path):
    dataset, trained, fp32, int8 = variants
    client = signed_in(alice)
    for artifact in (trained, fp32, int8):
        response = client.post(f"/api/v1/artifacts/{artifact.id}/benchmark/", {"seconds": 1, "layer_counters": False},
                               content_type="application/json")
        assert response.status_code == 201, response.content
        done(Job.objects.get(id=response.json()["id"]))
    before = {row["artifact"]: row for row in client.get(f"/api/v1/models/{trained.model_id}/compare/").json()["rows"]}
    # the unevaluated IR has its source's top-1: its conversion was checked equivalent
    assert before[fp32.id]["top1"] == before[trained.id]["top1"]
    assert before[fp32.id]["top1_from"] == "its source's training (val), checked equivalent"
    bad = client.post(f"/api/v1/artifacts/{fp32.id}/benchmark/", {"matrix": [{"batch": 2, "streams": 1}, {"batch": 999, "streams": 1}]},
                      content_type="application/json")
    assert bad.status_code == 400 and "entry 2: batch: Ensure this value is less than or equal to 256." in bad.content.decode()
    response = client.post(f"/api/v1/artifacts/{fp32.id}/evaluate/", {"dataset": dataset.id}, content_type="application/json")
    assert response.status_code == 201, response.content
    done(Job.objects.get(id=response.json()["id"]))

    comparison = client.get(f"/api/v1/models/{trained.model_id}/compare/?dataset={dataset.id}").json()
    rows = {row["artifact"]: row for row in comparison["rows"]}
    assert set(rows) == {trained.id, fp32.id, int8.id}
    assert rows[fp32.id]["top1_from"].startswith("evaluation on") and rows[int8.id]["top1_from"].startswith("quantization")
    assert rows[trained.id]["top1_from"] == "training (val)" and rows[trained.id]["speedup_latency"] == 1.0
    assert all(row["latency_ms"] > 0 and row["fps"] > 0 and row["cpu"] for row in rows.values())
    assert rows[int8.id]["speedup_latency"] > 0 and rows[int8.id]["size_bytes"] < rows[fp32.id]["size_bytes"]
    best = min((r for r in rows.values() if r["top1"] >= max(x["top1"] for x in rows.values()) - 0.01),
               key=lambda r: r["latency_ms"])
    assert comparison["best_latency"] == best["artifact"] and rows[best["artifact"]]["best_latency"]

    # the IR zip and its snippet, run as a user would
    archive = tmp_path / "model.zip"
    archive.write_bytes(b"".join(client.get(f"/api/v1/artifacts/{int8.id}/download/").streaming_content))
    folder = tmp_path / "deploy"
    zipfile.ZipFile(archive).extractall(folder)
    (folder / "classify.py").write_text(client.get(f"/api/v1/artifacts/{int8.id}/snippet/").content.decode())
    for label in ("red", "green", "blue"):
        item = dataset.items.filter(split="val", label=label).first()
        image = default_storage.path(f"{dataset.storage_prefix}/images/{item.path}")
        printed = subprocess.run([sys.executable, "classify.py", image], cwd=folder, capture_output=True, text=True,
                                 timeout=120, check=True).stdout.splitlines()
        assert printed[0].split("\t")[0] == label and len(printed) == 3

    outsider = signed_in(charlie)
    for url in (f"/api/v1/models/{trained.model_id}/compare/", f"/api/v1/artifacts/{int8.id}/snippet/"):
        assert outsider.get(url).status_code == 404
    for url in (f"/api/v1/artifacts/{int8.id}/benchmark/", f"/api/v1/artifacts/{int8.id}/evaluate/"):
        assert outsider.post(url, {"dataset": dataset.id}, content_type="application/json").status_code == 404
