"""Text-classifier training on a published text dataset folder. No Django, no Celery.

    result = train_text(TextTrainConfig(epochs=3, lr=5e-5), dataset, out, reporter, model_folder=folder)

The network is a transformers `AutoModelForSequenceClassification`, from one of:
- `model_folder`, a save_pretrained folder (an uploaded or trained artifact): its tokenizer, and
  its weights (`weights=True`) or only its config with random weights (`weights=False`). Its head
  is replaced when the dataset has another number of classes; when the class names are the
  model's id2label in another order, the head's rows are reordered to the dataset's.
- no folder: a built-in BERT shape (`architecture`, text/configs.py) with random weights and a
  WordPiece vocabulary learnt from the dataset's train rows with the `tokenizers` library.

It trains on the train split with AdamW (no decay on biases and norms), a linear warm-up then a
linear decay to 0, gradients clipped at norm 1, bf16 (else fp16 with loss scaling) autocast on
CUDA, and validates on the val split after every epoch: loss, accuracy, macro-F1. Reporting and
checkpoints are image training's (workers/pipeline/training.py): every step's train/loss and
train/lr read off the device once a second, epoch/* summary points (accuracy is epoch/val_top1,
so the job page's curves draw it), `checkpoint.pth` in `out` each epoch handed to
`save_checkpoint`, `resume=` goes on from one exactly, and a cancel keeps the best epoch. The best
epoch (highest val accuracy, ties: lower val loss) ends in out/model as a save_pretrained folder
with its tokenizer and id2label = the dataset's classes.
"""

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from workers.pipeline.params import SEED_MAX
from workers.pipeline.reporting import Cancelled, JobError, Reporter
from workers.pipeline.text.configs import (
    DEFAULT_MAX_LENGTH, DEFAULT_WEIGHT_DECAY, FINE_TUNE_LR, MAX_POSITIONS, SCRATCH_LR, TEXT_ARCHITECTURES, VOCAB_SIZE,
)
from workers.pipeline.text.models import labels_of, load_classifier, read_config
from workers.pipeline.text.rows import TextData, TextRow, read_text_dataset
from workers.pipeline.checkpoints import atomic_save
from workers.pipeline.training import (
    REPORT_SECONDS, _cpu_copy, _cpu_threads, _duration, _plain, _rng_state, _seed_everything, _set_rng_state,
)

CHECKPOINT_FORMAT = 1
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class TextTrainConfig:
    architecture: str = "bert-mini"  # a built-in shape; only without a model folder
    weights: bool = True  # a model folder's weights; False: its config with random weights
    epochs: int = 3
    batch_size: int = 32
    lr: float | None = None  # None: 5e-5 from weights, 5e-4 from random weights
    weight_decay: float | None = None  # None: 0.01; never applied to biases and norms
    warmup_epochs: float = 0.0  # linear from 0 to lr, then linear to 0 at the end
    label_smoothing: float = 0.0
    max_length: int | None = None  # tokens a row is cut to; None: 128 or the model's maximum if less
    seed: int = 0
    early_stopping_patience: int = 0  # epochs without a higher val accuracy; 0: off
    amp: bool = True  # bf16 autocast (fp16 where the GPU lacks bf16), on CUDA only


@dataclass
class TextTrainResult:
    folder: Path  # out/model: the best epoch, save_pretrained with its tokenizer
    model_type: str
    architecture: str  # the built-in shape, or the model folder's architecture class
    num_classes: int
    classes: list[str]
    max_length: int
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    device: str
    final: dict
    history: list[dict]
    confusion: list[list[int]]
    start: str  # "weights" (a model's), "config" (its config, random weights) or "built-in"
    token_lengths: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["folder"] = str(self.folder)
        return data


class TextTrainingCancelled(Cancelled):
    """Cancelled mid-training; `result` is the best finished epoch (in out/model), None if none finished."""

    def __init__(self, result: TextTrainResult | None) -> None:
        super().__init__("training cancelled")
        self.result = result


