"""Job kinds: how each kind's parameters are validated, which queue runs it, whether it resumes.

A kind's Celery task is `jobs.<name>` (workers/tasks.py); the web side only needs its name.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from rest_framework import serializers

from webapp.celery import QUEUES
from workers.pipeline.architectures import TRAINABLE


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


def params_from_body(data, params: type[serializers.Serializer]) -> dict:
    """A request body as a job's parameters. JSON arrives as a dict; a form-encoded body as a
    QueryDict, whose dict() holds every value in a list: one value a name, then, and all the
    values of the fields that take several."""
    if not hasattr(data, "getlist"):
        return dict(data)
    several = {name for name, field in params().fields.items()
               if isinstance(field, (serializers.ListField, serializers.MultipleChoiceField))}
    return {name: data.getlist(name) if name in several else data.get(name) for name in data}


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
    samples = serializers.IntegerField(min_value=1, max_value=256, default=4,
                                       help_text="How many inputs the IR and its source both run on in the check.")
    tolerance = serializers.FloatField(min_value=0, required=False, allow_null=True, default=None)


class TrainParams(serializers.Serializer):
    """Training settings; empty ones take the architecture's defaults (workers/pipeline/training.py)."""

    dataset = serializers.IntegerField(min_value=1)
    model_name = serializers.CharField(max_length=100)
    init_artifact = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                             help_text="Fine-tune from this state_dict or TorchScript artifact.")
    architecture = serializers.ChoiceField(choices=TRAINABLE, default="resnet18")
    epochs = serializers.IntegerField(min_value=1, max_value=10_000, default=10)
    batch_size = serializers.IntegerField(min_value=1, max_value=4096, default=32)
    lr = serializers.FloatField(min_value=1e-8, max_value=10, required=False, allow_null=True, default=None)
    optimizer = serializers.ChoiceField(choices=["adamw", "sgd"], default="adamw")
    momentum = serializers.FloatField(min_value=0, max_value=0.999, default=0.9)
    weight_decay = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True, default=None)
    schedule = serializers.ChoiceField(choices=["cosine", "step", "constant"], default="cosine")
    warmup_epochs = serializers.FloatField(min_value=0, default=0)
    step_size = serializers.IntegerField(min_value=1, default=10)
    gamma = serializers.FloatField(min_value=0.0001, max_value=1, default=0.1)
    label_smoothing = serializers.FloatField(min_value=0, max_value=0.99, default=0)
    augment = serializers.ChoiceField(choices=["none", "light", "standard", "strong"], default="standard")
    input_size = serializers.IntegerField(min_value=8, max_value=1024, required=False, allow_null=True, default=None)
    seed = serializers.IntegerField(min_value=0, default=0)
    early_stopping_patience = serializers.IntegerField(min_value=0, default=0, help_text="0: off.")
    amp = serializers.BooleanField(default=True, help_text="Mixed precision, on CUDA workers.")
    workers = serializers.IntegerField(min_value=0, max_value=64, default=2, help_text="Data-loader processes.")
    pretrained = serializers.BooleanField(default=True, help_text="torchvision weights, when the worker's cache has them.")
    keep_best_on_cancel = serializers.BooleanField(default=False, help_text="A cancelled run keeps its best epoch as an artifact.")

    def validate(self, data: dict) -> dict:
        if data["warmup_epochs"] > data["epochs"]:
            raise serializers.ValidationError({"warmup_epochs": f"At most the number of epochs ({data['epochs']})."})
        return data


