"""A prepared model (PyTorch or ONNX) becomes an OpenVINO IR (model.xml + model.bin), checked
against its source on the way out. No Django, no Celery.

Routes: "direct" hands the PyTorch model to OpenVINO's PyTorch frontend (the module, TorchScript
or torch.export program in memory); "onnx" exports it to ONNX first and converts that; "auto"
tries direct and falls back to ONNX, saying why. An ONNX upload has one route: OpenVINO's ONNX
frontend reads it. A module (state_dict) is traced here with torch.jit.trace as OpenVINO would, less
check_trace (which re-traces and re-runs the model, and costs more than the conversion): the
equivalence check below covers what it would catch. ONNX export: the TorchScript-based exporter
for opsets below 18 (it writes the opset asked for) and for TorchScript; the torch.export-based one
for opset 18 and later and for .pt2 programs; each falls back to the other where it can.

Shapes: "static" [1,3,H,W], "dynamic_batch" [?,3,H,W], "dynamic" [?,3,?,?] with H,W = input_size.
Precision: "fp32" keeps FP32 weights; "fp16" stores them FP16-compressed (OpenVINO decompresses
them at run time).

Preprocessing (optional) is embedded in the IR with OpenVINO's PrePostProcessor: the IR then takes
u8 images (NHWC by default, RGB or BGR) of any height and width, and resizes (bilinear), converts
colour, subtracts mean and divides by std itself. Keys of `ConvertConfig.preprocessing`:
    layout      "NHWC" (default) | "NCHW"       of the u8 image tensor the IR takes
    color       "RGB" (default) | "BGR"          channel order of those images
    model_color "RGB" | "BGR"                    what the network wants; default: the ONNX
                                                 metadata's Image.BitmapPixelFormat, else RGB
    mean, std   3 numbers each, 0–1 units as torchvision writes them (default: ImageNet's),
                in the network's channel order
    input_size  [H, W] the network sees (default: ConvertConfig.input_size)

Equivalence: after saving, the IR is read back and compiled on CPU with FP32 inference precision
(a CPU with bf16 support would otherwise run FP32 models in bf16), and it and the source run on
`samples` inputs — images of a dataset when given, else seeded random ones — at every shape the
choice allows (dynamic shapes: two batch sizes, and for "dynamic" two spatial sizes). The
source is the PyTorch module already in memory (also for the ONNX route), or for an ONNX upload
OpenVINO's own reading of the .onnx (there is no onnxruntime here). With embedded preprocessing the
IR gets u8 images and the source gets the same images preprocessed here (the same bilinear
resize, half-pixel centres, no antialiasing); without it, dataset images are resized to the input
size and normalised with ImageNet's mean and std, the same tensor for both. Default tolerance: max
|difference| 1e-4 for FP32, 1e-2 for FP16 weights. Beyond it the result says so and a warning is
logged; it is no error. The PyTorch source runs on the check's inputs in a thread of its own while
its trace converts, so the check costs little more than compiling and running the IR.

Four inputs by default: a conversion that gets an operator wrong shows on any input, so more
random ones find little more, while each costs a run of the source and of the IR (together about
as much as the conversion itself for resnet18 at 8 inputs). Top-1 agreement on a dataset means
more with more images: the job's `samples` asks for up to 256.
"""

import concurrent.futures
import contextlib
import functools
import io
import json
import math
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from workers.pipeline.formats import LABELS, InspectConfig, Prepared, TensorInfo, load_torch_module, one_line
from workers.pipeline.reporting import Cancelled, JobError, Span, timed

ROUTES = ("auto", "direct", "onnx")
SHAPES = ("static", "dynamic_batch", "dynamic")
PRECISIONS = ("fp32", "fp16")
DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
OPSETS = range(11, 24)  # what OpenVINO's ONNX frontend and torch's exporters both know
DYNAMO_MIN_OPSET = 18  # the torch.export-based exporter writes nothing older
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_NAME = 128
MAX_IMAGE_SIDE = 1024  # dataset images fed to an IR with embedded resizing are shrunk to this first
# Where each stage moves the bar; a fallback's later stages never move it back.
STAGES = {"loading": 0.0, "exporting": 0.1, "converting": 0.3, "saving": 0.7, "verifying": 0.8}


@dataclass(frozen=True)
class ConvertConfig:
    route: str = "auto"  # "auto" (direct, else ONNX) | "direct" | "onnx"
    shape: str = "static"  # "static" [1,3,H,W] | "dynamic_batch" [?,3,H,W] | "dynamic" [?,3,?,?]
    input_size: tuple[int, int] = (224, 224)  # H, W
    input_name: str = ""  # the IR's input name; "" keeps the source's ("input" for PyTorch)
    output_name: str = ""  # the IR's (first) output name; "" keeps the source's ("output" for PyTorch)
    precision: str = "fp32"  # "fp32" | "fp16" (FP16-compressed weights)
    opset: int = 17  # for the ONNX route
    preprocessing: dict | None = None  # embedded with PrePostProcessor, see the module's docstring
    tolerance: float | None = None  # max |difference| allowed; None: 1e-4 for fp32, 1e-2 for fp16
    samples: int = 4  # inputs the check runs; see the module's docstring for why 4


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

    def as_dict(self) -> dict:
        return _json_safe(asdict(self))


# --- the pipeline ----------------------------------------------------------------------------------

def convert(prepared: Prepared, source_config: InspectConfig, config: ConvertConfig, out: Path, span: Span, *,
            images: list[Path] | None = None) -> ConversionResult:
    """Convert the model in `prepared` to an OpenVINO IR in `out` (model.xml, model.bin) and check
    it against its source. JobError says what went wrong and what to change; on any error `out`
    may hold partial output: the caller deletes it."""
    if prepared.format == "openvino_ir":
        raise JobError("This model is already an OpenVINO IR (model.xml and model.bin): there is nothing to "
                       "convert. Use it as it is, or upload the PyTorch or ONNX model it came from to convert "
                       "it with other settings.")
    if prepared.format not in LABELS:
        raise JobError(f"Vintner cannot convert models in the format “{prepared.format}”.")
    job = _Job(prepared, source_config, _checked(config), out, span)
    return job.run(images)