def validate(config: TextTrainConfig, *, classes: int, from_folder: bool) -> None:
    """A JobError naming the setting, its value and what it must be, for the first that is wrong."""

    def bad(name: str, requirement: str) -> JobError:
        return JobError(f"Training setting {name} is {getattr(config, name)!r}, but {requirement}.")

    def number(name: str, *, integer: bool = False) -> float:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) \
                or not math.isfinite(value):
            raise bad(name, "it must be " + ("a whole number" if integer else "a number"))
        return value

    if not from_folder and config.architecture not in TEXT_ARCHITECTURES:
        raise bad("architecture", f"a text model from scratch is one of {', '.join(TEXT_ARCHITECTURES)}")
    if classes < 2:
        raise JobError(f"The dataset has {classes} classes, but training needs at least 2.")
    if not 1 <= number("epochs", integer=True) <= 10_000:
        raise bad("epochs", "it must be between 1 and 10000")
    if not 1 <= number("batch_size", integer=True) <= 4096:
        raise bad("batch_size", "it must be between 1 and 4096")
    if config.lr is not None and not 0 < number("lr") <= 10:
        raise bad("lr", "it must be above 0 and at most 10 (or unset for the default)")
    if config.weight_decay is not None and not 0 <= number("weight_decay") <= 1:
        raise bad("weight_decay", "it must be between 0 and 1 (or unset for the default)")
    if not 0 <= number("warmup_epochs") <= config.epochs:
        raise bad("warmup_epochs", f"it must be between 0 and epochs ({config.epochs})")
    if not 0 <= number("label_smoothing") < 1:
        raise bad("label_smoothing", "it must be at least 0 and below 1")
    if config.max_length is not None and number("max_length", integer=True) < 8:
        raise bad("max_length", "it must be at least 8 tokens")
    if not 0 <= number("seed", integer=True) <= SEED_MAX:
        raise bad("seed", f"it must be from 0 to {SEED_MAX}")
    if number("early_stopping_patience", integer=True) < 0:
        raise bad("early_stopping_patience", "it must be 0 (off) or more")
    for name in ("amp", "weights"):
        if not isinstance(getattr(config, name), bool):
            raise bad(name, "it must be true or false")


