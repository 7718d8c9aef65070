"""What a model from elsewhere says of itself, read at inspection: its class names (ONNX metadata,
IR runtime info, torchvision's categories, a labels.txt or config.json beside it), which output
holds its class scores and whether they are probabilities; and errors said whole."""

import json
import zipfile

import numpy as np
import openvino
import pytest
import torch
from PIL import Image

from tests.fakes import FakeReporter
from tests.model_builders import ColourReader, colour_onnx, tiny_net
from workers.pipeline.evaluation import Pictures, evaluate, ir_runner
from workers.pipeline.feeding import InputSpec
from workers.pipeline.formats import InspectConfig, inspect_model, prepare_model
from workers.pipeline.formats.labels import parse_labels, torchvision_labels
from workers.pipeline.formats.torch_programs import JOB_PROCESS
from workers.pipeline.outputs import score_count, scores_output
from workers.pipeline.reporting import JobError, Span, one_line

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning", "ignore::DeprecationWarning")


def inspected(sources, out, reporter=None):
    reporter = reporter or FakeReporter()
    prepared = prepare_model(sources, out, Span(reporter, 0, 1))
    return inspect_model(prepared, InspectConfig(input_size=16), Span(reporter, 0, 1))


@pytest.mark.parametrize(("text", "labels"), [
    ('["cat", "dog"]', ["cat", "dog"]),
    ('{"0": "cat", "1": "dog"}', ["cat", "dog"]),  # Hugging Face id2label
    ("{0: 'person', 1: 'bicycle'}", ["person", "bicycle"]),  # Ultralytics' names, a Python literal
    ("cat\ndog\n", ["cat", "dog"]),
    ("cat, dog", ["cat", "dog"]),
    ("cat dog", ["cat", "dog"]),  # OpenVINO Model API's model_info labels
    ('{"0": "cat", "2": "dog"}', []),  # a gap: no order to trust
    ("cat\ncat", []),
    ("__import__('os').system('true')", ["__import__('os').system('true')"]),  # text, never run
])
def test_it_reads_labels_as_exporters_write_them(text, labels):
    assert parse_labels(text) == labels


@pytest.mark.parametrize(("shape", "count"), [([1, 5], 5), ([None, 1000, 1, 1], 1000), ([7], 7),
                                              ([1, 8, 4, 4], None), ([1, None], None), ([], None)])
def test_it_counts_the_classes_of_n_c_and_n_c_1_1_outputs(shape, count):
    assert score_count(shape) == count


def test_it_picks_the_first_output_that_looks_like_class_scores():
    outputs = [{"shape": [1], "dtype": "i64"}, {"shape": [1, 8, 4, 4], "dtype": "f32"}, {"shape": [1, 5], "dtype": "f32"}]
    assert scores_output(outputs) == 2
    assert scores_output([{"shape": [1, 1], "dtype": "f32"}]) == 0


def test_an_onnx_classifier_carries_its_labels_and_softmax_n_c_1_1_scores(tmp_path):
    inspection = inspected([(colour_onnx(tmp_path / "colours.onnx"), "colours.onnx")], tmp_path / "out")
    assert inspection.outputs[0].shape == [1, 3, 1, 1]
    assert (inspection.labels, inspection.labels_source) == (ColourReader.LABELS, "the ONNX model's metadata")
    assert (inspection.scores, inspection.scores_output) == ("probabilities", 0)
    assert inspection.as_dict()["labels"] == ColourReader.LABELS


def test_an_onnx_classifier_of_plain_logits_says_logits_and_no_labels(tmp_path):
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(tiny_net(), (torch.zeros(1, 3, 16, 16),), path, dynamo=False)
    inspection = inspected([(path, "tiny.onnx")], tmp_path / "out")
    assert (inspection.scores, inspection.labels, inspection.labels_source) == ("logits", [], "")


@pytest.mark.parametrize(("name", "content", "source"), [
    ("labels.txt", "red\ngreen\nblue\n", "labels.txt in the zip"),
    ("config.json", json.dumps({"id2label": {"0": "red", "1": "green", "2": "blue"}}), "config.json (id2label) in the zip"),
])
def test_labels_beside_the_model_in_its_zip_are_read(tmp_path, name, content, source):
    onnx_path = colour_onnx(tmp_path / "colours.onnx", labels=None)
    with zipfile.ZipFile(tmp_path / "model.zip", "w") as bundle:
        bundle.write(onnx_path, "export/model.onnx")
        bundle.writestr(f"export/{name}", content)
    inspection = inspected([(tmp_path / "model.zip", "model.zip")], tmp_path / "out")
    assert (inspection.labels, inspection.labels_source) == (ColourReader.LABELS, source)


