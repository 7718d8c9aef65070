"""The decoded-image cache: a dataset version's train and val images decoded once, at one training
size, as uint8 shards that every later epoch and job reads instead of the JPEGs. No Django.

    images = open_cache(entry, data, identity=..., size=cache_size(224), reporter=...)
    images.train.images  # numpy memmap, uint8 [N, 3, size, size]; images.train.labels int64 [N]

An entry is one folder (the worker picks it per dataset version and size and binds only it into
the jail, read-write while it is built):

    entry/lock                a file lock: two jobs on one host build once, the second waits
    entry/data/manifest.json  {"format", "identity", "size", "classes", "splits": {name: {"count"}}}
    entry/data/<split>.u8     uint8 [count, 3, size, size], C order (numpy memmap)
    entry/data/<split>.labels int64 [count]

Built in entry/tmp-* and renamed to entry/data when whole, so a reader finds a whole entry or
none; `check` (manifest and file sizes) decides whether one is whole, and a damaged one is built
again. The manifest is written last.

Sizing (the choice): each image's short side is resized to `cache_size(input_size)`, that is
round(input_size / VAL_CROP) (256 for 224), and the centre square kept. Validation's centre crop of
input_size from it is then the deployed preprocessing (resize to size / VAL_CROP, centre crop) to
within a pixel of rounding; training's random resized crops are drawn from that square (what lies
outside it on a long side is not seen in training).

Decoding runs where it is called: in the jail, in the training step (uploaded images are hostile).
"""

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from workers.pipeline.architectures import VAL_CROP
from workers.pipeline.data import open_image
from workers.pipeline.reporting import Cancelled, Reporter

FORMAT = 1
SPLITS = ("train", "val")
DECODE_BATCH = 64
REPORT_SECONDS = 1.0  # progress, log lines and cancel polls while decoding: at most this often


def cache_size(input_size: int) -> int:
    """The side of the cached squares for a training input size: a little above it, the deployed
    resize (size / VAL_CROP), so validation is a centre crop and training crops have room."""
    return round(input_size / VAL_CROP)


def identity_of(dataset: Path) -> str:
    """A dataset folder's content identity where the caller gives none: its index's digest (a
    published dataset's files never change under the same index)."""
    import hashlib

    return "index-sha256:" + hashlib.sha256((Path(dataset) / "index.json").read_bytes()).hexdigest()


@dataclass(frozen=True)
class Shard:
    images: np.ndarray  # uint8 [N, 3, size, size], a read-only memmap
    labels: np.ndarray  # int64 [N]
    path: Path  # the .u8 file (a loader process opens its own map of it)

    def __len__(self) -> int:
        return len(self.labels)

    def __reduce__(self):  # to another process (a distributed rank): its own map of the file, not its bytes
        return _shard, (self.path.parent, self.path.name.removesuffix(".u8"), len(self), self.images.shape[-1])


@dataclass(frozen=True)
class ImageCache:
    size: int
    train: Shard
    val: Shard
    built_seconds: float  # 0 when the entry was there already


