"""Training on tiny datasets made here, shaped like published ones (index.json + images/): the
model learns, everything is reported, checkpoints resume exactly, cancel keeps the best epoch,
early stopping stops, fine-tuning replaces the head, bad settings are refused by name. CPU only."""

import json
import math
import multiprocessing
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from tests.fakes import FakeReporter
from tests.model_builders import TinyNet
from workers.pipeline.architectures import BACKBONE_PARAMETERS
from workers.pipeline.reporting import Cancelled, JobError
from workers.pipeline.training import (
    ARCHS,
    TrainConfig,
    TrainingCancelled,
    build_model,
    defaults_for,
    train,
    validate,
)

CLASSES = ["a_red", "b_green", "c_blue"]
TRAIN, VAL = 30, 9  # images per class
SMALL = TrainConfig(architecture="small_cnn", epochs=4, batch_size=16, input_size=16, workers=0, checkpoint_minutes=0)
TIMING = {"img_per_s", "train_seconds", "val_seconds", "seconds", "data_wait_s", "compute_s", "data_wait_share"}  # history fields that vary run to run


class RecordingReporter(FakeReporter):
    def __init__(self, cancel_after: int | None = None) -> None:
        super().__init__(cancel_after)
        self.metrics: list[tuple[str, float, int | None, bool]] = []
        self.stages: list[str] = []

    def stage(self, name: str) -> None:
        self.stages.append(name)

    def metric(self, name: str, value: float, *, step: int | None = None, summary: bool = False) -> None:
        self.metrics.append((name, value, step, summary))

    def named(self, name: str) -> list[tuple[float, int | None]]:
        return [(value, step) for metric, value, step, _ in self.metrics if metric == name]

    def summaries(self) -> set[str]:
        return {metric for metric, _, _, summary in self.metrics if summary}

    def text(self) -> str:
        return "\n".join(message for _, message in self.logs)


