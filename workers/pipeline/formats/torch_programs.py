"""TorchScript and torch.export (.pt2) programs, which are code: loaded only in a child process
(`_inspect_child`) under memory and time limits, which reports what it found.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from workers.pipeline.formats.common import (
    LABELS, InspectConfig, Inspection, Prepared, TensorInfo, folder_size, one_line,
)
from workers.pipeline.outputs import are_probabilities
from workers.pipeline.formats.tensors import example_input, precision, tensor_infos, torch_dtype
from workers.pipeline.reporting import MEMORY_SIGNS, Cancelled, JobError, Span

ROOT = Path(__file__).resolve().parents[3]  # the project, for the child's `python -m`
JOB_PROCESS = "VINTNER_JOB_PROCESS"  # set in a job's own (jailed) process: see workers/jail.py


def inspect_in_child(prepared: Prepared, config: InspectConfig, span: Span) -> Inspection:
    """A TorchScript or torch.export program's inspection, by a child process that loads it; in a
    job's own jailed process (JOB_PROCESS set), by that process: the jail is then the isolation and
    its limits are the job's, and a second interpreter would only import torch again."""
    facts = _load_here(prepared, config) if os.environ.get(JOB_PROCESS) else _run_child(prepared, config, span)
    return Inspection(
        format=prepared.format,
        inputs=[TensorInfo(**info) for info in facts["inputs"]],
        outputs=[TensorInfo(**info) for info in facts["outputs"]],
        parameters=facts["parameters"],
        size_bytes=folder_size(prepared.folder),
        precision=facts["precision"],
        opset=None,
        ir_version=None,
        traces=facts["traces"],
        trace_error=facts["trace_error"],
        details=facts["details"],
        output_kinds=facts.get("output_kinds", []),
    )


def _load_here(prepared: Prepared, config: InspectConfig) -> dict:
    name = prepared.primary
    try:
        return CHILD_FACTS[prepared.format](prepared.folder / name, config.input_size)
    except MemoryError:
        raise JobError(f"“{name}” needed more memory to load than this job may use, so it was stopped.") from None
    except Exception as error:  # the program's own failure, said as the child would say it
        raise JobError(f"PyTorch could not load “{name}” as {LABELS[prepared.format]}: {one_line(error)}") from None


def _run_child(prepared: Prepared, config: InspectConfig, span: Span) -> dict:
    """Run `_inspect_child` on the model, within the time limit; its facts, or a JobError."""
    name = prepared.primary
    with tempfile.TemporaryDirectory(prefix="vintner-inspect-") as tmp:
        result, log = Path(tmp) / "result.json", Path(tmp) / "stderr.txt"
        request = {"format": prepared.format, "path": str((prepared.folder / name).resolve()),
                   "input_size": config.input_size, "memory_limit_mb": config.memory_limit_mb, "result": str(result)}
        with open(log, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "workers.pipeline._inspect_child", json.dumps(request)],
                cwd=tmp, env=_child_env(tmp), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True,  # its own process group, so a kill takes anything it started too
            )
            try:
                _wait(process, config.time_limit_s, span, name)
            finally:
                if process.poll() is None:
                    _kill(process)
        report = _read_report(result)
        stderr_tail = _tail(log)
    if "facts" in report:
        return report["facts"]
    message = report.get("message", "")
    if report.get("error") == "memory" or any(sign in message + stderr_tail for sign in MEMORY_SIGNS):
        raise JobError(f"“{name}” needed more than {config.memory_limit_mb:,} MB of memory to load (the limit for "
                       "loading uploaded code), so it was stopped.")
    if report.get("error"):
        raise JobError(f"PyTorch could not load “{name}” as {LABELS[prepared.format]}: {message}")
    last = next((line for line in reversed(stderr_tail.splitlines()) if line.strip()), "")
    raise JobError(f"Loading “{name}” crashed the process that tried it ({_how_it_ended(process.returncode)}); "
                   "the file may be damaged."
                   + (f" Last words: {last[:300]}" if last else ""))


def _read_report(result: Path) -> dict:
    try:
        report = json.loads(result.read_text())
    except (OSError, ValueError):  # missing, or cut short by a crash
        return {}
    return report if isinstance(report, dict) else {}


def _how_it_ended(code: int) -> str:
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def _tail(path: Path, size: int = 4000) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - size))
        return f.read().decode("utf-8", "replace")


