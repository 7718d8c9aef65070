"""An upload's format recognised by its content, checked, and its files put under canonical names."""

import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from workers.pipeline.archives import ExtractLimits, extract_archive
from workers.pipeline.formats.common import FORMATS, LABELS, Prepared, one_line
from workers.pipeline.formats.labels import labels_beside
from workers.pipeline.formats.onnx_models import (
    check_location_text, checked_external_files, external_info, external_tensors, read_onnx,
)
from workers.pipeline.formats.pickles import refuse_unsafe_pickle
from workers.pipeline.formats.text_folders import carry_tokenizer, prepare_transformers
from workers.pipeline.reporting import JobError, Span, show

GiB = 2**30
# Model archives hold a few large files: few entries, and weights barely compress.
MODEL_ARCHIVE_LIMITS = ExtractLimits(max_bytes=32 * GiB, max_files=10_000, max_file_bytes=16 * GiB, max_ratio=100.0)


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
            raise JobError(f"“{show(name)}” is empty (0 bytes); upload it again.")
    out.mkdir(parents=True, exist_ok=True)
    if len(sources) == 2:
        prepared = _prepare_ir_pair(sources, out)
    else:
        prepared = _prepare_file(*sources[0], out, span, declared_format)
    if declared_format and declared_format != prepared.format:
        names = " and ".join(f"“{show(name)}”" for _, name in sources)
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
        raise JobError(f"“{show(name)}” is named like {promised}, but its content is {CONTENT_WORDS[kind]}; "
                       "upload the file as it was saved.")
    if kind in ("torchscript", "torch_export"):
        return _place_one(path, out, kind, "model.pt" if kind == "torchscript" else "model.pt2")
    if kind in ("torch_pickle", "pickle"):
        refuse_unsafe_pickle(path, name)
        return _place_one(path, out, "state_dict", "weights.pth")
    if kind == "safetensors":
        return _place_one(path, out, "state_dict", "weights.safetensors")
    if kind == "xml":
        raise JobError(f"“{show(name)}” looks like an OpenVINO IR's .xml: upload it together with its .bin "
                       "(both files at once, or one zip holding both).")
    if kind == "zip":
        return _prepare_zip(path, name, out, span)
    if suffix == ".onnx" or declared_format == "onnx":  # protobuf has no magic bytes to tell it by
        return _prepare_onnx_file(path, name, out)
    raise JobError(f"“{show(name)}” is not a model file Vintner recognises. Upload TorchScript (.pt), "
                   "torch.export (.pt2), a state_dict (.pth or .safetensors), ONNX (.onnx, or a zip with its "
                   "external data), OpenVINO IR (.xml and .bin) or a Hugging Face model folder as a zip.")


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
        raise JobError(f"“{show(name)}” starts like a zip archive but is damaged ({one_line(e)}).") from None
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
        xmls = [p for p in files if p.suffix.lower() == ".xml" and p.name not in OPENVINO_TOKENIZERS]
        configs = [p for p in files if p.name == "config.json"]
        if len(models) == 1 and not xmls:
            return _with_tokenizer(_with_labels_beside(
                _prepare_onnx_folder(models[0], f"{name}: {models[0].relative_to(unpacked).as_posix()}", out),
                models[0].parent, unpacked), models[0].parent, unpacked)
        if len(xmls) == 1 and not models:
            return _with_tokenizer(_with_labels_beside(
                _prepare_ir_in_zip(xmls[0], [p for p in files if p.suffix.lower() == ".bin"], name, out),
                xmls[0].parent, unpacked), xmls[0].parent, unpacked)
        top_configs = [p for p in configs if len(p.parts) == min(len(c.parts) for c in configs)]
        if len(top_configs) == 1 and not models and not xmls:  # a Hugging Face model folder; a Trainer's
            # output also holds checkpoint-N/ folders below it, each with a config.json: the top one is the model
            return prepare_transformers(top_configs[0].parent, name, out, lambda src, dst: _place(src, dst, move=True))
        found = ", ".join(show(p.relative_to(unpacked).as_posix()) for p in (models + xmls + configs)[:5])
        raise JobError(f"“{show(name)}” must hold one ONNX model (.onnx, with its external data files), one "
                       "OpenVINO IR (.xml and .bin) or one Hugging Face model folder (config.json, "
                       f"model.safetensors and the tokenizer files); it holds {found or 'none of them'}.")


