"""The quantization pipeline on a tiny real model with real NNCF and OpenVINO: post-training and
accuracy-controlled INT8, embedded preprocessing, progress, cancel, and the refusals."""

import ctypes
from dataclasses import asdict
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch
from PIL import Image

from tests.fakes import FakeReporter
from tests.model_builders import SIZE, tiny_net
from workers.jail import Jail, run_jailed
from workers.pipeline.augment import val_transform
from workers.pipeline.evaluation import EXACT, Pictures, Scores, evaluate
from workers.pipeline.feeding import InputSpec
from workers.pipeline.quantization import ImageFeed, QuantizeConfig, QuantizeData, _Run, quantize_ir
from workers.pipeline.reporting import Cancelled, JobError, Span

PREPROCESSING = {"input_size": [SIZE, SIZE], "color": "RGB", "mean": [0.5], "std": [0.25]}
SPEC = InputSpec.of(PREPROCESSING)


@pytest.fixture(scope="module")
def noise(tmp_path_factory) -> list[Path]:
    """Noise images: 40 to calibrate on, 200 to score, where the tiny net's margins are thin enough
    that INT8 flips some predictions."""
    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(1)
    files = []
    for index in range(240):
        files.append(folder / f"{index}.png")
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(files[-1])
    return files


@pytest.fixture(scope="module")
def fp32_ir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fp32") / "model.xml"
    model = ov.convert_model(tiny_net(), example_input=torch.randn(1, 3, SIZE, SIZE), input=[1, 3, SIZE, SIZE])
    ov.save_model(model, path, compress_to_fp16=False)
    return path


def own_labels(ir: Path, files: list[Path], spec: InputSpec = SPEC) -> list[int]:
    """The FP32 model's own predictions as labels: it scores 100 %, and every INT8 flip is a drop."""
    compiled = ov.Core().compile_model(str(ir), "CPU", EXACT)
    return [int(np.argmax(compiled(spec.load(path))[0])) for path in files]


def data_for(ir: Path, files: list[Path]) -> QuantizeData:
    return QuantizeData(calibration=files[:40], validation=files[40:], labels=own_labels(ir, files[40:]), classes=3)


def run(ir: Path, data: QuantizeData, out: Path, reporter=None, spec: InputSpec = SPEC, **settings):
    reporter = reporter or FakeReporter()
    result = quantize_ir(source=ir, data=data, spec=spec, config=QuantizeConfig(subset_size=40, **settings), out=out,
                         span=Span(reporter, 0.0, 1.0))
    return result, reporter


def test_post_training_int8_is_scored_before_and_after_with_calibration_progress(fp32_ir, noise, tmp_path):
    result, reporter = run(fp32_ir, data_for(fp32_ir, noise), tmp_path / "int8")
    assert result.fp32.top1 == 1.0 and result.fp32.images == 200 and result.calibration_images == 40
    assert 0.9 <= result.int8.top1 <= 1.0 and result.drop == pytest.approx(1.0 - result.int8.top1)
    assert sum(map(sum, result.int8.confusion)) == 200
    model = ov.Core().read_model(str(tmp_path / "int8" / "model.xml"))
    assert result.quantized_layers == sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops()) > 0
    assert reporter.fractions == sorted(reporter.fractions) and reporter.fractions[-1] == 1.0
    # the calibration transform's calls move the bar: one step per image within the quantizing span
    assert len({round(f, 4) for f in reporter.fractions if 0.2 < f <= 0.8}) >= 40


