"""The benchmark job on the worker: stage what it reads, run its step in the jail, publish what it made
(webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.benchmark`)."""

from webapp.core.modality import Modality
from webapp.registry.models import TORCH_FORMATS, Artifact
from workers.kinds.staging import input_size, staged_model, takes_images
from workers.pipeline.reporting import JobError
from workers.runner import JobRun


def perform(run: JobRun) -> dict:
    """Measure an artifact's speed on this worker (and torch eager of its PyTorch source)."""
    params = run.params
    artifact = Artifact.objects.select_related("model").get(id=params["artifact"])
    if artifact.model.modality == Modality.TEXT:
        return _benchmark_text(run, artifact)
    height, width = input_size(artifact)
    shape = [1, height, width, 3] if takes_images(artifact) else [1, 3, height, width]
    reference = Artifact.objects.get(id=params["reference"]) if params.get("reference") else None
    config = {"shape": shape, **_settings(params)}
    request, reads = {"config": config, "input_size": [height, width]}, []
    if artifact.format not in TORCH_FORMATS:
        request["model"], folder = staged_model(run, artifact, input_size=height)
        reads.append(folder)
    if reference is not None:
        request["reference"], folder = staged_model(run, reference, input_size=height, name="reference")
        reads.append(folder)
    result = run.jailed(run.step, request, reads=reads)
    return {**result, "artifact": artifact.id, "reference": reference.id if reference else None}


def _settings(params: dict) -> dict:
    return {"device": params["device"], "seconds": params["seconds"], "hints": list(params["hints"]),
            "matrix": [[point["batch"], point["streams"]] for point in params["matrix"]],
            "layer_runs": 30 if params["layer_counters"] else 0, "rounds": params.get("rounds", 3)}


def _benchmark_text(run: JobRun, artifact: Artifact) -> dict:
    """A text IR (or ONNX model) at batch × tokens: every input reshaped to it, random token ids
    with every position attended. torch eager is not measured beside it."""
    params = run.params
    if artifact.format in TORCH_FORMATS or artifact.format == "transformers":
        raise JobError("Vintner benchmarks a text model's OpenVINO IR or ONNX export; convert the model first.")
    shape = [params.get("batch", 1), params.get("sequence_length", 128)]
    request = {"config": {"shape": shape, **_settings(params)}}
    request["model"], folder = staged_model(run, artifact, input_size=0)
    result = run.jailed(run.step, request, reads=[folder])
    return {**result, "artifact": artifact.id, "reference": None, "modality": "text"}
