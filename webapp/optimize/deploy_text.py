"""The deployment program of a text classifier's IR: classify_text.py, which tokenizes a sentence
with the tokenizer files that come in the zip (tokenizer.json, through the `tokenizers` library:
no torch, no transformers) and prints each label with its probability, best first.

It feeds the model as Vintner evaluates it: the inputs the IR has (input_ids, attention_mask,
token_type_ids) by name, truncated at the model's maximum (tokenizer_config.json's
model_max_length, at most 512) and, for an IR of a fixed length, padded to it; f32 inference.
Names and labels are user text: they go in only as Python literals (repr), as in deploy.py.
"""

from importlib.metadata import version

from webapp.optimize.fit import output_count
from webapp.registry.models import Artifact

PROGRAM_NAME = "classify_text.py"

TEMPLATE = '''"""Classify a sentence with the text model TITLE names.

Unzip the download and run, in its folder:
    pip install openvino=={openvino} tokenizers=={tokenizers} numpy
    python classify_text.py "the match was a great goal"
(a second argument is the sentence's pair, for a model of sentence pairs)
"""

import json
import sys
from pathlib import Path

import numpy as np
import openvino as ov
from tokenizers import Tokenizer

TITLE = {title}
LABELS = {labels}
STATIC_LENGTH = {static}  # the IR's fixed number of tokens; None: any length
HERE = Path(__file__).resolve().parent
TOKENIZER = HERE / "tokenizer" if (HERE / "tokenizer").is_dir() else HERE  # where its files lie


def tokenizer_settings() -> dict:
    path = TOKENIZER / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {{}}


def load_tokenizer() -> Tokenizer:
    settings = tokenizer_settings()
    tokenizer = Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))
    limit = STATIC_LENGTH or min(int(settings.get("model_max_length") or 512), 512)
    tokenizer.enable_truncation(max_length=limit)
    if STATIC_LENGTH:
        pad = str(settings.get("pad_token") or "[PAD]")
        tokenizer.enable_padding(length=STATIC_LENGTH, pad_id=tokenizer.token_to_id(pad) or 0, pad_token=pad)
    else:
        tokenizer.no_padding()
    return tokenizer


# f32 where the model computes in floating point, as Vintner measured its accuracy.
model = ov.Core().compile_model(str(HERE / "model.xml"), {device}, {{"INFERENCE_PRECISION_HINT": "f32"}})
encoding = load_tokenizer().encode(*sys.argv[1:3])
given = {{"input_ids": encoding.ids, "attention_mask": encoding.attention_mask, "token_type_ids": encoding.type_ids}}
inputs = {{}}
for port in model.inputs:
    name = port.get_any_name()
    inputs[name] = np.array([given[name]], dtype=port.get_element_type().to_dtype())
scores = model(inputs)[0].reshape(-1).astype(np.float64)
probabilities = np.exp(scores - scores.max())
probabilities /= probabilities.sum()
for index in np.argsort(-probabilities, kind="stable")[:{top}]:
    print(f"{{LABELS[index]}}\\t{{probabilities[index]:.3f}}")
'''


def text_snippet(artifact: Artifact, *, device: str = "CPU") -> str:
    """classify_text.py for a text model's OpenVINO IR."""
    model = artifact.model
    labels = model.labels or [str(index) for index in range(artifact.num_classes or output_count(artifact) or 0)]
    inputs = artifact.inspection.get("inputs") or []
    shape = next((entry.get("shape") or [] for entry in inputs if entry.get("name") == "input_ids"), [])
    static = shape[1] if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0 else None
    title = (f"{model.name}: artifact {artifact.id}, {artifact.precision.upper() or 'FP32'} OpenVINO IR "
             f"(from Vintner)")
    return TEMPLATE.format(title=repr(title), openvino=version("openvino"), tokenizers=version("tokenizers"),
                           labels=repr([str(label) for label in labels]), static=repr(static), device=repr(device),
                           top=min(5, len(labels)))
