"""Image-classification training on a published dataset folder. No Django, no Celery.

    result = train(TrainConfig(architecture="resnet18", epochs=10), dataset, out, reporter)

`out` receives `weights.pth` (the best epoch's state_dict) and `checkpoint.pth`, everything
needed to go on from where it was written (`resume=`), even mid-epoch: every checkpoint_minutes
of training (checked after every step; 0: after every epoch instead), at an epoch's end when one
is due, after the last epoch, and on cancel once an epoch has finished. They are written in the
background (workers.pipeline.checkpoints) while training goes on. A successful run removes the
checkpoint, a cancelled or failed one leaves it. The best epoch is the one with the highest
val top-1 (ties: the lower val loss); early stopping counts epochs without a higher val top-1.

Reporting is built for a reporter that aggregates and writes in batches
(workers.progress.JobReporter), and nothing in a step waits for the accelerator: every step
polls cancelled(); the steps' losses stay on the device and are read in one transfer once a
second, then every step's train/loss and train/lr are reported with its own step number, along
with images/s, ETA, the GPU's busy share (train/device_util, CUDA with NVML only) and progress
(steps done / total steps), all at once, so the reporter has about one batch a second to write.
Per epoch: epoch/* metrics (where time went among them: workers.pipeline.timing), a log line.

How the device is used (precision, TF32, cuDNN autotuning, loader processes...) is decided in
workers.pipeline.devices and said in the run's first log line.

Accuracies (top-1, top-5) are fractions in 0..1 everywhere except the log lines (percent).
"""

import copy
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import BatchSampler, DataLoader

from workers.pipeline import devices, imagecache
from workers.pipeline.architectures import MIN_INPUT_SIZE, TRAINABLE, defaults_for
from workers.pipeline.augment import AUGMENTS, EpochSampler, read_index
from workers.pipeline.checkpoints import CheckpointDue, CheckpointWriter, atomic_save
from workers.pipeline.device_augment import DeviceAugment
from workers.pipeline.params import GPU_COUNTS, SEED_MAX
from workers.pipeline.reporting import Cancelled, JobError, Reporter
from workers.pipeline.timing import TimeSplit, data_wait_hint

ARCHS: tuple[str, ...] = TRAINABLE  # torchvision's ARCHITECTURES and small_cnn
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
CHECKPOINT_FORMAT = 1
REPORT_SECONDS = 1.0  # how often the steps' losses are read off the device and reported
MAX_INPUT_SIZE = 1024


@dataclass(frozen=True)
class TrainConfig:
    architecture: str = "resnet18"
    epochs: int = 10
    batch_size: int = 32
    lr: float | None = None  # None: defaults_for(architecture, optimizer)
    optimizer: str = "adamw"  # "adamw" | "sgd"
    momentum: float = 0.9  # sgd only
    weight_decay: float | None = None  # None: per architecture; never applied to biases and norms
    schedule: str = "cosine"  # "cosine" | "step" | "constant", per step, after the warm-up
    warmup_epochs: float = 0.0  # linear from 0 to lr
    step_size: int = 10  # "step": lr *= gamma every step_size epochs
    gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: str = "standard"  # "none" | "light" | "standard" | "strong"
    flip: bool = False  # random horizontal flips, on top of the preset (wrong for digits and text)
    input_size: int | None = None  # None: 224, small_cnn 32
    seed: int = 0
    early_stopping_patience: int = 0  # epochs without a better val top-1; 0: off
    amp: bool = True  # mixed precision on CUDA only: bf16 where the GPU has it, else fp16 + GradScaler
    workers: int | None = None  # DataLoader processes; 0 loads in the training process; None: from the cores
    checkpoint_minutes: float = 5.0  # a checkpoint this often during training; 0: after every epoch
    gpus: int = 1  # devices that train together, a process each (distributed.py); CPU processes without CUDA
    pretrained: bool = True  # torchvision's ImageNet weights, if in the local torch hub cache
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)