class QuantizeParams(serializers.Serializer):
    """INT8 quantization with NNCF (workers/pipeline/quantization.py and qat.py)."""

    artifact = serializers.IntegerField(min_value=1, help_text="The FP32/FP16 model to quantize.")
    dataset = serializers.IntegerField(min_value=1, help_text="Calibration from its train split, accuracy on its val split.")
    method = serializers.ChoiceField(choices=[
        ("ptq", "Post-training (INT8)"),
        ("accuracy", "Post-training with accuracy control"),
        ("qat", "Quantization-aware training"),
    ], default="ptq")
    subset_size = serializers.IntegerField(min_value=10, max_value=10_000, default=300, help_text="Calibration images.")
    preset = serializers.ChoiceField(choices=[("performance", "Performance"), ("mixed", "Mixed")], default="performance")
    fast_bias_correction = serializers.BooleanField(default=True)
    model_type = serializers.ChoiceField(choices=[("", "Any"), ("transformer", "Transformer")], default="", allow_blank=True)
    ignored_scope = serializers.ListField(
        child=serializers.CharField(max_length=500, allow_blank=True), max_length=500, default=list,  # blank lines: dropped
        help_text="Layers kept in floating point: node names, or regular expressions written re:<pattern>.")
    max_drop = serializers.FloatField(min_value=0.01, max_value=50, default=1.0,
                                      help_text="Accuracy control: top-1 points (absolute) or percent of FP32 top-1 (relative).")
    drop_type = serializers.ChoiceField(choices=[("absolute", "Absolute"), ("relative", "Relative")], default="absolute")
    epochs = serializers.IntegerField(min_value=1, max_value=1000, default=3, help_text="Quantization-aware training.")
    batch_size = serializers.IntegerField(min_value=1, max_value=4096, default=32)
    lr = serializers.FloatField(min_value=1e-8, max_value=10, required=False, allow_null=True, default=None,
                                help_text="Default: a tenth of the architecture's training rate.")
    augment = serializers.ChoiceField(choices=["none", "light", "standard", "strong"], default="light")
    workers = serializers.IntegerField(min_value=0, max_value=64, default=2, help_text="Data-loader processes.")
    seed = serializers.IntegerField(min_value=0, default=0)

    def validate_ignored_scope(self, value: list[str]) -> list[str]:
        lines = [line.strip() for line in value if line.strip()]
        for line in lines:
            if line.startswith("re:"):
                try:
                    re.compile(line[3:])
                except re.error as error:
                    raise serializers.ValidationError(f"“{line[3:]}” is not a regular expression: {error}.") from None
        return lines


class MatrixPoint(serializers.Serializer):
    batch = serializers.IntegerField(min_value=1, max_value=256)
    streams = serializers.IntegerField(min_value=1, max_value=64)


class BenchmarkParams(serializers.Serializer):
    """Speed of one artifact on one worker (workers/pipeline/benchmark.py)."""

    artifact = serializers.IntegerField(min_value=1)
    device = serializers.ChoiceField(choices=[("CPU", "CPU"), ("GPU", "GPU (a worker whose OpenVINO sees one)")], default="CPU")
    seconds = serializers.FloatField(min_value=1, max_value=300, default=10, help_text="Per measurement.")
    hints = serializers.MultipleChoiceField(choices=[("latency", "Latency"), ("throughput", "Throughput")],
                                            default=["latency", "throughput"])
    matrix = MatrixPoint(many=True, required=False, default=list, help_text="Batch × streams points, measured too.")
    layer_counters = serializers.BooleanField(default=True, help_text="Time and precision per layer (IR).")
    torch_reference = serializers.BooleanField(default=True, help_text="Also torch eager of the PyTorch source.")
    reference = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                         help_text="Set by the service: the PyTorch artifact measured beside it.")

    def validate(self, data: dict) -> dict:
        data["hints"] = sorted(data["hints"])
        if len(data["matrix"]) > 16:
            raise serializers.ValidationError({"matrix": "At most 16 batch × streams points."})
        if not data["hints"] and not data["matrix"]:
            raise serializers.ValidationError({"hints": "Choose a hint or a batch × streams point to measure."})
        return data


class EvaluateParams(serializers.Serializer):
    """Top-1, top-5 and the confusion matrix of one artifact on a dataset split."""

    artifact = serializers.IntegerField(min_value=1)
    dataset = serializers.IntegerField(min_value=1)
    split = serializers.ChoiceField(choices=[("val", "Validation"), ("test", "Test"), ("train", "Train")], default="val")


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
            name="train",
            label="Training",
            params=TrainParams,
            route=lambda params: "train",
            resumable=True,  # continues from the last epoch's checkpoint on another worker
            direct=False,  # submitted through registry.services.model_train, which checks what it names
        ),
        JobKind(
            name="convert",
            label="Conversion to OpenVINO IR",
            params=ConvertParams,
            route=lambda params: "optimize",
            resumable=True,  # the new artifact is published only at the end: a second attempt starts over
            direct=False,  # submitted through the artifact (optimize.services.artifact_convert)
        ),
        JobKind(
            name="quantize",
            label="Quantization",
            params=QuantizeParams,
            # quantization-aware training trains: it goes where training goes
            route=lambda params: "train" if params["method"] == "qat" else "optimize",
            resumable=True,  # QAT continues from its last epoch; the others start over
            direct=False,  # submitted through the artifact (optimize.services.artifact_quantize)
        ),
        JobKind(
            name="benchmark",
            label="Benchmark",
            params=BenchmarkParams,
            route=lambda params: "train" if params["device"] == "GPU" else "optimize",  # GPU hosts take train
            resumable=True,  # measuring again is the only way on
            direct=False,  # submitted through the artifact (optimize.services.artifact_benchmark)
        ),
        JobKind(
            name="evaluate",
            label="Evaluation",
            params=EvaluateParams,
            route=lambda params: "optimize",
            resumable=True,
            direct=False,  # submitted through the artifact (optimize.services.artifact_evaluate)
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
