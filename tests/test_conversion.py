"""Converting uploaded models to OpenVINO IR: every source format, both routes, every shape,
precision and preprocessing choice (a pairwise-covering set of combinations, with tiny real
models), each IR read back and checked against its source; and the failures a user meets said in
their terms."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from torch import nn

from tests import model_builders as mb
from tests.fakes import FakeReporter
from workers.pipeline.conversion import ConversionResult, ConvertConfig, Equivalence, convert, job
from workers.pipeline.formats import InspectConfig, Prepared, prepare_model
from workers.pipeline.reporting import Cancelled, JobError, Span

# torch.jit.* warn that they are deprecated; TorchScript uploads still exist, so the tests make them.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning", "ignore::torch.jit.TracerWarning")

SIZE = mb.SIZE  # 32
STATE = InspectConfig(architecture="mobilenet_v3_small", num_classes=3, input_size=64)
PLAIN = InspectConfig()


class Recorder(FakeReporter):
    def __init__(self, cancel_after: int | None = None) -> None:
        super().__init__(cancel_after)
        self.stages: list[str] = []

    def stage(self, name: str) -> None:
        self.stages.append(name)

    def said(self, level: str | None = None) -> str:
        return "\n".join(message for lvl, message in self.logs if level is None or lvl == level)


class Branchy(nn.Module):
    """Python control flow on a tensor's value: tracing keeps only the branch the example took."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if x.sum() > 0:
            return y.mean((2, 3))
        return -y.amax((2, 3))


