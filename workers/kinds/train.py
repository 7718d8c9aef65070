"""The train job on the worker: stage what it reads, run its step in the jail, publish what it made
(webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.train`)."""

from webapp.core.files import delete_tree, local_tree
from webapp.core.modality import Modality
from webapp.datasets.models import Dataset
from webapp.registry.models import Artifact, Format, Model, Origin
from webapp.registry.services import artifact_record
from workers.jail import StepCancelled, checked_tree
from workers.kinds.staging import epoch_checkpoints, image_cache, published, staged_model, staging
from workers.pipeline.architectures import defaults_for
from workers.pipeline.preprocessing import default_preprocessing
from workers.pipeline.reporting import JobError
from workers.runner import JobRun


# The job's parameters that are training settings (the rest name the data and the outcome).
TRAIN_SETTINGS = ("architecture", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule",
                  "warmup_epochs", "step_size", "gamma", "label_smoothing", "augment", "flip", "input_size", "seed",
                  "early_stopping_patience", "amp", "workers", "checkpoint_minutes", "gpus", "pretrained")
# Those text training takes (workers/pipeline/text/training.py); `pretrained` is its `weights`.
TEXT_SETTINGS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "max_length", "seed",
                 "early_stopping_patience", "amp")


def perform(run: JobRun) -> dict:
    """Train an image or text classifier on a dataset; checkpoints every few minutes (text: every epoch); the best
    epoch becomes an artifact."""
    params = run.params
    dataset = Dataset.objects.get(id=params["dataset"])
    init = Artifact.objects.select_related("model").get(id=params["init_artifact"]) if params.get("init_artifact") else None
    if dataset.modality == Modality.TEXT:
        return _perform_text(run, params, dataset, init)
    folder = local_tree(dataset.storage_prefix, staging(run, "dataset"))
    request = {"config": {name: params[name] for name in TRAIN_SETTINGS if params.get(name) is not None},
               "dataset": str(folder)}
    reads = [folder]
    if init is not None:
        request["init"], init_folder = staged_model(run, init, input_size=224, name="init")
        reads.append(init_folder)
    resume, save_checkpoint = epoch_checkpoints(run)
    if resume:
        request["resume"] = str(resume)
        reads.append(resume)
    size = params.get("input_size") or defaults_for(params["architecture"], params.get("optimizer") or "adamw")["input_size"]
    def train():
        with image_cache(run, dataset, folder, size) as (request["cache"], binds):
            return run.jailed(run.step, request, reads=reads + binds.get("reads", []), writes=binds.get("writes", []),
                              on_checkpoint_file=save_checkpoint)

    return _trained(run, train, lambda result: _publish_trained(run, params, dataset, init, result))


def _trained(run: JobRun, train, publish) -> dict:
    """Run the training step and publish its best epoch; a cancelled run keeps its best finished
    epoch where the job asked to. Either way its checkpoints go."""
    try:
        result = train()
    except StepCancelled as cancelled:
        if run.params["keep_best_on_cancel"] and cancelled.result is not None:
            publish(cancelled.result)
            run.reporter.log(f"Kept the best epoch ({cancelled.result['best_epoch']}) as an artifact.")
        delete_tree(f"jobs/{run.job.id}")
        raise
    artifact = publish(result)
    delete_tree(f"jobs/{run.job.id}")
    return {"artifact": artifact.id, "best_epoch": result["best_epoch"], "device": result["device"], **result["final"]}



def _publish_trained(run: JobRun, params: dict, dataset, init, result: dict) -> Artifact:
    model = run.job.model or Model.objects.get_or_create(  # the job's model, even if renamed since
        project=run.job.project, name=params["model_name"].strip(), defaults={"created_by": run.job.created_by})[0]
    size, classes = int(result["input_size"]), [str(name) for name in result["classes"]]
    model.labels = classes
    # training validates with the default sizing rule (augment.val_transform; the image cache and
    # device_augment reproduce it), in RGB 0-1 NCHW
    model.preprocessing = {**default_preprocessing(), "input_size": [size, size],
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


def _perform_text(run: JobRun, params: dict, dataset, init) -> dict:
    """A text classifier: fine-tuned from a transformers artifact, or a built-in shape from scratch;
    the best epoch is published as a transformers folder."""
    folder = local_tree(dataset.storage_prefix, staging(run, "dataset"))
    config = {name: params[name] for name in TEXT_SETTINGS if params.get(name) is not None}
    request, reads = {"config": config, "dataset": str(folder)}, [folder]
    if init is not None:
        model_folder = local_tree(init.storage_prefix, staging(run, "init"))
        request["model"], config["weights"] = str(model_folder), bool(params["pretrained"])
        reads.append(model_folder)
    else:
        config["architecture"] = params["architecture"]
    resume, save_checkpoint = epoch_checkpoints(run)
    if resume:
        request["resume"] = str(resume)
        reads.append(resume)
    return _trained(run, lambda: run.jailed("train_text", request, reads=reads, on_checkpoint_file=save_checkpoint),
                    lambda result: _publish_text(run, params, dataset, init, result))


def _publish_text(run: JobRun, params: dict, dataset, init, result: dict) -> Artifact:
    model = run.job.model or Model.objects.get_or_create(
        project=run.job.project, name=params["model_name"].strip(),
        defaults={"created_by": run.job.created_by, "modality": Modality.TEXT})[0]
    model.labels, model.modality = [str(name) for name in result["classes"]], Modality.TEXT
    model.save(update_fields=["labels", "modality", "updated_at"])
    folder = published(run, "out/model")
    if "config.json" not in checked_tree(folder):
        raise JobError("The training made no model folder, so nothing was published.")
    inspection = result.pop("inspection")
    inspection["details"]["dataset"] = str(dataset)
    metrics = {"training": {**result, "dataset": dataset.id}}
    return artifact_record(parent=init, job=run.job, origin=Origin.TRAINED, folder=folder, fmt=Format.TRANSFORMERS,
                           primary="config.json", inspection=inspection, metrics=metrics, model=model,
                           num_classes=len(result["classes"]))  # architecture: a state_dict's only
