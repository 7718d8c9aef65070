"""Whether a dataset fits a model: its classes are the model's outputs, its images the model's
input. Jobs that read both (quantization, evaluation) are refused before they start, in words."""

from django.core.exceptions import ValidationError
from django.db.models import Count

from webapp.core.modality import Modality
from webapp.registry.models import Artifact, Format
from workers.pipeline.outputs import FLOATS, score_count
from workers.pipeline.preprocessing import complete


def split_counts(dataset) -> dict[str, int]:
    return {row["split"]: row["n"] for row in dataset.items.order_by().values("split").annotate(n=Count("id"))}


def dataset_matches(artifact: Artifact, dataset) -> bool:
    """Whether the dataset has the model's classes (any order), so a form can say which do;
    dataset_fits has the last word."""
    labels = artifact.model.labels
    if not dataset.labelled:
        return True  # plain post-training calibration takes images of any classes
    if labels:
        return sorted(labels) == sorted(dataset.classes)
    return not artifact.num_classes or artifact.num_classes == len(dataset.classes)


READS = {Modality.TEXT: "reads text", Modality.IMAGES: "reads images"}
HOLDS = {Modality.TEXT: "holds text rows", Modality.IMAGES: "holds images"}


def modalities_fit(*, model, dataset, field: str = "params.dataset", labels: bool = True) -> None:
    """Every job that pairs a model with a dataset calls this before its row exists: a text model
    takes only a text dataset and an image model only images; a text dataset's labels must all be
    among the model's (its id2label), matched by name as images' classes are. `labels=False` where
    the job gives the model a new head (fine-tuning on other labels)."""
    if model.modality != dataset.modality:
        raise ValidationError({field: (
            f"Model “{model}” {READS.get(model.modality, model.modality)}; dataset “{dataset}” "
            f"{HOLDS.get(dataset.modality, dataset.modality)}. Choose a model and a dataset of the same kind.")})
    if labels and model.modality == Modality.TEXT and model.labels and dataset.classes:
        unmatched = [name for name in dataset.classes if name not in set(model.labels)]
        if unmatched:
            raise ValidationError({field: (
                f"Dataset “{dataset}” has the labels {few(unmatched)}, which model “{model}” does not know: its "
                f"labels (id2label) are {few(model.labels)}. Rename the dataset's labels (or correct the model's) "
                "so the names match.")})


def dataset_fits(artifact: Artifact, dataset, *, split: str, purpose: str) -> None:
    """`split` of `dataset` has images, and the artifact can score them. Of an unlabelled dataset
    (plain post-training calibration, any classes) only the images are checked. A text model takes
    a text dataset whose classes are its labels by name (its rows are checked in the jail)."""
    modalities_fit(model=artifact.model, dataset=dataset)
    if artifact.model.modality == Modality.TEXT:
        _text_classes_fit(artifact, dataset)
        return
    refuse_non_image(artifact, "params.dataset")
    if dataset.labelled:
        _classes_fit(artifact, dataset, split=split, purpose=purpose)
    channels = input_channels(artifact)
    if channels not in (None, 3):
        raise ValidationError({"params.dataset": (
            f"The model takes {channels}-channel input; dataset images are fed as 3-channel RGB.")})


def _classes_fit(artifact: Artifact, dataset, *, split: str, purpose: str) -> None:
    if not split_counts(dataset).get(split):
        raise ValidationError({"params.dataset": f"“{dataset}” has no {SPLIT_WORDS.get(split, split)} images {purpose}; "
                                                 f"choose another split or dataset."})
    model, classes = artifact.model, list(dataset.classes)
    outputs = artifact.num_classes or output_count(artifact)
    if model.labels:
        # Matched by name, in whatever order each lists them; a class with no name to match is refused,
        # never paired by position.
        unmatched = [name for name in classes if name not in set(model.labels)]
        if unmatched or len(classes) != len(model.labels):
            raise ValidationError({"params.dataset": (
                f"The dataset's classes do not map onto the model's labels by name. Model “{model}” has the labels "
                f"{few(model.labels)}; dataset “{dataset}” has the classes {few(classes)}"
                + (f" ({few(unmatched)} not among the model's)" if unmatched else "")
                + ". Rename the dataset's class folders (or correct the model's labels) so the names match.")})
    elif outputs and outputs != len(classes):
        raise ValidationError({"params.dataset": (
            f"The model gives {outputs} scores per image; dataset “{dataset}” has {len(classes)} classes.")})


def _text_classes_fit(artifact: Artifact, dataset) -> None:
    model, classes = artifact.model, list(dataset.classes)
    labels = model.labels or []
    unmatched = [name for name in classes if name not in set(labels)] if labels else []
    outputs = artifact.num_classes or output_count(artifact)
    if unmatched:
        raise ValidationError({"params.dataset": (
            f"The dataset's labels {few(unmatched)} are not among model “{model}”'s labels ({few(labels)}, from its "
            "id2label); rename them in the dataset or correct the model's labels so the names match.")})
    if not labels and outputs and outputs != len(classes):
        raise ValidationError({"params.dataset": (
            f"The model gives {outputs} scores per row; dataset “{dataset}” has {len(classes)} labels.")})


SPLIT_WORDS = {"val": "validation", "test": "test", "train": "training"}


def output_count(artifact: Artifact) -> int | None:
    """The classes the artifact's scores output scores ([N, C] and [N, C, 1, 1] alike)."""
    outputs = artifact.inspection.get("outputs") or []
    index = artifact.model.output_index
    return score_count(outputs[index].get("shape")) if index < len(outputs) else None


def image_input_problem(artifact: Artifact) -> str:
    """Why the artifact cannot take a batch of images, in words; "" where it can, or where nothing
    known says it cannot."""
    inspection = artifact.inspection
    inputs = inspection.get("inputs") or []
    if not inputs:
        return ""
    first = inputs[0]
    name, shape, dtype = first.get("name", "input"), first.get("shape") or [], first.get("dtype", "")
    if artifact.format == Format.TORCHSCRIPT and inspection.get("traces") is False and not shape:
        return f"its forward() failed on an image batch when it was inspected ({inspection.get('trace_error', '')})"
    if shape and len(shape) != 4:
        dims = ", ".join("?" if d is None else str(d) for d in shape)
        return f"its input “{name}” is [{dims}], not an image batch [N, 3, H, W]"
    if dtype and dtype not in (*FLOATS, "u8"):
        return f"its input “{name}” takes {dtype} values, not an image's"
    return ""


def refuse_non_image(artifact: Artifact, field: str) -> None:
    """A ValidationError on `field` where the artifact cannot take images (an audio or text model)."""
    problem = image_input_problem(artifact)
    if problem:
        raise ValidationError({field: f"{artifact} is not an image model: {problem}. This job feeds it images."})


def input_channels(artifact: Artifact) -> int | None:
    inputs = artifact.inspection.get("inputs") or []
    if not inputs or len(inputs[0].get("shape") or []) != 4:
        return None
    shape = inputs[0]["shape"]
    # u8 input: embedded NHWC preprocessing; else the layout the model's preprocessing declares
    nhwc = inputs[0].get("dtype") == "u8" or complete(artifact.model.preprocessing)["layout"] == "NHWC"
    channels = shape[3] if nhwc else shape[1]
    return channels if isinstance(channels, int) and channels > 0 else None


def few(names: list[str]) -> str:
    return ", ".join(names[:8]) + (f" … ({len(names)} in all)" if len(names) > 8 else "")
