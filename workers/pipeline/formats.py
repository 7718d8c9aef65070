"""Uploaded models, which are untrusted: recognise their format, put their files under canonical
names, and inspect them (inputs, outputs, size, precision, whether they trace). No Django, no Celery.

Nothing uploaded runs in this process. PyTorch pickles are scanned without running them and
loaded only with `weights_only=True`; TorchScript and torch.export programs, which are code, are
loaded only in a child process under memory and time limits (`_inspect_child`); ONNX external
data paths, and IR entities and weight offsets, are checked before a library reads the files.
"""

import itertools
import json
import math
import os
import pickle
import pickletools
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING  # Python 2 names, as pickle itself maps them
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import defusedxml
import defusedxml.ElementTree
import onnx
import openvino
import safetensors
import safetensors.torch
import torch
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from workers.pipeline import architectures
from workers.pipeline.archives import ExtractLimits, extract_archive
from workers.pipeline.reporting import Cancelled, JobError, Span

FORMATS = ("torchscript", "torch_export", "state_dict", "onnx", "openvino_ir")
ARCHITECTURES: tuple[str, ...] = architectures.ARCHITECTURES  # one list, also read by the web side

LABELS = {
    "torchscript": "TorchScript",
    "torch_export": "a torch.export program (.pt2)",
    "state_dict": "a PyTorch state_dict",
    "onnx": "ONNX",
    "openvino_ir": "OpenVINO IR",
}

GiB = 2**30
# Model archives hold a few large files: few entries, and weights barely compress.
MODEL_ARCHIVE_LIMITS = ExtractLimits(max_bytes=32 * GiB, max_files=10_000, max_file_bytes=16 * GiB, max_ratio=100.0)
MAX_PICKLE_BYTES = 256 * 2**20  # a state_dict's data.pkl holds names and shapes; tensors are stored beside it
ROOT = Path(__file__).resolve().parents[2]  # the project, for the child's `python -m`
PICKLE_GUIDANCE = ("Upload its state_dict (torch.save(model.state_dict(), …)), TorchScript (torch.jit.save) "
                   "or torch.export (.pt2) instead.")


@dataclass(frozen=True)
class InspectConfig:
    architecture: str = ""  # for state_dict: a name from ARCHITECTURES
    num_classes: int | None = None  # for state_dict
    input_size: int = 224  # example input for tracing / parameter checks: [1, 3, s, s]
    time_limit_s: float = 300.0  # wall clock for the child that loads code (TorchScript, .pt2), start-up included
    memory_limit_mb: int = 8192  # address space that loading may add, in that child


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: list[int | None]  # None where dynamic; [] where even the rank is unknown
    dtype: str  # "f32", "f16", "i64", "u8"...; "" where unknown


@dataclass
class Prepared:
    format: str
    folder: Path  # canonical files inside, see CANONICAL
    primary: str  # file name of the main file in folder


@dataclass
class Inspection:
    format: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    parameters: int | None  # count of weights
    size_bytes: int  # all files
    precision: str  # "fp32" | "fp16" | "bf16" | "int8" | "mixed" (dominant weight dtype); "" without weights
    opset: int | None  # ONNX default-domain opset
    ir_version: str | None  # ONNX ir_version or OpenVINO IR version
    traces: bool | None  # PyTorch sources: does torch.export.export (or a TorchScript forward) succeed
    trace_error: str  # why not, in one sentence
    details: dict = field(default_factory=dict)  # anything else worth showing

    def as_dict(self) -> dict:
        return _json_safe(asdict(self))


# --- preparing ---------------------------------------------------------------------------------

def prepare_model(sources: list[tuple[Path, str]], out: Path, span: Span, *, declared_format: str = "") -> Prepared:
    """Recognise the upload's format by its content and put its files into `out` under canonical
    names. `sources`: (local path, the user's file name). On any error `out` may hold partial
    output: the caller deletes it."""
    if declared_format and declared_format not in FORMATS:
        raise JobError(f"Unknown model format “{declared_format}”; it is one of {', '.join(FORMATS)}.")
    if not 1 <= len(sources) <= 2:
        raise JobError("Upload one model file, a zip, or an OpenVINO IR's .xml and .bin.")
    for path, name in sources:
        if path.stat().st_size == 0:
            raise JobError(f"“{_show(name)}” is empty (0 bytes); upload it again.")
    out.mkdir(parents=True, exist_ok=True)
    if len(sources) == 2:
        prepared = _prepare_ir_pair(sources, out)
    else:
        prepared = _prepare_file(*sources[0], out, span, declared_format)
    if declared_format and declared_format != prepared.format:
        names = " and ".join(f"“{_show(name)}”" for _, name in sources)
        raise JobError(f"You said {names} {'is' if len(sources) == 1 else 'are'} {LABELS[declared_format]}, "
                       f"but {'it is' if len(sources) == 1 else 'they are'} {LABELS[prepared.format]}. "
                       "Choose the right format, or leave it empty to have it recognised.")
    span.progress(1.0)
    span.reporter.log(f"Recognised {LABELS[prepared.format]}; stored as {prepared.primary}.")
    return prepared


