"""INT8 post-training quantization of an OpenVINO IR with NNCF, and its cost in accuracy.
No Django, no Celery.

    result = quantize_ir(source=fp32 / "model.xml", data=QuantizeData(...), spec=InputSpec.of(...),
                         config=QuantizeConfig(method="ptq"), out=int8_folder, span=span)

Methods:
    "ptq"       nncf.quantize: statistics of `subset_size` calibration images set the INT8 ranges.
    "accuracy"  nncf.quantize_with_accuracy_control: the same, then layers whose quantization costs
                the most top-1 on the validation images are put back into floating point, one
                group at a time, until the drop is within `max_drop` (or nothing is left to try:
                the result then says so, and the best model found is kept).

Calibration images come from the dataset's train split, in a seeded shuffle (NNCF takes the first
`subset_size`), so classes are mixed; the validation images are never used for calibration.
NNCF has no progress callback: calibration progress counts calls of the nncf.Dataset transform,
which it makes once per calibration image (and once per validation image per validation pass).

A text model is fed rows of a text dataset instead (`feed=text.measure.TextFeed`): the nncf.Dataset
transform tokenizes each row, and accuracy control may bound the drop in macro-F1 (`metric`).

Accuracy before and after is scored here, by one code path for both (`evaluation.evaluate`, FP32
inference precision wherever floating point runs), on the validation images. Calibration images
without labels (an unlabelled dataset: `QuantizeData.classes` None) serve "ptq" only, whatever
the model's classes, and then no accuracy is measured.
"""

import contextlib
import logging
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nncf
import openvino as ov

from workers.pipeline.data import MIN_CALIBRATION  # below this the ranges are guesses: refused
from workers.pipeline.evaluation import Pictures, Scores, class_report, evaluate, ir_runner
from workers.pipeline.feeding import InputSpec
from workers.pipeline.formats import one_line
from workers.pipeline.outputs import score_count
from workers.pipeline.reporting import Cancelled, JobError, Span, timed

METHODS = ("ptq", "accuracy")
PRESETS = ("performance", "mixed")
MODEL_TYPES = ("", "transformer")
DROP_TYPES = ("absolute", "relative")
METRICS = ("accuracy", "macro_f1")  # what accuracy control bounds the drop of
RECOMMENDED_SUBSET = 300  # NNCF's default; fewer images give rougher ranges


@dataclass(frozen=True)
class QuantizeConfig:
    method: str = "ptq"  # "ptq" | "accuracy"
    subset_size: int = RECOMMENDED_SUBSET  # calibration images
    preset: str = "performance"  # "performance" (symmetric) | "mixed" (asymmetric activations)
    fast_bias_correction: bool = True  # False: the slower, more exact bias correction
    model_type: str = ""  # "" | "transformer" (NNCF's special handling of attention blocks)
    ignored_names: tuple[str, ...] = ()  # layers (node names) to keep in floating point
    ignored_patterns: tuple[str, ...] = ()  # regular expressions over node names, likewise
    max_drop: float = 0.01  # "accuracy": the top-1 drop allowed (absolute: a fraction; relative: a share)
    drop_type: str = "absolute"  # "absolute" | "relative"
    metric: str = "accuracy"  # "accuracy" (top-1) | "macro_f1": the score whose drop is bounded and reported
    seed: int = 0  # the calibration shuffle


@dataclass(frozen=True)
class QuantizeData:
    calibration: list  # image files (a text model: rows {"text", "text_pair"}), the dataset's train split
    validation: list  # likewise, the dataset's val split (none for unlabelled data)
    labels: list[int]  # the model's output index for each validation image
    classes: int | None  # the model's number of outputs; None: unlabelled calibration images, nothing scored
    output: int = 0  # which of the model's outputs holds the class scores

    @property
    def labelled(self) -> bool:
        return self.classes is not None


