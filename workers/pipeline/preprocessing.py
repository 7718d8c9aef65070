"""A model's preprocessing, declared in full: how an image file becomes the network's input. One
declaration that the model page, the API, the command line, evaluation, calibration, conversion's
embedded steps, the equivalence check and the deployed classify.py all read. No Django, no torch.

    input_size   [height, width] the network sees
    fit          "crop": the short side resized to size / crop, then the centre cut out
                 (torchvision's reference evaluation); "stretch": the centre `crop` of each side
                 cut out, then resized to exactly height × width (the aspect ratio is not kept)
    crop         the share of the image kept, 0.25–1 (0.875: torchvision's 224 of 256)
    resize       "bilinear" | "bicubic" | "nearest" (Pillow's, antialiased when shrinking)
    value_range  "0-1": pixels divided by 255 first; "0-255": pixels as they are
    mean, std    per channel, in the network's channel order and the value range's units:
                 the network gets (x − mean) / std
    color        the network's channel order, "RGB" | "BGR"
    layout       the network's input layout, "NCHW" | "NHWC"

`fit_picture` and `network_input` are written to need only Pillow and numpy: the deployment
snippet carries their source as it is, so a downloaded program preprocesses exactly as Vintner
evaluates.
"""

import math

from workers.pipeline.architectures import VAL_CROP

LAYOUTS = ("NCHW", "NHWC")
COLORS = ("RGB", "BGR")
FITS = ("crop", "stretch")
RESIZES = ("bilinear", "bicubic", "nearest")
VALUE_RANGES = ("0-1", "0-255")
CROP_RANGE = (0.25, 1.0)
SIZE_RANGE = (8, 4096)
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

DEFAULTS = {"input_size": [224, 224], "fit": "crop", "crop": VAL_CROP, "resize": "bilinear", "value_range": "0-1",
            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "color": "RGB", "layout": "NCHW"}
KEYS = tuple(DEFAULTS)


