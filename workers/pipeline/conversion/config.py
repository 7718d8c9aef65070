"""What a conversion is asked for and what it returns: the settings, their checks, the result."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workers.pipeline.formats.common import TensorInfo, json_safe
from workers.pipeline.params import MAX_NAME, OPSETS  # the API's limits are these
from workers.pipeline.reporting import JobError

ROUTES = ("auto", "direct", "onnx")
SHAPES = ("static", "dynamic_batch", "dynamic")
PRECISIONS = ("fp32", "fp16")
DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


@dataclass(frozen=True)
class ConvertConfig:
    route: str = "auto"  # "auto" (direct, else ONNX) | "direct" | "onnx"
    shape: str = "static"  # "static" [1,3,H,W] | "dynamic_batch" [?,3,H,W] | "dynamic" [?,3,?,?]
    input_size: tuple[int, int] = (224, 224)  # H, W
    input_name: str = ""  # the IR's input name; "" keeps the source's ("input" for PyTorch)
    output_name: str = ""  # the IR's (first) output name; "" keeps the source's ("output" for PyTorch)
    precision: str = "fp32"  # "fp32" | "fp16" (FP16-compressed weights)
    opset: int = 17  # for the ONNX route
    preprocessing: dict | None = None  # embedded with PrePostProcessor, see the package docstring
    tolerance: float | None = None  # max |difference| allowed; None: 1e-4 for fp32, 1e-2 for fp16
    samples: int = 4  # inputs the check runs; see the package docstring for why 4


@dataclass
class Equivalence:
    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float  # share of samples whose first output's argmax agrees
    tolerance: float
    within_tolerance: bool
    source: str  # "dataset" | "generated": where the inputs came from
    reference: str = ""  # what the IR was compared with, in words
    shapes: list[list[int]] = field(default_factory=list)  # the IR input shapes it ran at
    worst: str = ""  # text models: which sentence differed most, and any label the two sides picked apart


@dataclass
class ConversionResult:
    route: str  # "direct" | "onnx"
    route_reason: str
    folder: Path  # holds model.xml and model.bin
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    equivalence: Equivalence
    precision: str = "fp32"
    shape: str = "static"
    preprocessing: dict | None = None  # what is embedded (normalised), None when nothing is
    warnings: list[str] = field(default_factory=list)  # also logged as warnings
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage
    text: dict | None = None  # text models: inputs, batch, sequence length, tokenizer files (conversion/text.py)

    def as_dict(self) -> dict:
        """As stored on the artifact: without the folder, a path inside one job's jail."""
        return json_safe({k: v for k, v in asdict(self).items() if k != "folder"})


def checked(config: ConvertConfig) -> ConvertConfig:
    """`config` with every setting checked (a JobError says what is wrong) and input_size a tuple."""
    if config.route not in ROUTES:
        raise JobError(f"Unknown conversion route “{config.route}”; it is one of {', '.join(ROUTES)}.")
    if config.shape not in SHAPES:
        raise JobError(f"Unknown input shape “{config.shape}”; it is one of {', '.join(SHAPES)}.")
    if config.precision not in PRECISIONS:
        raise JobError(f"Unknown precision “{config.precision}”; it is fp32 or fp16.")
    size = tuple(config.input_size) if isinstance(config.input_size, Sequence) else ()
    if len(size) != 2 or not all(isinstance(v, int) and 8 <= v <= 4096 for v in size):
        raise JobError(f"The input size must be two whole numbers (height, width) from 8 to 4096; got "
                       f"{config.input_size!r}.")
    if not isinstance(config.opset, int) or config.opset not in OPSETS:
        raise JobError(f"The ONNX opset must be from {OPSETS.start} to {OPSETS.stop - 1}; got {config.opset!r}.")
    if not isinstance(config.samples, int) or not 1 <= config.samples <= 256:
        raise JobError(f"The number of samples to check must be from 1 to 256; got {config.samples!r}.")
    if config.tolerance is not None and not (isinstance(config.tolerance, (int, float))
                                             and math.isfinite(config.tolerance) and config.tolerance > 0):
        raise JobError(f"The tolerance must be a positive number; got {config.tolerance!r}.")
    for what, name in (("input", config.input_name), ("output", config.output_name)):
        if name and (len(name) > MAX_NAME or not name.isprintable() or any(c in name for c in ", \t")):
            raise JobError(f"The {what} name must be at most {MAX_NAME} printable characters without spaces or "
                           f"commas; got “{name[:MAX_NAME]}”.")
    if config.input_name and config.input_name == config.output_name:
        raise JobError("The input and output names must differ.")
    if config.preprocessing is not None and not isinstance(config.preprocessing, Mapping):
        raise JobError("Preprocessing must be a mapping with layout, color, mean, std and input_size.")
    return ConvertConfig(**{**asdict(config), "input_size": (int(size[0]), int(size[1]))})


class StagedSteps:
    """A conversion's bar: each stage a fixed point of it (`stages`), progress that never goes back,
    warnings kept for the report and logged. Needs `span`, `reporter`, `fraction` and `warnings`."""

    stages: dict[str, float]

    def stage(self, name: str) -> None:
        self.span.raise_if_cancelled()
        self.reporter.stage(name)
        self.progress(self.stages[name])

    def progress(self, fraction: float) -> None:
        self.fraction = max(self.fraction, fraction)
        self.span.progress(self.fraction)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.reporter.log(message, level="warning")
