"""Celery tasks: thin glue. Each job kind is a task `jobs.<kind>` that stages what the job reads,
runs its pipeline step in the jail (`run.jailed`: workers/pipeline/steps.py) and publishes what
the step made, checked; workers/runner.py does the rest. Nothing here opens a model or an archive."""

from collections.abc import Callable
from pathlib import Path

from celery import shared_task
from django.conf import settings

from webapp.core.files import delete_file, delete_tree, local_file, local_tree, store_copy
from webapp.core.quota import quota_left
from webapp.datasets.models import Dataset
from webapp.datasets.services import dataset_publish
from webapp.hosts.services import host_report
from webapp.registry.models import TORCH_FORMATS, Artifact, Format, Model, Origin
from webapp.registry.services import artifact_publish, artifact_record
from workers.jail import StepCancelled, checked_tree, jail_problem
from workers.pipeline.data import ImageItem
from workers.pipeline.hostinfo import probe_host
from workers.pipeline.reporting import JobError
from workers.runner import JobRun, execute

@shared_task(bind=True, name="hosts.report_capabilities")
def report_capabilities(self) -> None:
    """Runs on the host it describes: it is routed to that worker's own direct queue."""
    jail = {"mode": settings.VINTNER_JAIL, "problem": jail_problem() if settings.VINTNER_JAIL == "bwrap" else "",
            "memory_gb": settings.JAIL_MEMORY_GB, "max_processes": settings.JAIL_MAX_PROCESSES}
    host_report(hostname=self.request.hostname, capabilities={**probe_host(), "jail": jail})


def job_task(kind: str) -> Callable:
    def register(body: Callable[[JobRun], dict]):
        def run(self, job_id: int) -> None:
            execute(self, job_id, body)

        run.__doc__ = body.__doc__
        return shared_task(bind=True, name=f"jobs.{kind}")(run)

    return register


@job_task("probe")
def probe(run: JobRun) -> dict:
    """Measure this worker's matmul throughput."""
    config = {name: run.params[name] for name in ("rounds", "seconds_per_round", "matrix_size")}
    return run.jailed("probe", {"config": config, "resume": run.checkpoint}, reads=[],
                      on_checkpoint=run.reporter.checkpoint)


@job_task("dataset_import")
def dataset_import(run: JobRun) -> dict:
    """Unpack an uploaded archive under hard limits, validate every image, publish the dataset."""
    dataset = Dataset.objects.select_related("upload", "project__team").get(id=run.params["dataset"])
    if dataset.upload is None or not dataset.upload.complete:
        raise JobError("The uploaded archive is gone; upload it again as a new dataset.")
    # the archive's own bytes are freed once the import succeeds
    room = min(settings.DATASET_MAX_EXTRACTED_BYTES, quota_left(dataset.project.team) + dataset.upload.length)
    limits = {"max_bytes": room, "max_files": settings.DATASET_MAX_FILES,
              "max_ratio": settings.DATASET_MAX_COMPRESSION_RATIO}
    archive = local_file(dataset.upload.storage_key, _staging(run))
    result = run.jailed("dataset_import", {
        "archive": str(archive), "name": dataset.archive_name, "limits": limits,
        "config": {"val_fraction": dataset.val_fraction, "seed": dataset.seed},
    }, reads=[archive])
    run.reporter.stage("publishing")
    folder = run.work / "dataset"
    files = checked_tree(folder, max_bytes=room)
    classes = [str(name) for name in result["classes"]]
    items = [_dataset_item(item, files, classes) for item in result["items"]]
    dataset_publish(dataset=dataset, folder=folder, items=items, classes=classes, report=result["report"],
                    size=sum(files.values()))
    return {"dataset": dataset.id, "images": len(items), "classes": len(result["classes"]),
            "skipped": result["report"].get("skipped_count", 0)}


def _dataset_item(facts: dict, files: dict[str, int], classes: list[str]) -> ImageItem:
    """An image the jailed import describes, believed only where the published folder agrees:
    its paths are files in it (a path could name another dataset's files), its class is listed."""
    item = ImageItem(**facts)
    if (f"images/{item.path}" not in files or item.thumb not in files or item.label not in classes
            or item.split not in ("train", "val", "test")):
        raise JobError("The import described an image it did not write, so nothing was published.")
    return item


