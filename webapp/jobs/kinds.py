"""Job kinds: how each kind's parameters are validated, which queue runs it, whether it resumes.

A kind's Celery task is `jobs.<name>` (workers/tasks.py); the web side only needs its name.
"""

from collections.abc import Callable
from dataclasses import dataclass

from rest_framework import serializers

from webapp.celery import QUEUES


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    params: type[serializers.Serializer]
    route: Callable[[dict], str]  # validated params -> queue
    resumable: bool  # a lost worker's attempt continues from the last checkpoint (or starts over)
    # False for kinds only a service submits (a dataset import): their params name objects the
    # service has already checked access to, so users may not submit them by hand.
    direct: bool = True

    @property
    def max_attempts(self) -> int:
        return 2 if self.resumable else 1

    @property
    def task_name(self) -> str:
        return f"jobs.{self.name}"


class ProbeParams(serializers.Serializer):
    rounds = serializers.IntegerField(min_value=1, max_value=1000, default=10)
    seconds_per_round = serializers.FloatField(min_value=0.05, max_value=60, default=1.0)
    matrix_size = serializers.IntegerField(min_value=16, max_value=8192, default=512)
    queue = serializers.ChoiceField(choices=QUEUES, default="optimize", help_text="Which kind of worker to measure.")


class DatasetImportParams(serializers.Serializer):
    dataset = serializers.IntegerField(min_value=1)


class ModelImportParams(serializers.Serializer):
    artifact = serializers.IntegerField(min_value=1)
    format = serializers.CharField(required=False, allow_blank=True, default="", help_text="As the user declared it; empty: detect.")


class ConvertParams(serializers.Serializer):
    artifact = serializers.IntegerField(min_value=1, help_text="The PyTorch or ONNX artifact to convert.")
    route = serializers.ChoiceField(
        choices=[("auto", "Direct, else via ONNX"), ("direct", "Direct"), ("onnx", "Via ONNX")], default="auto"
    )
    shape = serializers.ChoiceField(
        choices=[("static", "Static"), ("dynamic_batch", "Dynamic batch"), ("dynamic", "Fully dynamic")], default="static"
    )
    input_height = serializers.IntegerField(min_value=8, max_value=4096, required=False, help_text="Default: the model's input size.")
    input_width = serializers.IntegerField(min_value=8, max_value=4096, required=False)
    input_name = serializers.RegexField(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,63}$", required=False, allow_blank=True, default="")
    output_name = serializers.RegexField(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,63}$", required=False, allow_blank=True, default="")
    precision = serializers.ChoiceField(choices=[("fp32", "FP32"), ("fp16", "FP16-compressed weights")], default="fp32")
    opset = serializers.IntegerField(min_value=11, max_value=21, default=17, help_text="For the ONNX route.")
    embed_preprocessing = serializers.BooleanField(default=False, help_text="The IR takes u8 NHWC images of any size.")
    dataset = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                       help_text="Check equivalence on this dataset's validation images (else random inputs).")
    tolerance = serializers.FloatField(min_value=0, required=False, allow_null=True, default=None)


KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in [
        JobKind(
            name="probe",
            label="Compute probe",
            params=ProbeParams,
            route=lambda params: params["queue"],
            resumable=True,
        ),
        JobKind(
            name="dataset_import",
            label="Dataset import",
            params=DatasetImportParams,
            route=lambda params: "optimize",
            resumable=True,  # nothing is published until the end: a second attempt starts over
            direct=False,
        ),
        JobKind(
            name="convert",
            label="Conversion to OpenVINO IR",
            params=ConvertParams,
            route=lambda params: "optimize",
            resumable=True,  # the new artifact is published only at the end: a second attempt starts over
            direct=False,  # submitted through the artifact (registry.services.artifact_convert)
        ),
        JobKind(
            name="model_import",
            label="Model inspection",
            params=ModelImportParams,
            route=lambda params: "optimize",
            resumable=True,  # nothing is published until the end: a second attempt starts over
            direct=False,
        ),
    ]
}

DIRECT_KINDS = sorted(name for name, kind in KINDS.items() if kind.direct)
