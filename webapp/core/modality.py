"""What a dataset holds and a model reads: images or text. A job pairs only the same modality."""

from django.db import models


class Modality(models.TextChoices):
    IMAGES = "images", "Images"
    TEXT = "text", "Text"


def rate_unit(modality: str) -> str:
    """What a benchmark's or a training's throughput counts, per second."""
    return "rows/s" if modality == Modality.TEXT else "images/s"