def _with_tokenizer(prepared: Prepared, folder: Path, top: Path) -> Prepared:
    """A text model's tokenizer files next to the model (or at the zip's top, or in a tokenizer/
    folder there, as Vintner's own download has them) travel with it, and so does the tokenizer's
    own IR (openvino_tokenizer.xml and .bin) where it lies beside the model."""
    move = lambda src, dst: _place(src, dst, move=True)  # noqa: E731
    for place in dict.fromkeys((folder, folder / "tokenizer", top, top / "tokenizer")):
        if place.is_dir() and not place.is_symlink() and carry_tokenizer(place, prepared.folder, move):
            break
    if prepared.format == "openvino_ir":
        for name in OPENVINO_TOKENIZERS:
            if (folder / name).is_file() and (folder / name).with_suffix(".bin").is_file():
                move(folder / name, prepared.folder / name)
                move((folder / name).with_suffix(".bin"), prepared.folder / Path(name).with_suffix(".bin"))
    return prepared


def _with_labels_beside(prepared: Prepared, folder: Path, top: Path) -> Prepared:
    """Class names in a labels.txt or config.json next to the model (or at the zip's top)."""
    for place in dict.fromkeys((folder, top)):
        prepared.labels, prepared.labels_source = labels_beside(place)
        if prepared.labels:
            prepared.labels_source = f"{prepared.labels_source} in the zip"
            break
    return prepared


def _is_junk(relative: Path) -> bool:
    """What archivers add on their own (macOS resource forks, Finder files)."""
    return "__MACOSX" in relative.parts or relative.name.startswith("._") or relative.name == ".DS_Store"


def _prepare_onnx_file(path: Path, name: str, out: Path) -> Prepared:
    model = read_onnx(path, name)
    for tensor in external_tensors(model):
        location = external_info(tensor, name).location
        check_location_text(tensor.name, location, name)
        raise JobError(f"“{show(name)}” keeps the data of tensor “{show(tensor.name)}” in a separate file "
                       f"(“{show(location)}”); upload a zip holding the .onnx together with its data files.")
    return _place_one(path, out, "onnx", "model.onnx")


RESERVED = {"model.onnx", "metadata.json", "sha256sums"}
OPENVINO_TOKENIZERS = ("openvino_tokenizer.xml", "openvino_detokenizer.xml")  # beside a text IR, not the model


def _prepare_onnx_folder(model_path: Path, name: str, out: Path) -> Prepared:
    """The .onnx found in a zip, and exactly the external data files it references."""
    locations = checked_external_files(read_onnx(model_path, name), model_path.parent, name)
    # The model becomes model.onnx and its download zip adds these two: a data file of the same
    # name (in any case, as a Mac or Windows unzips it) would overwrite them or forge the sums.
    taken = sorted(location for location in locations if location.casefold() in RESERVED)
    if taken:
        raise JobError(f"“{show(name)}” keeps external data in a file named {show(taken[0])}, a name Vintner "
                       "keeps for its own files (model.onnx, metadata.json, SHA256SUMS); rename it and export again.")
    _place(model_path, out / "model.onnx", move=True)
    for location in sorted(locations):
        _place(model_path.parent / location, out / location, move=True)
    return Prepared(format="onnx", folder=out, primary="model.onnx")


def _prepare_ir_pair(sources: list[tuple[Path, str]], out: Path) -> Prepared:
    by_suffix = {PurePosixPath(name).suffix.lower(): (path, name) for path, name in sources}
    if set(by_suffix) != {".xml", ".bin"}:
        names = " and ".join(f"“{show(name)}”" for _, name in sources)
        raise JobError(f"Two files must be an OpenVINO IR's .xml and .bin; got {names}.")
    xml, xml_name = by_suffix[".xml"]
    if _sniff(xml, xml_name) != "xml":
        raise JobError(f"“{show(xml_name)}” is named like an OpenVINO IR .xml, but its content is not XML.")
    _place(xml, out / "model.xml")
    _place(by_suffix[".bin"][0], out / "model.bin")
    return Prepared(format="openvino_ir", folder=out, primary="model.xml")


def _prepare_ir_in_zip(xml: Path, bins: list[Path], name: str, out: Path) -> Prepared:
    same_stem = [p for p in bins if p.parent == xml.parent and p.stem == xml.stem]
    weights = same_stem or (bins if len(bins) == 1 else [])
    if not weights:
        raise JobError(f"“{show(name)}” holds {xml.name} but not its weights: add {xml.stem}.bin next to it.")
    _place(xml, out / "model.xml", move=True)
    _place(weights[0], out / "model.bin", move=True)
    return Prepared(format="openvino_ir", folder=out, primary="model.xml")