class _Job:
    def __init__(self, prepared: Prepared, source_config: InspectConfig, config: ConvertConfig, out: Path,
                 span: Span) -> None:
        self.prepared, self.source_config, self.config, self.out, self.span = prepared, source_config, config, out, span
        self.reporter = span.reporter
        self.fraction = 0.0
        self.seconds: dict[str, float] = {}
        self.warnings: list[str] = []
        self.module: torch.nn.Module | None = None  # the PyTorch model, for conversion and reference
        self.program = None  # torch.export.ExportedProgram for .pt2 sources
        self.traced: torch.jit.ScriptModule | None = None  # a module's trace, for the direct route
        self.onnx_model = None  # onnx.ModelProto (no external data) for ONNX sources, read on demand
        self.layout = "NCHW"  # the network's input layout; ONNX sources may be NHWC
        self.model_color = "RGB"
        self.source_input = ""  # the source's input name, for messages
        self.pending: concurrent.futures.Future | None = None  # the source's outputs for the check
        self.preprocessing = _preprocessing_spec(config)  # validated before anything is loaded
        self.size = tuple(self.preprocessing["input_size"]) if self.preprocessing else config.input_size

    # --- stages ------------------------------------------------------------------------------------

    def settle(self) -> None:
        """Wait for the source's run on the check's inputs; its errors are for verify() to report."""
        if self.pending is not None:
            concurrent.futures.wait([self.pending])

    def stage(self, name: str) -> None:
        self.span.raise_if_cancelled()
        self.reporter.stage(name)
        self.progress(STAGES[name])

    def progress(self, fraction: float) -> None:
        self.fraction = max(self.fraction, fraction)
        self.span.progress(self.fraction)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.reporter.log(message, level="warning")

    def run(self, images: list[Path] | None) -> ConversionResult:
        config = self.config
        self.stage("loading")
        with timed(self.seconds, "loading"):
            self.load()
            if self.preprocessing and not (config.preprocessing or {}).get("model_color"):
                self.preprocessing["model_color"] = self.model_color
            cases, source = self.cases(images)
        # The PyTorch source runs on the check's inputs while its trace converts: the module is in
        # memory already, and conversion mostly keeps one core busy. Exports (torch.onnx, a .pt2's
        # decompositions) patch torch globally, so they wait for it (`settle`).
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vintner-reference") as pool:
            self.pending = pool.submit(self.expected, cases) if self.module is not None else None
            self.out.parent.mkdir(parents=True, exist_ok=True)  # an ONNX export goes beside the output
            with tempfile.TemporaryDirectory(dir=self.out.parent, prefix=f".{self.out.name}-convert-") as tmp:
                model, route, reason = self.convert_by_route(Path(tmp))
                self.stage("saving")
                with timed(self.seconds, "saving"):
                    model = self.finish_model(model, route)
                    self.save(model)
                del model
            self.stage("verifying")
            with timed(self.seconds, "verifying"):
                inputs, outputs, equivalence = self.verify(cases, source, self.pending)
        self.progress(1.0)
        self.reporter.log(f"Converted {LABELS[self.prepared.format]} to an OpenVINO IR ({route} route, "
                          f"{config.shape} shape, {config.precision.upper()}"
                          f"{', preprocessing embedded' if self.preprocessing else ''}) in "
                          f"{sum(self.seconds.values()):.1f} s.")
        return ConversionResult(
            route=route, route_reason=reason, folder=self.out, inputs=inputs, outputs=outputs,
            equivalence=equivalence, precision=config.precision, shape=config.shape,
            preprocessing=self.preprocessing, warnings=self.warnings, seconds=dict(self.seconds),
        )

    def load(self) -> None:
        fmt, path = self.prepared.format, self.prepared.folder / self.prepared.primary
        if fmt == "onnx":
            self.reporter.log("Reading the ONNX model's inputs.")
            self.inspect_onnx_input()
            return
        if fmt == "state_dict":
            self.reporter.log(f"Loading the state_dict into torchvision {self.source_config.architecture} "
                              f"({self.source_config.num_classes} classes).")
        else:
            self.reporter.log(f"Loading {LABELS[fmt]}: {self.prepared.primary}.")
        try:
            if fmt == "torch_export":  # the program itself: both routes take it as it is
                self.program = torch.export.load(str(path))
                self.module = self.program.module()
            else:
                self.module = load_torch_module(self.prepared, self.source_config)
        except (JobError, Cancelled):
            raise
        except Exception as e:
            raise JobError(f"PyTorch could not load “{self.prepared.primary}” as {LABELS[fmt]}: "
                           f"{one_line(e)}") from None
        self.source_input = "input"
        if self.program is not None:
            self.check_program_input()

    def check_program_input(self) -> None:
        """A .pt2 program is traced already: its input's static dimensions are fixed for good."""
        signature = self.program.graph_signature
        nodes = {node.name: node for node in self.program.graph.nodes}
        values = [nodes[name].meta.get("val") for name in signature.user_inputs if name in nodes]
        if len(values) != 1 or not isinstance(values[0], torch.Tensor) or values[0].dim() != 4:
            shapes = ", ".join(str(list(v.shape)) if isinstance(v, torch.Tensor) else "?" for v in values)
            raise JobError(f"Vintner converts image models with one input [batch, 3, height, width]; this "
                           f"torch.export program takes {len(values)} input{'s' if len(values) != 1 else ''} "
                           f"({shapes or 'none'}).")
        dims = [d if isinstance(d, int) else None for d in values[0].shape]
        shown = _shape_text(dims)
        height, width = self.size
        problem = ""
        if dims[0] is not None and self.config.shape != "static":
            problem = f"its batch is fixed at {dims[0]}, so it cannot take the {self.config.shape} shape"
        elif None not in dims[2:] and self.config.shape == "dynamic":
            problem = "its height and width are fixed, so it cannot take the dynamic shape"
        elif None not in dims[2:] and self.config.shape != "dynamic" and dims[2:] != [height, width]:
            problem = f"it takes {dims[2]}×{dims[3]} images, not the {height}×{width} asked for"
        if problem:
            raise JobError(f"This torch.export program was exported for inputs {shown}: {problem}. Choose a shape "
                           f"and input size it allows, or export it again with dynamic_shapes "
                           "(torch.export.Dim) for the dimensions that should vary.")

    def inspect_onnx_input(self) -> None:
        model = self.onnx_graph()
        initialized = {tensor.name for tensor in model.graph.initializer}
        inputs = [value for value in model.graph.input if value.name not in initialized]
        if len(inputs) != 1:
            names = ", ".join(f"“{value.name}”" for value in inputs[:5]) or "none"
            raise JobError(f"Vintner converts image models with one input; this ONNX model has {len(inputs)} "
                           f"({names}).")
        value = inputs[0]
        self.source_input = value.name
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in value.type.tensor_type.shape.dim]
        shown = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
        if len(dims) != 4:
            raise JobError(f"The ONNX model's input “{value.name}” has the shape {shown}; Vintner converts image "
                           "models whose input is [batch, 3, height, width] (or [batch, height, width, 3]).")
        if dims[1] != 3 and dims[3] == 3:
            self.layout = "NHWC"
        elif dims[1] not in (3, None):
            raise JobError(f"The ONNX model's input “{value.name}” has the shape {shown}: not 3-channel images "
                           "([batch, 3, height, width]), which is what Vintner converts.")
        spatial = dims[1:3] if self.layout == "NHWC" else dims[2:4]
        wanted = list(self.size)
        if self.config.shape != "dynamic" and all(spatial) and spatial != wanted:
            raise JobError(f"The ONNX model's input “{value.name}” is fixed at {spatial[0]}×{spatial[1]} pixels "
                           f"({shown}); set the input size to {spatial[0]}×{spatial[1]}, or export the model "
                           "with dynamic height and width.")
        formats = {p.key: p.value for p in model.metadata_props}
        pixel_format = formats.get("Image.BitmapPixelFormat", "").lower()
        if pixel_format.startswith(("bgr", "rgb")):
            self.model_color = pixel_format[:3].upper()

    def onnx_graph(self):
        if self.onnx_model is None:
            import onnx

            path = self.prepared.folder / self.prepared.primary
            try:
                self.onnx_model = onnx.load(str(path), load_external_data=False)
            except Exception as e:
                raise JobError(f"“{self.prepared.primary}” is not a valid ONNX model ({one_line(e)}).") from None
        return self.onnx_model

    # --- routes ------------------------------------------------------------------------------------

    def convert_by_route(self, tmp: Path) -> tuple[ov.Model, str, str]:
        route = self.config.route
        if self.prepared.format == "onnx":
            model = self.convert_onnx_file(self.prepared.folder / self.prepared.primary, onnx_source=True)
            same = "" if route == "auto" else f" (the {route} route you chose is the same for ONNX models)"
            return model, "onnx", f"the source is ONNX: OpenVINO's ONNX frontend converted it directly{same}"
        try:
            if route == "direct":
                return self.direct(), "direct", "direct conversion (OpenVINO's PyTorch frontend), as chosen"
            if route == "onnx":
                model, how = self.via_onnx(tmp)
                return model, "onnx", f"converted via ONNX ({how}), as chosen"
        except _RouteFailed as failure:
            raise JobError(failure.message) from None
        try:
            return self.direct(), "direct", "direct conversion succeeded"
        except _RouteFailed as direct_failure:
            self.warn(f"Direct conversion failed: {direct_failure.message} Trying the ONNX route.")
            try:
                model, how = self.via_onnx(tmp)
            except _RouteFailed as onnx_failure:
                raise JobError(f"Both routes failed. Direct conversion: {direct_failure.message} "
                               f"Via ONNX: {onnx_failure.message}") from None
            return model, "onnx", f"direct conversion failed ({direct_failure.short}); converted via ONNX ({how})"

    def direct(self) -> ov.Model:
        self.stage("converting")
        shape = self.network_shape()
        source = self.program if self.program is not None else self.module
        kind = {"torchscript": "TorchScript module", "torch_export": "torch.export program",
                "state_dict": "PyTorch module"}[self.prepared.format]
        self.reporter.log(f"Converting the {kind} with OpenVINO's PyTorch frontend, input {_shape_text(shape)}.")
        arguments = {"input": [ov.PartialShape(shape)]}
        if self.program is None:  # TorchScript is typed on an example input; a module is traced on it
            arguments["example_input"] = _example(shape, self.size)
        if self.program is not None:
            self.settle()
        with timed(self.seconds, "converting"), _quiet() as caught:
            if not isinstance(source, (torch.jit.ScriptModule, torch.export.ExportedProgram)):
                source = self.trace(source, arguments["example_input"])
            try:
                model = ov.convert_model(source, **arguments)
            except Exception as e:
                raise _RouteFailed(*self.explain_direct(e)) from None
        self.note_tracer_warnings(caught)
        self.progress(STAGES["saving"] - 0.05)
        return model

    def trace(self, module: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
        """What ov.convert_model does with a module, less torch.jit.trace's check_trace: that re-traces
        the model and runs both traces again to catch a trace that differs from run to run, which
        costs more than the conversion itself; the equivalence check after saving compares the IR
        with the module on more inputs than that, so it covers what check_trace would catch."""
        try:
            with _trace_patches():
                self.traced = torch.jit.trace(module.eval(), (example,), strict=False, check_trace=False)
                return self.traced
        except Exception as e:
            raise _RouteFailed(
                f"PyTorch could not trace the model on a {_shape_text(list(example.shape))} example input: "
                f"{one_line(e)}. Make the model traceable: its forward() must take one image tensor and return "
                "tensors (or a tuple or dict of them), without Python control flow that depends on tensor values; "
                "or try the ONNX route.", "tracing failed") from None

    def via_onnx(self, tmp: Path) -> tuple[ov.Model, str]:
        self.stage("exporting")
        self.settle()
        path = tmp / "model.onnx"
        shape = self.network_shape()
        with timed(self.seconds, "exporting"):
            how = self.export_onnx(path, shape)
        self.stage("converting")
        return self.convert_onnx_file(path, onnx_source=False), how

    def export_onnx(self, path: Path, shape: list[int]) -> str:
        """Export self.module (or the .pt2 program) to ONNX at `path`; the exporter and opset used,
        in words. The TorchScript-based exporter writes the opset asked for; the torch.export-based
        one writes 18 or later, and is the only one that takes a .pt2 program."""
        opset, example = self.config.opset, _example(shape, self.size)
        legacy = self.program is None
        exporters = ["legacy", "dynamo"] if opset < DYNAMO_MIN_OPSET else ["dynamo", "legacy"]
        if not legacy:
            exporters = ["dynamo"]
        elif isinstance(self.module, torch.jit.ScriptModule):
            exporters = ["legacy"]  # torch.export cannot take TorchScript
        errors = []
        for exporter in exporters:
            used = opset if exporter == "legacy" else max(opset, DYNAMO_MIN_OPSET)
            self.reporter.log(f"Exporting to ONNX (opset {used}, {EXPORTER_WORDS[exporter]}).")
            try:
                with _quiet(), contextlib.redirect_stdout(io.StringIO()):  # the legacy one prints graphs
                    if exporter == "legacy":
                        self.export_legacy(path, example, used)
                    else:
                        self.export_dynamo(path, example, used)
            except Exception as e:
                errors.append((exporter, e))
                continue
            how = f"opset {used}, {EXPORTER_WORDS[exporter]}"
            if used != opset:
                how += f"; opset {opset} was asked for, and {DYNAMO_MIN_OPSET} is the oldest it writes"
            if errors:
                how += f"; the {EXPORTER_WORDS[errors[0][0]]} failed: {_export_problem(errors[0][1])}"
            return how
        raise _RouteFailed(*_explain_export(errors))

    def export_legacy(self, path: Path, example: torch.Tensor, opset: int) -> None:
        axes = {"static": {}, "dynamic_batch": {0: "batch"}, "dynamic": {0: "batch", 2: "height", 3: "width"}}
        dynamic = axes[self.config.shape]
        torch.onnx.export(self.module, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": dynamic, "output": {0: "batch"} if dynamic else {}} if dynamic
                          else None)

    def export_dynamo(self, path: Path, example: torch.Tensor, opset: int) -> None:
        source = self.program if self.program is not None else self.module
        arguments: dict = {}
        if self.program is None and self.config.shape != "static":
            auto = torch.export.Dim.AUTO
            dims = {0: auto} if self.config.shape == "dynamic_batch" else {0: auto, 2: auto, 3: auto}
            arguments["dynamic_shapes"] = (dims,)
        torch.onnx.export(source, (example,), str(path), dynamo=True, opset_version=opset, verbose=False,
                          input_names=["input"], output_names=["output"], optimize=True, **arguments)

    def convert_onnx_file(self, path: Path, *, onnx_source: bool) -> ov.Model:
        if onnx_source:
            self.stage("converting")
        shape = self.network_shape()
        self.reporter.log(f"Converting the ONNX model with OpenVINO's ONNX frontend, input {_shape_text(shape)}.")
        with timed(self.seconds, "converting"), _quiet():
            try:
                model = ov.convert_model(str(path), input=[ov.PartialShape(shape)])
            except Exception as e:
                message, short = self.explain_onnx(e, onnx_source)
                raise (JobError(message) if onnx_source else _RouteFailed(message, short)) from None
        self.progress(STAGES["saving"] - 0.05)
        return model

    def network_shape(self) -> list[int]:
        """The network input the IR gets (with preprocessing, what the preprocessing feeds it)."""
        height, width = self.size
        batch = 1 if self.config.shape == "static" else -1
        if self.config.shape == "dynamic" and not self.config.preprocessing:
            height = width = -1
        return [batch, height, width, 3] if self.layout == "NHWC" else [batch, 3, height, width]

    # --- the IR ------------------------------------------------------------------------------------

    def finish_model(self, model: ov.Model, route: str) -> ov.Model:
        """Names, embedded preprocessing and a note of both in the IR's rt_info."""
        config, pytorch = self.config, self.prepared.format != "onnx"
        if len(model.inputs) != 1:
            raise JobError(f"The converted model has {len(model.inputs)} inputs; Vintner converts image models "
                           "with one input.")
        input_name = config.input_name or ("input" if pytorch else "")
        if input_name:
            model.input(0).get_tensor().set_names({input_name})
        count = len(model.outputs)
        output_names = (["output"] if count == 1 else [f"output{i}" for i in range(count)]) if pytorch else []
        if config.output_name:
            output_names = [config.output_name, *output_names[1:]]
        for port, name in zip(model.outputs, output_names):
            port.get_tensor().set_names({name})
        if config.output_name and len(model.outputs) > 1:
            self.reporter.log(f"The model has {len(model.outputs)} outputs; “{config.output_name}” names the "
                              "first.")
        if self.preprocessing:
            model = self.embed_preprocessing(model)
        model.set_rt_info(route, ["vintner", "route"])
        model.set_rt_info(config.precision, ["vintner", "precision"])
        model.set_rt_info(json.dumps(self.preprocessing) if self.preprocessing else "none",
                          ["vintner", "preprocessing"])
        return model

    def embed_preprocessing(self, model: ov.Model) -> ov.Model:
        from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

        spec = self.preprocessing
        colors = {"RGB": ColorFormat.RGB, "BGR": ColorFormat.BGR}
        processor = PrePostProcessor(model)
        step = processor.input(0)
        step.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout(spec["layout"])) \
            .set_color_format(colors[spec["color"]]).set_spatial_dynamic_shape()
        step.model().set_layout(ov.Layout(self.layout))
        pre = step.preprocess().convert_element_type(ov.Type.f32)
        if spec["color"] != spec["model_color"]:
            pre.convert_color(colors[spec["model_color"]])
        pre.resize(ResizeAlgorithm.RESIZE_LINEAR)
        pre.mean([value * 255.0 for value in spec["mean"]]).scale([value * 255.0 for value in spec["std"]])
        try:
            built = processor.build()
        except Exception as e:
            raise JobError(f"OpenVINO could not embed the preprocessing: {one_line(e)}") from None
        height, width = spec["input_size"]
        self.reporter.log(f"Embedded preprocessing: u8 {spec['layout']} {spec['color']} images of any size → "
                          f"resize (bilinear) to {height}×{width}"
                          f"{' → ' + spec['model_color'] if spec['color'] != spec['model_color'] else ''} → "
                          f"(x/255 − mean)/std, mean {_numbers(spec['mean'])}, std {_numbers(spec['std'])}.")
        return built

    def save(self, model: ov.Model) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        fp16 = self.config.precision == "fp16"
        try:  # compress_to_fp16 defaults to True: FP32 has to say False
            ov.save_model(model, self.out / "model.xml", compress_to_fp16=fp16)
        except Exception as e:
            raise JobError(f"OpenVINO could not save the converted model: {one_line(e)}") from None
        size = sum(p.stat().st_size for p in (self.out / "model.xml", self.out / "model.bin") if p.exists())
        self.reporter.log(f"Saved model.xml and model.bin ({'FP16-compressed' if fp16 else 'FP32'} weights, "
                          f"{size / 2**20:.1f} MB).")
        self.progress(STAGES["verifying"] - 0.02)

    # --- equivalence -------------------------------------------------------------------------------

    def verify(self, cases: list["_Case"], source: str, pending: concurrent.futures.Future | None
               ) -> tuple[list[TensorInfo], list[TensorInfo], Equivalence]:
        config = self.config
        core = _core()
        try:
            model = core.read_model(str(self.out / "model.xml"))
            compiled = core.compile_model(model, "CPU", EXACT)
        except Exception as e:
            raise JobError(f"OpenVINO could not load the converted IR back on the CPU: {one_line(e)}") from None
        inputs = [_port_info(port, f"input{i}") for i, port in enumerate(model.inputs)]
        outputs = [_port_info(port, f"output{i}") for i, port in enumerate(model.outputs)]
        if self.preprocessing:
            self.check_preprocessed_input(model)
        self.reporter.log(f"Checking the IR against {self.reference_words()} on "
                          f"{sum(len(c.network) for c in cases)} "
                          f"{'dataset images' if source == 'dataset' else 'generated inputs'}.")
        expected = pending.result() if pending is not None else self.expected(cases)
        self.progress(0.9)
        request = compiled.create_infer_request()
        tolerance = config.tolerance if config.tolerance is not None else DEFAULT_TOLERANCE[config.precision]
        diffs = _Diffs()
        shapes = []
        for case, wanted in zip(cases, expected):
            feed = case.ir if case.ir is not None else case.network
            shapes.append(list(feed.shape))
            try:
                request.infer({0: feed})
            except Exception as e:
                raise JobError(f"The converted model fails on a {_shape_text(list(feed.shape))} input: "
                               f"{one_line(e).rstrip('.')}.{self.shape_hint()}") from None
            got = [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]
            diffs.add(got, wanted)
        equivalence = Equivalence(
            samples=sum(len(c.network) for c in cases), max_abs_diff=diffs.max, mean_abs_diff=diffs.mean,
            top1_agreement=diffs.agreement, tolerance=tolerance,
            within_tolerance=diffs.max <= tolerance, source=source, reference=self.reference_words(), shapes=shapes,
        )
        summary = (f"max |difference| {_g(diffs.max)}, mean {_g(diffs.mean)}, top-1 agreement "
                   f"{diffs.agreement:.0%} over {equivalence.samples} samples at {len(set(map(tuple, shapes)))} "
                   f"shape{'s' if len(set(map(tuple, shapes))) > 1 else ''} (tolerance {_g(tolerance)})")
        if equivalence.within_tolerance:
            self.reporter.log(f"The IR matches its source: {summary}.")
        else:
            self.warn(f"The IR differs from its source beyond the tolerance: {summary}."
                      + (" The tracer warned that the model's control flow depends on its input (see above)."
                         if any("tracer" in w for w in self.warnings) else ""))
        return inputs, outputs, equivalence

    def check_preprocessed_input(self, model: ov.Model) -> None:
        port = model.input(0)
        if port.get_element_type() != ov.Type.u8:
            raise JobError("The saved IR does not take u8 images although preprocessing was embedded.")

    def shape_hint(self) -> str:
        return {"static": " Check the input size: the model may need another one.",
                "dynamic_batch": " The model may not allow batches other than the one it was made for: "
                                 "choose the static shape.",
                "dynamic": " The model may fix its input size: choose the static or dynamic-batch shape."
                }[self.config.shape]

    def reference_words(self) -> str:
        if self.module is None:
            return "the ONNX model as OpenVINO reads it (no other ONNX runtime is installed)"
        return {"torchscript": "the TorchScript module", "torch_export": "the torch.export program",
                "state_dict": "the PyTorch module"}[self.prepared.format]

    def expected(self, cases: list["_Case"]) -> list[list[np.ndarray]]:
        """The source's outputs on the check's inputs. Says nothing to the reporter: it may run in
        a thread of its own."""
        independent = (self.module is not None and not self.module.training  # torchvision's own, in eval mode
                       and type(self.module).__module__.startswith("torchvision.models."))
        return _reference_outputs(self.reference(), cases, self.shape_hint(), independent=independent)

    def reference(self) -> Callable[[np.ndarray], list[np.ndarray]]:
        if self.module is not None:
            module = self.module

            def run_torch(batch: np.ndarray) -> list[np.ndarray]:
                with torch.no_grad():
                    return [t.numpy() for t in _flat_outputs(module(torch.from_numpy(batch)))]

            return run_torch
        core = _core()
        try:
            source = core.read_model(str(self.prepared.folder / self.prepared.primary))
            if source.input(0).get_partial_shape() != ov.PartialShape(self.network_shape()):
                source.reshape({source.input(0): ov.PartialShape(self.network_shape())})
            compiled = core.compile_model(source, "CPU", EXACT)
        except Exception as e:
            raise JobError(f"OpenVINO could not run the source ONNX model at {_shape_text(self.network_shape())} "
                           f"to compare the IR with it: {one_line(e).rstrip('.')}.{self.shape_hint()}") from None
        request = compiled.create_infer_request()

        def run_onnx(batch: np.ndarray) -> list[np.ndarray]:
            request.infer({0: batch})
            return [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]

        return run_onnx

    def cases(self, images: list[Path] | None) -> tuple[list["_Case"], str]:
        """The inputs, grouped into the batches the IR runs; each with the network's input and,
        with embedded preprocessing, the u8 images the IR takes instead."""
        config = self.config
        count = config.samples
        height, width = self.size
        pictures, source = [], "generated"
        if images:
            pictures = self.read_images(images[:count])
            if pictures:
                source = "dataset"
        rng = np.random.default_rng(0)
        if source == "generated":
            if self.preprocessing:  # u8 images at the network's size and at another one
                first = (count + 1) // 2
                pictures = [_random_image(rng, height, width) for _ in range(first)]
                pictures += [_random_image(rng, height + 13, width + 27) for _ in range(count - first)]
            else:
                return self.generated_cases(count), source
        if len(pictures) == 1 and config.shape != "static":
            pictures = pictures * 2  # two batch sizes need two samples
        if self.preprocessing:
            return self.preprocessed_cases(pictures), source
        tensors = [self.normalise(_resize(picture, height, width)) for picture in pictures]
        second = (height + 32, width + 64)
        if config.shape == "dynamic":
            half = (len(pictures) + 1) // 2
            tensors = tensors[:half] + [self.normalise(_resize(p, *second)) for p in pictures[half:]]
        return _batches([_Case(t[None]) for t in tensors], config.shape), source

    def generated_cases(self, count: int) -> list["_Case"]:
        generator = torch.Generator().manual_seed(0)
        height, width = self.size

        def sample(h: int, w: int) -> np.ndarray:
            shape = [1, h, w, 3] if self.layout == "NHWC" else [1, 3, h, w]
            return torch.randn(shape, generator=generator).numpy()

        if self.config.shape == "dynamic":
            half = (count + 1) // 2 if count > 1 else 1
            cases = [_Case(sample(height, width)) for _ in range(half)]
            cases += [_Case(sample(height + 32, width + 64)) for _ in range(count - half)]
            if count == 1:
                cases.append(_Case(sample(height + 32, width + 64)))
        else:
            cases = [_Case(sample(height, width)) for _ in range(max(count, 1 if self.config.shape == "static" else 2))]
        return _batches(cases, self.config.shape)

    def preprocessed_cases(self, pictures: list[np.ndarray]) -> list["_Case"]:
        """Each picture (H×W×3 u8 RGB) as the IR takes it and, preprocessed here, as the source does."""
        spec = self.preprocessing
        height, width = spec["input_size"]
        mean = np.array(spec["mean"], dtype=np.float32).reshape(3, 1, 1)
        std = np.array(spec["std"], dtype=np.float32).reshape(3, 1, 1)
        cases = []
        for picture in pictures:
            shown = picture[..., ::-1] if spec["color"] == "BGR" else picture  # what the user feeds the IR
            ir = shown if spec["layout"] == "NHWC" else shown.transpose(2, 0, 1)
            network = picture[..., ::-1] if spec["model_color"] == "BGR" else picture
            chw = torch.from_numpy(np.ascontiguousarray(network.transpose(2, 0, 1))).float()[None]
            if chw.shape[2:] != (height, width):
                chw = torch.nn.functional.interpolate(chw, size=(height, width), mode="bilinear",
                                                      align_corners=False, antialias=False)
            tensor = ((chw[0].numpy() / 255.0 - mean) / std).astype(np.float32)
            if self.layout == "NHWC":
                tensor = tensor.transpose(1, 2, 0)
            cases.append(_Case(np.ascontiguousarray(tensor[None]), np.ascontiguousarray(ir[None])))
        return _batches(cases, self.config.shape)

    def read_images(self, paths: list[Path]) -> list[np.ndarray]:
        from PIL import Image

        from workers.pipeline.data import open_image

        pictures = []
        for path in paths:
            try:
                image = open_image(path)
            except Exception as e:
                self.reporter.log(f"Skipped {path.name} for the check: {one_line(e)}", level="warning")
                continue
            if max(image.size) > MAX_IMAGE_SIDE:
                image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.BILINEAR)
            pictures.append(np.asarray(image, dtype=np.uint8))
        if not pictures:
            self.reporter.log("None of the dataset images could be read; checking on generated inputs.",
                              level="warning")
        return pictures

    def normalise(self, picture: np.ndarray) -> np.ndarray:
        """A u8 RGB H×W×3 image as a normalised float tensor in the network's layout and colour."""
        if self.model_color == "BGR":
            picture = picture[..., ::-1]
        tensor = (picture.astype(np.float32) / 255.0 - np.array(IMAGENET_MEAN, np.float32)) / np.array(
            IMAGENET_STD, np.float32)
        return np.ascontiguousarray(tensor if self.layout == "NHWC" else tensor.transpose(2, 0, 1))

    # --- errors ------------------------------------------------------------------------------------

    def note_tracer_warnings(self, caught: list[warnings.WarningMessage]) -> None:
        tracer = [str(w.message) for w in caught if w.category.__name__ == "TracerWarning"]
        if any("Python boolean" in text or "Python index" in text or "Python number" in text for text in tracer):
            self.warn("The PyTorch tracer warned that the model turns a tensor into a Python value (for example "
                      "`if x.sum() > 0:`), so the IR always takes the path the example input took. Make the model "
                      "traceable: replace data-dependent Python branches with tensor operations (torch.where) or "
                      "torch.cond, or upload it as TorchScript made with torch.jit.script.")

    def explain_direct(self, error: Exception) -> tuple[str, str]:
        text = _clean(error)
        failure = _op_failure(text)
        if failure:
            ops, details = failure
            where = self.locate_torch_ops(ops)
            short = f"OpenVINO cannot convert {', '.join(ops)}"
            return (f"OpenVINO's PyTorch frontend has no conversion for {_ops_text(ops, where)}{details}. "
                    "Try the ONNX route, or replace the operation in the model.", short)
        if "Couldn't get TorchScript module by tracing" in text:
            cause = _after(text, "Exception:") or one_line(error)
            return (f"PyTorch could not trace the model on a {_shape_text(self.network_shape())} example input: "
                    f"{cause}. Make the model traceable: its forward() must take one image tensor and return "
                    "tensors (or a tuple or dict of them), without Python control flow that depends on tensor "
                    "values; or try the ONNX route.", "tracing failed")
        return (f"OpenVINO could not convert the model directly: {one_line(error)}. Try the ONNX route.",
                one_line(error)[:120])

    def explain_onnx(self, error: Exception, onnx_source: bool) -> tuple[str, str]:
        text = _clean(error)
        failure = _op_failure(text)
        other = "" if onnx_source else " Try the direct route, or replace the operation in the model."
        if failure:
            ops, details = failure
            where = self.locate_onnx_ops(ops) if onnx_source else {}
            message = f"OpenVINO's ONNX frontend has no conversion for {_ops_text(ops, where)}{details}."
            if onnx_source and any(_onnx_domain(op) for op in ops):
                message += (" Operators outside the standard ONNX domain are custom: export the model with standard "
                            "operators only.")
            elif onnx_source:
                message += " Export the model again with operators OpenVINO supports (a different opset may help)."
            return message + other, f"OpenVINO cannot convert {', '.join(ops)}"
        return (f"OpenVINO could not convert the ONNX model: {one_line(error)}.{other}", one_line(error)[:120])

    def locate_torch_ops(self, ops: list[str]) -> dict[str, str]:
        """Where each unconvertible op is in the model, as far as it can be told without running it."""
        found: dict[str, str] = {}
        try:
            if self.program is not None:
                for node in self.program.graph.nodes:
                    target = str(node.target)
                    if node.op == "call_function" and target in ops and target not in found:
                        found[target] = f"node “{node.name}”" + _stack_place(node.meta.get("stack_trace") or "")
            else:
                scripted = self.traced if self.traced is not None else self.module
                for node in scripted.inlined_graph.nodes():
                    if node.kind() in ops and node.kind() not in found:
                        place = _source_place(str(node.sourceRange()))
                        if place:
                            found[node.kind()] = place
        except Exception:  # an explanation, not a requirement
            pass
        return found

    def locate_onnx_ops(self, ops: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        try:
            for op in ops:
                domain, op_type = _onnx_domain(op), _onnx_type(op)
                domains = {domain} if domain else {"", "ai.onnx"}
                names = [node.name or f"#{index}" for index, node in enumerate(self.onnx_graph().graph.node)
                         if node.op_type == op_type and (node.domain or "") in domains]
                if names:
                    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                    found[op] = (f"node{'s' if len(names) > 1 else ''} "
                                 + ", ".join(f"“{name}”" for name in names[:3]) + more)
        except Exception:
            pass
        return found


class _RouteFailed(Exception):
    """A route that did not work: a full message, and a short one for the route's reason."""

    def __init__(self, message: str, short: str) -> None:
        super().__init__(message)
        self.message, self.short = message, short


@dataclass
class _Case:
    network: np.ndarray  # what the source's network takes, a batch
    ir: np.ndarray | None = None  # what the IR takes where preprocessing is embedded


class _Diffs:
    def __init__(self) -> None:
        self.max, self.total, self.count, self.agree, self.samples = 0.0, 0.0, 0, 0, 0

    def add(self, got: list[np.ndarray], wanted: list[np.ndarray]) -> None:
        if len(got) != len(wanted):
            self.max = math.inf
            return
        for index, (a, b) in enumerate(zip(got, wanted)):
            if a.shape != b.shape:
                self.max = math.inf
                continue
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            with np.errstate(invalid="ignore"):
                diff = np.abs(a64 - b64)
            same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))  # equal infinities, NaN on both sides
            diff = np.nan_to_num(np.where(same, 0.0, diff), nan=math.inf)
            self.max = max(self.max, float(diff.max(initial=0.0)))
            self.total += float(diff.sum())
            self.count += diff.size
            if index == 0 and a.ndim >= 1 and a.shape[0] >= 1:
                batch = a.shape[0]
                self.agree += int((a.reshape(batch, -1).argmax(1) == b.reshape(batch, -1).argmax(1)).sum())
                self.samples += batch

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def agreement(self) -> float:
        return self.agree / self.samples if self.samples else 0.0