# What a file's content says it is, in words, for messages.
CONTENT_WORDS = {
    "torchscript": "a TorchScript model",
    "torch_export": "a torch.export program",
    "torch_pickle": "a PyTorch checkpoint (torch.save)",
    "pickle": "a Python pickle",
    "safetensors": "a safetensors file",
    "xml": "an XML file",
    "zip": "a zip archive",
    "unknown": "of a kind Vintner does not recognise",
}
# Extensions that promise one kind of content: anything else there is a mistake worth stopping.
PROMISES = {
    ".onnx": ("an ONNX model", {"unknown"}),
    ".safetensors": ("a safetensors file", {"safetensors"}),
    ".xml": ("an OpenVINO IR .xml", {"xml"}),
    ".zip": ("a zip archive", {"zip", "torchscript", "torch_export", "torch_pickle"}),
}


def _prepare_file(path: Path, name: str, out: Path, span: Span, declared_format: str) -> Prepared:
    kind, suffix = _sniff(path, name), PurePosixPath(name).suffix.lower()
    if suffix in PROMISES and kind not in PROMISES[suffix][1]:
        promised = PROMISES[suffix][0]
        raise JobError(f"“{_show(name)}” is named like {promised}, but its content is {CONTENT_WORDS[kind]}; "
                       "upload the file as it was saved.")
    if kind in ("torchscript", "torch_export"):
        return _place_one(path, out, kind, "model.pt" if kind == "torchscript" else "model.pt2")
    if kind in ("torch_pickle", "pickle"):
        _refuse_unsafe_pickle(path, name)
        return _place_one(path, out, "state_dict", "weights.pth")
    if kind == "safetensors":
        return _place_one(path, out, "state_dict", "weights.safetensors")
    if kind == "xml":
        raise JobError(f"“{_show(name)}” looks like an OpenVINO IR's .xml: upload it together with its .bin "
                       "(both files at once, or one zip holding both).")
    if kind == "zip":
        return _prepare_zip(path, name, out, span)
    if suffix == ".onnx" or declared_format == "onnx":  # protobuf has no magic bytes to tell it by
        return _prepare_onnx_file(path, name, out)
    raise JobError(f"“{_show(name)}” is not a model file Vintner recognises. Upload TorchScript (.pt), "
                   "torch.export (.pt2), a state_dict (.pth or .safetensors), ONNX (.onnx, or a zip with its "
                   "external data) or OpenVINO IR (.xml and .bin).")


