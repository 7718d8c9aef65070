"""Images of a published dataset folder as training batches: the augmentation presets and the
dataset the training DataLoaders read. No Django, no Celery.

Workers hand out uint8 CHW tensors; normalisation happens on the batch, on the training device
(a quarter of the bytes to move, and no float work in the loader processes).

Determinism: a training item arrives as (index, seed) from `EpochSampler`, and its random
augmentation is drawn from that seed alone. Which process decodes it, how many workers there
are, and whether the run was resumed from a checkpoint do not change what the model sees.
"""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler, get_worker_info
from torchvision.transforms import v2

from workers.pipeline.architectures import VAL_CROP
from workers.pipeline.data import open_image
from workers.pipeline.reporting import JobError

AUGMENTS = ("none", "light", "standard", "strong")
GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N", "La"}


def train_transform(preset: str, size: int, mean: Sequence[float], *, flip: bool = False) -> v2.Transform:
    """PIL RGB image -> uint8 [3, size, size] tensor, with the preset's random augmentation.
    No preset flips: a mirrored digit or letter is another one (or none), so horizontal flips
    are a choice of their own (`flip`), right for most photographs."""
    if preset not in AUGMENTS:
        raise JobError(f"augment is “{preset}”; it is one of {', '.join(AUGMENTS)}.")
    if preset == "none" and not flip:
        return val_transform(size)
    smallest = {"light": 0.6, "standard": 0.35, "strong": 0.08}  # RandomResizedCrop's smallest share
    if preset == "none":
        ops = [v2.Resize(round(size / VAL_CROP), antialias=True), v2.CenterCrop(size)]
    else:
        ops = [v2.RandomResizedCrop(size, scale=(smallest[preset], 1.0), antialias=True)]
    if flip:
        ops.append(v2.RandomHorizontalFlip())
    if preset == "standard":
        ops.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2))
    elif preset == "strong":
        ops.append(v2.RandAugment(num_ops=2, magnitude=9))
    ops.append(v2.PILToTensor())
    if preset == "strong":
        # Erased pixels take the mean colour: zero once normalised, as erasing after Normalize gives.
        ops.append(v2.RandomErasing(p=0.25, value=[round(255 * m) for m in mean]))
    return v2.Compose(ops)


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


class ImageDataset(Dataset):
    """Items of one split. Training keys are (index, seed) pairs; validation keys are indexes."""

    def __init__(self, split: Split, transform: v2.Transform) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = open_image(self.split.files[index])
        if seed is None:
            return self.transform(image), self.split.labels[index]
        generator = torch.default_generator  # what the transforms draw from (torch.manual_seed costs 70 µs)
        if get_worker_info() is not None:  # a loader process: its random state is its own
            generator.manual_seed(seed)
            return self.transform(image), self.split.labels[index]
        saved = generator.get_state()  # the training process: leave its random state as it was
        try:
            generator.manual_seed(seed)
            return self.transform(image), self.split.labels[index]
        finally:
            generator.set_state(saved)


class EpochSampler(Sampler):
    """A shuffled order per epoch, with a seed per item; both depend only on (seed, epoch).

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
