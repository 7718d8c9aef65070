"""Job kinds, each declared once: its parameters (a dataclass in workers/pipeline/params.py, from
which the serializer, the forms and the guide's table derive), its cross-field rules, its queue,
what it reads, whether it resumes, and the worker module that stages its inputs, runs its jailed
step and publishes what the step made (workers/kinds/<name>.py). Its Celery task is `jobs.<name>`:
workers/tasks.py registers one per declaration here.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from rest_framework import serializers

from webapp.jobs.params import serializer_for
from workers.pipeline import params as p
from workers.pipeline.architectures import BACKBONE_PARAMETERS
from workers.pipeline.text.configs import TEXT_ARCHITECTURES
from workers.pipeline.text.configs import parameters as text_parameters


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    params: type  # the frozen dataclass of its parameters
    route: Callable[[dict], str]  # validated params -> queue
    resumable: bool  # a lost worker's attempt continues from the last checkpoint (or starts over)
    # False for kinds only a service submits (a dataset import): their params name objects the
    # service has already checked access to, so users may not submit them by hand.
    direct: bool = True
    check: Callable[[dict], dict] | None = None  # cross-field rules on the validated params
    # The params fields that name what the job reads: job_submit makes its JobInput rows from them.
    datasets: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    # About how many bytes of storage its output takes, from the validated params, where that can be
    # told before it runs: job_submit refuses a job that would not fit the team's quota. What it
    # really makes is charged when it is published (webapp/core/quota.py), whatever this said.
    makes: Callable[[dict], int] | None = None
    step: str = ""  # its pipeline entry in the jail (workers/pipeline/steps.py); default: its name
    worker: str = ""  # the module with its stage and publish functions; default: workers.kinds.<name>

    @property
    def max_attempts(self) -> int:
        return 2 if self.resumable else 1

    @property
    def task_name(self) -> str:
        return f"jobs.{self.name}"

    @property
    def step_name(self) -> str:
        return self.step or self.name

    @property
    def worker_module(self) -> str:
        return self.worker or f"workers.kinds.{self.name}"

    @cached_property
    def serializer(self) -> type[serializers.Serializer]:
        return serializer_for(self.params, check=self.check)


ENVELOPE = ("idempotency_key", "csrfmiddlewaretoken")  # a submission's own keys, beside its parameters


def params_from_body(data, kind: str) -> dict:
    """A request body as a job's parameters. JSON arrives as a dict; a form-encoded body as a
    QueryDict, whose dict() holds every value in a list: one value a name, then, and all the
    values of the fields that take several. Any other key is refused by the kind's serializer."""
    if not hasattr(data, "getlist"):
        if not isinstance(data, dict):  # a JSON list, string, number or null: dict() of it was a 500
            raise serializers.ValidationError({"non_field_errors": ["Send the parameters as a JSON object."]})
        return {name: value for name, value in data.items() if name not in ENVELOPE}
    several = {name for name, field in KINDS[kind].serializer().fields.items()
               if isinstance(field, (serializers.ListField, serializers.MultipleChoiceField))}
    return {name: data.getlist(name) if name in several else data.get(name) for name in data if name not in ENVELOPE}


def submission_key(request) -> str | None:
    """A job submission's idempotency key: the Idempotency-Key header (the API), else the form's
    one-time idempotency_key field (every job form has one), so a repeat answers with the first job."""
    body = getattr(request, "data", None)
    if body is None:
        body = request.POST
    field = body.get("idempotency_key") if hasattr(body, "get") else None
    return request.headers.get("Idempotency-Key") or (field if isinstance(field, str) else None)


# --- cross-field rules, each kind's own ---------------------------------------------------------


def train_check(data: dict) -> dict:
    if data["warmup_epochs"] > data["epochs"]:
        raise serializers.ValidationError({"warmup_epochs": f"At most the number of epochs ({data['epochs']})."})
    return data


def quantize_check(data: dict) -> dict:
    """Blank lines of the ignored scope are dropped; a re: line must be a regular expression."""
    lines = [line.strip() for line in data["ignored_scope"] if line.strip()]
    for line in lines:
        if line.startswith("re:"):
            try:
                re.compile(line[3:])
            except re.error as error:
                raise serializers.ValidationError(
                    {"ignored_scope": f"“{line[3:]}” is not a regular expression: {error}."}) from None
    return {**data, "ignored_scope": lines}


