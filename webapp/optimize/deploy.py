"""The deployment snippet: a short Python program that runs a downloaded IR on an image with the
OpenVINO runtime, the artifact's own preprocessing and labels written into it.

It crops as Vintner evaluates (torchvision's Resize then CenterCrop on a PIL image: the short
side to size / 0.875, the centre cut out), so it gives the answers the accuracy figures describe,
and needs only openvino, numpy and Pillow.

Names and labels are user text: they go in only as Python literals (repr), never into the
docstring, a comment or the template itself, so no name can become code in the program.
"""

from importlib.metadata import version

from webapp.optimize.fit import output_count
from webapp.registry.models import Artifact, Format
from workers.pipeline.architectures import VAL_CROP

TEMPLATE = '''"""Classify an image with the model TITLE names.

Unzip the download, put this file beside model.xml and run:
    pip install openvino=={openvino} pillow numpy
    python classify.py picture.jpg
"""

import sys

import numpy as np
import openvino as ov
from PIL import Image, ImageOps

TITLE = {title}
LABELS = {labels}
SIZE = {size}  # height, width the network sees
CROP = {crop}  # the short side is resized to SIZE / CROP, then the centre is cut out
{normalise_constants}

def preprocess(path: str) -> np.ndarray:
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    height, width = SIZE
    short = round(min(SIZE) / CROP)
    if image.width <= image.height:
        size = (short, int(short * image.height / image.width))
    else:
        size = (int(short * image.width / image.height), short)
    image = image.resize(size, Image.BILINEAR)
    top, left = int(round((image.height - height) / 2)), int(round((image.width - width) / 2))
    image = image.crop((left, top, left + width, top + height))
{normalise_code}

model = ov.Core().compile_model("model.xml", {device})
scores = model(preprocess(sys.argv[1]))[0].reshape(-1)
probabilities = np.exp(scores - scores.max())
probabilities /= probabilities.sum()
for index in np.argsort(-probabilities)[:{top}]:
    print(f"{{LABELS[index]}}\\t{{probabilities[index]:.3f}}")
'''

FLOAT_CONSTANTS = '''MEAN = {mean}  # per channel, 0-1 units, in the network's channel order ({color})
STD = {std}
'''

FLOAT_CODE = '''    pixels = np.asarray(image, dtype=np.float32) / 255.0{reverse}
    pixels = (pixels - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return pixels.transpose(2, 0, 1)[None]  # 1 x 3 x H x W'''

EMBEDDED_CODE = '''    return np.asarray(image, dtype=np.uint8)[None]  # 1 x H x W x 3, RGB: the model normalises itself'''


def snippet(artifact: Artifact, *, device: str = "CPU") -> str:
    """The program for an OpenVINO IR artifact (ValueError for any other format)."""
    if artifact.format != Format.OPENVINO_IR:
        raise ValueError("Deployment snippets are for OpenVINO IR artifacts.")
    model = artifact.model
    preprocessing = model.preprocessing
    labels = model.labels or [str(index) for index in range(artifact.num_classes or output_count(artifact) or 0)]
    embedded = (artifact.inspection.get("inputs") or [{}])[0].get("dtype") == "u8"

    def three(values) -> list[float]:
        values = [float(v) for v in values]
        return values * 3 if len(values) == 1 else values

    if embedded:
        constants, code = "", EMBEDDED_CODE
    else:
        bgr = preprocessing.get("color") == "BGR"  # the comment names one of two fixed words, never the stored text
        constants = FLOAT_CONSTANTS.format(mean=three(preprocessing["mean"]), std=three(preprocessing["std"]),
                                           color="BGR" if bgr else "RGB")
        code = FLOAT_CODE.format(reverse="[..., ::-1]  # the network takes BGR" if bgr else "")
    title = (f"{model.name}: artifact {artifact.id}, {artifact.precision.upper() or 'FP32'} OpenVINO IR "
             f"(from Vintner)")
    return TEMPLATE.format(
        title=repr(title), openvino=version("openvino"), labels=repr([str(label) for label in labels]),
        size=tuple(int(v) for v in preprocessing["input_size"]), crop=VAL_CROP, normalise_constants=constants,
        normalise_code=code, device=repr(device), top=min(5, len(labels)),
    )

