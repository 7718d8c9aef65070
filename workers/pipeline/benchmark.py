"""How fast a model runs on this worker: OpenVINO under the latency and throughput hints and a
batch × streams matrix, per-layer counters, and torch eager for PyTorch sources. No Django.

    result = benchmark_ir(Path("model.xml"), BenchmarkConfig(shape=[1, 3, 224, 224]), span)

Each OpenVINO measurement is what OpenVINO's own benchmark_app does, so the figures can be
compared with it (bench/benchmark_parity.py): compile with the hint (or the streams), random input
tensors set once per request, one first inference not counted, then for `seconds`: under the
latency hint one request run synchronously, inference after inference (benchmark_app's default
API for that hint), otherwise as many requests as the device calls optimal in an AsyncInferQueue,
each started again as soon as it comes back (and at the end until all have run equally often).
Throughput = images / wall time from the first start to the last completion; latency percentiles
over every request's own latency (the runtime's measurement). Every result carries the host it was
measured on (CPU model and the ISA extensions that decide INT8 speed): a figure without its host
means nothing.
"""

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import openvino as ov

from workers.pipeline.formats import one_line
from workers.pipeline.hostinfo import cpu_facts
from workers.pipeline.reporting import JobError, Span

HINTS = ("latency", "throughput")
PRECISIONS = ("FP32", "FP16", "BF16", "I8", "U8", "I32", "I64", "U1", "I4", "U4", "F16", "F32")


@dataclass(frozen=True)
class BenchmarkConfig:
    shape: list[int]  # the input shape to measure at (batch 1), e.g. [1, 3, 224, 224] or [1, H, W, 3]
    device: str = "CPU"
    seconds: float = 10.0  # per measurement
    hints: tuple[str, ...] = HINTS
    matrix: tuple[tuple[int, int], ...] = ()  # (batch, streams) pairs, each measured too
    layer_runs: int = 30  # inferences profiled for the per-layer counters; 0: none


@dataclass
class Measurement:
    label: str  # what was measured, in words: "latency hint", "batch 4 × 2 streams", "torch eager"
    engine: str  # "openvino" | "torch"
    hint: str = ""  # "latency" | "throughput" | "" (explicit streams, torch)
    batch: int = 1
    streams: int = 0  # 0: the device's choice for the hint
    requests: int = 1
    iterations: int = 0
    seconds: float = 0.0
    fps: float = 0.0  # images per second
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p90, p99, mean, min, max


@dataclass
class BenchmarkResult:
    host: dict  # cpu model, isa, cores; openvino version, device name
    shape: list[int]
    measurements: list[Measurement]
    layers: list[dict] = field(default_factory=list)  # per layer: name, type, exec_type, precision, ms, share
    layer_types: list[dict] = field(default_factory=list)  # per type: ms, share, count, precisions

    def as_dict(self) -> dict:
        return asdict(self)


def host_facts(device: str = "CPU") -> dict:
    core = ov.Core()
    cpu = cpu_facts()
    return {"cpu": cpu["model"], "isa": cpu["isa"], "physical_cores": cpu["physical_cores"],
            "logical_cores": cpu["logical_cores"], "openvino": ov.get_version().split("-")[0],
            "device": device, "device_name": core.get_property(device, "FULL_DEVICE_NAME")}


def benchmark_ir(xml: Path, config: BenchmarkConfig, span: Span) -> BenchmarkResult:
    """Measure the IR at `xml`; see the module docstring."""
    core = ov.Core()
    try:
        model = core.read_model(str(xml))
    except Exception as error:
        raise JobError(f"OpenVINO could not read the model: {one_line(error)}") from None
    if config.device not in core.available_devices:
        raise JobError(f"This worker's OpenVINO has no {config.device} device (it has "
                       f"{', '.join(core.available_devices)}).")
    plan = [("hint", hint, 1, 0) for hint in config.hints] + [("matrix", "", b, s) for b, s in config.matrix]
    shares = len(plan) + (0.5 if config.layer_runs else 0)
    measurements = []
    for index, (_, hint, batch, streams) in enumerate(plan):
        part = span.child(index / shares, (index + 1) / shares)
        measurements.append(_measure(core, model, config, part, hint=hint, batch=batch, streams=streams))
    layers, types = [], []
    if config.layer_runs:
        layers, types = layer_counters(core, model, config, span.child(len(plan) / shares, 1.0))
    span.progress(1.0)
    return BenchmarkResult(host=host_facts(config.device), shape=list(config.shape), measurements=measurements,
                           layers=layers, layer_types=types)


