"""Text classifiers at the pipeline level: a Hugging Face folder zipped, prepared and inspected as a
text model (BERT and DistilBERT), its ONNX export and IR recognised as text with the tokenizer
carried, the hostile folders refused in words, and conversion to an IR checked against torch."""

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch

from tests.fakes import FakeReporter
from tests.text_builders import tiny_classifier_folder
from workers.pipeline.conversion.text import TextConvertConfig, convert_text
from workers.pipeline.formats import InspectConfig, Prepared, inspect_model, prepare_model
from workers.pipeline.reporting import JobError, Span

LABELS = ["sport", "weather", "food"]


def zipped(folder: Path, path: Path, *, top: str = "model", skip: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file() and file.name not in skip:
                archive.write(file, f"{top}/{file.relative_to(folder).as_posix()}")
    return path


def prepared(zip_path: Path, out: Path) -> Prepared:
    return prepare_model([(zip_path, zip_path.name)], out, Span(FakeReporter(), 0.0, 1.0))


def inspected(folder: Prepared):
    return inspect_model(folder, InspectConfig(), Span(FakeReporter(), 0.0, 1.0))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text-models")
    return {kind: tiny_classifier_folder(root / kind, LABELS, model_type=kind) for kind in ("bert", "distilbert")}


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_a_model_folder_zip_is_a_transformers_artifact_that_reads_text(folders, kind, tmp_path):
    model = prepared(zipped(folders[kind], tmp_path / "m.zip", skip=("README.md",)), tmp_path / "out")
    assert (model.format, model.primary, model.labels) == ("transformers", "config.json", LABELS)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in model.folder.iterdir()}
    inspection = inspected(model)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if kind == "bert" else [])
    assert [i.name for i in inspection.inputs] == names and {i.dtype for i in inspection.inputs} == {"i64"}
    assert inspection.outputs[0].shape == [None, 3] and inspection.scores == "logits"
    assert inspection.modality == "text" and inspection.traces and inspection.precision == "fp32"
    assert (inspection.labels, inspection.labels_source) == (LABELS, "config.json (id2label)")
    assert inspection.details["max_length"] == 64 and inspection.details["tokenizer"] == "BertTokenizer"
    assert inspection.details["architecture"] == ("BERT" if kind == "bert" else "DistilBERT")


def test_a_trainers_output_folder_is_taken_from_its_top_not_its_checkpoints(folders, tmp_path):
    folder = tmp_path / "run"
    for place in (folder, folder / "checkpoint-10"):
        place.mkdir(parents=True)
        for file in folders["distilbert"].iterdir():
            (place / file.name).write_bytes(file.read_bytes())
    (folder / "training_args.bin").write_bytes(b"\x80\x02}q\x00.")  # left behind, never read
    model = prepared(zipped(folder, tmp_path / "run.zip"), tmp_path / "out")
    assert model.format == "transformers" and "training_args.bin" not in {p.name for p in model.folder.iterdir()}


