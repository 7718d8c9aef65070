"""How fast a model runs on this worker: OpenVINO under the latency and throughput hints and a
batch × streams matrix, per-layer counters, and torch eager for PyTorch sources. No Django.

    result = benchmark(Path("model.xml"), BenchmarkConfig(shape=[1, 3, 224, 224]), span)

Each OpenVINO measurement is what OpenVINO's own benchmark_app does, so the figures can be
compared with it (bench/benchmark_parity.py): compile with the hint (or the streams), random input
tensors set once per request, one first inference not counted, then: under the latency hint one
request run synchronously, inference after inference (benchmark_app's default API for that hint),
otherwise as many requests as the device calls optimal in an AsyncInferQueue, each started again as
soon as it comes back (and at the end until all have run equally often). Throughput = images / wall
time from the first start to the last completion; latency percentiles over every request's own
latency (the runtime's measurement).

Honest figures:
- FP32 means f32: every OpenVINO measurement sets INFERENCE_PRECISION_HINT=f32. A device whose
  default precision is another (bf16 on a CPU with AVX-512 BF16 or AMX, f16 on a GPU) gets each
  hint measured a second time at that default, a row of its own that says so.
- Every figure is the median of `rounds` rounds (≥ 3 by default), each measurement running
  `seconds / rounds` a round, the measurements taking turns (the order reversed every other round),
  so a burst of other work lands on all of them; each keeps its rounds and their spread.
- torch eager runs inside the same rounds with the thread count OpenVINO's latency hint uses.
- The host is watched meanwhile: CPU time used outside this process (psutil) and the rounds' spread
  mark a run as noisy.
Every result carries the host it was measured on (CPU model and the ISA extensions that decide
INT8 speed): a figure without its host means nothing.
"""

import contextlib
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import openvino as ov
import psutil

from workers.pipeline.formats import one_line
from workers.pipeline.hostinfo import cpu_facts
from workers.pipeline.reporting import JobError, Span

HINTS = ("latency", "throughput")
PRECISIONS = ("FP32", "FP16", "BF16", "I8", "U8", "I32", "I64", "U1", "I4", "U4", "F16", "F32")
ROUNDS = 3
NOISY_SPREAD = 0.10  # a figure whose rounds spread more than this (of their median) is noisy
NOISY_LOAD = 0.10  # as is a run while other processes used more than this share of the machine's CPU


@dataclass(frozen=True)
class BenchmarkConfig:
    shape: list[int]  # the input shape to measure at (batch 1), e.g. [1, 3, 224, 224] or [1, H, W, 3]; a text
    # model's [batch, tokens], every one of its inputs (input_ids, attention_mask, token_type_ids) at it
    device: str = "CPU"
    seconds: float = 10.0  # per measurement, all rounds together
    hints: tuple[str, ...] = HINTS
    matrix: tuple[tuple[int, int], ...] = ()  # (batch, streams) pairs, each measured too (in f32)
    layer_runs: int = 30  # inferences profiled for the per-layer counters; 0: none
    rounds: int = ROUNDS  # each measurement's figures are the median of this many rounds
    precisions: tuple[str, ...] = ("f32", "default")  # each hint at these; "default": the device's own, where
    # it is not f32 already


@dataclass
class Measurement:
    label: str  # what was measured, in words: "latency hint, f32", "batch 4 × 2 streams, f32", "torch eager"
    engine: str  # "openvino" | "torch"
    hint: str = ""  # "latency" | "throughput" | "" (explicit streams, torch)
    precision: str = ""  # the inference precision it ran at: "f32", "bf16", ...; torch: ""
    default_precision: bool = False  # the device's default, not set: the row of its own
    batch: int = 1
    streams: int = 0  # 0: the device's choice for the hint
    requests: int = 1
    threads: int = 0  # inference threads (OpenVINO's for the compiled model; torch's)
    iterations: int = 0  # all rounds
    seconds: float = 0.0  # all rounds
    fps: float = 0.0  # images (text: rows) per second: the median of the rounds'
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p90, p99, mean, min, max: medians of the rounds'
    rounds: list[dict] = field(default_factory=list)  # per round: fps, p50, iterations, seconds
    spread: dict[str, float] = field(default_factory=dict)  # fps, p50: (max − min) / median over the rounds


