"""A text classifier (a Hugging Face transformers folder, or an ONNX export of one with its tokenizer)
becomes an OpenVINO IR, checked against its source on real sentences. No Django, no Celery.

`ov.convert_model` traces the PyTorch model on a dict `example_input` (input_ids, attention_mask and
token_type_ids where the model takes it) and is told each input's shape with `input=`: [?, ?] by
default, or a chosen static batch and/or sequence length; the "onnx" route exports the module with
torch's exporter first and converts that. FP16 compresses the weights as for images.

The IR artifact is usable alone (docs/architecture.md, "Text models"):
    model.xml, model.bin               the classifier: token-id inputs (i64) [batch, sequence] → logits
    tokenizer/                         config.json (id2label: the model's labels) and the tokenizer files
    openvino_tokenizer.xml, .bin       optional: strings → the token-id inputs, by openvino_tokenizers

Equivalence: the IR (compiled at FP32 inference precision) and the source (the PyTorch model, or
onnxruntime for an ONNX source) run the same tokenized sentences — a dataset's rows where given,
else sentences of the tokenizer's own words — at every shape the choice allows (dynamic batch: one
sentence alone, then the rest together; dynamic sequence: each batch padded to its longest).
"""

import json
import math
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov

from workers.pipeline.conversion.config import StagedSteps, DEFAULT_TOLERANCE, PRECISIONS, ROUTES, ConversionResult, Equivalence
from workers.pipeline.conversion.equivalence import Diffs, read_ir, summary
from workers.pipeline.formats.common import Prepared, one_line
from workers.pipeline.formats.openvino_ir import port_info
from workers.pipeline.formats.text_folders import CARRIED, TOKENIZER_FOLDER, vocabulary_sentences
from workers.pipeline.reporting import JobError, Span, timed
from workers.pipeline.text.models import TEXT_INPUTS, load_classifier, load_tokenizer, max_length, model_inputs, read_config

STAGES = {"loading": 0.0, "converting": 0.25, "saving": 0.65, "tokenizer": 0.72, "verifying": 0.8}
MAX_STATIC = 9999  # params.DIMENSION


@dataclass(frozen=True)
class TextConvertConfig:
    batch: int | None = None  # None: dynamic
    sequence_length: int | None = None  # None: dynamic
    precision: str = "fp32"  # "fp32" | "fp16" (FP16-compressed weights)
    tolerance: float | None = None  # max |difference| of the logits; None: 1e-4 FP32, 1e-2 FP16
    samples: int = 4  # sentences the check runs
    tokenizer_ir: bool = False  # also the tokenizer as an IR of its own (openvino_tokenizers)
    labels: tuple[str, ...] = ()  # the model's labels, written into the IR and tokenizer/config.json
    route: str = "auto"  # "auto" | "direct": ov.convert_model on the module; "onnx": torch.onnx.export first
    opset: int = 17  # for the ONNX route


def convert_text(prepared: Prepared, config: TextConvertConfig, out: Path, span: Span, *,
                 rows: list[tuple[str, str | None]] | None = None) -> ConversionResult:
    """Convert the text classifier in `prepared` to an IR in `out` and check it against its source
    on `rows` (text, text_pair), else on sentences of its tokenizer's vocabulary."""
    _check(config)
    return _TextJob(prepared, config, out, span).run(rows)


def _check(config: TextConvertConfig) -> None:
    for what, value in (("batch", config.batch), ("sequence length", config.sequence_length)):
        if value is not None and not (isinstance(value, int) and 1 <= value <= MAX_STATIC):
            raise JobError(f"The {what} must be “dynamic” or a whole number from 1 to {MAX_STATIC}; got {value!r}.")
    if config.route not in ROUTES:
        raise JobError(f"Unknown conversion route “{config.route}”; it is one of {', '.join(ROUTES)}.")
    if config.precision not in PRECISIONS:
        raise JobError(f"Unknown precision “{config.precision}”; it is fp32 or fp16.")
    if not isinstance(config.samples, int) or not 1 <= config.samples <= 256:
        raise JobError(f"The number of sentences to check must be from 1 to 256; got {config.samples!r}.")
    if config.tolerance is not None and not (isinstance(config.tolerance, (int, float))
                                             and math.isfinite(config.tolerance) and config.tolerance > 0):
        raise JobError(f"The tolerance must be a positive number; got {config.tolerance!r}.")