@dataclass
class QuantizeResult:
    folder: Path  # model.xml and model.bin, INT8
    method: str
    calibration_images: int
    fp32: Scores | None  # None: calibrated on unlabelled images, accuracy not measured
    int8: Scores | None
    drop: float | None  # fp32 − int8 in `metric` (a fraction; negative when INT8 scored higher)
    target: dict | None = None  # "accuracy": {max_drop, drop_type, met}
    restored: list[str] = field(default_factory=list)  # layers put back into floating point
    quantized_layers: int = 0  # layers that run in INT8
    log: list[str] = field(default_factory=list)  # what NNCF said, for the record
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    metric: str = "accuracy"

    def as_dict(self) -> dict:
        """As stored on the artifact: without the folder, a path inside one job's jail."""
        facts = asdict(self)
        del facts["folder"]
        for name in ("fp32", "int8"):  # the matrices are the evaluation's business; keep the figures
            if facts[name] is not None:
                facts[name]["macro_f1"] = class_report(facts[name].pop("confusion"))["macro_f1"]
        return facts


def check_config(config: QuantizeConfig) -> None:
    """A JobError naming the setting that is wrong, before anything is loaded."""
    choices = {"method": METHODS, "preset": PRESETS, "model_type": MODEL_TYPES, "drop_type": DROP_TYPES,
               "metric": METRICS}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise JobError(f"{name} is “{getattr(config, name)}”; it is one of {', '.join(a or '(none)' for a in allowed)}.")
    if config.subset_size < MIN_CALIBRATION:
        raise JobError(f"subset_size is {config.subset_size}; calibration needs at least {MIN_CALIBRATION} images.")
    if not 0 < config.max_drop < 1:
        raise JobError(f"max_drop is {config.max_drop}; it is a fraction between 0 and 1 (0.01: one point of top-1).")
    for pattern in config.ignored_patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise JobError(f"The ignored-scope pattern “{pattern}” is not a regular expression: {error}.") from None


def calibration_subset(data: QuantizeData, config: QuantizeConfig, warn: Callable[[str], None],
                       unit: str = "images") -> list:
    """The calibration images: a seeded shuffle of the train split (NNCF reads the first
    `subset_size`, so classes mix), with a warning when there are fewer than asked for."""
    files = list(data.calibration)
    if len(files) < MIN_CALIBRATION:
        raise JobError(f"The dataset's train split has {len(files)} {unit}; calibration needs at least "
                       f"{MIN_CALIBRATION} (ideally {RECOMMENDED_SUBSET}).")
    random.Random(config.seed).shuffle(files)
    wanted = config.subset_size
    if len(files) < wanted:
        warn(f"Only {len(files)} calibration {unit}: fewer than the {wanted} asked for"
             + (f" and the {RECOMMENDED_SUBSET} NNCF recommends" if wanted >= RECOMMENDED_SUBSET else "")
             + ". The INT8 ranges may be rough; check the accuracy after quantization.")
    return files[:wanted]


def counted_dataset(files: list, load: Callable[[object], object], span: Span) -> nncf.Dataset:
    """An nncf.Dataset whose transform reports progress: NNCF calls it once per calibration image (or row)."""
    done = 0

    def transform(path):
        nonlocal done
        span.raise_if_cancelled()
        done += 1
        span.progress(done / len(files))
        return load(path)

    return nncf.Dataset(files, transform)


def nncf_settings(config: QuantizeConfig) -> dict:
    """The keyword arguments nncf.quantize and quantize_with_accuracy_control share."""
    ignored = None
    if config.ignored_names or config.ignored_patterns:
        ignored = nncf.IgnoredScope(names=list(config.ignored_names), patterns=list(config.ignored_patterns))
    return {
        "preset": nncf.QuantizationPreset(config.preset),
        "fast_bias_correction": config.fast_bias_correction,
        "model_type": nncf.ModelType.TRANSFORMER if config.model_type == "transformer" else None,
        "ignored_scope": ignored,
    }


