"""Registry verbs: a model from uploaded files (and its inspection job), metadata edits, publishing
what a job built, downloads, deletion. Artifacts are immutable once ready; jobs read them by id."""

import hashlib
import io
import json
import mimetypes
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header

from webapp.core import files
from webapp.core.modality import Modality
from webapp.core.numbers import whole_number
from webapp.core.quota import quota_reserved
from webapp.datasets.services import dataset_require_labels
from webapp.hosts.selectors import most_training_gpus
from webapp.jobs.models import Job
from webapp.jobs.selectors import job_with_key
from webapp.jobs.services import job_submit, params_validate
from webapp.optimize.deploy_text import PROGRAM_NAME, text_snippet
from webapp.optimize.fit import modalities_fit, refuse_non_image
from webapp.projects.models import Project
from webapp.registry.models import Artifact, Format, Model, Origin, Scores
from webapp.registry.selectors import active_jobs_of_model, active_jobs_using
from webapp.uploads.models import Upload
from webapp.uploads.services import upload_check, upload_claim, upload_delete
from workers.pipeline import preprocessing as recipe
from workers.pipeline.outputs import score_count
from workers.pipeline.text.configs import TEXT_ARCHITECTURES

TEXT_DEFAULT_ARCHITECTURE = "bert-mini"  # a text run from scratch that names no shape

NUM_CLASSES_MAX = 1_000_000  # more outputs than a classifier has, and far below the column's 2**31 - 1


def labels_clean(labels) -> list[str]:
    """One class name per output, in order: from a list or one name per line."""
    if isinstance(labels, str):
        labels = labels.splitlines()
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ValidationError({"labels": "Give the class names as a list of strings (or one per line)."})
    labels = [label.strip() for label in labels if label.strip()]
    if len(set(labels)) != len(labels):
        raise ValidationError({"labels": "Each class name may appear once."})
    return labels


def num_classes_clean(value) -> int | None:
    """A class count from a form or JSON: blank is none, else a whole number from 1 to NUM_CLASSES_MAX."""
    if value in (None, ""):
        return None
    count = whole_number(value, low=1, high=NUM_CLASSES_MAX)
    if count is None:
        raise ValidationError({"num_classes": f"The class count is a whole number from 1 to {NUM_CLASSES_MAX}."})
    return count


def preprocessing_clean(value: dict) -> dict:
    """Every setting of workers/pipeline/preprocessing.py checked, unset ones at their defaults."""
    try:
        return recipe.clean(value)
    except recipe.PreprocessingError as error:
        raise ValidationError({("preprocessing" if key == "preprocessing" else f"preprocessing.{key}"): message
                               for key, message in error.errors.items()}) from None


