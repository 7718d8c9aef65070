"""Model conversion: Vintner's pipeline against a bare OpenVINO conversion script, same process.

    .venv/bin/python bench/convert.py [--runs 5] [--samples N]

Model: torchvision resnet18, random weights, 1000 classes, input [1,3,224,224], FP32.

Reference (bare): the two calls a person would write —
    ov.convert_model(model, example_input=x, input=[1,3,224,224])
    ov.save_model(model, "model.xml", compress_to_fp16=False)
with the model already in memory.

Vintner's path: the same model saved as a state_dict (resnet18.pth) in a temporary folder, then
what a conversion job runs: prepare_model (sniff, scan the pickle, place it) and
convert(route="direct", shape="static", precision="fp32"), which loads the state_dict into
torchvision resnet18, converts, saves, and checks the IR against the module on `--samples`
generated inputs (compiled on CPU with FP32 inference precision; default: the job's default, 4).

Both are run once to warm up (the first convert_model imports and initialises a lot), then
alternately `--runs` times, the order reversed every other run; medians are reported (never the
fastest run), with each one's spread. ratio = vintner_s / bare_s. max_abs_diff is the
pipeline's own check (IR vs the PyTorch module). Goals: ratio ≤ 1.2, max_abs_diff ≤ 1e-4.
The last line of output is one JSON object.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _harness import cpu_seconds, machine_busy_seconds, spread

warnings.filterwarnings("ignore")  # torch.jit's deprecation notes, the tracer's chatter

import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from tests.fakes import FakeReporter  # noqa: E402
from workers.pipeline.conversion import ConvertConfig, convert  # noqa: E402
from workers.pipeline.formats import InspectConfig, prepare_model  # noqa: E402
from workers.pipeline.reporting import Span  # noqa: E402

SHAPE = [1, 3, 224, 224]


def bare(model: torch.nn.Module, example: torch.Tensor, out: Path) -> float:
    start = time.perf_counter()
    converted = ov.convert_model(model, example_input=example, input=SHAPE)
    ov.save_model(converted, out / "model.xml", compress_to_fp16=False)
    return time.perf_counter() - start


def bare_traced(model: torch.nn.Module, example: torch.Tensor, out: Path) -> float:
    """The bare script as it could be written: traced without torch.jit.trace's check_trace (as
    Vintner does, which checks the IR against the module instead), then converted and saved."""
    start = time.perf_counter()
    traced = torch.jit.trace(model, (example,), strict=False, check_trace=False)
    converted = ov.convert_model(traced, example_input=example, input=SHAPE)
    ov.save_model(converted, out / "model.xml", compress_to_fp16=False)
    return time.perf_counter() - start


def vintner(weights: Path, folder: Path, samples: int) -> tuple[float, dict]:
    reporter = FakeReporter()
    start = time.perf_counter()
    prepared = prepare_model([(weights, weights.name)], folder / "prepared", Span(reporter, 0.0, 0.1))
    prepared_at = time.perf_counter()
    result = convert(prepared, InspectConfig(architecture="resnet18", num_classes=1000, input_size=224),
                     ConvertConfig(route="direct", shape="static", input_size=(224, 224), precision="fp32",
                                   samples=samples), folder / "ir", Span(reporter, 0.1, 1.0))
    seconds = time.perf_counter() - start
    return seconds, {"prepare": prepared_at - start, **result.seconds, "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--samples", type=int, default=ConvertConfig.samples,
                        help=f"inputs the pipeline's check runs (default {ConvertConfig.samples}, as in a job)")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=1000).eval()
    example = torch.randn(SHAPE)
    with tempfile.TemporaryDirectory(prefix="vintner-bench-convert-") as tmp:
        root = Path(tmp)
        weights = root / "resnet18.pth"
        torch.save(model.state_dict(), weights)
        print(f"resnet18 state_dict: {weights.stat().st_size / 2**20:.1f} MB; torch threads {torch.get_num_threads()}, "
              f"OpenVINO {ov.__version__.split('-')[0]}, torch {torch.__version__}", file=sys.stderr)

        def folder(name: str) -> Path:
            path = root / name
            path.mkdir()
            return path

        bare(model, example, folder("bare-warmup"))
        bare_traced(model, example, folder("traced-warmup"))
        vintner(weights, folder("vintner-warmup"), args.samples)

        cpu_before, busy_before = cpu_seconds(), machine_busy_seconds()
        bare_times, traced_times, vintner_times, stages = [], [], [], []
        paths = ("bare", "traced", "vintner")
        for run in range(args.runs):
            for path in (paths if run % 2 == 0 else paths[::-1]):  # alternating: a burst of load hits all
                if path == "bare":
                    bare_times.append(bare(model, example, folder(f"bare-{run}")))
                elif path == "traced":
                    traced_times.append(bare_traced(model, example, folder(f"traced-{run}")))
                else:
                    seconds, breakdown = vintner(weights, folder(f"vintner-{run}"), args.samples)
                    vintner_times.append(seconds)
                    stages.append(breakdown)
            print(f"run {run + 1}: bare {bare_times[-1]:.3f} s, bare traced without check_trace "
                  f"{traced_times[-1]:.3f} s, vintner {vintner_times[-1]:.3f} s", file=sys.stderr)
        own_cpu, busy = cpu_seconds() - cpu_before, machine_busy_seconds() - busy_before

        # the bare IR, checked the same way, for comparison with the pipeline's own figure
        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(root / "bare-0" / "model.xml")), "CPU",
                                      {"INFERENCE_PRECISION_HINT": "f32"})
        generator = torch.Generator().manual_seed(0)
        worst = 0.0
        with torch.no_grad():
            for _ in range(args.samples):
                x = torch.randn(SHAPE, generator=generator)
                worst = max(worst, float(np.abs(compiled(x.numpy())[0] - model(x).numpy()).max()))

    result = stages[-1]["result"]
    bare_s, vintner_s = statistics.median(bare_times), statistics.median(vintner_times)
    traced_s = statistics.median(traced_times)
    print("\nVintner, median seconds per stage:", file=sys.stderr)
    for name in ("prepare", "loading", "converting", "saving", "verifying"):
        values = [s.get(name, 0.0) for s in stages]
        print(f"  {name:<11} {statistics.median(values):7.3f}", file=sys.stderr)
    print(f"  {'total':<11} {vintner_s:7.3f}   (bare convert_model + save_model: {bare_s:.3f}; "
          f"the same traced without check_trace: {traced_s:.3f})", file=sys.stderr)
    spreads = {name: spread(times)
              for name, times in (("bare", bare_times), ("traced", traced_times), ("vintner", vintner_times))}
    print(f"Spread of the runs ((largest − smallest) / median; over 0.10: noisy, run again on a quiet machine): "
          + ", ".join(f"{name} {value:.0%}" for name, value in spreads.items()), file=sys.stderr)
    check = result.equivalence
    print(f"\nPipeline check: {check.samples} samples, max |diff| {check.max_abs_diff:.3g}, mean "
          f"{check.mean_abs_diff:.3g}, top-1 agreement {check.top1_agreement:.0%} ({check.reference}); "
          f"the bare IR, checked the same way: max |diff| {worst:.3g}", file=sys.stderr)
    print(f"CPU: this process {own_cpu:.1f} s over the timed runs; the whole machine {busy:.1f} s "
          f"(the difference is everything else running meanwhile)", file=sys.stderr)
    print(json.dumps({
        "bare_s": round(bare_s, 3),
        "vintner_s": round(vintner_s, 3),
        "ratio": round(vintner_s / bare_s, 3),
        "bare_traced_s": round(traced_s, 3),
        "ratio_traced": round(vintner_s / traced_s, 3),
        "max_abs_diff": check.max_abs_diff,
        "route": result.route,
        "samples": check.samples,
        "runs": args.runs,
        "spread": spreads,
    }))


if __name__ == "__main__":
    main()
