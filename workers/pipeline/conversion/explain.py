"""What went wrong, in the user's terms: the operations OpenVINO could not convert and where they
are in the model, why an ONNX export failed, and what to change."""

import re
import warnings
from pathlib import Path

import torch

from workers.pipeline.formats import one_line

EXPORTER_WORDS = {"legacy": "the TorchScript-based exporter", "dynamo": "the torch.export-based exporter"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NO_RULE = re.compile(r"No conversion rule found for operations?:\s*([^\n]+)")
FAILED_FOR = re.compile(r"Conversion is failed for:\s*([^\n]+)")
DETAIL = re.compile(r"^-- (\S+) with a message:\s*\n(.+?)(?=\n-- |\nSummary:|\Z)", re.S | re.M)
DURING = re.compile(r"Exception happened during conversion of operation (\S+?)/(\S+)")


def tracer_advice(caught: list[warnings.WarningMessage]) -> str:
    """What to do where the tracer warned that the trace depends on the example input; "" elsewhere."""
    tracer = [str(w.message) for w in caught if w.category.__name__ == "TracerWarning"]
    if any("Python boolean" in text or "Python index" in text or "Python number" in text for text in tracer):
        return ("The PyTorch tracer warned that the model turns a tensor into a Python value (for example "
                "`if x.sum() > 0:`), so the IR always takes the path the example input took. Make the model "
                "traceable: replace data-dependent Python branches with tensor operations (torch.where) or "
                "torch.cond, or upload it as TorchScript made with torch.jit.script.")
    return ""


def explain_direct(error: Exception, source: torch.jit.ScriptModule | torch.export.ExportedProgram,
                   shape: list[int]) -> tuple[str, str]:
    """Why OpenVINO's PyTorch frontend failed on `source` (traced at `shape`): a full message, and a
    short one for the route's reason."""
    text = _clean(error)
    failure = _op_failure(text)
    if failure:
        ops, details = failure
        where = _locate_torch_ops(ops, source)
        short = f"OpenVINO cannot convert {', '.join(ops)}"
        return (f"OpenVINO's PyTorch frontend has no conversion for {_ops_text(ops, where)}{details}. "
                "Try the ONNX route, or replace the operation in the model.", short)
    if "Couldn't get TorchScript module by tracing" in text:
        cause = _after(text, "Exception:") or one_line(error)
        return (f"PyTorch could not trace the model on a {shape_text(shape)} example input: "
                f"{cause}. Make the model traceable: its forward() must take one image tensor and return "
                "tensors (or a tuple or dict of them), without Python control flow that depends on tensor "
                "values; or try the ONNX route.", "tracing failed")
    return (f"OpenVINO could not convert the model directly: {one_line(error)}. Try the ONNX route.",
            one_line(error)[:120])


def explain_onnx(error: Exception, uploaded) -> tuple[str, str]:
    """Why OpenVINO's ONNX frontend failed, as explain_direct says it. `uploaded` is the uploaded
    model (an onnx.ModelProto), or None where the ONNX file is Vintner's own export."""
    text = _clean(error)
    onnx_source = uploaded is not None
    failure = _op_failure(text)
    other = "" if onnx_source else " Try the direct route, or replace the operation in the model."
    if failure:
        ops, details = failure
        where = _locate_onnx_ops(ops, uploaded) if onnx_source else {}
        message = f"OpenVINO's ONNX frontend has no conversion for {_ops_text(ops, where)}{details}."
        if onnx_source and any(_onnx_domain(op) for op in ops):
            message += (" Operators outside the standard ONNX domain are custom: export the model with standard "
                        "operators only.")
        elif onnx_source:
            message += " Export the model again with operators OpenVINO supports (a different opset may help)."
        return message + other, f"OpenVINO cannot convert {', '.join(ops)}"
    return (f"OpenVINO could not convert the ONNX model: {one_line(error)}.{other}", one_line(error)[:120])


def _locate_torch_ops(ops: list[str], source: torch.jit.ScriptModule | torch.export.ExportedProgram
                      ) -> dict[str, str]:
    """Where each unconvertible op is in the model, as far as it can be told without running it."""
    found: dict[str, str] = {}
    try:
        if isinstance(source, torch.export.ExportedProgram):
            for node in source.graph.nodes:
                target = str(node.target)
                if node.op == "call_function" and target in ops and target not in found:
                    found[target] = f"node “{node.name}”" + _stack_place(node.meta.get("stack_trace") or "")
        else:
            for node in source.inlined_graph.nodes():
                if node.kind() in ops and node.kind() not in found:
                    place = _source_place(str(node.sourceRange()))
                    if place:
                        found[node.kind()] = place
    except Exception:  # an explanation, not a requirement
        pass
    return found


def _locate_onnx_ops(ops: list[str], model) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        for op in ops:
            domain, op_type = _onnx_domain(op), _onnx_type(op)
            domains = {domain} if domain else {"", "ai.onnx"}
            names = [node.name or f"#{index}" for index, node in enumerate(model.graph.node)
                     if node.op_type == op_type and (node.domain or "") in domains]
            if names:
                more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                found[op] = (f"node{'s' if len(names) > 1 else ''} "
                             + ", ".join(f"“{name}”" for name in names[:3]) + more)
    except Exception:
        pass
    return found


def shape_hint(shape: str) -> str:
    """What may be wrong where the model fails on the inputs the `shape` chosen gives it."""
    return {"static": " Check the input size: the model may need another one.",
            "dynamic_batch": " The model may not allow batches other than the one it was made for: "
                             "choose the static shape.",
            "dynamic": " The model may fix its input size: choose the static or dynamic-batch shape."
            }[shape]


def _clean(error: BaseException) -> str:
    return ANSI.sub("", str(error))


def _op_failure(text: str) -> tuple[list[str], str] | None:
    """The operations OpenVINO's report names, and what it said of the ones that failed, or None."""
    ops: list[str] = []
    match = NO_RULE.search(text)
    if match:
        ops += [op.strip() for op in match.group(1).split(",") if op.strip()]
    details = []
    for op, message in DETAIL.findall(text):
        line = next((line.strip() for line in message.splitlines() if line.strip()
                     and not line.strip().startswith(("Check ", "FrontEnd API failed"))), "")
        if op not in ops and op != "prim::Constant":  # a None constant fails when its consumer does
            details.append(f"{op}: {line[:200]}")
    if not ops and not details:
        during = DURING.search(text)
        if not during:
            return None
        details.append(f"node “{during.group(1)}” ({during.group(2)})")
        failed = FAILED_FOR.search(text)
        ops += [failed.group(1).strip()] if failed else []
    if not ops:
        ops = [details[0].split(":")[0]]
    extra = f" (it also reports {'; '.join(details[:3])})" if details and match else (
        f" ({'; '.join(details[:3])})" if details else "")
    return ops, extra


def _ops_text(ops: list[str], where: dict[str, str]) -> str:
    """OpenVINO writes standard ONNX ops as Type-opset: shown as Type."""
    return ", ".join(re.sub(r"^([A-Za-z]\w*)-\d+$", r"\1", op) + (f" ({where[op]})" if op in where else "")
                     for op in ops)


def _onnx_domain(op: str) -> str:
    """OpenVINO writes custom-domain ops as domain.Type and standard ones as Type-opset."""
    return op.rsplit(".", 1)[0] if "." in op else ""


def _onnx_type(op: str) -> str:
    return re.sub(r"-\d+$", "", op.rsplit(".", 1)[-1])


def _stack_place(stack: str) -> str:
    lines = [line.strip() for line in stack.strip().splitlines() if line.strip()]
    places = [i for i, line in enumerate(lines) if line.startswith("File ")]
    if not places:
        return ""
    index = places[-1]
    match = re.match(r'File "([^"]+)", line (\d+)', lines[index])
    code = lines[index + 1] if index + 1 < len(lines) else ""
    where = f"{Path(match.group(1)).name}:{match.group(2)}" if match else lines[index]
    return f", at {where}" + (f": {code[:120]}" if code else "")


def _source_place(source_range: str) -> str:
    """Where a TorchScript node comes from: a scripted one's range ('File "…", line N' and the code
    marked HERE), or a traced one's Python stack ('file.py(N): forward', innermost first)."""
    match = re.search(r'File "([^"]+)", line (\d+)', source_range)
    if not match:
        traced = re.match(r"\s*(\S+?)\((\d+)\): (\w+)", source_range)
        return f"at {Path(traced.group(1)).name}:{traced.group(2)}, in {traced.group(3)}()" if traced else ""
    lines = source_range.splitlines()
    marker = next((i for i, line in enumerate(lines) if "<--- HERE" in line), None)
    code = lines[marker - 1].strip() if marker else ""
    return f"at {Path(match.group(1)).name}:{match.group(2)}" + (f": {code[:120]}" if code else "")


def _after(text: str, marker: str) -> str:
    if marker not in text:
        return ""
    rest = text.split(marker, 1)[1]
    return next((line.strip() for line in rest.splitlines() if line.strip()), "")[:300]


def export_problem(error: BaseException) -> str:
    """One line on why torch's ONNX export failed."""
    text = _clean(error)
    unsupported = re.search(r"Exporting the operator '?([\w:.]+)'? to ONNX opset version (\d+) is not supported", text)
    if unsupported:
        return f"ONNX opset {unsupported.group(2)} has no {unsupported.group(1)}"
    dispatch = re.search(r"No ONNX function found for <OpOverload\(op='([\w.]+)', overload='(\w+)'\)>", text)
    if dispatch:
        return f"the exporter has no ONNX function for {dispatch.group(1)}"
    if "GuardOnDataDependentSymNode" in text or "data-dependent" in text:
        return ("torch.export cannot follow Python control flow that depends on tensor values "
                "(for example `if x.sum() > 0:`)")
    summary = re.search(r"## Exception summary\s*\n+(.+)", text)
    return (summary.group(1).strip()[:300] if summary else one_line(error)).rstrip(".")


def explain_export(errors: list[tuple[str, Exception]]) -> tuple[str, str]:
    """Why export to ONNX failed, per exporter tried, and what to try: a full message and a short one."""
    parts = [f"{EXPORTER_WORDS[exporter]}: {export_problem(error)}" for exporter, error in errors]
    problems = " ".join(export_problem(error) for _, error in errors)
    advice = "Try the direct route"
    if "control flow" in problems:
        advice = ("Make the model traceable: replace Python branches on tensor values with tensor operations "
                  "(torch.where) or torch.cond; or try the direct route")
    elif "no ONNX function" in problems or re.search(r"ONNX opset \d+ has no", problems):
        advice = "Try the direct route, or replace the operation in the model"
    return (f"Export to ONNX failed ({'; '.join(parts)}). {advice}.", f"ONNX export failed: {parts[0]}"[:200])


def shape_text(shape: list[int]) -> str:
    """A shape as "[1,3,?,?]", with "?" for dynamic dimensions."""
    return "[" + ",".join("?" if d is None or d < 0 else str(d) for d in shape) + "]"