def _sniff(path: Path, name: str) -> str:
    """The file's kind by its content (CONTENT_WORDS' keys); never by its name."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(path, name)
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= pickle.HIGHEST_PROTOCOL:
        return "pickle"  # protocol 2+ (legacy torch.save, pickle.dump)
    if _is_safetensors(head, path.stat().st_size):
        return "safetensors"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return "xml"
    return "unknown"


def _sniff_zip(path: Path, name: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise JobError(f"“{_show(name)}” starts like a zip archive but is damaged ({one_line(e)}).") from None
    inner = {entry.split("/", 1)[-1] for entry in names}  # torch writes everything below one top folder
    if "constants.pkl" in inner or any(entry.startswith("code/") for entry in inner):
        return "torchscript"
    if "archive_format" in inner:
        return "torch_export"
    if "data.pkl" in inner:
        return "torch_pickle"
    return "zip"


def _is_safetensors(head: bytes, size: int) -> bool:
    """8 bytes of little-endian header length, then a JSON header."""
    if len(head) < 9:
        return False
    header = int.from_bytes(head[:8], "little")
    return 2 <= header <= size - 8 and head[8:9] == b"{"


def _place_one(path: Path, out: Path, fmt: str, canonical: str) -> Prepared:
    _place(path, out / canonical)
    return Prepared(format=fmt, folder=out, primary=canonical)


def _place(src: Path, dst: Path, *, move: bool = False) -> None:
    """Move (our own unpacked files), hardlink (same file system) or copy `src` to `dst`."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if move:
        os.replace(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# --- zips: ONNX with external data, or IR -------------------------------------------------------

def _prepare_zip(path: Path, name: str, out: Path, span: Span) -> Prepared:
    # Unpacked next to `out`: the same file system, so the chosen files are moved, not copied.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-unpack-") as tmp:
        unpacked = Path(tmp)
        extract_archive(path, unpacked, MODEL_ARCHIVE_LIMITS, span.child(0.0, 0.8), name=name)
        files = [p for p in sorted(unpacked.rglob("*")) if p.is_file() and not _is_junk(p.relative_to(unpacked))]
        models = [p for p in files if p.suffix.lower() == ".onnx"]
        xmls = [p for p in files if p.suffix.lower() == ".xml"]
        if len(models) == 1 and not xmls:
            return _prepare_onnx_folder(models[0], f"{name}: {models[0].relative_to(unpacked).as_posix()}", out)
        if len(xmls) == 1 and not models:
            return _prepare_ir_in_zip(xmls[0], [p for p in files if p.suffix.lower() == ".bin"], name, out)
        found = ", ".join(_show(p.relative_to(unpacked).as_posix()) for p in (models + xmls)[:5])
        raise JobError(f"“{_show(name)}” must hold one ONNX model (.onnx, with its external data files) or one "
                       f"OpenVINO IR (.xml and .bin); it holds {found or 'no .onnx or .xml file'}.")


def _is_junk(relative: Path) -> bool:
    """What archivers add on their own (macOS resource forks, Finder files)."""
    return "__MACOSX" in relative.parts or relative.name.startswith("._") or relative.name == ".DS_Store"


def _prepare_onnx_file(path: Path, name: str, out: Path) -> Prepared:
    model = _read_onnx(path, name)
    for tensor in _external_tensors(model):
        location = _external_info(tensor, name).location
        _check_location_text(tensor.name, location, name)
        raise JobError(f"“{_show(name)}” keeps the data of tensor “{_show(tensor.name)}” in a separate file "
                       f"(“{_show(location)}”); upload a zip holding the .onnx together with its data files.")
    return _place_one(path, out, "onnx", "model.onnx")


def _prepare_onnx_folder(model_path: Path, name: str, out: Path) -> Prepared:
    """The .onnx found in a zip, and exactly the external data files it references."""
    model = _read_onnx(model_path, name)
    locations = set()
    for tensor in _external_tensors(model):
        info = _external_info(tensor, name)
        _check_external_file(model_path.parent, tensor.name, info, name)
        locations.add(_normal(info.location))
    if "model.onnx" in locations:
        raise JobError(f"“{_show(name)}” keeps external data in a file named model.onnx; "
                       "rename it and export again.")
    _place(model_path, out / "model.onnx", move=True)
    for location in sorted(locations):
        _place(model_path.parent / location, out / location, move=True)
    return Prepared(format="onnx", folder=out, primary="model.onnx")


def _prepare_ir_pair(sources: list[tuple[Path, str]], out: Path) -> Prepared:
    by_suffix = {PurePosixPath(name).suffix.lower(): (path, name) for path, name in sources}
    if set(by_suffix) != {".xml", ".bin"}:
        names = " and ".join(f"“{_show(name)}”" for _, name in sources)
        raise JobError(f"Two files must be an OpenVINO IR's .xml and .bin; got {names}.")
    xml, xml_name = by_suffix[".xml"]
    if _sniff(xml, xml_name) != "xml":
        raise JobError(f"“{_show(xml_name)}” is named like an OpenVINO IR .xml, but its content is not XML.")
    _place(xml, out / "model.xml")
    _place(by_suffix[".bin"][0], out / "model.bin")
    return Prepared(format="openvino_ir", folder=out, primary="model.xml")


def _prepare_ir_in_zip(xml: Path, bins: list[Path], name: str, out: Path) -> Prepared:
    same_stem = [p for p in bins if p.parent == xml.parent and p.stem == xml.stem]
    weights = same_stem or (bins if len(bins) == 1 else [])
    if not weights:
        raise JobError(f"“{_show(name)}” holds {xml.name} but not its weights: add {xml.stem}.bin next to it.")
    _place(xml, out / "model.xml", move=True)
    _place(weights[0], out / "model.bin", move=True)
    return Prepared(format="openvino_ir", folder=out, primary="model.xml")


# --- pickles -----------------------------------------------------------------------------------

# Modules whose functions do things (run commands, evaluate code, touch files or the network):
# a pickle naming one of them is an attack, not a model.
CODE_MODULES = {"os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "importlib", "runpy",
                "shutil", "socket", "pty", "code", "codeop", "ctypes", "marshal", "pickle", "_pickle", "types",
                "operator", "functools", "webbrowser", "multiprocessing", "asyncio", "io", "tempfile", "pathlib",
                "urllib", "http", "requests", "pip", "setuptools", "distutils", "commands", "platform", "signal"}
HIDDEN_GLOBAL = "a function whose name is built at load time"
LEGACY_PICKLES = 5  # a legacy torch.save file is five pickles in a row (magic, protocol, info, object, keys)


def _refuse_unsafe_pickle(path: Path, name: str) -> None:
    """Refuse, without running anything, a pickle that weights_only loading would refuse: say
    whether it is a whole nn.Module or code. Loading stays weights_only either way."""
    found, strings = _pickle_contents(path, name)
    unsafe = sorted(found - _weights_only_globals())
    if not unsafe:
        return
    code = [g for g in unsafe if g.split(".")[0] in CODE_MODULES or g == HIDDEN_GLOBAL]
    if code:
        raise JobError(f"“{_show(name)}” contains Python code ({', '.join(code[:3])}) that would run when it is "
                       f"loaded, so it was refused without loading it. {PICKLE_GUIDANCE}")
    if any(g.startswith("torch.nn.") for g in unsafe) or {"_modules", "_parameters"} <= strings:
        raise JobError(f"“{_show(name)}” is a whole pickled PyTorch model (torch.nn.Module), which could run code "
                       f"when loaded. {PICKLE_GUIDANCE}")
    raise JobError(f"“{_show(name)}” holds Python objects other than tensors ({', '.join(unsafe[:3])}), which "
                   "could run code when loaded, so it was refused without loading it. A checkpoint may hold only "
                   f"tensors and plain values. {PICKLE_GUIDANCE}")


def _pickle_contents(path: Path, name: str) -> tuple[set[str], set[str]]:
    """The globals a pickle (or torch.save zip) imports, and the short strings it holds, by reading
    its opcodes (pickletools); nothing is unpickled."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                info = next(i for i in zf.infolist() if i.filename.split("/", 1)[-1] == "data.pkl")
                if info.file_size > MAX_PICKLE_BYTES:  # the zip reader never returns more than this
                    raise JobError(f"“{_show(name)}” has an object table of {info.file_size:,} bytes, "
                                   "far more than any state_dict needs.")
                with zf.open(info) as stream:
                    return _scan_pickles(stream, count=1)
        with open(path, "rb") as stream:
            return _scan_pickles(stream, count=LEGACY_PICKLES)
    except (ValueError, EOFError, zipfile.BadZipFile, StopIteration, OSError) as e:
        raise JobError(f"“{_show(name)}” is not a readable PyTorch checkpoint ({one_line(e)}).") from None


def _scan_pickles(stream, count: int) -> tuple[set[str], set[str]]:
    found: set[str] = set()
    strings: set[str] = set()
    for index in range(count):
        try:
            _scan_pickle(stream, found, strings)
        except (ValueError, EOFError):
            if index == 0:
                raise
            break  # a legacy file's raw tensor bytes follow its pickles
    return found, strings


def _scan_pickle(stream, found: set[str], strings: set[str]) -> None:
    """One pickle's globals. STACK_GLOBAL takes its names from the two strings pushed before it,
    possibly through the memo, so strings are followed through PUT/GET."""
    recent: list[str | None] = []  # values of the last pushes, where they were strings
    memo: dict[int, str | None] = {}
    for opcode, arg, _ in pickletools.genops(stream):
        op = opcode.name
        if op in ("GLOBAL", "INST"):
            found.add(_global_name(*arg.split(" ", 1)))
        elif op == "STACK_GLOBAL":
            module, qualname = (recent[-2:] if len(recent) >= 2 else [None, None])
            found.add(_global_name(module, qualname) if module and qualname else HIDDEN_GLOBAL)
        elif isinstance(arg, str) and "UNICODE" in op or op in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
            recent.append(arg)
            if len(arg) < 64:
                strings.add(arg)
            continue
        elif op in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            memo[arg if op != "MEMOIZE" else len(memo)] = recent[-1] if recent else None
            continue
        elif op in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
            continue
        elif op in ("FRAME", "PROTO"):  # push nothing, and may fall between a global's two names
            continue
        recent.append(None)


def _global_name(module: str, qualname: str) -> str:
    """As Python 3 imports it: protocol 2 pickles say __builtin__ for builtins, as unpickling maps."""
    module, qualname = NAME_MAPPING.get((module, qualname), (IMPORT_MAPPING.get(module, module), qualname))
    return f"{module}.{qualname}"


def _weights_only_globals() -> set[str]:
    """What torch.load(weights_only=True) itself allows: tensor rebuilders, OrderedDict, dtypes."""
    from torch import _weights_only_unpickler

    return set(_weights_only_unpickler._get_allowed_globals())


def _torch_load(path: Path, name: str) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        _refuse_unsafe_pickle(path, name)  # names the code or the nn.Module, where it can tell
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
        reason = found.group(1).strip() if found else one_line(e)
        hint = (" It was probably saved with a pickle_protocol above 2, which safe loading cannot read: "
                "save it again with torch.save's default protocol." if "Unsupported operand" in reason else "")
        raise JobError(f"“{_show(name)}” cannot be loaded safely (torch.load with weights_only=True says: "
                       f"{reason}).{hint}") from None
    except Exception as e:  # whatever a damaged file makes torch.load raise
        raise JobError(f"“{_show(name)}” is not a PyTorch checkpoint that can be read ({one_line(e)}).") from None


# --- inspecting --------------------------------------------------------------------------------

def inspect_model(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
    inspect = {
        "torchscript": _inspect_in_child,
        "torch_export": _inspect_in_child,
        "state_dict": _inspect_state_dict,
        "onnx": _inspect_onnx,
        "openvino_ir": _inspect_ir,
    }[prepared.format]
    span.raise_if_cancelled()
    inspection = inspect(prepared, config, span)
    span.progress(1.0)
    span.reporter.log(f"Inspected {LABELS[prepared.format]}: {inspection.parameters or 0:,} weights, "
                      f"{inspection.precision or 'no weights'}.")
    return inspection


def load_torch_module(prepared: Prepared, config: InspectConfig) -> torch.nn.Module:
    """The model as a module, for later jobs (conversion, training). TorchScript and .pt2 run
    code as they load: call this only in a worker process."""
    path = prepared.folder / prepared.primary
    if prepared.format == "state_dict":
        arch, classes = _architecture(config)
        state, _ = _read_state_dict(prepared)
        return _fit(state, arch, classes, prepared.primary)
    if prepared.format == "torchscript":
        return torch.jit.load(str(path), map_location="cpu").eval()
    if prepared.format == "torch_export":
        return torch.export.load(str(path)).module()
    raise JobError(f"{LABELS[prepared.format]} is not a PyTorch model; it cannot be loaded as one.")


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --- state_dict ----------------------------------------------------------------------------------

def _inspect_state_dict(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
    arch, classes = _architecture(config)
    state, details = _read_state_dict(prepared)
    span.progress(0.3)
    model = _fit(state, arch, classes, prepared.primary)
    span.progress(0.5)
    example = _example(config.input_size)
    outputs, traces, trace_error = _run_and_export(model, example, classes)
    return Inspection(
        format="state_dict",
        inputs=[TensorInfo("input", list(example.shape), "f32")],
        outputs=outputs,
        parameters=sum(p.numel() for p in model.parameters()),
        size_bytes=_folder_size(prepared.folder),
        precision=_precision((_torch_dtype(t.dtype), t.numel()) for t in state.values()),
        opset=None,
        ir_version=None,
        traces=traces,
        trace_error=trace_error,
        details={"architecture": arch, "num_classes": classes, "tensors": len(state), **details},
    )


def _architecture(config: InspectConfig) -> tuple[str, int]:
    if config.architecture not in architectures.TRAINABLE:  # small_cnn: state_dicts Vintner trained
        given = f" (“{_show(config.architecture)}” is not one of them)" if config.architecture else ""
        raise JobError(f"A state_dict needs its torchvision architecture, one of {', '.join(ARCHITECTURES)}{given}.")
    if not isinstance(config.num_classes, int) or config.num_classes < 1:
        raise JobError("A state_dict needs its number of classes (the size of its classifier's output).")
    return config.architecture, config.num_classes


def _read_state_dict(prepared: Prepared) -> tuple[dict[str, torch.Tensor], dict]:
    path, name = prepared.folder / prepared.primary, prepared.primary
    if path.suffix == ".safetensors":
        try:
            with safetensors.safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            loaded = safetensors.torch.load_file(str(path), device="cpu")
        except (safetensors.SafetensorError, OSError, ValueError) as e:
            raise JobError(f"“{name}” is not a valid safetensors file ({one_line(e)}).") from None
        state, details = _as_state_dict(loaded, name)
        return state, {**details, "metadata": dict(list(metadata.items())[:20])} if metadata else details
    return _as_state_dict(_torch_load(path, name), name)


PREFERRED_KEYS = ("state_dict", "model", "model_state_dict")


def _as_state_dict(loaded: object, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """A flat {name: tensor}; a checkpoint dict ({"state_dict": …, "epoch": …}) is unwrapped when
    one of its values is the only mapping of tensors (or the only one under a usual key)."""
    if not isinstance(loaded, Mapping):
        raise JobError(f"“{name}” holds a {type(loaded).__name__}, not a state_dict (a mapping of weight names "
                       "to tensors, as model.state_dict() returns).")
    details: dict = {}
    if not _is_tensor_mapping(loaded):
        candidates = [key for key, value in loaded.items() if _is_tensor_mapping(value)]
        if len(candidates) > 1:
            candidates = [key for key in candidates if key in PREFERRED_KEYS]
        if len(candidates) != 1:
            keys = ", ".join(str(key) for key in list(loaded)[:8])
            raise JobError(f"“{name}” is not a state_dict: its values are not all tensors, and none of its keys "
                           f"({keys}) holds the weights unambiguously. Save model.state_dict() itself.")
        details["unwrapped"] = candidates[0]
        loaded = loaded[candidates[0]]
    state = dict(_flatten(loaded))
    prefixes = {key.split(".", 1)[0] for key in state}
    if prefixes == {"module"}:  # saved from DataParallel / DistributedDataParallel
        state = {key.removeprefix("module."): value for key, value in state.items()}
        details["stripped_prefix"] = "module."
    return state, details


def _is_tensor_mapping(value: object) -> bool:
    """A non-empty {str: tensor or such a mapping}."""
    if not isinstance(value, Mapping) or not value:
        return False
    return all(isinstance(k, str) and (isinstance(v, torch.Tensor) or _is_tensor_mapping(v)) for k, v in value.items())


def _flatten(mapping: Mapping, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _build(arch: str, classes: int, *, meta: bool = False) -> torch.nn.Module:
    """`meta`: shapes only, no memory and no time spent initialising weights a state_dict replaces."""
    # here, not at the top: the child process for TorchScript/.pt2 never needs torchvision
    from workers.pipeline.training import build_model

    with torch.device("meta" if meta else "cpu"):
        return build_model(arch, classes)


def _fit(state: dict[str, torch.Tensor], arch: str, classes: int, name: str) -> torch.nn.Module:
    """torchvision `arch` with `classes` outputs, holding `state` (strict), or a JobError that says
    in plain words what does not fit."""
    model = _build(arch, classes, meta=True)
    problems = _fit_problems(model, state, arch, classes)
    if problems:
        raise JobError(f"The weights in “{name}” do not fit torchvision {arch} with {classes} classes: "
                       f"{'; '.join(problems)}. Check the architecture and the number of classes.")
    try:
        model.load_state_dict(state, strict=True, assign=True)
        if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):  # a buffer no state_dict holds
            model = _build(arch, classes)
            model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise JobError(f"The weights in “{name}” do not fit torchvision {arch}: {one_line(e)}.") from None
    return model.float().eval()  # assign=True kept the file's dtypes; models here compute in FP32


def _fit_problems(model: torch.nn.Module, state: dict[str, torch.Tensor], arch: str, classes: int) -> list[str]:
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if not set(state) & set(expected):
        return [f"none of its weight names are {arch}'s (it has {_first(list(state))}), so it is another "
                "architecture, or was saved with a prefix"]
    problems = []
    heads = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    head = heads[-1] if heads else ""
    weight = f"{head}.weight"
    # the same classifier input, a different output size: only the class count differs
    if weight in mismatched and state[weight].ndim == 2 and state[weight].shape[1] == expected[weight].shape[1]:
        found = state[weight].shape[0]
        problems.append(f"the checkpoint's classifier ({head}) has {found} classes, you said {classes}")
        mismatched = [key for key in mismatched if not key.startswith(f"{head}.")]
    if missing:
        problems.append(f"{len(missing)} of {arch}'s weights are missing from it ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} of its weights are not part of {arch} ({_first(unexpected)})")
    for key in mismatched[:3]:
        saved, built = list(state[key].shape), list(expected[key].shape)
        problems.append(f"{key} is {saved} in the checkpoint but {built} in {arch}")
    if len(mismatched) > 3:
        problems.append(f"{len(mismatched) - 3} more weights have other shapes")
    return problems


def _first(keys: list[str], n: int = 3) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _example(size: int) -> torch.Tensor:
    return torch.rand(1, 3, size, size)


def _run_and_export(model: torch.nn.Module, example: torch.Tensor, classes: int
                    ) -> tuple[list[TensorInfo], bool, str]:
    """Outputs of one forward call on `example`, and whether torch.export traces the model on it.
    A failure of either is an answer here, not an error."""
    shape = list(example.shape)
    try:
        with torch.no_grad():
            outputs = _tensor_infos(model(example))
    except Exception as e:  # an input too small for the architecture, say
        return [TensorInfo("output", [1, classes], "f32")], False, f"forward() failed on a {shape} input: {one_line(e)}"
    try:
        torch.export.export(model, (example,))
    except Exception as e:
        return outputs, False, f"torch.export could not trace it on a {shape} input: {one_line(e)}"
    return outputs, True, ""


# --- TorchScript and torch.export: code, loaded in a child process -------------------------------

MEMORY_SIGNS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "can't allocate memory", "out of memory")


def _inspect_in_child(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
    facts = _run_child(prepared, config, span)
    return Inspection(
        format=prepared.format,
        inputs=[TensorInfo(**info) for info in facts["inputs"]],
        outputs=[TensorInfo(**info) for info in facts["outputs"]],
        parameters=facts["parameters"],
        size_bytes=_folder_size(prepared.folder),
        precision=facts["precision"],
        opset=None,
        ir_version=None,
        traces=facts["traces"],
        trace_error=facts["trace_error"],
        details=facts["details"],
    )


def _run_child(prepared: Prepared, config: InspectConfig, span: Span) -> dict:
    """Run `_inspect_child` on the model, within the time limit; its facts, or a JobError."""
    name = prepared.primary
    with tempfile.TemporaryDirectory(prefix="vintner-inspect-") as tmp:
        result, log = Path(tmp) / "result.json", Path(tmp) / "stderr.txt"
        request = {"format": prepared.format, "path": str((prepared.folder / name).resolve()),
                   "input_size": config.input_size, "memory_limit_mb": config.memory_limit_mb, "result": str(result)}
        with open(log, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "workers.pipeline._inspect_child", json.dumps(request)],
                cwd=tmp, env=_child_env(tmp), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True,  # its own process group, so a kill takes anything it started too
            )
            try:
                _wait(process, config.time_limit_s, span, name)
            finally:
                if process.poll() is None:
                    _kill(process)
        report = _read_report(result)
        stderr_tail = _tail(log)
    if "facts" in report:
        return report["facts"]
    message = report.get("message", "")
    if report.get("error") == "memory" or any(sign in message + stderr_tail for sign in MEMORY_SIGNS):
        raise JobError(f"“{name}” needed more than {config.memory_limit_mb:,} MB of memory to load (the limit for "
                       "loading uploaded code), so it was stopped.")
    if report.get("error"):
        raise JobError(f"PyTorch could not load “{name}” as {LABELS[prepared.format]}: {message}")
    last = next((line for line in reversed(stderr_tail.splitlines()) if line.strip()), "")
    raise JobError(f"Loading “{name}” crashed the process that tried it ({_how_it_ended(process.returncode)}); "
                   "the file may be damaged."
                   + (f" Last words: {last[:300]}" if last else ""))


def _read_report(result: Path) -> dict:
    try:
        report = json.loads(result.read_text())
    except (OSError, ValueError):  # missing, or cut short by a crash
        return {}
    return report if isinstance(report, dict) else {}


def _how_it_ended(code: int) -> str:
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def _tail(path: Path, size: int = 4000) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read().decode("utf-8", "replace")


def _child_env(home: str) -> dict[str, str]:
    """Only what Python and torch need: the worker's credentials stay out of reach of the model."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "CUDA_VISIBLE_DEVICES": "",  # CPU only: a GPU's driver maps memory the limit would count
        "OMP_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",  # each malloc arena reserves 64 MB of address space
    }


