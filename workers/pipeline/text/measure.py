"""Text classifiers measured: rows tokenized with the model's own tokenizer into the inputs it takes
(input_ids, attention_mask, token_type_ids by name), scored by accuracy, macro-F1, per class and a
confusion matrix, and fed to NNCF for quantization. No Django; runs in the jail.

    sentences = Sentences(rows, labels, tokenizer, TextInputs.of(ov_model, tokenizer, max_length=128))
    scores = evaluate_text(text_runner(prepared), sentences, labels, span)

A model whose sequence dimension is dynamic gets each row at its own length (truncated at the
model's maximum, or `max_length`); one with a static length gets every row padded to it.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov

from workers.pipeline.evaluation import class_report, evaluate, stored_model_runner
from workers.pipeline.reporting import JobError, Span, one_line
from workers.pipeline.text.rows import TextRow

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
LONGEST = 512  # what a "no limit" tokenizer (model_max_length 1e30) is held to


@dataclass(frozen=True)
class TextInputs:
    """What a text model takes: its input names (of TEXT_INPUTS), their integer type, its fixed
    sequence length (None: dynamic) and the length rows are truncated at."""
    names: tuple[str, ...]
    dtype: type
    static_length: int | None
    max_length: int

    @classmethod
    def of(cls, model: ov.Model | None, tokenizer, *, max_length: int | None = None,
           model_max: int | None = None) -> "TextInputs":
        """From an OpenVINO model's inputs (None: a transformers model, which takes all three);
        `max_length` over the model's maximum is refused, not silently cut."""
        limit = min(int(model_max or LONGEST), int(min(tokenizer.model_max_length or LONGEST, 10**6)))
        if model is None:
            names, dtype, static = tuple(tokenizer.model_input_names), np.int64, None
        else:
            names = tuple(port.get_any_name() for port in model.inputs)
            unknown = [name for name in names if name not in TEXT_INPUTS]
            if unknown or "input_ids" not in names:
                raise JobError(f"The model's inputs are {', '.join(names)}; a text classifier takes "
                               f"{', '.join(TEXT_INPUTS[:2])} (and {TEXT_INPUTS[2]} where it has segments). An IR with "
                               "the tokenizer inside takes strings, which this job does not feed yet.")
            shape = model.input("input_ids").get_partial_shape()
            if shape.rank.is_dynamic or shape.rank.get_length() != 2:
                raise JobError(f"The model's input_ids is {shape}; a text classifier's is [batch, tokens].")
            static = shape[1].get_length() if shape[1].is_static else None
            dtype = model.input("input_ids").get_element_type().to_dtype()
            if static is not None:
                limit = static
        if max_length is not None:
            if max_length > limit:
                raise JobError(f"max_length is {max_length} tokens; this model takes at most {limit}.")
            limit = max_length
        return cls(names=names, dtype=dtype, static_length=static, max_length=limit)


class Sentences:
    """Labelled rows tokenized once, each a batch-1 dict of arrays by input name (the shape of
    evaluation.Pictures: `input(index)`, `labels`)."""

    def __init__(self, rows: list[TextRow], labels: list[int], tokenizer, inputs: TextInputs,
                 span: Span | None = None) -> None:
        self.labels, self.inputs, self.tokenizer = list(labels), inputs, tokenizer
        self.encoded: list[dict[str, np.ndarray]] = []
        self.truncated = 0  # rows longer than max_length, cut to it
        for index, row in enumerate(rows):
            if span is not None and index % 64 == 0:
                span.raise_if_cancelled()
                span.progress(index / max(1, len(rows)))
            self.encoded.append(self.encode(row))

    def encode(self, row: TextRow | dict) -> dict[str, np.ndarray]:
        text, pair = (row["text"], row.get("text_pair")) if isinstance(row, dict) else (row.text, row.text_pair)
        inputs = self.inputs
        full = self.tokenizer(text, pair, truncation=False)["input_ids"]
        self.truncated += len(full) > inputs.max_length
        encoded = self.tokenizer(text, pair, truncation=True, max_length=inputs.max_length,
                                 padding="max_length" if inputs.static_length else False, return_tensors="np")
        batch = {}
        for name in inputs.names:
            if name in encoded:
                batch[name] = encoded[name].astype(inputs.dtype)
            else:  # a tokenizer without segments for a model that has them: one segment
                batch[name] = np.zeros_like(encoded["input_ids"], dtype=inputs.dtype)
        return batch

    def __len__(self) -> int:
        return len(self.encoded)

    def input(self, index: int) -> dict[str, np.ndarray]:
        return self.encoded[index]