def benchmark_check(data: dict) -> dict:
    data["hints"] = sorted(data["hints"])
    if not data["hints"] and not data["matrix"]:
        raise serializers.ValidationError({"hints": "Choose a hint or a batch × streams point to measure."})
    return data


# --- what a kind's output weighs, told before it runs ------------------------------------------


def _artifact_bytes(params: dict) -> int:
    from webapp.registry.models import Artifact  # its models import this module

    return Artifact.objects.filter(id=params["artifact"]).values_list("size_bytes", flat=True).first() or 0


def train_makes(params: dict) -> int:
    """FP32 weights: at least an image backbone's (the head depends on the classes), a built-in text
    shape's, or as many as the text model it fine-tunes."""
    if params.get("init_artifact") and params["architecture"] in TEXT_ARCHITECTURES:  # text, from a model
        return _artifact_bytes({"artifact": params["init_artifact"]})
    if params["architecture"] in TEXT_ARCHITECTURES:
        return text_parameters(params["architecture"]) * 4
    return BACKBONE_PARAMETERS.get(params["architecture"], 0) * 4


def convert_makes(params: dict) -> int:
    """The IR holds the source's weights: as they are, or half of them as FP16."""
    return _artifact_bytes(params) // (2 if params["precision"] == "fp16" else 1)


def quantize_makes(params: dict) -> int:
    """INT8 weights: about a quarter of an FP32 source's."""
    return _artifact_bytes(params) // 4


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in [
        JobKind(
            name="probe",
            label="Compute probe",
            params=p.ProbeParams,
            route=lambda params: params["queue"],
            resumable=True,
        ),
        JobKind(
            name="dataset_import",
            label="Dataset import",
            params=p.DatasetImportParams,
            route=lambda params: "optimize",
            resumable=True,  # nothing is published until the end: a second attempt starts over
            direct=False,
            datasets=("dataset",),
        ),
        JobKind(
            name="train",
            label="Training",
            params=p.TrainParams,
            check=train_check,
            route=lambda params: p.gpu_queue(params["gpus"]),  # a worker owning that many GPUs
            resumable=True,  # continues from the last epoch's checkpoint on another worker
            direct=False,  # submitted through registry.services.model_train, which checks what it names
            datasets=("dataset",),
            artifacts=("init_artifact",),
            makes=train_makes,
        ),
        JobKind(
            name="convert",
            label="Conversion to OpenVINO IR",
            params=p.ConvertParams,
            route=lambda params: "optimize",
            resumable=True,  # the new artifact is published only at the end: a second attempt starts over
            direct=False,  # submitted through the artifact (optimize.services.artifact_convert)
            datasets=("dataset",),
            artifacts=("artifact",),
            makes=convert_makes,
        ),
        JobKind(
            name="quantize",
            label="Quantization",
            params=p.QuantizeParams,
            check=quantize_check,
            # quantization-aware training trains: it goes where training goes
            route=lambda params: "train" if params["method"] == "qat" else "optimize",
            resumable=True,  # QAT continues from its last epoch; the others start over
            direct=False,  # submitted through the artifact (optimize.services.artifact_quantize)
            datasets=("dataset",),
            artifacts=("artifact",),
            makes=quantize_makes,
        ),
        JobKind(
            name="benchmark",
            label="Benchmark",
            params=p.BenchmarkParams,
            check=benchmark_check,
            route=lambda params: "train" if params["device"] == "GPU" else "optimize",  # GPU hosts take train
            resumable=True,  # measuring again is the only way on
            direct=False,  # submitted through the artifact (optimize.services.artifact_benchmark)
            artifacts=("artifact", "reference"),
        ),
        JobKind(
            name="evaluate",
            label="Evaluation",
            params=p.EvaluateParams,
            route=lambda params: "optimize",
            resumable=True,
            direct=False,  # submitted through the artifact (optimize.services.artifact_evaluate)
            datasets=("dataset",),
            artifacts=("artifact",),
        ),
        JobKind(
            name="model_import",
            label="Model inspection",
            params=p.ModelImportParams,
            route=lambda params: "optimize",
            resumable=True,  # nothing is published until the end: a second attempt starts over
            direct=False,
            artifacts=("artifact",),
        ),
    ]
}

DIRECT_KINDS = sorted(name for name, kind in KINDS.items() if kind.direct)