def _wait(process: subprocess.Popen, limit: float, span: Span, name: str) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            process.wait(timeout=max(0.0, min(0.25, deadline - time.monotonic())))
            return
        except subprocess.TimeoutExpired:
            pass
        if span.reporter.cancelled():
            _kill(process)
            raise Cancelled()
        if time.monotonic() >= deadline:
            _kill(process)
            raise JobError(f"“{name}” took longer than {limit:g} s to load (the limit for loading uploaded code), "
                           "so it was stopped.")


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _torchscript_facts(path: Path, input_size: int) -> dict:
    """Runs in the child: load, then try a forward call on an example image batch."""
    module = torch.jit.load(str(path), map_location="cpu").eval()
    arguments = [argument.name for argument in module.forward.schema.arguments][1:]  # less self
    example = _example(input_size)
    try:
        with torch.no_grad():
            output = module(example)
        traces, trace_error = True, ""
        inputs = [TensorInfo(arguments[0] if arguments else "input", list(example.shape), "f32")]
        outputs = _tensor_infos(output)
    except Exception as e:  # a forward that fails is an answer here
        traces, inputs, outputs = False, [TensorInfo(argument, [], "") for argument in arguments], []
        trace_error = f"forward() failed on a {list(example.shape)} float input: {one_line(e)}"
    tensors = list(module.parameters()) + list(module.buffers())
    return {
        "inputs": [asdict(info) for info in inputs],
        "outputs": [asdict(info) for info in outputs],
        "parameters": sum(p.numel() for p in module.parameters()),
        "precision": _precision((_torch_dtype(t.dtype), t.numel()) for t in tensors),
        "traces": traces,
        "trace_error": trace_error,
        "details": {"class": module.original_name, "forward": str(module.forward.schema)},
    }


