"""ONNX models: external data checked to be plain files inside the model's folder before onnx
reads them, then the model checked and inspected.
"""

import itertools
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

import onnx
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from workers.pipeline.formats.common import (
    InspectConfig, Inspection, Prepared, TensorInfo, folder_size, one_line,
)
from workers.pipeline.formats.labels import onnx_labels
from workers.pipeline.outputs import scores_kind_of_op
from workers.pipeline.formats.tensors import NOT_WEIGHTS, precision
from workers.pipeline.reporting import JobError, Span, show


def checked_external_files(model, folder: Path, name: str) -> set[str]:
    """The external data files an ONNX model names (normalised relative paths), each checked: a
    plain path inside `folder`, a file there, the tensor's range inside it."""
    locations = set()
    for tensor in external_tensors(model):
        info = external_info(tensor, name)
        check_external_file(folder, tensor.name, info, name)
        locations.add(normal(info.location))
    return locations


def inspect_onnx(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
    """An ONNX model's inspection, its external data checked before onnx reads it."""
    path, name = prepared.folder / prepared.primary, prepared.primary
    model = read_onnx(path, name)
    locations = checked_external_files(model, prepared.folder, name)
    span.progress(0.3)
    try:
        onnx.checker.check_model(str(path))  # the path form reads external data, and models over 2 GB
    except Exception as e:  # ValidationError, and the C++ checker's other complaints
        raise JobError(f"“{name}” fails ONNX's model check: {one_line(e)}") from None
    graph = model.graph
    initialized = {tensor.name for tensor in graph.initializer}
    weights = [(onnx_dtype(t.data_type), math.prod(t.dims)) for t in graph.initializer]
    metadata = {p.key: p.value for p in model.metadata_props}
    labels = onnx_labels(metadata)
    makers = {name: node.op_type for node in graph.node for name in node.output}
    return Inspection(
        format="onnx",
        inputs=[_onnx_info(value) for value in graph.input if value.name not in initialized],
        outputs=[_onnx_info(value) for value in graph.output],
        parameters=sum(count for dtype, count in weights if dtype not in NOT_WEIGHTS),
        size_bytes=folder_size(prepared.folder),
        precision=precision(weights),
        opset=next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        ir_version=str(model.ir_version),
        traces=None,
        trace_error="",
        details={
            "producer": " ".join(filter(None, (model.producer_name, model.producer_version))),
            "graph": graph.name,
            "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "external_data": sorted(locations),
            "metadata": {key: value[:200] for key, value in list(metadata.items())[:20]},
        },
        output_kinds=[scores_kind_of_op(makers.get(value.name, "")) for value in graph.output],
        labels=labels,
        labels_source="the ONNX model's metadata" if labels else "",
    )


def read_onnx(path: Path, name: str) -> onnx.ModelProto:
    """The ONNX model without its external data, or a JobError where `path` is not ONNX."""
    try:
        return onnx.load(str(path), load_external_data=False)  # its data files are checked first
    except Exception as e:  # protobuf's DecodeError, and the like
        raise JobError(f"“{show(name)}” is not a valid ONNX model ({one_line(e)}).") from None


def external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor whose data lives in another file: initializers, and Constant nodes' values
    in the graph, its subgraphs and the model's local functions."""
    tensors = _graph_tensors(model.graph)
    for function in model.functions:
        tensors = itertools.chain(tensors, _node_tensors(function.node))
    return (tensor for tensor in tensors if uses_external_data(tensor))


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    yield from _node_tensors(graph.node)


def _node_tensors(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.TensorProto]:
    for node in nodes:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)
            for graph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _graph_tensors(graph)


def external_info(tensor: onnx.TensorProto, name: str) -> ExternalDataInfo:
    """Where `tensor`'s external data lies, or a JobError where the model describes it wrongly."""
    try:
        return ExternalDataInfo(tensor)
    except ValueError as e:
        raise JobError(f"“{show(name)}” describes the external data of tensor “{show(tensor.name)}” "
                       f"wrongly ({one_line(e)}).") from None


DRIVE = re.compile(r"^[A-Za-z]:")


def check_location_text(tensor: str, location: str, name: str) -> None:
    """External data must name a file at or below the model's folder, written the one plain way."""
    if not location or "\0" in location:
        reason = "which is not a file name"
    elif "\\" in location or DRIVE.match(location):
        reason = "a Windows path; use a relative path with /"
    elif location.startswith("/"):
        reason = "an absolute path"
    elif ".." in PurePosixPath(location).parts:
        reason = "a path that leads outside the model's folder"
    else:
        return
    raise JobError(f"“{show(name)}” refers to external data for tensor “{show(tensor)}” at "
                   f"“{show(location)}”, {reason}. External data must be files next to the model "
                   "(or in a folder below it).")


def check_external_file(folder: Path, tensor: str, info: ExternalDataInfo, name: str) -> None:
    """The data file is a regular file inside `folder`, reached without links, and holds the range."""
    location = info.location
    check_location_text(tensor, location, name)
    path, problem = folder, ""
    for part in PurePosixPath(normal(location)).parts:  # every step, so no link anywhere on the way
        path = path / part
        if path.is_symlink():
            problem = "is a symbolic link, which is not allowed"
            break
    else:
        if not path.exists():
            problem = "does not exist (put the data files in the zip, next to the .onnx)"
        elif not path.is_file():
            problem = "is not a regular file"
        elif not path.resolve().is_relative_to(folder.resolve()):
            problem = "leads outside the model's folder"
    if problem:
        raise JobError(f"“{show(name)}” refers to external data for tensor “{show(tensor)}” at "
                       f"“{show(location)}”, which {problem}.")
    size, offset = path.stat().st_size, info.offset or 0
    end = offset + info.length if info.length is not None else offset
    if end > size:
        raise JobError(f"“{show(name)}” needs bytes {offset:,}–{end:,} of “{show(location)}” for tensor "
                       f"“{show(tensor)}”, but that file is only {size:,} bytes.")


def normal(location: str) -> str:
    """An external data location written one way, without "." steps."""
    return PurePosixPath(*[part for part in PurePosixPath(location).parts if part != "."]).as_posix()


ONNX_DTYPES = {"FLOAT": "f32", "FLOAT16": "f16", "BFLOAT16": "bf16", "DOUBLE": "f64", "INT8": "i8", "UINT8": "u8",
               "INT16": "i16", "UINT16": "u16", "INT32": "i32", "UINT32": "u32", "INT64": "i64", "UINT64": "u64",
               "BOOL": "bool", "INT4": "i4", "UINT4": "u4", "STRING": "string"}


def onnx_dtype(data_type: int) -> str:
    known = data_type in onnx.TensorProto.DataType.values()
    name = onnx.TensorProto.DataType.Name(data_type) if known else str(data_type)
    return ONNX_DTYPES.get(name, name.lower())


def _onnx_info(value: onnx.ValueInfoProto) -> TensorInfo:
    if not value.type.HasField("tensor_type"):
        return TensorInfo(value.name, [], value.type.WhichOneof("value") or "")
    tensor = value.type.tensor_type
    shape = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
    return TensorInfo(value.name, shape if tensor.HasField("shape") else [], onnx_dtype(tensor.elem_type))
