"""How a model takes an image: a dataset file as the network's batch-1 input, through the model's
preprocessing (`workers/pipeline/preprocessing.py`). Quantization (calibration), evaluation and
accuracy checks share it. No Django.

Images are read by `data.open_image` and sized by the model's rule (`preprocessing.fit_picture`:
with the defaults, training's own validation transform to the pixel, so a trained model's
accuracy here is the accuracy its training run reported). An IR with embedded preprocessing takes
that picture as u8 NHWC RGB and normalises it itself; every other model takes the float input its
preprocessing declares (layout, colour order, value range, mean and std).
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workers.pipeline.data import open_image
from workers.pipeline.preprocessing import complete, fit_picture, network_input


@dataclass(frozen=True)
class InputSpec:
    size: tuple[int, int]  # H, W
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    color: str = "RGB"  # the network's channel order: "RGB" | "BGR"
    embedded: bool = False  # an IR that takes u8 NHWC RGB images and preprocesses them itself
    recipe: dict = field(default_factory=dict, compare=False)  # the rest of the model's preprocessing

    @classmethod
    def of(cls, preprocessing: dict, *, embedded: bool = False) -> "InputSpec":
        """From a registry model's preprocessing ({input_size, fit, crop, resize, mean, std, …})."""
        recipe = complete(preprocessing)
        mean, std = (tuple(float(v) for v in recipe[key]) * (3 if len(recipe[key]) == 1 else 1) for key in ("mean", "std"))
        height, width = recipe["input_size"]
        return cls(size=(int(height), int(width)), mean=mean, std=std, color=recipe["color"], embedded=embedded,
                   recipe={**recipe, "input_size": [int(height), int(width)], "mean": list(mean), "std": list(std)})

    @property
    def preprocessing(self) -> dict:
        return self.recipe or {**complete({}), "input_size": list(self.size), "mean": list(self.mean),
                               "std": list(self.std), "color": self.color}

    def picture(self, path: Path) -> np.ndarray:
        """The image as u8 H×W×3 RGB at the network's size, by the model's sizing rule."""
        return np.asarray(fit_picture(open_image(path), self.preprocessing), dtype=np.uint8)

    def tensor(self, picture: np.ndarray) -> np.ndarray:
        """A u8 RGB picture as the network's batch-1 input."""
        if self.embedded:
            return np.ascontiguousarray(picture[None])
        return network_input(picture, self.preprocessing)

    def load(self, path: Path) -> np.ndarray:
        return self.tensor(self.picture(path))