def _child_env(home: str) -> dict[str, str]:
    """Only what Python and torch need: the worker's credentials stay out of reach of the model."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "CUDA_VISIBLE_DEVICES": "",  # CPU only: a GPU's driver maps memory the limit would count
        "OMP_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",  # each malloc arena reserves 64 MB of address space
    }


def _wait(process: subprocess.Popen, limit: float, span: Span, name: str) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            process.wait(timeout=max(0.0, min(0.25, deadline - time.monotonic())))
            return
        except subprocess.TimeoutExpired:
            pass
        if span.reporter.cancelled():
            _kill(process)
            raise Cancelled()
        if time.monotonic() >= deadline:
            _kill(process)
            raise JobError(f"“{name}” took longer than {limit:g} s to load (the limit for loading uploaded code), "
                           "so it was stopped.")


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _torchscript_facts(path: Path, input_size: int) -> dict:
    """Runs in the child: load, then try a forward call on an example image batch."""
    module = torch.jit.load(str(path), map_location="cpu").eval()
    arguments = [argument.name for argument in module.forward.schema.arguments][1:]  # less self
    example = example_input(input_size)
    try:
        with torch.no_grad():
            output = module(example)
        traces, trace_error = True, ""
        inputs = [TensorInfo(arguments[0] if arguments else "input", list(example.shape), "f32")]
        outputs = tensor_infos(output)
        kinds = [_scores_kind(tensor) for tensor in _tensors(output)]
    except Exception as e:  # a forward that fails is an answer here
        traces, inputs, outputs, kinds = False, [TensorInfo(argument, [], "") for argument in arguments], [], []
        trace_error = f"forward() failed on a {list(example.shape)} float input: {one_line(e)}"
    tensors = list(module.parameters()) + list(module.buffers())
    return {
        "inputs": [asdict(info) for info in inputs],
        "outputs": [asdict(info) for info in outputs],
        "parameters": sum(p.numel() for p in module.parameters()),
        "precision": precision((torch_dtype(t.dtype), t.numel()) for t in tensors),
        "traces": traces,
        "trace_error": trace_error,
        "details": {"class": module.original_name, "forward": str(module.forward.schema)},
        "output_kinds": kinds,
    }


def _tensors(output: object) -> list:
    """The tensors of a forward's output, in the order tensor_infos lists them."""
    items = [output] if isinstance(output, torch.Tensor) else (
        list(output) if isinstance(output, (list, tuple)) else list(output.values()) if isinstance(output, dict) else [])
    return [item for item in items if isinstance(item, torch.Tensor)]


def _scores_kind(tensor: torch.Tensor) -> str:
    """On a random example image, probabilities sum to 1 per image; logits almost never do."""
    if not tensor.is_floating_point() or tensor.ndim < 1:
        return ""
    return "probabilities" if are_probabilities(tensor.detach().float().numpy()) else "logits"


def _export_facts(path: Path, input_size: int) -> dict:
    """Runs in the child: an ExportedProgram's signature; it is traced already."""
    program = torch.export.load(str(path))
    signature = program.graph_signature
    nodes = {node.name: node for node in program.graph.nodes}
    output_node = next(node for node in program.graph.nodes if node.op == "output")
    user_outputs = set(signature.user_outputs)
    inputs = [_fake_info(name, nodes[name].meta.get("val")) for name in signature.user_inputs]
    outputs = [_fake_info(node.name, node.meta.get("val")) for node in output_node.args[0]
               if getattr(node, "name", None) in user_outputs]
    weights = [program.state_dict[name] for name in (*signature.parameters, *signature.buffers)
               if name in program.state_dict]  # non-persistent buffers are not in it
    ranges = {str(symbol): [_bound(r.lower), _bound(r.upper)] for symbol, r in program.range_constraints.items()}
    return {
        "inputs": [asdict(info) for info in inputs],
        "outputs": [asdict(info) for info in outputs],
        "parameters": sum(program.state_dict[name].numel() for name in signature.parameters),
        "precision": precision((torch_dtype(t.dtype), t.numel()) for t in weights),
        "traces": True,
        "trace_error": "",
        "details": {"dynamic_dims": ranges} if ranges else {},
    }


CHILD_FACTS = {"torchscript": _torchscript_facts, "torch_export": _export_facts}


def _fake_info(name: str, value: object) -> TensorInfo:
    if not isinstance(value, torch.Tensor):
        return TensorInfo(name, [], "")
    return TensorInfo(name, [d if isinstance(d, int) else None for d in value.shape], torch_dtype(value.dtype))


def _bound(value: object) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if abs(number) < 2**62 else None  # int_oo: unbounded
