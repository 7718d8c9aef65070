"""A conversion job: load the source, convert it by the route chosen (directly, or exported to
ONNX first), finish and save the IR, then check it against the source."""

import concurrent.futures
import contextlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from workers.pipeline.conversion.config import StagedSteps, DEFAULT_TOLERANCE, ConversionResult, ConvertConfig, Equivalence, checked
from workers.pipeline.conversion.equivalence import (
    Case,
    check_cases,
    compare,
    read_ir,
    source_outputs,
    summary,
)
from workers.pipeline.conversion.explain import (
    EXPORTER_WORDS,
    explain_direct,
    explain_export,
    explain_onnx,
    export_problem,
    shape_hint,
    shape_text,
    tracer_advice,
)
from workers.pipeline.conversion.preprocessing import embed, preprocessing_spec
from workers.pipeline.formats import LABELS, InspectConfig, Prepared, TensorInfo, load_torch_module, one_line
from workers.pipeline.formats.openvino_ir import port_info
from workers.pipeline.reporting import Cancelled, JobError, Span, timed

DYNAMO_MIN_OPSET = 18  # the torch.export-based exporter writes nothing older
# Where each stage moves the bar; a fallback's later stages never move it back.
STAGES = {"loading": 0.0, "exporting": 0.1, "converting": 0.3, "saving": 0.7, "verifying": 0.8}


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
    job = _Job(prepared, source_config, checked(config), out, span)
    return job.run(images)