@job_task("model_import")
def model_import(run: JobRun) -> dict:
    """Check uploaded model files, inspect them (untrusted: all of it in the jail), publish."""
    artifact = Artifact.objects.select_related("model").get(id=run.params["artifact"])
    uploads = list(artifact.uploads.all())
    if not uploads or not all(upload.complete for upload in uploads):
        raise JobError("The uploaded files are gone; upload them again.")
    sources = [(local_file(upload.storage_key, _staging(run, str(upload.id))), upload.filename) for upload in uploads]
    source = {"architecture": artifact.architecture, "num_classes": artifact.num_classes,
              "input_size": artifact.model.preprocessing["input_size"][0]}
    result = run.jailed("model_import", {"sources": [[str(path), name] for path, name in sources],
                                         "format": run.params["format"], "source": source},
                        reads=[path for path, _ in sources])
    run.reporter.stage("publishing")
    folder = _published(run, "model")
    if result["format"] not in Format.values or result["primary"] not in checked_tree(folder):
        raise JobError("The model's inspection named a format or file it did not make, so nothing was published.")
    artifact_publish(artifact=artifact, folder=folder, fmt=result["format"], primary=result["primary"],
                     inspection=result["inspection"])
    return {"artifact": artifact.id, "format": result["format"], "parameters": result["inspection"].get("parameters")}


@job_task("convert")
def convert(run: JobRun) -> dict:
    """Convert a PyTorch or ONNX artifact to OpenVINO IR, check it against its source, publish it."""
    params = run.params
    source = Artifact.objects.select_related("model").get(id=params["artifact"])
    preprocessing = source.model.preprocessing
    height = params.get("input_height") or preprocessing["input_size"][0]
    width = params.get("input_width") or preprocessing["input_size"][1]
    model, model_folder = _staged_model(run, source, input_size=height)
    dataset_folder, images = _validation_images(run, params.get("dataset"))
    config = {
        "route": params["route"], "shape": params["shape"], "input_size": [height, width],
        "input_name": params["input_name"], "output_name": params["output_name"], "precision": params["precision"],
        "opset": params["opset"], "tolerance": params.get("tolerance"),
        "preprocessing": _embedded(preprocessing, (height, width)) if params["embed_preprocessing"] else None,
        "samples": params.get("samples", 4),  # jobs queued before it was a setting
    }
    result = run.jailed("convert", {"model": model, "config": config, "images": images},
                        reads=[model_folder] + ([dataset_folder] if dataset_folder else []))
    folder = _published(run, "ir")
    artifact = artifact_record(
        parent=source, job=run.job, origin=Origin.CONVERTED, folder=folder, fmt="openvino_ir",
        primary="model.xml", inspection=result["inspection"], metrics={"conversion": result["conversion"]},
    )
    return {"artifact": artifact.id, "route": result["route"], "max_abs_diff": result["max_abs_diff"],
            "within_tolerance": result["within_tolerance"]}


def _embedded(preprocessing: dict, size: tuple[int, int]) -> dict:
    """The model's preprocessing, as the IR will do it: it takes u8 NHWC RGB images of any size."""
    def three(values: list) -> list:
        return values * 3 if len(values) == 1 else values

    return {"layout": "NHWC", "color": "RGB", "model_color": preprocessing["color"], "input_size": list(size),
            "mean": three(preprocessing["mean"]), "std": three(preprocessing["std"])}