@dataclass
class BenchmarkResult:
    host: dict  # cpu model, isa, cores; openvino version, device name
    shape: list[int]
    measurements: list[Measurement]
    torch: Measurement | None = None
    layers: list[dict] = field(default_factory=list)  # per layer: name, type, exec_type, precision, ms, share
    layer_types: list[dict] = field(default_factory=list)  # per type: ms, share, count, precisions
    layer_profile: dict = field(default_factory=dict)  # how the counters add up: requests, streams, total_ms, ...
    rounds: int = 0
    load: dict = field(default_factory=dict)  # other_cpu_share, max_spread, noisy, reasons

    def as_dict(self) -> dict:
        facts = asdict(self)
        if facts["torch"] is None:
            del facts["torch"]
        return facts


def host_facts(device: str = "CPU") -> dict:
    core = ov.Core()
    cpu = cpu_facts()
    return {"cpu": cpu["model"], "isa": cpu["isa"], "physical_cores": cpu["physical_cores"],
            "logical_cores": cpu["logical_cores"], "openvino": ov.get_version().split("-")[0],
            "device": device, "device_name": core.get_property(device, "FULL_DEVICE_NAME"),
            "default_precision": _default_precision(core, device)}


def benchmark(xml: Path | None, config: BenchmarkConfig, span: Span, *, torch_module=None,
              torch_shape: list[int] | None = None) -> BenchmarkResult:
    """Measure the IR (or ONNX model) at `xml` and/or torch eager of `torch_module` at `torch_shape`,
    in alternating rounds; see the module docstring."""
    core = ov.Core()
    if config.device not in core.available_devices:
        raise JobError(f"This worker's OpenVINO has no {config.device} device (it has "
                       f"{', '.join(core.available_devices)}).")
    rounds = max(1, config.rounds)
    runs: list[_Run] = []
    model = None
    if xml is not None:
        try:
            model = core.read_model(str(xml))
        except Exception as error:
            raise JobError(f"OpenVINO could not read the model: {one_line(error)}") from None
        span.reporter.stage("compiling")
        default = _default_precision(core, config.device)
        batch = config.shape[0]  # 1 for images; a text model's chosen batch
        plan = [(hint, batch, 0, "f32") for hint in config.hints if "f32" in config.precisions]
        if "default" in config.precisions and not (plan and default == "f32"):
            plan += [(hint, batch, 0, "") for hint in config.hints]
        plan += [("", batch, streams, "f32") for batch, streams in config.matrix]
        for hint, batch, streams, precision in plan:
            span.raise_if_cancelled()
            runs.append(_OpenVinoRun(core, model, config, hint=hint, batch=batch, streams=streams,
                                     precision=precision))
    if torch_module is not None:
        threads = _latency_threads(core, model, config, runs) if model is not None else 0
        runs.append(_TorchRun(torch_module, torch_shape or config.shape, threads))
    profiled = bool(config.layer_runs and model is not None)
    shares = rounds * len(runs) + (0.5 if profiled else 0)  # the profile takes about half a measurement
    watch = _LoadWatch()
    for round_ in range(rounds):
        span.reporter.stage(f"measuring, round {round_ + 1} of {rounds}")
        for index, run in enumerate(runs if round_ % 2 == 0 else runs[::-1]):
            step = round_ * len(runs) + index
            run.round(config.seconds / rounds, span.child(step / shares, (step + 1) / shares))
    load = watch.done()
    measurements = [run.finish() for run in runs]
    unit = "rows/s" if len(config.shape) == 2 else "images/s"  # a text model's shape is [batch, tokens]
    for measurement in measurements:
        span.reporter.log(_said(measurement, unit))
    layers, types, profile = [], [], {}
    if profiled:
        span.reporter.stage("profiling layers")
        layers, types, profile = layer_counters(core, model, config, span.child(rounds * len(runs) / shares, 1.0))
    span.progress(1.0)
    load = _verdict(load, measurements)
    if load["noisy"]:
        span.reporter.log(f"The host was busy during the measurement ({'; '.join(load['reasons'])}): "
                          "the figures are less certain than usual.", level="warning")
    openvino = [m for m in measurements if m.engine == "openvino"]
    torch = next((m for m in measurements if m.engine == "torch"), None)
    return BenchmarkResult(host=host_facts(config.device), shape=list(config.shape), measurements=openvino,
                           torch=torch, layers=layers, layer_types=types, layer_profile=profile, rounds=rounds,
                           load=load)