class _Job(StagedSteps):
    stages = STAGES

    def __init__(self, prepared: Prepared, source_config: InspectConfig, config: ConvertConfig, out: Path,
                 span: Span) -> None:
        self.prepared, self.source_config, self.config, self.out, self.span = prepared, source_config, config, out, span
        self.reporter = span.reporter
        self.fraction = 0.0
        self.seconds: dict[str, float] = {}
        self.warnings: list[str] = []
        self.module: torch.nn.Module | None = None  # the PyTorch model, for conversion and reference
        self.program = None  # torch.export.ExportedProgram for .pt2 sources
        self.onnx_model = None  # onnx.ModelProto (no external data) for ONNX sources, read on demand
        self.layout = "NCHW"  # the network's input layout; ONNX sources may be NHWC
        self.model_color = "RGB"
        self.source_input = ""  # the source's input name, for messages
        self.pending: concurrent.futures.Future | None = None  # the source's outputs for the check
        self.preprocessing = preprocessing_spec(config)  # validated before anything is loaded
        self.size = tuple(self.preprocessing["input_size"]) if self.preprocessing else config.input_size

    # --- stages ------------------------------------------------------------------------------------

    def settle(self) -> None:
        """Wait for the source's run on the check's inputs; its errors are for verify() to report."""
        if self.pending is not None:
            concurrent.futures.wait([self.pending])

    def run(self, images: list[Path] | None) -> ConversionResult:
        config = self.config
        self.stage("loading")
        with timed(self.seconds, "loading"):
            self.load()
            if self.preprocessing and not (config.preprocessing or {}).get("model_color"):
                self.preprocessing["model_color"] = self.model_color
            cases, source = check_cases(
                images, samples=config.samples, shape=config.shape, size=self.size, layout=self.layout,
                model_color=self.model_color, preprocessing=self.preprocessing, reporter=self.reporter)
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
        shown = shape_text(dims)
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
        self.reporter.log(f"Converting the {kind} with OpenVINO's PyTorch frontend, input {shape_text(shape)}.")
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
                raise _RouteFailed(*explain_direct(e, source, shape)) from None
        advice = tracer_advice(caught)
        if advice:
            self.warn(advice)
        self.progress(STAGES["saving"] - 0.05)
        return model

    def trace(self, module: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
        """What ov.convert_model does with a module, less torch.jit.trace's check_trace: that re-traces
        the model and runs both traces again to catch a trace that differs from run to run, which
        costs more than the conversion itself; the equivalence check after saving compares the IR
        with the module on more inputs than that, so it covers what check_trace would catch."""
        try:
            with _trace_patches():
                return torch.jit.trace(module.eval(), (example,), strict=False, check_trace=False)
        except Exception as e:
            raise _RouteFailed(
                f"PyTorch could not trace the model on a {shape_text(list(example.shape))} example input: "
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
                how += f"; the {EXPORTER_WORDS[errors[0][0]]} failed: {export_problem(errors[0][1])}"
            return how
        raise _RouteFailed(*explain_export(errors))

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
        self.reporter.log(f"Converting the ONNX model with OpenVINO's ONNX frontend, input {shape_text(shape)}.")
        with timed(self.seconds, "converting"), _quiet():
            try:
                model = ov.convert_model(str(path), input=[ov.PartialShape(shape)])
            except Exception as e:
                message, short = explain_onnx(e, self.onnx_graph() if onnx_source else None)
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
            model = embed(model, self.preprocessing, self.layout, self.reporter)
        model.set_rt_info(route, ["vintner", "route"])
        model.set_rt_info(config.precision, ["vintner", "precision"])
        model.set_rt_info(json.dumps(self.preprocessing) if self.preprocessing else "none",
                          ["vintner", "preprocessing"])
        return model

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

    # --- the check ---------------------------------------------------------------------------------

    def verify(self, cases: list[Case], source: str, pending: concurrent.futures.Future | None
               ) -> tuple[list[TensorInfo], list[TensorInfo], Equivalence]:
        config = self.config
        model, compiled = read_ir(self.out / "model.xml")
        inputs = [port_info(port, f"input{i}") for i, port in enumerate(model.inputs)]
        outputs = [port_info(port, f"output{i}") for i, port in enumerate(model.outputs)]
        if self.preprocessing:
            self.check_preprocessed_input(model)
        self.reporter.log(f"Checking the IR against {self.reference_words()} on "
                          f"{sum(len(c.network) for c in cases)} "
                          f"{'dataset images' if source == 'dataset' else 'generated inputs'}.")
        expected = pending.result() if pending is not None else self.expected(cases)
        self.progress(0.9)
        tolerance = config.tolerance if config.tolerance is not None else DEFAULT_TOLERANCE[config.precision]
        equivalence = compare(compiled, cases, expected, tolerance=tolerance, source=source,
                              reference=self.reference_words(), hint=shape_hint(config.shape))
        if equivalence.within_tolerance:
            self.reporter.log(f"The IR matches its source: {summary(equivalence)}.")
        else:
            self.warn(f"The IR differs from its source beyond the tolerance: {summary(equivalence)}."
                      + (" The tracer warned that the model's control flow depends on its input (see above)."
                         if any("tracer" in w for w in self.warnings) else ""))
        return inputs, outputs, equivalence

    def check_preprocessed_input(self, model: ov.Model) -> None:
        port = model.input(0)
        if port.get_element_type() != ov.Type.u8:
            raise JobError("The saved IR does not take u8 images although preprocessing was embedded.")

    def reference_words(self) -> str:
        if self.module is None:
            return f"the ONNX model run by onnxruntime {_onnxruntime_version()}"
        return {"torchscript": "the TorchScript module", "torch_export": "the torch.export program",
                "state_dict": "the PyTorch module"}[self.prepared.format]

    def expected(self, cases: list[Case]) -> list[list[np.ndarray]]:
        return source_outputs(cases, module=self.module, onnx=self.prepared.folder / self.prepared.primary,
                              shape=self.network_shape(), hint=shape_hint(self.config.shape))


def _onnxruntime_version() -> str:
    from importlib.metadata import version

    return version("onnxruntime")


class _RouteFailed(Exception):
    """A route that did not work: a full message, and a short one for the route's reason."""

    def __init__(self, message: str, short: str) -> None:
        super().__init__(message)
        self.message, self.short = message, short


def _example(shape: list[int], size: tuple[int, int]) -> torch.Tensor:
    """An example input for tracing and export: `shape`, batch 1 and the chosen size where dynamic."""
    generator = torch.Generator().manual_seed(0)
    concrete = [1, 3, *size] if len(shape) == 4 and shape[1] == 3 else [1, *size, 3]
    return torch.randn(concrete, generator=generator)


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