class ImageFeed:
    """What quantization feeds an image model: files cropped by its preprocessing (text.measure.TextFeed
    is the text counterpart: check, load, samples)."""
    unit = "images"

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec

    def check(self, model: ov.Model) -> None:
        shape = model.input(0).get_partial_shape()
        channels = shape[3] if self.spec.embedded else (shape[1] if shape.rank.get_length() == 4 else None)
        if shape.rank.is_dynamic or shape.rank.get_length() != 4 or (channels.is_static and channels.get_length() != 3):
            raise JobError(f"The model's input is {shape}; Vintner quantizes image classifiers that take "
                           f"3-channel images ({'[N,H,W,3]' if self.spec.embedded else '[N,3,H,W]'}).")

    def load(self, path: Path):
        return self.spec.load(path)

    def samples(self, paths: list[Path], labels: list[int], span: Span) -> Pictures:
        return Pictures(paths, labels, self.spec, span)


def quantize_ir(*, source: Path, data: QuantizeData, spec: InputSpec | None, config: QuantizeConfig, out: Path,
                span: Span, feed=None) -> QuantizeResult:
    """Quantize the IR at `source` (model.xml) into `out`; see the module docstring.

    Run accuracy control only in a process that ends with the job (the jail's child does): NNCF
    makes and drops OpenVINO Cores out of order, and each Core's CPU plugin, when it goes, puts
    back the thread's alternate signal stack it found, even one another Core has unmapped since;
    the next signal the thread handles then kills the process with SIGSEGV."""
    check_config(config)
    if config.method == "accuracy" and not data.labelled:
        raise JobError("Accuracy control scores the model on labelled validation images; these calibration images "
                       "have no labels. Use plain post-training quantization, or a labelled dataset.")
    return _Run(data, feed or ImageFeed(spec), config, span).go(source, Path(out))


