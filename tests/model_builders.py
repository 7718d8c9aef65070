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
