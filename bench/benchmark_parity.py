"""Vintner's benchmark pipeline against OpenVINO's own benchmark_app, same IR, same run.

    .venv/bin/python bench/benchmark_parity.py                # 2 runs of each, 10 s each: about 1.5 min
    .venv/bin/python bench/benchmark_parity.py --seconds 20 --runs 3

The IR: torchvision resnet18 (random weights, 1000 classes), converted in this process with the two
calls a person writes, ov.convert_model(model, example_input=x, input=[1,3,224,224]) and
ov.save_model(..., compress_to_fp16=False): FP32, static [1,3,224,224], in a temporary folder.
(Not through Vintner's conversion pipeline: bench/convert.py measures that; the IR is the same.)

For each hint (latency, throughput), on the CPU, for --seconds each:

  benchmark_app  OpenVINO's own tool in a child process, as a user runs it:
                 `benchmark_app -m model.xml -d CPU -hint <hint> -t <seconds> -shape [1,3,224,224]`
                 and its defaults otherwise. Its report gives "Throughput: X FPS" and the median
                 latency, and the compiled model's settings (streams, requests, precision).
  vintner        workers.pipeline.benchmark.benchmark_ir(model.xml, BenchmarkConfig(shape, seconds,
                 hints=(hint,), matrix=(), layer_runs=0), span) in this process, what a benchmark
                 job runs: Measurement.fps and latency_ms["p50"].

Both do the same work: the same compiled settings (benchmark_app prints its compiled model's
properties; a plain compile_model with the hint gives the same ones), the same number of requests
and streams, input filled once before the loop, one first inference not counted, and the same
loop: under the latency hint one request run synchronously (benchmark_app's default API for that
hint), under the throughput hint an AsyncInferQueue of the optimal number of requests. One
difference is left: benchmark_app feeds an image-like input as u8 (it adds a Convert in front),
Vintner the IR's own f32; that Convert takes about 0.01 ms of a 4 ms inference (`-pc`).

The two alternate --runs times per hint (app then Vintner, then Vintner then app, ...) and each
side's medians count, so a burst of other work on the shared machine lands on both sides alike.
ratio = vintner_fps / benchmark_app_fps. Goal: 0.9 ≤ ratio ≤ 1.1 for both hints. Each
measurement's line shows the CPU the rest of the machine used meanwhile: on 2 cores anything else
running takes a core from OpenVINO's pinned threads and the FPS of that run drops by half or more,
so a ratio outside the goal with busy neighbours says nothing; ratio_best (each side's best run)
is the least disturbed comparison.

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

from _harness import ROOT, cpu_seconds, machine_busy_seconds

warnings.filterwarnings("ignore")  # torch.jit's deprecation notes, the tracer's chatter

import openvino as ov  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from tests.fakes import FakeReporter  # noqa: E402
from workers.pipeline.benchmark import BenchmarkConfig, benchmark_ir  # noqa: E402
from workers.pipeline.reporting import Span  # noqa: E402
from workers.pipeline.telemetry import telemetry_opt_out  # noqa: E402

BENCHMARK_APP = ROOT / ".venv" / "bin" / "benchmark_app"
SHAPE = [1, 3, 224, 224]
HINTS = ("latency", "throughput")
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


def benchmark_app(xml: Path, hint: str, seconds: int) -> dict:
    """One benchmark_app run with the hint and its defaults otherwise; the figures from its report."""
    command = [str(BENCHMARK_APP), "-m", str(xml), "-d", "CPU", "-hint", hint, "-t", str(seconds),
               "-shape", "[" + ",".join(map(str, SHAPE)) + "]"]
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


def vintner(xml: Path, hint: str, seconds: int) -> tuple[dict, dict]:
    """One measurement through Vintner's benchmark pipeline; its figures and the host it reports."""
    cpu_before = cpu_seconds()
    result = benchmark_ir(xml, BenchmarkConfig(shape=SHAPE, seconds=seconds, hints=(hint,), matrix=(), layer_runs=0),
                          Span(FakeReporter(), 0.0, 1.0))
    measurement = result.measurements[0]
    return {
        "fps": measurement.fps,
        "p50_ms": measurement.latency_ms["p50"],
        "count": measurement.iterations,
        "streams": measurement.streams,
        "requests": measurement.requests,
        "cpu_s": cpu_seconds() - cpu_before,
    }, result.host


