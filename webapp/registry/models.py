from django.conf import settings
from django.db import models

from webapp.core.modality import Modality
from webapp.jobs.models import ACTIVE_STATES, Job
from webapp.projects.models import Project
from webapp.uploads.models import Upload
from workers.pipeline import preprocessing


class Format(models.TextChoices):
    TORCHSCRIPT = "torchscript", "TorchScript"
    TORCH_EXPORT = "torch_export", "torch.export (.pt2)"
    STATE_DICT = "state_dict", "PyTorch state_dict"
    ONNX = "onnx", "ONNX"
    OPENVINO_IR = "openvino_ir", "OpenVINO IR"
    TRANSFORMERS = "transformers", "Hugging Face transformers folder"


TORCH_FORMATS = (Format.STATE_DICT, Format.TORCHSCRIPT, Format.TORCH_EXPORT)  # run by torch, not OpenVINO


class Origin(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded"
    TRAINED = "trained", "Trained"
    CONVERTED = "converted", "Converted"
    QUANTIZED = "quantized", "Quantized"


class Scores(models.TextChoices):
    LOGITS = "logits", "Logits"
    PROBABILITIES = "probabilities", "Probabilities"


def default_preprocessing() -> dict:
    """ImageNet conventions, which torchvision models expect; users edit them per model
    (every setting: workers/pipeline/preprocessing.py)."""
    return preprocessing.default_preprocessing()


class Model(models.Model):
    """A named model in a project: its class labels and preprocessing, and the artifacts that
    carry it (uploaded, trained, converted, quantized), linked into a lineage."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=100)
    modality = models.CharField(max_length=8, choices=Modality.choices, default=Modality.IMAGES)
    description = models.TextField(blank=True)
    labels = models.JSONField(default=list, blank=True, help_text="Class names, in output order.")
    labels_source = models.CharField(max_length=120, blank=True,
                                     help_text="Where the labels were read (the model's file, a labels.txt…); empty "
                                               "where a person or a training run set them.")
    labels_confirmed = models.BooleanField(default=True, help_text="False while labels read from a file await a person's word.")
    scores = models.CharField(max_length=14, choices=Scores.choices, blank=True,
                              help_text="What the scores output gives: logits, or probabilities (a softmax applied).")
    output_index = models.PositiveSmallIntegerField(default=0, help_text="The output that holds the class scores.")
    preprocessing = models.JSONField(default=default_preprocessing)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="one_model_name_per_project")]

    def __str__(self) -> str:
        return self.name


class ArtifactManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().defer("graph")  # up to 1.7 MB: only the graph page reads it


class Artifact(models.Model):
    """One file set of a model in one format and precision. Immutable once ready; jobs read it by id."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="artifacts")
    origin = models.CharField(max_length=10, choices=Origin.choices)
    format = models.CharField(max_length=20, choices=Format.choices, blank=True)
    precision = models.CharField(max_length=10, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                            help_text="The job that made it (for an upload: its inspection).")
    uploads = models.ManyToManyField(Upload, blank=True, related_name="+", help_text="Its files until inspected.")
    source_names = models.JSONField(default=list, help_text="The uploaded files' names.")
    architecture = models.CharField(max_length=40, blank=True, help_text="torchvision architecture of a state_dict.")
    num_classes = models.PositiveIntegerField(null=True, blank=True)

    ready_at = models.DateTimeField(null=True, blank=True, help_text="Set once, when its files are published.")
    files = models.JSONField(default=list, help_text="[{name, size, sha256}] in storage under artifacts/<id>/.")
    primary = models.CharField(max_length=100, blank=True, help_text="The main file's name.")
    sha256 = models.CharField(max_length=64, blank=True, help_text="Of the main file.")
    size_bytes = models.BigIntegerField(default=0)
    inspection = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # The graph view's data (IR and ONNX), kept out of `inspection` and last in the row: a list
    # that reads an artifact's other columns never reads its megabytes. Nullable, so that SQLite
    # adds the column at the end of the row (ALTER TABLE ADD COLUMN): a column stored after it
    # would be read by walking its overflow pages.
    graph = models.JSONField(null=True, blank=True, help_text="Operations and edges, for the graph page.")

    objects = ArtifactManager()

    class Meta:
        ordering = ["model", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.model} #{self.id} ({self.get_format_display() or 'inspecting'})"

    @property
    def storage_prefix(self) -> str:
        return f"artifacts/{self.id}"

    @property
    def state(self) -> str:
        """ready, inspecting or failed — read from the job that makes it."""
        if self.ready_at:
            return "ready"
        if self.job and self.job.state in ACTIVE_STATES:
            return "inspecting" if self.origin == Origin.UPLOADED else "running"
        return "failed"
