from django.conf import settings
from django.db import models

from webapp.core.modality import Modality
from webapp.jobs.models import ACTIVE_STATES, Job
from webapp.projects.models import Project
from webapp.uploads.models import Upload


class Labelling(models.TextChoices):
    AUTO = "auto", "Decide from the archive (class folders: labelled; loose images: unlabelled)"
    LABELLED = "labelled", "Labelled: one folder per class, train/val folders or a CSV manifest"
    UNLABELLED = "unlabelled", "Unlabelled: images only, any folders; for calibration only"


AUTO_MODALITY = "auto"  # asked at upload: the import decides from the file (.csv/.tsv/.jsonl or a zip of them: text)
TEXT_COLUMNS = ("text", "text_pair", "label", "split")


class Dataset(models.Model):
    """One version of a named classification dataset of images or of text rows. Immutable once imported: jobs use
    it by id, and a new upload under the same name makes the next version. An unlabelled one
    (images without classes, all in its train split) serves only post-training calibration."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=100)
    # Until the import publishes, what the uploader asked for (auto included); then what it is.
    modality = models.CharField(max_length=8, choices=[(AUTO_MODALITY, "Decide from the file"), *Modality.choices],
                                default=Modality.IMAGES)
    version = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    # The archive it came from; the upload itself is deleted once the import succeeds.
    upload = models.ForeignKey(Upload, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    archive_name = models.CharField(max_length=255)
    archive_sha256 = models.CharField(max_length=64)
    import_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    val_fraction = models.FloatField(default=0.2, help_text="Used only when the archive has no train/val split.")
    seed = models.IntegerField(default=0, help_text="Seed of the generated train/val split.")
    # Until the import publishes, what the uploader asked for (auto included); then what it is.
    labelling = models.CharField(max_length=10, choices=Labelling.choices, default=Labelling.LABELLED)

    columns = models.JSONField(default=dict, blank=True, help_text=(
        "A text upload's column names ({text, text_pair, label, split}); missing ones are the defaults."))

    imported_at = models.DateTimeField(null=True, blank=True, help_text="Set once, when the files are published.")
    size_bytes = models.BigIntegerField(default=0)
    image_count = models.PositiveIntegerField(default=0, help_text="Its images, or a text dataset's rows.")
    classes = models.JSONField(default=list)
    report = models.JSONField(default=dict)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["project", "name", "version"], name="one_dataset_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def labelled(self) -> bool:
        return self.labelling != Labelling.UNLABELLED

    @property
    def is_text(self) -> bool:
        return self.modality == Modality.TEXT

    @property
    def holding(self) -> str:
        """What it holds in words: "1,200 images" or "1,200 rows" (a text dataset holds no images)."""
        noun = "row" if self.is_text else "image"
        return f"{self.image_count:,} {noun}{'' if self.image_count == 1 else 's'}"

    @property
    def storage_prefix(self) -> str:
        return f"datasets/{self.id}"

    @property
    def state(self) -> str:
        """ready, importing or failed — read from the import job, so there is one truth."""
        if self.imported_at:
            return "ready"
        if self.import_job and self.import_job.state in ACTIVE_STATES:
            return "importing"
        return "failed"


class Split(models.TextChoices):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class DatasetItem(models.Model):
    """One image of an imported dataset: what the gallery pages through and jobs read."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()
    path = models.CharField(max_length=500, help_text="Relative to the dataset's images/ folder.")
    thumb = models.CharField(max_length=100, help_text="Relative to the dataset's folder.")
    label = models.CharField(max_length=200, help_text="Empty in an unlabelled dataset.")
    split = models.CharField(max_length=5, choices=Split.choices)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    mode = models.CharField(max_length=10)
    format = models.CharField(max_length=10)

    class Meta:
        ordering = ["dataset", "index"]
        constraints = [models.UniqueConstraint(fields=["dataset", "index"], name="one_item_per_index")]
        indexes = [models.Index(fields=["dataset", "label", "split", "index"])]
