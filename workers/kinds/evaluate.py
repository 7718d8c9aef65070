"""The evaluate job on the worker: stage what it reads, run its step in the jail, publish what it made
(webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.evaluate`)."""

from webapp.core.files import local_tree
from webapp.core.modality import Modality
from webapp.datasets.models import Dataset
from webapp.registry.models import Artifact
from workers.kinds.staging import preprocessing_of, staged_model, staging, takes_images
from workers.runner import JobRun


def perform(run: JobRun) -> dict:
    """Top-1, top-5 and the confusion matrix of an artifact on a dataset split."""
    params = run.params
    artifact = Artifact.objects.select_related("model").get(id=params["artifact"])
    dataset = Dataset.objects.get(id=params["dataset"])
    model = artifact.model
    labels = model.labels or list(dataset.classes)
    if not model.labels:  # said, never silent: the outputs are taken to be the dataset's classes in its order
        run.reporter.log(f"Model “{model}” has no class labels: its outputs are taken to be the dataset's classes in "
                         f"its order ({', '.join(labels[:8])}{' …' if len(labels) > 8 else ''}). Set the model's "
                         "labels to match classes by name.", level="warning")
    elif not model.labels_confirmed:
        run.reporter.log(f"The model's labels were read from {model.labels_source or 'its file'} and are not confirmed "
                         "yet; classes are matched to them by name.", level="warning")
    if model.modality == Modality.TEXT:
        return _evaluate_text(run, artifact, dataset, labels)
    index = {name: i for i, name in enumerate(labels)}
    items = list(dataset.items.filter(split=params["split"]).order_by("index"))
    folder = local_tree(dataset.storage_prefix, staging(run, "dataset"))
    preprocessing = preprocessing_of(artifact)
    staged, model_folder = staged_model(run, artifact, input_size=preprocessing["input_size"][0])
    scores = run.jailed(run.step, {
        "model": staged, "preprocessing": preprocessing, "embedded": takes_images(artifact),
        "images": [str(folder / "images" / item.path) for item in items], "labels": [index[item.label] for item in items],
        "classes": artifact.num_classes or len(labels),
    }, reads=[model_folder, folder])
    run.reporter.log(f"top-1 {100 * scores['top1']:.1f} %, top-5 {100 * scores['top5']:.1f} % on {scores['images']} "
                     f"{params['split']} images of {dataset}.")
    return {"artifact": artifact.id, "dataset": dataset.id, "dataset_name": str(dataset), "split": params["split"],
            "labels": labels, **scores}


def _evaluate_text(run: JobRun, artifact: Artifact, dataset: Dataset, labels: list[str]) -> dict:
    """Accuracy, macro-F1, per class and the confusion matrix of a text model on a split's rows,
    tokenized in the jail with the artifact's own tokenizer."""
    params = run.params
    folder = local_tree(dataset.storage_prefix, staging(run, "dataset"))
    staged, model_folder = staged_model(run, artifact, input_size=0)
    scores = run.jailed(run.step, {
        "text": True, "model": staged, "dataset": str(folder), "split": params["split"], "labels": labels,
        "label_index": {name: i for i, name in enumerate(labels)}, "max_length": params.get("max_length"),
    }, reads=[model_folder, folder])
    run.reporter.log(f"accuracy {100 * scores['accuracy']:.1f} %, macro-F1 {100 * (scores['macro_f1'] or 0):.1f} % on "
                     f"{scores['rows']} {params['split']} rows of {dataset}.")
    return {"artifact": artifact.id, "dataset": dataset.id, "dataset_name": str(dataset), "split": params["split"],
            "labels": labels, "modality": "text", **scores}