def train_text(config: TextTrainConfig, dataset: Path, out: Path, reporter: Reporter, *,
               model_folder: Path | None = None,
               resume: Path | None = None,
               save_checkpoint: Callable[[Path, dict], None] | None = None,
               device: str | None = None) -> TextTrainResult:
    """Train on `dataset`'s train split, validate on its val split after every epoch, and write the
    best epoch to out/model. See the module docstring for the rest."""
    reporter.stage("preparing")
    data = read_text_dataset(Path(dataset))
    validate(config, classes=len(data.classes), from_folder=model_folder is not None)
    for split in ("train", "val"):
        if not any(row.split == split and row.label is not None for row in data.rows):
            raise JobError(f"The dataset has no labelled {split} rows; training needs both train and val rows.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if where.type == "cuda" and not torch.cuda.is_available():
        raise JobError(f"Training was asked to run on {device}, but this worker has no usable CUDA GPU.")
    run = _Run(config, data, out, reporter, where, save_checkpoint)
    with _cpu_threads(where, 0):
        run.prepare(model_folder, Path(resume) if resume else None)
        return run.loop()


# --- the network and its tokenizer --------------------------------------------------------------

def _learnt_tokenizer(rows: list[TextRow], vocabulary: list[str] | None = None):
    """A lower-casing BERT WordPiece tokenizer: `vocabulary`, or one learnt from the rows' texts."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    if vocabulary is None:
        learner = BertWordPieceTokenizer(lowercase=True)
        texts = (text for row in rows for text in (row.text, row.text_pair) if text)
        learner.train_from_iterator(texts, vocab_size=VOCAB_SIZE, min_frequency=1, special_tokens=SPECIAL_TOKENS,
                                    show_progress=False)
        vocabulary = [token for token, _ in sorted(learner.get_vocab().items(), key=lambda item: item[1])]
    return BertTokenizerFast(vocab={token: i for i, token in enumerate(vocabulary)}, do_lower_case=True,
                             model_max_length=MAX_POSITIONS)


def _built_in(architecture: str, tokenizer, classes: list[str]):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=MAX_POSITIONS,
                        pad_token_id=tokenizer.pad_token_id, num_labels=len(classes),
                        **TEXT_ARCHITECTURES[architecture])
    return BertForSequenceClassification(config)


def _head(model: nn.Module, outputs: int) -> nn.Linear:
    """The classification layer: the last Linear with one output per class."""
    return [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == outputs][-1]


def _fit_labels(model: nn.Module, labels: list[str], classes: list[str], reporter: Reporter) -> None:
    """Output i of the model becomes dataset class i: rows reordered where the names match, a fresh
    head where the model's classes are others, kept by position where they have no names."""
    if labels == classes:
        return
    head = _head(model, len(classes))
    if sorted(labels) == sorted(classes):
        order = torch.tensor([labels.index(name) for name in classes])
        with torch.no_grad():
            head.weight.copy_(head.weight[order])
            if head.bias is not None:
                head.bias.copy_(head.bias[order])
        reporter.log("the model's classes are the dataset's in another order; its outputs are reordered to "
                     + ", ".join(classes))
    elif labels:
        with torch.no_grad():
            head.weight.normal_(0.0, getattr(model.config, "initializer_range", 0.02))
            if head.bias is not None:
                head.bias.zero_()
        reporter.log(f"the model's classes ({', '.join(labels[:8])}) are not the dataset's; its classifier "
                     "starts fresh", level="warning")
    else:
        reporter.log("the model's outputs have no class names; they are taken as the dataset's classes in order")


def _position_limit(config) -> int:
    """How many tokens the model reads at most (RoBERTa-style position ids start after padding)."""
    limit = int(getattr(config, "max_position_embeddings", 0) or MAX_POSITIONS)
    if config.model_type in ("roberta", "xlm-roberta"):
        limit -= int(config.pad_token_id or 0) + 1
    return limit


# --- tokenized rows -----------------------------------------------------------------------------

class _Encoded:
    """A split's rows as token ids (cut to max_length, unpadded), with their labels."""

    def __init__(self, tokenizer, rows: list[TextRow], labels: list[int], max_length: int) -> None:
        texts = [row.text for row in rows]
        pairs = [row.text_pair or "" for row in rows] if any(row.text_pair is not None for row in rows) else None
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        self.ids = encoded["input_ids"]
        self.types = encoded.get("token_type_ids")
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.pad = tokenizer.pad_token_id or 0

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices: list[int], device: torch.device) -> tuple[dict, torch.Tensor]:
        """Padded to the batch's longest row."""
        longest = max(len(self.ids[i]) for i in indices)
        ids = torch.full((len(indices), longest), self.pad, dtype=torch.long)
        mask = torch.zeros((len(indices), longest), dtype=torch.long)
        types = torch.zeros((len(indices), longest), dtype=torch.long) if self.types is not None else None
        for row, i in enumerate(indices):
            n = len(self.ids[i])
            ids[row, :n] = torch.tensor(self.ids[i])
            mask[row, :n] = 1
            if types is not None:
                types[row, :n] = torch.tensor(self.types[i])
        inputs = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            inputs["token_type_ids"] = types
        return ({key: value.to(device, non_blocking=True) for key, value in inputs.items()},
                self.labels[indices].to(device, non_blocking=True))


def token_lengths(tokenizer, rows: list[TextRow], max_length: int) -> dict:
    """How long the rows are in this tokenizer's tokens (special tokens counted), and how many are cut."""
    texts = [row.text for row in rows]
    pairs = [row.text_pair or "" for row in rows] if any(row.text_pair is not None for row in rows) else None
    lengths = sorted(len(ids) for ids in tokenizer(texts, pairs, truncation=False, verbose=False)["input_ids"])
    if not lengths:
        return {"rows": 0, "truncated": 0, "max_length": max_length}
    return {"rows": len(lengths), "median": lengths[len(lengths) // 2],
            "p95": lengths[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)], "longest": lengths[-1],
            "truncated": sum(1 for n in lengths if n > max_length), "max_length": max_length}


def macro_f1(confusion: torch.Tensor) -> float:
    """Mean F1 over the classes that are in the truth or the predictions (as scikit-learn does)."""
    tp = confusion.diag().double()
    truth, predicted = confusion.sum(1).double(), confusion.sum(0).double()
    present = (truth + predicted) > 0
    f1 = torch.where(truth + predicted > 0, 2 * tp / (truth + predicted).clamp(min=1), torch.zeros_like(tp))
    return float(f1[present].mean()) if present.any() else 0.0


