"""A published dataset folder for training: its train and val splits (`read_index`), the
augmentation presets' names, the order of training items per epoch (`EpochSampler`), and the
validation sizing rule (`val_transform`). No Django, no Celery.

Training reads decoded images from the image cache (workers/pipeline/imagecache.py) and augments
them on the device (workers/pipeline/device_augment.py); `val_transform` stays the rule that the
cache's centre square and validation's centre crop reproduce (the deployed preprocessing).
"""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Sampler
from torchvision.transforms import v2

from workers.pipeline.architectures import VAL_CROP
from workers.pipeline.reporting import JobError

AUGMENTS = ("none", "light", "standard", "strong")
GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N", "La"}


def val_transform(size: int | tuple[int, int]) -> v2.Transform:
    """PIL RGB image -> uint8 [3, H, W]: the short side resized to size / VAL_CROP, the centre cropped."""
    short = min(size) if isinstance(size, tuple) else size
    return v2.Compose([v2.Resize(round(short / VAL_CROP), antialias=True), v2.CenterCrop(size), v2.PILToTensor()])


@dataclass(frozen=True)
class Split:
    files: list[Path]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class IndexedDataset:
    classes: list[str]
    train: Split
    val: Split
    grayscale: bool  # every image was stored in a gray mode (it is still fed as RGB)


def read_index(dataset: Path) -> IndexedDataset:
    """The train and val splits of a published dataset folder (test is not read), in the
    index's class order."""
    try:
        index = json.loads((dataset / "index.json").read_text())
        classes = [str(name) for name in index["classes"]]
        items = index["items"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise JobError(f"The dataset's index.json cannot be read ({error}); import the dataset again.") from None
    number = {name: i for i, name in enumerate(classes)}
    splits: dict[str, tuple[list[Path], list[int]]] = {"train": ([], []), "val": ([], [])}
    modes = set()
    for item in items:
        if item.get("split") not in splits:
            continue
        if item.get("label") not in number:
            raise JobError(f"The dataset's index lists {item.get('path')} as “{item.get('label')}”, "
                           f"which is not one of its classes; import the dataset again.")
        files, labels = splits[item["split"]]
        files.append(dataset / "images" / item["path"])
        labels.append(number[item["label"]])
        modes.add(item.get("mode", "RGB"))
    train, val = (Split(*splits[name]) for name in ("train", "val"))
    if len(train) < 2:
        raise JobError(f"The dataset has {len(train)} training images; training needs at least 2.")
    if len(val) == 0:
        raise JobError("The dataset has no val images, so training cannot be validated; import it with a val split.")
    return IndexedDataset(classes, train, val, grayscale=bool(modes) and modes <= GRAY_MODES)


class EpochSampler(Sampler):
    """A shuffled order per epoch, with a seed per item; both depend only on (seed, epoch).
    Training batches it and reads indexes (augmentation draws per step, device_augment.py).

    In a distributed training (workers/pipeline/distributed.py) each rank takes every world-th
    item of that one order, starting at its rank, so the ranks share out the epoch; the order is
    first padded with its own start to a multiple of world (as torch's DistributedSampler does),
    since every rank must take as many steps. `shard` is (rank, world); None: the process group's.
    `start`: the first items of this rank's share are skipped (a run resumed mid-epoch has trained
    on them)."""

    def __init__(self, size: int, seed: int, shard: tuple[int, int] | None = None) -> None:
        self.size, self.seed, self.epoch, self.start = size, seed, 0, 0
        self.rank, self.world = shard if shard is not None else _process_group_shard()

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return -(-self.size // self.world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = (self.seed * 1_000_003 + self.epoch) * 10_000_019 % 2**62
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(base)).tolist()
        keyed = [(index, (base + position * 7_919 + 1) % 2**62) for position, index in enumerate(order)]
        keyed += keyed[:len(self) * self.world - self.size]
        yield from keyed[self.rank::self.world][self.start:]


def _process_group_shard() -> tuple[int, int]:
    """(rank, world) of this process's torch.distributed group; (0, 1) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
