"""The convert job on the worker: stage what it reads, run its step in the jail, publish what it made
(webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.convert`)."""

from pathlib import Path

from webapp.core.files import local_tree
from webapp.core.modality import Modality
from webapp.datasets.models import Dataset
from webapp.registry.models import Artifact, Origin
from webapp.registry.services import artifact_record
from workers.kinds.staging import published, staged_model, staging
from workers.pipeline import preprocessing as recipe
from workers.runner import JobRun


def perform(run: JobRun) -> dict:
    """Convert a PyTorch or ONNX artifact to OpenVINO IR, check it against its source, publish it."""
    params = run.params
    source = Artifact.objects.select_related("model").get(id=params["artifact"])
    if source.model.modality == Modality.TEXT:
        return _convert_text(run, source)
    preprocessing = source.model.preprocessing
    height = params.get("input_height") or preprocessing["input_size"][0]
    width = params.get("input_width") or preprocessing["input_size"][1]
    model, model_folder = staged_model(run, source, input_size=height)
    samples = params.get("samples", 4)  # jobs queued before it was a setting
    dataset_folder, images = _validation_images(run, params.get("dataset"), samples)
    config = {
        "route": params["route"], "shape": params["shape"], "input_size": [height, width],
        "input_name": params["input_name"], "output_name": params["output_name"], "precision": params["precision"],
        "opset": params["opset"], "tolerance": params.get("tolerance"),
        "preprocessing": _embedded(preprocessing, (height, width)) if params["embed_preprocessing"] else None,
        "samples": samples,
    }
    result = run.jailed(run.step, {"model": model, "config": config, "images": images},
                        reads=[model_folder] + ([dataset_folder] if dataset_folder else []))
    folder = published(run, "ir")
    artifact = artifact_record(
        parent=source, job=run.job, origin=Origin.CONVERTED, folder=folder, fmt="openvino_ir",
        primary="model.xml", inspection=result["inspection"], metrics={"conversion": result["conversion"]},
    )
    return {"artifact": artifact.id, "route": result["route"], "max_abs_diff": result["max_abs_diff"],
            "within_tolerance": result["within_tolerance"]}


def _convert_text(run: JobRun, source: Artifact) -> dict:
    """A text classifier with its tokenizer to an IR, checked on a text dataset's rows where one is named."""
    params = run.params
    model, model_folder = staged_model(run, source, input_size=0)
    dataset_folder = None
    if params.get("dataset"):
        dataset_folder = local_tree(Dataset.objects.get(id=params["dataset"]).storage_prefix, staging(run, "dataset"))
    text = {"batch": _dimension(params.get("batch")), "sequence_length": _dimension(params.get("sequence_length")),
            "precision": params["precision"], "tolerance": params.get("tolerance"), "samples": params.get("samples", 4),
            "tokenizer_ir": bool(params.get("tokenizer_ir")), "labels": list(source.model.labels),
            "route": params["route"], "opset": params["opset"]}
    result = run.jailed(run.step, {"model": model, "text": text,
                                   "dataset": str(dataset_folder) if dataset_folder else None},
                        reads=[model_folder] + ([dataset_folder] if dataset_folder else []))
    folder = published(run, "ir")
    artifact = artifact_record(
        parent=source, job=run.job, origin=Origin.CONVERTED, folder=folder, fmt="openvino_ir",
        primary="model.xml", inspection=result["inspection"], metrics={"conversion": result["conversion"]},
    )
    return {"artifact": artifact.id, "route": result["route"], "max_abs_diff": result["max_abs_diff"],
            "within_tolerance": result["within_tolerance"]}


def _dimension(value) -> int | None:
    """A text model's batch or sequence length as the params hold it: "dynamic" (None) or a number."""
    return None if value in (None, "", "dynamic") else int(value)


def _embedded(preprocessing: dict, size: tuple[int, int]) -> dict:
    """The model's preprocessing, as the IR will do it: it takes u8 NHWC RGB images of any size
    (the crop stays with whoever feeds it: evaluation and classify.py cut the picture out first)."""
    spec = recipe.complete(preprocessing)

    def three(values: list) -> list:
        return values * 3 if len(values) == 1 else values

    return {"layout": "NHWC", "color": "RGB", "model_color": spec["color"], "input_size": list(size),
            "mean": three(spec["mean"]), "std": three(spec["std"]), "resize": spec["resize"],
            "value_range": spec["value_range"]}


def _validation_images(run: JobRun, dataset_id: int | None, count: int) -> tuple[Path | None, list[str] | None]:
    """`count` validation images of a dataset for the equivalence check, taken from each class in
    turn (of an unlabelled one, its first images); fewer when it has fewer, and the log says so."""
    if not dataset_id:
        return None, None
    dataset = Dataset.objects.get(id=dataset_id)
    root = local_tree(dataset.storage_prefix, staging(run, "dataset"))
    if dataset.labelled:
        per_class = [list(dataset.items.filter(split="val", label=label).order_by("index")[:count])
                     for label in dataset.classes]
        picked = [items[i] for i in range(count) for items in per_class if i < len(items)][:count]
    else:
        picked = list(dataset.items.order_by("index")[:count])
    if len(picked) < count:
        run.reporter.log(f"{dataset} has {len(picked)} {'validation ' if dataset.labelled else ''}images: the check "
                         f"runs on those, not the {count} asked for.", level="warning")
    return root, [str(root / "images" / item.path) for item in picked]
