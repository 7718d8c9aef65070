"""Celery tasks: thin glue. Each job kind is a task `jobs.<kind>` that loads the job, calls
the pipeline and returns the result summary; workers/runner.py does the rest."""

from collections.abc import Callable
from dataclasses import asdict

from celery import shared_task
from django.conf import settings

from webapp.core.files import delete_file, delete_tree, local_file, local_tree, store_copy
from webapp.core.quota import quota_left
from webapp.datasets.models import Dataset
from webapp.datasets.services import dataset_publish
from webapp.hosts.services import host_report
from webapp.registry.models import Artifact, Model, Origin
from webapp.registry.services import TORCH_FORMATS, artifact_publish, artifact_record
from workers.pipeline.archives import ExtractLimits, extract_archive
from workers.pipeline.data import ImportConfig, import_dataset
from workers.pipeline.conversion import ConvertConfig
from workers.pipeline.conversion import convert as convert_model
from workers.pipeline.formats import InspectConfig, Prepared, inspect_model, load_torch_module, one_line, prepare_model
from workers.pipeline.graphs import model_graph
from workers.pipeline.hostinfo import probe_host
from workers.pipeline.benchmark import BenchmarkConfig, benchmark_ir, benchmark_summary, host_facts, measure_torch
from workers.pipeline.evaluation import Pictures, model_runner
from workers.pipeline.evaluation import evaluate as evaluate_model
from workers.pipeline.feeding import InputSpec
from workers.pipeline.probe import ProbeConfig, run_probe
from workers.pipeline.qat import quantization_aware_training
from workers.pipeline.quantization import QuantizeConfig, QuantizeData, quantize_ir
from workers.pipeline.reporting import JobError, Span
from workers.pipeline.training import TrainConfig, TrainingCancelled
from workers.pipeline.training import train as train_model
from workers.runner import JobRun, execute


@shared_task(bind=True, name="hosts.report_capabilities")
def report_capabilities(self) -> None:
    """Runs on the host it describes: it is routed to that worker's own direct queue."""
    host_report(hostname=self.request.hostname, capabilities=probe_host())


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
    config = ProbeConfig(
        rounds=run.params["rounds"], seconds_per_round=run.params["seconds_per_round"], matrix_size=run.params["matrix_size"]
    )
    result = run_probe(config, run.reporter, resume=run.checkpoint)
    return {"devices": result.summary()}


@job_task("dataset_import")
def dataset_import(run: JobRun) -> dict:
    """Unpack an uploaded archive under hard limits, validate every image, publish the dataset."""
    dataset = Dataset.objects.select_related("upload", "project__team").get(id=run.params["dataset"])
    if dataset.upload is None or not dataset.upload.complete:
        raise JobError("The uploaded archive is gone; upload it again as a new dataset.")
    bar = Span(run.reporter, 0.0, 1.0)
    limits = ExtractLimits(
        # the archive's own bytes are freed once the import succeeds
        max_bytes=min(settings.DATASET_MAX_EXTRACTED_BYTES, quota_left(dataset.project.team) + dataset.upload.length),
        max_files=settings.DATASET_MAX_FILES,
        max_ratio=settings.DATASET_MAX_COMPRESSION_RATIO,
    )
    run.reporter.stage("unpacking")
    archive = local_file(dataset.upload.storage_key, run.scratch)
    extract_archive(archive, run.scratch / "extracted", limits, bar.child(0.0, 0.3), name=dataset.archive_name)
    run.reporter.stage("validating")
    config = ImportConfig(val_fraction=dataset.val_fraction, seed=dataset.seed)
    result = import_dataset(run.scratch / "extracted", run.scratch / "dataset", config, bar.child(0.3, 0.97))
    run.reporter.stage("publishing")
    bar.raise_if_cancelled()
    dataset_publish(
        dataset=dataset, folder=run.scratch / "dataset", items=result.items, classes=result.classes,
        report=result.report, size=result.bytes,
    )
    return {"dataset": dataset.id, "images": len(result.items), "classes": len(result.classes), "skipped": result.report["skipped_count"]}