# --- pieces ------------------------------------------------------------------------------------------

# A bf16-capable CPU would otherwise run FP32 models in bf16; one stream suits a few batch-1 requests.
EXACT = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
EXPORTER_WORDS = {"legacy": "the TorchScript-based exporter", "dynamo": "the torch.export-based exporter"}


@functools.cache
def _core() -> ov.Core:
    return ov.Core()


def _checked(config: ConvertConfig) -> ConvertConfig:
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


PREPROCESSING_KEYS = {"layout", "color", "model_color", "mean", "std", "input_size"}


def _preprocessing_spec(config: ConvertConfig) -> dict | None:
    """The preprocessing to embed, checked and with defaults filled in; model_color stays RGB
    unless given, until the source's metadata has been read."""
    spec = config.preprocessing
    if spec is None:
        return None
    unknown = sorted(set(spec) - PREPROCESSING_KEYS)
    if unknown:
        raise JobError(f"Unknown preprocessing setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; the "
                       f"settings are {', '.join(sorted(PREPROCESSING_KEYS))}.")
    layout = str(spec.get("layout") or "NHWC").upper()
    color = str(spec.get("color") or "RGB").upper()
    network_color = str(spec.get("model_color") or "RGB").upper()
    if layout not in ("NHWC", "NCHW"):
        raise JobError(f"The preprocessing layout is NHWC or NCHW; got “{spec.get('layout')}”.")
    for what, value in (("color", color), ("model_color", network_color)):
        if value not in ("RGB", "BGR"):
            raise JobError(f"The preprocessing {what} is RGB or BGR; got “{value}”.")
    mean = _three(spec.get("mean", IMAGENET_MEAN), "mean")
    std = _three(spec.get("std", IMAGENET_STD), "std")
    if any(v <= 0 for v in std):
        raise JobError("The preprocessing std values must be positive.")
    if max(map(abs, mean)) > 1 or max(std) > 1:
        raise JobError(f"The preprocessing mean and std are in 0–1 units (as torchvision writes them, e.g. mean "
                       f"{_numbers(IMAGENET_MEAN)}); got mean {_numbers(mean)}, std {_numbers(std)}.")
    size = spec.get("input_size") or config.input_size
    if isinstance(size, int):
        size = (size, size)
    if not (isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) and 8 <= v <= 4096 for v in size)):
        raise JobError(f"The preprocessing input_size must be [height, width] from 8 to 4096; got {size!r}.")
    return {"layout": layout, "color": color, "model_color": network_color, "mean": mean, "std": std,
            "input_size": [int(size[0]), int(size[1])], "resize": "bilinear"}


