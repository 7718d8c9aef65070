"""Text classifiers measured on real parts: a tiny BERT converted to an OpenVINO IR, evaluated on
rows (accuracy, macro-F1, per class, confusion), quantized with NNCF (plain and accuracy-aware on
macro-F1), and benchmarked at batch × tokens; the refusals in words."""

from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from tests.fakes import FakeReporter
from tests.text_builders import tiny_classifier_folder, topic_rows
from workers.pipeline.benchmark import BenchmarkConfig, benchmark
from workers.pipeline.evaluation import class_report
from workers.pipeline.formats import Prepared
from workers.pipeline.quantization import QuantizeConfig, QuantizeData, quantize_ir
from workers.pipeline.reporting import JobError, Span
from workers.pipeline.text.measure import (Sentences, TextFeed, TextInputs, evaluate_text, model_for_inputs,
                                           text_runner)
from workers.pipeline.text.models import load_tokenizer
from workers.pipeline.text.rows import TextRow

LABELS = ["sport", "weather", "food"]


def text_ir(folder: Path, out: Path, *, static: int | None = None) -> Path:
    """The IR of the tiny classifier in `folder`, with its tokenizer files beside model.xml (the
    layout the convert job publishes): dynamic batch × tokens, or a static [1, static]."""
    import shutil

    import torch

    from workers.pipeline.text.models import load_classifier

    model, tokenizer = load_classifier(folder)
    example = dict(tokenizer(["the match was very spicy"], return_tensors="pt"))
    shape = [1, static] if static else [-1, -1]
    converted = ov.convert_model(model, example_input=example,
                                 input=[(name, shape, ov.Type.i64) for name in example])
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(converted, out / "model.xml", compress_to_fp16=False)
    for path in folder.iterdir():
        if path.name not in ("model.safetensors",):
            shutil.copyfile(path, out / path.name)
    del torch
    return out / "model.xml"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    return tiny_classifier_folder(tmp_path_factory.mktemp("bert"), LABELS)


@pytest.fixture(scope="module")
def ir(classifier, tmp_path_factory) -> Path:
    return text_ir(classifier, tmp_path_factory.mktemp("ir"))


def rows(count: int, seed: int = 0) -> list[TextRow]:
    return [TextRow(text=row["text"], label=row["label"], split="val") for row in topic_rows(count, seed=seed)]


def own_labels(xml: Path, items: list[TextRow]) -> list[int]:
    """The FP32 IR's own predictions: it scores 100 %, and any INT8 flip is a drop."""
    tokenizer = load_tokenizer(xml.parent)
    inputs = TextInputs.of(ov.Core().read_model(str(xml)), tokenizer)
    run = text_runner(Prepared("openvino_ir", xml.parent, "model.xml"))
    sentences = Sentences(items, [0] * len(items), tokenizer, inputs)
    return [int(np.argmax(run(sentences.input(i)))) for i in range(len(items))]


