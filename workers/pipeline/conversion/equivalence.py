"""The check of an IR against its source: the inputs both run on, the source's outputs on them,
and how far the IR's differ."""

import functools
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from workers.pipeline.conversion.config import Equivalence
from workers.pipeline.conversion.explain import shape_text
from workers.pipeline.conversion.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from workers.pipeline.formats import one_line
from workers.pipeline.reporting import JobError, Reporter

# A bf16-capable CPU would otherwise run FP32 models in bf16; one stream suits a few batch-1 requests.
EXACT = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
MAX_IMAGE_SIDE = 1024
# torch's resize that does what each of the PrePostProcessor's resize algorithms does
EMBEDDED_RESIZE = {"bilinear": {"mode": "bilinear", "align_corners": False, "antialias": False},
                   "bicubic": {"mode": "bicubic", "align_corners": False, "antialias": False},
                   "nearest": {"mode": "nearest-exact"}}  # dataset images fed to an IR with embedded resizing are shrunk to this first


@functools.cache
def _core() -> ov.Core:
    return ov.Core()


@dataclass
class Case:
    """One batch of the check's inputs: the network's, and the IR's where preprocessing is embedded."""
    network: np.ndarray  # what the source's network takes, a batch
    ir: np.ndarray | None = None  # what the IR takes where preprocessing is embedded


# --- the inputs ------------------------------------------------------------------------------------

def check_cases(images: list[Path] | None, *, samples: int, shape: str, size: tuple[int, int], layout: str,
                model_color: str, preprocessing: dict | None, reporter: Reporter) -> tuple[list[Case], str]:
    """The inputs, grouped into the batches the IR runs; each with the network's input and,
    with embedded preprocessing, the u8 images the IR takes instead. `layout` and `model_color`
    are the network's; `size` is the height and width it sees."""
    count = samples
    height, width = size
    pictures, source = [], "generated"
    if images:
        pictures = _read_images(images[:count], reporter)
        if pictures:
            source = "dataset"
    rng = np.random.default_rng(0)
    if source == "generated":
        if preprocessing:  # u8 images at the network's size and at another one
            first = (count + 1) // 2
            pictures = [_random_image(rng, height, width) for _ in range(first)]
            pictures += [_random_image(rng, height + 13, width + 27) for _ in range(count - first)]
        else:
            return _generated_cases(count, shape, size, layout), source
    if len(pictures) == 1 and shape != "static":
        pictures = pictures * 2  # two batch sizes need two samples
    if preprocessing:
        return _preprocessed_cases(pictures, preprocessing, shape, layout), source
    tensors = [_normalise(_resize(picture, height, width), layout, model_color) for picture in pictures]
    second = (height + 32, width + 64)
    if shape == "dynamic":
        half = (len(pictures) + 1) // 2
        tensors = tensors[:half] + [_normalise(_resize(p, *second), layout, model_color) for p in pictures[half:]]
    return _batches([Case(t[None]) for t in tensors], shape), source


def _generated_cases(count: int, shape: str, size: tuple[int, int], layout: str) -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    height, width = size

    def sample(h: int, w: int) -> np.ndarray:
        dims = [1, h, w, 3] if layout == "NHWC" else [1, 3, h, w]
        return torch.randn(dims, generator=generator).numpy()

    if shape == "dynamic":
        half = (count + 1) // 2 if count > 1 else 1
        cases = [Case(sample(height, width)) for _ in range(half)]
        cases += [Case(sample(height + 32, width + 64)) for _ in range(count - half)]
        if count == 1:
            cases.append(Case(sample(height + 32, width + 64)))
    else:
        cases = [Case(sample(height, width)) for _ in range(max(count, 1 if shape == "static" else 2))]
    return _batches(cases, shape)