def show(side: str, run: int, hint: str, figures: dict) -> None:
    extra = f", {figures['precision']}, {figures['api']}" if "api" in figures else ""
    say(f"  run {run + 1} {hint:<10} {side:<13}: {figures['fps']:7.1f} FPS, p50 {figures['p50_ms']:6.2f} ms "
        f"({figures['count']} inferences, {figures['streams']} stream(s), {figures['requests']} request(s){extra}; "
        f"CPU {figures['cpu_s']:.1f} s, the rest of the machine {figures['others_cpu_s']:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10,
                        help="each measurement, both tools (whole seconds: benchmark_app's -t; default 10)")
    parser.add_argument("--runs", type=int, default=2, help="measurements per tool and hint, alternating; medians "
                                                            "(default 2)")
    args = parser.parse_args()
    if args.seconds < 1 or args.runs < 1:
        parser.error("--seconds and --runs must be at least 1")

    if not telemetry_opt_out():
        sys.exit("OpenVINO's telemetry opt-out could not be recorded; not running benchmark_app.")
    began, cpu_before, busy_before = time.perf_counter(), cpu_seconds(), machine_busy_seconds()
    runs: dict[tuple[str, str], list[dict]] = {}
    host: dict = {}
    with tempfile.TemporaryDirectory(prefix="vintner-bench-parity-") as tmp:
        xml = make_ir(Path(tmp))
        say(f"resnet18 (random weights) → FP32 IR {SHAPE}; OpenVINO {ov.__version__.split('-')[0]}; "
            f"{args.runs} run(s) of {args.seconds} s per tool and hint")
        for run in range(args.runs):
            for hint in HINTS:
                # app first in even runs, Vintner first in odd ones: a drift in the machine's load
                # falls on both sides alike
                order = ("benchmark_app", "vintner") if run % 2 == 0 else ("vintner", "benchmark_app")
                for side in order:
                    busy, own, kids = machine_busy_seconds(), cpu_seconds(), children_cpu()
                    if side == "benchmark_app":
                        figures = benchmark_app(xml, hint, args.seconds)
                    else:
                        figures, host = vintner(xml, hint, args.seconds)
                    figures["others_cpu_s"] = max(0.0, machine_busy_seconds() - busy - (cpu_seconds() - own)
                                                  - (children_cpu() - kids))
                    runs.setdefault((side, hint), []).append(figures)
                    show(side, run, hint, figures)
    wall = time.perf_counter() - began
    own_cpu, busy = cpu_seconds() - cpu_before, machine_busy_seconds() - busy_before

    summary: dict = {}
    say(f"\nMedians over {args.runs} run(s), {args.seconds} s each:")
    for hint in HINTS:
        def median(side: str, key: str) -> float:
            return statistics.median(figures[key] for figures in runs[(side, hint)])

        vintner_fps, app_fps = median("vintner", "fps"), median("benchmark_app", "fps")
        ratio = vintner_fps / app_fps
        summary[hint] = {
            "vintner_fps": round(vintner_fps, 2),
            "benchmark_app_fps": round(app_fps, 2),
            "ratio": round(ratio, 3),
            "vintner_p50_ms": round(median("vintner", "p50_ms"), 3),
            "benchmark_app_p50_ms": round(median("benchmark_app", "p50_ms"), 3),
            # each side's best run: the one the rest of the machine disturbed least
            "ratio_best": round(max(f["fps"] for f in runs[("vintner", hint)])
                                / max(f["fps"] for f in runs[("benchmark_app", hint)]), 3),
        }
        verdict = "met" if GOAL[0] <= ratio <= GOAL[1] else "NOT met"
        app = runs[("benchmark_app", hint)][0]
        say(f"  {hint:<10} Vintner {vintner_fps:7.1f} FPS (p50 {summary[hint]['vintner_p50_ms']:.2f} ms), "
            f"benchmark_app {app_fps:7.1f} FPS (p50 {summary[hint]['benchmark_app_p50_ms']:.2f} ms): ratio "
            f"{ratio:.3f} (goal {GOAL[0]}-{GOAL[1]}, {verdict}; best runs {summary[hint]['ratio_best']:.3f}); "
            f"benchmark_app ran {app['api']}ly, {app['streams']} stream(s), {app['requests']} request(s), "
            f"precision {app['precision']}")
    ratios = [summary[hint]["ratio"] for hint in HINTS]
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
        "seconds": args.seconds,
        "runs": args.runs,
        "cpu": host.get("cpu", ""),
        "isa": host.get("isa", []),
        "wall_s": round(wall, 1),
    }))


if __name__ == "__main__":
    main()
