"""The graph of an OpenVINO IR or ONNX model, as JSON for the browser's graph view: its nodes
(operations, inputs, outputs, constants) in topological order, each with its type, short
attributes and output shapes, and the edges between them. No Django, no Celery.

Call it on files that formats.prepare_model and inspect_model have already checked: it reads the
IR with OpenVINO (weights memory-mapped, never run) and the ONNX file without its external data.

    {"format", "nodes": [{"id", "name", "type", "kind", "attrs", "outputs": [{"name", "shape", "dtype"}]}],
     "edges": [{"source", "port", "target", "name", "shape", "dtype"}], "inputs": [...], "outputs": [...],
     "truncated", "node_count"}

An edge leaves output `port` of its source. `kind` is "input", "output", "const" (a constant, or
an operation on constants only, such as the Convert that widens fp16 weights: the page hides
these until asked) or "op". Shapes are lists of ints with None for a dynamic dimension, or None
where even the rank is unknown. ONNX initializers are no nodes: they become attributes of the
nodes that read them ("W": "f32 [8, 3, 3, 3] · features.0.weight"), with their values where they
are small.
"""

import heapq
import math
from pathlib import Path

import onnx
import openvino

from workers.pipeline.formats import Prepared
from workers.pipeline.formats.onnx_models import onnx_dtype

MAX_ATTRS = 24  # per node; the rest are summed up in one "…" entry
MAX_TEXT = 80  # characters of one attribute's value
SMALL = 16  # elements of a constant small enough to show its values (a Reshape's target shape, an axis)


def model_graph(prepared: Prepared, *, max_nodes: int = 5000) -> dict:
    """The model's graph; beyond `max_nodes` only the first ones in topological order, with
    `truncated` set and `node_count` saying how many there are in all."""
    path = prepared.folder / prepared.primary
    if prepared.format == "openvino_ir":
        return _ir_graph(path, max_nodes)
    if prepared.format == "onnx":
        return _onnx_graph(path, max_nodes)
    raise ValueError(f"No graph for format {prepared.format!r}: only OpenVINO IR and ONNX have one.")


# --- OpenVINO IR -------------------------------------------------------------------------------

IR_KINDS = {"Parameter": "input", "Result": "output", "Constant": "const"}


def _ir_graph(xml: Path, max_nodes: int) -> dict:
    model = openvino.Core().read_model(str(xml), str(xml.with_suffix(".bin")))
    ops = list(model.get_ordered_ops())  # topological
    ids = {op.get_instance_id(): f"n{index}" for index, op in enumerate(ops)}
    kinds: dict[str, str] = {}
    nodes, edges = [], []
    for op in ops:
        node_id = ids[op.get_instance_id()]
        sources = [port.get_source_output() for port in op.inputs()]
        source_ids = [ids.get(source.get_node().get_instance_id()) for source in sources]
        kind = IR_KINDS.get(op.get_type_name(), "op")
        if kind == "op" and source_ids and all(kinds.get(source) == "const" for source in source_ids):
            kind = "const"  # folds to a constant: weights' Convert, a quantized weight's scale…
        kinds[node_id] = kind
        nodes.append({
            "id": node_id,
            "name": op.get_friendly_name(),
            "type": op.get_type_name(),
            "kind": kind,
            "attrs": _ir_attrs(op),
            "outputs": [_ir_port(port) for port in op.outputs()],
        })
        for source, source_id in zip(sources, source_ids):
            if source_id is not None:
                edges.append({"source": source_id, "port": source.get_index(), "target": node_id, **_ir_port(source)})
    inputs = [{**_ir_port(port), "node": ids.get(port.get_node().get_instance_id())} for port in model.inputs]
    outputs = [{**_ir_port(port), "node": ids.get(port.get_node().get_instance_id())} for port in model.outputs]
    return _result("openvino_ir", nodes, edges, inputs, outputs, max_nodes)


def _ir_port(port) -> dict:
    """An op's output: its tensor's (first) name, shape and element type."""
    names = sorted(port.get_names())
    partial = port.get_partial_shape()
    shape = [dim.get_length() if dim.is_static else None for dim in partial] if partial.rank.is_static else None
    dtype = port.get_element_type().get_type_name()
    return {"name": names[0] if names else "", "shape": shape, "dtype": "bool" if dtype == "boolean" else dtype}


