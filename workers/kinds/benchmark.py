"""The benchmark job on the worker: stage what it reads, run its step in the jail, publish what it made
(webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.benchmark`)."""

from webapp.registry.models import TORCH_FORMATS, Artifact
from workers.kinds.staging import input_size, staged_model, takes_images
from workers.runner import JobRun


def perform(run: JobRun) -> dict:
    """Measure an artifact's speed on this worker (and torch eager of its PyTorch source)."""
    params = run.params
    artifact = Artifact.objects.select_related("model").get(id=params["artifact"])
    height, width = input_size(artifact)
    shape = [1, height, width, 3] if takes_images(artifact) else [1, 3, height, width]
    reference = Artifact.objects.get(id=params["reference"]) if params.get("reference") else None
    config = {"shape": shape, "device": params["device"], "seconds": params["seconds"], "hints": list(params["hints"]),
              "matrix": [[point["batch"], point["streams"]] for point in params["matrix"]],
              "layer_runs": 30 if params["layer_counters"] else 0, "rounds": params.get("rounds", 3)}
    request, reads = {"config": config, "input_size": [height, width]}, []
    if artifact.format not in TORCH_FORMATS:
        request["model"], folder = staged_model(run, artifact, input_size=height)
        reads.append(folder)
    if reference is not None:
        request["reference"], folder = staged_model(run, reference, input_size=height, name="reference")
        reads.append(folder)
    result = run.jailed(run.step, request, reads=reads)
    return {**result, "artifact": artifact.id, "reference": reference.id if reference else None}
