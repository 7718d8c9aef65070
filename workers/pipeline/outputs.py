"""Which of a model's outputs holds its class scores, how many, and whether they are already
probabilities. Plain data only (shapes as inspection records them), so the web side reads it too."""

from collections.abc import Sequence

FLOATS = ("f32", "f16", "bf16", "f64")


def score_count(shape: Sequence[int | None] | None) -> int | None:
    """The classes an output of `shape` scores: `[N, C]`, `[N, C, 1, 1]` (a classic ONNX head) or `[C]`
    give C; anything else (a feature map, a dynamic class dimension) gives None."""
    if not shape:
        return None
    dims = list(shape[1:]) if len(shape) > 1 else list(shape)
    while len(dims) > 1 and dims[-1] == 1:  # trailing 1×1 spatial dimensions
        dims.pop()
    return dims[0] if len(dims) == 1 and isinstance(dims[0], int) and dims[0] > 0 else None


def scores_output(outputs: Sequence[dict]) -> int:
    """The index of the first output that looks like class scores (floats, one score per class,
    more than one class); the first output where none does."""
    for index, output in enumerate(outputs):
        count = score_count(output.get("shape"))
        if count and count > 1 and output.get("dtype", "f32") in FLOATS + ("",):
            return index
    return 0


def are_probabilities(values, atol: float = 1e-3) -> bool:
    """Scores that are all in [0, 1] and sum to 1 per image: a softmax already applied. `values`:
    a numpy array [N, C, …] of one forward pass on an example input."""
    import numpy as np

    rows = np.asarray(values, dtype=np.float64)
    rows = rows.reshape(len(rows), -1) if rows.ndim > 1 else rows[None]
    if rows.size == 0 or rows.shape[1] < 2 or not np.isfinite(rows).all():
        return False
    return bool((rows >= -atol).all() and (rows <= 1 + atol).all() and np.allclose(rows.sum(axis=1), 1.0, atol=atol))


PROBABILITY_OPS = {"softmax"}  # not LogSoftmax: a softmax of log-probabilities gives the probabilities, as of logits


def scores_kind_of_op(op_type: str) -> str:
    """"probabilities" where the op that makes the output is a softmax, else "logits" (as far as
    anyone can tell from the graph: the user can say otherwise)."""
    return "probabilities" if op_type.lower() in PROBABILITY_OPS else "logits"