def test_a_weights_only_pytorch_model_bin_is_taken(folders, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    for file in folders["bert"].iterdir():
        if file.name != "model.safetensors":
            (folder / file.name).write_bytes(file.read_bytes())
    from safetensors.torch import load_file

    torch.save(load_file(folders["bert"] / "model.safetensors"), folder / "pytorch_model.bin")
    model = prepared(zipped(folder, tmp_path / "bin.zip"), tmp_path / "out")
    assert (model.folder / "pytorch_model.bin").is_file() and inspected(model).parameters > 0


def _hostile(folders: Path, tmp_path: Path, case: str) -> Path:
    folder = tmp_path / case
    folder.mkdir()
    for file in folders.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    if case == "auto_map":
        config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    elif case == "unknown":
        config["model_type"] = "evilformer"
    elif case == "no_weights":
        (folder / "model.safetensors").unlink()
    elif case == "no_tokenizer":
        for name in ("tokenizer.json", "vocab.txt"):
            (folder / name).unlink(missing_ok=True)
    elif case == "pickle":
        (folder / "model.safetensors").unlink()

        class Evil:
            def __reduce__(self):
                import os
                return os.system, ("touch /tmp/pwned",)

        (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": Evil()}, protocol=2))
    (folder / "config.json").write_text(json.dumps(config))
    return zipped(folder, tmp_path / f"{case}.zip")


@pytest.mark.parametrize("case, words", [
    ("auto_map", "asks for its own code (auto_map); Vintner never runs a model's own Python code"),
    ("unknown", "The model is a “evilformer”, which Vintner does not train or convert"),
    ("no_weights", "holds a config.json but no weights"),
    ("no_tokenizer", "holds no tokenizer"),
    ("pickle", "contains Python code (posix.system)"),
])
def test_hostile_model_folders_are_refused_in_words(folders, tmp_path, case, words):
    with pytest.raises(JobError) as refused:
        prepared(_hostile(folders["bert"], tmp_path, case), tmp_path / "out")
    assert words in str(refused.value)
    assert not Path("/tmp/pwned").exists()


def test_a_zip_with_neither_model_nor_folder_says_what_it_takes(tmp_path):
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    with pytest.raises(JobError, match="one Hugging Face model folder"):
        prepared(tmp_path / "notes.zip", tmp_path / "out")


def test_an_onnx_export_with_its_tokenizer_reads_text_and_converts(folders, tmp_path):
    from workers.pipeline.text.models import load_classifier

    module, tokenizer = load_classifier(folders["bert"])
    batch = tokenizer(["the match", "rain and snow today"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    export = tmp_path / "export"
    export.mkdir()
    torch.onnx.export(module, tuple(batch[n] for n in names), str(export / "model.onnx"), dynamo=False, opset_version=17,
                      input_names=names, output_names=["logits"],
                      dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}})
    for file in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        (export / file).write_bytes((folders["bert"] / file).read_bytes())
    model = prepared(zipped(export, tmp_path / "onnx.zip"), tmp_path / "out")
    assert model.format == "onnx" and (model.folder / "tokenizer" / "tokenizer.json").is_file()
    inspection = inspected(model)
    assert inspection.modality == "text" and inspection.labels == LABELS
    assert inspection.details["max_length"] == 64 and inspection.details["tokenizer"] == "BertTokenizer"
    result = convert_text(model, TextConvertConfig(labels=tuple(LABELS)), tmp_path / "ir", Span(FakeReporter(), 0, 1))
    assert result.route == "onnx" and result.equivalence.within_tolerance
    assert result.equivalence.reference == "onnxruntime's run of the ONNX model"


def test_a_bert_converts_to_a_dynamic_ir_with_its_tokenizer_beside_it_and_in_openvino(folders, tmp_path):
    model = prepared(zipped(folders["bert"], tmp_path / "m.zip"), tmp_path / "src")
    reporter = FakeReporter()
    result = convert_text(model, TextConvertConfig(labels=("Sport", "Weather", "Food"), tokenizer_ir=True, samples=5),
                          tmp_path / "ir", Span(reporter, 0, 1))
    equivalence = result.equivalence
    assert equivalence.within_tolerance and equivalence.max_abs_diff <= 1e-4 and equivalence.top1_agreement == 1.0
    assert equivalence.source == "generated" and [s[0] for s in equivalence.shapes] == [1, 4]  # two batch sizes
    assert [i.shape for i in result.inputs] == [[None, None]] * 3 and result.outputs[0].shape == [None, 3]
    assert result.text["tokenizer_check"] == {"sentences": 5, "same_ids": 5}
    ir = tmp_path / "ir"
    assert {"model.xml", "model.bin", "openvino_tokenizer.xml", "openvino_tokenizer.bin"} <= {p.name for p in ir.iterdir()}
    config = json.loads((ir / "tokenizer" / "config.json").read_text())
    assert config["id2label"] == {"0": "Sport", "1": "Weather", "2": "Food"}  # the model's labels, as a person set them
    # usable alone: the IR's own tokenizer and the IR give the source's scores for a sentence
    from transformers import AutoTokenizer

    from workers.pipeline.text.models import load_classifier

    tokenizer = AutoTokenizer.from_pretrained(ir / "tokenizer", local_files_only=True)
    feed = tokenizer(["a storm in the league"], return_tensors="np")
    got = ov.Core().compile_model(ir / "model.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(dict(feed))[0]
    module, _ = load_classifier(folders["bert"])
    with torch.no_grad():
        wanted = module(**tokenizer(["a storm in the league"], return_tensors="pt")).logits.numpy()
    assert np.abs(got - wanted).max() < 1e-4
    # uploaded again as a zip (as its download holds it), it is a text IR with its tokenizer and tokenizer IR
    again = prepared(zipped(ir, tmp_path / "ir.zip", top="download"), tmp_path / "again")
    assert again.format == "openvino_ir" and (again.folder / "tokenizer" / "tokenizer.json").is_file()
    assert (again.folder / "openvino_tokenizer.xml").is_file() and (again.folder / "openvino_tokenizer.bin").is_file()
    inspection = inspected(again)
    assert inspection.modality == "text" and inspection.labels == ["Sport", "Weather", "Food"]
    assert inspection.details["max_length"] == 64
    # a tokenizer IR carried beside it is untrusted XML too: checked as model.xml is, before OpenVINO reads it
    (ir / "openvino_tokenizer.xml").write_text('<?xml version="1.0"?><!DOCTYPE net [<!ENTITY x "y">]><net>&x;</net>')
    with pytest.raises(JobError, match="openvino_tokenizer.xml\\) is refused: model.xml contains a DOCTYPE"):
        inspected(prepared(zipped(ir, tmp_path / "bad.zip"), tmp_path / "bad"))


def test_a_distilbert_converts_via_onnx_static_fp16_on_dataset_rows_and_says_what_differed(folders, tmp_path):
    model = prepared(zipped(folders["distilbert"], tmp_path / "m.zip"), tmp_path / "src")
    rows = [("the coach and the striker", None), ("a humid forecast", None), ("bread and cheese soup", None)]
    reporter = FakeReporter()
    result = convert_text(model, TextConvertConfig(batch=2, sequence_length=16, precision="fp16", tolerance=1e-12,
                                                   labels=tuple(LABELS), route="onnx"), tmp_path / "ir",
                          Span(reporter, 0, 1), rows=rows)
    equivalence = result.equivalence
    assert result.route == "onnx" and "exported to ONNX" in result.route_reason
    assert [i.shape for i in result.inputs] == [[2, 16], [2, 16]] and result.precision == "fp16"
    assert equivalence.source == "dataset" and equivalence.shapes == [[2, 16], [2, 16]]
    assert not equivalence.within_tolerance  # FP16 weights differ beyond an impossible tolerance: flagged, not refused
    assert "The largest difference in the logits" in equivalence.worst and "sentence" in equivalence.worst
    assert any("differs from its source beyond the tolerance" in message for level, message in reporter.logs
               if level == "warning")


def test_a_sequence_longer_than_the_model_takes_is_refused(folders, tmp_path):
    model = prepared(zipped(folders["bert"], tmp_path / "m.zip"), tmp_path / "src")
    with pytest.raises(JobError, match="takes at most 64 tokens; a sequence length of 128"):
        convert_text(model, TextConvertConfig(sequence_length=128), tmp_path / "ir", Span(FakeReporter(), 0, 1))