def controlled(ir: Path, data: QuantizeData, folder: Path, reporter=None, **settings) -> tuple[dict, FakeReporter]:
    """Accuracy control as a worker runs it: the quantize step in a jail, a process that ends with
    the job. In this process NNCF's Cores would leave the thread's signal stack pointing at unmapped
    memory, and the next signal handled here would kill it (quantization.quantize_ir says how)."""
    reporter = reporter or FakeReporter()
    config = {**asdict(QuantizeConfig(subset_size=40, method="accuracy", **settings)), "ignored_names": [],
              "ignored_patterns": []}
    request = {"model": {"format": "openvino_ir", "folder": str(ir.parent), "primary": ir.name},
               "config": config, "preprocessing": PREPROCESSING, "embedded": False, "work": str(folder / "work"),
               "data": {"calibration": [str(p) for p in data.calibration], "validation": [str(p) for p in data.validation],
                        "labels": data.labels, "classes": data.classes}}
    reads = [ir.parent, data.validation[0].parent]
    return run_jailed("quantize", request, jail=Jail(), folder=folder, reads=reads, reporter=reporter), reporter


def test_accuracy_control_puts_layers_back_into_floating_point_until_the_drop_fits(fp32_ir, noise, tmp_path):
    data = data_for(fp32_ir, noise)
    plain, _ = run(fp32_ir, data, tmp_path / "plain")
    assert plain.drop > 0, "the fixture's premise: plain INT8 flips some predictions"
    stack = signal_stack()
    result, reporter = controlled(fp32_ir, data, tmp_path / "controlled", max_drop=0.001)
    assert signal_stack() == stack
    result = result["quantization"]
    assert result["restored"], "NNCF reported no layer put back into floating point"
    assert result["target"] == {"max_drop": 0.001, "drop_type": "absolute", "allowed": 0.001, "met": True}
    assert result["drop"] <= 0.001 and result["quantized_layers"] < plain.quantized_layers
    said = [message for _, message in reporter.logs]
    assert any(message.startswith("NNCF: Reverted") for message in said)
    assert not any("Elapsed Time" in message for message in said)


def test_a_cancelled_accuracy_control_stops_its_process(fp32_ir, noise, tmp_path):
    reporter = FakeReporter(cancel_after=3)
    with pytest.raises(Cancelled):
        controlled(fp32_ir, data_for(fp32_ir, noise), tmp_path / "job", reporter)
    assert not (tmp_path / "job" / "work" / "int8" / "model.xml").exists()


class _Stack(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]


def signal_stack() -> tuple:
    """This thread's alternate signal stack: where, its flags, its size."""
    current = _Stack()
    assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(current)) == 0
    return current.sp, current.flags, current.size


def test_the_target_that_is_not_met_is_said_plainly():
    reporter = FakeReporter()
    quantizing = _Run(QuantizeData([], [], [], 3), ImageFeed(SPEC), QuantizeConfig(method="accuracy", max_drop=0.01),
                      Span(reporter, 0, 1))
    result = quantizing.result(Path("out"), 40, Scores(100, 0.9, 1.0, []), Scores(100, 0.85, 1.0, []), 5)
    assert result.target["met"] is False
    assert reporter.logs[0] == ("warning", "The accuracy target was not met: the drop is 5.0 points, more than the "
                                           "1.0 points allowed, even with 0 layers restored to floating point. The "
                                           "model is kept; try more calibration images, the mixed preset, or "
                                           "quantization-aware training.")


def test_an_ir_with_embedded_preprocessing_is_calibrated_on_u8_images(fp32_ir, noise, tmp_path):
    from openvino.preprocess import PrePostProcessor

    processor = PrePostProcessor(ov.Core().read_model(str(fp32_ir)))
    processor.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    processor.input().model().set_layout(ov.Layout("NCHW"))
    processor.input().preprocess().convert_element_type(ov.Type.f32).mean(127.5).scale(63.75)
    ov.save_model(processor.build(), tmp_path / "embedded.xml", compress_to_fp16=False)
    embedded = InputSpec(size=(SIZE, SIZE), embedded=True)
    data = data_for(fp32_ir, noise)  # labels from the float IR fed by Vintner's own normalisation
    result, _ = run(tmp_path / "embedded.xml", data, tmp_path / "int8", spec=embedded)
    assert result.fp32.top1 == 1.0 and result.int8.top1 >= 0.9