def validate(config: TrainConfig, *, classes: int, grayscale: bool = False) -> None:
    """A JobError naming the setting, its value and what it must be, for the first that is wrong."""

    def bad(name: str, requirement: str) -> JobError:
        return JobError(f"Training setting {name} is {getattr(config, name)!r}, but {requirement}.")

    def number(name: str, *, integer: bool = False) -> float:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) \
                or not math.isfinite(value):
            raise bad(name, "it must be " + ("a whole number" if integer else "a number"))
        return value

    if config.architecture not in ARCHS:
        raise bad("architecture", f"it must be one of {', '.join(ARCHS)}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise JobError(f"The dataset has {classes} classes, but training needs at least 2.")
    if not 1 <= number("epochs", integer=True) <= 10_000:
        raise bad("epochs", "it must be between 1 and 10000")
    if not 1 <= number("batch_size", integer=True) <= 4096:
        raise bad("batch_size", "it must be between 1 and 4096")
    if config.lr is not None and not 0 < number("lr") <= 10:
        raise bad("lr", "it must be above 0 and at most 10 (or unset for the architecture's default)")
    if config.optimizer not in OPTIMIZERS:
        raise bad("optimizer", f"it must be one of {', '.join(OPTIMIZERS)}")
    if not 0 <= number("momentum") < 1:
        raise bad("momentum", "it must be at least 0 and below 1")
    if config.weight_decay is not None and not 0 <= number("weight_decay") <= 1:
        raise bad("weight_decay", "it must be between 0 and 1 (or unset for the architecture's default)")
    if config.schedule not in SCHEDULES:
        raise bad("schedule", f"it must be one of {', '.join(SCHEDULES)}")
    if not 0 <= number("warmup_epochs") <= config.epochs:
        raise bad("warmup_epochs", f"it must be between 0 and epochs ({config.epochs})")
    if not 1 <= number("step_size", integer=True):
        raise bad("step_size", "it must be at least 1")
    if not 0 < number("gamma") <= 1:
        raise bad("gamma", "it must be above 0 and at most 1")
    if not 0 <= number("label_smoothing") < 1:
        raise bad("label_smoothing", "it must be at least 0 and below 1")
    if config.augment not in AUGMENTS:
        raise bad("augment", f"it must be one of {', '.join(AUGMENTS)}")
    if config.input_size is not None:
        smallest = MIN_INPUT_SIZE[config.architecture]
        if number("input_size", integer=True) < smallest:
            raise bad("input_size", f"{config.architecture} needs at least {smallest} px")
        if config.input_size > MAX_INPUT_SIZE:
            raise bad("input_size", f"it must be at most {MAX_INPUT_SIZE} px")
    if not 0 <= number("seed", integer=True) <= SEED_MAX:
        raise bad("seed", f"it must be from 0 to {SEED_MAX}")
    if number("early_stopping_patience", integer=True) < 0:
        raise bad("early_stopping_patience", "it must be 0 (off) or more")
    if config.workers is not None and not 0 <= number("workers", integer=True) <= 64:
        raise bad("workers", "it must be between 0 and 64 (or unset to use the host's cores)")
    if not 0 <= number("checkpoint_minutes") <= 1440:
        raise bad("checkpoint_minutes", "it must be between 0 (after every epoch) and 1440")
    if number("gpus", integer=True) not in GPU_COUNTS:
        raise bad("gpus", f"it must be one of {', '.join(map(str, GPU_COUNTS))}")
    for name in ("amp", "pretrained", "flip"):
        if not isinstance(getattr(config, name), bool):
            raise bad(name, "it must be true or false")
    channels = "3 values (R, G, B)" + (", or 1 for this grayscale dataset" if grayscale else "")
    for name in ("mean", "std"):
        values = getattr(config, name)
        if not isinstance(values, (tuple, list)) or len(values) not in ((1, 3) if grayscale else (3,)):
            raise bad(name, f"it must have {channels}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise bad(name, "its values must be numbers")
    if not all(0 < v for v in config.std):
        raise bad("std", "its values must be above 0")


@dataclass
class TrainResult:
    weights: Path  # the best epoch's state_dict (torch.save), in out
    architecture: str
    num_classes: int
    classes: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    best_epoch: int  # 1-based; 0 when no epoch finished
    epochs_run: int  # finished epochs, those before a resume included
    stopped_early: bool
    device: str
    final: dict  # the best epoch's history entry
    history: list[dict]  # one entry per finished epoch
    confusion: list[list[int]]  # val, best weights; rows = true class, columns = predicted
    pretrained: bool = False  # started from torchvision's ImageNet weights
    config: dict = field(default_factory=dict)  # the settings used, defaults filled in

    def as_dict(self) -> dict:
        data = asdict(self)
        data["weights"] = str(self.weights)
        return data


class TrainingCancelled(Cancelled):
    """Cancelled mid-training. `result` describes the best finished epoch, whose weights are in
    out/weights.pth; None (and nothing written) when no epoch had finished."""

    def __init__(self, result: TrainResult | None) -> None:
        super().__init__("training cancelled")
        self.result = result


# --- models -------------------------------------------------------------------------------------

class SmallCNN(nn.Module):
    """Three conv-conv-pool stages (32, 64, 128 channels) and a linear head, for tiny images
    (32x32 and the like); global pooling makes it work at any size from 8 px."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()

        def stage(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                    nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                    nn.MaxPool2d(2)]

        self.features = nn.Sequential(*stage(3, width), *stage(width, 2 * width), *stage(2 * width, 4 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


def build_model(architecture: str, num_classes: int) -> nn.Module:
    """The untrained network, as weights.pth is loaded into it."""
    if architecture == "small_cnn":
        return SmallCNN(num_classes)
    import torchvision

    return torchvision.models.get_model(architecture, weights=None, num_classes=num_classes)


def _head(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """The classifier: the last Linear layer (fc, classifier[-1], head...)."""
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return linears[-1] if linears else None


def _set_head(model: nn.Module, name: str, classes: int) -> None:
    old = model.get_submodule(name)
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr,
            nn.Linear(old.in_features, classes, bias=old.bias is not None))


def _pretrained_file(architecture: str) -> tuple[Path | None, Path]:
    """torchvision's weight file for the architecture if the local hub cache has it (the default
    weights first), and the folder looked in. Never downloads."""
    import torchvision

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    enum = torchvision.models.get_model_weights(architecture)
    for weights in [enum.DEFAULT, *[w for w in enum if w is not enum.DEFAULT]]:
        path = folder / weights.url.rsplit("/", 1)[-1]
        if path.is_file():
            return path, folder
    return None, folder


def _load_pretrained(model: nn.Module, architecture: str, reporter: Reporter) -> bool:
    path, folder = _pretrained_file(architecture)
    if path is None:
        reporter.log(f"no pretrained weights in {folder}; training from scratch")
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged cache file is not worth failing the job for
        reporter.log(f"pretrained weights {path} are unreadable ({type(error).__name__}: {error}); "
                     "training from scratch", level="warning")
        return False
    own = model.state_dict()
    fits = {key: value for key, value in state.items() if key in own and own[key].shape == value.shape}
    head = _head(model)[0]
    missing = [key for key in own if key not in fits and not key.startswith(f"{head}.")]
    if missing:
        reporter.log(f"pretrained weights {path.name} do not fit {architecture} ({len(missing)} tensors, "
                     f"e.g. {missing[0]}); training from scratch", level="warning")
        return False
    model.load_state_dict(fits, strict=False)
    reporter.log(f"pretrained weights {path.name} loaded (ImageNet); classifier {head} starts fresh")
    return True


def _fit_init(init: nn.Module, classes: int, size: int, reporter: Reporter) -> nn.Module:
    """A copy of the module to fine-tune, its classifier resized to `classes` when it differs."""
    model = copy.deepcopy(init)
    scripted = isinstance(model, torch.jit.ScriptModule)
    found = None if scripted else _head(model)
    if found is not None:
        name, head = found
        if head.out_features != classes:
            _set_head(model, name, classes)
            reporter.log(f"classifier {name} replaced: {head.out_features} → {classes} classes")
        return model
    try:  # no Linear head to find (TorchScript, an exported graph): it must fit as it is
        with torch.no_grad():
            outputs = model.eval()(torch.zeros(2, 3, size, size)).shape
    except Exception as error:
        raise JobError(f"The model to fine-tune cannot be run for training on {size}x{size} images "
                       f"({type(error).__name__}: {error}); fine-tune a state_dict upload instead.") from None
    if list(outputs) != [2, classes]:
        raise JobError(f"The model to fine-tune gives outputs of shape {list(outputs)[1:]} and its classifier "
                       f"cannot be replaced to give {classes} classes; fine-tune a state_dict upload instead.")
    return model


# --- learning-rate schedule -------------------------------------------------------------------

def _lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate for the 0-based training step `step`."""
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "cosine":
        span = max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))
    if config.schedule == "step":
        return config.gamma ** (step // steps_per_epoch // config.step_size)
    return 1.0


# --- helpers ----------------------------------------------------------------------------------

def _resolve(config: TrainConfig) -> TrainConfig:
    defaults = defaults_for(config.architecture, config.optimizer)
    mean = tuple(float(v) for v in config.mean) * (3 if len(config.mean) == 1 else 1)
    std = tuple(float(v) for v in config.std) * (3 if len(config.std) == 1 else 1)
    return replace(
        config,
        lr=config.lr if config.lr is not None else defaults["lr"],
        weight_decay=config.weight_decay if config.weight_decay is not None else defaults["weight_decay"],
        input_size=config.input_size if config.input_size is not None else defaults["input_size"],
        mean=mean, std=std,
    )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed % 2**32)
    except ImportError:
        pass
    torch.manual_seed(seed)  # CUDA's generators too