def check(folder: Path, *, identity: str, size: int, classes: list[str] | None = None,
          counts: dict[str, int] | None = None) -> bool:
    """Whether `folder` (entry/data) is a whole entry for this dataset and size: its manifest
    says so (and names these classes and counts, where given) and every shard has the bytes it
    must have. Reads no image: the worker asks it too."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if (manifest.get("format"), manifest.get("identity"), manifest.get("size")) != (FORMAT, identity, size):
            return False
        if classes is not None and manifest.get("classes") != list(classes):
            return False
        saved = {split: manifest["splits"][split]["count"] for split in SPLITS}
        if counts is not None and saved != counts:
            return False
        for split, count in saved.items():
            if type(count) is not int or count < 0:
                return False
            if (folder / f"{split}.u8").stat().st_size != count * 3 * size * size \
                    or (folder / f"{split}.labels").stat().st_size != count * 8:
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def entry_bytes(entry: Path) -> int:
    return sum(path.stat().st_size for path in entry.rglob("*") if path.is_file() and not path.is_symlink())


def open_cache(entry: Path, data, *, identity: str, size: int, reporter: Reporter, workers: int = 0,
               on_progress: Callable[[float], None] | None = None) -> ImageCache:
    """The entry's shards for `data` (workers.pipeline.augment.IndexedDataset), built first
    (decoding every image once) unless a whole entry is there."""
    entry = Path(entry)
    splits = {"train": data.train, "val": data.val}
    counts = {name: len(split) for name, split in splits.items()}
    folder = entry / "data"
    began = time.perf_counter()
    built = False
    if not check(folder, identity=identity, size=size, classes=data.classes, counts=counts):
        entry.mkdir(parents=True, exist_ok=True)
        if not (entry / "lock").exists():  # the worker makes it for the jobs it runs
            (entry / "lock").touch()
        with open(entry / "lock", "rb") as lock:  # read-only: jobs of other users share it
            if not _try_lock(lock):
                reporter.log("Waiting for another job on this worker that is decoding the same images…")
                fcntl.flock(lock, fcntl.LOCK_EX)
            if not check(folder, identity=identity, size=size, classes=data.classes, counts=counts):
                if folder.exists():  # damaged or of another build: put aside (the worker clears it)
                    reporter.log("The image cache of this dataset was incomplete or damaged; decoding again.",
                                 level="warning")
                    os.rename(folder, entry / f"trash-{uuid.uuid4().hex}")
                _build(entry, folder, splits, classes=data.classes, identity=identity, size=size,
                       reporter=reporter, workers=workers, on_progress=on_progress)
                built = True
    seconds = time.perf_counter() - began if built else 0.0
    return ImageCache(size, *(_shard(folder, name, counts[name], size) for name in SPLITS), built_seconds=seconds)


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _shard(folder: Path, split: str, count: int, size: int) -> Shard:
    path = folder / f"{split}.u8"
    images = np.memmap(path, dtype=np.uint8, mode="r", shape=(count, 3, size, size))
    labels = np.fromfile(folder / f"{split}.labels", dtype=np.int64)
    return Shard(images, labels, path)


class _Decode(Dataset):
    def __init__(self, files: list[Path], size: int) -> None:
        self.files = files
        self.transform = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.PILToTensor()])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(open_image(self.files[index]))


def _build(entry: Path, folder: Path, splits: dict, *, classes: list[str], identity: str, size: int,
           reporter: Reporter, workers: int, on_progress: Callable[[float], None] | None) -> None:
    total = sum(len(split) for split in splits.values())
    reporter.stage("decoding images")
    reporter.log(f"Decoding {total:,} images for the cache ({size}x{size} px); later epochs and jobs reuse them…")
    temporary = entry / f"tmp-{uuid.uuid4().hex}"
    temporary.mkdir(mode=0o755)
    try:
        done, began = 0, time.perf_counter()
        last = began
        for name, split in splits.items():
            # raw uint8 files (not .npy): the manifest says the shape, there is no header to trust
            shard = np.memmap(temporary / f"{name}.u8", dtype=np.uint8, mode="w+", shape=(len(split), 3, size, size))
            written = 0
            for batch in DataLoader(_Decode(split.files, size), batch_size=DECODE_BATCH, num_workers=workers):
                shard[written:written + len(batch)] = batch.numpy()
                written += len(batch)
                done += len(batch)
                now = time.perf_counter()
                if now - last >= REPORT_SECONDS:
                    last = now
                    if reporter.cancelled():
                        raise Cancelled("cancelled while decoding images")
                    if on_progress is not None:
                        on_progress(done / total)
                    reporter.log(f"decoded {done:,} of {total:,} images ({done / (now - began):.0f} img/s)")
            shard.flush()
            del shard
            np.asarray(split.labels, dtype=np.int64).tofile(temporary / f"{name}.labels")
        manifest = {"format": FORMAT, "identity": identity, "size": size, "classes": list(classes),
                    "splits": {name: {"count": len(split)} for name, split in splits.items()}}
        (temporary / "manifest.json").write_text(json.dumps(manifest))
        for path in temporary.iterdir():  # jobs of this dataset that run as other users read it
            path.chmod(0o644)
        os.rename(temporary, folder)
        reporter.log(f"decoded {total:,} images in {time.perf_counter() - began:.1f} s")
    finally:
        shutil.rmtree(temporary, ignore_errors=True)



class Batches(Dataset):
    """Whole batches of one shard, for a DataLoader with batch_size=None over a BatchSampler: a
    key is a list of indexes (or of EpochSampler's (index, seed) pairs); an item is
    (uint8 [B, 3, size, size], int64 [B]). One slice of the map per batch, no per-image work."""

    def __init__(self, shard: Shard) -> None:
        self.path, self.shape = shard.path, shard.images.shape
        self.labels = torch.from_numpy(np.array(shard.labels))
        self._images: np.ndarray | None = None  # each process maps the file itself

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, keys: list) -> tuple[torch.Tensor, torch.Tensor]:
        if self._images is None:
            self._images = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        indexes = torch.tensor([key[0] if isinstance(key, tuple) else key for key in keys], dtype=torch.int64)
        return torch.from_numpy(self._images[indexes.numpy()]), self.labels[indexes]


# --- the worker's side (trusted: it never decodes, it only checks, locks and evicts) ------------
#
#   root/<name>/        an entry (the only thing of the cache a job's jail sees)
#   root/<name>.inuse   held shared by every job that uses the entry; eviction needs it exclusively

@contextmanager
def entry_in_use(root: Path, name: str) -> Iterator[Path]:
    """The entry root/<name>, made if missing, kept from eviction while the block runs. Leftovers
    of killed builds (tmp-*) and damaged entries put aside (trash-*) go first, if no job uses it."""
    root.mkdir(parents=True, exist_ok=True)
    entry = root / name
    entry.mkdir(exist_ok=True)
    (entry / "lock").touch()
    with open(root / f"{name}.inuse", "a+b") as in_use:
        if _try_lock(in_use):
            for path in [*entry.glob("tmp-*"), *entry.glob("trash-*")]:
                shutil.rmtree(path, ignore_errors=True)
        fcntl.flock(in_use, fcntl.LOCK_SH)  # from exclusive, or waiting out an eviction's check
        os.utime(root / f"{name}.inuse")  # last use, for least-recently-used eviction
        yield entry


def evict(root: Path, cap_bytes: int) -> list[str]:
    """Remove the least recently used entries no job is using until the cache holds at most
    `cap_bytes`; the names removed."""
    if not root.is_dir():
        return []
    entries = sorted((path for path in root.iterdir() if path.is_dir()),
                     key=lambda path: _last_use(root, path.name))
    sizes = {path.name: entry_bytes(path) for path in entries}
    total, removed = sum(sizes.values()), []
    for path in entries:
        if total <= cap_bytes:
            break
        with open(root / f"{path.name}.inuse", "a+b") as in_use:
            if not _try_lock(in_use):
                continue
            shutil.rmtree(path, ignore_errors=True)
            (root / f"{path.name}.inuse").unlink(missing_ok=True)
        total -= sizes[path.name]
        removed.append(path.name)
    return removed


def _last_use(root: Path, name: str) -> float:
    try:
        return (root / f"{name}.inuse").stat().st_mtime
    except OSError:
        return 0.0
