"""Top-1, top-5 and a confusion matrix of a classifier on labelled images. No Django, no Celery.

A model is anything that maps a batch-1 input to class scores (`Runner`): an OpenVINO compiled
model (`ir_runner`), a PyTorch module, … Inputs come from `feeding.InputSpec`, so every format is
scored on the same crops. Accuracies are fractions in 0..1.
"""

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import openvino as ov

from workers.pipeline.feeding import InputSpec
from workers.pipeline.reporting import JobError, Span, one_line

# batch-1 input (an image tensor, or a text model's inputs by name) -> scores [1, classes], [classes] or [1, classes, 1, 1]
Runner = Callable[[np.ndarray | dict[str, np.ndarray]], np.ndarray]
EXACT = {"INFERENCE_PRECISION_HINT": "f32"}  # what runs in floating point runs in FP32, not bf16


@dataclass
class Scores:
    images: int
    top1: float
    top5: float
    confusion: list[list[int]]  # [true class][predicted class]

    def as_dict(self) -> dict:
        return asdict(self)


class Pictures:
    """Labelled images, decoded and cropped once and kept as u8 (150 KB at 224 px): quantization
    with accuracy control scores the same images many times."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], spec: InputSpec, span: Span | None = None) -> None:
        self.spec, self.labels = spec, list(labels)
        self.images: list[np.ndarray] = []
        for index, path in enumerate(paths):
            if span is not None and index % 16 == 0:
                span.raise_if_cancelled()
                span.progress(index / max(1, len(paths)))
            self.images.append(spec.picture(path))

    def __len__(self) -> int:
        return len(self.images)

    def input(self, index: int) -> np.ndarray:
        return self.spec.tensor(self.images[index])


def ir_runner(model: ov.Model | Path, *, config: dict | None = None, output: int = 0) -> Runner:
    """A compiled IR on the CPU, in FP32 where it runs in floating point (see EXACT); its scores
    are output `output` (the model's choice where it has several)."""
    compiled = ov.Core().compile_model(str(model) if isinstance(model, Path) else model, "CPU", config or EXACT)
    if not 0 <= output < len(compiled.outputs):
        raise JobError(f"The model has {len(compiled.outputs)} outputs; the scores were said to be output {output}.")
    request = compiled.create_infer_request()

    def run(batch: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        request.infer(batch if isinstance(batch, dict) else {0: batch})
        return request.get_output_tensor(output).data

    return run


def stored_model_runner(path: Path, *, output: int = 0) -> Runner:
    """`ir_runner` of an uploaded or made IR/ONNX file, a failure to load it said in words."""
    try:
        return ir_runner(path, output=output)
    except JobError:
        raise
    except Exception as error:
        raise JobError(f"OpenVINO could not load the model: {one_line(error)}") from None


def model_runner(prepared, config, *, output: int = 0) -> Runner:
    """A runner for any artifact: an IR or ONNX file through OpenVINO, a PyTorch one through torch
    (`formats.load_torch_module`: weights_only loads; TorchScript and .pt2 are code, as uploaded)."""
    from workers.pipeline.formats import load_torch_module

    path = prepared.folder / prepared.primary
    if prepared.format in ("openvino_ir", "onnx"):
        return stored_model_runner(path, output=output)
    import torch

    module = load_torch_module(prepared, config)  # in eval mode already (an exported program has no other)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            outputs = module(torch.from_numpy(batch))
        if isinstance(outputs, dict):
            outputs = list(outputs.values())
        if isinstance(outputs, (tuple, list)):
            if output >= len(outputs):
                raise JobError(f"The model gives {len(outputs)} outputs; the scores were said to be output {output}.")
            return outputs[output].numpy()
        return outputs.numpy()

    return run


def evaluate(run: Runner, pictures: Pictures, classes: int, span: Span, *, unit: str = "image") -> Scores:
    """Score every picture (or anything with `input(index)` and `labels`: text.measure.Sentences);
    progress goes to `span`, cancel is polled every 16 inputs."""
    if not len(pictures):
        raise JobError(f"There are no {unit}s to evaluate on.")
    confusion = np.zeros((classes, classes), np.int64)
    top1 = top5 = 0
    k = min(5, classes)
    for index in range(len(pictures)):
        if index % 16 == 0:
            span.raise_if_cancelled()
            span.progress(index / len(pictures))
        scores = np.asarray(run(pictures.input(index))).reshape(-1)
        if scores.size != classes:
            raise JobError(f"The model gives {scores.size} scores per {unit}; the labels name {classes} classes.")
        label = pictures.labels[index]
        best = np.argpartition(-scores, k - 1)[:k] if k < classes else np.arange(classes)
        predicted = int(np.argmax(scores))
        confusion[label, predicted] += 1
        top1 += predicted == label
        top5 += label in best
    span.progress(1.0)
    n = len(pictures)
    return Scores(images=n, top1=top1 / n, top5=top5 / n, confusion=confusion.tolist())


def class_report(confusion: list[list[int]], labels: Sequence[str] = ()) -> dict:
    """Precision, recall and F1 of each class from a confusion matrix ([true][predicted]), and their
    unweighted mean (macro-F1, every class counting the same however many rows it has). A class
    never predicted has precision 0; one with no rows is left out of the mean."""
    matrix = np.asarray(confusion, dtype=np.float64)
    if matrix.size == 0:
        return {"macro_f1": None, "per_class": []}
    right, predicted, actual = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    per_class, f1s = [], []
    for i in range(len(matrix)):
        precision = right[i] / predicted[i] if predicted[i] else 0.0
        recall = right[i] / actual[i] if actual[i] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if actual[i]:
            f1s.append(f1)
        per_class.append({"label": labels[i] if i < len(labels) else str(i), "precision": float(precision),
                          "recall": float(recall), "f1": float(f1), "support": int(actual[i])})
    return {"macro_f1": float(np.mean(f1s)) if f1s else None, "per_class": per_class}
