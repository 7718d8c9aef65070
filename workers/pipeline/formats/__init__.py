"""Uploaded models, which are untrusted: recognise their format, put their files under canonical
names, and inspect them (inputs, outputs, size, precision, whether they trace). No Django, no Celery.

Nothing uploaded runs in this process. PyTorch pickles are scanned without running them and
loaded only with `weights_only=True`; TorchScript and torch.export programs, which are code, are
loaded only in a child process under memory and time limits (`_inspect_child`); ONNX external
data paths, and IR entities and weight offsets, are checked before a library reads the files.
"""

from workers.pipeline.formats.common import (
    ARCHITECTURES,
    FORMATS,
    LABELS,
    InspectConfig,
    Inspection,
    Prepared,
    TensorInfo,
    one_line,
)
from workers.pipeline.formats.inspection import inspect_model, load_torch_module
from workers.pipeline.formats.preparing import prepare_model

__all__ = [
    "ARCHITECTURES",
    "FORMATS",
    "LABELS",
    "InspectConfig",
    "Inspection",
    "Prepared",
    "TensorInfo",
    "inspect_model",
    "load_torch_module",
    "one_line",
    "prepare_model",
]
