"""Uploaded models, prepared and inspected: every format with real (tiny) models built here, and
hostile uploads refused with a clear sentence before anything in them can run or be read."""

import json
import os
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import onnx
import openvino
import pytest
import safetensors.torch
import torch
import torchvision
from onnx.external_data_helper import set_external_data
from torch import nn

from tests.fakes import FakeReporter
from workers.pipeline.formats import (
    ARCHITECTURES,
    FORMATS,
    InspectConfig,
    Prepared,
    TensorInfo,
    inspect_model,
    load_torch_module,
    prepare_model,
)
from workers.pipeline.reporting import Cancelled, JobError, Span

# torch.jit.* warn that they are deprecated; TorchScript uploads still exist, so the tests make them.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

SIZE = 32
SMALL = InspectConfig(input_size=SIZE)


class SmallNet(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


SMALL_PARAMETERS = 8 * 3 * 3 * 3 + 8 + 8 * 3 + 3


class RunsCommand:
    """Unpickling it runs a shell command: what a hostile checkpoint does."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        return os.system, (f"touch {self.canary}",)


class RunsPython:
    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        import builtins

        return builtins.exec, (f"open({str(self.canary)!r}, 'w').close()",)


# --- helpers and fixtures ----------------------------------------------------------------------

def span() -> Span:
    return Span(FakeReporter(), 0.0, 1.0)


def prepare(tmp_path: Path, *files: Path, declared: str = "", names: list[str] | None = None) -> Prepared:
    sources = [(path, name) for path, name in zip(files, names or [p.name for p in files])]
    return prepare_model(sources, tmp_path / "out", span(), declared_format=declared)


def refused(tmp_path: Path, *files: Path, declared: str = "") -> str:
    with pytest.raises(JobError) as caught:
        prepare(tmp_path, *files, declared=declared)
    return str(caught.value)


def inspect(prepared: Prepared, config: InspectConfig = SMALL, reporter: FakeReporter | None = None):
    return inspect_model(prepared, config, Span(reporter or FakeReporter(), 0.0, 1.0))


def zip_of(path: Path, entries: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content if isinstance(content, bytes) else content.read_bytes())
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Files of the small network in every format, made once for the module."""
    folder = tmp_path_factory.mktemp("built")
    torch.manual_seed(0)
    net, x = SmallNet().eval(), torch.rand(1, 3, SIZE, SIZE)
    torch.jit.save(torch.jit.script(net), folder / "net.pt")
    batch = torch.export.Dim("batch", min=1, max=64)
    pair = torch.rand(2, 3, SIZE, SIZE)  # a batch of 1 would be specialised to 1
    torch.export.save(torch.export.export(net, (pair,), dynamic_shapes={"x": {0: batch}}), folder / "net.pt2")
    torch.onnx.export(net, (x,), folder / "net.onnx", dynamo=False, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    ir = openvino.convert_model(net, example_input=x, input=[1, 3, SIZE, SIZE])
    openvino.save_model(ir, folder / "net.xml", compress_to_fp16=False)
    dynamic = openvino.convert_model(net, example_input=x, input=[-1, 3, SIZE, SIZE])
    openvino.save_model(dynamic, folder / "dynamic" / "net.xml", compress_to_fp16=False)
    torch.save(net, folder / "whole.pth")
    return folder


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> tuple[dict, int]:
    """A resnet18 state_dict with 3 classes (~45 MB), and its parameter count."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    return model.state_dict(), sum(p.numel() for p in model.parameters())


_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks stay for the process; it records only while a test asks


@pytest.fixture
def opened():
    """Paths this process opens (Python-level) during the test."""
    global _opened
    _opened = []
    yield _opened
    _opened = None


# --- every format, inspected -------------------------------------------------------------------

def test_names_are_the_fixed_interface():
    assert FORMATS == ("torchscript", "torch_export", "state_dict", "onnx", "openvino_ir", "transformers")
    assert {"resnet18", "resnet50", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny"} <= set(ARCHITECTURES)


def test_torchscript(tmp_path, built):
    prepared = prepare(tmp_path, built / "net.pt")
    assert (prepared.format, prepared.primary) == ("torchscript", "model.pt")
    assert os.listdir(prepared.folder) == ["model.pt"]
    inspection = inspect(prepared)
    assert inspection.inputs == [TensorInfo("x", [1, 3, SIZE, SIZE], "f32")]
    assert inspection.outputs == [TensorInfo("output", [1, 3], "f32")]
    assert inspection.parameters == SMALL_PARAMETERS
    assert (inspection.precision, inspection.traces, inspection.trace_error) == ("fp32", True, "")
    assert inspection.size_bytes == (built / "net.pt").stat().st_size
    assert inspection.details["class"] == "SmallNet"
    json.dumps(inspection.as_dict())
    assert load_torch_module(prepared, SMALL)(torch.rand(2, 3, SIZE, SIZE)).shape == (2, 3)


def test_torchscript_is_recognised_by_content_not_name(tmp_path, built):
    renamed = tmp_path / "weights.pth"
    shutil.copy(built / "net.pt", renamed)
    assert prepare(tmp_path, renamed).format == "torchscript"
    message = refused(tmp_path / "again", renamed, declared="state_dict")
    assert "“weights.pth”" in message and "state_dict" in message and "TorchScript" in message


class TwoInputs(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


def test_torchscript_that_does_not_run_on_an_image_batch(tmp_path):
    path = tmp_path / "two.pt"
    torch.jit.save(torch.jit.script(TwoInputs()), path)
    inspection = inspect(prepare(tmp_path, path))
    assert inspection.traces is False
    assert inspection.trace_error.startswith(f"forward() failed on a [1, 3, {SIZE}, {SIZE}] float input: ")
    assert inspection.inputs == [TensorInfo("x", [], ""), TensorInfo("y", [], "")]
    assert (inspection.outputs, inspection.parameters, inspection.precision) == ([], 0, "")


def test_torch_export_with_a_dynamic_batch(tmp_path, built):
    prepared = prepare(tmp_path, built / "net.pt2")
    assert (prepared.format, prepared.primary) == ("torch_export", "model.pt2")
    inspection = inspect(prepared)
    assert inspection.inputs == [TensorInfo("x", [None, 3, SIZE, SIZE], "f32")]
    assert [(o.shape, o.dtype) for o in inspection.outputs] == [([None, 3], "f32")]
    assert (inspection.parameters, inspection.precision, inspection.traces) == (SMALL_PARAMETERS, "fp32", True)
    assert list(inspection.details["dynamic_dims"].values()) == [[1, 64]]
    assert load_torch_module(prepared, SMALL)(torch.rand(5, 3, SIZE, SIZE)).shape == (5, 3)


def test_state_dict_pth_unwraps_a_checkpoint(tmp_path, resnet):
    state, parameters = resnet
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": state, "epoch": 12, "best_acc": 0.9}, path)
    prepared = prepare(tmp_path, path)
    assert (prepared.format, prepared.primary) == ("state_dict", "weights.pth")
    config = InspectConfig(architecture="resnet18", num_classes=3, input_size=SIZE)
    inspection = inspect(prepared, config)
    assert inspection.inputs == [TensorInfo("input", [1, 3, SIZE, SIZE], "f32")]
    assert inspection.outputs == [TensorInfo("output", [1, 3], "f32")]
    assert (inspection.parameters, inspection.precision, inspection.traces) == (parameters, "fp32", True)
    assert inspection.details["unwrapped"] == "model"
    assert inspection.details["architecture"] == "resnet18" and inspection.details["num_classes"] == 3
    module = load_torch_module(prepared, config)
    assert torch.equal(module.fc.weight, state["fc.weight"])


def test_state_dict_safetensors(tmp_path, resnet):
    state, parameters = resnet
    path = tmp_path / "resnet.safetensors"
    safetensors.torch.save_file(state, path, metadata={"source": "test"})
    prepared = prepare(tmp_path, path, declared="state_dict")
    assert (prepared.format, prepared.primary) == ("state_dict", "weights.safetensors")
    inspection = inspect(prepared, InspectConfig(architecture="resnet18", num_classes=3, input_size=SIZE))
    assert (inspection.parameters, inspection.outputs[0].shape, inspection.traces) == (parameters, [1, 3], True)
    assert inspection.details["metadata"] == {"source": "test"}


def test_state_dict_that_does_not_fit_says_why(tmp_path, resnet):
    path = tmp_path / "resnet.safetensors"
    safetensors.torch.save_file(resnet[0], path)
    prepared = prepare(tmp_path, path)
    with pytest.raises(JobError, match=r"the checkpoint's classifier \(fc\) has 3 classes, you said 5"):
        inspect(prepared, InspectConfig(architecture="resnet18", num_classes=5, input_size=SIZE))
    missing = r"resnet34 with 3 classes: \d+ of resnet34's weights are missing from it \(layer1\.2"
    with pytest.raises(JobError, match=missing):
        inspect(prepared, InspectConfig(architecture="resnet34", num_classes=3, input_size=SIZE))
    with pytest.raises(JobError, match="none of its weight names are mobilenet_v3_small's .* another architecture"):
        inspect(prepared, InspectConfig(architecture="mobilenet_v3_small", num_classes=3, input_size=SIZE))
    with pytest.raises(JobError, match="needs its torchvision architecture, one of resnet18"):
        inspect(prepared, InspectConfig(architecture="vgg_unknown", num_classes=3))


def test_a_pickle_of_something_else_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(JobError, match="holds a list, not a state_dict"):
        inspect(prepare(tmp_path, path), InspectConfig(architecture="resnet18", num_classes=3))


def test_onnx_single_file_with_a_dynamic_batch(tmp_path, built):
    prepared = prepare(tmp_path, built / "net.onnx")
    assert (prepared.format, prepared.primary) == ("onnx", "model.onnx")
    inspection = inspect(prepared)
    assert inspection.inputs == [TensorInfo("input", [None, 3, SIZE, SIZE], "f32")]
    assert inspection.outputs == [TensorInfo("logits", [None, 3], "f32")]
    assert (inspection.parameters, inspection.precision) == (SMALL_PARAMETERS, "fp32")
    model = onnx.load(built / "net.onnx")
    assert inspection.opset == model.opset_import[0].version and inspection.ir_version == str(model.ir_version)
    assert inspection.traces is None and inspection.details["producer"].startswith("pytorch")


def test_onnx_without_its_extension_when_declared(tmp_path, built):
    renamed = tmp_path / "exported"
    shutil.copy(built / "net.onnx", renamed)
    assert "not a model file Vintner recognises" in refused(tmp_path, renamed)
    assert prepare(tmp_path / "declared", renamed, declared="onnx").format == "onnx"


def test_onnx_zip_with_external_data(tmp_path, built):
    model = onnx.load(built / "net.onnx")
    source = tmp_path / "src"
    (source / "weights").mkdir(parents=True)
    onnx.save_model(model, source / "net.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights/net.data", size_threshold=0)
    archive = zip_of(tmp_path / "net.zip", {"export/net.onnx": source / "net.onnx",
                                             "export/weights/net.data": source / "weights" / "net.data",
                                             "export/README.txt": b"not part of the model"})
    prepared = prepare(tmp_path, archive, declared="onnx")
    assert prepared.format == "onnx"
    assert sorted(p.relative_to(prepared.folder).as_posix() for p in prepared.folder.rglob("*") if p.is_file()) == [
        "model.onnx", "weights/net.data"]
    inspection = inspect(prepared)
    assert inspection.parameters == SMALL_PARAMETERS
    assert inspection.details["external_data"] == ["weights/net.data"]
    assert inspection.size_bytes == sum(p.stat().st_size for p in prepared.folder.rglob("*") if p.is_file())
    assert not list(tmp_path.glob(".out-unpack-*"))  # the unpacked archive is gone


def test_openvino_ir_pair(tmp_path, built):
    prepared = prepare(tmp_path, built / "net.xml", built / "net.bin")
    assert (prepared.format, prepared.primary) == ("openvino_ir", "model.xml")
    assert sorted(os.listdir(prepared.folder)) == ["model.bin", "model.xml"]
    inspection = inspect(prepared)
    assert inspection.inputs == [TensorInfo("x", [1, 3, SIZE, SIZE], "f32")]
    assert [(o.shape, o.dtype) for o in inspection.outputs] == [([1, 3], "f32")]
    assert (inspection.parameters, inspection.precision, inspection.ir_version) == (SMALL_PARAMETERS, "fp32", "11")
    assert inspection.details["framework"] == "pytorch"


def test_openvino_ir_zip_with_a_dynamic_batch(tmp_path, built):
    archive = zip_of(tmp_path / "ir.zip", {"ir/net.xml": built / "dynamic" / "net.xml",
                                           "ir/net.bin": built / "dynamic" / "net.bin"})
    prepared = prepare(tmp_path, archive)
    assert prepared.format == "openvino_ir"
    inspection = inspect(prepared)
    assert inspection.inputs[0].shape == [None, 3, SIZE, SIZE]
    assert inspection.outputs[0].shape == [None, 3]


# --- hostile pickles -----------------------------------------------------------------------------

@pytest.mark.parametrize("save", [
    lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=5)),
    lambda obj, path: torch.save(obj, path),
    lambda obj, path: torch.save({"weights": {"w": torch.zeros(2)}, "hook": obj}, path),
], ids=["raw-pickle", "torch-save", "inside-a-checkpoint"])
@pytest.mark.parametrize("payload", [RunsCommand, RunsPython])
def test_a_pickle_carrying_code_is_refused_and_nothing_runs(tmp_path, save, payload):
    canary = tmp_path / "canary"
    path = tmp_path / "in" / "model.pth"
    path.parent.mkdir()
    save(payload(canary), path)
    message = refused(tmp_path, path)
    assert "“model.pth” contains Python code" in message
    assert "os.system" in message or "posix.system" in message or "builtins.exec" in message
    # and if it reached inspection some other way, torch.load(weights_only=True) refuses it too
    folder = tmp_path / "crafted"
    folder.mkdir()
    shutil.copy(path, folder / "weights.pth")
    with pytest.raises(JobError, match="contains Python code"):
        inspect(Prepared("state_dict", folder, "weights.pth"), InspectConfig(architecture="resnet18", num_classes=3))
    assert not canary.exists()


def test_a_checkpoint_with_other_objects_is_refused(tmp_path):
    import argparse

    path = tmp_path / "train.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=0.1)}, path)
    assert "“train.pth” holds Python objects other than tensors (argparse.Namespace)" in refused(tmp_path, path)


def test_a_whole_pickled_module_is_refused_with_guidance(tmp_path, built):
    message = refused(tmp_path, built / "whole.pth")
    assert message == ("“whole.pth” is a whole pickled PyTorch model (torch.nn.Module), which could run code when "
                       "loaded. Upload its state_dict (torch.save(model.state_dict(), …)), TorchScript "
                       "(torch.jit.save) or torch.export (.pt2) instead.")


# --- hostile ONNX external data --------------------------------------------------------------------

def _pointing_at(built: Path, path: Path, location: str) -> Path:
    """The small ONNX model with conv.weight's data moved to `location`."""
    model = onnx.load(built / "net.onnx")
    tensor = next(t for t in model.graph.initializer if t.name == "conv.weight")
    size = len(tensor.raw_data)
    set_external_data(tensor, location=location, offset=0, length=size)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    onnx.save_model(model, path)
    return path


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(b"s3cret" * 1000)
    return path


def test_onnx_data_outside_the_folder_is_refused(tmp_path, built, secret, opened):
    model = _pointing_at(built, tmp_path / "evil.onnx", "../secret.bin")
    archive = zip_of(tmp_path / "evil.zip", {"evil.onnx": model})
    message = refused(tmp_path, archive)
    assert "tensor “conv.weight” at “../secret.bin”, a path that leads outside the model's folder" in message
    assert not any(Path(p).name == "secret.bin" for p in opened)


def test_onnx_data_at_an_absolute_path_is_refused(tmp_path, built, secret, opened):
    model = _pointing_at(built, tmp_path / "evil.onnx", str(secret))
    message = refused(tmp_path, model)
    assert f"tensor “conv.weight” at “{secret}”, an absolute path" in message
    assert str(secret) not in opened


def test_onnx_data_through_a_symlink_is_refused(tmp_path, built, secret, opened):
    folder = tmp_path / "model"
    folder.mkdir()
    _pointing_at(built, folder / "model.onnx", "data.bin")
    (folder / "data.bin").symlink_to(secret)
    with pytest.raises(JobError, match="tensor “conv.weight” at “data.bin”, which is a symbolic link"):
        inspect(Prepared("onnx", folder, "model.onnx"))
    assert not any(Path(p).name in ("secret.bin", "data.bin") for p in opened)


def test_onnx_data_missing_from_a_single_file_upload(tmp_path, built):
    model = _pointing_at(built, tmp_path / "net.onnx", "net.onnx.data")
    assert "upload a zip holding the .onnx together with its data files" in refused(tmp_path, model)


def test_onnx_data_range_past_the_file_is_refused(tmp_path, built):
    folder = tmp_path / "model"
    folder.mkdir()
    _pointing_at(built, folder / "model.onnx", "data.bin")
    (folder / "data.bin").write_bytes(b"\0" * 100)
    short = "needs bytes 0–864 of “data.bin” for tensor “conv.weight”, but that file is only 100 bytes"
    with pytest.raises(JobError, match=short):
        inspect(Prepared("onnx", folder, "model.onnx"))


@pytest.mark.parametrize("location", ["SHA256SUMS", "Metadata.JSON"])
def test_onnx_data_named_like_a_file_of_the_download_zip_is_refused(tmp_path, built, location):
    model = _pointing_at(built, tmp_path / "net.onnx", location)
    archive = zip_of(tmp_path / "net.zip", {"net.onnx": model, location: b"\0" * 864})
    assert f"keeps external data in a file named {location}, a name Vintner keeps" in refused(tmp_path, archive)


# --- hostile IR ----------------------------------------------------------------------------------

def test_ir_with_entities_is_refused(tmp_path, built):
    xml = (built / "net.xml").read_text()
    hostile = tmp_path / "in" / "net.xml"
    hostile.parent.mkdir()
    hostile.write_text(xml.replace('<?xml version="1.0"?>',
                                   '<?xml version="1.0"?>\n<!DOCTYPE net [<!ENTITY boom "boom">]>', 1)
                       .replace('name="Model0"', 'name="&boom;"', 1))
    assert "<!ENTITY" in hostile.read_text()
    prepared = prepare(tmp_path, hostile, built / "net.bin")
    with pytest.raises(JobError, match="model.xml contains a DOCTYPE or entity declarations, which are not allowed"):
        inspect(prepared)


def test_ir_with_a_short_bin_is_refused_with_both_sizes(tmp_path, built):
    weights = (built / "net.bin").read_bytes()
    short = tmp_path / "in" / "net.bin"
    short.parent.mkdir()
    short.write_bytes(weights[:100])
    prepared = prepare(tmp_path, built / "net.xml", short)
    with pytest.raises(JobError) as caught:
        inspect(prepared)
    assert str(caught.value) == (f"model.bin does not match model.xml (it is 100 bytes; the XML needs at least "
                                 f"{len(weights):,}).")


# --- code in a child process: time and memory limits ------------------------------------------------

def test_loading_code_past_the_time_limit_is_stopped(tmp_path, built):
    prepared = prepare(tmp_path, built / "net.pt")
    with pytest.raises(JobError, match=r"“model.pt” took longer than 0.01 s to load"):
        inspect(prepared, InspectConfig(input_size=SIZE, time_limit_s=0.01))


class Heavy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(4 * 2**20))  # 16 MB

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[0]


def test_loading_code_past_the_memory_limit_is_stopped(tmp_path):
    path = tmp_path / "heavy.pt"
    torch.jit.save(torch.jit.script(Heavy()), path)
    prepared = prepare(tmp_path, path)
    with pytest.raises(JobError, match=r"“model.pt” needed more than 4 MB of memory to load"):
        inspect(prepared, InspectConfig(input_size=SIZE, memory_limit_mb=4))


def test_cancelling_stops_the_child(tmp_path, built):
    prepared = prepare(tmp_path, built / "net.pt")
    reporter = FakeReporter(cancel_after=1)  # the first poll, before the child starts, passes
    with pytest.raises(Cancelled):
        inspect(prepared, reporter=reporter)
    assert reporter.polls == 2


def test_a_damaged_torchscript_is_a_clear_error(tmp_path, built):
    with zipfile.ZipFile(built / "net.pt") as zf:
        entries = {info.filename: zf.read(info) for info in zf.infolist() if not info.filename.endswith("data.pkl")}
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(damaged, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    with pytest.raises(JobError, match="PyTorch could not load “model.pt” as TorchScript: "):
        inspect(prepare(tmp_path, damaged))


# --- names, sizes and declared formats -----------------------------------------------------------

def test_empty_and_mislabelled_files_are_refused(tmp_path, built):
    (tmp_path / "in").mkdir()
    empty = tmp_path / "in" / "model.onnx"
    empty.touch()
    assert refused(tmp_path, empty) == "“model.onnx” is empty (0 bytes); upload it again."
    as_onnx = tmp_path / "in" / "net.onnx"
    shutil.copy(built / "net.pt", as_onnx)
    message = refused(tmp_path, as_onnx)
    assert "“net.onnx” is named like an ONNX model, but its content is a TorchScript model" in message
    fake = tmp_path / "in" / "w.safetensors"
    fake.write_bytes(b"hello world, not weights")
    assert "named like a safetensors file" in refused(tmp_path, fake)
    garbage = tmp_path / "in" / "model.bin"
    garbage.write_bytes(os.urandom(256))
    assert "is not a model file Vintner recognises" in refused(tmp_path, garbage)
    not_onnx = tmp_path / "in" / "bad.onnx"
    not_onnx.write_bytes(b"\x08\x07" + os.urandom(64))
    assert "“bad.onnx” is not a valid ONNX model" in refused(tmp_path, not_onnx)


def test_an_ir_needs_both_files(tmp_path, built):
    assert "upload it together with its .bin" in refused(tmp_path, built / "net.xml")
    message = refused(tmp_path, built / "net.xml", built / "net.onnx")
    assert "Two files must be an OpenVINO IR's .xml and .bin; got “net.xml” and “net.onnx”." == message


def test_declared_format_must_agree(tmp_path, built):
    message = refused(tmp_path, built / "net.onnx", declared="openvino_ir")
    assert message.startswith("You said “net.onnx” is OpenVINO IR, but it is ONNX.")
    assert "Unknown model format" in refused(tmp_path / "b", built / "net.onnx", declared="keras")


def test_a_zip_without_a_model_is_refused(tmp_path):
    archive = zip_of(tmp_path / "stuff.zip", {"a.txt": b"hello", "b/c.txt": b"world"})
    message = refused(tmp_path, archive)
    assert "must hold one ONNX model (.onnx, with its external data files), one OpenVINO IR (.xml and .bin) or one Hugging Face model folder" in message
