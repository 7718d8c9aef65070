"""Preprocessing embedded in the IR with OpenVINO's PrePostProcessor: its settings, checked and
with defaults filled in, and the steps that put it in front of the network."""

import math
from collections.abc import Sequence

import openvino as ov

from workers.pipeline.conversion.config import ConvertConfig
from workers.pipeline.formats import one_line
from workers.pipeline.preprocessing import IMAGENET_MEAN, IMAGENET_STD, RESIZES, VALUE_RANGES
from workers.pipeline.reporting import JobError, Reporter

PREPROCESSING_KEYS = {"layout", "color", "model_color", "mean", "std", "input_size", "resize", "value_range"}


def preprocessing_spec(config: ConvertConfig) -> dict | None:
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
    resize = str(spec.get("resize") or "bilinear")
    value_range = str(spec.get("value_range") or "0-1")
    if resize not in RESIZES:
        raise JobError(f"The preprocessing resize is one of {', '.join(RESIZES)}; got “{resize}”.")
    if value_range not in VALUE_RANGES:
        raise JobError(f"The preprocessing value_range is one of {', '.join(VALUE_RANGES)}; got “{value_range}”.")
    if value_range == "0-1" and (max(map(abs, mean)) > 1 or max(std) > 1):
        raise JobError(f"The preprocessing mean and std are in 0–1 units (as torchvision writes them, e.g. mean "
                       f"{_numbers(IMAGENET_MEAN)}); got mean {_numbers(mean)}, std {_numbers(std)}.")
    size = spec.get("input_size") or config.input_size
    if isinstance(size, int):
        size = (size, size)
    if not (isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) and 8 <= v <= 4096 for v in size)):
        raise JobError(f"The preprocessing input_size must be [height, width] from 8 to 4096; got {size!r}.")
    return {"layout": layout, "color": color, "model_color": network_color, "mean": mean, "std": std,
            "input_size": [int(size[0]), int(size[1])], "resize": resize, "value_range": value_range}


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


def embed(model: ov.Model, spec: dict, layout: str, reporter: Reporter) -> ov.Model:
    """`model`, whose input is in `layout`, with the preprocessing `spec` in front: it then takes u8 images."""
    from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

    colors = {"RGB": ColorFormat.RGB, "BGR": ColorFormat.BGR}
    processor = PrePostProcessor(model)
    step = processor.input(0)
    step.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout(spec["layout"])) \
        .set_color_format(colors[spec["color"]]).set_spatial_dynamic_shape()
    step.model().set_layout(ov.Layout(layout))
    pre = step.preprocess().convert_element_type(ov.Type.f32)
    if spec["color"] != spec["model_color"]:
        pre.convert_color(colors[spec["model_color"]])
    algorithms = {"bilinear": ResizeAlgorithm.RESIZE_LINEAR, "bicubic": ResizeAlgorithm.RESIZE_CUBIC,
                  "nearest": ResizeAlgorithm.RESIZE_NEAREST}
    pre.resize(algorithms[spec["resize"]])
    unit = 255.0 if spec["value_range"] == "0-1" else 1.0  # the u8 pixels are in 0-255 units
    pre.mean([value * unit for value in spec["mean"]]).scale([value * unit for value in spec["std"]])
    try:
        built = processor.build()
    except Exception as e:
        raise JobError(f"OpenVINO could not embed the preprocessing: {one_line(e)}") from None
    height, width = spec["input_size"]
    reporter.log(f"Embedded preprocessing: u8 {spec['layout']} {spec['color']} images of any size → "
                 f"resize ({spec['resize']}) to {height}×{width}"
                 f"{' → ' + spec['model_color'] if spec['color'] != spec['model_color'] else ''} → "
                 f"({'x/255' if spec['value_range'] == '0-1' else 'x'} − mean)/std, mean {_numbers(spec['mean'])}, std {_numbers(spec['std'])}.")
    return built


def _numbers(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
