"""Class names a model carries with it: ONNX metadata, an IR's runtime info, torchvision weights'
categories, or a Hugging Face `config.json` (`id2label`) or `labels.txt` beside the model in a zip.
Every source is untrusted text: parsed without running anything, bounded in size and count."""

import ast
import json
from pathlib import Path

MAX_TEXT = 4 * 2**20  # a label file larger than this is not a label file
MAX_LABELS = 100_000
MAX_NAME = 200
LABEL_KEYS = ("labels", "classes", "class_names", "names", "id2label")  # ONNX metadata_props, in order of trust
BESIDE = ("labels.txt", "classes.txt", "synset.txt")


def parse_labels(text: str) -> list[str]:
    """Names in output order from what exporters write: a JSON list, a JSON or Python-literal dict
    {index: name} (Ultralytics' `names`, Hugging Face's `id2label`), one name a line, or names
    separated by commas or (OpenVINO's model_info) spaces. [] where it holds no usable list."""
    text = text.strip()[:MAX_TEXT]
    if not text:
        return []
    value = _literal(text)
    if isinstance(value, dict):
        return _from_mapping(value)
    if isinstance(value, list):
        return _checked([str(v) for v in value]) if all(isinstance(v, (str, int)) for v in value) else []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return _checked(lines)
    one = lines[0]
    return _checked([part.strip() for part in one.split(",")] if "," in one else one.split())


def _literal(text: str) -> object:
    if text[0] not in "[{":
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:  # Python literals only (dicts, lists, strings, numbers): nothing is evaluated
        return ast.literal_eval(text) if len(text) < 2**20 else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _from_mapping(mapping: dict) -> list[str]:
    """{0: "cat", "1": "dog"} → ["cat", "dog"]; [] unless the keys are exactly 0..n-1."""
    try:
        pairs = {int(key): value for key, value in mapping.items()}
    except (TypeError, ValueError):
        return []
    if sorted(pairs) != list(range(len(pairs))) or not all(isinstance(v, (str, int)) for v in pairs.values()):
        return []
    return _checked([str(pairs[i]) for i in range(len(pairs))])


def _checked(names: list[str]) -> list[str]:
    """Usable as labels: non-empty, unique, not too many or too long; else none at all."""
    names = [name.strip() for name in names]
    if (not names or len(names) > MAX_LABELS or len(set(names)) != len(names)
            or any(not name or len(name) > MAX_NAME for name in names)):
        return []
    return names


def onnx_labels(metadata: dict[str, str]) -> list[str]:
    """From an ONNX model's metadata_props."""
    for key in LABEL_KEYS:
        labels = parse_labels(metadata.get(key, ""))
        if labels:
            return labels
    return []


def ir_labels(root) -> list[str]:
    """From an IR's <rt_info>: model_info/labels (OpenVINO's Model API writes them there,
    space-separated) or a top-level labels entry."""
    for path in ("rt_info/model_info/labels", "rt_info/labels"):
        element = root.find(path)
        if element is not None:
            labels = parse_labels(element.get("value", ""))
            if labels:
                return labels
    return []


def torchvision_labels(architecture: str, classes: int) -> list[str]:
    """The categories torchvision's pretrained weights for `architecture` name, where the state_dict
    has as many classes (ImageNet's 1000): in torchvision's code, so no download."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(architecture)
    except ValueError:
        return []
    for member in weights:
        categories = member.meta.get("categories") or []
        if len(categories) == classes:
            return list(categories)
    return []


def labels_beside(folder: Path) -> tuple[list[str], str]:
    """Labels from a file next to the model: a Hugging Face config.json's id2label, or labels.txt;
    with the file's name, for the record."""
    config = folder / "config.json"
    if _plain_file(config):
        try:
            id2label = json.loads(config.read_text("utf-8", "replace")).get("id2label")
        except (ValueError, AttributeError):
            id2label = None
        labels = _from_mapping(id2label) if isinstance(id2label, dict) else []
        if labels == [f"LABEL_{i}" for i in range(len(labels))]:  # transformers' placeholders name nothing
            labels = []
        if labels:
            return labels, "config.json (id2label)"
    for name in BESIDE:
        path = folder / name
        if _plain_file(path):
            labels = _checked([line.strip() for line in path.read_text("utf-8", "replace").splitlines() if line.strip()])
            if labels:
                return labels, name
    return [], ""


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_TEXT