def make_dataset(root: Path, *, size: int = 16, gray: bool = False, seed: int = 0) -> Path:
    """Three classes a small CNN can tell apart: the dominant colour channel under heavy noise,
    or (gray) horizontal stripes, vertical stripes, plain; stored as a published dataset."""
    rng = np.random.default_rng(seed)
    classes = ["horizontal", "plain", "vertical"] if gray else CLASSES
    stripes = np.repeat((np.arange(size) // 2 % 2 == 0)[:, None], size, axis=1)
    items = []
    for split, count in (("train", TRAIN), ("val", VAL), ("test", 2)):
        for number, label in enumerate(classes):
            folder = root / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                if gray:
                    pixels = rng.integers(0, 80, (size, size)).astype(np.float32)
                    pixels += {"horizontal": stripes * 150, "vertical": stripes.T * 150, "plain": 75}[label]
                    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
                else:
                    pixels = rng.integers(0, 200, (size, size, 3)).astype(np.float32)
                    pixels[..., number] += 45
                    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
                image.save(folder / f"{i:03d}.png")
                items.append({"path": f"{split}/{label}/{i:03d}.png", "label": label, "split": split,
                              "width": size, "height": size, "mode": image.mode, "format": "PNG",
                              "thumb": f"thumbs/{len(items):06d}.jpg"})
    (root / "index.json").write_text(json.dumps({"classes": classes, "items": items, "report": {}}))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="module")
def dataset32(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("colours32"), size=32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a small shared machine two threads wait on each other whenever
    anything else runs, and these tests take several times longer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def empty_hub(tmp_path, monkeypatch) -> Path:
    """torch hub's cache is an empty folder: no test depends on what this machine downloaded."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    return hub


def without_timing(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in entry.items() if key not in TIMING} for entry in history]


# --- learning and reporting ---------------------------------------------------------------------

def test_learns_and_reports_every_step_and_epoch(dataset, tmp_path):
    reporter, threads = RecordingReporter(), torch.get_num_threads()
    result = train(SMALL, dataset, tmp_path / "out", reporter)
    assert torch.get_num_threads() == threads  # as it was

    history = result.history
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4] and result.epochs_run == 4
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result.final["val_top1"] >= 0.8  # chance is 1/3
    assert result.final == history[result.best_epoch - 1]
    assert result.final["val_top1"] == max(entry["val_top1"] for entry in history)
    assert not result.stopped_early and result.device == "cpu"
    assert (result.architecture, result.num_classes, result.classes, result.input_size) == ("small_cnn", 3, CLASSES, 16)
    assert result.config["lr"] == defaults_for("small_cnn")["lr"]  # unset: the architecture's default
    # the confusion matrix is the best epoch's: rows are true classes, all 27 val images once
    assert [sum(row) for row in result.confusion] == [VAL] * 3
    assert sum(result.confusion[i][i] for i in range(3)) == round(result.final["val_top1"] * 3 * VAL)

    # weights.pth is the best epoch's state_dict, loadable safely into the architecture
    model = build_model("small_cnn", 3)
    model.load_state_dict(torch.load(result.weights, weights_only=True))
    assert result.weights == tmp_path / "out" / "weights.pth"
    assert not (tmp_path / "out" / "checkpoint.pth").exists()  # removed after success
    json.dumps(result.as_dict())

    steps = 4 * 6  # 90 images in batches of 16
    assert [step for _, step in reporter.named("train/loss")] == list(range(1, steps + 1))
    assert [step for _, step in reporter.named("train/lr")] == list(range(1, steps + 1))
    assert reporter.named("train/img_per_s") and all(value > 0 for value, _ in reporter.named("train/img_per_s"))
    assert reporter.named("time/eta_s")
    for name in ("epoch/train_loss", "epoch/val_loss", "epoch/val_top1", "epoch/val_top5", "epoch/train_top1"):
        assert [step for _, step in reporter.named(name)] == [1, 2, 3, 4], name
    assert [value for value, _ in reporter.named("epoch/val_top1")] == [entry["val_top1"] for entry in history]
    # an epoch's results are summary points, kept as they are; per-step points may be averaged
    assert reporter.summaries() == {f"epoch/{name}" for name in
                                    ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr",
                                     "data_wait_s", "compute_s", "data_wait_share")}
    # where each epoch's training time went: waiting for the loader and computing, no GPU figure on CPU
    for name in ("epoch/data_wait_s", "epoch/compute_s", "epoch/data_wait_share"):
        assert [step for _, step in reporter.named(name)] == [1, 2, 3, 4], name
    for entry in history:
        assert entry["compute_s"] > 0 and entry["data_wait_s"] > 0
        assert entry["data_wait_s"] + entry["compute_s"] <= entry["train_seconds"] * 1.01
        assert entry["data_wait_share"] == pytest.approx(entry["data_wait_s"] / entry["train_seconds"])
    assert not reporter.named("train/device_util") and not reporter.named("epoch/device_util")
    assert reporter.fractions == sorted(reporter.fractions) and reporter.fractions[-1] == 1.0
    assert reporter.stages[0] == "preparing" and {"training", "evaluating"} <= set(reporter.stages)
    assert reporter.polls >= steps  # cancel is polled every step
    epoch_lines = re.findall(r"^epoch \d/4: train loss [\d.]+, val loss [\d.]+, top-1 [\d.]+ %, top-5 [\d.]+ %, "
                             r"\d+ img/s, ETA \d+ (s|min)$", reporter.text(), re.M)
    assert len(epoch_lines) == 4
    assert "training on cpu" in reporter.text() and ", fp32, 0 loader processes" in reporter.text()


def test_checkpoint_every_epoch_and_resume_continues_exactly(dataset, tmp_path):
    config = replace(SMALL, workers=2, epochs=4)
    saved: list[dict] = []

    def keep(path: Path, summary: dict) -> None:
        assert path == tmp_path / "whole" / "checkpoint.pth" and path.is_file()
        json.dumps(summary)
        saved.append(summary)
        shutil.copy(path, tmp_path / f"epoch{summary['epoch']}.pth")

    whole = train(config, dataset, tmp_path / "whole", RecordingReporter(), save_checkpoint=keep)
    assert [s["epoch"] for s in saved] == [1, 2, 3, 4]
    assert set(saved[-1]) == {"epoch", "step", "best_epoch", "best_top1"}
    assert saved[-1]["best_epoch"] == whole.best_epoch and saved[-1]["best_top1"] == whole.final["val_top1"]

    reporter = RecordingReporter()
    resumed = train(config, dataset, tmp_path / "resumed", reporter, resume=tmp_path / "epoch2.pth")
    assert "resuming after epoch 2" in reporter.text()
    assert len(resumed.history) == 4 and resumed.epochs_run == 4
    assert resumed.history[:2] == whole.history[:2]  # kept from the checkpoint, timings included
    # same data order, augmentation, RNG and optimizer state: the same run from there on
    assert _close(without_timing(resumed.history), without_timing(whole.history))
    assert resumed.best_epoch == whole.best_epoch and resumed.confusion == whole.confusion
    steps = [step for _, step in reporter.named("train/loss")]
    assert steps == list(range(2 * 6 + 1, 4 * 6 + 1))  # the loss curve goes on where it stopped
    assert [step for _, step in reporter.named("epoch/val_top1")] == [3, 4]
    assert reporter.fractions[0] == pytest.approx(0.5)
    a, b = (torch.load(r.weights, weights_only=True) for r in (whole, resumed))
    assert all(torch.allclose(a[key].float(), b[key].float(), atol=1e-5) for key in a)

    # a finished run's checkpoint resumes to the same result without training again
    done = train(config, dataset, tmp_path / "done", RecordingReporter(), resume=tmp_path / "epoch4.pth")
    assert done.history == whole.history and done.best_epoch == whole.best_epoch


def test_a_checkpoint_mid_epoch_resumes_to_the_same_weights(dataset, tmp_path):
    config = replace(SMALL, epochs=2, checkpoint_minutes=1e-9)  # due after every step
    saved: list[dict] = []

    def keep(path: Path, summary: dict) -> None:
        saved.append(summary)
        shutil.copy(path, tmp_path / f"step{summary['step']}.pth")

    whole = train(config, dataset, tmp_path / "whole", RecordingReporter(), save_checkpoint=keep)
    assert [s["step"] for s in saved] == list(range(1, 13))  # 6 steps an epoch: each step once, in order
    assert [s["epoch"] for s in saved[:7]] == [0] * 5 + [1, 1]

    reporter = RecordingReporter()  # epoch 2, three of its six batches done
    resumed = train(config, dataset, tmp_path / "resumed", reporter, resume=tmp_path / "step9.pth")
    assert "resuming in epoch 2 after step 9 (3 of its 6 steps done)" in reporter.text()
    assert [step for _, step in reporter.named("train/loss")] == [10, 11, 12]  # the skipped batches are not redone
    assert _close(without_timing(resumed.history), without_timing(whole.history))  # the epoch's sums carried over
    a, b = (torch.load(r.weights, weights_only=True) for r in (whole, resumed))
    assert all(torch.allclose(a[key].float(), b[key].float(), atol=1e-6) for key in a)


def _close(left: list[dict], right: list[dict]) -> bool:
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["epoch"], key)
    return True


def test_resume_refuses_another_dataset_or_architecture(dataset, tmp_path):
    kept = []
    train(replace(SMALL, epochs=1), dataset, tmp_path / "a", RecordingReporter(),
          save_checkpoint=lambda path, _: kept.append(shutil.copy(path, tmp_path / "c.pth")))
    other = make_dataset(tmp_path / "gray", gray=True)
    with pytest.raises(JobError, match="classes"):
        train(SMALL, other, tmp_path / "b", RecordingReporter(), resume=tmp_path / "c.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(JobError, match="cannot be read"):
        train(SMALL, dataset, tmp_path / "d", RecordingReporter(), resume=tmp_path / "junk.pth")


# --- cancel and early stopping ------------------------------------------------------------------

def test_cancel_mid_training_keeps_the_best_epoch(dataset, tmp_path):
    out = tmp_path / "out"
    # an epoch polls 6 times in training and twice in validation: cancel in epoch 2's third step
    with pytest.raises(TrainingCancelled) as caught:
        train(SMALL, dataset, out, RecordingReporter(cancel_after=11))
    assert isinstance(caught.value, Cancelled)
    result = caught.value.result
    assert result is not None and result.epochs_run == 1 and result.best_epoch == 1 and len(result.history) == 1
    assert result.weights == out / "weights.pth" and result.weights.is_file()
    build_model("small_cnn", 3).load_state_dict(torch.load(result.weights, weights_only=True))
    assert (out / "checkpoint.pth").is_file()  # the last finished epoch, to resume from


def test_cancel_before_the_first_epoch_writes_nothing(dataset, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(TrainingCancelled) as caught:
        train(SMALL, dataset, out, RecordingReporter(cancel_after=2))
    assert caught.value.result is None
    assert not any(out.iterdir())


def test_early_stopping_stops_when_val_top1_stops_rising(dataset, tmp_path):
    reporter = RecordingReporter()
    config = replace(SMALL, epochs=30, early_stopping_patience=2, schedule="constant")
    result = train(config, dataset, tmp_path / "out", reporter)
    assert result.stopped_early and result.epochs_run < 30
    tops = [entry["val_top1"] for entry in result.history]
    assert max(tops[-2:]) <= max(tops[:-2])  # the last `patience` epochs did not beat the best before
    assert result.final["val_top1"] == max(tops)
    assert "stopping early after epoch" in reporter.text()


# --- models -------------------------------------------------------------------------------------

def test_fine_tuning_replaces_a_head_of_another_size(dataset, tmp_path):
    torch.manual_seed(1)
    init = TinyNet(classes=7)
    before = {key: value.clone() for key, value in init.state_dict().items()}
    reporter = RecordingReporter()
    config = replace(SMALL, epochs=1, lr=1e-7, augment="none")
    result = train(config, dataset, tmp_path / "out", reporter, init=init)
    assert "classifier classifier replaced: 7 → 3 classes" in reporter.text()
    weights = torch.load(result.weights, weights_only=True)
    assert weights["classifier.weight"].shape == (3, 8)
    # the backbone starts from the given module (a learning rate this small barely moves it)
    assert torch.allclose(weights["features.0.weight"], before["features.0.weight"], atol=1e-4)
    assert all(torch.equal(value, before[key]) for key, value in init.state_dict().items())  # a copy was trained


def test_mobilenet_v3_small_runs_at_32_px_and_missing_pretrained_weights_are_logged(dataset32, tmp_path, empty_hub):
    reporter = RecordingReporter()
    config = TrainConfig(architecture="mobilenet_v3_small", epochs=1, batch_size=32, input_size=32, workers=0)
    result = train(config, dataset32, tmp_path / "out", reporter)
    assert f"no pretrained weights in {empty_hub / 'checkpoints'}; training from scratch" in reporter.text()
    assert not result.pretrained and result.epochs_run == 1
    model = torchvision.models.mobilenet_v3_small(num_classes=3)
    model.load_state_dict(torch.load(result.weights, weights_only=True))
    with pytest.raises(JobError, match=r"input_size is 16, but mobilenet_v3_small needs at least 32 px"):
        validate(TrainConfig(architecture="mobilenet_v3_small", input_size=16), classes=3)


def test_pretrained_weights_in_the_hub_cache_are_used(dataset32, tmp_path, empty_hub):
    torch.manual_seed(3)
    imagenet = torchvision.models.mobilenet_v3_small(num_classes=1000).state_dict()
    (empty_hub / "checkpoints").mkdir(parents=True)
    torch.save(imagenet, empty_hub / "checkpoints" / "mobilenet_v3_small-047dcff4.pth")
    reporter = RecordingReporter()
    config = TrainConfig(architecture="mobilenet_v3_small", epochs=1, batch_size=32, input_size=32, workers=0,
                         lr=1e-9, augment="none")
    result = train(config, dataset32, tmp_path / "out", reporter)
    assert result.pretrained and "pretrained weights mobilenet_v3_small-047dcff4.pth loaded" in reporter.text()
    weights = torch.load(result.weights, weights_only=True)
    assert torch.allclose(weights["features.0.0.weight"], imagenet["features.0.0.weight"], atol=1e-5)
    assert weights["classifier.3.weight"].shape == (3, 1024)


def test_grayscale_dataset_trains_on_rgb_models(tmp_path):
    gray = make_dataset(tmp_path / "gray", gray=True)
    config = replace(SMALL, epochs=5, augment="light", mean=(0.5,), std=(0.25,))
    result = train(config, gray, tmp_path / "out", RecordingReporter())
    assert result.final["val_top1"] >= 0.6  # chance is 1/3
    assert result.mean == [0.5] * 3 and result.std == [0.25] * 3
    with pytest.raises(JobError, match=r"mean is \(0\.5,\), but it must have 3 values"):
        validate(config, classes=3, grayscale=False)


@pytest.mark.parametrize("change", [
    {"augment": "strong", "optimizer": "sgd", "schedule": "step", "step_size": 1, "gamma": 0.5},
    {"augment": "none", "warmup_epochs": 1.0, "label_smoothing": 0.1, "weight_decay": 0.0},
])
def test_other_settings_train(dataset, tmp_path, change):
    reporter = RecordingReporter()
    result = train(replace(SMALL, epochs=2, **change), dataset, tmp_path / "out", reporter)
    assert result.epochs_run == 2 and all(math.isfinite(entry["train_loss"]) for entry in result.history)
    lrs = [value for value, _ in reporter.named("train/lr")]
    base = result.config["lr"]
    if change.get("schedule") == "step":  # halved after every epoch
        assert lrs[0] == pytest.approx(base) and lrs[-1] == pytest.approx(base / 2)
    else:  # warm-up over the first epoch's 6 steps, then cosine down
        assert lrs[:6] == pytest.approx([base * (i + 1) / 6 for i in range(6)])
        assert lrs[6] == pytest.approx(base) and lrs[-1] < base / 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_that_is_not_there(dataset, tmp_path):
    with pytest.raises(JobError, match="no usable CUDA GPU"):
        train(SMALL, dataset, tmp_path / "out", RecordingReporter(), device="cuda")


# --- settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    ({"architecture": "vgg11"}, ["architecture is 'vgg11'", "small_cnn"]),
    ({"epochs": 0}, ["epochs is 0", "between 1 and 10000"]),
    ({"batch_size": 2.5}, ["batch_size is 2.5", "whole number"]),
    ({"lr": -0.1}, ["lr is -0.1", "above 0"]),
    ({"optimizer": "adam"}, ["optimizer is 'adam'", "adamw, sgd"]),
    ({"schedule": "linear"}, ["schedule is 'linear'", "cosine, step, constant"]),
    ({"warmup_epochs": 20}, ["warmup_epochs is 20", "epochs (10)"]),
    ({"label_smoothing": 1.0}, ["label_smoothing is 1.0", "below 1"]),
    ({"augment": "heavy"}, ["augment is 'heavy'", "none, light, standard, strong"]),
    ({"input_size": 4, "architecture": "small_cnn"}, ["input_size is 4", "small_cnn needs at least 8 px"]),
    ({"input_size": 4096}, ["input_size is 4096", "at most 1024"]),
    ({"early_stopping_patience": -1}, ["early_stopping_patience is -1"]),
    ({"workers": -2}, ["workers is -2"]),
    ({"seed": 2**32}, ["seed is 4294967296", "from 0 to 4294967295"]),  # numpy's seeds are 32-bit
    ({"std": (0.2, 0.0, 0.2)}, ["std is (0.2, 0.0, 0.2)", "above 0"]),
    ({"mean": (0.5, 0.5)}, ["mean is (0.5, 0.5)", "3 values"]),
])
def test_validate_names_the_setting_and_both_values(change, words):
    with pytest.raises(JobError) as caught:
        validate(TrainConfig(**change), classes=3)
    for word in words:
        assert word in str(caught.value)


def test_validate_accepts_defaults_and_needs_two_classes():
    for arch in ARCHS:
        validate(TrainConfig(architecture=arch), classes=2)
    with pytest.raises(JobError, match="1 classes, but training needs at least 2"):
        validate(TrainConfig(), classes=1)


def test_defaults_per_architecture():
    for arch in ARCHS:
        defaults = defaults_for(arch)
        assert set(defaults) == {"lr", "weight_decay", "input_size", "batch_size"}
        assert defaults["lr"] > 0 and defaults["batch_size"] > 0
        validate(TrainConfig(architecture=arch, **{k: v for k, v in defaults.items()}), classes=10)
    assert defaults_for("small_cnn")["input_size"] == 32 and defaults_for("resnet18")["input_size"] == 224
    assert defaults_for("resnet18", "sgd")["lr"] > defaults_for("resnet18")["lr"]
    with pytest.raises(JobError, match="architecture is “vgg11”"):
        defaults_for("vgg11")


@pytest.mark.parametrize("architecture", ["resnet18", "mobilenet_v3_small"])
def test_the_training_estimate_is_torchvisions_backbone(architecture):
    """The web side's lower bound of a trained state_dict's size (webapp/jobs/kinds.py train_makes)."""
    net = getattr(torchvision.models, architecture)(weights=None, num_classes=1)
    head = [module for module in net.modules() if hasattr(module, "out_features")][-1]
    backbone = sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in head.parameters())
    assert BACKBONE_PARAMETERS[architecture] == backbone
