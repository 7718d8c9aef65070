"""Tiny real models in every format a team uploads, made in the test: no downloads, no fixtures."""

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

SIZE = 32  # input height and width of the tiny net
CLASSES = 3


class TinyNet(nn.Module):
    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


def example() -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE)


def torchscript(path: Path) -> Path:
    torch.jit.save(torch.jit.script(tiny_net()), path)
    return path


def torch_export(path: Path) -> Path:
    torch.export.save(torch.export.export(tiny_net(), (example(),)), path)
    return path


def state_dict(path: Path, architecture: str = "mobilenet_v3_small", classes: int = CLASSES) -> Path:
    import torchvision

    torch.save(getattr(torchvision.models, architecture)(weights=None, num_classes=classes).state_dict(), path)
    return path


def onnx_file(path: Path) -> Path:
    torch.onnx.export(tiny_net(), (example(),), path, input_names=["image"], output_names=["logits"], dynamo=False)
    return path


def openvino_ir(folder: Path, *, dynamic: bool = False) -> tuple[Path, Path]:
    import openvino as ov

    shape = [-1, 3, -1, -1] if dynamic else [1, 3, SIZE, SIZE]
    model = ov.convert_model(tiny_net(), example_input=example(), input=[shape])
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, folder / "model.xml", compress_to_fp16=False)
    return folder / "model.xml", folder / "model.bin"


def ir_zip(path: Path) -> Path:
    xml, bin_ = openvino_ir(path.parent / "ir")
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.write(xml, "model.xml")
        bundle.write(bin_, "model.bin")
    return path


class _Canary:
    """Unpickling this would create the canary file: a pickle that carries code."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.canary}",))


def code_pickle(path: Path, canary: Path, *, plain: bool = False) -> Path:
    """torch.save's zip format by default; `plain`: a bare pickle stream, as pickle.dump writes."""
    if plain:
        with open(path, "wb") as handle:
            pickle.dump({"weights": _Canary(canary)}, handle)
    else:
        torch.save({"weights": _Canary(canary)}, path)
    return path


def whole_module_pickle(path: Path) -> Path:
    torch.save(tiny_net(), path)  # the whole nn.Module, not its state_dict
    return path


class Thief(nn.Module):
    """A classifier whose forward() first runs `steps`, with nothing but ordinary TorchScript ops:
    "read:<path>" loads a file's first `size` bytes (torch.from_file), "write:<path>" writes the
    bytes last read (or a row of X) over an existing file's first `size` bytes (from_file with
    shared=True maps the file). Every result feeds the output, times zero, so that TorchScript
    does not drop the steps as dead code. Outside a jail, it steals (see test_hostile_models.py)."""

    def __init__(self, steps: list[str], size: int, classes: int = CLASSES) -> None:
        super().__init__()
        self.steps, self.size = steps, size
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        payload = torch.full([self.size], 88, dtype=torch.uint8)
        mark = torch.zeros(1)
        for step in self.steps:
            if step.startswith("read:"):
                payload = torch.from_file(step[5:], shared=False, size=self.size, dtype=torch.uint8)
            else:
                written = torch.from_file(step[6:], shared=True, size=self.size, dtype=torch.uint8).copy_(payload)
                mark = mark + written.float().sum()
            mark = mark + payload.float().sum()
        return self.classifier(torch.flatten(self.features(x), 1)) + mark * 0


def thief_torchscript(path: Path, steps: list[str], size: int, *, classes: int = CLASSES) -> Path:
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(Thief(steps, size, classes).eval()), path)
    return path


class _ThiefShape(nn.Module):
    """The graph of a .pt2 thief, with factories where its from_file calls will go."""

    def __init__(self, size: int, classes: int) -> None:
        super().__init__()
        self.size = size
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stolen = torch.zeros(self.size, dtype=torch.uint8)  # becomes from_file(secret)
        target = torch.ones(self.size, dtype=torch.uint8)  # becomes from_file(target, shared=True)
        written = target.copy_(stolen)
        return self.classifier(torch.flatten(self.features(x), 1)) + written.float().sum() * 0


def thief_export(path: Path, secret: str, target: str, size: int, *, classes: int = CLASSES) -> Path:
    """A .pt2 whose graph reads `secret` and writes it over `target`. torch.export refuses to trace
    from_file itself (aten::from_file has no fake kernel), so the exported graph of a look-alike
    has its two factory calls swapped for from_file: nothing checks what a .pt2's graph calls."""
    torch.manual_seed(0)
    program = torch.export.export(_ThiefShape(size, classes).eval(), (torch.randn(1, 3, 16, 16),))
    swaps = {torch.ops.aten.zeros.default: (secret, False), torch.ops.aten.ones.default: (target, True)}
    for node in program.graph.nodes:
        if node.op == "call_function" and node.target in swaps:
            file, shared = swaps[node.target]
            node.target, node.args = torch.ops.aten.from_file.default, (file, shared, size)
            node.kwargs = {"dtype": torch.uint8}
    program.graph_module.recompile()
    torch.export.save(program, path)
    return path


# --- models from elsewhere: their own labels, output shapes and inputs ------------------------

class ColourReader(nn.Module):
    """A classifier trained elsewhere, in the style of classic ONNX exports: the mean of each of
    the channels R, G, B as class scores, softmaxed, shaped [N, 3, 1, 1]. Its output order is
    red, green, blue: not the sorted order of a dataset's folders (blue, green, red)."""

    LABELS = ["red", "green", "blue"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(20 * nn.functional.adaptive_avg_pool2d(x, 1), dim=1)


def colour_onnx(path: Path, *, labels: list[str] | None = ColourReader.LABELS, key: str = "labels") -> Path:
    """ColourReader as ONNX, its class names in the model's metadata_props as JSON (or none)."""
    import json

    import onnx

    torch.onnx.export(ColourReader().eval(), (torch.zeros(1, 3, 16, 16),), path, input_names=["image"],
                      output_names=["prob"], dynamo=False)
    if labels is not None:
        model = onnx.load(str(path))
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(labels)
        onnx.save(model, str(path))
    return path


class AudioNet(nn.Module):
    """A keyword spotter: one second of 16 kHz audio, [N, 16000], to 4 scores. Not an image model."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16000, 4)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.head(waveform)


def audio_torchscript(path: Path) -> Path:
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(AudioNet().eval()), path)
    return path


def unconvertible_onnx(path: Path) -> Path:
    """An ONNX image classifier with an operator of a custom domain: ONNX's checker passes it, and
    OpenVINO cannot compile it (its error is several lines, the first a source location)."""
    import onnx
    from onnx import helper

    image = helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [1, 3, 16, 16])
    scores = helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, 3])
    node = helper.make_node("Mystery", ["image"], ["scores"], domain="com.example.custom")
    model = helper.make_model(helper.make_graph([node], "mystery", [image], [scores]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.custom", 1)])
    onnx.save(model, str(path))
    return path
