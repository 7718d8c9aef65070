"""Inspecting a prepared model by its format, and loading a PyTorch one as a module for later jobs."""

import torch

from workers.pipeline.formats.common import LABELS, InspectConfig, Inspection, Prepared
from workers.pipeline.formats.onnx_models import _inspect_onnx
from workers.pipeline.formats.openvino_ir import _inspect_ir
from workers.pipeline.formats.state_dicts import _architecture, _fit, _inspect_state_dict, _read_state_dict
from workers.pipeline.formats.torch_programs import _inspect_in_child
from workers.pipeline.reporting import JobError, Span


def inspect_model(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
    inspect = {
        "torchscript": _inspect_in_child,
        "torch_export": _inspect_in_child,
        "state_dict": _inspect_state_dict,
        "onnx": _inspect_onnx,
        "openvino_ir": _inspect_ir,
    }[prepared.format]
    span.raise_if_cancelled()
    inspection = inspect(prepared, config, span)
    span.progress(1.0)
    span.reporter.log(f"Inspected {LABELS[prepared.format]}: {inspection.parameters or 0:,} weights, "
                      f"{inspection.precision or 'no weights'}.")
    return inspection


def load_torch_module(prepared: Prepared, config: InspectConfig) -> torch.nn.Module:
    """The model as a module, for later jobs (conversion, training). TorchScript and .pt2 run
    code as they load: call this only in a worker process."""
    path = prepared.folder / prepared.primary
    if prepared.format == "state_dict":
        arch, classes = _architecture(config)
        state, _ = _read_state_dict(prepared)
        return _fit(state, arch, classes, prepared.primary)
    if prepared.format == "torchscript":
        return torch.jit.load(str(path), map_location="cpu").eval()
    if prepared.format == "torch_export":
        return torch.export.load(str(path)).module()
    raise JobError(f"{LABELS[prepared.format]} is not a PyTorch model; it cannot be loaded as one.")