def _three(value: object, what: str) -> list[float]:
    if isinstance(value, (int, float)):
        value = [value] * 3
    try:
        numbers = [float(v) for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
        raise JobError(f"The preprocessing {what} must be three numbers (one per colour channel); got {value!r}.")
    return numbers


def _example(shape: list[int], size: tuple[int, int]) -> torch.Tensor:
    """An example input for tracing and export: `shape`, batch 1 and the chosen size where dynamic."""
    generator = torch.Generator().manual_seed(0)
    concrete = [1, 3, *size] if len(shape) == 4 and shape[1] == 3 else [1, *size, 3]
    return torch.randn(concrete, generator=generator)


def _batches(cases: list[_Case], shape: str) -> list[_Case]:
    """Static: one sample a run. Dynamic: the first sample alone, the rest of each size together."""
    if shape == "static" or len(cases) < 2:
        return cases
    groups: list[list[_Case]] = [[cases[0]]]
    for case in cases[1:]:
        if len(groups) > 1 and _same(groups[-1][-1], case):
            groups[-1].append(case)
        else:
            groups.append([case])
    return [_Case(np.concatenate([c.network for c in group]),
                  None if group[0].ir is None else np.concatenate([c.ir for c in group])) for group in groups]


def _same(a: _Case, b: _Case) -> bool:
    return a.network.shape == b.network.shape and (a.ir is None or a.ir.shape == b.ir.shape)


def _reference_outputs(run: Callable[[np.ndarray], list[np.ndarray]], cases: list[_Case], hint: str, *,
                       independent: bool) -> list[list[np.ndarray]]:
    """The source's outputs for each case, in the same batches the IR gets: a model may mix the
    samples of a batch (`x.sum()`), so batching differently would compare different things. Where
    the samples are known to be `independent` (torchvision's classifiers in eval mode), cases of
    one shape run as one batch, which is quicker."""
    results: list[list[np.ndarray] | None] = [None] * len(cases)
    by_shape: dict[tuple, list[int]] = {}
    for index, case in enumerate(cases):
        by_shape.setdefault(case.network.shape[1:] if independent else (index,), []).append(index)
    for indexes in by_shape.values():
        if len(indexes) > 1:
            counts = [len(cases[i].network) for i in indexes]
            try:
                outputs = run(np.concatenate([cases[i].network for i in indexes]))
            except Exception:  # one by one below, which says what failed
                outputs = []
            if outputs and all(o.ndim >= 1 and o.shape[0] == sum(counts) for o in outputs):
                parts = [np.split(o, np.cumsum(counts)[:-1]) for o in outputs]
                for position, index in enumerate(indexes):
                    results[index] = [part[position] for part in parts]
                continue
        for index in indexes:
            try:
                results[index] = run(cases[index].network)
            except Exception as e:
                shape = _shape_text(list(cases[index].network.shape))
                raise JobError(f"The source model itself fails on a {shape} input, so the IR cannot be checked at "
                               f"that shape: {one_line(e).rstrip('.')}.{hint}") from None
    return results  # type: ignore[return-value]


def _flat_outputs(output: object) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for value in output.values() for t in _flat_outputs(value)]
    if isinstance(output, (tuple, list)):
        return [t for value in output for t in _flat_outputs(value)]
    return []


