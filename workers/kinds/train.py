"""The train job on the worker: stage what it reads, run its step in the jail, publish what it made
(webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.train`)."""

from webapp.core.files import delete_tree, local_tree
from webapp.datasets.models import Dataset
from webapp.registry.models import Artifact, Model, Origin
from webapp.registry.services import artifact_record
from workers.jail import StepCancelled, checked_tree
from workers.kinds.staging import epoch_checkpoints, staged_model, staging
from workers.pipeline.preprocessing import default_preprocessing
from workers.pipeline.reporting import JobError
from workers.runner import JobRun


# The job's parameters that are training settings (the rest name the data and the outcome).
TRAIN_SETTINGS = ("architecture", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule",
                  "warmup_epochs", "step_size", "gamma", "label_smoothing", "augment", "flip", "input_size", "seed",
                  "early_stopping_patience", "amp", "workers", "pretrained")


def perform(run: JobRun) -> dict:
    """Train an image classifier on a dataset; checkpoints every epoch; the best epoch becomes an artifact."""
    params = run.params
    dataset = Dataset.objects.get(id=params["dataset"])
    init = Artifact.objects.select_related("model").get(id=params["init_artifact"]) if params.get("init_artifact") else None
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
    try:
        result = run.jailed(run.step, request, reads=reads, on_checkpoint_file=save_checkpoint)
    except StepCancelled as cancelled:
        if params["keep_best_on_cancel"] and cancelled.result is not None:
            _publish_trained(run, params, dataset, init, cancelled.result)
            run.reporter.log(f"Kept the best epoch ({cancelled.result['best_epoch']}) as an artifact.")
        delete_tree(f"jobs/{run.job.id}")
        raise
    artifact = _publish_trained(run, params, dataset, init, result)
    delete_tree(f"jobs/{run.job.id}")
    return {"artifact": artifact.id, "best_epoch": result["best_epoch"], "device": result["device"], **result["final"]}



def _publish_trained(run: JobRun, params: dict, dataset, init, result: dict) -> Artifact:
    model = run.job.model or Model.objects.get_or_create(  # the job's model, even if renamed since
        project=run.job.project, name=params["model_name"].strip(), defaults={"created_by": run.job.created_by})[0]
    size, classes = int(result["input_size"]), [str(name) for name in result["classes"]]
    model.labels = classes
    # training validates with the default sizing rule (augment.val_transform), in RGB 0-1 NCHW
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
