"""Inspecting a prepared model by its format, and loading a PyTorch one as a module for later jobs."""

import torch

from workers.pipeline.formats.common import LABELS, InspectConfig, Inspection, Prepared
from workers.pipeline.formats.onnx_models import inspect_onnx
from workers.pipeline.outputs import score_count, scores_output
from workers.pipeline.formats.openvino_ir import inspect_ir
from workers.pipeline.formats.state_dicts import architecture, fit, inspect_state_dict, read_state_dict
from workers.pipeline.formats.text_folders import carried_details, inspect_transformers, reads_text
from workers.pipeline.formats.torch_programs import inspect_in_child
from workers.pipeline.reporting import JobError, Span


def inspect_model(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
    inspect = {
        "torchscript": inspect_in_child,
        "torch_export": inspect_in_child,
        "state_dict": inspect_state_dict,
        "onnx": inspect_onnx,
        "openvino_ir": inspect_ir,
        "transformers": inspect_transformers,
    }[prepared.format]
    span.raise_if_cancelled()
    inspection = inspect(prepared, config, span)
    if reads_text(inspection.inputs):
        inspection.modality = "text"
        inspection.details.update(carried_details(prepared.folder, span))
    _find_scores(inspection, prepared, span)
    span.progress(1.0)
    span.reporter.log(f"Inspected {LABELS[prepared.format]}: {inspection.parameters or 0:,} weights, "
                      f"{inspection.precision or 'no weights'}.")
    return inspection


def _find_scores(inspection: Inspection, prepared: Prepared, span: Span) -> None:
    """Which output holds the class scores and of what kind, and the class names the model
    carries (in the file, else beside it): kept only where they are as many as the scores."""
    outputs = [{"shape": o.shape, "dtype": o.dtype} for o in inspection.outputs]
    index = scores_output(outputs)
    inspection.scores_output = index
    inspection.scores = inspection.output_kinds[index] if index < len(inspection.output_kinds) else ""
    if not inspection.labels and prepared.labels:
        inspection.labels, inspection.labels_source = prepared.labels, prepared.labels_source
    count = score_count(outputs[index]["shape"]) if outputs else None
    if inspection.labels and count and len(inspection.labels) != count:
        span.reporter.log(f"Ignored the {len(inspection.labels)} class names in {inspection.labels_source}: the model "
                          f"gives {count} scores.", level="warning")
        inspection.labels, inspection.labels_source = [], ""
    elif inspection.labels:
        span.reporter.log(f"Read {len(inspection.labels)} class names from {inspection.labels_source}; "
                          "confirm them on the model's page.")


def load_torch_module(prepared: Prepared, config: InspectConfig) -> torch.nn.Module:
    """The model as a module, for later jobs (conversion, training). TorchScript and .pt2 run
    code as they load: call this only in a worker process."""
    path = prepared.folder / prepared.primary
    if prepared.format == "state_dict":
        arch, classes = architecture(config)
        state, _ = read_state_dict(prepared)
        return fit(state, arch, classes, prepared.primary)
    if prepared.format == "torchscript":
        return torch.jit.load(str(path), map_location="cpu").eval()
    if prepared.format == "torch_export":
        return torch.export.load(str(path)).module()
    raise JobError(f"{LABELS[prepared.format]} is not a PyTorch model; it cannot be loaded as one.")