def _ir_attrs(op) -> dict[str, str]:
    try:
        attrs = {name: _short(value) for name, value in op.get_attributes().items()}
    except Exception:  # an extension op whose attributes its Python binding cannot visit
        attrs = {}
    if op.get_type_name() == "Constant" and _count(op.get_output_partial_shape(0)) <= SMALL:
        try:
            attrs["value"] = _short(op.get_data().ravel().tolist())
        except Exception:  # element types numpy lacks (u1, i4, nf4…)
            pass
    version = op.get_type_info().version_id
    if version:
        attrs["version"] = version
    return _capped(attrs)


def _count(partial) -> int:
    if partial.is_dynamic:
        return SMALL + 1
    return math.prod(dim.get_length() for dim in partial)


# --- ONNX --------------------------------------------------------------------------------------

def _onnx_graph(path: Path, max_nodes: int) -> dict:
    model = onnx.load(str(path), load_external_data=False)
    try:  # shapes between nodes; a model with custom ops may not infer, and then keeps what it says
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        pass
    graph = model.graph
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    for sparse in graph.sparse_initializer:
        initializers.setdefault(sparse.values.name, sparse.values)
    values = {value.name: _onnx_value(value) for value in [*graph.value_info, *graph.input, *graph.output]}

    def port(name: str) -> dict:
        shape, dtype = values.get(name, (None, ""))
        if name in initializers and name not in values:
            shape, dtype = list(initializers[name].dims), onnx_dtype(initializers[name].data_type)
        return {"name": name, "shape": shape, "dtype": dtype}

    nodes: list[dict] = []
    producers: dict[str, tuple[str, int]] = {}  # tensor name -> the node that makes it, and which output
    graph_inputs = [value for value in graph.input if value.name not in initializers]
    kinds: dict[str, str] = {}
    for value in graph_inputs:
        node_id = f"n{len(nodes)}"
        producers[value.name] = (node_id, 0)
        kinds[node_id] = "input"
        nodes.append({"id": node_id, "name": value.name, "type": "Input", "kind": "input", "attrs": {},
                      "outputs": [port(value.name)]})
    operations = _topological(graph.node)
    edges = []
    for node in operations:
        node_id = f"n{len(nodes)}"
        given = [name for name in node.input if name]
        folds = given and all(name in initializers or (name in producers and kinds[producers[name][0]] == "const")
                              for name in given)
        kind = "const" if node.op_type == "Constant" or folds else "op"
        kinds[node_id] = kind
        nodes.append({
            "id": node_id,
            "name": node.name or (node.output[0] if node.output else node.op_type),
            "type": node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}",
            "kind": kind,
            "attrs": _onnx_attrs(node, initializers, opsets),
            "outputs": [port(name) if name else {"name": "", "shape": None, "dtype": ""} for name in node.output],
        })
        for name in node.input:
            if name and name not in initializers and name in producers:
                edges.append(_edge(producers[name], node_id, port(name)))
        for index, name in enumerate(node.output):
            if name:
                producers[name] = (node_id, index)
    for value in graph.output:
        node_id = f"n{len(nodes)}"
        nodes.append({"id": node_id, "name": value.name, "type": "Output", "kind": "output", "attrs": {},
                      "outputs": []})
        if value.name in producers:
            edges.append(_edge(producers[value.name], node_id, port(value.name)))
    ids_by_name = {node["name"]: node["id"] for node in nodes if node["kind"] in ("input", "output")}
    inputs = [{**port(value.name), "node": ids_by_name.get(value.name)} for value in graph_inputs]
    outputs = [{**port(value.name), "node": ids_by_name.get(value.name)} for value in graph.output]
    return _result("onnx", nodes, edges, inputs, outputs, max_nodes)


def _edge(source: tuple[str, int], target: str, port: dict) -> dict:
    return {"source": source[0], "port": source[1], "target": target, **port}


def _topological(operations) -> list:
    """ONNX asks for nodes in topological order, but not every exporter keeps to it: Kahn's
    algorithm, which keeps the file's order where it may. Nodes in a cycle (an invalid model)
    come last, in the file's order."""
    operations = list(operations)
    producer = {}
    for index, node in enumerate(operations):
        for name in node.output:
            if name:
                producer[name] = index
    needs = [{producer[name] for name in node.input if name in producer and producer[name] != index}
             for index, node in enumerate(operations)]
    users: list[list[int]] = [[] for _ in operations]
    for index, sources in enumerate(needs):
        for source in sources:
            users[source].append(index)
    waiting = [len(sources) for sources in needs]
    ready = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for user in users[index]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    placed = set(order)
    order += [index for index in range(len(operations)) if index not in placed]
    return [operations[index] for index in order]