# --- training -----------------------------------------------------------------------------------

class _Run:
    def __init__(self, config: TextTrainConfig, data: TextData, out: Path, reporter: Reporter, device: torch.device,
                 save_checkpoint: Callable[[Path, dict], None] | None) -> None:
        self.config, self.data, self.out, self.reporter, self.device = config, data, out, reporter, device
        self.save_checkpoint = save_checkpoint
        self.classes = list(data.classes)
        self.cuda = device.type == "cuda"
        self.amp_dtype = None
        if self.cuda and config.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.epoch = self.step = 0
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.best_epoch, self.best_key, self.best_confusion = 0, (-1.0, 0.0), []
        self.since_improvement = 0
        self.resumed_epochs = 0
        self.vocabulary: list[str] | None = None  # a learnt tokenizer's, kept in checkpoints

    # --- setting up ---------------------------------------------------------------------------
    def prepare(self, folder: Path | None, resume: Path | None) -> None:
        config, reporter = self.config, self.reporter
        _seed_everything(config.seed)
        state = self._read_checkpoint(resume) if resume is not None else None
        train_rows = [row for row in self.data.split("train") if row.label is not None]
        val_rows = [row for row in self.data.split("val") if row.label is not None]
        if folder is not None:
            self.model, self.tokenizer, self.architecture = self._from_folder(Path(folder))
        else:
            reporter.stage("learning the vocabulary")
            self.vocabulary = state["vocabulary"] if state is not None else None
            self.tokenizer = _learnt_tokenizer(train_rows, self.vocabulary)
            self.vocabulary = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            self.model = _built_in(config.architecture, self.tokenizer, self.classes)
            self.architecture, self.start = config.architecture, "built-in"
            reporter.log(f"{config.architecture} from scratch, random weights; a WordPiece vocabulary of "
                         f"{len(self.tokenizer)} tokens learnt from the {len(train_rows)} train rows")
        self.model.config.id2label = dict(enumerate(self.classes))
        self.model.config.label2id = {name: i for i, name in enumerate(self.classes)}
        self.model = self.model.float().to(self.device)
        limit = _position_limit(self.model.config)
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < limit:
            limit = tokenizer_limit
        if config.max_length is not None and config.max_length > limit:
            raise JobError(f"Training setting max_length is {config.max_length} tokens, but this model reads at most "
                           f"{limit}; choose {limit} or less.")
        self.max_length = config.max_length or min(DEFAULT_MAX_LENGTH, limit)
        self.lr = config.lr or (FINE_TUNE_LR if self.start == "weights" else SCRATCH_LR)
        self.weight_decay = DEFAULT_WEIGHT_DECAY if config.weight_decay is None else config.weight_decay

        reporter.stage("tokenizing")
        self.lengths = token_lengths(self.tokenizer, train_rows, self.max_length)
        self.train = _Encoded(self.tokenizer, train_rows, self.data.label_ids(train_rows), self.max_length)
        self.val = _Encoded(self.tokenizer, val_rows, self.data.label_ids(val_rows), self.max_length)
        lengths = self.lengths
        reporter.log(f"train rows in tokens: median {lengths['median']}, 95th percentile {lengths['p95']}, longest "
                     f"{lengths['longest']}; {lengths['truncated']} of {lengths['rows']} rows "
                     f"({100 * lengths['truncated'] / lengths['rows']:.1f} %) are longer than max_length "
                     f"{self.max_length} and are cut")
        self.batch = min(config.batch_size, len(self.train))
        self.steps_per_epoch = math.ceil(len(self.train) / self.batch)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.warmup_steps = round(config.warmup_epochs * self.steps_per_epoch)

        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim <= 1]
        groups = [{"params": params, "weight_decay": wd}
                  for params, wd in ((decay, self.weight_decay), (no_decay, 0.0)) if params]
        self.optimizer = torch.optim.AdamW(groups, lr=self.lr, fused=True if self.cuda else None)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

        if self.cuda:
            precision = {torch.bfloat16: ", mixed precision (bf16)", torch.float16: ", mixed precision (fp16)"}
            reporter.log(f"training on {self.device} ({torch.cuda.get_device_name(self.device)})"
                         f"{precision.get(self.amp_dtype, '')}")
        else:
            threads = torch.get_num_threads()
            reporter.log(f"training on cpu ({threads} thread{'s' if threads > 1 else ''})")
        reporter.log(f"{len(self.classes)} classes, {len(self.train)} train / {len(self.val)} val rows; "
                     f"{self.architecture} ({self.model.config.model_type}) at max_length {self.max_length}, batch "
                     f"{self.batch}, adamw lr {self.lr:g} wd {self.weight_decay:g}, linear schedule with "
                     f"{self.warmup_steps} warm-up steps, {config.epochs} epochs of {self.steps_per_epoch} steps")
        if state is not None:
            self._restore(state)

    def _from_folder(self, folder: Path):
        config, reporter, classes = self.config, self.reporter, self.classes
        own = read_config(folder)
        labels = labels_of(own)
        outputs = int(own.get("num_labels") or len(own.get("id2label") or {}) or 2)
        replace_head = outputs != len(classes)
        model, tokenizer = load_classifier(folder, num_labels=len(classes) if replace_head else None,
                                           weights=config.weights)
        architecture = (own.get("architectures") or [type(model).__name__])[0]
        if not config.weights:
            self.start = "config"
            reporter.log(f"{architecture} from its config, random weights")
        else:
            self.start = "weights"
            reporter.log(f"fine-tuning {architecture}")
            if replace_head:
                reporter.log(f"classifier replaced: {outputs} → {len(classes)} classes")
            else:
                _fit_labels(model, labels, classes, reporter)
        return model, tokenizer, architecture

    # --- the loop -------------------------------------------------------------------------------
    def loop(self) -> TextTrainResult:
        config, reporter = self.config, self.reporter
        self.started, self.started_step = time.perf_counter(), self.step
        stopped_early = False
        while self.epoch < config.epochs:
            if config.early_stopping_patience and self.since_improvement >= config.early_stopping_patience:
                stopped_early = True
                break
            began = time.perf_counter()
            train_stats = self._train_epoch()
            val_began = time.perf_counter()
            val_stats, confusion = self._validate()
            self.epoch += 1
            entry = {"epoch": self.epoch, **train_stats, **val_stats, "lr": self.optimizer.param_groups[0]["lr"],
                     "rows_per_s": train_stats["train_rows"] / max(val_began - began, 1e-9),
                     "train_seconds": val_began - began, "val_seconds": time.perf_counter() - val_began}
            entry["seconds"] = time.perf_counter() - began
            self.history.append(entry)
            self._keep_best(entry, confusion)
            self._report_epoch(entry)
            self._write_checkpoint()
        if stopped_early:
            reporter.log(f"stopping early after epoch {self.epoch}: val accuracy has not risen for "
                         f"{self.since_improvement} epochs (best {100 * self.best_key[0]:.1f} % at epoch "
                         f"{self.best_epoch})")
        reporter.stage("saving")
        result = self._result(stopped_early)
        (self.out / "checkpoint.pth").unlink(missing_ok=True)
        reporter.progress(1.0)
        reporter.log(f"best epoch {self.best_epoch}: val top-1 {100 * result.final['val_top1']:.1f} %, macro-F1 "
                     f"{result.final['val_f1']:.3f}, val loss {result.final['val_loss']:.3f}")
        return result

    def _autocast(self):
        return torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()

    def _lr_factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup_steps))

    def _train_epoch(self) -> dict:
        config, reporter, device = self.config, self.reporter, self.device
        reporter.stage("training")
        self.model.train()
        # The epoch's order depends on the seed and the epoch alone: a resumed run draws the same.
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(config.seed + self.epoch))
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        pending: list[tuple[int, torch.Tensor, float]] = []
        window_began, window_rows = time.perf_counter(), 0
        for start in range(0, len(order), self.batch):
            if reporter.cancelled():
                self._cancel()
            lr = self.lr * self._lr_factor(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            inputs, labels = self.train.batch(order[start:start + self.batch].tolist(), device)
            with self._autocast():
                logits = self.model(**inputs).logits
            loss = self.criterion(logits.float(), labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            n = labels.shape[0]
            seen += n
            window_rows += n
            loss = loss.detach()
            loss_sum += loss * n
            correct += (logits.detach().argmax(1) == labels).sum()
            pending.append((self.step, loss, lr))
            now = time.perf_counter()
            if now - window_began >= REPORT_SECONDS:
                self._report_steps(pending, window_rows / (now - window_began))
                pending, window_began, window_rows = [], now, 0
        if pending:
            self._report_steps(pending, window_rows / max(time.perf_counter() - window_began, 1e-9))
        train_loss = loss_sum.item() / max(seen, 1)
        if not math.isfinite(train_loss):
            raise JobError(f"Training diverged in epoch {self.epoch + 1} (the loss is {train_loss}); "
                           "lower the learning rate (lr) and start again.")
        return {"train_loss": train_loss, "train_top1": correct.item() / max(seen, 1), "train_rows": seen}

    def _report_steps(self, pending: list[tuple[int, torch.Tensor, float]], rows_per_second: float) -> None:
        """The steps since the last report, their losses read off the device in one transfer."""
        values = torch.stack([loss for _, loss, _ in pending]).float().tolist()
        for (step, _, lr), value in zip(pending, values):
            if math.isfinite(value):
                self.reporter.metric("train/loss", value, step=step)
            self.reporter.metric("train/lr", lr, step=step)
        step = pending[-1][0]
        self.reporter.metric("train/rows_per_s", rows_per_second, step=step)
        self.reporter.metric("time/eta_s", self._eta(), step=step)
        self.reporter.progress(step / self.total_steps)

    def _eta(self) -> float:
        done = self.step - self.started_step
        return 0.0 if done <= 0 else (time.perf_counter() - self.started) / done * (self.total_steps - self.step)

    @torch.no_grad()
    def _validate(self) -> tuple[dict, list[list[int]]]:
        reporter, device, classes = self.reporter, self.device, len(self.classes)
        reporter.stage("evaluating")
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        confusion = torch.zeros(classes * classes, dtype=torch.int64, device=device)
        for start in range(0, len(self.val), self.config.batch_size):
            if reporter.cancelled():
                self._cancel()
            inputs, labels = self.val.batch(list(range(start, min(start + self.config.batch_size, len(self.val)))),
                                            device)
            with self._autocast():
                logits = self.model(**inputs).logits
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            confusion += torch.bincount(labels * classes + logits.argmax(1), minlength=classes * classes)
        n = len(self.val)
        val_loss = loss_sum.item() / n
        if not math.isfinite(val_loss):
            raise JobError(f"Training diverged in epoch {self.epoch + 1} (the val loss is {val_loss}); "
                           "lower the learning rate (lr) and start again.")
        matrix = confusion.view(classes, classes).cpu()
        return ({"val_loss": val_loss, "val_top1": int(matrix.diag().sum()) / n, "val_f1": macro_f1(matrix)},
                matrix.tolist())

    def _keep_best(self, entry: dict, confusion: list[list[int]]) -> None:
        self.since_improvement = 0 if entry["val_top1"] > self.best_key[0] else self.since_improvement + 1
        key = (entry["val_top1"], -entry["val_loss"])
        if self.best_state is None or key > self.best_key:
            self.best_key, self.best_epoch, self.best_confusion = key, entry["epoch"], confusion
            self.best_state = _cpu_copy(self.model.state_dict())

    def _report_epoch(self, entry: dict) -> None:
        reporter, epoch = self.reporter, entry["epoch"]
        for name in ("train_loss", "train_top1", "val_loss", "val_top1", "val_f1", "lr"):
            reporter.metric(f"epoch/{name}", entry[name], step=epoch, summary=True)
        seconds_per_epoch = (time.perf_counter() - self.started) / max(1, len(self.history) - self.resumed_epochs)
        eta = seconds_per_epoch * (self.config.epochs - epoch)
        reporter.metric("time/eta_s", eta, step=self.step)
        reporter.progress(self.step / self.total_steps)
        reporter.log(f"epoch {epoch}/{self.config.epochs}: train loss {entry['train_loss']:.2f}, val loss "
                     f"{entry['val_loss']:.2f}, accuracy {100 * entry['val_top1']:.1f} %, macro-F1 "
                     f"{entry['val_f1']:.3f}, {entry['rows_per_s']:.0f} rows/s, ETA {_duration(eta)}")

    # --- checkpoints --------------------------------------------------------------------------
    def _write_checkpoint(self) -> None:
        best_is_current = self.best_epoch == self.epoch  # then it is the model itself: stored once
        state = {
            "format": CHECKPOINT_FORMAT, "kind": "text", "architecture": self.architecture,
            "classes": self.classes, "config": _plain(asdict(self.config)), "vocabulary": self.vocabulary,
            "epoch": self.epoch, "step": self.step, "steps_per_epoch": self.steps_per_epoch,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "history": self.history, "best_epoch": self.best_epoch,
            "best_top1": self.best_key[0], "best_loss": -self.best_key[1], "best_confusion": self.best_confusion,
            "best_state": None if best_is_current else self.best_state,
            "since_improvement": self.since_improvement, "rng": _rng_state(),
        }
        path = self.out / "checkpoint.pth"
        atomic_save(state, path)
        if self.save_checkpoint is not None:
            self.save_checkpoint(path, {"epoch": self.epoch, "step": self.step, "best_epoch": self.best_epoch,
                                        "best_top1": self.best_key[0]})

    @staticmethod
    def _read_checkpoint(path: Path) -> dict:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise JobError(f"The checkpoint to resume from cannot be read ({type(error).__name__}: {error}).") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or state.get("kind") != "text":
            raise JobError("The file to resume from is not a Vintner text-training checkpoint.")
        return state

    def _restore(self, state: dict) -> None:
        if state["architecture"] != self.architecture:
            raise JobError(f"The checkpoint is of {state['architecture']}, but this run trains {self.architecture}; "
                           "resume with the same model.")
        if state["classes"] != self.classes:
            raise JobError(f"The checkpoint was trained on the classes {', '.join(state['classes'])}, but the "
                           f"dataset has {', '.join(self.classes)}; resume on the same dataset.")
        if state["steps_per_epoch"] != self.steps_per_epoch:
            raise JobError(f"The checkpoint has {state['steps_per_epoch']} steps per epoch, but this run has "
                           f"{self.steps_per_epoch}; resume with the same dataset and batch_size.")
        changed = [key for key, value in _plain(asdict(self.config)).items()
                   if key in state["config"] and state["config"][key] != value]
        if changed:
            self.reporter.log(f"resuming with changed settings: {', '.join(changed)}", level="warning")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise JobError(f"The checkpoint does not fit this model ({str(error).splitlines()[0]}).") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], list(state["history"])
        self.best_epoch, self.best_confusion = state["best_epoch"], state["best_confusion"]
        self.best_key = (state["best_top1"], -state["best_loss"])
        self.best_state = state["best_state"] if state["best_state"] is not None else _cpu_copy(state["model"])
        self.since_improvement = state["since_improvement"]
        _set_rng_state(state["rng"])
        self.resumed_epochs = self.epoch
        self.reporter.log(f"resuming after epoch {self.epoch}")
        self.reporter.progress(min(1.0, self.step / self.total_steps))

    # --- results ------------------------------------------------------------------------------
    def _result(self, stopped_early: bool) -> TextTrainResult:
        folder = self.out / "model"
        self.model.load_state_dict(self.best_state)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        final = next(entry for entry in self.history if entry["epoch"] == self.best_epoch)
        return TextTrainResult(
            folder=folder, model_type=self.model.config.model_type, architecture=self.architecture,
            num_classes=len(self.classes), classes=self.classes, max_length=self.max_length,
            best_epoch=self.best_epoch, epochs_run=self.epoch, stopped_early=stopped_early, device=str(self.device),
            final=dict(final), history=[dict(entry) for entry in self.history], confusion=self.best_confusion,
            start=self.start, token_lengths=self.lengths,
            config={**_plain(asdict(self.config)), "lr": self.lr, "weight_decay": self.weight_decay,
                    "max_length": self.max_length},
        )

    def _cancel(self) -> None:
        result = self._result(False) if self.best_state is not None else None
        if result is not None:
            self.reporter.log(f"cancelled; the best epoch so far ({self.best_epoch}) is kept", level="warning")
        raise TextTrainingCancelled(result)