def _rng_state() -> dict:
    """Every generator's state as tensors and numbers (loadable with weights_only=True)."""
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": torch.tensor(internal, dtype=torch.int64),
             "python_version": version, "python_gauss": gauss}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy

        kind, keys, pos, has_gauss, cached = numpy.random.get_state()
        state["numpy"] = {"keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached": float(cached)}
    except ImportError:
        pass
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        try:
            import numpy

            saved = state["numpy"]
            numpy.random.set_state(("MT19937", saved["keys"].numpy().astype("uint32"), saved["pos"],
                                    saved["has_gauss"], saved["cached"]))
        except ImportError:
            pass


@contextmanager
def _cpu_threads(device: torch.device, workers: int):
    """On CPU, leave a core to each loader worker: more compute threads than free cores wait on
    each other whenever anything else runs, and a step can take several times longer."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, min(before, cores - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _shutdown(loader: DataLoader) -> None:
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    loader._iterator = None


def _cpu_copy(state: dict) -> dict:
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def _plain(value: object) -> object:
    """JSON-able (tuples become lists)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# --- training -----------------------------------------------------------------------------------

def train(config: TrainConfig, dataset: Path, out: Path, reporter: Reporter, *,
          init: nn.Module | None = None,
          resume: Path | None = None,
          save_checkpoint: Callable[[Path, dict], None] | None = None,
          device: str | None = None,
          cache: Path | None = None, cache_identity: str | None = None) -> TrainResult:
    """Train on `dataset`'s train split, validate on its val split after every epoch, and write
    the best epoch's weights to out/weights.pth; with config.gpus > 1 on that many devices of
    this host at once (workers/pipeline/distributed.py). See the module docstring for the rest.

    `cache`: the image-cache entry to read (and build first if it is not whole) for this dataset
    and size, `cache_identity` the dataset version's identity it must carry; without one the run
    decodes into a private entry in the temporary folder, removed at the end."""
    reporter.stage("preparing")
    data = read_index(Path(dataset))
    validate(config, classes=len(data.classes), grayscale=data.grayscale)
    config = _resolve(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="image-cache-") if cache is None else nullcontext(cache) as entry:
        images, reporter = _cached_images(config, data, Path(entry), cache_identity or imagecache.identity_of(dataset),
                                          reporter)
        if config.gpus > 1:  # a process per device, this one their supervisor
            from workers.pipeline.distributed import train_distributed

            return train_distributed(config, data, out, reporter, init=init, resume=resume,
                                     save_checkpoint=save_checkpoint, device=device, images=images)
        where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if where.type == "cuda" and not torch.cuda.is_available():
            raise JobError(f"Training was asked to run on {device}, but this worker has no usable CUDA GPU.")
        return train_on(config, data, out, reporter, where, images, init=init, resume=resume,
                        save_checkpoint=save_checkpoint)