def _latency_threads(core: ov.Core, model: ov.Model, config: BenchmarkConfig, runs: list) -> int:
    """The inference threads OpenVINO's latency hint uses for this model here: torch eager gets as many."""
    measured = next((run.threads for run in runs if run.hint == "latency" and run.precision == "f32"), 0)
    if measured:
        return measured
    with contextlib.suppress(Exception):
        return _threads(core.compile_model(_shaped(model, config.shape, 1), config.device,
                                           {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}))
    return 0


def _default_precision(core: ov.Core, device: str) -> str:
    """The inference precision the device runs floating-point layers in when nobody says: "bf16" on a
    CPU with AVX-512 BF16 or AMX, "f32" on most others."""
    with contextlib.suppress(Exception):
        return core.get_property(device, "INFERENCE_PRECISION_HINT").get_type_name()
    return "f32"


# --- one measurement, round by round ---------------------------------------------------------------

class _Run:
    label: str
    engine: str
    hint = ""
    precision = ""
    default_precision = False
    batch = 1
    streams = 0
    requests = 1
    threads = 0

    def __init__(self) -> None:
        self.rounds: list[tuple[list[float], int, float]] = []  # (latencies in ms, inferences, wall seconds)

    def round(self, seconds: float, span: Span) -> None:
        self.rounds.append(self.run(seconds, span))

    def run(self, seconds: float, span: Span) -> tuple[list[float], int, float]:
        raise NotImplementedError

    def finish(self) -> Measurement:
        per_round = [{"fps": iterations * self.batch / wall, **_percentiles(latencies), "iterations": iterations,
                      "seconds": wall} for latencies, iterations, wall in self.rounds]
        figures = {key: statistics.median(r[key] for r in per_round) for key in ("p50", "p90", "p99", "mean",
                                                                                   "min", "max")}
        fps = statistics.median(r["fps"] for r in per_round)
        return Measurement(
            label=self.label, engine=self.engine, hint=self.hint, precision=self.precision,
            default_precision=self.default_precision, batch=self.batch, streams=self.streams,
            requests=self.requests, threads=self.threads, iterations=sum(r["iterations"] for r in per_round),
            seconds=sum(r["seconds"] for r in per_round), fps=fps, latency_ms=figures,
            rounds=[{key: r[key] for key in ("fps", "p50", "iterations", "seconds")} for r in per_round],
            spread={"fps": _spread([r["fps"] for r in per_round]), "p50": _spread([r["p50"] for r in per_round])})


class _OpenVinoRun(_Run):
    engine = "openvino"

    def __init__(self, core: ov.Core, model: ov.Model, config: BenchmarkConfig, *, hint: str, batch: int,
                 streams: int, precision: str) -> None:
        super().__init__()
        settings: dict = {"PERFORMANCE_HINT": hint.upper()} if hint else {"NUM_STREAMS": streams}
        if precision:
            settings["INFERENCE_PRECISION_HINT"] = precision
        what = f"{hint} hint" if hint else f"batch {batch} × {streams} stream{'s' if streams > 1 else ''}"
        try:
            self.compiled = core.compile_model(_shaped(model, config.shape, batch), config.device, settings)
        except JobError:
            raise
        except Exception as error:
            raise JobError(f"OpenVINO could not compile the model for {what}: {one_line(error)}") from None
        self.hint, self.batch = hint, batch
        self.default_precision = not precision
        self.precision = precision or _compiled_precision(self.compiled)
        self.label = (f"{what}, {self.precision}" if precision
                      else f"{what}, device default precision ({self.precision})")
        self.streams = streams or _streams(self.compiled)
        self.requests = 1 if hint == "latency" else self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        self.threads = _threads(self.compiled)

    def run(self, seconds: float, span: Span) -> tuple[list[float], int, float]:
        span.reporter.log(f"Measuring {self.label} for {seconds:.3g} s.")
        if self.hint == "latency":  # benchmark_app's -api sync, its default under this hint
            return _run_sync(self.compiled, seconds, span)
        return _run_async(self.compiled, self.requests, seconds, span)