def _export_facts(path: Path, input_size: int) -> dict:
    """Runs in the child: an ExportedProgram's signature; it is traced already."""
    program = torch.export.load(str(path))
    signature = program.graph_signature
    nodes = {node.name: node for node in program.graph.nodes}
    output_node = next(node for node in program.graph.nodes if node.op == "output")
    user_outputs = set(signature.user_outputs)
    inputs = [_fake_info(name, nodes[name].meta.get("val")) for name in signature.user_inputs]
    outputs = [_fake_info(node.name, node.meta.get("val")) for node in output_node.args[0]
               if getattr(node, "name", None) in user_outputs]
    weights = [program.state_dict[name] for name in (*signature.parameters, *signature.buffers)
               if name in program.state_dict]  # non-persistent buffers are not in it
    ranges = {str(symbol): [_bound(r.lower), _bound(r.upper)] for symbol, r in program.range_constraints.items()}
    return {
        "inputs": [asdict(info) for info in inputs],
        "outputs": [asdict(info) for info in outputs],
        "parameters": sum(program.state_dict[name].numel() for name in signature.parameters),
        "precision": _precision((_torch_dtype(t.dtype), t.numel()) for t in weights),
        "traces": True,
        "trace_error": "",
        "details": {"dynamic_dims": ranges} if ranges else {},
    }


