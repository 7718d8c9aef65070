"""Augmentation on the training device: uint8 NCHW batches of cached squares
(workers/pipeline/imagecache.py) in, normalised float batches out. No Django.

Per image, in one pass over the batch:
- random resized crop and horizontal flip: one random affine per image (scale and offset of the
  crop, sign of x for a flip), all applied by a single `F.affine_grid` + `F.grid_sample`
  (bilinear). torchvision's transforms.v2 draw one setting per call, so on a batch they would
  give every image the same crop; a DALI pipeline would be another dependency for the same two
  kernels;
- colour jitter: brightness, contrast and saturation factors per image (in that fixed order;
  torchvision shuffles the order per image);
- normalisation with the run's mean and std;
- "strong" only: random erasing of a rectangle per image (p 0.25) to the mean colour (0 once
  normalised), in place of the CPU pipeline's RandAugment, which has no batched form.

Presets (the smallest crop area, jitter strength, erasing): none (a centre crop, as validation),
light (0.6, no jitter), standard (0.35, 0.2), strong (0.08, 0.4, erasing). No preset flips;
`flip` adds them (a mirrored digit or letter is another one). Crop sides are clamped to the
square instead of torchvision's ten retries, and aspect ratios are drawn from 3/4..4/3 as there.

Determinism: a training batch's draws come from a CPU torch.Generator seeded with (seed, step,
and a distributed training's rank),
so a run, and a run resumed from any step's checkpoint, sees the same images; they depend on the
batch size (a batch is drawn at once), not on loader processes or the device.

Validation: the centre input_size square of the cached square, cut without resampling.
"""

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

RATIO = (3 / 4, 4 / 3)  # aspect ratios of random resized crops, as torchvision
ERASE_AREA, ERASE_RATIO, ERASE_P = (0.02, 0.33), (0.3, 3.3), 0.25  # as torchvision's RandomErasing


@dataclass(frozen=True)
class Preset:
    smallest: float | None  # the smallest crop area (share of the square); None: centre crop
    jitter: float  # brightness, contrast and saturation factors drawn from 1 ± jitter
    erase: float  # probability of erasing a rectangle per image


PRESETS = {
    "none": Preset(None, 0.0, 0.0),
    "light": Preset(0.6, 0.0, 0.0),
    "standard": Preset(0.35, 0.2, 0.0),
    "strong": Preset(0.08, 0.4, ERASE_P),
}
GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


class DeviceAugment:
    def __init__(self, preset: str, size: int, mean, std, *, flip: bool, seed: int, device: torch.device,
                 rank: int = 0) -> None:
        self.preset, self.size, self.flip, self.seed, self.device = PRESETS[preset], size, flip, seed, device
        self.rank = rank  # a distributed training's ranks draw apart
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.gray = torch.tensor(GRAY, device=device).view(1, 3, 1, 1)

    def generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(((self.seed * 1_000_003 + step) * 10_000_019 + self.rank * 7_919) % 2**62)

    def train(self, images: torch.Tensor, step: int) -> torch.Tensor:
        """A training batch (uint8 [B, 3, S, S] on the device) → float [B, 3, size, size], augmented
        with the draws of training step `step`."""
        draw = self.generator(step)
        n, preset = images.shape[0], self.preset
        flips = torch.rand(n, generator=draw) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        if preset.smallest is None:
            x = self._centre(images).float()
            if self.flip:
                x = torch.where(flips.to(self.device).view(n, 1, 1, 1), x.flip(3), x)
        else:
            x = self._crops(images, self._boxes(n, preset.smallest, draw), flips)
        if preset.jitter:
            x = self._jitter(x, draw)
        x = (x - self.mean) / self.std
        if preset.erase:
            x = self._erase(x, draw)
        return x

    def val(self, images: torch.Tensor) -> torch.Tensor:
        return (self._centre(images).float() - self.mean) / self.std

    # --- pieces ------------------------------------------------------------------------------------
    def _centre(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        top, left = round((height - self.size) / 2), round((width - self.size) / 2)
        return images[:, :, top:top + self.size, left:left + self.size]

    @staticmethod
    def _boxes(n: int, smallest: float, draw: torch.Generator) -> torch.Tensor:
        """[n, 4] crops (centre x, centre y, width, height) as shares of the square."""
        area = smallest + (1 - smallest) * torch.rand(n, generator=draw, dtype=torch.float64)
        low, high = math.log(RATIO[0]), math.log(RATIO[1])
        ratio = torch.exp(low + (high - low) * torch.rand(n, generator=draw, dtype=torch.float64))
        width = torch.sqrt(area * ratio).clamp(max=1.0)
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = width / 2 + (1 - width) * torch.rand(n, generator=draw, dtype=torch.float64)
        cy = height / 2 + (1 - height) * torch.rand(n, generator=draw, dtype=torch.float64)
        return torch.stack([cx, cy, width, height], 1)

    def _crops(self, images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """Each image's box resized to size x size (bilinear), mirrored where `flips`: one affine
        grid per image from output coordinates (-1..1) to the source's."""
        n = images.shape[0]
        cx, cy, width, height = boxes.unbind(1)
        theta = torch.zeros(n, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = torch.where(flips, -width, width)
        theta[:, 0, 2] = 2 * cx - 1
        theta[:, 1, 1] = height
        theta[:, 1, 2] = 2 * cy - 1
        theta = theta.to(self.device, torch.float32)
        grid = F.affine_grid(theta, [n, 3, self.size, self.size], align_corners=False)
        return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, x: torch.Tensor, draw: torch.Generator) -> torch.Tensor:
        n, strength = x.shape[0], self.preset.jitter
        factors = (1 - strength + 2 * strength * torch.rand(3, n, generator=draw)).to(self.device)
        brightness, contrast, saturation = (f.view(n, 1, 1, 1) for f in factors)
        x = (x * brightness).clamp_(0, 255)
        gray = (x * self.gray).sum(1, keepdim=True)
        x = ((x - gray.mean((2, 3), keepdim=True)) * contrast + gray.mean((2, 3), keepdim=True)).clamp_(0, 255)
        gray = (x * self.gray).sum(1, keepdim=True)
        return ((x - gray) * saturation + gray).clamp_(0, 255)

    def _erase(self, x: torch.Tensor, draw: torch.Generator) -> torch.Tensor:
        n, size = x.shape[0], self.size
        erase = torch.rand(n, generator=draw) < self.preset.erase
        area = size * size * (ERASE_AREA[0] + (ERASE_AREA[1] - ERASE_AREA[0]) * torch.rand(n, generator=draw))
        low, high = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
        ratio = torch.exp(low + (high - low) * torch.rand(n, generator=draw))
        height = torch.sqrt(area * ratio).round().clamp(1, size)
        width = torch.sqrt(area / ratio).round().clamp(1, size)
        top = ((size - height + 1) * torch.rand(n, generator=draw)).floor()
        left = ((size - width + 1) * torch.rand(n, generator=draw)).floor()
        rows = torch.arange(size).view(1, size)
        inside_rows = (rows >= top.view(n, 1)) & (rows < (top + height).view(n, 1))
        inside_columns = (rows >= left.view(n, 1)) & (rows < (left + width).view(n, 1))
        mask = (inside_rows[:, :, None] & inside_columns[:, None, :] & erase.view(n, 1, 1)).to(self.device)
        return x.masked_fill(mask[:, None], 0.0)