def test_labels_of_another_count_than_the_scores_are_ignored_with_a_warning(tmp_path):
    reporter = FakeReporter()
    path = colour_onnx(tmp_path / "colours.onnx", labels=["cat", "dog"])
    inspection = inspected([(path, "colours.onnx")], tmp_path / "out", reporter)
    assert inspection.labels == []
    assert ("warning", "Ignored the 2 class names in the ONNX model's metadata: the model gives 3 scores.") in reporter.logs


def test_an_ir_carries_its_labels_in_its_runtime_info(tmp_path):
    model = openvino.convert_model(ColourReader().eval(), example_input=torch.zeros(1, 3, 16, 16), input=[1, 3, 16, 16])
    model.set_rt_info("red green blue", ["model_info", "labels"])  # as OpenVINO's Model API writes them
    openvino.save_model(model, tmp_path / "model.xml")
    inspection = inspected([(tmp_path / "model.xml", "model.xml"), (tmp_path / "model.bin", "model.bin")], tmp_path / "out")
    assert (inspection.labels, inspection.labels_source) == (ColourReader.LABELS, "the IR's runtime info")
    assert inspection.scores == "probabilities" and inspection.outputs[0].shape == [1, 3, 1, 1]


def test_a_torchscript_softmax_is_told_from_logits(tmp_path, monkeypatch):
    monkeypatch.setenv(JOB_PROCESS, "1")  # loaded here, as in a job's jailed process: no second interpreter
    torch.jit.save(torch.jit.script(ColourReader().eval()), tmp_path / "soft.pt")
    torch.jit.save(torch.jit.script(tiny_net()), tmp_path / "plain.pt")
    assert inspected([(tmp_path / "soft.pt", "soft.pt")], tmp_path / "a").scores == "probabilities"
    assert inspected([(tmp_path / "plain.pt", "plain.pt")], tmp_path / "b").scores == "logits"


def test_torchvision_weights_name_their_categories_offline():
    assert torchvision_labels("resnet18", 1000)[:2] == ["tench", "goldfish"]
    assert torchvision_labels("resnet18", 3) == []  # a fine-tuned head: its classes are its own


class TwoHeads(torch.nn.Module):
    """Features first, then the class scores as [N, 3, 1, 1]: the scores are output 1."""

    def forward(self, x):
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        return torch.flatten(pooled, 1) * 0, torch.softmax(20 * pooled, dim=1)


def test_evaluation_reads_the_chosen_output_and_squeezes_n_c_1_1(tmp_path):
    model = openvino.convert_model(TwoHeads().eval(), example_input=torch.zeros(1, 3, 16, 16), input=[1, 3, 16, 16])
    paths, labels = [], []
    for index, colour in enumerate([(220, 10, 10), (10, 220, 10), (10, 10, 220)]):  # red, green, blue
        paths.append(tmp_path / f"{index}.png")
        Image.new("RGB", (16, 16), colour).save(paths[-1])
        labels.append(index)
    spec = InputSpec(size=(16, 16), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    pictures = Pictures(paths, labels, spec)
    scores = evaluate(ir_runner(model, output=1), pictures, 3, Span(FakeReporter(), 0, 1))
    assert scores.top1 == 1.0 and np.trace(scores.confusion) == 3
    features = evaluate(ir_runner(model, output=0), pictures, 3, Span(FakeReporter(), 0, 1))  # all zeros: class 0
    assert features.top1 == pytest.approx(1 / 3)
    with pytest.raises(JobError, match="has 2 outputs; the scores were said to be output 5"):
        ir_runner(model, output=5)


def test_an_openvino_error_is_said_by_its_words_not_its_source_location():
    try:
        openvino.Core().read_model("/nonexistent/model.xml")
    except Exception as error:
        text = str(error)
        assert text.startswith("Exception from src/")
        assert one_line(error) == 'ir: Could not open the file: "/nonexistent/model.xml"'
        try:
            raise JobError(f"OpenVINO could not read it: {one_line(error)}") from None
        except JobError as said:
            assert said.underlying() == text.strip()  # the whole message, for the job's details


def test_a_torchscript_interpreter_error_is_said_by_its_last_line():
    error = RuntimeError("The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript "
                         "(most recent call last):\n  File \"code/__torch__.py\", line 9\nRuntimeError: mat1 and mat2 "
                         "shapes cannot be multiplied (1x150528 and 16000x4)")
    assert one_line(error) == "RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x150528 and 16000x4)"
