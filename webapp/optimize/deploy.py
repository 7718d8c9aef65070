"""The deployment snippet: a short Python program that runs a downloaded IR on an image with the
OpenVINO runtime, the model's own preprocessing and labels written into it.

It carries the source of the functions Vintner itself evaluates with (`data.open_image`'s
conversion to RGB, `preprocessing.fit_picture` and `preprocessing.network_input`), so it gives
the answers the accuracy figures describe, and needs only openvino, numpy and Pillow. Scores are
shown as probabilities: a softmax over logits, or the outputs as they are when they already are
probabilities (non-negative, summing to 1: the model ends in a softmax).

Names and labels are user text: they go in only as Python literals (repr), never into the
docstring, a comment or the template itself, so no name can become code in the program. The
preprocessing is checked settings (choices and numbers), written as a literal too.
"""

import inspect
from importlib.metadata import version

from webapp.core.modality import Modality
from webapp.optimize.deploy_text import text_snippet
from webapp.optimize.fit import output_count
from webapp.registry.models import Artifact, Format
from workers.pipeline import data, preprocessing

TEMPLATE = '''"""Classify an image with the model TITLE names.

Unzip the download, put this file beside model.xml and run:
    pip install openvino=={openvino} pillow numpy
    python classify.py picture.jpg
"""

import sys
from pathlib import Path

import numpy as np
import openvino as ov
from PIL import Image, ImageOps

TITLE = {title}
LABELS = {labels}
# How Vintner feeds this model (metadata.json says the same): {steps}
PREPROCESSING = {preprocessing}
EMBEDDED = {embedded}  # the IR takes the sized picture as u8 NHWC RGB and normalises it itself


{open_image}


{to_rgb}


{fit_picture}


{network_input}


def preprocess(path: str) -> np.ndarray:
    picture = np.asarray(fit_picture(open_image(path), PREPROCESSING), dtype=np.uint8)
    return picture[None] if EMBEDDED else network_input(picture, PREPROCESSING)


# f32 where the model computes in floating point, as Vintner measured its accuracy; without the
# hint some devices use a faster, less exact default (bf16 on recent CPUs, f16 on GPUs).
model = ov.Core().compile_model("model.xml", {device}, {{"INFERENCE_PRECISION_HINT": "f32"}})
scores = model(preprocess(sys.argv[1]))[0].reshape(-1).astype(np.float64)
if scores.size > 1 and scores.min() >= 0 and abs(scores.sum() - 1) < 1e-3:
    probabilities = scores  # already probabilities: the model ends in a softmax
else:
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
for index in np.argsort(-probabilities, kind="stable")[:{top}]:
    print(f"{{LABELS[index]}}\\t{{probabilities[index]:.3f}}")
'''


def snippet(artifact: Artifact, *, device: str = "CPU") -> str:
    """The program for an OpenVINO IR artifact (ValueError for any other format)."""
    if artifact.format != Format.OPENVINO_IR:
        raise ValueError("Deployment snippets are for OpenVINO IR artifacts.")
    model = artifact.model
    if model.modality == Modality.TEXT:
        return text_snippet(artifact, device=device)
    recipe = preprocessing.complete(model.preprocessing)
    recipe = {**recipe, "input_size": [int(v) for v in recipe["input_size"]], "crop": float(recipe["crop"]),
              **{key: [float(v) for v in recipe[key]] * (3 if len(recipe[key]) == 1 else 1) for key in ("mean", "std")}}
    labels = model.labels or [str(index) for index in range(artifact.num_classes or output_count(artifact) or 0)]
    embedded = (artifact.inspection.get("inputs") or [{}])[0].get("dtype") == "u8"
    title = (f"{model.name}: artifact {artifact.id}, {artifact.precision.upper() or 'FP32'} OpenVINO IR "
             f"(from Vintner)")
    return TEMPLATE.format(
        title=repr(title), openvino=version("openvino"), labels=repr([str(label) for label in labels]),
        steps=preprocessing.describe(recipe), preprocessing=repr(recipe), embedded=embedded,
        open_image=_source(data.open_image),
        to_rgb=_source(data._to_rgb), fit_picture=_source(preprocessing.fit_picture),
        network_input=_source(preprocessing.network_input), device=repr(device), top=min(5, len(labels)),
    )


def _source(function) -> str:
    return inspect.getsource(function).strip()