def _preprocessed_cases(pictures: list[np.ndarray], spec: dict, shape: str, layout: str) -> list[Case]:
    """Each picture (H×W×3 u8 RGB) as the IR takes it and, preprocessed here as the IR's embedded
    steps do it, as the source does."""
    height, width = spec["input_size"]
    unit = 255.0 if spec.get("value_range", "0-1") == "0-1" else 1.0
    mean = np.array(spec["mean"], dtype=np.float32).reshape(3, 1, 1)
    std = np.array(spec["std"], dtype=np.float32).reshape(3, 1, 1)
    mode = EMBEDDED_RESIZE[spec.get("resize", "bilinear")]
    cases = []
    for picture in pictures:
        shown = picture[..., ::-1] if spec["color"] == "BGR" else picture  # what the user feeds the IR
        ir = shown if spec["layout"] == "NHWC" else shown.transpose(2, 0, 1)
        network = picture[..., ::-1] if spec["model_color"] == "BGR" else picture
        chw = torch.from_numpy(np.ascontiguousarray(network.transpose(2, 0, 1))).float()[None]
        if chw.shape[2:] != (height, width):
            chw = torch.nn.functional.interpolate(chw, size=(height, width), **mode)
        tensor = ((chw[0].numpy() / unit - mean) / std).astype(np.float32)
        if layout == "NHWC":
            tensor = tensor.transpose(1, 2, 0)
        cases.append(Case(np.ascontiguousarray(tensor[None]), np.ascontiguousarray(ir[None])))
    return _batches(cases, shape)


def _read_images(paths: list[Path], reporter: Reporter) -> list[np.ndarray]:
    from PIL import Image

    from workers.pipeline.data import open_image

    pictures = []
    for path in paths:
        try:
            image = open_image(path)
        except Exception as e:
            reporter.log(f"Skipped {path.name} for the check: {one_line(e)}", level="warning")
            continue
        if max(image.size) > MAX_IMAGE_SIDE:
            image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.BILINEAR)
        pictures.append(np.asarray(image, dtype=np.uint8))
    if not pictures:
        reporter.log("None of the dataset images could be read; checking on generated inputs.", level="warning")
    return pictures


def _normalise(picture: np.ndarray, layout: str, model_color: str) -> np.ndarray:
    """A u8 RGB H×W×3 image as a normalised float tensor in the network's layout and colour."""
    if model_color == "BGR":
        picture = picture[..., ::-1]
    tensor = (picture.astype(np.float32) / 255.0 - np.array(IMAGENET_MEAN, np.float32)) / np.array(
        IMAGENET_STD, np.float32)
    return np.ascontiguousarray(tensor if layout == "NHWC" else tensor.transpose(2, 0, 1))