CHILD_FACTS = {"torchscript": _torchscript_facts, "torch_export": _export_facts}


def _fake_info(name: str, value: object) -> TensorInfo:
    if not isinstance(value, torch.Tensor):
        return TensorInfo(name, [], "")
    return TensorInfo(name, [d if isinstance(d, int) else None for d in value.shape], _torch_dtype(value.dtype))


def _bound(value: object) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if abs(number) < 2**62 else None  # int_oo: unbounded


def _tensor_infos(output: object) -> list[TensorInfo]:
    """Outputs of one forward call: a tensor, a tuple/list of them, or a dict of them."""
    if isinstance(output, torch.Tensor):
        return [TensorInfo("output", list(output.shape), _torch_dtype(output.dtype))]
    if isinstance(output, (tuple, list)):
        items = [(f"output{i}", value) for i, value in enumerate(output)]
    elif isinstance(output, Mapping):
        items = [(str(key), value) for key, value in output.items()]
    else:
        return []
    return [TensorInfo(key, list(value.shape), _torch_dtype(value.dtype))
            for key, value in items if isinstance(value, torch.Tensor)]


# --- ONNX --------------------------------------------------------------------------------------

def _inspect_onnx(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
    path, name = prepared.folder / prepared.primary, prepared.primary
    model = _read_onnx(path, name)
    locations = set()
    for tensor in _external_tensors(model):
        info = _external_info(tensor, name)
        _check_external_file(prepared.folder, tensor.name, info, name)
        locations.add(_normal(info.location))
    span.progress(0.3)
    try:
        onnx.checker.check_model(str(path))  # the path form reads external data, and models over 2 GB
    except Exception as e:  # ValidationError, and the C++ checker's other complaints
        raise JobError(f"“{name}” fails ONNX's model check: {one_line(e)}") from None
    graph = model.graph
    initialized = {tensor.name for tensor in graph.initializer}
    weights = [(_onnx_dtype(t.data_type), math.prod(t.dims)) for t in graph.initializer]
    return Inspection(
        format="onnx",
        inputs=[_onnx_info(value) for value in graph.input if value.name not in initialized],
        outputs=[_onnx_info(value) for value in graph.output],
        parameters=sum(count for dtype, count in weights if dtype not in NOT_WEIGHTS),
        size_bytes=_folder_size(prepared.folder),
        precision=_precision(weights),
        opset=next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        ir_version=str(model.ir_version),
        traces=None,
        trace_error="",
        details={
            "producer": " ".join(filter(None, (model.producer_name, model.producer_version))),
            "graph": graph.name,
            "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "external_data": sorted(locations),
            "metadata": {p.key: p.value[:200] for p in list(model.metadata_props)[:20]},
        },
    )


def _read_onnx(path: Path, name: str) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=False)  # its data files are checked first
    except Exception as e:  # protobuf's DecodeError, and the like
        raise JobError(f"“{_show(name)}” is not a valid ONNX model ({one_line(e)}).") from None


