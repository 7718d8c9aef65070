"""What a dataset holds and a model reads: images or text. A job pairs only the same modality."""

from django.db import models


class Modality(models.TextChoices):
    IMAGES = "images", "Images"
    TEXT = "text", "Text"