def text_runner(prepared, *, output: int = 0):
    """A runner for a text artifact: an IR or ONNX file through OpenVINO (FP32 where it runs in
    floating point), a transformers folder through torch (loaded as data, in the jail)."""
    path = Path(prepared.folder) / prepared.primary
    if prepared.format in ("openvino_ir", "onnx"):
        return stored_model_runner(path, output=output)
    if prepared.format != "transformers":
        raise JobError(f"A text model in the {prepared.format} format cannot be evaluated; use its transformers "
                       "folder, ONNX export or OpenVINO IR.")
    import torch

    from workers.pipeline.text.models import load_classifier

    module, _ = load_classifier(Path(prepared.folder))

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return module(**{name: torch.from_numpy(value) for name, value in batch.items()}).logits.numpy()

    return run


def model_for_inputs(prepared) -> ov.Model | None:
    """The OpenVINO model whose inputs decide the tokenizing; None for a transformers folder."""
    if prepared.format == "transformers":
        return None
    try:
        return ov.Core().read_model(str(Path(prepared.folder) / prepared.primary))
    except Exception as error:
        raise JobError(f"OpenVINO could not read the model: {one_line(error)}") from None


def model_max_length(folder: Path) -> int | None:
    """max_position_embeddings of the model's config.json, where there is one."""
    import json

    from workers.pipeline.text.models import tokenizer_folder

    try:
        config = json.loads((tokenizer_folder(folder) / "config.json").read_text(encoding="utf-8"))
        value = config.get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return value if type(value) is int and value > 0 else None


def evaluate_text(run, sentences: Sentences, labels: list[str], span: Span) -> dict:
    """Accuracy (also as `top1`, what the comparison reads), macro-F1, per-class precision, recall
    and F1, and the confusion matrix ([true][predicted])."""
    scores = evaluate(run, sentences, len(labels), span, unit="row")
    return text_facts(scores, labels)


def text_facts(scores, labels: list[str]) -> dict:
    return {"rows": scores.images, "top1": scores.top1, "accuracy": scores.top1, "confusion": scores.confusion,
            **class_report(scores.confusion, labels)}


class TextFeed:
    """What quantization feeds a text model (quantization.ImageFeed's counterpart): rows tokenized
    with its tokenizer, checked against its inputs when NNCF's model is read."""
    unit = "rows"

    def __init__(self, tokenizer, *, max_length: int | None, model_max: int | None) -> None:
        self.tokenizer, self.max_length, self.model_max = tokenizer, max_length, model_max
        self.sentences: Sentences | None = None

    def check(self, model: ov.Model) -> None:
        inputs = TextInputs.of(model, self.tokenizer, max_length=self.max_length, model_max=self.model_max)
        self.sentences = Sentences([], [], self.tokenizer, inputs)  # the encoder calibration rows go through

    def load(self, row: dict) -> dict[str, np.ndarray]:
        return self.sentences.encode(row)

    def samples(self, rows: list[dict], labels: list[int], span: Span) -> Sentences:
        return Sentences([TextRow(text=r["text"], text_pair=r.get("text_pair"), label=None, split="val")
                          for r in rows], labels, self.tokenizer, self.sentences.inputs, span)
