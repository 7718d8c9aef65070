"""Post-training INT8 quantization: speed on this CPU and accuracy, through Vintner's pipelines.

    .venv/bin/python bench/optimize.py                       # about 4 min on 2 cores
    .venv/bin/python bench/optimize.py --seconds 5 --skip-accuracy

All in one process (benchmark_app in child processes); no Redis, database or daphne.

Speed. torchvision resnet18 (random weights, 1000 classes, [1,3,224,224]) saved as a state_dict
in a temporary folder, then what the jobs run: prepare_model + convert(route="direct",
shape="static", precision="fp32") gives the FP32 IR, and quantization.quantize_ir(method="ptq",
preset="performance", subset_size=--subset-size) gives the INT8 IR, calibrated on generated
images (smooth random colour fields, 256x256 JPEGs; random weights have no accuracy to keep, so
the few validation images it scores carry arbitrary labels and their top-1 is not reported).
Then, on this CPU, in --rounds alternating rounds (3 by default; the order reversed every other
round), each measurement running --seconds a round:

  torch    the same resnet18 in eager mode, eval() and no_grad, batch 1, on as many threads as
           OpenVINO's latency hint uses for the FP32 IR: a few warm-up runs, then forwards back to
           back; median latency.
  fp32     OpenVINO's own benchmark_app on the FP32 IR with `-infer_precision f32`, `-d CPU -hint
           latency` (median latency) and `-hint throughput` (FPS), batch 1 ([1,3,224,224]).
  fp32_default  the same with OpenVINO's defaults (on a CPU with bf16: bf16).
  int8     the INT8 IR with the defaults.

FP32 means FP32: on a CPU with bf16 support (AVX-512 BF16, AMX) the CPU plugin's default inference
precision is bf16, so an "FP32 IR" run with OpenVINO's defaults runs its floating-point layers in
bf16. The headline FP32 figures are therefore benchmark_app with `-infer_precision f32` on the
FP32 IR; the INT8 IR runs with OpenVINO's defaults (what a deployment gets: INT8 layers in INT8,
the rest in the default precision). The FP32 IR is also measured with the defaults, reported as
`fp32_default_*` and `int8_vs_fp32_default_*` (on this CPU: bf16), so nothing is hidden.
Every figure is the median of its rounds, and `spread` holds each one's (largest − smallest) /
median (over 0.10 is said as noisy): the alternation keeps a burst of other work on the machine
out of one side of a ratio, and the spread shows how much it moved the figures.

  int8_vs_torch_latency    torch median latency / INT8 latency-hint median latency (same threads)
  int8_vs_fp32_latency     FP32 (f32) latency-hint median / INT8 latency-hint median
  int8_vs_fp32_throughput  INT8 throughput-hint FPS / FP32 (f32) throughput-hint FPS

Goals: ≥ 3.5, ≥ 2.0, ≥ 1.8.

Accuracy. scikit-learn's digits (1797 8x8 grayscale images of 0-9, shipped with the package, no
download), upscaled to 24x24 and padded to 32x32 PNGs in a published dataset folder (index.json +
images/, 20 % val, stratified, fixed seed); Vintner's train() trains small_cnn on it at 32 px
(--epochs, 3 by default: about 99 % val top-1, not saturated, so a drop shows; no augmentation:
flips do not suit digits), the best epoch's state_dict goes through the same conversion
(small_cnn, 10 classes, [1,3,32,32]) and quantize_ir calibrates on --subset-size of the train
images and scores the FP32 and INT8 IRs on the 360 val images (its own scoring: FP32 inference
precision wherever floating point runs). Goal: INT8 top-1 within 1 point of FP32
(`top1_drop_points` ≤ 1).

Telemetry: importing workers.pipeline records OpenVINO's telemetry opt-out for this user (the
consent file benchmark_app and NNCF read); the benchmark checks it is recorded before it runs
benchmark_app. The last line of output is one JSON object; everything else goes to stderr.
"""

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _harness import ROOT, cpu_seconds, machine_busy_seconds, spread

warnings.filterwarnings("ignore")  # torch.jit's deprecation notes, the tracer's chatter, NNCF's notes

import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402

from tests.fakes import FakeReporter  # noqa: E402
from workers.pipeline.conversion import ConversionResult, ConvertConfig, convert  # noqa: E402
from workers.pipeline.feeding import InputSpec  # noqa: E402
from workers.pipeline.formats import InspectConfig, prepare_model  # noqa: E402
from workers.pipeline.reporting import Span  # noqa: E402
from workers.pipeline.telemetry import telemetry_opt_out  # noqa: E402