def _onnx_attrs(node, initializers: dict, opsets: dict) -> dict[str, str]:
    attrs = {attribute.name: _onnx_attribute(attribute) for attribute in node.attribute}
    if any(name in initializers for name in node.input):
        slots = _input_names(node, opsets)
        for index, name in enumerate(node.input):
            if name in initializers:
                slot = slots[index] if index < len(slots) else f"input {index}"
                attrs[slot if slot not in attrs else f"{slot} (input)"] = _initializer(initializers[name])
    return _capped(attrs)


def _input_names(node, opsets: dict) -> list[str]:
    """The operator's names for its inputs (Conv: X, W, B), from the ONNX schema where known."""
    domain = node.domain or "ai.onnx"
    try:
        schema = onnx.defs.get_schema(node.op_type, opsets.get(domain, opsets.get("ai.onnx", 1)), node.domain)
    except Exception:  # a custom domain, an unknown op
        return []
    names = [formal.name for formal in schema.inputs]
    if schema.inputs and schema.inputs[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
        names += [f"{names[-1]} {index}" for index in range(len(names), len(node.input))]
    return names


def _initializer(tensor: onnx.TensorProto) -> str:
    text = f"{onnx_dtype(tensor.data_type)} {_dims(list(tensor.dims))}" + (f" · {tensor.name}" if tensor.name else "")
    if math.prod(tensor.dims) <= SMALL and tensor.data_location != onnx.TensorProto.EXTERNAL:
        try:
            text += " = " + _short(onnx.numpy_helper.to_array(tensor).ravel().tolist())
        except Exception:  # dtypes numpy cannot hold
            pass
    return _clip(text)


def _onnx_attribute(attribute: onnx.AttributeProto) -> str:
    kind = attribute.type
    if kind == onnx.AttributeProto.TENSOR:
        return _initializer(attribute.t)
    if kind == onnx.AttributeProto.GRAPH:
        return f"graph ({len(attribute.g.node)} nodes)"
    if kind == onnx.AttributeProto.GRAPHS:
        return f"{len(attribute.graphs)} graphs"
    if kind == onnx.AttributeProto.TENSORS:
        return f"{len(attribute.tensors)} tensors"
    if kind in (onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.SPARSE_TENSORS, onnx.AttributeProto.TYPE_PROTO,
                onnx.AttributeProto.TYPE_PROTOS):
        return onnx.AttributeProto.AttributeType.Name(kind).lower()
    try:
        value = onnx.helper.get_attribute_value(attribute)
    except Exception:
        return "?"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif isinstance(value, list):
        value = [item.decode("utf-8", "replace") if isinstance(item, bytes) else item for item in value]
    return _short(value)


def _onnx_value(value: onnx.ValueInfoProto) -> tuple[list | None, str]:
    if not value.type.HasField("tensor_type"):
        return None, value.type.WhichOneof("value") or ""
    tensor = value.type.tensor_type
    shape = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim] \
        if tensor.HasField("shape") else None
    return shape, onnx_dtype(tensor.elem_type) if tensor.elem_type else ""


# --- shared ------------------------------------------------------------------------------------

def _result(fmt: str, nodes: list[dict], edges: list[dict], inputs: list[dict], outputs: list[dict],
            max_nodes: int) -> dict:
    kept = nodes[:max(max_nodes, 0)]
    ids = {node["id"] for node in kept}
    return {
        "format": fmt,
        "nodes": kept,
        "edges": [edge for edge in edges if edge["source"] in ids and edge["target"] in ids],
        "inputs": [{**port, "node": port["node"] if port["node"] in ids else None} for port in inputs],
        "outputs": [{**port, "node": port["node"] if port["node"] in ids else None} for port in outputs],
        "truncated": len(kept) < len(nodes),
        "node_count": len(nodes),
    }


def _short(value: object) -> str:
    """An attribute's value as a short string: [1, 1], 0.5, true, "explicit"."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_short(item) for item in value[:64]) + (", …" if len(value) > 64 else "") + "]"
    else:
        text = str(value)
    return _clip(text)


def _clip(text: str) -> str:
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _dims(shape: list) -> str:
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in shape) + "]"


def _capped(attrs: dict[str, str]) -> dict[str, str]:
    if len(attrs) <= MAX_ATTRS:
        return attrs
    kept = dict(list(attrs.items())[:MAX_ATTRS])
    kept["…"] = f"{len(attrs) - MAX_ATTRS} more"
    return kept
