"""What every format shares: the formats' names, the configuration and the records that preparing
and inspecting return, and how names and errors are written into messages.
"""

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workers.pipeline import architectures
from workers.pipeline.reporting import one_line, whole_text  # noqa: F401 - formats' modules import them from here

FORMATS = ("torchscript", "torch_export", "state_dict", "onnx", "openvino_ir", "transformers")
ARCHITECTURES: tuple[str, ...] = architectures.ARCHITECTURES  # one list, also read by the web side

LABELS = {
    "torchscript": "TorchScript",
    "torch_export": "a torch.export program (.pt2)",
    "state_dict": "a PyTorch state_dict",
    "onnx": "ONNX",
    "openvino_ir": "OpenVINO IR",
    "transformers": "a Hugging Face transformers folder",
}


@dataclass(frozen=True)
class InspectConfig:
    architecture: str = ""  # for state_dict: a name from ARCHITECTURES
    num_classes: int | None = None  # for state_dict
    input_size: int = 224  # example input for tracing / parameter checks: [1, 3, s, s]
    time_limit_s: float = 300.0  # wall clock for the child that loads code (TorchScript, .pt2), start-up included
    memory_limit_mb: int = 8192  # address space that loading may add, in that child


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: list[int | None]  # None where dynamic; [] where even the rank is unknown
    dtype: str  # "f32", "f16", "i64", "u8"...; "" where unknown


@dataclass
class Prepared:
    format: str
    folder: Path  # canonical files inside, see CANONICAL
    primary: str  # file name of the main file in folder
    labels: list[str] = field(default_factory=list)  # from a file beside the model in its zip (labels.txt…)
    labels_source: str = ""  # that file's name


@dataclass
class Inspection:
    format: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    parameters: int | None  # count of weights
    size_bytes: int  # all files
    precision: str  # "fp32" | "fp16" | "bf16" | "int8" | "mixed" (dominant weight dtype); "" without weights
    opset: int | None  # ONNX default-domain opset
    ir_version: str | None  # ONNX ir_version or OpenVINO IR version
    traces: bool | None  # PyTorch sources: does torch.export.export (or a TorchScript forward) succeed
    trace_error: str  # why not, in one sentence
    details: dict = field(default_factory=dict)  # anything else worth showing
    output_kinds: list[str] = field(default_factory=list)  # per output: "logits" | "probabilities" | "" (unknown)
    scores_output: int = 0  # the output that holds the class scores (outputs.scores_output)
    scores: str = ""  # that output's kind
    labels: list[str] = field(default_factory=list)  # class names the model carries, in output order
    labels_source: str = ""  # where they were read, in words
    modality: str = "images"  # "text" for a model that reads token ids (formats/text_folders.py)

    def as_dict(self) -> dict:
        return json_safe(asdict(self))


def folder_size(folder: Path) -> int:
    """The bytes of all files under `folder`."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def json_safe(value: object) -> object:
    """`value` as JSON takes it: numpy's numbers as Python's, NaN and infinities as null, paths and
    anything else unknown as text."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(item) for item in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    return str(value)
