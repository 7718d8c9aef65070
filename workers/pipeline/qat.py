"""Quantization-aware training: NNCF's PyTorch flow, exported to an INT8 OpenVINO IR. No Django.

    result = quantization_aware_training(module, train_config, dataset_folder, data, spec, quantize_config,
                                         out, reporter, resume=..., save_checkpoint=...)

1. The FP32 module is scored on the validation images (the "before").
2. nncf.quantize inserts fake-quantize operations, their ranges set from calibration images
   (progress: calls of the nncf.Dataset transform, as for post-training quantization).
3. The quantized module is fine-tuned by the training pipeline (`training.train`, init=the
   quantized module): the same loop, curves, checkpoints and resume as any training run; QAT's
   settings differ only in their defaults (a tenth of the learning rate, light augmentation, no
   mixed precision: fake quantization runs in FP32).
4. The best epoch's weights (quantizer ranges included) go back into the quantized module, which
   OpenVINO converts: its fake-quantize operations become the IR's INT8 layers.
5. The IR is scored on the same validation images (the "after").

NNCF compiles its PyTorch quantization kernels on a worker's first use (about 20 s on 2 cores,
with a C++ compiler); later jobs find them in torch's extension cache.
"""

import contextlib
import logging
from dataclasses import replace
from pathlib import Path

import nncf
import numpy as np
import openvino as ov
import torch
from torch import nn

from workers.pipeline.architectures import defaults_for
from workers.pipeline.evaluation import Pictures, evaluate, ir_runner
from workers.pipeline.feeding import InputSpec
from workers.pipeline.formats import one_line
from workers.pipeline.quantization import (QuantizeConfig, QuantizeData, QuantizeResult, calibration_subset, check_config,
                                           counted_dataset, nncf_settings)
from workers.pipeline.reporting import Cancelled, JobError, Reporter, Span
from workers.pipeline.training import TrainConfig, TrainResult, train

LR_FACTOR = 0.1  # QAT fine-tunes: a tenth of the architecture's training learning rate


def qat_settings(config: TrainConfig) -> TrainConfig:
    """QAT's defaults on top of the user's settings."""
    lr = config.lr if config.lr is not None else defaults_for(config.architecture, config.optimizer)["lr"] * LR_FACTOR
    return replace(config, lr=lr, amp=False, pretrained=False)


def quantization_aware_training(module: nn.Module, config: TrainConfig, dataset: Path, data: QuantizeData,
                                spec: InputSpec, quantize: QuantizeConfig, out: Path, reporter: Reporter, *,
                                resume: Path | None = None, save_checkpoint=None) -> tuple[QuantizeResult, TrainResult]:
    check_config(quantize)
    if spec.embedded:
        raise JobError("Quantization-aware training needs the PyTorch model, whose input is a float tensor.")
    out = Path(out)
    bar = Span(reporter, 0.0, 1.0)
    warnings: list[str] = []

    reporter.stage("measuring FP32")
    module = module.eval()
    validation = Pictures(data.validation, data.labels, spec, bar.child(0.0, 0.02))
    fp32 = evaluate(_torch_runner(module), validation, data.classes, bar.child(0.02, 0.05))
    reporter.log(f"FP32 top-1 {100 * fp32.top1:.1f} %, top-5 {100 * fp32.top5:.1f} % on {fp32.images} validation images.")

    reporter.stage("calibrating")
    def warn(message: str) -> None:
        warnings.append(message)
        reporter.log(message, level="warning")

    files = calibration_subset(data, quantize, warn)
    reporter.log("Preparing NNCF's PyTorch kernels (compiled on a worker's first quantization-aware run).")
    quantized = _calibrate(module, files, spec, quantize, bar.child(0.05, 0.1))

    # The training run reports its own stages, curves and progress (0..1 of the whole bar: the
    # calibration above takes seconds, the epochs minutes).
    result = train(qat_settings(config), dataset, out / "training", reporter, init=quantized, resume=resume,
                   save_checkpoint=save_checkpoint)

    reporter.stage("exporting")
    state = torch.load(result.weights, map_location="cpu", weights_only=True)
    quantized.load_state_dict(state)
    quantized.eval().cpu()
    height, width = spec.size
    folder = out / "ir"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad():
            model = ov.convert_model(quantized, example_input=torch.zeros(1, 3, height, width),
                                     input=[1, 3, height, width])
        ov.save_model(model, folder / "model.xml", compress_to_fp16=False)
    except Exception as error:
        raise JobError(f"OpenVINO could not convert the quantization-aware model: {one_line(error)}") from None
    layers = sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")
    del model

    reporter.stage("measuring INT8")
    int8 = evaluate(ir_runner(folder / "model.xml"), validation, data.classes, Span(reporter, 0.0, 1.0))
    drop = fp32.top1 - int8.top1
    reporter.log(f"FP32 top-1 {100 * fp32.top1:.1f} % → INT8 {100 * int8.top1:.1f} % "
                 f"({round(-100 * drop, 1) or 0.0:+.1f} points) after {result.epochs_run} epochs of "
                 f"quantization-aware training; {layers} quantized layers.")
    reporter.progress(1.0)
    summary = QuantizeResult(folder=folder, method="qat", calibration_images=len(files), fp32=fp32, int8=int8,
                             drop=drop, quantized_layers=layers, warnings=warnings)
    return summary, result


def _torch_runner(module: nn.Module):
    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(batch)).numpy()

    return run


def _calibrate(module: nn.Module, files: list[Path], spec: InputSpec, config: QuantizeConfig, span: Span) -> nn.Module:
    def load(path: Path) -> torch.Tensor:
        return torch.from_numpy(spec.load(path))

    try:
        with _quiet_nncf():
            return nncf.quantize(module, counted_dataset(files, load, span), subset_size=len(files),
                                 **nncf_settings(config))
    except (JobError, Cancelled):
        raise
    except Exception as error:
        raise JobError(f"NNCF could not prepare the model for quantization-aware training: {one_line(error)}") from None


@contextlib.contextmanager
def _quiet_nncf():
    """NNCF logs the kernel build at INFO; the job log has its own line for it."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