BENCHMARK_APP = ROOT / ".venv" / "bin" / "benchmark_app"
SIZE = 224
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
ISA_FLAGS = ("amx_int8", "amx_bf16", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")
GOALS = {"int8_vs_torch_latency": 3.5, "int8_vs_fp32_latency": 2.0, "int8_vs_fp32_throughput": 1.8}


def say(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


# --- the machine ---------------------------------------------------------------------------------
def cpu_description() -> tuple[str, list[str]]:
    """The CPU's model name and which of ISA_FLAGS it has (from /proc/cpuinfo, else py-cpuinfo)."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    if not name or not flags:
        try:
            import cpuinfo

            info = cpuinfo.get_cpu_info()
            name = name or info.get("brand_raw", "")
            flags = flags or set(info.get("flags", []))
        except Exception:  # noqa: BLE001 - the description is informative only
            pass
    return name or "unknown", [flag for flag in ISA_FLAGS if flag in flags]


# --- models through Vintner's pipelines ----------------------------------------------------------
def to_ir(weights: Path, architecture: str, classes: int, size: int, folder: Path) -> ConversionResult:
    """A state_dict → FP32 IR, as a conversion job does it (bench/convert.py's path)."""
    reporter = FakeReporter()
    prepared = prepare_model([(weights, weights.name)], folder / "prepared", Span(reporter, 0.0, 0.1))
    return convert(prepared, InspectConfig(architecture=architecture, num_classes=classes, input_size=size),
                   ConvertConfig(route="direct", shape="static", input_size=(size, size), precision="fp32"),
                   folder / "fp32", Span(reporter, 0.1, 1.0))


def quantize(fp32_xml: Path, calibration: list[Path], validation: list[Path], labels: list[int], classes: int,
             spec: InputSpec, subset_size: int, out: Path):
    try:
        from workers.pipeline.quantization import QuantizeConfig, QuantizeData, quantize_ir
    except ImportError as error:
        sys.exit(f"workers/pipeline/quantization.py cannot be imported ({error}): this benchmark needs it.")
    data = QuantizeData(calibration=calibration, validation=validation, labels=labels, classes=classes)
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is for the JSON line
        result = quantize_ir(source=fp32_xml, data=data, spec=spec,
                             config=QuantizeConfig(method="ptq", subset_size=subset_size, preset="performance"),
                             out=out, span=Span(FakeReporter(), 0.0, 1.0))
    return result, time.perf_counter() - started


def show_stages(title: str, result, total: float) -> None:
    say(f"{title}: {result.calibration_images} calibration images, {result.quantized_layers} quantized layers")
    for warning in result.warnings:
        say(f"  warning: {warning}")
    seconds = result.seconds
    say("  seconds per stage:")
    for name, value in seconds.items():
        say(f"    {name:<20} {value:7.2f}")
    say(f"    {'total (wall)':<20} {total:7.2f}")


# --- generated images for calibration -------------------------------------------------------------
def noise_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Smooth random colour fields with some grain, 256x256 JPEGs: activations in a plausible
    range, unlike white noise (the network's first layers see edges and blobs)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (int(rng.integers(3, 12)),) * 2 + (3,), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((256, 256), Image.Resampling.BICUBIC), np.float32)
        pixels = field + rng.normal(0, 12, field.shape)
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


# --- speed ---------------------------------------------------------------------------------------
def torch_latency(model: torch.nn.Module, seconds: float, threads: int) -> dict:
    """Eager batch-1 latency on `threads` threads: a few warm-up forwards, then forwards back to
    back for `seconds`; the median and the count."""
    x = torch.randn(1, 3, SIZE, SIZE)
    kept = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = []
    try:
        with torch.no_grad():
            for _ in range(3):
                model(x)
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline or len(times) < 5:
                began = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - began)
    finally:
        torch.set_num_threads(kept)
    return {"median_ms": 1000 * statistics.median(times), "count": len(times)}


def openvino_threads(xml: Path) -> int:
    """The inference threads OpenVINO's latency hint gives this model here: torch gets as many."""
    compiled = ov.Core().compile_model(str(xml), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    return int(compiled.get_property("INFERENCE_NUM_THREADS"))


def benchmark_app(xml: Path, hint: str, seconds: float, precision: str = "") -> dict:
    """OpenVINO's benchmark_app on the CPU with the given hint and defaults otherwise; its report."""
    command = [str(BENCHMARK_APP), "-m", str(xml), "-d", "CPU", "-hint", hint, "-shape", f"[1,3,{SIZE},{SIZE}]",
               "-t", f"{max(1, round(seconds))}", *(["-infer_precision", precision] if precision else [])]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    text = done.stdout + done.stderr
    if done.returncode != 0:
        sys.exit(f"benchmark_app failed ({done.returncode}): {' '.join(command)}\n{text[-3000:]}")

    def find(pattern: str) -> str:
        match = re.search(pattern, text, re.MULTILINE)
        if not match:
            sys.exit(f"benchmark_app's report has no {pattern!r}:\n{text[-3000:]}")
        return match.group(1)

    precision = re.search(r"INFERENCE_PRECISION_HINT:\s*(?:<Type: ')?([\w]+)", text)
    streams = re.search(r"NUM_STREAMS:\s*(\d+)", text)
    return {
        "median_ms": float(find(r"Latency:\s*\n.*Median:\s*([\d.]+)\s*ms")),
        "fps": float(find(r"Throughput:\s*([\d.]+)\s*FPS")),
        "count": int(find(r"Count:\s*(\d+)\s*iterations")),
        "precision": precision.group(1) if precision else "",
        "streams": int(streams.group(1)) if streams else 0,
    }


def measure(model: torch.nn.Module, fp32_xml: Path, int8_xml: Path | None, seconds: float, rounds: int,
            threads: int) -> dict:
    """`rounds` rounds, each measuring torch eager (latency, `threads` threads) and benchmark_app with
    each hint on each variant: the FP32 IR in f32 and with the defaults, the INT8 IR with the
    defaults. The order is reversed every other round, so a burst of other work on the machine
    lands on every side of a ratio."""
    runs: dict[tuple[str, str], list[dict]] = {}
    variants = [("fp32", fp32_xml, "f32"), ("fp32_default", fp32_xml, "")] + ([("int8", int8_xml, "")] if int8_xml else [])
    plan = [("torch", None, "", "latency")] + [(name, xml, precision, hint) for hint in ("latency", "throughput")
                                                for name, xml, precision in variants]
    for round_ in range(rounds):
        for name, xml, precision, hint in (plan if round_ % 2 == 0 else plan[::-1]):
            if name == "torch":
                report = torch_latency(model, seconds, threads)
                say(f"  round {round_ + 1} torch eager ({threads} threads)   : median {report['median_ms']:7.2f} ms "
                    f"({report['count']} forwards)")
            else:
                report = benchmark_app(xml, hint, seconds, precision)
                say(f"  round {round_ + 1} {name} -hint {hint:<10}: median {report['median_ms']:7.2f} ms, "
                    f"{report['fps']:8.1f} FPS ({report['count']} iterations, {report['streams']} streams, "
                    f"precision {report['precision']})")
            runs.setdefault((name, hint), []).append(report)
    return runs


def speed(args: argparse.Namespace, root: Path) -> dict:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=1000).eval()
    weights = root / "resnet18.pth"
    torch.save(model.state_dict(), weights)
    say(f"resnet18 (random weights), torch {torch.__version__}, OpenVINO {ov.__version__.split('-')[0]}")

    started = time.perf_counter()
    converted = to_ir(weights, "resnet18", 1000, SIZE, root / "resnet18")
    say(f"conversion: {time.perf_counter() - started:.1f} s, check max |diff| {converted.equivalence.max_abs_diff:.2g}")
    fp32_xml = converted.folder / "model.xml"

    int8_xml = None
    if not args.skip_quantize:
        started = time.perf_counter()
        calibration = noise_images(root / "resnet18-calibration", args.subset_size)
        validation = calibration[:8]  # arbitrary labels: random weights have no accuracy to keep
        say(f"{len(calibration)} calibration images generated in {time.perf_counter() - started:.1f} s")
        spec = InputSpec.of({"input_size": [SIZE, SIZE], "color": "RGB", **IMAGENET})
        result, wall = quantize(fp32_xml, calibration, validation, list(range(len(validation))), 1000, spec,
                                args.subset_size, root / "resnet18" / "int8")
        show_stages("quantize_ir (resnet18)", result, wall)
        int8_xml = result.folder / "model.xml"

    if not telemetry_opt_out():
        sys.exit("OpenVINO's telemetry opt-out could not be recorded; not running benchmark_app.")
    threads = openvino_threads(fp32_xml)
    say(f"\n{args.rounds} rounds, {args.seconds:g} s per run: torch eager on {threads} threads (OpenVINO's latency "
        f"hint's), benchmark_app on each IR and hint:")
    runs = measure(model, fp32_xml, int8_xml, args.seconds, args.rounds, threads)

    def series(name: str, hint: str, key: str) -> list[float]:
        return [run[key] for run in runs.get((name, hint), [])]

    def median(name: str, hint: str, key: str) -> float | None:
        values = series(name, hint, key)
        return statistics.median(values) if values else None

    torch_ms = median("torch", "latency", "median_ms")
    fp32_ms, fp32_fps = median("fp32", "latency", "median_ms"), median("fp32", "throughput", "fps")
    default_ms, default_fps = median("fp32_default", "latency", "median_ms"), median("fp32_default", "throughput", "fps")
    int8_ms, int8_fps = median("int8", "latency", "median_ms"), median("int8", "throughput", "fps")
    spreads = {f"{name}_latency" if hint == "latency" else f"{name}_fps":
               spread(series(name, hint, "median_ms" if hint == "latency" else "fps")) for name, hint in runs}
    noisy = {key: value for key, value in spreads.items() if value > 0.10}
    if noisy:
        say(f"noisy: spread over 10 % between rounds for {', '.join(f'{k} {v:.0%}' for k, v in noisy.items())}")
    out = {
        "torch_latency_ms": round(torch_ms, 3),
        "fp32_latency_ms": round(fp32_ms, 3),
        "int8_latency_ms": round(int8_ms, 3) if int8_ms else None,
        "fp32_fps": round(fp32_fps, 1),
        "int8_fps": round(int8_fps, 1) if int8_fps else None,
        "int8_vs_torch_latency": round(torch_ms / int8_ms, 2) if int8_ms else None,
        "int8_vs_fp32_latency": round(fp32_ms / int8_ms, 2) if int8_ms else None,
        "int8_vs_fp32_throughput": round(int8_fps / fp32_fps, 2) if int8_fps else None,
        "fp32_vs_torch_latency": round(torch_ms / fp32_ms, 2),
        "fp32_infer_precision": runs[("fp32", "latency")][0]["precision"],
        "fp32_default_latency_ms": round(default_ms, 3),
        "fp32_default_fps": round(default_fps, 1),
        "fp32_default_infer_precision": runs[("fp32_default", "latency")][0]["precision"],
        "int8_vs_fp32_default_latency": round(default_ms / int8_ms, 2) if int8_ms else None,
        "int8_vs_fp32_default_throughput": round(int8_fps / default_fps, 2) if int8_fps else None,
        "throughput_streams": runs[("fp32", "throughput")][0]["streams"],
        "torch_threads": threads,
        "spread": spreads,
    }
    return out


# --- accuracy --------------------------------------------------------------------------------------
def digits_dataset(root: Path, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """scikit-learn's digits as a published dataset folder: index.json and images/<split>/<label>/.
    The 8x8 images (0..16) are scaled to 0..255, upscaled to 24x24 and padded to 32x32, so the
    validation crop (short side to 32 / 0.875, centre 32) cuts only background."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    train, val = train_test_split(indices, test_size=val_fraction, stratify=digits.target, random_state=seed)
    split_of = {int(i): "train" for i in train} | {int(i): "val" for i in val}
    classes = [str(c) for c in range(10)]
    items = []
    for i in indices:
        label, split = str(int(digits.target[i])), split_of[int(i)]
        pixels = (digits.images[i] * (255 / 16)).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, mode="L").resize((24, 24), Image.Resampling.BILINEAR)
        canvas = Image.new("L", (32, 32), 0)
        canvas.paste(image, (4, 4))
        relative = f"{split}/{label}/{i:04d}.png"
        (root / "images" / split / label).mkdir(parents=True, exist_ok=True)
        canvas.save(root / "images" / relative)
        items.append({"path": relative, "label": label, "split": split, "width": 32, "height": 32, "mode": "L",
                      "format": "PNG", "thumb": ""})
    (root / "index.json").write_text(json.dumps({"classes": classes, "items": items, "report": {}}))
    return root


def accuracy(args: argparse.Namespace, root: Path) -> dict:
    from workers.pipeline.augment import read_index
    from workers.pipeline.training import TrainConfig, train

    started = time.perf_counter()
    dataset = digits_dataset(root / "digits")
    index = read_index(dataset)
    say(f"digits: {len(index.train)} train / {len(index.val)} val PNGs written in "
        f"{time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    trained = train(TrainConfig(architecture="small_cnn", epochs=args.epochs, batch_size=64, input_size=32,
                                augment="none", pretrained=False, workers=0, seed=0),
                    dataset, root / "digits-train", FakeReporter())
    train_s = time.perf_counter() - started
    say(f"train(small_cnn, {args.epochs} epochs): {train_s:.1f} s, best epoch {trained.best_epoch}, "
        f"val top-1 {100 * trained.final['val_top1']:.1f} % (torch)")

    started = time.perf_counter()
    converted = to_ir(trained.weights, "small_cnn", len(trained.classes), trained.input_size, root / "digits-ir")
    say(f"conversion: {time.perf_counter() - started:.1f} s, check max |diff| {converted.equivalence.max_abs_diff:.2g}")

    spec = InputSpec.of({"input_size": [trained.input_size] * 2, "color": "RGB", "mean": list(trained.mean),
                         "std": list(trained.std)})
    result, wall = quantize(converted.folder / "model.xml", list(index.train.files), list(index.val.files),
                            list(index.val.labels), len(trained.classes), spec, args.subset_size,
                            root / "digits-ir" / "int8")
    show_stages("quantize_ir (digits small_cnn)", result, wall)
    fp32, int8 = 100 * result.fp32.top1, 100 * result.int8.top1
    say(f"val top-1 ({len(index.val)} images): FP32 IR {fp32:.2f} %, INT8 IR {int8:.2f} %, "
        f"drop {fp32 - int8:.2f} points")
    return {"fp32_top1": round(fp32, 1), "int8_top1": round(int8, 1), "top1_drop_points": round(fp32 - int8, 2),
            "torch_top1": round(100 * trained.final["val_top1"], 1), "train_s": round(train_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5,
                        help="each benchmark_app run and torch loop, per round (default 5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of every measurement; medians (default 3, at least 3)")
    parser.add_argument("--subset-size", type=int, default=300, help="calibration images (default 300)")
    parser.add_argument("--epochs", type=int, default=3, help="small_cnn epochs on digits (default 3)")
    parser.add_argument("--skip-accuracy", action="store_true", help="no digits training and accuracy check")
    parser.add_argument("--skip-speed", action="store_true", help="no resnet18 quantization and speed runs")
    parser.add_argument("--skip-quantize", action="store_true", help=argparse.SUPPRESS)  # FP32 and torch only
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds is at least 3: a median of fewer rounds is one round's figure")

    cpu, isa = cpu_description()
    say(f"CPU: {cpu}, {os.cpu_count()} cores, {', '.join(isa) or 'none of ' + ', '.join(ISA_FLAGS)}")
    began, cpu_before, busy_before = time.perf_counter(), cpu_seconds(), machine_busy_seconds()
    summary: dict = {key: None for key in ("torch_latency_ms", "fp32_latency_ms", "int8_latency_ms", "fp32_fps",
                                           "int8_fps", *GOALS, "fp32_top1", "int8_top1", "top1_drop_points")}
    with tempfile.TemporaryDirectory(prefix="vintner-bench-optimize-") as tmp:
        root = Path(tmp)
        if not args.skip_accuracy:
            say("\n== accuracy: digits, small_cnn ==")
            summary.update(accuracy(args, root))
        if not args.skip_speed:
            say("\n== speed: resnet18 ==")
            summary.update(speed(args, root))
    wall = time.perf_counter() - began
    own_cpu, busy = cpu_seconds() - cpu_before, machine_busy_seconds() - busy_before

    say("\nGoals:")
    for key, goal in GOALS.items():
        value = summary.get(key)
        verdict = "" if value is None else ", met" if value >= goal else ", NOT met"
        say(f"  {key:<24} {'-' if value is None else value:>6}  (goal ≥ {goal}{verdict})")
    drop = summary.get("top1_drop_points")
    verdict = "" if drop is None else (", met" if drop <= 1 else ", NOT met") + \
        f"; FP32 {summary['fp32_top1']} %, INT8 {summary['int8_top1']} %"
    say(f"  {'top1_drop_points':<24} {'-' if drop is None else drop:>6}  (goal ≤ 1{verdict})")
    say(f"Wall {wall:.0f} s. CPU: this process {own_cpu:.0f} s (benchmark_app children not counted); the whole "
        f"machine {busy:.0f} s (the rest is benchmark_app and everything else running meanwhile)")
    print(json.dumps({**summary, "seconds": args.seconds, "rounds": args.rounds, "subset_size": args.subset_size,
                      "cpu": cpu, "isa": isa, "wall_s": round(wall, 1)}))


if __name__ == "__main__":
    main()
