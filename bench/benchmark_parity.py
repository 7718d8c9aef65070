"""Vintner's benchmark pipeline against OpenVINO's own benchmark_app, same IR, same run.

    .venv/bin/python bench/benchmark_parity.py                # 4 rounds of 5 s each: about 3 min
    .venv/bin/python bench/benchmark_parity.py --seconds 10 --rounds 6

The IR: torchvision resnet18 (random weights, 1000 classes), converted in this process with the two
calls a person writes, ov.convert_model(model, example_input=x, input=[1,3,224,224]) and
ov.save_model(..., compress_to_fp16=False): FP32, static [1,3,224,224], in a temporary folder.
(Not through Vintner's conversion pipeline: bench/convert.py measures that; the IR is the same.)

For each performance hint (latency, throughput) and each precision hint (f32: what Vintner's FP32
rows run at; default: the device's own, bf16 on a CPU with AVX-512 BF16 or AMX), on the CPU, for
--seconds each:

  benchmark_app  OpenVINO's own tool in a child process, as a user runs it:
                 `benchmark_app -m model.xml -d CPU -hint <hint> -t <seconds> -shape [1,3,224,224]`
                 (with `-infer_precision f32` for f32) and its defaults otherwise. Its report gives
                 "Throughput: X FPS" and the median latency, and the compiled model's settings
                 (streams, requests, precision).
  vintner        workers.pipeline.benchmark.benchmark(model.xml, BenchmarkConfig(shape, seconds,
                 hints=(hint,), precisions=(precision,), rounds=1, layer_runs=0), span) in this
                 process, what a benchmark job runs for one round: Measurement.fps and latency_ms["p50"].

Both do the same work: the same compiled settings (benchmark_app prints its compiled model's
properties; a plain compile_model with the hints gives the same ones), the same number of requests
and streams, input filled once before the loop, one first inference not counted, and the same
loop: under the latency hint one request run synchronously (benchmark_app's default API for that
hint), under the throughput hint an AsyncInferQueue of the optimal number of requests. One
difference is left: benchmark_app feeds an image-like input as u8 (it adds a Convert in front),
Vintner the IR's own f32; that Convert takes about 0.01 ms of a 4 ms inference (`-pc`).

The two alternate in --rounds rounds (at least 4; app then Vintner, then Vintner then app, the
cases in reverse order every other round) and each side's medians count, never its best round, so
a burst of other work on the shared machine lands on both sides alike. ratio = vintner_fps /
benchmark_app_fps, per hint and precision. Goal: 0.9 ≤ ratio ≤ 1.1 for every one of the four
(`goal_met`; the exit status is 1 when not). Each measurement's line shows the CPU the rest of the
machine used meanwhile, and each side's spread (largest − smallest round / median) is printed: on
2 cores anything else running takes a core from OpenVINO's pinned threads and the FPS of that run
drops by half or more, so a ratio outside the goal with busy neighbours and wide spreads says
nothing; run again on a quiet machine, or with more --rounds.

benchmark_app is started only once OpenVINO's telemetry opt-out is recorded for this user
(workers.pipeline.telemetry: the consent file benchmark_app reads). The last line of output is one
JSON object; everything else goes to stderr.
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _harness import ROOT, cpu_seconds, machine_busy_seconds, spread

warnings.filterwarnings("ignore")  # torch.jit's deprecation notes, the tracer's chatter

import openvino as ov  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from tests.fakes import FakeReporter  # noqa: E402
from workers.pipeline.benchmark import BenchmarkConfig, benchmark  # noqa: E402
from workers.pipeline.reporting import Span  # noqa: E402
from workers.pipeline.telemetry import telemetry_opt_out  # noqa: E402

BENCHMARK_APP = ROOT / ".venv" / "bin" / "benchmark_app"
SHAPE = [1, 3, 224, 224]
HINTS = ("latency", "throughput")
PRECISIONS = ("f32", "default")  # INFERENCE_PRECISION_HINT set to f32 (Vintner's FP32 rows), or the device's own
GOAL = (0.9, 1.1)


def say(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


def make_ir(folder: Path) -> Path:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=1000).eval()
    example = torch.randn(SHAPE)
    xml = folder / "model.xml"
    ov.save_model(ov.convert_model(model, example_input=example, input=SHAPE), xml, compress_to_fp16=False)
    return xml


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def benchmark_app(xml: Path, hint: str, precision: str, seconds: int) -> dict:
    """One benchmark_app run with the hint (and `-infer_precision f32` for f32) and its defaults
    otherwise; the figures from its report."""
    command = [str(BENCHMARK_APP), "-m", str(xml), "-d", "CPU", "-hint", hint, "-t", str(seconds),
               "-shape", "[" + ",".join(map(str, SHAPE)) + "]",
               *(["-infer_precision", precision] if precision != "default" else [])]
    cpu_before = children_cpu()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    text = done.stdout + done.stderr
    if done.returncode != 0:
        sys.exit(f"benchmark_app failed ({done.returncode}): {' '.join(command)}\n{text[-3000:]}")

    def find(pattern: str) -> re.Match:
        match = re.search(pattern, text, re.MULTILINE)
        if not match:
            sys.exit(f"benchmark_app's report has no {pattern!r}:\n{text[-3000:]}")
        return match

    median = find(r"Latency:\s*\n.*Median:\s*([\d.]+)\s*(ms|us)")
    precision = re.search(r"INFERENCE_PRECISION_HINT:\s*(?:<Type: ')?(\w+)", text)
    mode = re.search(r"Start inference (\w+)ly", text)
    return {
        "fps": float(find(r"Throughput:\s*([\d.]+)\s*FPS").group(1)),
        "p50_ms": float(median.group(1)) / (1000 if median.group(2) == "us" else 1),
        "count": int(find(r"Count:\s*(\d+)\s*iterations").group(1)),
        "streams": int(find(r"\sNUM_STREAMS:\s*(\d+)").group(1)),
        "requests": int(find(r"OPTIMAL_NUMBER_OF_INFER_REQUESTS:\s*(\d+)").group(1)),
        "precision": precision.group(1) if precision else "",
        "api": mode.group(1) if mode else "",
        "cpu_s": children_cpu() - cpu_before,
    }


def vintner(xml: Path, hint: str, precision: str, seconds: int) -> tuple[dict, dict]:
    """One measurement through Vintner's benchmark pipeline (one round: the rounds alternate here);
    its figures and the host it reports."""
    cpu_before = cpu_seconds()
    result = benchmark(xml, BenchmarkConfig(shape=SHAPE, seconds=seconds, hints=(hint,), matrix=(), layer_runs=0,
                                            rounds=1, precisions=(precision,)), Span(FakeReporter(), 0.0, 1.0))
    measurement = result.measurements[0]
    return {
        "precision": measurement.precision,
        "fps": measurement.fps,
        "p50_ms": measurement.latency_ms["p50"],
        "count": measurement.iterations,
        "streams": measurement.streams,
        "requests": measurement.requests,
        "cpu_s": cpu_seconds() - cpu_before,
    }, result.host


def show(side: str, run: int, case: str, figures: dict) -> None:
    extra = f", {figures['precision']}" + (f", {figures['api']}" if "api" in figures else "")
    say(f"  round {run + 1} {case:<18} {side:<13}: {figures['fps']:7.1f} FPS, p50 {figures['p50_ms']:6.2f} ms "
        f"({figures['count']} inferences, {figures['streams']} stream(s), {figures['requests']} request(s){extra}; "
        f"CPU {figures['cpu_s']:.1f} s, the rest of the machine {figures['others_cpu_s']:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5,
                        help="each measurement, both tools (whole seconds: benchmark_app's -t; default 5)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of every measurement; medians "
                                                              "(default 4, at least 4)")
    args = parser.parse_args()
    if args.seconds < 1 or args.rounds < 4:
        parser.error("--seconds must be at least 1 and --rounds at least 4")

    if not telemetry_opt_out():
        sys.exit("OpenVINO's telemetry opt-out could not be recorded; not running benchmark_app.")
    began, cpu_before, busy_before = time.perf_counter(), cpu_seconds(), machine_busy_seconds()
    cases = [(hint, precision) for precision in PRECISIONS for hint in HINTS]
    runs: dict[tuple[str, str, str], list[dict]] = {}
    host: dict = {}
    with tempfile.TemporaryDirectory(prefix="vintner-bench-parity-") as tmp:
        xml = make_ir(Path(tmp))
        say(f"resnet18 (random weights) → FP32 IR {SHAPE}; OpenVINO {ov.__version__.split('-')[0]}; "
            f"{args.rounds} rounds of {args.seconds} s per tool, hint and precision")
        for run in range(args.rounds):
            # app first in even rounds, Vintner first in odd ones, the cases in reverse order too: a
            # drift in the machine's load falls on both sides alike
            order = ("benchmark_app", "vintner") if run % 2 == 0 else ("vintner", "benchmark_app")
            for hint, precision in (cases if run % 2 == 0 else cases[::-1]):
                for side in order:
                    busy, own, kids = machine_busy_seconds(), cpu_seconds(), children_cpu()
                    if side == "benchmark_app":
                        figures = benchmark_app(xml, hint, precision, args.seconds)
                    else:
                        figures, host = vintner(xml, hint, precision, args.seconds)
                    figures["others_cpu_s"] = max(0.0, machine_busy_seconds() - busy - (cpu_seconds() - own)
                                                  - (children_cpu() - kids))
                    runs.setdefault((side, hint, precision), []).append(figures)
                    show(side, run, f"{hint}/{precision}", figures)
    wall = time.perf_counter() - began
    own_cpu, busy = cpu_seconds() - cpu_before, machine_busy_seconds() - busy_before

    summary: dict = {}
    say(f"\nMedians over {args.rounds} rounds, {args.seconds} s each:")
    for hint, precision in cases:
        def median(side: str, key: str) -> float:
            return statistics.median(figures[key] for figures in runs[(side, hint, precision)])

        def fps_spread(side: str) -> float:
            return spread([figures["fps"] for figures in runs[(side, hint, precision)]])

        vintner_fps, app_fps = median("vintner", "fps"), median("benchmark_app", "fps")
        ratio = vintner_fps / app_fps
        name = hint if precision == "f32" else f"{hint}_default"
        summary[name] = {
            "vintner_fps": round(vintner_fps, 2),
            "benchmark_app_fps": round(app_fps, 2),
            "ratio": round(ratio, 3),
            "vintner_p50_ms": round(median("vintner", "p50_ms"), 3),
            "benchmark_app_p50_ms": round(median("benchmark_app", "p50_ms"), 3),
            "vintner_spread": fps_spread("vintner"),
            "benchmark_app_spread": fps_spread("benchmark_app"),
            "precision": runs[("vintner", hint, precision)][0]["precision"],
            "benchmark_app_precision": runs[("benchmark_app", hint, precision)][0]["precision"],
        }
        verdict = "met" if GOAL[0] <= ratio <= GOAL[1] else "NOT met"
        app = runs[("benchmark_app", hint, precision)][0]
        say(f"  {hint:<10} {precision:<7} Vintner {vintner_fps:7.1f} FPS (p50 {summary[name]['vintner_p50_ms']:.2f} "
            f"ms, spread {summary[name]['vintner_spread']:.0%}), benchmark_app {app_fps:7.1f} FPS (p50 "
            f"{summary[name]['benchmark_app_p50_ms']:.2f} ms, spread {summary[name]['benchmark_app_spread']:.0%}): "
            f"ratio {ratio:.3f} (goal {GOAL[0]}-{GOAL[1]}, {verdict}); benchmark_app ran {app['api']}ly, "
            f"{app['streams']} stream(s), {app['requests']} request(s), precision {app['precision']}")
    ratios = [entry["ratio"] for entry in summary.values()]
    met = GOAL[0] <= min(ratios) and max(ratios) <= GOAL[1]
    say(f"Goal {'met' if met else 'NOT met'} for {'every' if met else 'not every'} hint and precision.")
    say(f"CPU: {host.get('cpu', '?')}, {host.get('logical_cores', '?')} cores, {', '.join(host.get('isa', []))}")
    say(f"Wall {wall:.0f} s. CPU: this process {own_cpu:.0f} s, benchmark_app children {children_cpu():.0f} s; the "
        f"whole machine {busy:.0f} s (the rest is everything else running meanwhile)")
    print(json.dumps({
        **summary,
        "vintner_fps": summary["throughput"]["vintner_fps"],
        "benchmark_app_fps": summary["throughput"]["benchmark_app_fps"],
        "ratio": summary["throughput"]["ratio"],
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "goal_met": met,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "cpu": host.get("cpu", ""),
        "isa": host.get("isa", []),
        "wall_s": round(wall, 1),
    }))
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
