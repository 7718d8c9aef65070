"""Tensors described alike across formats: dtype names, the precision that weights add up to, and
for PyTorch modules the example input and a forward call's outputs as TensorInfo.
"""

from collections import Counter
from collections.abc import Iterable, Mapping

import torch

from workers.pipeline.formats.common import TensorInfo

TORCH_DTYPES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.float64: "f64",
                torch.int8: "i8", torch.uint8: "u8", torch.int16: "i16", torch.int32: "i32", torch.int64: "i64",
                torch.bool: "bool", torch.qint8: "i8", torch.quint8: "u8"}
# What a weight's dtype says of the model's precision. Wider integers are shapes, indices and
# counters (num_batches_tracked), not weights: they neither count as parameters nor set precision.
PRECISIONS = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "f64": "fp64", "i8": "int8", "u8": "int8",
              "i4": "int4", "u4": "int4", "nf4": "int4"}
NOT_WEIGHTS = {"i16", "u16", "i32", "u32", "i64", "u64", "bool", "boolean", "string"}
DOMINANT = 0.9  # share of weight elements one dtype needs to name the precision; below it is "mixed"


def torch_dtype(dtype: torch.dtype) -> str:
    """A torch dtype's short name as TensorInfo writes it ("f32", "i64", …)."""
    return TORCH_DTYPES.get(dtype, str(dtype).removeprefix("torch."))


def precision(weights: Iterable[tuple[str, int]]) -> str:
    """What weights, as (dtype, element count) pairs, add up to: the dominant precision, "mixed", or ""."""
    counts: Counter[str] = Counter()
    for dtype, count in weights:
        if dtype in PRECISIONS:
            counts[PRECISIONS[dtype]] += count
    if not counts:
        return ""
    precision, count = counts.most_common(1)[0]
    return precision if count >= DOMINANT * sum(counts.values()) else "mixed"


def example_input(size: int) -> torch.Tensor:
    """A random [1, 3, size, size] image batch to run a module on."""
    return torch.rand(1, 3, size, size)


def tensor_infos(output: object) -> list[TensorInfo]:
    """Outputs of one forward call: a tensor, a tuple/list of them, or a dict of them."""
    if isinstance(output, torch.Tensor):
        return [TensorInfo("output", list(output.shape), torch_dtype(output.dtype))]
    if isinstance(output, (tuple, list)):
        items = [(f"output{i}", value) for i, value in enumerate(output)]
    elif isinstance(output, Mapping):
        items = [(str(key), value) for key, value in output.items()]
    else:
        return []
    return [TensorInfo(key, list(value.shape), torch_dtype(value.dtype))
            for key, value in items if isinstance(value, torch.Tensor)]