class _TorchRun(_Run):
    """torch eager, one inference after another (no_grad); `module` in eval mode, as
    formats.load_torch_module gives it. `threads` 0: torch's own default."""
    engine = "torch"
    label = "torch eager"

    def __init__(self, module, shape: list[int], threads: int) -> None:
        import torch

        super().__init__()
        self.module, self.batch = module, shape[0]
        self.example = torch.randn(shape)
        self.threads = threads or torch.get_num_threads()

    def run(self, seconds: float, span: Span) -> tuple[list[float], int, float]:
        import torch

        span.reporter.log(f"Measuring torch eager (batch {self.batch}, {self.threads} threads) for {seconds:.3g} s.")
        kept = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return _run_torch(self.module, self.example, seconds, span)
        finally:
            torch.set_num_threads(kept)


def _run_torch(module, example, seconds: float, span: Span) -> tuple[list[float], int, float]:
    import torch

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
    return latencies, len(latencies), elapsed


# --- the host meanwhile ------------------------------------------------------------------------------

class _LoadWatch:
    """CPU time the rest of the machine used while the rounds ran: all CPUs' busy time (psutil, from
    /proc/stat) less this process's own."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.machine, self.own = _busy(psutil.cpu_times()), _busy(psutil.Process().cpu_times())

    def done(self) -> dict:
        wall = time.perf_counter() - self.began
        machine, own = _busy(psutil.cpu_times()) - self.machine, _busy(psutil.Process().cpu_times()) - self.own
        capacity = wall * (psutil.cpu_count() or 1)
        return {"other_cpu_s": round(max(0.0, machine - own), 3), "wall_s": round(wall, 3),
                "other_cpu_share": max(0.0, machine - own) / capacity if capacity else 0.0}


def _busy(times) -> float:
    return sum(getattr(times, name, 0.0) for name in ("user", "system", "nice", "irq", "softirq", "steal",
                                                       "children_user", "children_system"))


def _verdict(load: dict, measurements: list[Measurement]) -> dict:
    spreads = [(m.spread.get("p50" if m.hint == "latency" or m.engine == "torch" else "fps", 0.0), m.label)
               for m in measurements if len(m.rounds) > 1]
    widest = max(spreads, default=(0.0, ""))
    reasons = []
    if widest[0] > NOISY_SPREAD:
        reasons.append(f"{widest[1]} spread {widest[0]:.0%} between rounds")
    if load["other_cpu_share"] > NOISY_LOAD:
        reasons.append(f"other processes used {load['other_cpu_share']:.0%} of the machine's CPU")
    return {**load, "max_spread": widest[0], "noisy": bool(reasons), "reasons": reasons}


def _spread(values: list[float]) -> float:
    middle = statistics.median(values) if values else 0.0
    return (max(values) - min(values)) / middle if middle else 0.0


def _shaped(model: ov.Model, shape: list[int], batch: int) -> ov.Model:
    """The model at `shape` with `batch` images (or rows of tokens: every input of a text model, whose
    shape is [batch, tokens]); a copy, the caller's model is left as it is."""
    model = model.clone()
    wanted = ov.PartialShape([batch, *shape[1:]])
    ports = model.inputs if len(shape) == 2 else [model.input(0)]
    if any(port.get_partial_shape() != wanted for port in ports):
        try:
            model.reshape({port: wanted for port in ports})
        except Exception as error:
            raise JobError(f"The model cannot run at {[batch, *shape[1:]]}: {one_line(error)}") from None
    return model


TOKEN_IDS = 32  # random token ids are drawn below this: a valid id in any vocabulary; speed does not depend on it