def train_on(config: TrainConfig, data, out: Path, reporter: Reporter, where: torch.device,
             images: imagecache.ImageCache, *, init: nn.Module | None = None, resume: Path | None = None,
             save_checkpoint: Callable[[Path, dict], None] | None = None, group=None) -> TrainResult | None:
    """One process's training on one device; with a `group` (distributed.Group) one rank of
    several, which returns None unless it is rank 0."""
    run = _Run(config, data, out, reporter, where, save_checkpoint, images)
    run.group = group
    with _cpu_threads(where, run.settings.workers):
        try:
            run.prepare(init, resume)
            if group is not None:
                group.share(run)  # the model in DistributedDataParallel; rank 0 alone reports and writes
            return run.loop()
        finally:
            run.close()


def _cached_images(config: TrainConfig, data, entry: Path, identity: str,
                   reporter: Reporter) -> tuple[imagecache.ImageCache, Reporter]:
    """The dataset's decoded images, and the reporter to train with: when decoding took long
    enough to show on the bar (over REPORT_SECONDS), it filled the bar's first 1 / (epochs + 1)
    and training fills the rest."""
    share = 1 / (config.epochs + 1)
    shown = []

    def on_progress(fraction: float) -> None:
        shown.append(fraction)
        reporter.progress(share * fraction)

    try:
        images = imagecache.open_cache(entry, data, identity=identity, size=imagecache.cache_size(config.input_size),
                                       reporter=reporter, on_progress=on_progress,
                                       workers=devices.auto_workers(devices.host_cores()) if config.workers is None else config.workers)
    except Cancelled:
        raise TrainingCancelled(None) from None
    return images, (_AfterDecoding(reporter, share) if shown else reporter)


class _AfterDecoding:
    """A reporter whose bar starts where decoding left it."""

    def __init__(self, reporter: Reporter, start: float) -> None:
        self._reporter, self._start = reporter, start

    def progress(self, fraction: float) -> None:
        self._reporter.progress(self._start + (1 - self._start) * fraction)

    def __getattr__(self, name: str):
        return getattr(self._reporter, name)


