"""Whether a dataset fits a model: its classes are the model's outputs, its images the model's
input. Jobs that read both (quantization, evaluation) are refused before they start, in words."""

from django.core.exceptions import ValidationError
from django.db.models import Count

from webapp.registry.models import Artifact
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


def dataset_fits(artifact: Artifact, dataset, *, split: str, purpose: str) -> None:
    """`split` of `dataset` has images, and the artifact can score them. Of an unlabelled dataset
    (plain post-training calibration, any classes) only the images are checked."""
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
        if sorted(model.labels) != sorted(classes):
            raise ValidationError({"params.dataset": (
                f"Model “{model}” has the classes {few(model.labels)}; dataset “{dataset}” has {few(classes)}. "
                f"Choose a dataset of the same classes.")})
    elif outputs and outputs != len(classes):
        raise ValidationError({"params.dataset": (
            f"The model gives {outputs} scores per image; dataset “{dataset}” has {len(classes)} classes.")})


SPLIT_WORDS = {"val": "validation", "test": "test", "train": "training"}


def output_count(artifact: Artifact) -> int | None:
    outputs = artifact.inspection.get("outputs") or []
    shape = outputs[0].get("shape") if outputs else None
    return shape[-1] if shape and isinstance(shape[-1], int) and shape[-1] > 0 else None


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