def _shaped(model: ov.Model, shape: list[int], batch: int) -> ov.Model:
    """The model at `shape` with `batch` images; a copy, the caller's model is left as it is."""
    model = model.clone()
    wanted = ov.PartialShape([batch, *shape[1:]])
    if model.input(0).get_partial_shape() != wanted:
        try:
            model.reshape({model.input(0): wanted})
        except Exception as error:
            raise JobError(f"The model cannot run at {[batch, *shape[1:]]}: {one_line(error)}") from None
    return model


def _random_inputs(compiled: ov.CompiledModel, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    tensors = {}
    for index, port in enumerate(compiled.inputs):
        shape = list(port.get_shape())
        if port.get_element_type() == ov.Type.u8:
            tensors[index] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            tensors[index] = rng.standard_normal(shape).astype(port.get_element_type().to_dtype())
    return tensors


def _measure(core: ov.Core, model: ov.Model, config: BenchmarkConfig, span: Span, *, hint: str, batch: int,
             streams: int) -> Measurement:
    settings = {"PERFORMANCE_HINT": hint.upper()} if hint else {"NUM_STREAMS": streams}
    label = f"{hint} hint" if hint else f"batch {batch} × {streams} stream{'s' if streams > 1 else ''}"
    span.reporter.log(f"Measuring {label} for {config.seconds:g} s.")
    try:
        compiled = core.compile_model(_shaped(model, config.shape, batch), config.device, settings)
    except JobError:
        raise
    except Exception as error:
        raise JobError(f"OpenVINO could not compile the model for {label}: {one_line(error)}") from None
    if hint == "latency":  # benchmark_app's -api sync, its default under this hint
        requests = 1
        latencies, iterations, total = _run_sync(compiled, config.seconds, span)
    else:
        requests = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        latencies, iterations, total = _run_async(compiled, requests, config.seconds, span)
    measurement = Measurement(label=label, engine="openvino", hint=hint, batch=batch, streams=streams or
                              _streams(compiled), requests=requests, iterations=iterations, seconds=total,
                              fps=iterations * batch / total, latency_ms=_percentiles(latencies))
    span.reporter.log(_said(measurement))
    return measurement


def _run_sync(compiled: ov.CompiledModel, seconds: float, span: Span) -> tuple[list[float], int, float]:
    """One request, infer() after infer() for `seconds`: (latencies in ms, inferences, wall seconds)."""
    request = compiled.create_infer_request()
    for port, tensor in _random_inputs(compiled, 0).items():
        request.set_input_tensor(port, ov.Tensor(tensor))
    request.infer()  # the first inference pays for lazy initialisation: not counted
    latencies = []
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        request.infer()
        latencies.append(request.latency)
        elapsed = time.perf_counter() - start
        if len(latencies) % 64 == 0:
            span.raise_if_cancelled()
            span.progress(elapsed / seconds)
    return latencies, len(latencies), time.perf_counter() - start


def _run_async(compiled: ov.CompiledModel, requests: int, seconds: float,
               span: Span) -> tuple[list[float], int, float]:
    """`requests` requests in an AsyncInferQueue, each restarted as soon as it is idle, for
    `seconds` and then until all have run equally often: (latencies in ms, inferences, wall seconds)."""
    queue = ov.AsyncInferQueue(compiled, requests)
    for index, request in enumerate(queue):
        for port, tensor in _random_inputs(compiled, index).items():
            request.set_input_tensor(port, ov.Tensor(tensor))
    queue.start_async()  # the first inference pays for lazy initialisation: not counted
    queue.wait_all()

    latencies, in_flight = [], set()
    iterations = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds or iterations % requests:
        idle = queue.get_idle_request_id()
        if idle in in_flight:
            latencies.append(queue[idle].latency)
        else:
            in_flight.add(idle)
        queue.start_async()
        iterations += 1
        elapsed = time.perf_counter() - start
        if iterations % 64 == 0:
            span.raise_if_cancelled()
            span.progress(elapsed / seconds)
    queue.wait_all()
    total = time.perf_counter() - start
    latencies += [queue[index].latency for index in in_flight]
    return latencies, iterations, total


def _streams(compiled: ov.CompiledModel) -> int:
    with contextlib.suppress(Exception):
        return int(compiled.get_property("NUM_STREAMS"))
    return 0


def measure_torch(module, shape: list[int], seconds: float, span: Span) -> Measurement:
    """torch eager, one inference after another (no_grad, torch's default threads); `module` in
    eval mode, as formats.load_torch_module gives it."""
    import torch

    example = torch.randn(shape)
    span.reporter.log(f"Measuring torch eager (batch 1, {torch.get_num_threads()} threads) for {seconds:g} s.")
    latencies = []
    with torch.no_grad():
        module(example)  # warm-up, not counted
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds:
            begin = time.perf_counter()
            module(example)
            end = time.perf_counter()
            latencies.append((end - begin) * 1000)
            elapsed = end - start
            if len(latencies) % 16 == 0:
                span.raise_if_cancelled()
                span.progress(elapsed / seconds)
    measurement = Measurement(label="torch eager", engine="torch", batch=shape[0], iterations=len(latencies),
                              seconds=elapsed, fps=len(latencies) * shape[0] / elapsed,
                              latency_ms=_percentiles(latencies))
    span.reporter.log(_said(measurement))
    return measurement


def layer_counters(core: ov.Core, model: ov.Model, config: BenchmarkConfig, span: Span) -> tuple[list[dict], list[dict]]:
    """Time per layer and per layer type, averaged over `layer_runs` inferences under the latency
    hint, with the precision each layer actually ran in (from its kernel's name, e.g.
    brgconv_avx512_I8)."""
    span.reporter.log(f"Profiling layers over {config.layer_runs} inferences.")
    compiled = core.compile_model(_shaped(model, config.shape, 1), config.device,
                                  {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True})
    request = compiled.create_infer_request()
    for port, tensor in _random_inputs(compiled, 0).items():
        request.set_input_tensor(port, ov.Tensor(tensor))
    request.infer()  # not counted, as above
    totals: dict[str, dict] = {}
    for run in range(config.layer_runs):
        if run % 8 == 0:
            span.raise_if_cancelled()
            span.progress(run / config.layer_runs)
        request.infer()
        for info in request.profiling_info:
            entry = totals.setdefault(info.node_name, {
                "name": info.node_name, "type": info.node_type, "exec_type": info.exec_type,
                "precision": _precision(info.exec_type), "status": str(info.status).rsplit(".", 1)[-1],
                "ms": 0.0})
            entry["ms"] += info.real_time.total_seconds() * 1000 / config.layer_runs
    layers = sorted(totals.values(), key=lambda entry: -entry["ms"])
    whole = sum(entry["ms"] for entry in layers) or 1.0
    types: dict[str, dict] = {}
    for entry in layers:
        entry["ms"] = round(entry["ms"], 4)
        entry["share"] = entry["ms"] / whole
        kind = types.setdefault(entry["type"], {"type": entry["type"], "ms": 0.0, "count": 0, "precisions": []})
        kind["ms"] += entry["ms"]
        kind["count"] += 1
        if entry["precision"] and entry["precision"] not in kind["precisions"] and entry["status"] == "EXECUTED":
            kind["precisions"].append(entry["precision"])
    for kind in types.values():
        kind["ms"] = round(kind["ms"], 4)
        kind["share"] = kind["ms"] / whole
    return layers, sorted(types.values(), key=lambda kind: -kind["ms"])


def _precision(exec_type: str) -> str:
    suffix = exec_type.rsplit("_", 1)[-1].upper()
    return suffix if suffix in PRECISIONS else ""


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    values = np.asarray(latencies, dtype=np.float64)
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)), "mean": float(values.mean()), "min": float(values.min()),
            "max": float(values.max())}