def _resize(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if picture.shape[:2] == (height, width):
        return picture
    return np.asarray(Image.fromarray(picture).resize((width, height), Image.Resampling.BILINEAR))


def _random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _port_info(port, fallback: str) -> TensorInfo:
    names = sorted(port.get_names())
    shape = port.get_partial_shape()
    dims = [dim.get_length() if dim.is_static else None for dim in shape] if shape.rank.is_static else []
    dtype = port.get_element_type().get_type_name()
    return TensorInfo(names[0] if names else fallback, dims, "bool" if dtype == "boolean" else dtype)


def _trace_patches():
    """The builtins OpenVINO patches while it traces (divmod on tensors, …), where it has them."""
    try:
        from openvino.frontend.pytorch.patch_functions import FunctionsPatcher
    except ImportError:  # a private module: without it, tracing is as plain torch does it
        return contextlib.nullcontext()
    return FunctionsPatcher()


@contextlib.contextmanager
def _quiet():
    """Conversion's chatter (deprecations, tracer notes) recorded instead of printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


ANSI = re.compile(r"\x1b\[[0-9;]*m")
NO_RULE = re.compile(r"No conversion rule found for operations?:\s*([^\n]+)")
FAILED_FOR = re.compile(r"Conversion is failed for:\s*([^\n]+)")
DETAIL = re.compile(r"^-- (\S+) with a message:\s*\n(.+?)(?=\n-- |\nSummary:|\Z)", re.S | re.M)
DURING = re.compile(r"Exception happened during conversion of operation (\S+?)/(\S+)")


def _clean(error: BaseException) -> str:
    return ANSI.sub("", str(error))


def _op_failure(text: str) -> tuple[list[str], str] | None:
    """The operations OpenVINO's report names, and what it said of the ones that failed, or None."""
    ops: list[str] = []
    match = NO_RULE.search(text)
    if match:
        ops += [op.strip() for op in match.group(1).split(",") if op.strip()]
    details = []
    for op, message in DETAIL.findall(text):
        line = next((line.strip() for line in message.splitlines() if line.strip()
                     and not line.strip().startswith(("Check ", "FrontEnd API failed"))), "")
        if op not in ops and op != "prim::Constant":  # a None constant fails when its consumer does
            details.append(f"{op}: {line[:200]}")
    if not ops and not details:
        during = DURING.search(text)
        if not during:
            return None
        details.append(f"node “{during.group(1)}” ({during.group(2)})")
        failed = FAILED_FOR.search(text)
        ops += [failed.group(1).strip()] if failed else []
    if not ops:
        ops = [details[0].split(":")[0]]
    extra = f" (it also reports {'; '.join(details[:3])})" if details and match else (
        f" ({'; '.join(details[:3])})" if details else "")
    return ops, extra


def _ops_text(ops: list[str], where: dict[str, str]) -> str:
    """OpenVINO writes standard ONNX ops as Type-opset: shown as Type."""
    return ", ".join(re.sub(r"^([A-Za-z]\w*)-\d+$", r"\1", op) + (f" ({where[op]})" if op in where else "")
                     for op in ops)


def _onnx_domain(op: str) -> str:
    """OpenVINO writes custom-domain ops as domain.Type and standard ones as Type-opset."""
    return op.rsplit(".", 1)[0] if "." in op else ""


def _onnx_type(op: str) -> str:
    return re.sub(r"-\d+$", "", op.rsplit(".", 1)[-1])


def _stack_place(stack: str) -> str:
    lines = [line.strip() for line in stack.strip().splitlines() if line.strip()]
    places = [i for i, line in enumerate(lines) if line.startswith("File ")]
    if not places:
        return ""
    index = places[-1]
    match = re.match(r'File "([^"]+)", line (\d+)', lines[index])
    code = lines[index + 1] if index + 1 < len(lines) else ""
    where = f"{Path(match.group(1)).name}:{match.group(2)}" if match else lines[index]
    return f", at {where}" + (f": {code[:120]}" if code else "")


def _source_place(source_range: str) -> str:
    """Where a TorchScript node comes from: a scripted one's range ('File "…", line N' and the code
    marked HERE), or a traced one's Python stack ('file.py(N): forward', innermost first)."""
    match = re.search(r'File "([^"]+)", line (\d+)', source_range)
    if not match:
        traced = re.match(r"\s*(\S+?)\((\d+)\): (\w+)", source_range)
        return f"at {Path(traced.group(1)).name}:{traced.group(2)}, in {traced.group(3)}()" if traced else ""
    lines = source_range.splitlines()
    marker = next((i for i, line in enumerate(lines) if "<--- HERE" in line), None)
    code = lines[marker - 1].strip() if marker else ""
    return f"at {Path(match.group(1)).name}:{match.group(2)}" + (f": {code[:120]}" if code else "")


def _after(text: str, marker: str) -> str:
    if marker not in text:
        return ""
    rest = text.split(marker, 1)[1]
    return next((line.strip() for line in rest.splitlines() if line.strip()), "")[:300]


def _export_problem(error: BaseException) -> str:
    """One line on why torch's ONNX export failed."""
    text = _clean(error)
    unsupported = re.search(r"Exporting the operator '?([\w:.]+)'? to ONNX opset version (\d+) is not supported", text)
    if unsupported:
        return f"ONNX opset {unsupported.group(2)} has no {unsupported.group(1)}"
    dispatch = re.search(r"No ONNX function found for <OpOverload\(op='([\w.]+)', overload='(\w+)'\)>", text)
    if dispatch:
        return f"the exporter has no ONNX function for {dispatch.group(1)}"
    if "GuardOnDataDependentSymNode" in text or "data-dependent" in text:
        return ("torch.export cannot follow Python control flow that depends on tensor values "
                "(for example `if x.sum() > 0:`)")
    summary = re.search(r"## Exception summary\s*\n+(.+)", text)
    return (summary.group(1).strip()[:300] if summary else one_line(error)).rstrip(".")


def _explain_export(errors: list[tuple[str, Exception]]) -> tuple[str, str]:
    parts = [f"{EXPORTER_WORDS[exporter]}: {_export_problem(error)}" for exporter, error in errors]
    problems = " ".join(_export_problem(error) for _, error in errors)
    advice = "Try the direct route"
    if "control flow" in problems:
        advice = ("Make the model traceable: replace Python branches on tensor values with tensor operations "
                  "(torch.where) or torch.cond; or try the direct route")
    elif "no ONNX function" in problems or re.search(r"ONNX opset \d+ has no", problems):
        advice = "Try the direct route, or replace the operation in the model"
    return (f"Export to ONNX failed ({'; '.join(parts)}). {advice}.", f"ONNX export failed: {parts[0]}"[:200])


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join("?" if d is None or d < 0 else str(d) for d in shape) + "]"


def _numbers(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _g(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3g}"


def _json_safe(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