def _external_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
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


def _external_info(tensor: onnx.TensorProto, name: str) -> ExternalDataInfo:
    try:
        return ExternalDataInfo(tensor)
    except ValueError as e:
        raise JobError(f"“{_show(name)}” describes the external data of tensor “{_show(tensor.name)}” "
                       f"wrongly ({one_line(e)}).") from None


DRIVE = re.compile(r"^[A-Za-z]:")


def _check_location_text(tensor: str, location: str, name: str) -> None:
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
    raise JobError(f"“{_show(name)}” refers to external data for tensor “{_show(tensor)}” at "
                   f"“{_show(location)}”, {reason}. External data must be files next to the model "
                   "(or in a folder below it).")


def _check_external_file(folder: Path, tensor: str, info: ExternalDataInfo, name: str) -> None:
    """The data file is a regular file inside `folder`, reached without links, and holds the range."""
    location = info.location
    _check_location_text(tensor, location, name)
    path, problem = folder, ""
    for part in PurePosixPath(_normal(location)).parts:  # every step, so no link anywhere on the way
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
        raise JobError(f"“{_show(name)}” refers to external data for tensor “{_show(tensor)}” at "
                       f"“{_show(location)}”, which {problem}.")
    size, offset = path.stat().st_size, info.offset or 0
    end = offset + info.length if info.length is not None else offset
    if end > size:
        raise JobError(f"“{_show(name)}” needs bytes {offset:,}–{end:,} of “{_show(location)}” for tensor "
                       f"“{_show(tensor)}”, but that file is only {size:,} bytes.")