def test_cancel_during_calibration_stops_without_saving(fp32_ir, noise, tmp_path):
    with pytest.raises(Cancelled):
        run(fp32_ir, data_for(fp32_ir, noise), tmp_path / "int8", FakeReporter(cancel_after=30))
    assert not (tmp_path / "int8" / "model.xml").exists()


def test_unlabelled_images_calibrate_a_model_of_any_classes_and_nothing_is_scored(fp32_ir, noise, tmp_path):
    result, reporter = run(fp32_ir, QuantizeData(noise[:40], [], [], None), tmp_path / "int8")
    assert (result.fp32, result.int8, result.drop, result.calibration_images) == (None, None, None, 40)
    assert result.quantized_layers > 0 and (tmp_path / "int8" / "model.xml").exists()
    assert result.as_dict()["fp32"] is None and result.as_dict()["int8"] is None
    assert any("accuracy is not measured" in message for _, message in reporter.logs)
    assert reporter.fractions == sorted(reporter.fractions) and reporter.fractions[-1] == 1.0


def test_accuracy_control_refuses_unlabelled_images(fp32_ir, noise, tmp_path):
    with pytest.raises(JobError, match="Accuracy control scores the model on labelled validation images"):
        run(fp32_ir, QuantizeData(noise[:40], [], [], None), tmp_path / "int8", method="accuracy")
    assert not (tmp_path / "int8").exists()


@pytest.mark.parametrize("change, message", [
    ({"classes": 5}, "The model gives 3 scores per image, but the dataset has 5 classes."),
    ({"calibration": 5}, "The dataset's train split has 5 images; calibration needs at least 10"),
    ({"ignored_names": ("no_such_layer",)}, "The ignored scope does not fit the model"),
    ({"ignored_patterns": ("(",)}, "The ignored-scope pattern “(” is not a regular expression"),
    ({"method": "magic"}, "method is “magic”; it is one of ptq, accuracy."),
])
def test_what_cannot_work_is_refused_in_words(fp32_ir, noise, tmp_path, change, message):
    data = QuantizeData(noise[:change.pop("calibration", 40)], noise[40:60], [0] * 20, change.pop("classes", 3))
    with pytest.raises(JobError, match=message.replace("(", r"\(").replace("?", r"\?")):
        run(fp32_ir, data, tmp_path / "int8", **change)


def test_an_int8_model_is_not_quantized_again(fp32_ir, noise, tmp_path):
    data = data_for(fp32_ir, noise)
    run(fp32_ir, data, tmp_path / "int8")
    with pytest.raises(JobError, match="quantized already"):
        run(tmp_path / "int8" / "model.xml", data, tmp_path / "again")


def test_images_are_cropped_as_training_validates_them(tmp_path):
    path = tmp_path / "wide.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
    picture = SPEC.picture(path)
    trained_on = val_transform(SIZE)(Image.open(path).convert("RGB")).permute(1, 2, 0).numpy()
    assert picture.shape == trained_on.shape == (SIZE, SIZE, 3)
    assert (picture == trained_on).all()


def test_evaluation_counts_top1_top5_and_confusion(tmp_path):
    files = []
    for index in range(4):
        files.append(tmp_path / f"{index}.png")
        Image.new("RGB", (SIZE, SIZE), (index * 60, 0, 0)).save(files[-1])
    pictures = Pictures(files, [0, 1, 2, 6], SPEC)
    ranking = np.array([[9, 8, 7, 6, 5, 4, 3]], np.float32)  # always class 0, then 1, 2, …

    scores = evaluate(lambda batch: ranking, pictures, 7, Span(FakeReporter(), 0, 1))
    assert (scores.top1, scores.top5) == (0.25, 0.75)
    assert scores.confusion[1][0] == scores.confusion[6][0] == 1 and sum(map(sum, scores.confusion)) == 4