@job_task("model_import")
def model_import(run: JobRun) -> dict:
    """Check uploaded model files (untrusted: code runs only in a limited child), inspect, publish."""
    artifact = Artifact.objects.select_related("model").get(id=run.params["artifact"])
    uploads = list(artifact.uploads.all())
    if not uploads or not all(upload.complete for upload in uploads):
        raise JobError("The uploaded files are gone; upload them again.")
    bar = Span(run.reporter, 0.0, 1.0)
    run.reporter.stage("checking")
    sources = []
    for upload in uploads:
        folder = run.scratch / "uploads" / str(upload.id)
        folder.mkdir(parents=True)
        sources.append((local_file(upload.storage_key, folder), upload.filename))
    prepared = prepare_model(sources, run.scratch / "model", bar.child(0.0, 0.2), declared_format=run.params["format"])
    run.reporter.stage("inspecting")
    config = InspectConfig(
        architecture=artifact.architecture,
        num_classes=artifact.num_classes,
        input_size=artifact.model.preprocessing["input_size"][0],
    )
    inspection = inspect_model(prepared, config, bar.child(0.2, 0.95))
    run.reporter.stage("publishing")
    bar.raise_if_cancelled()
    artifact_publish(
        artifact=artifact, folder=prepared.folder, fmt=prepared.format, primary=prepared.primary,
        inspection=_with_graph(inspection.as_dict(), prepared, run),
    )
    return {"artifact": artifact.id, "format": prepared.format, "parameters": inspection.parameters}


def _with_graph(facts: dict, prepared: Prepared, run: JobRun) -> dict:
    """The graph view's data (OpenVINO IR and ONNX); a model it fails on is still published."""
    if prepared.format in ("openvino_ir", "onnx"):
        try:
            facts["graph"] = model_graph(prepared)
        except Exception as error:
            run.reporter.log(f"No graph view for this model: {one_line(error)}", level="warning")
    return facts


@job_task("convert")
def convert(run: JobRun) -> dict:
    """Convert a PyTorch or ONNX artifact to OpenVINO IR, check it against its source, publish it."""
    source = Artifact.objects.select_related("model").get(id=run.params["artifact"])
    preprocessing = source.model.preprocessing
    height = run.params.get("input_height") or preprocessing["input_size"][0]
    width = run.params.get("input_width") or preprocessing["input_size"][1]
    prepared = Prepared(format=source.format, folder=local_tree(source.storage_prefix, run.scratch / "source"), primary=source.primary)
    images = _validation_images(run.params.get("dataset"), run.scratch / "dataset")
    config = ConvertConfig(
        route=run.params["route"],
        shape=run.params["shape"],
        input_size=(height, width),
        input_name=run.params["input_name"],
        output_name=run.params["output_name"],
        precision=run.params["precision"],
        opset=run.params["opset"],
        preprocessing=_embedded(preprocessing, (height, width)) if run.params["embed_preprocessing"] else None,
        tolerance=run.params.get("tolerance"),
        samples=run.params.get("samples", ConvertConfig.samples),  # jobs queued before it was a setting
    )
    source_config = InspectConfig(architecture=source.architecture, num_classes=source.num_classes, input_size=height)
    bar = Span(run.reporter, 0.0, 1.0)
    result = convert_model(prepared, source_config, config, run.scratch / "ir", bar.child(0.0, 0.9), images=images)
    run.reporter.stage("publishing")
    ir = Prepared(format="openvino_ir", folder=result.folder, primary="model.xml")
    facts = _with_graph(inspect_model(ir, InspectConfig(), bar.child(0.9, 0.97)).as_dict(), ir, run)
    artifact = artifact_record(
        parent=source, job=run.job, origin=Origin.CONVERTED, folder=result.folder, fmt="openvino_ir",
        primary="model.xml", inspection=facts, metrics={"conversion": result.as_dict()},
    )
    equivalence = result.equivalence
    return {"artifact": artifact.id, "route": result.route, "max_abs_diff": equivalence.max_abs_diff,
            "within_tolerance": equivalence.within_tolerance}


def _embedded(preprocessing: dict, size: tuple[int, int]) -> dict:
    """The model's preprocessing, as the IR will do it: it takes u8 NHWC RGB images of any size."""
    def three(values: list) -> list:
        return values * 3 if len(values) == 1 else values

    return {"layout": "NHWC", "color": "RGB", "model_color": preprocessing["color"], "input_size": list(size),
            "mean": three(preprocessing["mean"]), "std": three(preprocessing["std"])}


