"""OpenVINO IR (.xml and .bin): the XML parsed without DTDs or entities and every weight slice
checked against model.bin before OpenVINO reads them, then inspected.
"""

import math
from pathlib import Path

import defusedxml
import defusedxml.ElementTree
import openvino

from workers.pipeline.formats.common import (
    InspectConfig, Inspection, Prepared, TensorInfo, folder_size, one_line,
)
from workers.pipeline.formats.labels import ir_labels
from workers.pipeline.outputs import scores_kind_of_op
from workers.pipeline.formats.tensors import NOT_WEIGHTS, precision
from workers.pipeline.reporting import JobError, Span, show


def inspect_ir(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
    """An OpenVINO IR's inspection, its XML and weight slices checked before OpenVINO reads them."""
    xml, weights = prepared.folder / "model.xml", prepared.folder / "model.bin"
    root = _parse_ir_xml(xml)
    _check_ir_weights(root, weights)
    span.progress(0.3)
    try:
        model = openvino.Core().read_model(str(xml), str(weights))
    except Exception as e:  # OpenVINO raises RuntimeError with its parser's message
        raise JobError(f"OpenVINO could not read model.xml: {one_line(e)}") from None
    constants = [(op.get_output_element_type(0).get_type_name(), math.prod(op.get_output_shape(0)))
                 for op in model.get_ordered_ops() if op.get_type_name() == "Constant"]
    runtime = root.find("rt_info/Runtime_version")
    framework = root.find("rt_info/conversion_parameters/framework")
    labels = ir_labels(root)
    return Inspection(
        format="openvino_ir",
        inputs=[port_info(port, f"input{i}") for i, port in enumerate(model.inputs)],
        outputs=[port_info(port, f"output{i}") for i, port in enumerate(model.outputs)],
        parameters=sum(count for dtype, count in constants if dtype not in NOT_WEIGHTS),
        size_bytes=folder_size(prepared.folder),
        precision=precision(constants),
        opset=None,
        ir_version=root.get("version"),
        traces=None,
        trace_error="",
        details={
            "name": model.get_friendly_name(),
            "runtime_version": runtime.get("value", "") if runtime is not None else "",
            "framework": framework.get("value", "") if framework is not None else "",
        },
        output_kinds=[scores_kind_of_op(port.get_node().input_value(0).get_node().get_type_name())
                      for port in model.outputs],  # the op feeding each Result
        labels=labels,
        labels_source="the IR's runtime info" if labels else "",
    )


def check_ir_files(xml: Path, weights: Path) -> None:
    """An IR's XML parsed without DTDs or entities and its weight slices checked against its .bin,
    before OpenVINO reads either (also for the tokenizer IR a text model carries)."""
    _check_ir_weights(_parse_ir_xml(xml), weights)


def _parse_ir_xml(xml: Path):
    try:  # DTDs are how entity expansion and external references get in: none is allowed
        root = defusedxml.ElementTree.parse(str(xml), forbid_dtd=True, forbid_entities=True,
                                            forbid_external=True).getroot()
    except defusedxml.DefusedXmlException:
        raise JobError("model.xml contains a DOCTYPE or entity declarations, which are not allowed "
                       "in an OpenVINO IR.") from None
    except Exception as e:  # ParseError
        raise JobError(f"model.xml is not well-formed XML ({one_line(e)}).") from None
    if root.tag != "net":
        raise JobError(f"model.xml is not an OpenVINO IR: its root element is <{root.tag[:40]}>, not <net>.")
    return root


def _check_ir_weights(root, weights: Path) -> None:
    """Every Const layer's slice of model.bin lies inside it."""
    needed = 0
    for layer in root.iter("layer"):
        data = layer.find("data")
        if layer.get("type", "").lower() != "const" or data is None or data.get("offset") is None:
            continue
        try:
            offset, size = int(data.get("offset")), int(data.get("size", "0"))
        except ValueError:
            offset = size = -1
        if offset < 0 or size < 0:
            raise JobError(f"model.xml gives Const layer “{show(layer.get('name', '?'))}” an invalid "
                           "offset or size in model.bin.")
        needed = max(needed, offset + size)
    actual = weights.stat().st_size if weights.exists() else 0
    if needed > actual:
        raise JobError(f"model.bin does not match model.xml (it is {actual:,} bytes; "
                       f"the XML needs at least {needed:,}).")


def port_info(port, fallback: str) -> TensorInfo:
    """An OpenVINO model port as a TensorInfo: its first name (else `fallback`), dims (None: dynamic)."""
    names = sorted(port.get_names())
    shape = port.get_partial_shape()
    dims = [dim.get_length() if dim.is_static else None for dim in shape] if shape.rank.is_static else []
    dtype = port.get_element_type().get_type_name()
    return TensorInfo(names[0] if names else fallback, dims, "bool" if dtype == "boolean" else dtype)
