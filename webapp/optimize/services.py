"""Optimize verbs: start converting, quantizing, benchmarking or evaluating a ready artifact.
Whatever would make the job fail on what it reads is refused here, in words, before it exists;
what the jobs make are the registry's artifacts (registry.services.artifact_record)."""

from django.core.exceptions import ValidationError

from webapp.core.modality import Modality
from webapp.datasets.services import dataset_require_labels
from webapp.jobs.models import Job
from webapp.jobs.selectors import job_with_key
from webapp.jobs.services import job_submit
from webapp.core.modality import Modality
from webapp.optimize.fit import dataset_fits, few, modalities_fit, refuse_non_image, split_counts
from webapp.registry.models import TORCH_FORMATS, Artifact, Format, Origin


def artifact_convert(*, artifact: Artifact, user, params: dict, dataset=None, idempotency_key: str | None = None) -> Job:
    """Start converting a ready PyTorch or ONNX artifact to OpenVINO IR; the IR becomes its child.
    A repeat of the same idempotency key answers with the first job (so do the others here)."""
    if repeat := job_with_key(project_id=artifact.model.project_id, user=user, key=idempotency_key, kind="convert"):
        return repeat
    if artifact.state != "ready":
        raise ValidationError("Only a ready artifact can be converted.")
    if artifact.format == Format.OPENVINO_IR:
        raise ValidationError("This artifact is already an OpenVINO IR.")
    if dataset is not None and (dataset.project.team_id != artifact.model.project.team_id or dataset.state != "ready"):
        raise ValidationError({"params.dataset": "Choose a ready dataset of this team."})
    if dataset is not None:
        modalities_fit(model=artifact.model, dataset=dataset)
    if artifact.model.modality == Modality.TEXT:
        _text_convertible(artifact, params)
    elif dataset is not None or params.get("embed_preprocessing") or artifact.format in TORCH_FORMATS:
        refuse_non_image(artifact, "params.artifact")  # PyTorch sources are traced on an image batch
    if artifact.model.modality != Modality.TEXT and params.get("tokenizer_ir"):
        raise ValidationError({"params.tokenizer_ir": "Only a text model has a tokenizer to convert."})
    params = {**params, "artifact": artifact.id, "dataset": dataset.id if dataset else None}
    job, _ = job_submit(project=artifact.model.project, user=user, kind="convert", params=params,
                        model=artifact.model, idempotency_key=idempotency_key)
    return job


def _text_convertible(artifact: Artifact, params: dict) -> None:
    """A text classifier converts from its transformers folder or its ONNX export, with token-id inputs."""
    if artifact.format not in (Format.TRANSFORMERS, Format.ONNX):
        raise ValidationError({"params.artifact": f"A text model converts from its Hugging Face transformers folder "
                                                  f"or its ONNX export, not {artifact.get_format_display()}."})
    if params.get("embed_preprocessing"):
        raise ValidationError({"params.embed_preprocessing": "A text model has no image preprocessing to embed; its "
                                                             "tokenizer travels with the IR."})
    if artifact.format == Format.ONNX and not (artifact.inspection.get("details") or {}).get("tokenizer"):
        raise ValidationError({"params.artifact": "This ONNX text model came without its tokenizer, so the IR could "
                                                  "neither be checked on sentences nor be used alone: upload a zip of "
                                                  "the .onnx with the tokenizer files beside it."})


QUANTIZABLE = {
    "ptq": (Format.OPENVINO_IR, Format.STATE_DICT, Format.TORCHSCRIPT, Format.TORCH_EXPORT, Format.ONNX),
    "accuracy": (Format.OPENVINO_IR, Format.STATE_DICT, Format.TORCHSCRIPT, Format.TORCH_EXPORT, Format.ONNX),
    "qat": (Format.STATE_DICT,),  # NNCF needs the module's Python code: a torchvision architecture
}


def artifact_quantize(*, artifact: Artifact, user, dataset, params: dict, idempotency_key: str | None = None) -> Job:
    """Start an INT8 quantization of a ready FP32/FP16 artifact on a dataset of this team; whatever
    would make the job fail on the data (classes, channels, splits) is refused now, in words."""
    if repeat := job_with_key(project_id=artifact.model.project_id, user=user, key=idempotency_key, kind="quantize"):
        return repeat
    method = params.get("method", "ptq")
    if artifact.state != "ready":
        raise ValidationError("Only a ready artifact can be quantized.")
    if artifact.precision == "int8" or artifact.origin == Origin.QUANTIZED:
        raise ValidationError("This artifact is INT8 already; quantize the FP32 artifact it came from.")
    if artifact.model.modality == Modality.TEXT and artifact.format != Format.OPENVINO_IR and method != "qat":
        raise ValidationError({"params.artifact": "Vintner quantizes a text model's OpenVINO IR; convert the model "
                                                  "first."})
    if method in QUANTIZABLE and artifact.format not in QUANTIZABLE[method]:  # another method: the params' 400
        allowed = ", ".join(Format(f).label for f in QUANTIZABLE[method])
        raise ValidationError({"params.method": f"{artifact.get_format_display()} artifacts cannot be quantized this way; "
                                                f"it takes {allowed}."})
    if dataset.project.team_id != artifact.model.project.team_id or dataset.state != "ready":
        raise ValidationError({"params.dataset": "Choose a ready dataset of this team."})
    _check_fit(artifact, dataset, method)
    params = {**params, "artifact": artifact.id, "dataset": dataset.id}
    job, _ = job_submit(project=artifact.model.project, user=user, kind="quantize", params=params,
                        model=artifact.model, idempotency_key=idempotency_key)
    return job