class _Run:
    def __init__(self, config: TrainConfig, data, out: Path, reporter: Reporter, device: torch.device,
                 save_checkpoint: Callable[[Path, dict], None] | None, images: imagecache.ImageCache) -> None:
        self.config, self.data, self.out, self.reporter, self.device = config, data, out, reporter, device
        self.save_checkpoint, self.images = save_checkpoint, images
        self.classes = len(data.classes)
        self.cuda = device.type == "cuda"
        self.settings = devices.decide(devices.capabilities(device), amp=config.amp, workers=config.workers)
        if not self.cuda:
            # Batches are slices of the image cache's memory map: on CPU the training process reads
            # them itself, cheaper than a core taken from the steps (on CUDA processes fill pinned memory).
            self.settings = replace(self.settings, workers=0, workers_chosen=False)
        self.writer = CheckpointWriter(out / "checkpoint.pth", save_checkpoint)
        self.in_epoch: dict | None = None  # the epoch under way: batches done and its sums (for a checkpoint)
        self.loaders: list[DataLoader] = []
        # progress through training; restored on resume
        self.epoch = 0  # finished epochs
        self.step = 0  # finished optimizer steps
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.best_epoch, self.best_key, self.best_confusion = 0, (-1.0, 0.0), []
        self.since_improvement = 0  # epochs since val top-1 last rose
        self.pretrained = False
        self.resumed_epochs = 0
        self.group = None  # distributed.Group when this is one rank of several

    # --- setting up ---------------------------------------------------------------------------
    def prepare(self, init: nn.Module | None, resume: Path | None) -> None:
        config, reporter, settings = self.config, self.reporter, self.settings
        devices.apply(settings)
        _seed_everything(config.seed)
        if init is not None:
            model = _fit_init(init, self.classes, config.input_size, reporter)
            reporter.log("fine-tuning the given model" + ("; pretrained weights not used" if config.pretrained else ""))
        else:
            model = build_model(config.architecture, self.classes)
            if config.pretrained and config.architecture != "small_cnn":
                self.pretrained = _load_pretrained(model, config.architecture, reporter)
        self.memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)

        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim <= 1]
        groups = [{"params": params, "weight_decay": wd}
                  for params, wd in ((decay, config.weight_decay), (no_decay, 0.0)) if params]
        # fused on CUDA: one kernel per step, and it takes GradScaler's inf check without a sync
        fused = True if settings.fused_optimizer else None
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, fused=fused)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=config.lr, fused=fused)
        self.scaler = torch.amp.GradScaler("cuda", enabled=settings.grad_scaler)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.augment = DeviceAugment(config.augment, config.input_size, config.mean, config.std, flip=config.flip,
                                     seed=config.seed, device=self.device, rank=self.group.rank if self.group else 0)

        self._make_loaders()
        if self.cuda:
            name = torch.cuda.get_device_name(self.device)
            reporter.log(f"training on {self.device} ({name}), {settings.describe()}")
        else:
            threads = torch.get_num_threads()
            reporter.log(f"training on cpu ({threads} thread{'s' if threads > 1 else ''}), {settings.describe()}")
        reporter.log(
            f"{self.classes} classes, {len(self.data.train)} train / {len(self.data.val)} val images; "
            f"{config.architecture} at {config.input_size} px, batch {config.batch_size}, {config.optimizer} "
            f"lr {config.lr:g} wd {config.weight_decay:g}, {config.schedule} schedule, augment {config.augment}{' + flips' if config.flip else ''}, "
            f"{config.epochs} epochs of {self.steps_per_epoch} steps")
        if resume is not None:
            self._restore(Path(resume))

    def _make_loaders(self) -> None:
        config, workers = self.config, self.settings.workers
        # its own generator: an iterator's base seed is not drawn from the global one (dropout's)
        common = {"batch_size": None, "num_workers": workers, "pin_memory": self.settings.pin_memory,
                  "persistent_workers": workers > 0, "generator": torch.Generator().manual_seed(config.seed)}
        self.batch = batch = min(config.batch_size, len(self.data.train))
        self.sampler = EpochSampler(len(self.data.train), config.seed)
        # A last batch of one image would break BatchNorm; drop it only then.
        batches = BatchSampler(self.sampler, batch, drop_last=len(self.data.train) % batch == 1)
        self.train_loader = DataLoader(imagecache.Batches(self.images.train), sampler=batches, **common)
        val_batches = BatchSampler(range(len(self.data.val)), config.batch_size, drop_last=False)
        self.val_loader = DataLoader(imagecache.Batches(self.images.val), sampler=val_batches, **common)
        self.loaders = [self.train_loader, self.val_loader]
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = config.epochs * self.steps_per_epoch

    def close(self) -> None:
        for loader in self.loaders:
            _shutdown(loader)
        try:
            self.writer.wait()  # a failed run's last checkpoint still lands; its own error is the run's
        except Exception:  # noqa: BLE001
            pass

    @property
    def keeps_checkpoints(self) -> bool:
        """Rank 0 (or a run of one process) writes the checkpoints; other ranks only train."""
        return self.group is None or self.group.rank == 0

    # --- the loop -------------------------------------------------------------------------------
    def loop(self) -> TrainResult | None:
        config, reporter = self.config, self.reporter
        self.started, self.started_step = time.perf_counter(), self.step
        self.due, self.checkpointed_step = CheckpointDue(config.checkpoint_minutes), self.step
        if self.group is not None and self.group.rank > 0:
            return self.group.follow(self)  # its shard of each epoch; rank 0 validates and keeps
        stopped_early = False
        while self.epoch < config.epochs:
            if config.early_stopping_patience and self.since_improvement >= config.early_stopping_patience:
                stopped_early = True
                break
            epoch_began = time.perf_counter()
            train_stats = self._train_epoch()
            val_began = time.perf_counter()
            val_stats, confusion = self._validate()
            self.epoch, self.in_epoch = self.epoch + 1, None
            entry = {"epoch": self.epoch, **train_stats, **val_stats,
                     "lr": self.optimizer.param_groups[0]["lr"],
                     "img_per_s": train_stats["train_images"] / max(val_began - epoch_began, 1e-9),
                     "train_seconds": val_began - epoch_began, "val_seconds": time.perf_counter() - val_began}
            entry["seconds"] = time.perf_counter() - epoch_began
            entry.update(self.timer.figures(entry["train_seconds"]))
            if self.utilisation:
                entry["device_util"] = sum(self.utilisation) / len(self.utilisation)
            self.history.append(entry)
            self._keep_best(entry, confusion)
            self._report_epoch(entry)
            if self.due.at_epoch_end():
                self._write_checkpoint()
        if self.checkpointed_step != self.step:  # the end: the run can be resumed to its result
            self._write_checkpoint()
        self.writer.wait()
        if stopped_early:
            reporter.log(f"stopping early after epoch {self.epoch}: val top-1 has not risen for "
                         f"{self.since_improvement} epochs (best {100 * self.best_key[0]:.1f} % at epoch "
                         f"{self.best_epoch})")
        reporter.stage("evaluating")
        result = self._result(stopped_early)
        (self.out / "checkpoint.pth").unlink(missing_ok=True)
        reporter.progress(1.0)
        reporter.log(f"best epoch {self.best_epoch}: val top-1 {100 * result.final['val_top1']:.1f} %, "
                     f"top-5 {100 * result.final['val_top5']:.1f} %, val loss {result.final['val_loss']:.3f}")
        return result

    def _inputs(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of cached uint8 squares on the device, augmented (training) or centre-cropped,
        normalised; a training batch's draws are its step's (resume sees the same images)."""
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        x = self.augment.train(images, self.step) if self.model.training else self.augment.val(images)
        return x.contiguous(memory_format=self.memory_format), labels

    def _train_epoch(self) -> dict:
        config, reporter, device = self.config, self.reporter, self.device
        reporter.stage("training")
        self.model.train()
        # A run resumed mid-epoch goes on after the batches its checkpoint had done, with the
        # epoch's sums as they were: the sampler's order depends only on (seed, epoch).
        resumed, self.in_epoch = self.in_epoch, None
        if resumed is not None and resumed.get("epoch", self.epoch) != self.epoch:
            resumed = None  # the last epoch's end (a rank other than 0 goes on without the loop clearing it)
        position = resumed["position"] if resumed else 0
        if resumed and not self.keeps_checkpoints:  # the checkpoint's sums are rank 0's shard's, counted there
            resumed = {**resumed, "loss_sum": torch.zeros(()), "correct": torch.zeros((), dtype=torch.int64), "seen": 0}
        self.sampler.set_epoch(self.epoch, start=position * self.batch)
        autocast = self.settings.autocast()
        loss_sum = resumed["loss_sum"].to(device) if resumed else torch.zeros((), device=device)
        correct = resumed["correct"].to(device) if resumed else torch.zeros((), dtype=torch.int64, device=device)
        seen = resumed["seen"] if resumed else 0
        timer = TimeSplit(device, data_wait_s=resumed["data_wait_s"] if resumed else 0.0,
                          compute_s=resumed["compute_s"] if resumed else 0.0)
        self.utilisation: list[float] = []
        pending: list[tuple[int, torch.Tensor, float]] = []  # (step, loss on the device, lr), not yet reported
        window_began, window_images = time.perf_counter(), 0
        batches = iter(self.train_loader)
        while True:
            timer.waiting()
            try:
                images, labels = next(batches)
            except StopIteration:
                break
            timer.fetched()
            self.in_epoch = self._where_in_epoch(position, loss_sum, correct, seen, timer)
            if reporter.cancelled():
                self._cancel()
            timer.step_began()
            factor = _lr_factor(config, self.step, self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = config.lr * factor
            x, y = self._inputs(images, labels)
            with autocast:
                logits = self.model(x)
                loss = self.criterion(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            position += 1
            n = y.shape[0]
            seen += n
            window_images += n
            loss = loss.detach()
            loss_sum += loss * n
            correct += (logits.detach().argmax(1) == y).sum()
            timer.step_ended()
            pending.append((self.step, loss, config.lr * factor))
            now = time.perf_counter()
            if now - window_began >= REPORT_SECONDS:
                self._report_steps(pending, window_images / (now - window_began))
                timer.collect()  # the losses' read waited for the device: its step timings are in
                pending, window_began, window_images = [], now, 0
            if self.keeps_checkpoints and self.due.mid_epoch() and position < self.steps_per_epoch:  # not the last:
                # the epoch's end has its own; compute_s is as of the last report (reading the newest
                # steps' times would wait for them)
                self._write_checkpoint(in_epoch=self._where_in_epoch(position, loss_sum, correct, seen, timer))
        if pending:
            self._report_steps(pending, window_images / max(time.perf_counter() - window_began, 1e-9))
        if self.group is not None:  # every rank's shard: the epoch's figures are the whole epoch's
            loss_sum, correct, seen = self.group.summed(loss_sum, correct, seen)
        train_loss = loss_sum.item() / max(seen, 1)
        if not math.isfinite(train_loss):
            raise JobError(f"Training diverged in epoch {self.epoch + 1} (the loss is {train_loss}); "
                           "lower the learning rate (lr) and start again.")
        stats = {"train_loss": train_loss, "train_top1": correct.item() / max(seen, 1), "train_images": seen}
        # Validation may be cancelled too: then this epoch's training is what a checkpoint keeps.
        self.in_epoch = self._where_in_epoch(position, loss_sum, correct, seen, timer)
        self.timer = timer
        return stats

    def _where_in_epoch(self, position: int, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int,
                        timer: TimeSplit) -> dict:
        """The epoch under way, as a checkpoint keeps it: the batches done and the sums so far."""
        return {"epoch": self.epoch, "position": position, "loss_sum": loss_sum, "correct": correct, "seen": seen,
                "data_wait_s": timer.data_wait_s, "compute_s": timer.compute_s}

    def _report_steps(self, pending: list[tuple[int, torch.Tensor, float]], images_per_second: float) -> None:
        """The steps since the last report, each with its own step number: one transfer from the
        device for their losses, and every call at once, so that the reporter writes them (and
        the progress) in one batch instead of one write every flush interval."""
        values = torch.stack([loss for _, loss, _ in pending]).float().tolist()
        for (step, _, lr), value in zip(pending, values):
            if math.isfinite(value):
                self.reporter.metric("train/loss", value, step=step)
            self.reporter.metric("train/lr", lr, step=step)
        step = pending[-1][0]
        ranks = self.group.world if self.group is not None else 1  # each rank trains as fast as rank 0
        self.reporter.metric("train/img_per_s", images_per_second * ranks, step=step)
        busy = devices.utilisation(self.device)
        if busy is not None:
            self.utilisation.append(busy)
            self.reporter.metric("train/device_util", busy, step=step)
        self.reporter.metric("time/eta_s", self._eta(), step=step)
        self.reporter.progress(step / self.total_steps)

    def _eta(self) -> float:
        done = self.step - self.started_step
        if done <= 0:
            return 0.0
        return (time.perf_counter() - self.started) / done * (self.total_steps - self.step)

    @torch.no_grad()
    def _validate(self) -> tuple[dict, list[list[int]]]:
        reporter, device, classes = self.reporter, self.device, self.classes
        reporter.stage("evaluating")
        self.model.eval()
        autocast = self.settings.autocast()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        top1 = torch.zeros((), dtype=torch.int64, device=device)
        top5 = torch.zeros((), dtype=torch.int64, device=device)
        confusion = torch.zeros(classes * classes, dtype=torch.int64, device=device)
        k = min(5, classes)
        for images, labels in self.val_loader:
            if reporter.cancelled():
                self._cancel()
            x, y = self._inputs(images, labels)
            with autocast:
                logits = self.model(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            best = logits.topk(k, dim=1).indices
            top1 += (best[:, 0] == y).sum()
            top5 += (best == y[:, None]).any(1).sum()
            confusion += torch.bincount(y * classes + best[:, 0], minlength=classes * classes)
        n = len(self.data.val)
        val_loss = loss_sum.item() / n
        if not math.isfinite(val_loss):
            raise JobError(f"Training diverged in epoch {self.epoch + 1} (the val loss is {val_loss}); "
                           "lower the learning rate (lr) and start again.")
        matrix = confusion.view(classes, classes).tolist()
        return {"val_loss": val_loss, "val_top1": top1.item() / n, "val_top5": top5.item() / n}, matrix

    def _keep_best(self, entry: dict, confusion: list[list[int]]) -> None:
        if entry["val_top1"] > self.best_key[0]:
            self.since_improvement = 0
        else:
            self.since_improvement += 1
        key = (entry["val_top1"], -entry["val_loss"])
        if self.best_state is None or key > self.best_key:
            self.best_key, self.best_epoch, self.best_confusion = key, entry["epoch"], confusion
            self.best_state = _cpu_copy(self.model.state_dict())

    def _report_epoch(self, entry: dict) -> None:
        reporter, epoch = self.reporter, entry["epoch"]
        for name in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr"):
            reporter.metric(f"epoch/{name}", entry[name], step=epoch, summary=True)
        seconds_per_epoch = (time.perf_counter() - self.started) / max(1, len(self.history) - self.resumed_epochs)
        eta = seconds_per_epoch * (self.config.epochs - epoch)
        reporter.metric("time/eta_s", eta, step=self.step)
        reporter.progress(self.step / self.total_steps)
        # where the epoch's training time went (workers.pipeline.timing)
        for name in ("data_wait_s", "compute_s", "data_wait_share", "device_util"):
            if name in entry:
                reporter.metric(f"epoch/{name}", entry[name], step=epoch, summary=True)  # one point an epoch
        reporter.log(f"epoch {epoch}/{self.config.epochs}: train loss {entry['train_loss']:.2f}, "
                     f"val loss {entry['val_loss']:.2f}, top-1 {100 * entry['val_top1']:.1f} %, "
                     f"top-5 {100 * entry['val_top5']:.1f} %, {entry['img_per_s']:.0f} img/s, "
                     f"ETA {_duration(eta)}")
        hint = data_wait_hint(entry.get("data_wait_share", 0.0), cuda=self.cuda, workers=self.settings.workers)
        if hint:
            reporter.log(f"epoch {epoch}: {hint}")

    # --- checkpoints --------------------------------------------------------------------------
    def _write_checkpoint(self, in_epoch: dict | None = None) -> None:
        """Everything needed to go on from here, copied off the device now and written in the
        background; `in_epoch`: mid-epoch, the batches done and the epoch's sums."""
        best_is_current = self.best_epoch == self.epoch and in_epoch is None  # then it is the model itself: stored once
        state = {
            "format": CHECKPOINT_FORMAT,
            "architecture": self.config.architecture,
            "classes": list(self.data.classes),
            "config": _plain(asdict(self.config)),
            "epoch": self.epoch,
            "step": self.step,
            "steps_per_epoch": self.steps_per_epoch,
            "in_epoch": in_epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_top1": self.best_key[0],
            "best_loss": -self.best_key[1],
            "best_confusion": self.best_confusion,
            "best_state": None if best_is_current else self.best_state,
            "since_improvement": self.since_improvement,
            "pretrained": self.pretrained,
            "rng": _rng_state(),
        }
        summary = {"epoch": self.epoch, "step": self.step, "best_epoch": self.best_epoch, "best_top1": self.best_key[0]}
        self.writer.write(state, summary, self.device)
        self.due.written()
        self.checkpointed_step = self.step

    def _restore(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise JobError(f"The checkpoint to resume from cannot be read ({type(error).__name__}: {error}).") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise JobError("The file to resume from is not a Vintner training checkpoint.")
        if state["architecture"] != self.config.architecture:
            raise JobError(f"The checkpoint is of {state['architecture']}, but architecture is "
                           f"{self.config.architecture}; resume with the same architecture.")
        if state["classes"] != list(self.data.classes):
            raise JobError(f"The checkpoint was trained on the classes {', '.join(state['classes'])}, but the "
                           f"dataset has {', '.join(self.data.classes)}; resume on the same dataset.")
        if state["steps_per_epoch"] != self.steps_per_epoch:
            raise JobError(f"The checkpoint has {state['steps_per_epoch']} steps per epoch, but this run has "
                           f"{self.steps_per_epoch}; resume with the same dataset and batch_size.")
        changed = [key for key, value in _plain(asdict(self.config)).items()
                   if key in state["config"] and state["config"][key] != value]
        if changed:
            self.reporter.log(f"resuming with changed settings: {', '.join(changed)}", level="warning")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], list(state["history"])
        self.in_epoch = state.get("in_epoch")  # mid-epoch: where in the epoch, and its sums so far
        self.best_epoch, self.best_confusion = state["best_epoch"], state["best_confusion"]
        self.best_key = (state["best_top1"], -state["best_loss"])
        self.best_state = state["best_state"] if state["best_state"] is not None else _cpu_copy(state["model"])
        self.since_improvement, self.pretrained = state["since_improvement"], state["pretrained"]
        _set_rng_state(state["rng"])
        self.resumed_epochs = self.epoch
        if self.in_epoch:
            self.reporter.log(f"resuming in epoch {self.epoch + 1} after step {self.step} "
                              f"({self.in_epoch['position']} of its {self.steps_per_epoch} steps done)")
        else:
            self.reporter.log(f"resuming after epoch {self.epoch}")
        self.reporter.progress(min(1.0, self.step / self.total_steps))

    # --- results ------------------------------------------------------------------------------
    def _result(self, stopped_early: bool) -> TrainResult:
        weights = self.out / "weights.pth"
        atomic_save(self.best_state, weights)
        final = next(entry for entry in self.history if entry["epoch"] == self.best_epoch)
        return TrainResult(
            weights=weights, architecture=self.config.architecture, num_classes=self.classes,
            classes=list(self.data.classes), input_size=self.config.input_size, mean=list(self.config.mean),
            std=list(self.config.std), best_epoch=self.best_epoch, epochs_run=self.epoch,
            stopped_early=stopped_early, device=str(self.device), final=dict(final),
            history=[dict(entry) for entry in self.history], confusion=self.best_confusion,
            pretrained=self.pretrained, config=_plain(asdict(self.config)),
        )

    def _cancel(self) -> None:
        result = self._result(False) if self.best_state is not None else None
        # Where it stopped, to resume from: once an epoch has ended, and unless the last one is here.
        if result is not None and self.checkpointed_step != self.step:
            self._write_checkpoint(in_epoch=self.in_epoch)
        self.writer.wait()
        if result is not None:
            self.reporter.log(f"cancelled; the best epoch so far ({self.best_epoch}) is in {result.weights.name}",
                              level="warning")
        raise TrainingCancelled(result)
