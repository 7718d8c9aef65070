"""PyTorch state_dicts (.pth, .safetensors): read as weights only, unwrapped from checkpoints,
fitted into the torchvision architecture the user names, then run once and traced with torch.export.
"""

from collections.abc import Iterator, Mapping

import safetensors
import safetensors.torch
import torch

from workers.pipeline import architectures
from workers.pipeline.formats.common import (
    ARCHITECTURES, InspectConfig, Inspection, Prepared, TensorInfo, folder_size, one_line,
)
from workers.pipeline.formats.labels import torchvision_labels
from workers.pipeline.formats.pickles import torch_load
from workers.pipeline.formats.tensors import example_input, precision, tensor_infos, torch_dtype
from workers.pipeline.reporting import JobError, Span, show


def inspect_state_dict(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
    """A state_dict's inspection: fitted into the architecture named, then run once and traced."""
    arch, classes = architecture(config)
    state, details = read_state_dict(prepared)
    span.progress(0.3)
    model = fit(state, arch, classes, prepared.primary)
    span.progress(0.5)
    example = example_input(config.input_size)
    outputs, traces, trace_error = _run_and_export(model, example, classes)
    labels = torchvision_labels(arch, classes)
    return Inspection(
        format="state_dict",
        inputs=[TensorInfo("input", list(example.shape), "f32")],
        outputs=outputs,
        parameters=sum(p.numel() for p in model.parameters()),
        size_bytes=folder_size(prepared.folder),
        precision=precision((torch_dtype(t.dtype), t.numel()) for t in state.values()),
        opset=None,
        ir_version=None,
        traces=traces,
        trace_error=trace_error,
        details={"architecture": arch, "num_classes": classes, "tensors": len(state), **details},
        output_kinds=["logits"] * len(outputs),  # torchvision's heads end in a Linear layer
        labels=labels,
        labels_source=f"torchvision's {arch} weights (their categories)" if labels else "",
    )


def architecture(config: InspectConfig) -> tuple[str, int]:
    """The torchvision architecture and number of classes a state_dict needs, or a JobError."""
    if config.architecture not in architectures.TRAINABLE:  # small_cnn: state_dicts Vintner trained
        given = f" (“{show(config.architecture)}” is not one of them)" if config.architecture else ""
        raise JobError(f"A state_dict needs its torchvision architecture, one of {', '.join(ARCHITECTURES)}{given}.")
    if not isinstance(config.num_classes, int) or config.num_classes < 1:
        raise JobError("A state_dict needs its number of classes (the size of its classifier's output).")
    return config.architecture, config.num_classes


def read_state_dict(prepared: Prepared) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a .safetensors or weights-only PyTorch file, and details of how they were found."""
    path, name = prepared.folder / prepared.primary, prepared.primary
    if path.suffix == ".safetensors":
        try:
            with safetensors.safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            loaded = safetensors.torch.load_file(str(path), device="cpu")
        except (safetensors.SafetensorError, OSError, ValueError) as e:
            raise JobError(f"“{name}” is not a valid safetensors file ({one_line(e)}).") from None
        state, details = _as_state_dict(loaded, name)
        return state, {**details, "metadata": dict(list(metadata.items())[:20])} if metadata else details
    return _as_state_dict(torch_load(path, name), name)


PREFERRED_KEYS = ("state_dict", "model", "model_state_dict")


def _as_state_dict(loaded: object, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """A flat {name: tensor}; a checkpoint dict ({"state_dict": …, "epoch": …}) is unwrapped when
    one of its values is the only mapping of tensors (or the only one under a usual key)."""
    if not isinstance(loaded, Mapping):
        raise JobError(f"“{name}” holds a {type(loaded).__name__}, not a state_dict (a mapping of weight names "
                       "to tensors, as model.state_dict() returns).")
    details: dict = {}
    if not _is_tensor_mapping(loaded):
        candidates = [key for key, value in loaded.items() if _is_tensor_mapping(value)]
        if len(candidates) > 1:
            candidates = [key for key in candidates if key in PREFERRED_KEYS]
        if len(candidates) != 1:
            keys = ", ".join(str(key) for key in list(loaded)[:8])
            raise JobError(f"“{name}” is not a state_dict: its values are not all tensors, and none of its keys "
                           f"({keys}) holds the weights unambiguously. Save model.state_dict() itself.")
        details["unwrapped"] = candidates[0]
        loaded = loaded[candidates[0]]
    state = dict(_flatten(loaded))
    prefixes = {key.split(".", 1)[0] for key in state}
    if prefixes == {"module"}:  # saved from DataParallel / DistributedDataParallel
        state = {key.removeprefix("module."): value for key, value in state.items()}
        details["stripped_prefix"] = "module."
    return state, details


def _is_tensor_mapping(value: object) -> bool:
    """A non-empty {str: tensor or such a mapping}."""
    if not isinstance(value, Mapping) or not value:
        return False
    return all(isinstance(k, str) and (isinstance(v, torch.Tensor) or _is_tensor_mapping(v)) for k, v in value.items())


def _flatten(mapping: Mapping, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _build(arch: str, classes: int, *, meta: bool = False) -> torch.nn.Module:
    """`meta`: shapes only, no memory and no time spent initialising weights a state_dict replaces."""
    # here, not at the top: the child process for TorchScript/.pt2 never needs torchvision
    from workers.pipeline.training import build_model

    with torch.device("meta" if meta else "cpu"):
        return build_model(arch, classes)


def fit(state: dict[str, torch.Tensor], arch: str, classes: int, name: str) -> torch.nn.Module:
    """torchvision `arch` with `classes` outputs, holding `state` (strict), or a JobError that says
    in plain words what does not fit."""
    model = _build(arch, classes, meta=True)
    problems = _fit_problems(model, state, arch, classes)
    if problems:
        raise JobError(f"The weights in “{name}” do not fit torchvision {arch} with {classes} classes: "
                       f"{'; '.join(problems)}. Check the architecture and the number of classes.")
    try:
        model.load_state_dict(state, strict=True, assign=True)
        if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):  # a buffer no state_dict holds
            model = _build(arch, classes)
            model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise JobError(f"The weights in “{name}” do not fit torchvision {arch}: {one_line(e)}.") from None
    return model.float().eval()  # assign=True kept the file's dtypes; models here compute in FP32


def _fit_problems(model: torch.nn.Module, state: dict[str, torch.Tensor], arch: str, classes: int) -> list[str]:
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [key for key in expected if key in state and state[key].shape != expected[key].shape]
    if not set(state) & set(expected):
        return [f"none of its weight names are {arch}'s (it has {_first(list(state))}), so it is another "
                "architecture, or was saved with a prefix"]
    problems = []
    heads = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    head = heads[-1] if heads else ""
    weight = f"{head}.weight"
    # the same classifier input, a different output size: only the class count differs
    if weight in mismatched and state[weight].ndim == 2 and state[weight].shape[1] == expected[weight].shape[1]:
        found = state[weight].shape[0]
        problems.append(f"the checkpoint's classifier ({head}) has {found} classes, you said {classes}")
        mismatched = [key for key in mismatched if not key.startswith(f"{head}.")]
    if missing:
        problems.append(f"{len(missing)} of {arch}'s weights are missing from it ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} of its weights are not part of {arch} ({_first(unexpected)})")
    for key in mismatched[:3]:
        saved, built = list(state[key].shape), list(expected[key].shape)
        problems.append(f"{key} is {saved} in the checkpoint but {built} in {arch}")
    if len(mismatched) > 3:
        problems.append(f"{len(mismatched) - 3} more weights have other shapes")
    return problems


def _first(keys: list[str], n: int = 3) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _run_and_export(model: torch.nn.Module, example: torch.Tensor, classes: int
                    ) -> tuple[list[TensorInfo], bool, str]:
    """Outputs of one forward call on `example`, and whether torch.export traces the model on it.
    A failure of either is an answer here, not an error."""
    shape = list(example.shape)
    try:
        with torch.no_grad():
            outputs = tensor_infos(model(example))
    except Exception as e:  # an input too small for the architecture, say
        return [TensorInfo("output", [1, classes], "f32")], False, f"forward() failed on a {shape} input: {one_line(e)}"
    try:
        torch.export.export(model, (example,))
    except Exception as e:
        return outputs, False, f"torch.export could not trace it on a {shape} input: {one_line(e)}"
    return outputs, True, ""