def artifact_benchmark(*, artifact: Artifact, user, params: dict, idempotency_key: str | None = None) -> Job:
    """Start measuring a ready artifact's speed; a PyTorch artifact, or an IR with a PyTorch
    ancestor, also gets torch eager measured in the same job, so speedups come from one host."""
    if repeat := job_with_key(project_id=artifact.model.project_id, user=user, key=idempotency_key, kind="benchmark"):
        return repeat
    if artifact.state != "ready":
        raise ValidationError("Only a ready artifact can be benchmarked.")
    if artifact.model.modality == Modality.TEXT and artifact.format not in (Format.OPENVINO_IR, Format.ONNX):
        raise ValidationError({"params.artifact": "Vintner benchmarks a text model's OpenVINO IR or ONNX export; "
                                                  "convert the model first."})
    if artifact.model.modality == Modality.TEXT:
        params = {**params, "torch_reference": False}  # torch eager is measured on an image batch
    # A PyTorch artifact's only measurement is torch eager: it is always its own reference.
    wanted = params.get("torch_reference", True) or artifact.format in TORCH_FORMATS
    reference = torch_ancestor(artifact) if wanted else None
    if reference is not None:  # torch eager is measured on an image batch
        refuse_non_image(reference, "params.artifact")
    params = {**params, "artifact": artifact.id, "reference": reference.id if reference else None}
    job, _ = job_submit(project=artifact.model.project, user=user, kind="benchmark", params=params,
                        idempotency_key=idempotency_key)  # makes nothing: no model
    return job


def torch_ancestor(artifact: Artifact) -> Artifact | None:
    """The artifact itself if it is PyTorch, else the nearest ready PyTorch artifact it came from."""
    seen = set()
    while artifact is not None and artifact.id not in seen:
        if artifact.format in TORCH_FORMATS and artifact.state == "ready":
            return artifact
        seen.add(artifact.id)
        artifact = artifact.parent
    return None


def artifact_evaluate(*, artifact: Artifact, user, dataset, params: dict, idempotency_key: str | None = None) -> Job:
    """Start scoring a ready artifact (PyTorch, ONNX or IR) on a split of a dataset of this team."""
    if repeat := job_with_key(project_id=artifact.model.project_id, user=user, key=idempotency_key, kind="evaluate"):
        return repeat
    if artifact.state != "ready":
        raise ValidationError("Only a ready artifact can be evaluated.")
    if dataset.project.team_id != artifact.model.project.team_id or dataset.state != "ready":
        raise ValidationError({"params.dataset": "Choose a ready dataset of this team."})
    dataset_require_labels(dataset=dataset, job="Evaluation")
    split = params.get("split", "val")
    dataset_fits(artifact, dataset, split=split, purpose="to evaluate on")
    params = {**params, "artifact": artifact.id, "dataset": dataset.id}
    job, _ = job_submit(project=artifact.model.project, user=user, kind="evaluate", params=params,
                        idempotency_key=idempotency_key)  # makes nothing: no model
    return job


METHOD_WORDS = {"accuracy": "Quantization with accuracy control", "qat": "Quantization-aware training"}


def _check_fit(artifact: Artifact, dataset, method: str) -> None:
    """What quantization needs of the dataset beyond fitting the model (fit.dataset_fits). Plain
    post-training quantization calibrates on any images: an unlabelled dataset of any classes."""
    if method in METHOD_WORDS:  # an unknown method is the params' 400
        dataset_require_labels(dataset=dataset, job=METHOD_WORDS[method])
    dataset_fits(artifact, dataset, split="val", purpose="to measure accuracy on")
    if artifact.model.modality == Modality.TEXT:
        return  # its rows are counted in the jail, where they are read
    train = split_counts(dataset).get("train", 0)
    if train < 10:
        raise ValidationError({"params.dataset": f"“{dataset}” has {train} training images; calibration needs at least 10."})
    model, classes = artifact.model, list(dataset.classes)
    if method == "qat" and model.labels and model.labels != classes:
        raise ValidationError({"params.dataset": (
            f"Quantization-aware training trains in the dataset's class order ({few(classes)}), which is "
            f"not the model's ({few(model.labels)}).")})
    size = model.preprocessing["input_size"]
    if method == "qat" and size[0] != size[1]:
        raise ValidationError({"params.method": f"Quantization-aware training takes square inputs; the model's is "
                                                f"{size[0]}×{size[1]}."})