def test_class_report_from_a_confusion_matrix():
    report = class_report([[3, 1], [0, 0]], ["a", "b"])
    a, b = report["per_class"]
    assert (a["precision"], a["recall"], a["support"]) == (1.0, 0.75, 4)
    assert b == {"label": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["macro_f1"] == pytest.approx(2 * 0.75 / 1.75)  # b has no rows: not in the mean


def test_evaluate_ir_and_transformers_folder_agree(classifier, ir):
    items = rows(30)
    labels = [LABELS.index(row.label) for row in items]
    results = []
    for prepared in (Prepared("openvino_ir", ir.parent, "model.xml"), Prepared("transformers", classifier, "config.json")):
        tokenizer = load_tokenizer(prepared.folder)
        inputs = TextInputs.of(model_for_inputs(prepared), tokenizer, max_length=32)
        reporter = FakeReporter()
        results.append(evaluate_text(text_runner(prepared), Sentences(items, labels, tokenizer, inputs), LABELS,
                                     Span(reporter, 0.0, 1.0)))
        assert reporter.fractions[-1] == 1.0
    ir_result, torch_result = results
    assert ir_result["confusion"] == torch_result["confusion"]
    assert ir_result["rows"] == 30 and sum(map(sum, ir_result["confusion"])) == 30
    right = sum(ir_result["confusion"][i][i] for i in range(3))
    assert ir_result["accuracy"] == ir_result["top1"] == pytest.approx(right / 30)
    assert [c["label"] for c in ir_result["per_class"]] == LABELS
    assert ir_result["macro_f1"] == pytest.approx(class_report(ir_result["confusion"])["macro_f1"])


def test_static_length_pads_and_max_length_over_the_model_is_refused(classifier, tmp_path):
    xml = text_ir(classifier, tmp_path / "static", static=16)
    tokenizer = load_tokenizer(xml.parent)
    model = ov.Core().read_model(str(xml))
    inputs = TextInputs.of(model, tokenizer)
    assert inputs.static_length == 16 and inputs.max_length == 16
    sentences = Sentences(rows(3), [0, 1, 2], tokenizer, inputs)
    assert {name: value.shape for name, value in sentences.input(0).items()} == {
        "input_ids": (1, 16), "attention_mask": (1, 16), "token_type_ids": (1, 16)}
    with pytest.raises(JobError, match="at most 16"):
        TextInputs.of(model, tokenizer, max_length=64)


@pytest.mark.parametrize("method", ["ptq", "accuracy"])
def test_quantize_text_ir(ir, tmp_path, method):
    calibration, validation = rows(30, seed=1), rows(60, seed=2)
    labels = own_labels(ir, validation)
    data = QuantizeData(calibration=[{"text": r.text} for r in calibration],
                        validation=[{"text": r.text} for r in validation], labels=labels, classes=3)
    reporter = FakeReporter()
    feed = TextFeed(load_tokenizer(ir.parent), max_length=None, model_max=64)
    config = QuantizeConfig(method=method, subset_size=30, model_type="transformer", metric="macro_f1", max_drop=0.05)
    result = quantize_ir(source=ir, data=data, spec=None, config=config, out=tmp_path / "int8", span=Span(reporter, 0.0, 1.0),
                         feed=feed)
    assert result.fp32.top1 == 1.0 and result.fp32.images == 60
    assert result.quantized_layers > 0 and result.calibration_images == 30
    assert result.metric == "macro_f1"
    assert result.drop == pytest.approx(1.0 - class_report(result.int8.confusion)["macro_f1"])
    model = ov.Core().read_model(str(tmp_path / "int8" / "model.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    assert any("30 rows" in line for _, line in reporter.logs)
    assert 0 < len(reporter.fractions) and max(reporter.fractions) == 1.0
    if method == "accuracy":
        assert result.target["met"] == (result.drop <= 0.05 + 1e-9)


def test_quantize_refuses_an_image_model_fed_rows(tmp_path):
    import torch

    from tests.model_builders import SIZE, tiny_net

    xml = tmp_path / "image" / "model.xml"
    ov.save_model(ov.convert_model(tiny_net(), example_input=torch.randn(1, 3, SIZE, SIZE)), xml)
    folder = tiny_classifier_folder(tmp_path / "bert", LABELS)
    data = QuantizeData(calibration=[{"text": "a"}] * 10, validation=[], labels=[], classes=None)
    with pytest.raises(JobError, match="a text classifier takes input_ids"):
        quantize_ir(source=xml, data=data, spec=None, config=QuantizeConfig(subset_size=10), out=tmp_path / "o",
                    span=Span(FakeReporter(), 0.0, 1.0), feed=TextFeed(load_tokenizer(folder), max_length=None, model_max=None))


def test_benchmark_text_ir_at_batch_by_tokens(ir):
    reporter = FakeReporter()
    config = BenchmarkConfig(shape=[2, 24], seconds=0.6, hints=("latency",), rounds=3, layer_runs=3,
                             precisions=("f32",))
    result = benchmark(ir, config, Span(reporter, 0.0, 1.0)).as_dict()
    (latency,) = result["measurements"]
    assert result["shape"] == [2, 24] and latency["batch"] == 2 and latency["precision"] == "f32"
    assert latency["iterations"] > 0 and latency["latency_ms"]["p50"] > 0 and len(latency["rounds"]) == 3
    assert result["layers"]
    said = [line for _, line in reporter.logs if line.startswith(latency["label"])]
    assert said and " rows/s, " in said[0] and "images" not in said[0]  # the log counts rows, not images