def _validation_images(run: JobRun, dataset_id: int | None) -> tuple[Path | None, list[str] | None]:
    """Up to 16 validation images of a dataset, spread over its classes, for the equivalence check."""
    if not dataset_id:
        return None, None
    dataset = Dataset.objects.get(id=dataset_id)
    root = local_tree(dataset.storage_prefix, _staging(run, "dataset"))
    each = max(1, 16 // max(len(dataset.classes), 1))
    picked = [item for label in dataset.classes for item in dataset.items.filter(split="val", label=label)[:each]]
    return root, [str(root / "images" / item.path) for item in picked[:16]]


@job_task("quantize")
def quantize(run: JobRun) -> dict:
    """INT8 quantization (post-training, with accuracy control, or quantization-aware training)
    on a dataset; the INT8 IR becomes a child of its source with accuracy before and after."""
    params = run.params
    source = Artifact.objects.select_related("model").get(id=params["artifact"])
    dataset = Dataset.objects.get(id=params["dataset"])
    model = source.model
    method = params["method"]
    folder = local_tree(dataset.storage_prefix, _staging(run, "dataset"))
    data, note = _quantize_data(dataset, model, folder, source.num_classes)
    if note:
        run.reporter.log(note, level="warning")
    config = {
        "method": "ptq" if method == "qat" else method, "subset_size": params["subset_size"],
        "preset": params["preset"], "fast_bias_correction": params["fast_bias_correction"],
        "model_type": params["model_type"], "max_drop": params["max_drop"] / 100, "drop_type": params["drop_type"],
        "seed": params["seed"],
        "ignored_names": [line for line in params["ignored_scope"] if not line.startswith("re:")],
        "ignored_patterns": [line[3:] for line in params["ignored_scope"] if line.startswith("re:")],
    }
    embedded = source.format == "openvino_ir" and _takes_images(source)
    staged, source_folder = _staged_model(run, source, input_size=model.preprocessing["input_size"][0])
    request = {"model": staged, "config": config, "data": data, "preprocessing": model.preprocessing,
               "embedded": embedded, "dataset": str(folder)}
    if method == "qat":
        result = _quantization_aware(run, request, [source_folder, folder])
    else:
        result = run.jailed("quantize", request, reads=[source_folder, folder])
    out = _published(run, "qat/ir" if method == "qat" else "int8")
    metrics = {"quantization": {**result["quantization"], "dataset": dataset.id, "dataset_name": str(dataset),
                                "settings": {k: v for k, v in params.items() if k not in ("artifact", "dataset")}}}
    if "training" in result:
        metrics["training"] = {**result["training"], "dataset": dataset.id}
    artifact = artifact_record(parent=source, job=run.job, origin=Origin.QUANTIZED, folder=out,
                               fmt="openvino_ir", primary="model.xml", inspection=result["inspection"], metrics=metrics)
    quantization = result["quantization"]
    summary = {"artifact": artifact.id, "fp32_top1": quantization["fp32"]["top1"],
               "int8_top1": quantization["int8"]["top1"], "drop": quantization["drop"]}
    if quantization.get("target") is not None:
        summary["target_met"] = quantization["target"]["met"]
    return summary


def _quantize_data(dataset: Dataset, model: Model, folder: Path, outputs: int | None) -> tuple[dict, str]:
    """The dataset's train files (calibration) and val files with the model's output index of each."""
    classes = list(dataset.classes)
    note = ""
    if model.labels:
        index = {name: i for i, name in enumerate(model.labels)}
    else:
        index = {name: i for i, name in enumerate(classes)}
        note = (f"Model “{model}” has no class labels: its outputs are taken to be the dataset's classes in "
                f"its order ({', '.join(classes[:8])}{' …' if len(classes) > 8 else ''}).")
    images = folder / "images"
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
             "seed": params["seed"], "workers": params["workers"]}
    resume, save_checkpoint = _epoch_checkpoints(run)
    try:
        return run.jailed("qat", {**request, "train": train, "resume": resume and str(resume)},
                          reads=reads + ([resume] if resume else []), on_checkpoint_file=save_checkpoint)
    finally:  # a lost worker's process never gets here: its checkpoints stay for the next attempt
        delete_tree(f"jobs/{run.job.id}")


