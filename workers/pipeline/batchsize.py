"""The largest training batch that fits a GPU, for the train form. No Django, no Celery, and no
torch at import (the web process uses it); `measure_activations` imports torch to re-measure.

The estimate, per GPU:

    usable    = memory × 0.9 − 1 GiB          (CUDA context, cuDNN workspaces, allocator slack)
    fixed     = parameters × (4 weights + 4 gradients + optimizer state [AdamW 8, SGD 4] + 2 fp16/bf16 copies)
    per image = ACTIVATIONS[arch] × size² × BACKWARD_PEAK
    batch     = (usable − fixed) / per image, rounded down to a multiple of 8

ACTIVATIONS is what autograd saves for the backward pass per image and per input pixel, measured
once per architecture on CPU under bf16 autocast (mixed precision keeps activations in 16 bits, as
on a GPU): the saved tensors of a forward pass at batch 4 less those at batch 2, halved, at
MEASURED_AT px. The backward pass holds gradients of activations next to them, and the allocator
rounds up: BACKWARD_PEAK covers both. tests/test_batchsize.py re-measures two architectures
against the table.

The learning rate follows the batch: SGD by the linear rule (Goyal et al., 2017: k times the
batch, k times the rate), AdamW by the square-root rule (its per-parameter scaling makes linear
scaling overshoot), both from the architecture's default rate at its default batch
(architectures.DEFAULTS).
"""

import math
from dataclasses import dataclass

from workers.pipeline.architectures import BACKBONE_PARAMETERS, DEFAULTS

MEASURED_AT = 64  # px (small_cnn: the same; it is fully convolutional)
BACKWARD_PEAK = 1.5
OVERHEAD_BYTES = 2**30
MEMORY_SHARE = 0.9
CPU_BATCH = 32  # on CPU a step is slow already: a modest batch keeps progress and the curves moving
MAX_BATCH = 4096  # TrainParams.batch_size's bound

# Bytes saved for backward per image per input pixel under bf16 autocast (measure_activations).
ACTIVATIONS = {
    "resnet18": 237,
    "resnet34": 337,
    "resnet50": 873,
    "mobilenet_v3_small": 166,
    "mobilenet_v3_large": 448,
    "efficientnet_b0": 888,
    "convnext_tiny": 1111,
    "small_cnn": 590,
}
PARAMETERS = {**BACKBONE_PARAMETERS, "small_cnn": 288_000}  # small_cnn: its three stages, with a head


@dataclass(frozen=True)
class Suggestion:
    batch: int
    lr: float
    rule: str  # "linear" | "square root" | "" (CPU: the default rate)
    sentence: str


def per_image_bytes(architecture: str, size: int) -> float:
    return ACTIVATIONS[architecture] * size * size * BACKWARD_PEAK


def fixed_bytes(architecture: str, optimizer: str) -> float:
    state = 8 if optimizer == "adamw" else 4
    return PARAMETERS[architecture] * (4 + 4 + state + 2)


def scaled_lr(architecture: str, optimizer: str, batch: int) -> tuple[float, str]:
    adamw_lr, _, sgd_lr, _, _, base = DEFAULTS[architecture]
    if optimizer == "sgd":
        return min(10.0, sgd_lr * batch / base), "linear"
    return min(10.0, adamw_lr * math.sqrt(batch / base)), "square root"


def suggest(architecture: str, input_size: int, optimizer: str, gpu_memory: int | None, gpu_name: str = "") -> Suggestion:
    """The batch for the smallest GPU a train job may land on (`gpu_memory` bytes, `gpu_name`
    naming it); None: no train worker has a GPU."""
    default_lr, base = DEFAULTS[architecture][2 if optimizer == "sgd" else 0], DEFAULTS[architecture][5]
    if gpu_memory is None:
        batch = min(CPU_BATCH, base)
        return Suggestion(batch, default_lr, "", f"No train worker has a GPU, so this trains on CPU: a batch of {batch} "
                                                 f"keeps each step short; the learning rate stays at {default_lr:g}.")
    gpu = f"the {_gib(gpu_memory)} of {gpu_name or 'the GPU'}"
    room = gpu_memory * MEMORY_SHARE - OVERHEAD_BYTES - fixed_bytes(architecture, optimizer)
    fits = int(room // per_image_bytes(architecture, input_size)) if room > 0 else 0
    batch = min(MAX_BATCH, fits // 8 * 8 if fits >= 8 else fits)
    if batch < 1:
        return Suggestion(1, default_lr, "", f"{architecture} at {input_size} px hardly fits {gpu}: "
                                             "try a smaller input size.")
    lr, rule = scaled_lr(architecture, optimizer, batch)
    capped = " (the largest batch setting)" if batch == MAX_BATCH else ""
    warmup = " Warm up for an epoch or two at a batch this much larger." if batch >= 4 * base else ""
    return Suggestion(batch, lr, rule, (
        f"About {batch} images of {input_size} px{capped} fit {gpu} with {architecture} in mixed precision "
        f"(an estimate with headroom, from the activations each image keeps, the weights, gradients and optimizer "
        f"state). With it, lr {lr:.3g}: the {rule} rule from {default_lr:g} at batch {base}.{warmup}"))


def _gib(size: int) -> str:
    return f"{size / 2**30:.0f} GiB"


def measure_activations(architecture: str, size: int = MEASURED_AT) -> float:
    """Bytes autograd saves per image per input pixel (bf16 autocast, CPU), parameters aside."""
    import torch

    from workers.pipeline.training import build_model

    model = build_model(architecture, 10).train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def saved(batch: int) -> int:
        storages: dict[int, int] = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in weights:
                storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        torch.manual_seed(0)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
                torch.autocast("cpu", dtype=torch.bfloat16):
            model(torch.randn(batch, 3, size, size))
        return sum(storages.values())

    return (saved(4) - saved(2)) / 2 / (size * size)


if __name__ == "__main__":  # python -m workers.pipeline.batchsize: the table's figures
    for name in ACTIVATIONS:
        print(f'    "{name}": {round(measure_activations(name))},')