class _TextJob(StagedSteps):
    stages = STAGES

    def __init__(self, prepared: Prepared, config: TextConvertConfig, out: Path, span: Span) -> None:
        self.prepared, self.config, self.out, self.span = prepared, config, out, span
        self.reporter = span.reporter
        self.seconds: dict[str, float] = {}
        self.warnings: list[str] = []
        self.fraction = 0.0
        self.module = None  # the PyTorch model (transformers source)
        self.session = None  # onnxruntime's (ONNX source)
        self.names: list[str] = []
        self.tokenizer_source = prepared.folder if prepared.format == "transformers" else prepared.folder / TOKENIZER_FOLDER

    def run(self, rows: list[tuple[str, str | None]] | None) -> ConversionResult:
        config = self.config
        self.stage("loading")
        with timed(self.seconds, "loading"):
            self.load()
        sentences, source = (rows[:config.samples], "dataset") if rows else (
            [(text, None) for text in vocabulary_sentences(self.tokenizer, config.samples)], "generated")
        batches = self.batches(sentences)
        self.stage("converting")
        with timed(self.seconds, "converting"), tempfile.TemporaryDirectory(prefix="vintner-export-") as tmp:
            model = self.convert(batches[0][1], Path(tmp))
        self.stage("saving")
        with timed(self.seconds, "saving"):
            self.save(model)
            del model
            self.carry_tokenizer()
        tokenizer_check = None
        if config.tokenizer_ir:
            self.stage("tokenizer")
            with timed(self.seconds, "tokenizer"):
                tokenizer_check = self.tokenizer_ir([text for text, _ in sentences], [p for _, p in sentences])
        self.stage("verifying")
        with timed(self.seconds, "verifying"):
            inputs, outputs, equivalence = self.verify(batches, source)
        self.progress(1.0)
        self.reporter.log(f"Converted the text classifier to an OpenVINO IR (batch {_dim(config.batch)}, sequence "
                          f"{_dim(config.sequence_length)}, {config.precision.upper()}) in "
                          f"{sum(self.seconds.values()):.1f} s.")
        shape = "static" if config.batch and config.sequence_length else (
            "dynamic" if not config.batch and not config.sequence_length else "mixed")
        return ConversionResult(
            route="onnx" if self.prepared.format == "onnx" or config.route == "onnx" else "direct",
            route_reason=("the source is ONNX: OpenVINO's ONNX frontend converted it" if self.prepared.format == "onnx"
                          else "exported to ONNX with torch's exporter, as chosen" if config.route == "onnx"
                          else "direct conversion of the transformers model (a dict example input)"),
            folder=self.out, inputs=inputs, outputs=outputs, equivalence=equivalence, precision=config.precision,
            shape=shape, warnings=self.warnings, seconds=dict(self.seconds),
            text={"inputs": self.names, "batch": config.batch, "sequence_length": config.sequence_length,
                  "max_length": self.longest, "tokenizer": TOKENIZER_FOLDER + "/",
                  "tokenizer_ir": "openvino_tokenizer.xml" if config.tokenizer_ir else None,
                  **({"tokenizer_check": tokenizer_check} if tokenizer_check else {})},
        )

    # --- the source ----------------------------------------------------------------------------------

    def load(self) -> None:
        if self.prepared.format == "transformers":
            self.settings = read_config(self.prepared.folder)
            self.reporter.log("Loading the transformers model and its tokenizer.")
            self.module, self.tokenizer = load_classifier(self.prepared.folder)
            self.names = model_inputs(self.module, self.tokenizer)
        elif self.prepared.format == "onnx":
            if not (self.tokenizer_source.is_dir()):
                raise JobError("This ONNX text model came without its tokenizer, so it cannot be checked on "
                               "sentences: upload a zip holding the .onnx and the tokenizer files "
                               "(tokenizer.save_pretrained into the same folder).")
            config = self.tokenizer_source / "config.json"
            self.settings = json.loads(config.read_text("utf-8")) if config.is_file() else {}
            self.tokenizer = load_tokenizer(self.tokenizer_source)
            self.session = _onnx_session(self.prepared.folder / self.prepared.primary)
            self.names = [i.name for i in self.session.get_inputs()]
            if not set(self.names) <= set(TEXT_INPUTS):
                raise JobError(f"The ONNX model's inputs are {', '.join(self.names)}; a text classifier takes "
                               f"{', '.join(TEXT_INPUTS)}.")
        else:
            raise JobError(f"Vintner converts text classifiers from a transformers folder or ONNX, not "
                           f"“{self.prepared.format}”.")
        self.longest = max_length(self.settings if isinstance(self.settings, dict) else {}, self.tokenizer)
        wanted = self.config.sequence_length
        if wanted and self.longest and wanted > self.longest:
            raise JobError(f"The model takes at most {self.longest} tokens; a sequence length of {wanted} was asked "
                           "for. Choose a length up to that, or dynamic.")

    def batches(self, sentences: list[tuple[str, str | None]]) -> list[tuple[list[int], dict]]:
        """The check's sentences in the batches the IR runs, each tokenized: (row numbers, inputs)."""
        batch = self.config.batch
        indexes = list(range(len(sentences)))
        if batch:  # every run holds `batch` rows; a short last one is filled with the first rows again
            groups = [indexes[i:i + batch] for i in range(0, len(indexes), batch)]
            groups[-1] = (groups[-1] + indexes * batch)[:batch]
        else:  # one alone, the rest together: two batch sizes
            groups = [indexes[:1], indexes[1:] or indexes[:1] * 2]
        return [(group, self.encode([sentences[i] for i in group])) for group in groups]

    def encode(self, sentences: list[tuple[str, str | None]]) -> dict:
        texts, pairs = [t for t, _ in sentences], [p for _, p in sentences]
        length = self.config.sequence_length
        options = ({"padding": "max_length", "max_length": length} if length
                   else {"padding": "longest", "max_length": self.longest})
        encoded = self.tokenizer(texts, pairs if any(p is not None for p in pairs) else None, truncation=True,
                                 return_tensors="np", **options)
        return {name: np.asarray(encoded[name], dtype=np.int64) for name in self.names}

    def expected(self, feed: dict) -> list[np.ndarray]:
        if self.session is not None:
            return [np.asarray(o) for o in self.session.run(None, feed)]
        import torch

        with torch.no_grad():
            return [self.module(**{name: torch.from_numpy(value) for name, value in feed.items()}).logits.numpy()]

    # --- converting and saving -----------------------------------------------------------------------

    def convert(self, example: dict, tmp: Path) -> ov.Model:
        shape = ov.PartialShape([self.config.batch or -1, self.config.sequence_length or -1])
        self.reporter.log(f"Converting with inputs {', '.join(self.names)} at [{_dim(self.config.batch)}, "
                          f"{_dim(self.config.sequence_length)}].")
        try:
            if self.session is not None:
                return ov.convert_model(str(self.prepared.folder / self.prepared.primary),
                                        input={name: shape for name in self.names})
            if self.config.route == "onnx":
                return ov.convert_model(str(self.export_onnx(example, tmp / "model.onnx")),
                                        input={name: shape for name in self.names})
            import torch

            # the tracer's notes on transformers' shape checks are expected: the check below covers them
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return ov.convert_model(self.module, example_input={k: torch.from_numpy(v) for k, v in example.items()},
                                        input=[(shape, ov.Type.i64)] * len(self.names))
        except Exception as error:
            raise JobError(f"OpenVINO could not convert the text classifier: {one_line(error)}") from None

    def export_onnx(self, example: dict, path: Path) -> Path:
        """The module exported to ONNX (torch's TorchScript-based exporter, which writes the opset
        asked for), dynamic where the IR is to be."""
        import torch

        axes = {**({0: "batch"} if not self.config.batch else {}),
                **({1: "sequence"} if not self.config.sequence_length else {})}
        self.reporter.log(f"Exporting to ONNX first (opset {self.config.opset}).")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(self.module, tuple(torch.from_numpy(example[n]) for n in self.names), str(path),
                              dynamo=False, opset_version=self.config.opset, input_names=self.names,
                              output_names=["logits"],
                              dynamic_axes={**{n: axes for n in self.names}, "logits": {0: "batch"} if 0 in axes else {}}
                              if axes else None)
        return path

    def save(self, model: ov.Model) -> None:
        config = self.config
        for port, name in zip(model.inputs, self.names):
            port.get_tensor().set_names({name})
        model.output(0).get_tensor().set_names({"logits"})
        model.set_rt_info("onnx" if self.session is not None or self.config.route == "onnx" else "direct",
                          ["vintner", "route"])
        model.set_rt_info(config.precision, ["vintner", "precision"])
        model.set_rt_info("text", ["vintner", "modality"])
        if config.labels:  # as JSON: a label may hold spaces (formats.labels reads a JSON list)
            model.set_rt_info(json.dumps(list(config.labels)), ["model_info", "labels"])
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            ov.save_model(model, self.out / "model.xml", compress_to_fp16=config.precision == "fp16")
        except Exception as error:
            raise JobError(f"OpenVINO could not save the converted model: {one_line(error)}") from None
        self.reporter.log(f"Saved model.xml and model.bin ({'FP16-compressed' if config.precision == 'fp16' else 'FP32'}"
                          " weights).")

    def carry_tokenizer(self) -> None:
        """The tokenizer files and config.json beside the IR, the config's labels the model's."""
        target = self.out / TOKENIZER_FOLDER
        target.mkdir(parents=True, exist_ok=True)
        for name in CARRIED:
            if (self.tokenizer_source / name).is_file():
                shutil.copyfile(self.tokenizer_source / name, target / name)
        settings = dict(self.settings) if isinstance(self.settings, dict) else {}
        if self.config.labels:
            settings["id2label"] = {str(i): name for i, name in enumerate(self.config.labels)}
            settings["label2id"] = {name: i for i, name in enumerate(self.config.labels)}
        (target / "config.json").write_text(json.dumps(settings, indent=2, ensure_ascii=False), encoding="utf-8")
        self.reporter.log(f"Copied the tokenizer beside the IR ({TOKENIZER_FOLDER}/).")

    def tokenizer_ir(self, texts: list[str], pairs: list[str | None]) -> dict:
        """The tokenizer as an IR of its own (strings in, the classifier's inputs out), checked to
        give the token ids the Hugging Face tokenizer gives on the check's sentences."""
        try:
            import openvino_tokenizers  # registers its operations with OpenVINO
            tokenizer_model = openvino_tokenizers.convert_tokenizer(self.tokenizer)
            ov.save_model(tokenizer_model, self.out / "openvino_tokenizer.xml")
            compiled = ov.Core().compile_model(self.out / "openvino_tokenizer.xml", "CPU")
        except Exception as error:
            raise JobError(f"openvino-tokenizers could not convert the model's tokenizer "
                           f"({type(self.tokenizer).__name__}): {one_line(error)}. Convert without "
                           "“tokenizer in OpenVINO”: the tokenizer files travel with the IR either way.") from None
        if any(p is not None for p in pairs):
            self.warn("The tokenizer IR takes one text per row; the check ran it on the first texts of the pairs only.")
        agree = 0
        for text in texts:
            result = compiled([text])
            ov_ids = [int(v) for v in result["input_ids"][0]]
            mask = result["attention_mask"][0] if "attention_mask" in {o.get_any_name() for o in compiled.outputs} else None
            if mask is not None:
                ov_ids = [v for v, m in zip(ov_ids, mask) if m]
            agree += ov_ids == self.tokenizer(text, truncation=True, max_length=self.longest)["input_ids"]
        check = {"sentences": len(texts), "same_ids": agree}
        message = (f"The tokenizer IR (openvino_tokenizer.xml) gives the same token ids as the Hugging Face tokenizer "
                   f"on {agree} of {len(texts)} sentences.")
        (self.reporter.log(message) if agree == len(texts) else self.warn(message))
        return check

    # --- the check -----------------------------------------------------------------------------------

    def verify(self, batches: list[tuple[list[int], dict]], source: str):
        config = self.config
        model, compiled = read_ir(self.out / "model.xml")
        inputs = [port_info(port, f"input{i}") for i, port in enumerate(model.inputs)]
        outputs = [port_info(port, f"output{i}") for i, port in enumerate(model.outputs)]
        reference = ("onnxruntime's run of the ONNX model" if self.session is not None
                     else "the PyTorch transformers model")
        self.reporter.log(f"Checking the IR against {reference} on {sum(len(g) for g, _ in batches)} "
                          f"{'dataset rows' if source == 'dataset' else 'sentences of its vocabulary'}.")
        diffs, shapes, worst, disagree = Diffs(), [], (0.0, -1), []
        request = compiled.create_infer_request()
        for group, feed in batches:
            shapes.append(list(feed[self.names[0]].shape))
            try:
                request.infer(feed)
            except Exception as error:
                raise JobError(f"The converted model fails on inputs of shape {shapes[-1]}: {one_line(error)}") from None
            got = [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]
            wanted = self.expected(feed)
            diffs.add(got[:1], wanted[:1])
            if got[0].shape == wanted[0].shape:
                per_row = np.abs(got[0].astype(np.float64) - wanted[0]).reshape(len(group), -1).max(1)
                if per_row.max(initial=0.0) > worst[0]:
                    worst = (float(per_row.max()), group[int(per_row.argmax())])
                for row, a, b in zip(group, got[0].argmax(-1), wanted[0].argmax(-1)):
                    if a != b:
                        disagree.append((row, int(b), int(a)))
        tolerance = config.tolerance if config.tolerance is not None else DEFAULT_TOLERANCE[config.precision]
        equivalence = Equivalence(
            samples=sum(len(g) for g, _ in batches), max_abs_diff=diffs.max, mean_abs_diff=diffs.mean,
            top1_agreement=diffs.agreement, tolerance=tolerance, within_tolerance=diffs.max <= tolerance,
            source=source, reference=reference, shapes=shapes,
            worst=self.where(worst, disagree, batches),
        )
        if equivalence.within_tolerance:
            self.reporter.log(f"The IR matches its source: {summary(equivalence)}.")
        else:
            self.warn(f"The IR differs from its source beyond the tolerance: {summary(equivalence)}. {equivalence.worst}")
        return inputs, outputs, equivalence

    def where(self, worst: tuple[float, int], disagree: list[tuple[int, int, int]], batches) -> str:
        """What differed most, in words: the row, its text, and the labels each side picked."""
        texts = {}
        for group, feed in batches:
            for position, row in enumerate(group):
                texts.setdefault(row, self.tokenizer.decode(feed["input_ids"][position], skip_special_tokens=True))
        label = (lambda i: self.config.labels[i] if i < len(self.config.labels) else f"class {i}")
        said = ""
        if worst[1] >= 0:
            said = (f"The largest difference in the logits, {worst[0]:.3g}, is on sentence {worst[1] + 1} "
                    f"(“{texts.get(worst[1], '')[:80]}”).")
        if disagree:
            row, torch_pick, ir_pick = disagree[0]
            said += (f" The IR picks another label than its source on {len(disagree)} sentence"
                     f"{'s' if len(disagree) > 1 else ''}: on sentence {row + 1} the source says “{label(torch_pick)}”, "
                     f"the IR “{label(ir_pick)}”.")
        return said.strip()


def _onnx_session(path: Path):
    import os

    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, len(os.sched_getaffinity(0)))
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise JobError(f"onnxruntime could not load the ONNX model to compare the IR with it: {one_line(error)}") from None


def _dim(value: int | None) -> str:
    return "dynamic" if value is None else str(value)
