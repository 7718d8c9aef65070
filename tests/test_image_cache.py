"""The decoded-image cache (workers/pipeline/imagecache.py) on a tiny published dataset: what it
stores, reuse, a damaged entry built again, two builders building once, the worker's eviction."""

import fcntl
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fakes import FakeReporter
from tests.test_training import make_dataset
from workers.pipeline import imagecache
from workers.pipeline.augment import read_index, val_transform
from workers.pipeline.device_augment import DeviceAugment


class Recording(FakeReporter):
    def __init__(self) -> None:
        super().__init__()
        self.stages = []

    def stage(self, name: str) -> None:
        self.stages.append(name)

    def text(self) -> str:
        return "\n".join(message for _, message in self.logs)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = make_dataset(tmp_path_factory.mktemp("colours"))
    # one image of another shape: the cache keeps its centre square, resized
    Image.fromarray(np.arange(40 * 30 * 3, dtype=np.uint32).reshape(30, 40, 3).astype(np.uint8)).save(
        root / "images" / "val" / "a_red" / "000.png")
    return root


def open_cache(entry: Path, dataset: Path, reporter=None, size: int = 18):
    return imagecache.open_cache(entry, read_index(dataset), identity="v1", size=size,
                                 reporter=reporter or Recording())


def test_the_shards_hold_each_images_centre_square_and_its_label(dataset, tmp_path):
    reporter = Recording()
    images = open_cache(tmp_path / "entry", dataset, reporter)
    data = read_index(dataset)
    assert images.built_seconds > 0 and "decoding images" in reporter.stages
    assert f"Decoding {len(data.train) + len(data.val)} images for the cache" in reporter.text()
    assert images.train.images.shape == (len(data.train), 3, 18, 18) and images.train.images.dtype == np.uint8
    assert images.train.labels.tolist() == data.train.labels and images.val.labels.tolist() == data.val.labels
    first = data.val.files.index(dataset / "images" / "val" / "a_red" / "000.png")
    with Image.open(data.val.files[first]) as picture:  # 40x30: short side to 18 (24x18), centre 18x18
        expected = np.asarray(picture.convert("RGB").resize((24, 18), Image.BILINEAR, reducing_gap=None))[:, 3:21]
    assert np.abs(images.val.images[first].transpose(1, 2, 0).astype(int) - expected).max() <= 2
    assert sorted(path.name for path in (tmp_path / "entry" / "data").iterdir()) == [
        "manifest.json", "train.labels", "train.u8", "val.labels", "val.u8"]
    assert not list((tmp_path / "entry").glob("tmp-*"))


def test_validation_sees_the_deployed_preprocessing(dataset, tmp_path):
    """The cached square's centre crop on the device is training's former val_transform (resize
    the short side to size / VAL_CROP, centre crop): the deployed preprocessing."""
    images = open_cache(tmp_path / "entry", dataset, size=imagecache.cache_size(16))
    data = read_index(dataset)
    augment = DeviceAugment("none", 16, (0.0,) * 3, (1 / 255,) * 3, flip=False, seed=0, device=torch.device("cpu"))
    got = augment.val(torch.from_numpy(np.array(images.val.images[:4])))
    for i in range(4):
        with Image.open(data.val.files[i]) as picture:
            expected = val_transform(16)(picture.convert("RGB")).float()
        assert torch.equal(got[i].round(), expected), i


def test_a_whole_entry_is_reused_and_a_damaged_one_built_again(dataset, tmp_path):
    entry = tmp_path / "entry"
    first = np.array(open_cache(entry, dataset).train.images)
    reporter = Recording()
    again = open_cache(entry, dataset, reporter)
    assert again.built_seconds == 0 and "Decoding" not in reporter.text()
    assert np.array_equal(again.train.images, first)

    shard = entry / "data" / "train.u8"
    os.truncate(shard, shard.stat().st_size - 1)  # a disk that filled up, a killed copy
    assert not imagecache.check(entry / "data", identity="v1", size=18)
    reporter = Recording()
    rebuilt = open_cache(entry, dataset, reporter)
    assert rebuilt.built_seconds > 0 and "incomplete or damaged" in reporter.text()
    assert np.array_equal(rebuilt.train.images, first)
    # another version of the dataset (another identity) or size is never taken for this one
    assert imagecache.check(entry / "data", identity="v1", size=18)
    assert not imagecache.check(entry / "data", identity="v2", size=18)
    assert not imagecache.check(entry / "data", identity="v1", size=20)


def test_two_jobs_at_once_decode_once_and_share_it(dataset, tmp_path):
    entry, reporters, results = tmp_path / "entry", [Recording(), Recording()], []
    entry.mkdir()
    with open(entry / "lock", "a+b") as held:  # both start while the lock is taken
        fcntl.flock(held, fcntl.LOCK_EX)
        threads = [threading.Thread(target=lambda r=r: results.append(open_cache(entry, dataset, r))) for r in reporters]
        for thread in threads:
            thread.start()
        while sum("Waiting for another job" in r.text() for r in reporters) < 2:
            threading.Event().wait(0.01)
    for thread in threads:
        thread.join()
    assert sum("Decoding" in r.text() for r in reporters) == 1
    assert len(results) == 2 and np.array_equal(results[0].train.images, results[1].train.images)


def test_batches_read_whole_batches_of_the_map(dataset, tmp_path):
    images = open_cache(tmp_path / "entry", dataset)
    batches = imagecache.Batches(images.train)
    pixels, labels = batches[[(5, 123), (0, 7), (5, 9)]]  # EpochSampler's (index, seed) pairs
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 3, 18, 18)
    assert torch.equal(pixels[0], torch.from_numpy(np.array(images.train.images[5]))) and torch.equal(pixels[0], pixels[2])
    assert labels.tolist() == [images.train.labels[i] for i in (5, 0, 5)]
    pixels, _ = batches[[1, 2]]  # validation's plain indexes
    assert torch.equal(pixels[1], torch.from_numpy(np.array(images.train.images[2])))


def test_the_worker_evicts_the_least_recently_used_entries_no_job_uses(tmp_path):
    root = tmp_path / "cache"
    for number, name in enumerate(("old", "busy", "new")):
        with imagecache.entry_in_use(root, name) as entry:
            (entry / "data").mkdir()
            (entry / "data" / "train.u8").write_bytes(bytes(1000))
        os.utime(root / f"{name}.inuse", (1000 + number, 1000 + number))
    with open(root / "busy.inuse", "a+b") as busy:  # a job training on it
        fcntl.flock(busy, fcntl.LOCK_SH)
        assert imagecache.evict(root, cap_bytes=1500) == ["old", "new"]  # busy is kept, though older
    assert sorted(path.name for path in root.iterdir() if path.is_dir()) == ["busy"]
    assert imagecache.evict(root, cap_bytes=1500) == []
    assert imagecache.evict(root, cap_bytes=0) == ["busy"]


def test_a_killed_builds_leftovers_go_when_the_entry_is_next_used(tmp_path):
    root = tmp_path / "cache"
    (root / "e" / "tmp-dead").mkdir(parents=True)
    (root / "e" / "trash-old").mkdir()
    with imagecache.entry_in_use(root, "e") as entry:
        assert sorted(path.name for path in entry.iterdir()) == ["lock"]