def _random_inputs(compiled: ov.CompiledModel, seed: int) -> dict:
    """Random inputs of the compiled shapes: images' pixels, or a text model's tokens (every
    position attended, one segment)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for index, port in enumerate(compiled.inputs):
        shape = list(port.get_shape())
        kind, name = port.get_element_type(), port.get_any_name() if port.get_names() else ""
        if kind.is_integral() and kind != ov.Type.u8:
            dtype = kind.to_dtype()
            if "mask" in name:
                tensors[index] = np.ones(shape, dtype)
            elif "type" in name:
                tensors[index] = np.zeros(shape, dtype)
            else:
                tensors[index] = rng.integers(0, TOKEN_IDS, shape).astype(dtype)
        elif kind == ov.Type.u8:
            tensors[index] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            tensors[index] = rng.standard_normal(shape).astype(port.get_element_type().to_dtype())
    return tensors


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


def _threads(compiled: ov.CompiledModel) -> int:
    with contextlib.suppress(Exception):
        return int(compiled.get_property("INFERENCE_NUM_THREADS"))
    return 0


def _compiled_precision(compiled: ov.CompiledModel) -> str:
    with contextlib.suppress(Exception):
        return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return ""


def layer_counters(core: ov.Core, model: ov.Model, config: BenchmarkConfig,
                   span: Span) -> tuple[list[dict], list[dict], dict]:
    """Time per layer and per layer type, the mean over `layer_runs` inferences of one request under
    the latency hint in f32, with the precision each layer actually ran in (from its kernel's name,
    e.g. brgconv_avx512_I8); and how they add up (`profile`): the requests and streams the counters
    are summed over, their total per inference and the latency of those same profiled inferences."""
    span.reporter.log(f"Profiling layers over {config.layer_runs} inferences.")
    compiled = core.compile_model(_shaped(model, config.shape, 1), config.device,
                                  {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    for port, tensor in _random_inputs(compiled, 0).items():
        request.set_input_tensor(port, ov.Tensor(tensor))
    request.infer()  # not counted, as above
    # The CPU plugin's counters are running means over every inference since the first: that one
    # (weights repacked, kernels made) can outweigh dozens of later ones, so each layer's time over
    # the profiled runs is taken from the counters before and after them.
    before = {info.node_name: info.real_time.total_seconds() * 1000 for info in request.profiling_info}
    latencies = []
    for run in range(config.layer_runs):
        if run % 8 == 0:
            span.raise_if_cancelled()
            span.progress(run / config.layer_runs)
        request.infer()
        latencies.append(request.latency)
    runs = config.layer_runs
    totals: dict[str, dict] = {}
    for info in request.profiling_info:
        after = info.real_time.total_seconds() * 1000
        totals[info.node_name] = {
            "name": info.node_name, "type": info.node_type, "exec_type": info.exec_type,
            "precision": _precision(info.exec_type), "status": str(info.status).rsplit(".", 1)[-1],
            "ms": max(0.0, (after * (runs + 1) - before.get(info.node_name, 0.0)) / runs)}
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
    profile = {"runs": config.layer_runs, "requests": 1, "streams": _streams(compiled), "threads": _threads(compiled),
               "precision": _compiled_precision(compiled), "hint": "latency",
               "total_ms": round(sum(entry["ms"] for entry in layers), 4),
               "profiled_latency_ms": round(statistics.mean(latencies), 4) if latencies else None}
    return layers, sorted(types.values(), key=lambda kind: -kind["ms"]), profile


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


def _said(measurement: Measurement, unit: str) -> str:
    latency = measurement.latency_ms
    return (f"{measurement.label}: {measurement.fps:.1f} {unit}, latency p50 {latency.get('p50', 0):.2f} ms, "
            f"p90 {latency.get('p90', 0):.2f} ms, p99 {latency.get('p99', 0):.2f} ms, medians of "
            f"{len(measurement.rounds)} rounds (spread {measurement.spread.get('fps', 0):.0%} {unit}, "
            f"{measurement.spread.get('p50', 0):.0%} p50; {measurement.iterations} inferences, "
            f"{measurement.requests} request{'s' if measurement.requests > 1 else ''}, "
            f"{measurement.threads} threads).")


def benchmark_summary(result: dict) -> dict:
    """The figures a comparison shows, from a benchmark job's result (`BenchmarkResult.as_dict()`
    with an optional "torch" measurement): latency p50 under the latency hint, images/s under the
    throughput hint (in f32, not at a device default precision), and the speedups over torch eager
    measured in the same job."""
    by_hint = {m["hint"]: m for m in result.get("measurements", []) if m["hint"] and not m.get("default_precision")}
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