@job_task("benchmark")
def benchmark(run: JobRun) -> dict:
    """Measure an artifact's speed on this worker (and torch eager of its PyTorch source)."""
    params = run.params
    artifact = Artifact.objects.select_related("model").get(id=params["artifact"])
    height, width = artifact.model.preprocessing["input_size"]
    shape = [1, height, width, 3] if _takes_images(artifact) else [1, 3, height, width]
    reference = Artifact.objects.get(id=params["reference"]) if params.get("reference") else None
    config = {"shape": shape, "device": params["device"], "seconds": params["seconds"], "hints": list(params["hints"]),
              "matrix": [[point["batch"], point["streams"]] for point in params["matrix"]],
              "layer_runs": 30 if params["layer_counters"] else 0}
    request, reads = {"config": config, "input_size": [height, width]}, []
    if artifact.format not in TORCH_FORMATS:
        request["model"], folder = _staged_model(run, artifact, input_size=height)
        reads.append(folder)
    if reference is not None:
        request["reference"], folder = _staged_model(run, reference, input_size=height, name="reference")
        reads.append(folder)
    result = run.jailed("benchmark", request, reads=reads)
    return {**result, "artifact": artifact.id, "reference": reference.id if reference else None}


@job_task("evaluate")
def evaluate(run: JobRun) -> dict:
    """Top-1, top-5 and the confusion matrix of an artifact on a dataset split."""
    params = run.params
    artifact = Artifact.objects.select_related("model").get(id=params["artifact"])
    dataset = Dataset.objects.get(id=params["dataset"])
    model = artifact.model
    labels = model.labels or list(dataset.classes)
    index = {name: i for i, name in enumerate(labels)}
    items = list(dataset.items.filter(split=params["split"]).order_by("index"))
    folder = local_tree(dataset.storage_prefix, _staging(run, "dataset"))
    staged, model_folder = _staged_model(run, artifact, input_size=model.preprocessing["input_size"][0])
    scores = run.jailed("evaluate", {
        "model": staged, "preprocessing": model.preprocessing, "embedded": _takes_images(artifact),
        "images": [str(folder / "images" / item.path) for item in items], "labels": [index[item.label] for item in items],
        "classes": artifact.num_classes or len(labels),
    }, reads=[model_folder, folder])
    run.reporter.log(f"top-1 {100 * scores['top1']:.1f} %, top-5 {100 * scores['top5']:.1f} % on {scores['images']} "
                     f"{params['split']} images of {dataset}.")
    return {"artifact": artifact.id, "dataset": dataset.id, "dataset_name": str(dataset), "split": params["split"],
            "labels": labels, **scores}


# The job's parameters that are training settings (the rest name the data and the outcome).
TRAIN_SETTINGS = ("architecture", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule",
                  "warmup_epochs", "step_size", "gamma", "label_smoothing", "augment", "input_size", "seed",
                  "early_stopping_patience", "amp", "workers", "pretrained")


@job_task("train")
def train(run: JobRun) -> dict:
    """Train an image classifier on a dataset; checkpoints every epoch; the best epoch becomes an artifact."""
    params = run.params
    dataset = Dataset.objects.get(id=params["dataset"])
    init = Artifact.objects.select_related("model").get(id=params["init_artifact"]) if params.get("init_artifact") else None
    folder = local_tree(dataset.storage_prefix, _staging(run, "dataset"))
    request = {"config": {name: params[name] for name in TRAIN_SETTINGS if params.get(name) is not None},
               "dataset": str(folder)}
    reads = [folder]
    if init is not None:
        request["init"], init_folder = _staged_model(run, init, input_size=224, name="init")
        reads.append(init_folder)
    resume, save_checkpoint = _epoch_checkpoints(run)
    if resume:
        request["resume"] = str(resume)
        reads.append(resume)
    try:
        result = run.jailed("train", request, reads=reads, on_checkpoint_file=save_checkpoint)
    except StepCancelled as cancelled:
        if params["keep_best_on_cancel"] and cancelled.result is not None:
            _publish_trained(run, params, dataset, init, cancelled.result)
            run.reporter.log(f"Kept the best epoch ({cancelled.result['best_epoch']}) as an artifact.")
        delete_tree(f"jobs/{run.job.id}")
        raise
    artifact = _publish_trained(run, params, dataset, init, result)
    delete_tree(f"jobs/{run.job.id}")
    return {"artifact": artifact.id, "best_epoch": result["best_epoch"], "device": result["device"], **result["final"]}