def _resize(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if picture.shape[:2] == (height, width):
        return picture
    return np.asarray(Image.fromarray(picture).resize((width, height), Image.Resampling.BILINEAR))


def _random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _batches(cases: list[Case], shape: str) -> list[Case]:
    """Static: one sample a run. Dynamic: the first sample alone, the rest of each size together."""
    if shape == "static" or len(cases) < 2:
        return cases
    groups: list[list[Case]] = [[cases[0]]]
    for case in cases[1:]:
        if len(groups) > 1 and _same(groups[-1][-1], case):
            groups[-1].append(case)
        else:
            groups.append([case])
    return [Case(np.concatenate([c.network for c in group]),
                 None if group[0].ir is None else np.concatenate([c.ir for c in group])) for group in groups]


def _same(a: Case, b: Case) -> bool:
    return a.network.shape == b.network.shape and (a.ir is None or a.ir.shape == b.ir.shape)


# --- the source's outputs --------------------------------------------------------------------------

def source_outputs(cases: list[Case], *, module: torch.nn.Module | None, onnx: Path, shape: list[int],
                   hint: str) -> list[list[np.ndarray]]:
    """The source's outputs on the check's inputs: the PyTorch `module`'s, or without one, those of
    onnxruntime's run of the `onnx` file at the network input `shape`. Says nothing to the
    reporter: it may run in a thread of its own."""
    independent = (module is not None and not module.training  # torchvision's own, in eval mode
                   and type(module).__module__.startswith("torchvision.models."))
    run = _run_torch(module) if module is not None else _run_onnx(onnx, shape, hint)
    return _reference_outputs(run, cases, hint, independent=independent)


def _run_torch(module: torch.nn.Module) -> Callable[[np.ndarray], list[np.ndarray]]:
    def run_torch(batch: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in _flat_outputs(module(torch.from_numpy(batch)))]

    return run_torch


def _run_onnx(path: Path, shape: list[int], hint: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """onnxruntime's run of the ONNX file: an engine other than the one that made the IR, so the
    check can find what OpenVINO's reading of the file got wrong. Its basic graph optimisations
    only (constant folding, dead nodes): the fused kernels of the higher levels are a second
    reading of the model too."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3  # errors only: the shape notes of a rewritten input are expected
    options.intra_op_num_threads = max(1, len(os.sched_getaffinity(0)))
    try:
        model = _onnx_at(path, shape, options)
        session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise JobError(f"onnxruntime could not run the source ONNX model at {shape_text(shape)} "
                       f"to compare the IR with it: {one_line(e).rstrip('.')}.{hint}") from None
    name = session.get_inputs()[0].name

    def run_onnx(batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(output) for output in session.run(None, {name: batch})]

    return run_onnx


def _onnx_at(path: Path, shape: list[int], options) -> str | bytes:
    """The ONNX model as onnxruntime takes it: its file, or where its input's fixed sizes differ
    from the network `shape` the IR was given (-1: any), a copy with that input shape, as OpenVINO
    was told; external weights are then read from the file's folder."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    initialized = {tensor.name for tensor in graph.graph.initializer}
    port = next(value for value in graph.graph.input if value.name not in initialized)
    dims = port.type.tensor_type.shape.dim
    fixed = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    if len(fixed) == len(shape) and all(have == want or have <= 0 for have, want in zip(fixed, shape)):
        return str(path)
    del dims[:]
    for index, size in enumerate(shape):
        dim = port.type.tensor_type.shape.dim.add()
        if size == -1:
            dim.dim_param = f"vintner_{index}"
        else:
            dim.dim_value = size
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(path.parent))
    return graph.SerializeToString()


def _reference_outputs(run: Callable[[np.ndarray], list[np.ndarray]], cases: list[Case], hint: str, *,
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
                shape = shape_text(list(cases[index].network.shape))
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


# --- the IR against them ---------------------------------------------------------------------------

def read_ir(xml: Path) -> tuple[ov.Model, ov.CompiledModel]:
    """The saved IR read back and compiled on the CPU at FP32 inference precision, for the check."""
    core = _core()
    try:
        model = core.read_model(str(xml))
        compiled = core.compile_model(model, "CPU", EXACT)
    except Exception as e:
        raise JobError(f"OpenVINO could not load the converted IR back on the CPU: {one_line(e)}") from None
    return model, compiled


def compare(compiled: ov.CompiledModel, cases: list[Case], expected: list[list[np.ndarray]], *,
            tolerance: float, source: str, reference: str, hint: str) -> Equivalence:
    """The IR's outputs on each case against the source's `expected` ones."""
    request = compiled.create_infer_request()
    diffs = Diffs()
    shapes = []
    for case, wanted in zip(cases, expected):
        feed = case.ir if case.ir is not None else case.network
        shapes.append(list(feed.shape))
        try:
            request.infer({0: feed})
        except Exception as e:
            raise JobError(f"The converted model fails on a {shape_text(list(feed.shape))} input: "
                           f"{one_line(e).rstrip('.')}.{hint}") from None
        got = [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]
        diffs.add(got, wanted)
    return Equivalence(
        samples=sum(len(c.network) for c in cases), max_abs_diff=diffs.max, mean_abs_diff=diffs.mean,
        top1_agreement=diffs.agreement, tolerance=tolerance,
        within_tolerance=diffs.max <= tolerance, source=source, reference=reference, shapes=shapes,
    )


class Diffs:
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


def summary(equivalence: Equivalence) -> str:
    """The check's result in one line: the differences, top-1 agreement, samples, shapes and tolerance."""
    shapes = equivalence.shapes
    return (f"max |difference| {_g(equivalence.max_abs_diff)}, mean {_g(equivalence.mean_abs_diff)}, top-1 "
            f"agreement {equivalence.top1_agreement:.0%} over {equivalence.samples} samples at "
            f"{len(set(map(tuple, shapes)))} shape{'s' if len(set(map(tuple, shapes))) > 1 else ''} "
            f"(tolerance {_g(equivalence.tolerance)})")


def _g(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3g}"