def _validation_images(dataset_id: int | None, scratch) -> list | None:
    """Up to 16 validation images of a dataset, spread over its classes, for the equivalence check."""
    if not dataset_id:
        return None
    dataset = Dataset.objects.get(id=dataset_id)
    root = local_tree(dataset.storage_prefix, scratch)
    each = max(1, 16 // max(len(dataset.classes), 1))
    picked = [item for label in dataset.classes for item in dataset.items.filter(split="val", label=label)[:each]]
    return [root / "images" / item.path for item in picked[:16]]


@job_task("quantize")
def quantize(run: JobRun) -> dict:
    """INT8 quantization (post-training, with accuracy control, or quantization-aware training)
    on a dataset; the INT8 IR becomes a child of its source with accuracy before and after."""
    params = run.params
    source = Artifact.objects.select_related("model").get(id=params["artifact"])
    dataset = Dataset.objects.get(id=params["dataset"])
    model = source.model
    method = params["method"]
    folder = local_tree(dataset.storage_prefix, run.scratch / "dataset")
    data, note = _quantize_data(dataset, model, folder, source.num_classes)
    if note:
        run.reporter.log(note, level="warning")
    names = tuple(line for line in params["ignored_scope"] if not line.startswith("re:"))
    patterns = tuple(line[3:] for line in params["ignored_scope"] if line.startswith("re:"))
    config = QuantizeConfig(
        method="ptq" if method == "qat" else method, subset_size=params["subset_size"], preset=params["preset"],
        fast_bias_correction=params["fast_bias_correction"], model_type=params["model_type"], ignored_names=names,
        ignored_patterns=patterns, max_drop=params["max_drop"] / 100, drop_type=params["drop_type"], seed=params["seed"],
    )
    embedded = source.format == "openvino_ir" and (source.inspection.get("inputs") or [{}])[0].get("dtype") == "u8"
    spec = InputSpec.of(model.preprocessing, embedded=embedded)
    prepared = Prepared(format=source.format, folder=local_tree(source.storage_prefix, run.scratch / "source"),
                        primary=source.primary)
    source_config = InspectConfig(architecture=source.architecture, num_classes=source.num_classes,
                                  input_size=spec.size[0])
    training = None
    if method == "qat":
        result, training = _quantization_aware(run, prepared, source_config, dataset, folder, data, spec, config)
    else:
        bar = Span(run.reporter, 0.0, 1.0)
        xml = prepared.folder / prepared.primary
        if source.format != "openvino_ir":  # NNCF's OpenVINO flow is the reference one: convert first
            run.reporter.stage("converting")
            run.reporter.log("Converting to an FP32 OpenVINO IR first (kept only inside this job).")
            converted = convert_model(prepared, source_config, ConvertConfig(input_size=spec.size),
                                      run.scratch / "fp32", bar.child(0.0, 0.2))
            xml, bar = converted.folder / "model.xml", bar.child(0.2, 1.0)
        result = quantize_ir(source=xml, data=data, spec=spec, config=config, out=run.scratch / "int8",
                             span=bar.child(0.0, 0.97))
    run.reporter.stage("publishing")
    ir = Prepared(format="openvino_ir", folder=result.folder, primary="model.xml")
    facts = _with_graph(inspect_model(ir, InspectConfig(), Span(run.reporter, 0.97, 0.99)).as_dict(), ir, run)
    metrics = {"quantization": {**result.as_dict(), "dataset": dataset.id, "dataset_name": str(dataset),
                                "settings": {k: v for k, v in params.items() if k not in ("artifact", "dataset")}}}
    if training is not None:
        metrics["training"] = {**{k: v for k, v in training.as_dict().items() if k != "weights"}, "dataset": dataset.id}
    artifact = artifact_record(parent=source, job=run.job, origin=Origin.QUANTIZED, folder=result.folder,
                               fmt="openvino_ir", primary="model.xml", inspection=facts, metrics=metrics)
    summary = {"artifact": artifact.id, "fp32_top1": result.fp32.top1, "int8_top1": result.int8.top1,
               "drop": result.drop}
    if result.target is not None:
        summary["target_met"] = result.target["met"]
    return summary


def _quantize_data(dataset: Dataset, model: Model, folder, outputs: int | None) -> tuple[QuantizeData, str]:
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
    train = [images / item.path for item in dataset.items.filter(split="train").order_by("index")]
    val = list(dataset.items.filter(split="val").order_by("index"))
    data = QuantizeData(calibration=train, validation=[images / item.path for item in val],
                        labels=[index[item.label] for item in val], classes=outputs or len(index))
    return data, note


def _quantization_aware(run: JobRun, prepared: Prepared, source_config: InspectConfig, dataset: Dataset, folder,
                        data: QuantizeData, spec: InputSpec, config: QuantizeConfig):
    """QAT: the training pipeline's loop and checkpoints, resumed like a training run."""
    params = run.params
    resume, save_checkpoint = _epoch_checkpoints(run)
    module = load_torch_module(prepared, source_config)
    train_config = TrainConfig(
        architecture=source_config.architecture, epochs=params["epochs"], batch_size=params["batch_size"],
        lr=params.get("lr"), augment=params["augment"], input_size=spec.size[0], seed=params["seed"],
        workers=params["workers"], mean=spec.mean, std=spec.std,
    )
    try:
        return quantization_aware_training(module, train_config, folder, data, spec, config, run.scratch / "qat",
                                           run.reporter, resume=resume, save_checkpoint=save_checkpoint)
    finally:  # a lost worker's process never gets here: its checkpoints stay for the next attempt
        delete_tree(f"jobs/{run.job.id}")


@job_task("benchmark")
def benchmark(run: JobRun) -> dict:
    """Measure an artifact's speed on this worker (and torch eager of its PyTorch source)."""
    params = run.params
    artifact = Artifact.objects.select_related("model").get(id=params["artifact"])
    height, width = artifact.model.preprocessing["input_size"]
    embedded = (artifact.inspection.get("inputs") or [{}])[0].get("dtype") == "u8"
    shape = [1, height, width, 3] if embedded else [1, 3, height, width]
    reference = Artifact.objects.get(id=params["reference"]) if params.get("reference") else None
    config = BenchmarkConfig(shape=shape, device=params["device"], seconds=params["seconds"], hints=tuple(params["hints"]),
                             matrix=tuple((point["batch"], point["streams"]) for point in params["matrix"]),
                             layer_runs=30 if params["layer_counters"] else 0)
    bar = Span(run.reporter, 0.0, 1.0)
    result = {"host": host_facts(config.device), "shape": shape, "measurements": [], "layers": [], "layer_types": []}
    if artifact.format not in TORCH_FORMATS:
        run.reporter.stage("measuring OpenVINO")
        folder = local_tree(artifact.storage_prefix, run.scratch / "artifact")
        part = bar.child(0.0, 0.8 if reference else 1.0)
        result.update(benchmark_ir(folder / artifact.primary, config, part).as_dict())
    if reference is not None:
        run.reporter.stage("measuring torch eager")
        source = Prepared(format=reference.format, folder=local_tree(reference.storage_prefix, run.scratch / "reference"),
                          primary=reference.primary)
        module = load_torch_module(source, InspectConfig(architecture=reference.architecture,
                                                         num_classes=reference.num_classes, input_size=height))
        torch_shape = [1, 3, height, width]
        part = bar.child(0.8, 1.0) if artifact.format not in TORCH_FORMATS else bar
        result["torch"] = asdict(measure_torch(module, torch_shape, params["seconds"], part))
    return {**result, "artifact": artifact.id, "reference": reference.id if reference else None,
            **benchmark_summary(result)}


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
    images = local_tree(dataset.storage_prefix, run.scratch / "dataset") / "images"
    embedded = (artifact.inspection.get("inputs") or [{}])[0].get("dtype") == "u8"
    spec = InputSpec.of(model.preprocessing, embedded=embedded)
    bar = Span(run.reporter, 0.0, 1.0)
    run.reporter.stage("loading")
    prepared = Prepared(format=artifact.format, folder=local_tree(artifact.storage_prefix, run.scratch / "artifact"),
                        primary=artifact.primary)
    runner = model_runner(prepared, InspectConfig(architecture=artifact.architecture, num_classes=artifact.num_classes,
                                                  input_size=spec.size[0]))
    run.reporter.stage("reading images")
    pictures = Pictures([images / item.path for item in items], [index[item.label] for item in items], spec,
                        bar.child(0.0, 0.3))
    run.reporter.stage("evaluating")
    scores = evaluate_model(runner, pictures, artifact.num_classes or len(labels), bar.child(0.3, 1.0))
    run.reporter.log(f"top-1 {100 * scores.top1:.1f} %, top-5 {100 * scores.top5:.1f} % on {scores.images} "
                     f"{params['split']} images of {dataset}.")
    return {"artifact": artifact.id, "dataset": dataset.id, "dataset_name": str(dataset), "split": params["split"],
            "labels": labels, **scores.as_dict()}


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
    checkpoints = f"jobs/{run.job.id}"
    resume, save_checkpoint = _epoch_checkpoints(run)
    settings_ = {name: params[name] for name in TRAIN_SETTINGS if params.get(name) is not None}
    config = TrainConfig(**settings_)
    module = None
    if init is not None:
        source = Prepared(format=init.format, folder=local_tree(init.storage_prefix, run.scratch / "init"), primary=init.primary)
        module = load_torch_module(source, InspectConfig(architecture=init.architecture, num_classes=init.num_classes))
    try:
        result = train_model(config, local_tree(dataset.storage_prefix, run.scratch / "dataset"), run.scratch / "out",
                             run.reporter, init=module, resume=resume, save_checkpoint=save_checkpoint)
    except TrainingCancelled as cancelled:
        if params["keep_best_on_cancel"] and cancelled.result is not None:
            _publish_trained(run, params, dataset, init, cancelled.result)
            run.reporter.log(f"Kept the best epoch ({cancelled.result.best_epoch}) as an artifact.")
        delete_tree(checkpoints)
        raise
    artifact = _publish_trained(run, params, dataset, init, result)
    delete_tree(checkpoints)
    return {"artifact": artifact.id, "best_epoch": result.best_epoch, "device": result.device, **result.final}


def _epoch_checkpoints(run: JobRun) -> tuple:
    """A training loop's checkpoints in storage under jobs/<id>/: the file to resume from (a lost
    worker's last epoch), and the callback that stores each epoch's."""
    checkpoints = f"jobs/{run.job.id}"
    resume = local_file(run.checkpoint["key"], run.scratch) if run.checkpoint else None

    def save_checkpoint(path, summary: dict) -> None:
        # One file per epoch: a resumed run starts from the epoch the job row names, whose metrics
        # were written before it, never from a newer file whose epoch the events lack.
        epoch = summary["epoch"]
        store_copy(path, f"{checkpoints}/checkpoint-{epoch}.pth")
        run.reporter.checkpoint({"key": f"{checkpoints}/checkpoint-{epoch}.pth", **summary})
        if epoch > 3:  # the row has moved past it long since
            delete_file(f"{checkpoints}/checkpoint-{epoch - 3}.pth")

    return resume, save_checkpoint


def _publish_trained(run: JobRun, params: dict, dataset, init, result) -> Artifact:
    model, _ = Model.objects.get_or_create(project=run.job.project, name=params["model_name"].strip(),
                                           defaults={"created_by": run.job.created_by})
    model.labels = result.classes
    model.preprocessing = {"input_size": [result.input_size, result.input_size], "layout": "NCHW", "color": "RGB",
                           "mean": list(result.mean), "std": list(result.std)}
    model.save(update_fields=["labels", "preprocessing", "updated_at"])
    folder = result.weights.parent / "artifact"
    folder.mkdir()
    result.weights.rename(folder / "weights.pth")
    inspection = {"format": "state_dict", "inputs": [{"name": "input", "shape": [1, 3, result.input_size, result.input_size], "dtype": "f32"}],
                  "outputs": [{"name": "output", "shape": [1, result.num_classes], "dtype": "f32"}], "precision": "fp32",
                  "details": {"architecture": result.architecture, "device": result.device, "dataset": str(dataset)}}
    metrics = {"training": {**{k: v for k, v in result.as_dict().items() if k != "weights"}, "dataset": dataset.id}}
    return artifact_record(parent=init, job=run.job, origin=Origin.TRAINED, folder=folder, fmt="state_dict",
                           primary="weights.pth", inspection=inspection, metrics=metrics, model=model,
                           architecture=result.architecture, num_classes=result.num_classes)