class PreprocessingError(ValueError):
    """Per-setting messages in the user's words: {key: message}."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def default_preprocessing() -> dict:
    """ImageNet conventions, which torchvision models expect."""
    return {**DEFAULTS, "input_size": list(DEFAULTS["input_size"]), "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD)}


def complete(value: dict) -> dict:
    """A stored preprocessing with the settings it predates filled in with their defaults."""
    return {**default_preprocessing(), **{key: value[key] for key in KEYS if key in value}}


def clean(value: dict) -> dict:
    """Every setting checked (PreprocessingError names each wrong one) and complete; unset ones
    take their defaults, mean and std become three numbers."""
    if not isinstance(value, dict):
        raise PreprocessingError({"preprocessing": "Preprocessing is a mapping of settings: " + ", ".join(KEYS) + "."})
    errors = {}
    unknown = sorted(str(key) for key in value if key not in KEYS)
    if unknown:
        errors["preprocessing"] = f"Unknown setting {', '.join(unknown)}; the settings are {', '.join(KEYS)}."
    value = complete(value)
    try:
        size = [int(v) for v in value["input_size"]]
        if any(float(v) != int(v) for v in value["input_size"]):
            size = []
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        size = []
    low, high = SIZE_RANGE
    if len(size) != 2 or not all(low <= v <= high for v in size):
        errors["input_size"] = f"Input size is two whole numbers [height, width], each from {low} to {high}."
    for key, choices, what in (("layout", LAYOUTS, "Layout"), ("color", COLORS, "Color order"),
                               ("fit", FITS, "Fit"), ("resize", RESIZES, "Resize method"),
                               ("value_range", VALUE_RANGES, "Value range")):
        if value[key] not in choices:
            errors[key] = f"{what} is one of {', '.join(choices)}."
    try:
        crop = float(value["crop"])
    except (TypeError, ValueError):
        crop = math.nan
    if not CROP_RANGE[0] <= crop <= CROP_RANGE[1]:  # NaN fails both
        errors["crop"] = f"Crop is the share of the image kept, from {CROP_RANGE[0]} to {CROP_RANGE[1]:g} (1: no crop)."
    numbers = {}
    for name in ("mean", "std"):
        numbers[name] = _numbers(value[name])
        if numbers[name] is None:  # float() reads "nan" and "inf"; a JSON column can store neither
            errors[name] = f"{name.capitalize()} is one number or three (one per channel), each finite."
    if "std" not in errors and any(v <= 0 for v in numbers["std"]):
        errors["std"] = "Every std value must be above zero."
    if "mean" not in errors and "std" not in errors and value["value_range"] == "0-1" \
            and (max(map(abs, numbers["mean"])) > 1 or max(numbers["std"]) > 1):
        errors["value_range"] = (f"Mean and std above 1 are in 0–255 units (e.g. mean {_text(numbers['mean'])}); "
                                 "choose the value range 0–255, or give them in 0–1 units.")
    if errors:
        raise PreprocessingError(errors)
    return {**value, "input_size": size, "crop": crop, **numbers}


def _numbers(values) -> list[float] | None:
    if isinstance(values, (int, float)):
        values = [values]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError, OverflowError):
        return None
    if len(numbers) not in (1, 3) or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers * 3 if len(numbers) == 1 else numbers


def _text(values) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def input_geometry(inputs: list[dict]) -> dict | None:
    """What a model's first input says of its image: {layout, size} where the size is fixed,
    {layout, size: None} where height or width is dynamic; None when it is no float image input
    (an IR with embedded preprocessing takes u8 images of any size by design)."""
    if not inputs or inputs[0].get("dtype") == "u8":
        return None
    shape = inputs[0].get("shape") or []
    if len(shape) != 4:
        return None
    if shape[1] == 3:
        layout, spatial = "NCHW", shape[2:4]
    elif shape[3] == 3:
        layout, spatial = "NHWC", shape[1:3]
    else:
        return None
    fixed = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in spatial)
    return {"layout": layout, "size": [int(v) for v in spatial] if fixed else None}


def describe(spec: dict) -> str:
    """The whole recipe in one sentence, as the model page and the logs say it."""
    spec = complete(spec)
    height, width = spec["input_size"]
    if spec["fit"] == "crop":
        sizing = (f"short side resized ({spec['resize']}) to {round(min(height, width) / spec['crop'])} px, "
                  f"centre {height}×{width} cut out")
    else:
        kept = f"centre {spec['crop']:g} kept, " if spec["crop"] < 1 else ""
        sizing = f"{kept}stretched ({spec['resize']}) to {height}×{width}"
    scale = "÷255, " if spec["value_range"] == "0-1" else ""
    return (f"{sizing}; {scale}(x − mean {_text(spec['mean'])}) / std {_text(spec['std'])}; "
            f"{spec['color']}, {spec['layout']}")


# --- the recipe itself: Pillow and numpy only (classify.py carries this source) -------------------

def fit_picture(image, spec: dict):
    """A PIL RGB image sized and cropped to the network's height × width by the model's rule."""
    from PIL import Image

    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                "nearest": Image.Resampling.NEAREST}[spec["resize"]]
    height, width = spec["input_size"]
    if spec["fit"] == "stretch":
        if spec["crop"] < 1:
            keep_w, keep_h = max(1, round(image.width * spec["crop"])), max(1, round(image.height * spec["crop"]))
            left, top = (image.width - keep_w) // 2, (image.height - keep_h) // 2
            image = image.crop((left, top, left + keep_w, top + keep_h))
        return image.resize((width, height), resample)
    # torchvision's Resize(short) then CenterCrop((height, width)) on a PIL image, to the pixel
    short = round(min(height, width) / spec["crop"])
    if image.width <= image.height:
        size = (short, int(short * image.height / image.width))
    else:
        size = (int(short * image.width / image.height), short)
    if size != image.size:
        image = image.resize(size, resample)
    top, left = int(round((image.height - height) / 2.0)), int(round((image.width - width) / 2.0))
    return image.crop((left, top, left + width, top + height))


def network_input(picture, spec: dict):
    """A u8 H×W×3 RGB array as the network's batch-1 float32 input."""
    import numpy as np

    pixels = np.asarray(picture, dtype=np.float32)
    if spec["color"] == "BGR":
        pixels = pixels[..., ::-1]  # mean and std are in the network's channel order already
    if spec["value_range"] == "0-1":
        pixels = pixels / 255.0
    pixels = (pixels - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    if spec["layout"] == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels[None], dtype=np.float32)
