"""Model graphs for the browser's graph view, from real (tiny) OpenVINO IR and ONNX models built
here: the operations are there with their attributes and shapes, every edge joins two nodes,
and a graph too big to draw is cut in topological order and says so."""

import json
from pathlib import Path

import onnx
import openvino
import pytest

from tests import model_builders as build
from workers.pipeline.formats import Prepared
from workers.pipeline.graphs import model_graph


def ir(folder: Path, **options) -> Prepared:
    build.openvino_ir(folder, **options)
    return Prepared(format="openvino_ir", folder=folder, primary="model.xml")


def onnx_model(folder: Path) -> Prepared:
    folder.mkdir(parents=True, exist_ok=True)
    build.onnx_file(folder / "model.onnx")
    return Prepared(format="onnx", folder=folder, primary="model.onnx")


def by_type(graph: dict, kind: str) -> list[dict]:
    return [node for node in graph["nodes"] if node["type"] == kind]


def assert_well_formed(graph: dict) -> None:
    """JSON as it is stored, ids unique, and every edge going forward between two of its nodes."""
    assert json.loads(json.dumps(graph, allow_nan=False)) == graph
    order = {node["id"]: index for index, node in enumerate(graph["nodes"])}
    assert len(order) == len(graph["nodes"])
    for edge in graph["edges"]:
        assert order[edge["source"]] < order[edge["target"]], edge  # topological
    for node in graph["nodes"]:
        assert set(node) >= {"id", "name", "type", "kind", "attrs", "outputs"}
        assert node["kind"] in ("input", "output", "const", "op")
        assert all(isinstance(value, str) and len(value) <= 80 for value in node["attrs"].values())


def test_an_ir_graph_has_its_operations_weights_and_shapes(tmp_path):
    graph = model_graph(ir(tmp_path / "ir"))
    assert_well_formed(graph)
    assert graph["format"] == "openvino_ir" and graph["truncated"] is False
    assert graph["node_count"] == len(graph["nodes"])
    types = {node["type"] for node in graph["nodes"]}
    assert {"Parameter", "Convolution", "Relu", "MatMul", "Constant", "Result"} <= types

    (conv,) = by_type(graph, "Convolution")
    assert conv["kind"] == "op"
    assert conv["attrs"]["strides"] == "[1, 1]" and conv["attrs"]["pads_begin"] == "[1, 1]"
    assert conv["outputs"] == [{"name": "", "shape": [1, 8, 32, 32], "dtype": "f32"}]
    feeding = {edge["source"]: edge for edge in graph["edges"] if edge["target"] == conv["id"]}
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert sorted(nodes[source]["type"] for source in feeding) == ["Constant", "Parameter"]
    weights = next(edge for source, edge in feeding.items() if nodes[source]["type"] == "Constant")
    assert weights["shape"] == [8, 3, 3, 3] and nodes[weights["source"]]["kind"] == "const"

    assert {node["kind"] for node in by_type(graph, "Parameter")} == {"input"}
    assert {node["kind"] for node in by_type(graph, "Result")} == {"output"}
    reshape_target = next(node for node in by_type(graph, "Constant") if node["attrs"].get("value") == "[-1, 8]")
    assert reshape_target["attrs"]["shape"] == "[2]"  # small constants show their values
    assert graph["inputs"] == [{"name": "x", "shape": [1, 3, 32, 32], "dtype": "f32", "node": "n0"}]
    assert [port["shape"] for port in graph["outputs"]] == [[1, 3]]
    assert nodes[graph["outputs"][0]["node"]]["type"] == "Result"


def test_dynamic_dimensions_are_none(tmp_path):
    graph = model_graph(ir(tmp_path / "ir", dynamic=True))
    assert_well_formed(graph)
    assert graph["inputs"][0]["shape"] == [None, 3, None, None]
    (conv,) = by_type(graph, "Convolution")
    assert conv["outputs"][0]["shape"] == [None, 8, None, None]


def test_fp16_weights_and_their_convert_count_as_constants(tmp_path):
    """compress_to_fp16 stores weights as f16 Constants widened by a Convert: both fold away."""
    build.openvino_ir(tmp_path / "fp32")
    model = openvino.Core().read_model(tmp_path / "fp32" / "model.xml")
    openvino.save_model(model, tmp_path / "fp16" / "model.xml", compress_to_fp16=True)
    graph = model_graph(Prepared(format="openvino_ir", folder=tmp_path / "fp16", primary="model.xml"))
    assert_well_formed(graph)
    converts = by_type(graph, "Convert")
    assert converts and {node["kind"] for node in converts} == {"const"}
    assert {node["kind"] for node in by_type(graph, "Convolution")} == {"op"}