def _epoch_checkpoints(run: JobRun) -> tuple:
    """A training loop's checkpoints in storage under jobs/<id>/: the file to resume from (a lost
    worker's last epoch), and the callback that stores each epoch's as the jailed step hands it over."""
    checkpoints = f"jobs/{run.job.id}"
    resume = local_file(run.checkpoint["key"], _staging(run, "resume")) if run.checkpoint else None

    def save_checkpoint(path: Path, summary: dict) -> None:
        # One file per epoch: a resumed run starts from the epoch the job row names, whose metrics
        # were written before it, never from a newer file whose epoch the events lack.
        epoch = summary.get("epoch")
        if type(epoch) is not int or epoch < 1:
            raise ValueError("a checkpoint's epoch must be a whole number from 1")
        store_copy(path, f"{checkpoints}/checkpoint-{epoch}.pth")
        path.unlink()
        run.reporter.checkpoint({**summary, "key": f"{checkpoints}/checkpoint-{epoch}.pth"})
        if epoch > 3:  # the row has moved past it long since
            delete_file(f"{checkpoints}/checkpoint-{epoch - 3}.pth")

    return resume, save_checkpoint


def _publish_trained(run: JobRun, params: dict, dataset, init, result: dict) -> Artifact:
    model = run.job.model or Model.objects.get_or_create(  # the job's model, even if renamed since
        project=run.job.project, name=params["model_name"].strip(), defaults={"created_by": run.job.created_by})[0]
    size, classes = int(result["input_size"]), [str(name) for name in result["classes"]]
    model.labels = classes
    model.preprocessing = {"input_size": [size, size], "layout": "NCHW", "color": "RGB",
                           "mean": [float(v) for v in result["mean"]], "std": [float(v) for v in result["std"]]}
    model.save(update_fields=["labels", "preprocessing", "updated_at"])
    if "weights.pth" not in checked_tree(run.work / "out"):
        raise JobError("The training made no weights file, so nothing was published.")
    folder = run.scratch / "artifact"
    folder.mkdir()
    (run.work / "out" / "weights.pth").rename(folder / "weights.pth")
    inspection = {"format": "state_dict", "inputs": [{"name": "input", "shape": [1, 3, size, size], "dtype": "f32"}],
                  "outputs": [{"name": "output", "shape": [1, len(classes)], "dtype": "f32"}], "precision": "fp32",
                  "details": {"architecture": result["architecture"], "device": result["device"], "dataset": str(dataset)}}
    metrics = {"training": {**result, "dataset": dataset.id}}
    return artifact_record(parent=init, job=run.job, origin=Origin.TRAINED, folder=folder, fmt="state_dict",
                           primary="weights.pth", inspection=inspection, metrics=metrics, model=model,
                           architecture=result["architecture"], num_classes=len(classes))


# --- staging and publishing ---------------------------------------------------------------------

def _staging(run: JobRun, name: str = "") -> Path:
    """A folder for a download from storage (on local storage nothing is copied there)."""
    folder = run.inputs / name if name else run.inputs
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _staged_model(run: JobRun, artifact: Artifact, *, input_size: int, name: str = "model") -> tuple[dict, Path]:
    """An artifact's files where the jail can read them, and what the step needs to know of it."""
    folder = local_tree(artifact.storage_prefix, _staging(run, name))
    return {"format": artifact.format, "folder": str(folder), "primary": artifact.primary,
            "architecture": artifact.architecture, "num_classes": artifact.num_classes, "input_size": input_size}, folder


def _takes_images(artifact: Artifact) -> bool:
    """An IR with embedded preprocessing takes u8 NHWC images."""
    return (artifact.inspection.get("inputs") or [{}])[0].get("dtype") == "u8"


def _published(run: JobRun, name: str) -> Path:
    """The folder a step made in its work folder, checked to hold nothing but plain files."""
    folder = run.work / name
    checked_tree(folder)
    return folder
