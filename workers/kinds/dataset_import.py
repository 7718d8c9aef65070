"""The dataset import job on the worker: stage what it reads, run its step in the jail, publish what it made,
images or text rows (webapp/jobs/kinds.py declares it; workers/tasks.py registers it as `jobs.dataset_import`)."""

import json

from django.conf import settings

from webapp.core.files import local_file
from webapp.core.modality import Modality
from webapp.core.quota import quota_left
from webapp.datasets.models import AUTO_MODALITY, Dataset
from webapp.datasets.services import dataset_publish
from workers.jail import checked_tree
from workers.kinds.staging import staging
from workers.pipeline.data import ImageItem
from workers.pipeline.reporting import JobError
from workers.pipeline.text.rows import read_text_dataset
from workers.runner import JobRun


def perform(run: JobRun) -> dict:
    """Unpack an uploaded archive under hard limits, validate every image or row, publish the dataset."""
    dataset = Dataset.objects.select_related("upload", "project__team").get(id=run.params["dataset"])
    if dataset.upload is None or not dataset.upload.complete:
        raise JobError("The uploaded archive is gone; upload it again as a new dataset.")
    # the archive's own bytes are freed once the import succeeds
    room = min(settings.DATASET_MAX_EXTRACTED_BYTES, quota_left(dataset.project.team) + dataset.upload.length)
    limits = {"max_bytes": room, "max_files": settings.DATASET_MAX_FILES,
              "max_ratio": settings.DATASET_MAX_COMPRESSION_RATIO}
    archive = local_file(dataset.upload.storage_key, staging(run))
    result = run.jailed(run.step, {
        "archive": str(archive), "name": dataset.archive_name, "limits": limits,
        "config": {"val_fraction": dataset.val_fraction, "seed": dataset.seed, "labelling": dataset.labelling},
        "modality": dataset.modality,
        "text": {"val_fraction": dataset.val_fraction, "seed": dataset.seed, "columns": dataset.columns,
                 "max_rows": settings.DATASET_TEXT_MAX_ROWS, "max_file_bytes": settings.DATASET_TEXT_MAX_FILE_BYTES,
                 "max_text_chars": settings.DATASET_TEXT_MAX_CHARS},
    }, reads=[archive])
    run.reporter.stage("publishing")
    folder = run.work / "dataset"
    files = checked_tree(folder, max_bytes=room)
    made = result.get("modality")
    if made not in Modality.values or dataset.modality not in (made, AUTO_MODALITY):
        raise JobError("The import made another kind of dataset than the one asked for, so nothing was published.")
    if made == Modality.TEXT:
        return _publish_text(dataset, folder, files, result)
    index = json.loads((folder / "index.json").read_text()) if "index.json" in files else {}
    items, classes, labelled = described(index, files, images=result["images"], labelling=dataset.labelling)
    dataset_publish(dataset=dataset, folder=folder, items=items, classes=classes, report=index["report"],
                    size=sum(files.values()), labelled=labelled)
    return {"dataset": dataset.id, "images": len(items), "classes": len(classes),
            "skipped": index["report"].get("skipped_count", 0)}


def _publish_text(dataset: Dataset, folder, files: dict[str, int], result: dict) -> dict:
    """Publish a text dataset, believed only where it holds together: exactly its two files, every
    row valid (read_text_dataset checks each), as many as the step reported, and a report."""
    data = read_text_dataset(folder) if set(files) == {"index.json", "rows.jsonl"} else None
    if data is None or len(data.rows) != result.get("rows") or not data.report or len(data.classes) < 2:
        raise JobError("The import's index does not describe what it made, so nothing was published.")
    dataset_publish(dataset=dataset, folder=folder, items=[], classes=data.classes, report=data.report,
                    size=sum(files.values()), modality=Modality.TEXT, rows=len(data.rows))
    return {"dataset": dataset.id, "rows": len(data.rows), "classes": len(data.classes),
            "skipped": data.report.get("skipped_count", 0)}


def described(index: dict, files: dict[str, int], *, images: int,
              labelling: str) -> tuple[list[ImageItem], list[str], bool]:
    """The items, classes and whether it is labelled, as the jailed import's index says, believed only
    where it holds together: every item checked (_dataset_item), the count the step reported, a
    report, classes exactly when labelled, and labelled or not as the uploader asked (unless auto)."""
    classes = [str(name) for name in index.get("classes", [])]
    labelled = index.get("labelled") is True
    items = [_dataset_item(item, files, classes, labelled) for item in index.get("items", [])]
    asked = {"labelled": True, "unlabelled": False}.get(labelling, labelled)
    if (len(items) != images or not isinstance(index.get("report"), dict) or labelled != asked
            or labelled != bool(classes)):
        raise JobError("The import's index does not describe what it made, so nothing was published.")
    return items, classes, labelled


def _dataset_item(facts: dict, files: dict[str, int], classes: list[str], labelled: bool) -> ImageItem:
    """An image the jailed import describes, believed only where the published folder agrees:
    its paths are files in it (a path could name another dataset's files), its class is listed
    (an unlabelled dataset's images have none and are all for training: calibration)."""
    item = ImageItem(**facts)
    fits = item.label in classes and item.split in ("train", "val", "test") if labelled else (
        item.label == "" and item.split == "train")
    if f"images/{item.path}" not in files or item.thumb not in files or not fits:
        raise JobError("The import described an image it did not write, so nothing was published.")
    return item