def test_an_onnx_graph_folds_initializers_into_the_nodes_that_read_them(tmp_path):
    graph = model_graph(onnx_model(tmp_path / "onnx"))
    assert_well_formed(graph)
    assert graph["format"] == "onnx" and graph["truncated"] is False
    types = [node["type"] for node in graph["nodes"]]
    assert types == ["Input", "Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm", "Output"]
    names = {node["name"] for node in graph["nodes"]}
    assert "features.0.weight" not in names  # initializers are no nodes

    (conv,) = by_type(graph, "Conv")
    assert conv["attrs"]["W"] == "f32 [8, 3, 3, 3] · features.0.weight"
    assert conv["attrs"]["B"].startswith("f32 [8] · features.0.bias = [")  # small: its values
    assert conv["attrs"]["kernel_shape"] == "[3, 3]" and conv["attrs"]["group"] == "1"
    assert conv["outputs"][0]["shape"] == [1, 8, 32, 32]  # inferred
    (gemm,) = by_type(graph, "Gemm")
    assert gemm["attrs"]["B"] == "f32 [3, 8] · classifier.weight" and gemm["attrs"]["transB"] == "1"

    chain = [(edge["source"], edge["target"]) for edge in graph["edges"]]
    ids = [node["id"] for node in graph["nodes"]]
    assert chain == list(zip(ids, ids[1:]))  # a straight line, input to output
    assert [edge["shape"] for edge in graph["edges"]] == [[1, 3, 32, 32], [1, 8, 32, 32], [1, 8, 32, 32],
                                                         [1, 8, 1, 1], [1, 8], [1, 3]]
    assert graph["inputs"] == [{"name": "image", "shape": [1, 3, 32, 32], "dtype": "f32", "node": ids[0]}]
    assert graph["outputs"] == [{"name": "logits", "shape": [1, 3], "dtype": "f32", "node": ids[-1]}]


def test_onnx_nodes_out_of_order_come_back_sorted(tmp_path):
    prepared = onnx_model(tmp_path / "onnx")
    model = onnx.load(prepared.folder / "model.onnx")
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    onnx.save(model, prepared.folder / "model.onnx")
    graph = model_graph(prepared)
    assert_well_formed(graph)
    assert [node["type"] for node in graph["nodes"]][1:-1] == ["Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]


def test_onnx_external_data_is_not_read(tmp_path):
    prepared = onnx_model(tmp_path / "onnx")
    model = onnx.load(prepared.folder / "model.onnx")
    onnx.save(model, prepared.folder / "model.onnx", save_as_external_data=True,
              location="weights.bin", size_threshold=0)
    (prepared.folder / "weights.bin").write_bytes(b"")  # were it read, the values would be garbage or fail
    graph = model_graph(prepared)
    (conv,) = by_type(graph, "Conv")
    assert conv["attrs"]["B"] == "f32 [8] · features.0.bias"  # dims only, no values


@pytest.mark.parametrize("fmt", ["openvino_ir", "onnx"])
def test_a_big_graph_keeps_its_first_nodes_and_says_it_is_cut(tmp_path, fmt):
    prepared = ir(tmp_path / "m") if fmt == "openvino_ir" else onnx_model(tmp_path / "m")
    whole = model_graph(prepared)
    cut = model_graph(prepared, max_nodes=4)
    assert_well_formed(cut)
    assert cut["truncated"] is True and whole["truncated"] is False
    assert cut["node_count"] == whole["node_count"] == len(whole["nodes"]) > 4
    assert cut["nodes"] == whole["nodes"][:4]
    kept = {node["id"] for node in cut["nodes"]}
    assert cut["edges"] == [edge for edge in whole["edges"] if edge["source"] in kept and edge["target"] in kept]
    assert cut["edges"]
    assert cut["outputs"][0]["node"] is None  # the output node was cut
    assert model_graph(prepared, max_nodes=whole["node_count"])["truncated"] is False


def test_other_formats_have_no_graph(tmp_path):
    with pytest.raises(ValueError, match="only OpenVINO IR and ONNX"):
        model_graph(Prepared(format="torchscript", folder=tmp_path, primary="model.pt"))