class _Run:
    def __init__(self, data: QuantizeData, feed, config: QuantizeConfig, span: Span) -> None:
        self.data, self.feed, self.config, self.span = data, feed, config, span
        self.unit = feed.unit
        self.reporter = span.reporter
        self.warnings: list[str] = []
        self.seconds: dict[str, float] = {}
        self.nncf_log: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.reporter.log(message, level="warning")

    def go(self, source: Path, out: Path) -> QuantizeResult:
        config, reporter, span = self.config, self.reporter, self.span
        measured = self.data.labelled
        reporter.stage("reading")
        with timed(self.seconds, "reading"):
            model = self.read(source)
            calibration = calibration_subset(self.data, config, self.warn, self.unit)
            validation = self.feed.samples(self.data.validation, self.data.labels, span.child(0.0, 0.1)) \
                if measured else None
        if measured:
            reporter.stage("measuring FP32")
            with timed(self.seconds, "measuring FP32"):
                fp32 = evaluate(ir_runner(model, output=self.data.output), validation, self.data.classes,
                                span.child(0.1, 0.2), unit=self.unit[:-1])
            reporter.log(f"FP32 top-1 {_pct(fp32.top1)}, top-5 {_pct(fp32.top5)}, macro-F1 "
                         f"{_pct(_macro_f1(fp32))} on {fp32.images} validation {self.unit}.")
        else:
            fp32 = None
            reporter.log("The calibration images are unlabelled: accuracy is not measured. Evaluate the INT8 "
                         "model on a labelled dataset to know it.")

        reporter.stage("quantizing")
        with timed(self.seconds, "quantizing"), self.nncf_messages():
            if config.method == "ptq":
                quantized = self.ptq(model, calibration, span.child(0.2, 0.8))
            else:
                quantized = self.with_accuracy_control(model, calibration, validation, span.child(0.2, 0.85))
        del model

        reporter.stage("saving")
        with timed(self.seconds, "saving"):
            out.mkdir(parents=True, exist_ok=True)
            try:
                ov.save_model(quantized, out / "model.xml", compress_to_fp16=False)
            except Exception as error:
                raise JobError(f"OpenVINO could not save the quantized model: {one_line(error)}") from None
            layers = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
        del quantized

        int8 = None
        if measured:
            reporter.stage("measuring INT8")
            with timed(self.seconds, "measuring INT8"):
                int8 = evaluate(ir_runner(out / "model.xml", output=self.data.output), validation, self.data.classes,
                                span.child(0.85, 1.0), unit=self.unit[:-1])
        span.progress(1.0)
        return self.result(out, len(calibration), fp32, int8, layers)

    # --- steps ------------------------------------------------------------------------------------

    def read(self, source: Path) -> ov.Model:
        try:
            model = ov.Core().read_model(str(source))
        except Exception as error:
            raise JobError(f"OpenVINO could not read the model to quantize: {one_line(error)}") from None
        if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
            raise JobError("This model is quantized already (it has FakeQuantize layers); quantize its FP32 "
                           "or FP16 source instead.")
        self.feed.check(model)
        if self.data.output >= len(model.outputs):
            raise JobError(f"The model has {len(model.outputs)} outputs; the scores were said to be output "
                           f"{self.data.output}.")
        output = model.output(self.data.output).get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in output] if output.rank.is_static else []
        outputs = score_count(dims)
        if self.data.labelled and outputs is not None:
            if outputs != self.data.classes:
                raise JobError(f"The model gives {outputs} scores per {self.unit[:-1]}, but the dataset has "
                               f"{self.data.classes} classes.")
        return model

    def ptq(self, model: ov.Model, files: list[Path], span: Span) -> ov.Model:
        self.reporter.log(f"Calibrating on {len(files)} {self.unit} ({self.config.preset} preset, "
                          f"{'fast' if self.config.fast_bias_correction else 'full'} bias correction).")
        try:
            return nncf.quantize(model, counted_dataset(files, self.feed.load, span), subset_size=len(files),
                                 **nncf_settings(self.config))
        except (JobError, Cancelled):
            raise
        except Exception as error:
            raise self.explain(error) from None

    def with_accuracy_control(self, model: ov.Model, files: list, validation, span: Span) -> ov.Model:
        config = self.config
        name = METRIC_WORDS[config.metric]
        what = (f"{100 * config.max_drop:g} points of {name}" if config.drop_type == "absolute"
                else f"{100 * config.max_drop:g} % of the FP32 {name}")
        self.reporter.log(f"Calibrating on {len(files)} {self.unit}, then restoring layers to floating point until "
                          f"the {name} drop on {len(validation)} validation {self.unit} is at most {what}.")
        calibration = counted_dataset(files, self.feed.load, span.child(0.0, 0.3))
        passes = span.child(0.3, 1.0)
        scored = 0  # validation images scored so far, over every pass: NNCF decides how many passes
        total_guess = 8 * len(validation)  # initial, quantized, ranking, a few restore steps

        def validate(compiled: ov.CompiledModel, indexes) -> float:
            nonlocal scored
            request = compiled.create_infer_request()
            classes = self.data.classes
            confusion = [[0] * classes for _ in range(classes)]
            right = seen = 0
            for index in indexes:
                if seen % 16 == 0:
                    passes.raise_if_cancelled()
                    # approaches the end of the bar however many passes NNCF takes
                    passes.progress(1 - 0.5 ** (2 * scored / total_guess))
                sample = validation.input(index)
                request.infer(sample if isinstance(sample, dict) else {0: sample})
                predicted = int(request.get_output_tensor(self.data.output).data.reshape(-1).argmax())
                label = validation.labels[index]
                right += predicted == label
                if predicted < classes:
                    confusion[label][predicted] += 1
                seen += 1
                scored += 1
            if config.metric == "macro_f1":
                return class_report(confusion)["macro_f1"] or 0.0
            return right / max(seen, 1)

        try:
            return nncf.quantize_with_accuracy_control(
                model, calibration, nncf.Dataset(range(len(validation)), validation.input), validate,
                max_drop=config.max_drop, drop_type=nncf.DropType(config.drop_type), subset_size=len(files),
                **nncf_settings(config),
            )
        except (JobError, Cancelled):
            raise
        except Exception as error:
            raise self.explain(error) from None

    def explain(self, error: Exception) -> JobError:
        text = one_line(error)
        if "ignored" in text.lower() and (self.config.ignored_names or self.config.ignored_patterns):
            return JobError(f"The ignored scope does not fit the model: {text} Use the layer names of the "
                            f"model's graph view.")
        return JobError(f"NNCF could not quantize the model: {text}")

    @contextlib.contextmanager
    def nncf_messages(self):
        """NNCF's own log lines (restore steps, drops) go to the job's log as they come."""
        reporter, kept = self.reporter, self.nncf_log

        class Forward(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                message = record.getMessage().strip()
                if message and not message.startswith("Elapsed Time"):
                    kept.append(message)
                    reporter.log(f"NNCF: {message}", level="warning" if record.levelno >= logging.WARNING else "info")

        handler = Forward(logging.INFO)
        logger = logging.getLogger("nncf")
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)

    def result(self, out: Path, calibrated: int, fp32: Scores | None, int8: Scores | None,
               layers: int) -> QuantizeResult:
        config = self.config
        target, restored = None, _restored_layers(self.nncf_log)
        if fp32 is None or int8 is None:  # unlabelled calibration: nothing scored
            drop = None
            summary = f"Calibrated on {calibrated} unlabelled images; {layers} quantized layers"
        else:
            before, after = _score(fp32, config.metric), _score(int8, config.metric)
            drop = before - after
            name = METRIC_WORDS[config.metric]
            summary = (f"FP32 {name} {_pct(before)} → INT8 {_pct(after)} ({_points(-drop)}) on {int8.images} "
                       f"validation {self.unit}; {layers} quantized layers")
        if config.method == "accuracy":
            allowed = config.max_drop if config.drop_type == "absolute" else config.max_drop * _score(fp32, config.metric)
            met = drop <= allowed + 1e-9
            target = {"max_drop": config.max_drop, "drop_type": config.drop_type, "allowed": allowed, "met": met}
            summary += f", {len(restored)} kept in floating point"
            if not met:
                self.warn(f"The accuracy target was not met: the drop is {_points(drop, sign=False)}, more than "
                          f"the {_points(allowed, sign=False)} allowed, even with {len(restored)} layers restored "
                          f"to floating point. The model is kept; try more calibration images, the mixed preset, "
                          f"or quantization-aware training.")
        self.reporter.log(summary + ".")
        return QuantizeResult(
            folder=out, method=config.method, calibration_images=calibrated, fp32=fp32, int8=int8, drop=drop,
            target=target, restored=restored, quantized_layers=layers, log=self.nncf_log, warnings=self.warnings,
            seconds=dict(self.seconds), metric=config.metric,
        )


def _restored_layers(lines: list[str]) -> list[str]:
    """Layer names NNCF reported putting back into floating point ("Reverted N operations…" and
    one tab-indented name per line)."""
    names = []
    for line in lines:
        if line.startswith("Reverted"):
            names += [part.strip() for part in line.splitlines()[1:] if part.strip()]
    return names


METRIC_WORDS = {"accuracy": "top-1", "macro_f1": "macro-F1"}


def _macro_f1(scores: Scores) -> float:
    return class_report(scores.confusion)["macro_f1"] or 0.0


def _score(scores: Scores, metric: str) -> float:
    return _macro_f1(scores) if metric == "macro_f1" else scores.top1


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def _points(fraction: float, *, sign: bool = True) -> str:
    value = round(100 * fraction, 1) or 0.0  # no "-0.0"
    return f"{value:+.1f} points" if sign else f"{value:.1f} points"
