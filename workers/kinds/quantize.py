"""The quantize job on the worker: stage what it reads, run its step in the jail, publish what it made
(webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.quantize`)."""

from pathlib import Path

from webapp.core.files import delete_tree, local_tree
from webapp.core.modality import Modality
from webapp.datasets.models import Dataset
from webapp.registry.models import Artifact, Model, Origin
from webapp.registry.services import artifact_record
from workers.kinds.staging import (epoch_checkpoints, nncf_kernels, preprocessing_of, published, staged_model, staging,
                                   takes_images)
from workers.runner import JobRun


def perform(run: JobRun) -> dict:
    """INT8 quantization (post-training, with accuracy control, or quantization-aware training)
    on a dataset; the INT8 IR becomes a child of its source with accuracy before and after."""
    params = run.params
    source = Artifact.objects.select_related("model").get(id=params["artifact"])
    dataset = Dataset.objects.get(id=params["dataset"])
    model = source.model
    method = params["method"]
    folder = local_tree(dataset.storage_prefix, staging(run, "dataset"))
    config = {
        "method": "ptq" if method == "qat" else method, "subset_size": params["subset_size"],
        "preset": params["preset"], "fast_bias_correction": params["fast_bias_correction"],
        "model_type": params["model_type"], "max_drop": params["max_drop"] / 100, "drop_type": params["drop_type"],
        "seed": params["seed"], "metric": params.get("metric", "accuracy"),
        "ignored_names": [line for line in params["ignored_scope"] if not line.startswith("re:")],
        "ignored_patterns": [line[3:] for line in params["ignored_scope"] if line.startswith("re:")],
    }
    if model.modality == Modality.TEXT:
        labels = model.labels or list(dataset.classes)
        staged, source_folder = staged_model(run, source, input_size=0)
        request = {"text": True, "model": staged, "config": config, "dataset": str(folder), "labels": labels,
                   "label_index": {name: i for i, name in enumerate(labels)}, "max_length": params.get("max_length")}
        return _published(run, source, dataset, run.jailed(run.step, request, reads=[source_folder, folder]), "int8")
    data, note = _quantize_data(dataset, model, folder, source.num_classes)
    if note:
        run.reporter.log(note, level="warning")
    embedded = source.format == "openvino_ir" and takes_images(source)
    preprocessing = preprocessing_of(source)
    staged, source_folder = staged_model(run, source, input_size=preprocessing["input_size"][0])
    request = {"model": staged, "config": config, "data": data, "preprocessing": preprocessing,
               "embedded": embedded, "dataset": str(folder)}
    if method == "qat":
        result = _quantization_aware(run, request, [source_folder, folder])
    else:
        result = run.jailed(run.step, request, reads=[source_folder, folder])
    return _published(run, source, dataset, result, "qat/ir" if method == "qat" else "int8")


def _published(run: JobRun, source: Artifact, dataset: Dataset, result: dict, name: str) -> dict:
    """The INT8 IR the step made, a child of its source with accuracy before and after."""
    params = run.params
    out = published(run, name)
    metrics = {"quantization": {**result["quantization"], "dataset": dataset.id, "dataset_name": str(dataset),
                                "settings": {k: v for k, v in params.items() if k not in ("artifact", "dataset")}}}
    if "training" in result:
        metrics["training"] = {**result["training"], "dataset": dataset.id}
    artifact = artifact_record(parent=source, job=run.job, origin=Origin.QUANTIZED, folder=out,
                               fmt="openvino_ir", primary="model.xml", inspection=result["inspection"], metrics=metrics)
    quantization = result["quantization"]
    summary = {"artifact": artifact.id, "fp32_top1": (quantization["fp32"] or {}).get("top1"),
               "int8_top1": (quantization["int8"] or {}).get("top1"), "drop": quantization["drop"]}
    if quantization.get("target") is not None:
        summary["target_met"] = quantization["target"]["met"]
    return summary


def _quantize_data(dataset: Dataset, model: Model, folder: Path, outputs: int | None) -> tuple[dict, str]:
    """The dataset's train files (calibration) and val files with the model's output index of each;
    of an unlabelled dataset its images for calibration only (no classes: nothing is scored)."""
    images = folder / "images"
    if not dataset.labelled:
        train = [str(images / item.path) for item in dataset.items.filter(split="train").order_by("index")]
        return {"calibration": train, "validation": [], "labels": [], "classes": None}, ""
    classes = list(dataset.classes)
    note = ""
    if model.labels:
        index = {name: i for i, name in enumerate(model.labels)}
    else:
        index = {name: i for i, name in enumerate(classes)}
        note = (f"Model “{model}” has no class labels: its outputs are taken to be the dataset's classes in "
                f"its order ({', '.join(classes[:8])}{' …' if len(classes) > 8 else ''}).")
    train = [str(images / item.path) for item in dataset.items.filter(split="train").order_by("index")]
    val = list(dataset.items.filter(split="val").order_by("index"))
    data = {"calibration": train, "validation": [str(images / item.path) for item in val],
            "labels": [index[item.label] for item in val], "classes": outputs or len(index)}
    return data, note


def _quantization_aware(run: JobRun, request: dict, reads: list[Path]) -> dict:
    """QAT: the training pipeline's loop and checkpoints, resumed like a training run."""
    params = run.params
    train = {"architecture": request["model"]["architecture"], "epochs": params["epochs"],
             "batch_size": params["batch_size"], "lr": params.get("lr"), "augment": params["augment"],
             "flip": params.get("flip", False),
             "seed": params["seed"], "workers": params["workers"]}
    resume, save_checkpoint = epoch_checkpoints(run)
    try:
        return run.jailed("qat", {**request, "train": train, "resume": resume and str(resume)},
                          reads=reads + ([resume] if resume else []), environment=nncf_kernels(run),
                          on_checkpoint_file=save_checkpoint)
    finally:  # a lost worker's process never gets here: its checkpoints stay for the next attempt
        delete_tree(f"jobs/{run.job.id}")