def _said(measurement: Measurement) -> str:
    latency = measurement.latency_ms
    return (f"{measurement.label}: {measurement.fps:.1f} images/s, latency p50 {latency.get('p50', 0):.2f} ms, "
            f"p90 {latency.get('p90', 0):.2f} ms, p99 {latency.get('p99', 0):.2f} ms "
            f"({measurement.iterations} inferences, {measurement.requests} request"
            f"{'s' if measurement.requests > 1 else ''}).")


def benchmark_summary(result: dict) -> dict:
    """The figures a comparison shows, from a benchmark job's result (`BenchmarkResult.as_dict()`
    with an optional "torch" measurement): latency p50 under the latency hint, images/s under the
    throughput hint, and the speedups over torch eager measured in the same job."""
    by_hint = {m["hint"]: m for m in result.get("measurements", []) if m["hint"]}
    torch = result.get("torch")
    latency = by_hint.get("latency", {}).get("latency_ms", {}).get("p50")
    fps = by_hint.get("throughput", {}).get("fps")
    if torch and not result.get("measurements"):  # a PyTorch artifact: torch eager is its figure
        latency, fps = torch["latency_ms"]["p50"], torch["fps"]
    summary = {"latency_ms": latency, "fps": fps}
    if torch:
        summary["torch_latency_ms"] = torch["latency_ms"]["p50"]
        summary["torch_fps"] = torch["fps"]
        if latency:
            summary["speedup_latency"] = torch["latency_ms"]["p50"] / latency
        if fps:
            summary["speedup_throughput"] = fps / torch["fps"]
    return summary