class LogGamma(nn.Module):
    """aten::lgamma: neither OpenVINO's PyTorch frontend nor ONNX has it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(self.conv(x).abs() + 1).mean((2, 3))


def custom_op_onnx(path: Path, domain: str) -> Path:
    """Relu → FancyNorm (in `domain`; "" is the standard one, where no such op exists) → pool."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu0"),
             helper.make_node("FancyNorm", ["r"], ["y"], name="fancy_norm_1", domain=domain),
             helper.make_node("GlobalAveragePool", ["y"], ["z"], name="pool")]
    graph = helper.make_graph(nodes, "custom",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 1, 1])])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Prepared]:
    """Every source format, prepared once for the module (as uploads are)."""
    folder = tmp_path_factory.mktemp("sources")
    files = {
        "torchscript": mb.torchscript(folder / "net.pt"),
        "torch_export": mb.torch_export(folder / "net.pt2"),  # exported at [1,3,32,32]: static
        "state_dict": mb.state_dict(folder / "weights.pth"),  # mobilenet_v3_small, 3 classes
        "onnx": mb.onnx_file(folder / "net.onnx"),  # fixed at [1,3,32,32]
    }
    auto = torch.export.Dim.AUTO
    torch.export.save(torch.export.export(mb.tiny_net(), (torch.randn(2, 3, SIZE, SIZE),),
                                          dynamic_shapes=({0: auto, 2: auto, 3: auto},)), folder / "dynamic.pt2")
    files["torch_export_dynamic"] = folder / "dynamic.pt2"
    torch.onnx.export(mb.tiny_net(), (mb.example(),), folder / "dynamic.onnx", dynamo=False, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n"}})
    files["onnx_dynamic"] = folder / "dynamic.onnx"
    torch.jit.save(torch.jit.script(LogGamma().eval()), folder / "lgamma.pt")
    files["lgamma_torchscript"] = folder / "lgamma.pt"
    torch.export.save(torch.export.export(LogGamma().eval(), (mb.example(),)), folder / "lgamma.pt2")
    files["lgamma_export"] = folder / "lgamma.pt2"
    torch.jit.save(torch.jit.script(Branchy().eval()), folder / "branchy.pt")
    files["branchy_scripted"] = folder / "branchy.pt"
    files["custom_domain_onnx"] = custom_op_onnx(folder / "custom.onnx", "com.example.vision")
    files["unknown_op_onnx"] = custom_op_onnx(folder / "unknown.onnx", "")
    prepared = {name: prepare_model([(path, path.name)], folder / f"prepared-{name}", span())
                for name, path in files.items()}
    xml, weights = mb.openvino_ir(folder / "ir")
    prepared["openvino_ir"] = prepare_model([(xml, "model.xml"), (weights, "model.bin")], folder / "prepared-ir",
                                            span())
    return prepared


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> list[Path]:
    """A few images as a dataset holds them: various sizes and modes, and one damaged file."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    paths = []
    for index, (size, mode) in enumerate([((40, 30), "RGB"), ((32, 32), "RGB"), ((64, 48), "L"), ((50, 70), "RGBA")]):
        pixels = rng.integers(0, 256, (size[1], size[0], {"RGB": 3, "L": 1, "RGBA": 4}[mode]), dtype=np.uint8)
        path = folder / f"{index}.png"
        Image.fromarray(pixels.squeeze()).save(path)  # L, RGB or RGBA by the channel count
        paths.append(path)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return paths + [folder / "broken.jpg"]


def span(reporter: FakeReporter | None = None) -> Span:
    return Span(reporter or FakeReporter(), 0.0, 1.0)


def run(sources: dict, name: str, tmp_path: Path, reporter: Recorder | None = None, *,
        images: list[Path] | None = None, **settings) -> ConversionResult:
    source_config = STATE if name == "state_dict" else PLAIN
    settings.setdefault("input_size", (64, 64) if name == "state_dict" else (SIZE, SIZE))
    return convert(sources[name], source_config, ConvertConfig(**settings), tmp_path / "ir", span(reporter),
                   images=images)


def refusal(sources: dict, name: str, tmp_path: Path, **settings) -> str:
    with pytest.raises(JobError) as caught:
        run(sources, name, tmp_path, **settings)
    return str(caught.value)


def weight_types(xml: Path) -> set[str]:
    model = ov.Core().read_model(str(xml))
    return {op.get_output_element_type(0).get_type_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "Constant" and op.get_output_element_type(0).is_real()}


# --- the matrix --------------------------------------------------------------------------------------

BGR_NCHW = {"layout": "NCHW", "color": "BGR", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
RGB = {"color": "RGB"}  # NHWC, ImageNet's mean and std

# source, route, shape, precision, preprocessing, names: every pair of values of any two of
# source, route, shape, precision and preprocessing meets in at least one row where the source allows
# it (a static .pt2 and a fixed-size ONNX file take only the shapes they were made for).
MATRIX = [
    ("torchscript", "direct", "static", "fp32", None, False),
    ("torchscript", "onnx", "dynamic", "fp16", BGR_NCHW, True),
    ("torchscript", "auto", "dynamic_batch", "fp32", RGB, False),
    ("torch_export", "direct", "static", "fp16", RGB, True),
    ("torch_export", "auto", "static", "fp32", BGR_NCHW, False),
    ("torch_export_dynamic", "onnx", "dynamic_batch", "fp32", None, False),
    ("torch_export_dynamic", "direct", "dynamic", "fp32", BGR_NCHW, True),
    ("torch_export_dynamic", "auto", "dynamic", "fp16", None, False),
    ("state_dict", "direct", "dynamic_batch", "fp16", None, False),
    ("state_dict", "onnx", "static", "fp32", RGB, True),
    ("state_dict", "auto", "dynamic", "fp32", BGR_NCHW, False),
    ("onnx", "direct", "static", "fp16", BGR_NCHW, False),
    ("onnx", "onnx", "static", "fp32", None, True),
    ("onnx_dynamic", "auto", "dynamic", "fp32", RGB, True),
    ("onnx_dynamic", "onnx", "dynamic_batch", "fp16", BGR_NCHW, False),
    ("onnx_dynamic", "direct", "dynamic_batch", "fp32", None, False),
]


@pytest.mark.parametrize("name,route,shape,precision,preprocessing,named", MATRIX,
                         ids=["-".join(str(v if not isinstance(v, dict) else v["color"]) for v in row[:5])
                              for row in MATRIX])
def test_conversion_matrix(sources, tmp_path, name, route, shape, precision, preprocessing, named):
    reporter = Recorder()
    names = {"input_name": "pixels", "output_name": "scores"} if named else {}
    result = run(sources, name, tmp_path, reporter, route=route, shape=shape, precision=precision,
                 preprocessing=preprocessing, samples=4, **names)

    xml = tmp_path / "ir" / "model.xml"
    assert result.folder == tmp_path / "ir" and xml.exists() and (tmp_path / "ir" / "model.bin").exists()
    model = ov.Core().read_model(str(xml))  # every IR loads
    pytorch = not name.startswith("onnx")
    assert result.route == ("direct" if pytorch and route in ("direct", "auto") else "onnx")
    assert result.route_reason

    # the shape asked for; with preprocessing, u8 images of any size
    size = 64 if name == "state_dict" else SIZE
    port = model.input(0)
    if preprocessing:
        assert port.get_element_type() == ov.Type.u8
        batch = port.get_partial_shape()[0]
        assert batch.is_static == (shape == "static")
        spatial = [1, 2] if preprocessing.get("layout", "NHWC") == "NHWC" else [2, 3]
        assert all(port.get_partial_shape()[i].is_dynamic for i in spatial)
        assert result.preprocessing and result.preprocessing["color"] == preprocessing["color"]
        assert "Embedded preprocessing" in reporter.said()
    else:
        expected = {"static": f"[1,3,{size},{size}]", "dynamic_batch": f"[?,3,{size},{size}]",
                    "dynamic": "[?,3,?,?]"}[shape]
        assert str(port.get_partial_shape()).replace(" ", "") == expected
        assert port.get_element_type() == ov.Type.f32 and result.preprocessing is None

    # names: as asked, else the source's (PyTorch: input / output)
    source_names = ("input", "output") if pytorch else ("image", "logits")
    wanted = ("pixels", "scores") if named else source_names
    assert port.get_any_name() == wanted[0] and model.output(0).get_any_name() == wanted[1]
    assert (result.inputs[0].name, result.outputs[0].name) == wanted

    # precision: FP32 really is FP32; FP16 compresses the weights
    kinds = weight_types(xml)
    assert ("f16" in kinds) == (precision == "fp16")
    if precision == "fp32":
        assert kinds == {"f32"}

    # equivalence: checked at every shape the choice allows, within the default tolerance
    check = result.equivalence
    assert check.tolerance == (1e-4 if precision == "fp32" else 1e-2)
    assert check.within_tolerance, (check, reporter.said())
    assert check.max_abs_diff <= check.tolerance and check.top1_agreement == 1.0
    assert check.source == "generated" and check.samples == 4
    assert len({tuple(s) for s in check.shapes}) >= (1 if shape == "static" and not preprocessing else 2)
    if shape != "static":
        assert len({s[0] for s in check.shapes}) >= 2  # two batch sizes
    assert "matches its source" in reporter.said()

    # the job's stages, in order, and a bar that only moves forward to the end
    assert reporter.stages[0] == "loading" and reporter.stages[-2:] == ["saving", "verifying"]
    assert ("exporting" in reporter.stages) == (pytorch and route == "onnx")
    assert reporter.fractions == sorted(reporter.fractions) and reporter.fractions[-1] == 1.0
    json.dumps(result.as_dict())  # storable as is


def test_the_matrix_covers_every_pair():
    """Each value of each option appears, and every two options' values meet somewhere."""
    family = {"torchscript": "torchscript", "torch_export": "torch_export", "torch_export_dynamic": "torch_export",
              "state_dict": "state_dict", "onnx": "onnx", "onnx_dynamic": "onnx"}
    rows = [(family[n], r, s, p, "none" if pre is None else pre["color"]) for n, r, s, p, pre, _ in MATRIX]
    values = [set(column) for column in zip(*rows)]
    assert values[0] == {"torchscript", "torch_export", "state_dict", "onnx"}
    assert values[1] == {"direct", "onnx", "auto"} and values[2] == {"static", "dynamic_batch", "dynamic"}
    assert values[3] == {"fp32", "fp16"} and values[4] == {"none", "RGB", "BGR"}
    for i in range(5):
        for j in range(i + 1, 5):
            pairs = {(row[i], row[j]) for row in rows}
            missing = {(a, b) for a in values[i] for b in values[j]} - pairs
            assert not missing, (i, j, missing)
    assert any(named for *_, named in MATRIX) and not all(named for *_, named in MATRIX)


# --- checking against the source -----------------------------------------------------------------

def test_equivalence_on_dataset_images(sources, tmp_path, dataset):
    reporter = Recorder()
    result = run(sources, "torchscript", tmp_path, reporter, shape="dynamic", images=dataset, samples=8)
    check = result.equivalence
    assert check.source == "dataset" and check.samples == 4  # the damaged file is skipped, and said so
    assert check.within_tolerance and check.top1_agreement == 1.0
    assert {tuple(s[2:]) for s in check.shapes} == {(SIZE, SIZE), (SIZE + 32, SIZE + 64)}
    assert "broken.jpg" in reporter.said("warning")


def test_equivalence_on_dataset_images_through_embedded_preprocessing(sources, tmp_path, dataset):
    """The IR gets the images as they are (any size, u8); the source gets them preprocessed here."""
    result = run(sources, "onnx_dynamic", tmp_path, route="onnx", shape="dynamic_batch", images=dataset[:4],
                 preprocessing={"color": "BGR", "layout": "NHWC"})
    check = result.equivalence
    assert check.source == "dataset" and check.samples == 4 and check.within_tolerance
    assert {tuple(s[1:3]) for s in check.shapes} == {(30, 40), (32, 32), (48, 64), (70, 50)}
    assert result.inputs[0].dtype == "u8" and result.inputs[0].shape == [None, None, None, 3]


def test_a_difference_beyond_the_tolerance_is_flagged_not_raised(sources, tmp_path):
    reporter = Recorder()
    result = run(sources, "torchscript", tmp_path, reporter, precision="fp16", tolerance=1e-9)
    assert not result.equivalence.within_tolerance and result.equivalence.tolerance == 1e-9
    assert result.equivalence.max_abs_diff > 1e-9
    assert "beyond the tolerance" in reporter.said("warning") and result.warnings


def test_onnx_sources_are_compared_with_onnxruntime_not_with_openvino_itself(sources, tmp_path):
    """Two engines' float sums differ in their last bits: a difference of exactly 0 would mean the
    IR was compared with OpenVINO's own reading of the file."""
    result = run(sources, "onnx", tmp_path)
    check = result.equivalence
    assert check.reference.startswith("the ONNX model run by onnxruntime ")
    assert 0 < check.max_abs_diff <= check.tolerance and check.within_tolerance and check.top1_agreement == 1.0
    assert "ONNX frontend" in result.route_reason


def test_onnxruntime_disagreeing_beyond_the_tolerance_is_flagged(sources, tmp_path):
    """A model fixed at batch 1 converted for any batch: onnxruntime runs it at the batches the IR
    gets (its input rewritten in memory, as OpenVINO was told), and a difference beyond the
    tolerance is a warning that names the reference."""
    reporter = Recorder()
    result = run(sources, "onnx", tmp_path, reporter, shape="dynamic_batch", tolerance=1e-12)
    check = result.equivalence
    assert {s[0] for s in check.shapes} == {1, 3} and check.max_abs_diff > 1e-12 and not check.within_tolerance
    assert "beyond the tolerance" in reporter.said("warning") and "onnxruntime" in reporter.said()


# --- failures said in the user's terms ----------------------------------------------------------------

def test_an_op_openvino_cannot_convert_is_named_with_where_it_is(sources, tmp_path):
    message = refusal(sources, "lgamma_export", tmp_path, route="direct")
    assert "aten.lgamma" in message and "“lgamma”" in message  # the op and its node
    assert "lgamma(" in message  # the line of code
    assert "ONNX route" in message


def test_auto_tries_onnx_after_direct_and_names_both_failures(sources, tmp_path):
    reporter = Recorder()
    with pytest.raises(JobError) as caught:
        run(sources, "lgamma_torchscript", tmp_path, reporter, route="auto")
    message = str(caught.value)
    assert message.startswith("Both routes failed")
    assert "Direct conversion: OpenVINO's PyTorch frontend has no conversion for aten::lgamma" in message
    assert "Via ONNX:" in message and "opset 17 has no aten::lgamma" in message
    assert "Trying the ONNX route" in reporter.said("warning")
    assert "exporting" in reporter.stages


def test_auto_falls_back_to_onnx_and_says_why(sources, tmp_path, monkeypatch):
    original = ov.convert_model

    def no_pytorch_frontend(model, **kwargs):
        if not isinstance(model, (str, Path)):
            raise RuntimeError("Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp"
                               ":151:\nFrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted.\n"
                               "Summary:\n-- No conversion rule found for operations: aten::_convolution\n")
        return original(model, **kwargs)

    monkeypatch.setattr(ov, "convert_model", no_pytorch_frontend)
    result = run(sources, "torchscript", tmp_path, route="auto", shape="dynamic_batch")
    assert result.route == "onnx"
    assert result.route_reason.startswith("direct conversion failed (OpenVINO cannot convert aten::_convolution)")
    assert "converted via ONNX (opset 17" in result.route_reason
    assert result.equivalence.within_tolerance


def test_onnx_with_a_custom_domain_op_names_it_and_its_node(sources, tmp_path):
    message = refusal(sources, "custom_domain_onnx", tmp_path)
    assert "com.example.vision.FancyNorm" in message and "“fancy_norm_1”" in message
    assert "custom" in message


def test_onnx_with_an_unknown_op_names_the_op_type(sources, tmp_path):
    message = refusal(sources, "unknown_op_onnx", tmp_path, route="onnx")
    assert "no conversion for FancyNorm (node “fancy_norm_1”)" in message


def test_data_dependent_control_flow_in_torchscript_converts_both_branches(sources, tmp_path):
    """Scripted, the branch is part of the graph (an If): the IR takes both paths."""
    result = run(sources, "branchy_scripted", tmp_path, route="direct", samples=8)
    assert result.equivalence.within_tolerance and result.equivalence.top1_agreement == 1.0


def test_data_dependent_control_flow_traced_directly_is_called_out(sources, tmp_path, monkeypatch):
    """An eager module is traced: the tracer's warning becomes advice, and the check shows the cost."""
    monkeypatch.setattr(job, "load_torch_module", lambda prepared, config: Branchy().eval())
    reporter = Recorder()
    result = run(sources, "state_dict", tmp_path, reporter, route="direct", input_size=(SIZE, SIZE), samples=8)
    warned = reporter.said("warning")
    assert "Make the model traceable" in warned and "torch.where" in warned
    # seeded inputs with sums of both signs: one branch is wrong in the IR
    assert not result.equivalence.within_tolerance and result.equivalence.top1_agreement < 1.0


def test_an_openvino_ir_is_refused(sources, tmp_path):
    assert "already an OpenVINO IR" in refusal(sources, "openvino_ir", tmp_path)


def test_a_fixed_size_onnx_model_says_which_size_it_takes(sources, tmp_path):
    message = refusal(sources, "onnx", tmp_path, input_size=(64, 64))
    assert "fixed at 32×32" in message and "set the input size to 32×32" in message


def test_a_static_pt2_cannot_take_a_dynamic_batch(sources, tmp_path):
    message = refusal(sources, "torch_export", tmp_path, shape="dynamic_batch")
    assert "exported for inputs [1,3,32,32]" in message and "dynamic_shapes" in message


@pytest.mark.parametrize("settings,words", [
    ({"route": "fast"}, "route"),
    ({"shape": "ragged"}, "shape"),
    ({"precision": "int8"}, "fp32 or fp16"),
    ({"opset": 5}, "opset"),
    ({"input_size": (0, 32)}, "input size"),
    ({"samples": 0}, "samples"),
    ({"tolerance": -1.0}, "tolerance"),
    ({"input_name": "a b"}, "input name"),
    ({"preprocessing": {"mean": [123.7, 116.3, 103.5]}}, "0–1 units"),
    ({"preprocessing": {"colour": "RGB"}}, "Unknown preprocessing setting colour"),
    ({"preprocessing": {"color": "YUV"}}, "RGB or BGR"),
])
def test_settings_are_checked_before_anything_runs(sources, tmp_path, settings, words):
    assert words in refusal(sources, "torchscript", tmp_path, **settings)
    assert not (tmp_path / "ir").exists()


def test_cancelling_stops_between_stages(sources, tmp_path):
    with pytest.raises(Cancelled):
        run(sources, "torchscript", tmp_path, Recorder(cancel_after=0))
    with pytest.raises(Cancelled):
        run(sources, "torchscript", tmp_path, Recorder(cancel_after=2))


def test_the_result_as_stored():
    result = ConversionResult(
        route="direct", route_reason="direct conversion succeeded", folder=Path("/x/ir"), inputs=[], outputs=[],
        equivalence=Equivalence(samples=8, max_abs_diff=float("inf"), mean_abs_diff=0.5, top1_agreement=1.0,
                                tolerance=1e-4, within_tolerance=False, source="generated"))
    stored = json.loads(json.dumps(result.as_dict()))
    assert "folder" not in stored and stored["equivalence"]["max_abs_diff"] is None  # a jail path means nothing outside
    assert replace(ConvertConfig(), precision="fp16").precision == "fp16"


def test_opset_18_uses_the_torch_export_based_exporter(sources, tmp_path, monkeypatch):
    monkeypatch.setattr(job, "load_torch_module", lambda prepared, config: mb.tiny_net())
    result = run(sources, "state_dict", tmp_path, route="onnx", shape="dynamic", opset=18, input_size=(SIZE, SIZE))
    assert result.route_reason == "converted via ONNX (opset 18, the torch.export-based exporter), as chosen"
    assert result.equivalence.within_tolerance and result.inputs[0].shape == [None, 3, None, None]


def test_a_pt2_program_goes_to_onnx_at_opset_18_and_says_so(sources, tmp_path):
    result = run(sources, "torch_export", tmp_path, route="onnx")
    assert "opset 18, the torch.export-based exporter; opset 17 was asked for" in result.route_reason


def test_an_op_in_a_traced_module_is_named_with_its_line(sources, tmp_path, monkeypatch):
    monkeypatch.setattr(job, "load_torch_module", lambda prepared, config: LogGamma().eval())
    message = refusal(sources, "state_dict", tmp_path, route="direct", input_size=(SIZE, SIZE))
    assert message.startswith("OpenVINO's PyTorch frontend has no conversion for aten::lgamma (at test_conversion.py:")
    assert "in forward()" in message and "ONNX route" in message
