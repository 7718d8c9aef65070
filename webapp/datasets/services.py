"""Dataset verbs: create from a finished upload (and start its import), publish what the import
built, delete. A dataset is immutable once published; jobs read it by id."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from webapp.core import files
from webapp.core.exceptions import Conflict
from webapp.core.quota import quota_reserved
from webapp.core.modality import Modality
from webapp.datasets.models import AUTO_MODALITY, TEXT_COLUMNS, Dataset, DatasetItem, Labelling
from webapp.datasets.selectors import active_jobs_using, next_version
from webapp.jobs.selectors import job_with_key
from webapp.jobs.services import job_submit
from webapp.projects.models import Project
from webapp.uploads.models import Upload
from webapp.uploads.services import upload_check, upload_claim, upload_delete

SEED_MAX = 2**31 - 1  # the split's seed column is a 32-bit integer


def dataset_create(
    *,
    project: Project,
    user,
    name: str,
    upload: Upload,
    sha256: str = "",
    description: str = "",
    val_fraction: float = 0.2,
    seed: int = 0,
    labelling: str = Labelling.AUTO,
    modality: str = AUTO_MODALITY,
    columns: dict | None = None,
    idempotency_key: str | None = None,
) -> Dataset:
    """Check the upload, record the dataset as the next version of `name`, start the import.
    `labelling` auto lets the archive decide (class folders: labelled; loose images: unlabelled);
    `modality` auto lets the file decide (rows or a zip of them: text); `columns` names a text
    upload's columns where they are not text, text_pair, label and split.
    A repeat of the same idempotency key answers with the dataset the first one made."""
    if repeat := job_with_key(project_id=project.id, user=user, key=idempotency_key, kind="dataset_import"):
        return Dataset.objects.get(id=repeat.params["dataset"])
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the dataset a name."})
    upload_check(upload=upload, team_id=project.team_id, user=user, sha256=sha256)
    if not 0.0 <= val_fraction < 1.0:
        raise ValidationError({"val_fraction": "Use a fraction from 0 up to (not including) 1."})
    if not 0 <= seed <= SEED_MAX:
        raise ValidationError({"seed": f"The seed is a whole number from 0 to {SEED_MAX}."})
    if labelling not in Labelling.values:
        raise ValidationError({"labelling": f"Choose one of {', '.join(Labelling.values)}."})
    if modality not in (AUTO_MODALITY, *Modality.values):
        raise ValidationError({"modality": f"Choose one of {AUTO_MODALITY}, {', '.join(Modality.values)}."})
    if modality == Modality.TEXT and labelling == Labelling.UNLABELLED:
        raise ValidationError({"labelling": "A text dataset needs a label column: rows without labels are not "
                                            "imported as text."})
    columns = text_columns(columns or {})
    with transaction.atomic():
        upload_claim(upload=upload)  # first: of racing requests one goes on, the others stop here
        dataset = Dataset.objects.create(
            project=project,
            name=name[:100],
            version=next_version(project.id, name),
            description=description,
            created_by=user,
            upload=upload,
            archive_name=upload.filename,
            archive_sha256=upload.sha256,
            val_fraction=val_fraction,
            seed=seed,
            labelling=labelling,
            modality=modality,
            columns=columns,
        )
        dataset_import_start(dataset=dataset, user=user, idempotency_key=idempotency_key)
    return dataset


def text_columns(columns: dict) -> dict:
    """The column names a text upload gave (blank ones left out: the defaults), checked."""
    chosen = {}
    for key, name in columns.items():
        if key not in TEXT_COLUMNS:
            raise ValidationError({"columns": f"“{key}” is not a column role; use {', '.join(TEXT_COLUMNS)}."})
        name = str(name or "").strip()
        if len(name) > 100 or any(not char.isprintable() for char in name):
            raise ValidationError({"columns": f"The {key} column's name must be a short, printable name."})
        if name:
            chosen[key] = name
    if len(set(chosen.values())) != len(chosen):
        raise ValidationError({"columns": "Give each column role a different column."})
    return chosen


def dataset_import_start(*, dataset: Dataset, user, idempotency_key: str | None = None) -> None:
    """Submit the import job; also how a failed import is tried again from the kept upload (where a
    repeat of the same idempotency key changes nothing)."""
    if repeat := job_with_key(project_id=dataset.project_id, user=user, key=idempotency_key, kind="dataset_import"):
        if repeat.params["dataset"] != dataset.id:
            raise Conflict(f"This Idempotency-Key imported another dataset (job #{repeat.id}); send a new key.")
        return
    if dataset.imported_at:
        raise ValidationError("This dataset is already imported.")
    if dataset.upload is None:
        raise ValidationError("The uploaded archive is gone; upload it again as a new dataset.")
    if dataset.state == "importing":
        raise ValidationError("This dataset is being imported already.")
    job, _ = job_submit(
        project=dataset.project,
        user=user,
        kind="dataset_import",
        params={"dataset": dataset.id},  # the job reads it: it is in use while it imports
        idempotency_key=idempotency_key,
    )
    dataset.import_job = job
    dataset.save(update_fields=["import_job"])


def dataset_publish(*, dataset: Dataset, folder: Path, items: list, classes: list[str], report: dict, size: int,
                    labelled: bool = True, modality: str = Modality.IMAGES, rows: int = 0) -> None:
    """Move the built folder into storage and record its items (images; a text dataset's `rows` stay
    in its rows.jsonl), in one step a reader sees whole; an "auto" dataset becomes what the upload
    turned out to hold."""
    files.publish_tree(folder, dataset.storage_prefix)
    try:
        # charged to the team's quota as it becomes visible; the archive it came from is freed
        with quota_reserved(dataset.project.team_id, size, releasing=dataset.upload.length if dataset.upload else 0):
            DatasetItem.objects.bulk_create(
                (
                    DatasetItem(
                        dataset=dataset, index=index, path=item.path, thumb=item.thumb, label=item.label,
                        split=item.split, width=item.width, height=item.height, mode=item.mode, format=item.format,
                    )
                    for index, item in enumerate(items)
                ),
                batch_size=2000,
            )
            Dataset.objects.filter(id=dataset.id).update(
                imported_at=timezone.now(), size_bytes=size, classes=classes, report=report,
                image_count=rows if modality == Modality.TEXT else len(items), modality=modality,
                labelling=Labelling.LABELLED if labelled else Labelling.UNLABELLED,
            )
    except BaseException:
        files.delete_tree(dataset.storage_prefix)
        raise
    if dataset.upload:
        upload_delete(upload=dataset.upload)  # the archive's work is done


def dataset_require_labels(*, dataset: Dataset, job: str) -> None:
    """Refuse an unlabelled dataset to a job that scores or trains: it serves calibration only."""
    if not dataset.labelled:
        raise ValidationError({"params.dataset": (
            f"“{dataset}” is unlabelled: usable for calibration only. {job} needs labels; choose a labelled "
            f"dataset of the model's classes.")})


def dataset_delete(*, dataset: Dataset) -> None:
    """Refused while a job reads it; otherwise its files, items and archive go."""
    users = active_jobs_using(dataset)
    if users:
        names = ", ".join(f"{job.kind_label.lower()} job #{job.id} ({job.state})" for job in users)
        raise ValidationError(f"“{dataset}” is in use by {names}. Cancel it or wait for it to finish, then delete.")
    upload, prefix = dataset.upload, dataset.storage_prefix
    dataset.delete()
    files.delete_tree(prefix)
    if upload:
        upload_delete(upload=upload)