def model_upload(
    *,
    project: Project,
    user,
    name: str,
    uploads: list[Upload],
    declared_format: str = "",
    architecture: str = "",
    num_classes: int | str | None = None,
    labels=None,
    sha256s: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> Artifact:
    """An artifact from one or two finished uploads (IR: .xml + .bin), under a new or existing
    model of that name; its files are checked and inspected by a job on a worker. A repeat of the
    same idempotency key answers with the artifact the first one made."""
    if repeat := job_with_key(project_id=project.id, user=user, key=idempotency_key, kind="model_import"):
        return Artifact.objects.get(id=repeat.params["artifact"])
    name = name.strip()
    num_classes = num_classes_clean(num_classes)
    if not name:
        raise ValidationError({"name": "Give the model a name."})
    if not 1 <= len(uploads) <= 2:
        raise ValidationError({"uploads": "Upload one file, a zip, or an IR's .xml and .bin."})
    for upload in uploads:
        upload_check(upload=upload, team_id=project.team_id, user=user, sha256=(sha256s or {}).get(str(upload.id), ""),
                     field="uploads")
    if declared_format and declared_format not in Format.values:
        raise ValidationError({"format": f"Format is one of {', '.join(Format.values)}."})
    if declared_format == Format.STATE_DICT or architecture:
        if not architecture or not num_classes:
            raise ValidationError({"architecture": "A state_dict needs its torchvision architecture and class count."})
    clean_labels = labels_clean(labels or [])
    with transaction.atomic():
        for upload in uploads:  # first: of racing requests one goes on, the others stop here
            upload_claim(upload=upload, field="uploads")
        model, _ = Model.objects.get_or_create(project=project, name=name[:100], defaults={"created_by": user})
        if clean_labels and not model.labels:
            model.labels = clean_labels
            model.save(update_fields=["labels", "updated_at"])
        artifact = Artifact.objects.create(
            model=model, origin=Origin.UPLOADED, architecture=architecture, num_classes=num_classes or None,
            source_names=[upload.filename for upload in uploads], created_by=user,
        )
        artifact.uploads.set(uploads)
        job, _ = job_submit(
            project=project, user=user, kind="model_import",
            params={"artifact": artifact.id, "format": declared_format}, model=model, idempotency_key=idempotency_key,
        )
        artifact.job = job
        artifact.save(update_fields=["job"])
    return artifact


def model_train(*, project: Project, user, dataset, params: dict, init: Artifact | None = None,
                idempotency_key: str | None = None) -> Job:
    """Start a training run on a ready dataset of this project's team; mismatches that can be seen
    now are refused now, naming both values. A repeat of the same idempotency key answers with the first run."""
    if repeat := job_with_key(project_id=project.id, user=user, key=idempotency_key, kind="train"):
        return repeat
    if dataset.project.team_id != project.team_id or dataset.state != "ready":
        raise ValidationError({"params.dataset": "Choose a ready dataset of this team."})
    dataset_require_labels(dataset=dataset, job="Training")
    if len(dataset.classes) < 2:
        raise ValidationError({"params.dataset": f"“{dataset}” has {len(dataset.classes)} class; training needs at least 2."})
    existing = Model.objects.filter(project=project, name=str(params.get("model_name", "")).strip()).first()
    if existing:
        modalities_fit(model=existing, dataset=dataset, field="params.model_name")
    if existing and existing.labels and existing.labels != dataset.classes:
        raise ValidationError({"params.model_name": (
            f"Model “{existing}” has the classes {', '.join(existing.labels[:8])}; dataset “{dataset}” has "
            f"{', '.join(dataset.classes[:8])}. Train under a new model name.")})
    if init is not None:
        if init.model.project.team_id != project.team_id or init.state != "ready":
            raise ValidationError({"params.init_artifact": "Choose a ready artifact of this team."})
        modalities_fit(model=init.model, dataset=dataset, field="params.init_artifact", labels=False)  # a new head
    if dataset.modality == Modality.TEXT:
        params = _text_train_params(params, init)
    else:
        _image_train_params(params, init)
    params = {**params, "dataset": dataset.id, "init_artifact": init.id if init else None}
    validated = params_validate("train", params)
    if dataset.modality == Modality.TEXT:
        _refuse_image_settings(validated)
    name = validated["model_name"]  # checked before a model of that name is made
    if validated["gpus"] > 1 and (most := most_training_gpus()) < validated["gpus"]:
        raise ValidationError({"params.gpus": (
            f"No worker of this site trains on {validated['gpus']} GPUs of one host"
            + (f" (the most is {most}); ask for {most}." if most > 1 else "; ask for 1 GPU.")
            + " An administrator starts workers that own several GPUs (docs/operations.md).")})
    with transaction.atomic():
        # The model exists from the run's start (without artifacts until a run publishes one), so
        # every run is its run by relation: a failed first run too, and all of them after a rename.
        model, _ = Model.objects.get_or_create(project=project, name=name,
                                               defaults={"created_by": user, "modality": dataset.modality})
        job, _ = job_submit(project=project, user=user, kind="train", params=params, model=model,
                            idempotency_key=idempotency_key)
    return job


# Settings only image training reads (workers/pipeline/training.py), at their defaults.
IMAGE_ONLY = {"optimizer": "adamw", "momentum": 0.9, "schedule": "cosine", "step_size": 10, "gamma": 0.1,
              "augment": "standard", "flip": False, "input_size": None, "workers": None, "checkpoint_minutes": 5,
              "gpus": 1}


def _text_train_params(params: dict, init: Artifact | None) -> dict:
    """A text run's parameters: from a transformers artifact, or a built-in shape (bert-mini unless
    named); image-only settings other than their defaults are refused, naming them."""
    if init is not None and init.format != Format.TRANSFORMERS:
        raise ValidationError({"params.init_artifact": (
            f"A text classifier is fine-tuned from a Hugging Face transformers folder, not "
            f"{init.get_format_display()}; upload the folder save_pretrained() writes.")})
    architecture = params.get("architecture") or TEXT_DEFAULT_ARCHITECTURE
    if architecture not in TEXT_ARCHITECTURES:
        raise ValidationError({"params.architecture": (
            f"{architecture} is an image architecture; a text classifier trains from a transformers model or from "
            f"one of {', '.join(TEXT_ARCHITECTURES)}.")})
    return {**params, "architecture": architecture}


def _refuse_image_settings(validated: dict) -> None:
    given = [name for name, default in IMAGE_ONLY.items() if validated.get(name, default) != default]
    if given:
        raise ValidationError({f"params.{given[0]}": (
            f"{', '.join(given)} {'is an image-training setting' if len(given) == 1 else 'are image-training settings'}"
            "; text training uses AdamW with a linear warm-up and decay. Leave "
            f"{'it' if len(given) == 1 else 'them'} unset for a text dataset.")})


def _image_train_params(params: dict, init: Artifact | None) -> None:
    architecture = params.get("architecture")
    if architecture in TEXT_ARCHITECTURES:
        raise ValidationError({"params.architecture": (
            f"{architecture} is a text model shape; choose an image architecture for an image dataset.")})
    if params.get("max_length") not in (None, ""):
        raise ValidationError({"params.max_length": "max_length is a text-training setting; leave it unset for an "
                                                    "image dataset."})
    if init is not None:
        if init.format not in (Format.STATE_DICT, Format.TORCHSCRIPT):
            raise ValidationError({"params.init_artifact": f"Fine-tuning starts from a state_dict or TorchScript artifact, "
                                                           f"not {init.get_format_display()}."})
        refuse_non_image(init, "params.init_artifact")
        if init.format == Format.STATE_DICT and init.architecture != params.get("architecture", init.architecture):
            raise ValidationError({"params.architecture": f"The artifact is a {init.architecture}; you chose {params.get('architecture')}."})


def artifact_record(*, parent: Artifact | None, job: Job, origin: str, folder: Path, fmt: str, primary: str,
                    inspection: dict, metrics: dict, model: Model | None = None, architecture: str = "",
                    num_classes: int | None = None) -> Artifact:
    """A job's output (converted, quantized, trained…) as a new artifact: of the parent's model,
    or of `model` for a run that starts from scratch."""
    # One transaction: a worker killed while its files go up leaves no row, only objects that no
    # row names, which the storage sweep removes (webapp/core/sweep.py); a refusal (over the
    # quota) or a failed upload leaves no artifact behind either.
    with transaction.atomic():
        artifact = Artifact.objects.create(
            model=model or parent.model, origin=origin, parent=parent, job=job,
            architecture=architecture or (parent.architecture if parent else ""),
            num_classes=num_classes or (parent.num_classes if parent else None), metrics=metrics,
            created_by=job.created_by,
        )
        artifact_publish(artifact=artifact, folder=folder, fmt=fmt, primary=primary, inspection=inspection)
    artifact.refresh_from_db()
    return artifact


def model_take_inspection(*, model: Model, inspection: dict) -> str:
    """What an uploaded model says of itself, where its model does not say it yet: the class names
    it carries (awaiting confirmation on the model's page), which output holds the class scores and
    whether they are probabilities. Returns a warning where the file's names differ from the model's."""
    fields, warning = [], ""
    labels = inspection.get("labels") or []
    if labels and model.labels and labels != model.labels:
        warning = (f"The file names its classes {', '.join(labels[:8])}{' …' if len(labels) > 8 else ''} (in "
                   f"{inspection.get('labels_source', 'the file')}); model “{model}” keeps its labels "
                   f"{', '.join(model.labels[:8])}{' …' if len(model.labels) > 8 else ''}. Check which order is right.")
    elif labels and not model.labels:
        model.labels, model.labels_source, model.labels_confirmed = labels, inspection.get("labels_source", "")[:120], False
        fields += ["labels", "labels_source", "labels_confirmed"]
    if not model.scores and inspection.get("scores") in Scores.values:
        model.scores, fields = inspection["scores"], fields + ["scores"]
    index = inspection.get("scores_output", 0)
    if index != model.output_index and isinstance(index, int) and model.artifacts.exclude(ready_at=None).count() <= 1:
        model.output_index, fields = index, fields + ["output_index"]  # the first artifact decides; later ones follow
    if fields:
        model.save(update_fields=[*fields, "updated_at"])
    return warning


def model_update(*, model: Model, name: str | None = None, description: str | None = None, labels=None,
                 preprocessing=None, labels_confirmed: bool | None = None, scores: str | None = None,
                 output_index: int | None = None) -> Model:
    """Edit a model's metadata. Labels a person gives are confirmed; `labels_confirmed` confirms the
    ones read from the model's file as they are."""
    fields = []
    if name is not None:
        name = name.strip()
        if not name:
            raise ValidationError({"name": "Give the model a name."})
        if Model.objects.filter(project_id=model.project_id, name=name).exclude(id=model.id).exists():
            raise ValidationError({"name": f"This project already has a model named “{name}”."})
        model.name, fields = name, fields + ["name"]
    if description is not None:
        model.description, fields = description, fields + ["description"]
    if labels is not None:
        clean = labels_clean(labels)
        if clean != model.labels:
            model.labels, model.labels_source, fields = clean, "", fields + ["labels", "labels_source"]
        model.labels_confirmed, fields = True, fields + ["labels_confirmed"]
        outputs = {a.num_classes for a in model.artifacts.all() if a.num_classes}
        if model.labels and outputs and len(model.labels) not in outputs:
            raise ValidationError({"labels": f"The model has {' or '.join(map(str, sorted(outputs)))} outputs; you gave {len(model.labels)} class names."})
    if labels_confirmed is not None and labels is None:
        model.labels_confirmed, fields = bool(labels_confirmed), fields + ["labels_confirmed"]
    if scores is not None:
        if scores not in Scores.values:
            raise ValidationError({"scores": f"Scores are one of {', '.join(Scores.values)}."})
        model.scores, fields = scores, fields + ["scores"]
    if output_index is not None:
        outputs = max((len(a.inspection.get("outputs") or []) for a in model.artifacts.all()), default=0)
        if not isinstance(output_index, int) or not 0 <= output_index < max(outputs, 1):
            raise ValidationError({"output_index": f"The model has {outputs} output{'s' if outputs != 1 else ''}; "
                                                   f"choose one from 0 to {max(outputs - 1, 0)}."})
        model.output_index, fields = output_index, fields + ["output_index"]
    if preprocessing is not None:  # the settings given replace the model's; the others stay
        merged = {**recipe.complete(model.preprocessing), **preprocessing} if isinstance(preprocessing, dict) else preprocessing
        model.preprocessing = preprocessing_clean(merged)
        fields += ["preprocessing"]
    if fields:
        model.save(update_fields=[*fields, "updated_at"])
    return model


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(2**20):
            hasher.update(block)
    return hasher.hexdigest()


def artifact_publish(*, artifact: Artifact, folder: Path, fmt: str, primary: str, inspection: dict) -> None:
    """Move a job's finished folder into storage and record what it holds, in one step."""
    listing = [
        {"name": path.relative_to(folder).as_posix(), "size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
    ]
    main = next(entry for entry in listing if entry["name"] == primary)
    inspection = dict(inspection)
    graph = inspection.pop("graph", None) or None  # its own column: pages that list artifacts never read it
    if graph and graph.get("nodes"):
        inspection["graph_nodes"] = len(graph["nodes"])  # what says there is one to show
    outputs = inspection.get("outputs") or []
    index = inspection.get("scores_output", 0)
    classes = score_count(outputs[index].get("shape")) if isinstance(index, int) and index < len(outputs) else None
    size = sum(entry["size"] for entry in listing)
    uploads = list(artifact.uploads.all())
    team_id = Model.objects.filter(id=artifact.model_id).values_list("project__team_id", flat=True).get()
    files.publish_tree(folder, artifact.storage_prefix)
    try:
        # charged to the team's quota as it becomes visible; the uploads it came from are freed
        with quota_reserved(team_id, size, releasing=sum(upload.length for upload in uploads)):
            Artifact.objects.filter(id=artifact.id).update(
                ready_at=timezone.now(), format=fmt, precision=inspection.get("precision", ""), files=listing,
                primary=primary, sha256=main["sha256"], size_bytes=size,
                inspection=inspection, graph=graph, num_classes=artifact.num_classes or (classes if isinstance(classes, int) else None),
            )
    except BaseException:
        files.delete_tree(artifact.storage_prefix)
        raise
    for upload in uploads:
        upload_delete(upload=upload)  # the files now live with the artifact


def model_input_from_artifact(*, artifact: Artifact) -> tuple[str, str] | None:
    """What a newly inspected artifact's input says of its model's input size, as (log line, level):
    a model's first artifact with a fixed image size sets the model's size and layout (a new model
    has ImageNet's 224×224 NCHW); an input of unknown height and width is fed the model's size,
    and the log says so, never silently."""
    geometry = recipe.input_geometry(artifact.inspection.get("inputs") or [])
    if geometry is None:
        return None
    model = artifact.model
    current = recipe.complete(model.preprocessing)
    height, width = current["input_size"]
    shape = "[" + ", ".join(str(v) for v in artifact.inspection["inputs"][0]["shape"]) + "]"
    if geometry["size"] is None:
        return (f"The model's input {shape} has no fixed height and width: jobs feed it {height}×{width} images, "
                f"the model's input size. If it expects another size, set it on the model's page.", "warning")
    low, high = recipe.SIZE_RANGE
    if (geometry["size"], geometry["layout"]) == (current["input_size"], current["layout"]) \
            or not all(low <= v <= high for v in geometry["size"]):
        return None
    fixed = "×".join(map(str, geometry["size"]))
    if model.artifacts.exclude(id=artifact.id).filter(ready_at__isnull=False).exists():
        return (f"The model's input {shape} is {fixed} {geometry['layout']}; the model's preprocessing says "
                f"{height}×{width} {current['layout']}. Jobs use the preprocessing: correct it on the model's page "
                f"if it is wrong.", "warning")
    model.preprocessing = {**current, "input_size": geometry["size"], "layout": geometry["layout"]}
    model.save(update_fields=["preprocessing", "updated_at"])
    return f"Input size set to {fixed} {geometry['layout']} from the model's input {shape}.", "info"


def model_input_note(*, model: Model, artifacts: list[Artifact]) -> str:
    """Said on the model's page while an artifact's input has no fixed height and width."""
    for artifact in artifacts:
        geometry = recipe.input_geometry(artifact.inspection.get("inputs") or []) if artifact.ready_at else None
        if geometry and geometry["size"] is None:
            height, width = recipe.complete(model.preprocessing)["input_size"]
            return (f"Artifact {artifact.id}'s input has no fixed height and width: jobs feed it {height}×{width} "
                    f"images, the input size set here. Make sure it is the size the model expects.")
    return ""


def artifact_delete(*, artifact: Artifact) -> None:
    """Refused while a job reads it; its children stay, with the link to it cut."""
    users = active_jobs_using([artifact])
    if users:
        names = ", ".join(f"{job.kind_label.lower()} job #{job.id} ({job.state})" for job in users)
        raise ValidationError(f"This artifact is in use by {names}. Cancel it or wait for it to finish, then delete.")
    uploads, prefix = list(artifact.uploads.all()), artifact.storage_prefix
    artifact.delete()
    files.delete_tree(prefix)
    for upload in uploads:
        upload_delete(upload=upload)


def model_delete(*, model: Model) -> None:
    """Refused while a job reads one of its artifacts or makes one for it (a run training it)."""
    artifacts = list(model.artifacts.all())
    users = active_jobs_of_model(model)
    if users:
        names = ", ".join(f"{job.kind_label.lower()} job #{job.id}" for job in users)
        raise ValidationError(f"“{model}” is in use by {names}. Cancel it or wait for it to finish, then delete.")
    for artifact in artifacts:
        artifact_delete(artifact=artifact)
    model.delete()


def artifact_lineage(artifact: Artifact) -> list[dict]:
    """From the first ancestor to this artifact: what each step was and which job made it."""
    chain, seen = [], set()
    while artifact and artifact.id not in seen:
        seen.add(artifact.id)
        chain.append({"artifact": artifact.id, "origin": artifact.origin, "format": artifact.format,
                      "precision": artifact.precision, "job": artifact.job_id, "sha256": artifact.sha256})
        artifact = artifact.parent
    return chain[::-1]


def artifact_metadata(artifact: Artifact) -> dict:
    """What metadata.json says: enough to feed the model exactly as Vintner evaluates it (every
    preprocessing setting, the crop rule in words, whether the IR normalises images itself), and
    nothing of the server (no paths)."""
    model = artifact.model
    inputs = artifact.inspection.get("inputs", [])
    if model.modality == Modality.TEXT:
        return {**_metadata_common(artifact), "tokenizer": _text_feeding(artifact)}
    embedded = bool(inputs) and inputs[0].get("dtype") == "u8"
    steps = recipe.describe(model.preprocessing)
    if embedded:
        steps = steps.split(";")[0] + ("; the IR takes that picture as u8 NHWC RGB and does the rest itself "
                                       "(colour order, value range, mean and std)")
    return {**_metadata_common(artifact),
            "preprocessing": {**recipe.complete(model.preprocessing), "embedded": embedded, "steps": steps}}


def _metadata_common(artifact: Artifact) -> dict:
    return {
        "model": artifact.model.name,
        "modality": artifact.model.modality,
        "artifact": artifact.id,
        "format": artifact.format,
        "precision": artifact.precision,
        "labels": artifact.model.labels,
        "inputs": artifact.inspection.get("inputs", []),
        "outputs": artifact.inspection.get("outputs", []),
        "lineage": artifact_lineage(artifact),
        "metrics": {name: ({k: v for k, v in section.items() if k != "folder"} if isinstance(section, dict) else section)
                    for name, section in artifact.metrics.items()},  # artifacts made before jail paths were left out
    }


def _text_feeding(artifact: Artifact) -> dict:
    """How a text artifact is fed: where its tokenizer files lie in the download, the longest
    sequence, and the tokenizer IR where it has one (docs/architecture.md, "Text models")."""
    names = {entry["name"] for entry in artifact.files}
    folder = "" if artifact.format == Format.TRANSFORMERS else "tokenizer/"
    details = artifact.inspection.get("details") or {}
    return {"folder": folder if folder == "" or any(n.startswith(folder) for n in names) else None,
            "class": details.get("tokenizer", ""), "max_length": details.get("max_length"),
            "openvino_tokenizer": "openvino_tokenizer.xml" if "openvino_tokenizer.xml" in names else None}


class FilesMissing(Exception):
    """An artifact's row says ready but storage has lost a file: nothing to send (410)."""


def artifact_download(request, artifact: Artifact) -> HttpResponse:
    """A single-file artifact as it is; one of several files (IR, ONNX with external data) as a zip.
    On S3 a single file comes straight from the bucket (a presigned link); otherwise the web host
    streams it from storage as it is sent: the first byte goes out at once, whatever the size.
    Refused with FilesMissing before any byte when storage lost a file (a half-failed restore)."""
    missing = [entry["name"] for entry in artifact.files if not files.exists(f"{artifact.storage_prefix}/{entry['name']}")]
    if missing:
        raise FilesMissing(f"The stored files of this artifact are missing ({', '.join(missing)}): it cannot be "
                           "downloaded until an administrator restores them from a backup.")
    if len(artifact.files) == 1:
        entry = artifact.files[0]
        name = f"{download_stem(artifact)}{Path(entry['name']).suffix}"
        if link := files.download_url(f"{artifact.storage_prefix}/{entry['name']}", name):
            return HttpResponseRedirect(link)
        blocks = files.read_blocks(f"{artifact.storage_prefix}/{entry['name']}")
        response = StreamingHttpResponse(files.for_server(request, blocks),
                                         content_type=mimetypes.guess_type(name)[0] or "application/octet-stream")
        response["Content-Length"] = entry["size"]
    else:
        name = f"{download_stem(artifact)}.zip"
        response = StreamingHttpResponse(files.for_server(request, _bundle(artifact)), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response


def download_stem(artifact: Artifact) -> str:
    """A plain file name from the model's: letters, digits, "_", "." and "-" only, and never a
    leading "-" or "." (an unzip option, a hidden file) in the command the deploy page shows."""
    parts = [artifact.model.name, artifact.format, artifact.precision or "model", str(artifact.id)]
    return re.sub(r"[^\w.-]", "_", "-".join(parts)).lstrip("-.")


class _Spout(io.RawIOBase):
    """Where a zip being written leaves its bytes until the response takes them. It cannot seek,
    so zipfile writes each member's sizes after its data (a data descriptor)."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.blocks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.blocks = b"".join(self.blocks), []
        return data


def _bundle(artifact: Artifact) -> Iterator[bytes]:
    """A zip of the artifact's files, metadata.json (labels, preprocessing, lineage, metrics) and
    SHA256SUMS over all of them (`sha256sum -c SHA256SUMS` checks it), made as it is sent. What it
    needs from the database is read now: the blocks are made in whichever thread sends them."""
    metadata = json.dumps(artifact_metadata(artifact), indent=2).encode()
    return _zipped(artifact.storage_prefix, list(artifact.files), metadata, _programs(artifact))


def _programs(artifact: Artifact) -> dict[str, bytes]:
    """A text model's IR comes with the program that runs it (classify_text.py), the tokenizer
    files being in the zip already: unzipped, it classifies a sentence as it is."""
    if artifact.model.modality != Modality.TEXT or artifact.format != Format.OPENVINO_IR:
        return {}
    return {PROGRAM_NAME: text_snippet(artifact).encode()}


# Weights go into the zip as they are: deflate (even at level 1) runs at about 40 MB/s on one core
# and saves 7-18 % of them, so it would cap every download well under a gigabit link's speed.
# The rest (the IR's XML, tokenizer files, metadata) is text and shrinks several times.
STORED_SUFFIXES = {".bin", ".onnx", ".data", ".safetensors", ".pt", ".pth"}


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=timezone.localtime().timetuple()[:6])
    info.compress_type = zipfile.ZIP_STORED if Path(name).suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
    return info


def _zipped(prefix: str, entries: list[dict], metadata: bytes, programs: dict[str, bytes] | None = None) -> Iterator[bytes]:
    sums, spout = [], _Spout()
    with zipfile.ZipFile(spout, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
        for entry in entries:
            name = entry["name"]  # canonical already: model.xml, model.bin, model.onnx…
            with bundle.open(_member(name), "w", force_zip64=True) as out:
                for block in files.read_blocks(f"{prefix}/{name}"):
                    out.write(block)
                    yield spout.take()
            sums.append(_sums_line(entry["sha256"], name))
        for name, program in {**(programs or {}), "metadata.json": metadata}.items():
            bundle.writestr(name, program)
            sums.append(_sums_line(hashlib.sha256(program).hexdigest(), name))
        bundle.writestr("SHA256SUMS", "\n".join(sums) + "\n")
    yield spout.take()


def _sums_line(digest: str, name: str) -> str:
    """One line as GNU sha256sum writes it: in a name with a backslash or a line break those are
    escaped and the line starts with a backslash, so a file name cannot add lines of its own."""
    escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return ("\\" if escaped != name else "") + f"{digest}  {escaped}"
