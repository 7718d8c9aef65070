"""How a model takes an image: a dataset file as the network's batch-1 input, through the model's
preprocessing. Quantization (calibration), evaluation and accuracy checks share it. No Django.

Images are read by `data.open_image` and sized by training's own `augment.val_transform` (the
short side resized to size / 0.875, then the centre cropped), so a trained model's accuracy
here is the accuracy its training run reported. An IR with embedded preprocessing takes that
crop as u8 NHWC RGB and normalises it itself; every other model takes a normalised float NCHW
tensor in its own colour order.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.pipeline.augment import val_transform
from workers.pipeline.data import open_image


@dataclass(frozen=True)
class InputSpec:
    size: tuple[int, int]  # H, W
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    color: str = "RGB"  # the network's channel order: "RGB" | "BGR"
    embedded: bool = False  # an IR that takes u8 NHWC RGB images and preprocesses them itself

    @classmethod
    def of(cls, preprocessing: dict, *, embedded: bool = False) -> "InputSpec":
        """From a registry model's preprocessing ({input_size, color, mean, std, …})."""
        def three(values) -> tuple[float, float, float]:
            values = [float(v) for v in values]
            return tuple(values * 3 if len(values) == 1 else values)

        height, width = preprocessing["input_size"]
        return cls(size=(int(height), int(width)), mean=three(preprocessing["mean"]), std=three(preprocessing["std"]),
                   color=preprocessing.get("color", "RGB"), embedded=embedded)

    def picture(self, path: Path) -> np.ndarray:
        """The image as u8 H×W×3 RGB at the network's size, exactly as training validates."""
        return val_transform(self.size)(open_image(path)).permute(1, 2, 0).numpy()

    def tensor(self, picture: np.ndarray) -> np.ndarray:
        """A u8 RGB picture as the network's batch-1 input."""
        if self.embedded:
            return np.ascontiguousarray(picture[None])
        if self.color == "BGR":  # mean and std are in the network's channel order already
            picture = picture[..., ::-1]
        scaled = (picture.astype(np.float32) / 255.0 - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(scaled.transpose(2, 0, 1)[None])

    def load(self, path: Path) -> np.ndarray:
        return self.tensor(self.picture(path))