def _normal(location: str) -> str:
    return PurePosixPath(*[part for part in PurePosixPath(location).parts if part != "."]).as_posix()


ONNX_DTYPES = {"FLOAT": "f32", "FLOAT16": "f16", "BFLOAT16": "bf16", "DOUBLE": "f64", "INT8": "i8", "UINT8": "u8",
               "INT16": "i16", "UINT16": "u16", "INT32": "i32", "UINT32": "u32", "INT64": "i64", "UINT64": "u64",
               "BOOL": "bool", "INT4": "i4", "UINT4": "u4", "STRING": "string"}


def _onnx_dtype(data_type: int) -> str:
    known = data_type in onnx.TensorProto.DataType.values()
    name = onnx.TensorProto.DataType.Name(data_type) if known else str(data_type)
    return ONNX_DTYPES.get(name, name.lower())


def _onnx_info(value: onnx.ValueInfoProto) -> TensorInfo:
    if not value.type.HasField("tensor_type"):
        return TensorInfo(value.name, [], value.type.WhichOneof("value") or "")
    tensor = value.type.tensor_type
    shape = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
    return TensorInfo(value.name, shape if tensor.HasField("shape") else [], _onnx_dtype(tensor.elem_type))


# --- OpenVINO IR -------------------------------------------------------------------------------

def _inspect_ir(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
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
    return Inspection(
        format="openvino_ir",
        inputs=[_ov_info(port, f"input{i}") for i, port in enumerate(model.inputs)],
        outputs=[_ov_info(port, f"output{i}") for i, port in enumerate(model.outputs)],
        parameters=sum(count for dtype, count in constants if dtype not in NOT_WEIGHTS),
        size_bytes=_folder_size(prepared.folder),
        precision=_precision(constants),
        opset=None,
        ir_version=root.get("version"),
        traces=None,
        trace_error="",
        details={
            "name": model.get_friendly_name(),
            "runtime_version": runtime.get("value", "") if runtime is not None else "",
            "framework": framework.get("value", "") if framework is not None else "",
        },
    )


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
            raise JobError(f"model.xml gives Const layer “{_show(layer.get('name', '?'))}” an invalid "
                           "offset or size in model.bin.")
        needed = max(needed, offset + size)
    actual = weights.stat().st_size if weights.exists() else 0
    if needed > actual:
        raise JobError(f"model.bin does not match model.xml (it is {actual:,} bytes; "
                       f"the XML needs at least {needed:,}).")


def _ov_info(port, fallback: str) -> TensorInfo:
    names = sorted(port.get_names())
    shape = port.get_partial_shape()
    dims = [dim.get_length() if dim.is_static else None for dim in shape] if shape.rank.is_static else []
    dtype = port.get_element_type().get_type_name()
    return TensorInfo(names[0] if names else fallback, dims, "bool" if dtype == "boolean" else dtype)


# --- shared ------------------------------------------------------------------------------------

TORCH_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.float64: "f64",
                torch.int8: "i8", torch.uint8: "u8", torch.int16: "i16", torch.int32: "i32", torch.int64: "i64",
                torch.bool: "bool", torch.qint8: "i8", torch.quint8: "u8"}
# What a weight's dtype says of the model's precision. Wider integers are shapes, indices and
# counters (num_batches_tracked), not weights: they neither count as parameters nor set precision.
PRECISIONS = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "f64": "fp64", "i8": "int8", "u8": "int8",
              "i4": "int4", "u4": "int4", "nf4": "int4"}
NOT_WEIGHTS = {"i16", "u16", "i32", "u32", "i64", "u64", "bool", "boolean", "string"}
DOMINANT = 0.9  # share of weight elements one dtype needs to name the precision; below it is "mixed"


def _torch_dtype(dtype: torch.dtype) -> str:
    return TORCH_DTYPES.get(dtype, str(dtype).removeprefix("torch."))


def _precision(weights: Iterable[tuple[str, int]]) -> str:
    counts: Counter[str] = Counter()
    for dtype, count in weights:
        if dtype in PRECISIONS:
            counts[PRECISIONS[dtype]] += count
    if not counts:
        return ""
    precision, count = counts.most_common(1)[0]
    return precision if count >= DOMINANT * sum(counts.values()) else "mixed"


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(error: BaseException) -> str:
    """An exception as one short line for a message: its first non-empty line."""
    text = ANSI.sub("", str(error))
    line = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return line if len(line) <= 300 else line[:297] + "…"


def _show(name: str) -> str:
    """A user-given name fit for a message: control characters escaped, very long names shortened."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))
    return shown if len(shown) <= 200 else f"{shown[:120]}…{shown[-60:]}"


def _json_safe(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return str(value)
