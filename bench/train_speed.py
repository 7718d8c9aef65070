"""Training speed against the device's ceiling: does the data path keep the device busy?

    .venv/bin/python bench/train_speed.py [--rounds 3] [--epochs 3] [--skip-gpu]

Per configuration, in one run and in alternating rounds (the order swapped every other round):

  pipeline  workers.pipeline.training.train() on a JPEG dataset made here (a published dataset
            folder: 3 classes of noisy colour images, a little larger than the input), reading its
            decoded-image cache entry (built once beforehand, timed: cache_build_s) and augmenting
            on the device ("standard": random resized crops, flips, colour jitter), with a reporter
            that does nothing (the database's cost is bench/train_overhead.py's business).
            img/s: each run's median over epochs 2..N of the train loop's img/s (epoch 1 warms up;
            validation and checkpoints are not training).
  ceiling   the same model, batch, precision and optimizer step (AdamW with the pipeline's
            parameter groups, and on CUDA the device settings train() picks: channels_last, fused,
            bf16 autocast, or fp16 with a grad scaler, TF32, cuDNN autotuning) on
            one synthetic batch already on the device: what the device does when data costs nothing.

Configurations: small_cnn at 32 px and resnet18 at 112 px on the CPU (batch 32, the training
default; one torch thread unless --threads), resnet18 at 224 px, batch 256 on CUDA where there is a GPU (null otherwise). Each
figure is the median of its rounds, never the best; spreads ((largest - smallest) / median) and
the CPU the rest of the machine used are printed. The last line is one JSON object:

    {"cpu_small_cnn_ratio": ..., "cpu_resnet18_ratio": ..., "gpu_resnet18_ratio": ... | null,
     "cache_build_s": ..., "img_s": {...}, "spread": {...}, ...}

Goals: both CPU ratios >= 0.85 (2 cores); on an H200/A100 class GPU, >= 0.70.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _harness import cpu_seconds, machine_busy_seconds, spread

CLASSES = ("red", "green", "blue")


def make_dataset(root: Path, per_class: int, side: int, seed: int = 0) -> Path:
    """3 classes told apart by their dominant colour under noise, JPEG files a little larger than
    the input (side x 4/3 side), as a published dataset folder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    items = []
    for split, count in (("train", per_class), ("val", max(1, per_class // 5))):
        for number, label in enumerate(CLASSES):
            folder = root / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 200, (side, side * 4 // 3, 3)).astype(np.float32)
                pixels[..., number] += 45
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
                items.append({"path": f"{split}/{label}/{i:05d}.jpg", "label": label, "split": split,
                              "width": side * 4 // 3, "height": side, "mode": "RGB", "format": "JPEG", "thumb": ""})
    (root / "index.json").write_text(json.dumps({"classes": list(CLASSES), "items": items, "report": {}}))
    return root


def run_pipeline(config, dataset: Path, entry: Path, out: Path, device: str) -> float:
    from workers.pipeline.reporting import SilentReporter
    from workers.pipeline.training import train

    result = train(config, dataset, out, SilentReporter(), device=device, cache=entry, cache_identity="bench")
    return statistics.median(epoch["img_per_s"] for epoch in result.history[1:])


def run_ceiling(config, device: str, seconds: float) -> float:
    """The pipeline's training step on one batch that is already on the device, for at least
    `seconds` after 3 warm-up steps."""
    import torch

    from workers.pipeline import devices
    from workers.pipeline.training import _resolve, build_model

    config = _resolve(config)
    where = torch.device(device)
    cuda = where.type == "cuda"
    settings = devices.decide(devices.capabilities(where), amp=config.amp, workers=0)  # as train() decides
    devices.apply(settings)
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    model = build_model(config.architecture, len(CLASSES)).to(where, memory_format=memory_format).train()
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr,
                                  fused=True if settings.fused_optimizer else None)
    scaler = torch.amp.GradScaler("cuda", enabled=settings.grad_scaler)
    criterion = torch.nn.CrossEntropyLoss()
    generator = torch.Generator(device=where).manual_seed(0)
    x = torch.randn(config.batch_size, 3, config.input_size, config.input_size, device=where, generator=generator)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, len(CLASSES), (config.batch_size,), device=where, generator=generator)
    autocast = settings.autocast()
    losses = []

    def step() -> None:
        with autocast:
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.detach())

    for _ in range(3):
        step()
    if cuda:
        torch.cuda.synchronize(where)
    began, steps = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        for _ in range(5):  # between looks at the clock (on CUDA the steps queue up)
            step()
        steps += 5
        if cuda:
            torch.cuda.synchronize(where)
    torch.stack(losses).sum().item()  # waits for the device
    return steps * config.batch_size / (time.perf_counter() - began)


def measure(name: str, config, *, per_class: int, device: str, rounds: int, ceiling_seconds: float,
            work: Path) -> dict:
    from workers.pipeline import devices, imagecache
    from workers.pipeline.augment import read_index
    from workers.pipeline.reporting import SilentReporter

    dataset = make_dataset(work / name / "dataset", per_class, side=round(config.input_size * 1.25))
    entry = work / name / "cache"
    began = time.perf_counter()
    imagecache.open_cache(entry, read_index(dataset), identity="bench", size=imagecache.cache_size(config.input_size),
                          reporter=SilentReporter(),
                          workers=devices.auto_workers(devices.host_cores()) if config.workers is None else config.workers)
    build_s = time.perf_counter() - began
    runs: dict[str, list[float]] = {"pipeline": [], "ceiling": []}
    for round_ in range(rounds):
        for path in (("pipeline", "ceiling") if round_ % 2 == 0 else ("ceiling", "pipeline")):
            if path == "pipeline":
                runs[path].append(run_pipeline(config, dataset, entry, work / name / f"out-{round_}", device))
            else:
                runs[path].append(run_ceiling(config, device, ceiling_seconds))
        print(f"{name} round {round_ + 1}: pipeline {runs['pipeline'][-1]:.1f} img/s, "
              f"ceiling {runs['ceiling'][-1]:.1f} img/s", flush=True)
    pipeline, ceiling = (statistics.median(runs[path]) for path in ("pipeline", "ceiling"))
    print(f"{name}: {config.architecture} at {config.input_size} px, batch {config.batch_size} on {device}, "
          f"{per_class * len(CLASSES)} train images: pipeline {pipeline:.1f} img/s, ceiling {ceiling:.1f} img/s, "
          f"ratio {pipeline / ceiling:.3f}; cache built in {build_s:.1f} s", flush=True)
    return {"ratio": round(pipeline / ceiling, 3), "pipeline_img_s": round(pipeline, 1),
            "ceiling_img_s": round(ceiling, 1), "cache_build_s": round(build_s, 2),
            "spread": {"pipeline": spread(runs["pipeline"]), "ceiling": spread(runs["ceiling"])}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="pipeline/ceiling pairs per configuration (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per pipeline run, the first warm-up (default 3)")
    parser.add_argument("--skip-gpu", action="store_true", help="only the CPU configurations")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads on the CPU, both paths (default 1: on a 2-core machine shared with "
                             "anything else, two threads wait on each other and numbers swing many times over)")
    args = parser.parse_args()
    if args.rounds < 3 or args.epochs < 2:
        parser.error("--rounds must be at least 3 and --epochs at least 2")

    import torch

    from workers.pipeline.training import TrainConfig

    torch.set_num_threads(args.threads)  # train() keeps it (it only ever lowers it on CPU)

    common = {"epochs": args.epochs, "augment": "standard", "flip": True, "pretrained": False, "seed": 0}
    plans = {
        "cpu_small_cnn": (TrainConfig(architecture="small_cnn", input_size=32, batch_size=32, **common), 200, 5.0),
        "cpu_resnet18": (TrainConfig(architecture="resnet18", input_size=112, batch_size=32, **common), 32, 10.0),
    }
    gpu = torch.cuda.is_available() and not args.skip_gpu
    if gpu:
        plans["gpu_resnet18"] = (TrainConfig(architecture="resnet18", input_size=224, batch_size=256, workers=4,
                                             **common), 1500, 5.0)
    results = {}
    cpu_before, machine_before, began = cpu_seconds(), machine_busy_seconds(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vintner-train-speed-") as work:
        for name, (config, per_class, seconds) in plans.items():
            device = "cuda" if name.startswith("gpu") else "cpu"
            results[name] = measure(name, config, per_class=per_class, device=device, rounds=args.rounds,
                                    ceiling_seconds=seconds, work=Path(work))
    wall = time.monotonic() - began
    own = cpu_seconds() - cpu_before
    children = os.times().children_user + os.times().children_system
    rest = max(0.0, machine_busy_seconds() - machine_before - own - children)
    print(f"CPU over {wall:.0f} s: bench {100 * own / wall:.0f}%, its child processes {100 * children / wall:.0f}%, "
          f"rest of machine {100 * rest / wall:.0f}% (100% = one core; {os.cpu_count()} cores)")
    if rest / wall > 0.2:
        print("the rest of the machine was busy: wall-clock numbers are noisy, run again on a quiet machine")
    met = all(results[name]["ratio"] >= 0.85 for name in ("cpu_small_cnn", "cpu_resnet18"))
    print(f"goal (CPU ratios >= 0.85): {'met' if met else 'NOT met'}")
    largest = results.get("gpu_resnet18") or results["cpu_resnet18"]
    print(json.dumps({
        "cpu_small_cnn_ratio": results["cpu_small_cnn"]["ratio"],
        "cpu_resnet18_ratio": results["cpu_resnet18"]["ratio"],
        "gpu_resnet18_ratio": results["gpu_resnet18"]["ratio"] if gpu else None,
        "cache_build_s": largest["cache_build_s"],
        "cache_build_s_by_config": {name: r["cache_build_s"] for name, r in results.items()},
        "img_s": {name: {"pipeline": r["pipeline_img_s"], "ceiling": r["ceiling_img_s"]} for name, r in results.items()},
        "spread": {name: r["spread"] for name, r in results.items()},
        "rounds": args.rounds, "epochs": args.epochs, "rest_of_machine_cpu": round(rest / wall, 2),
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
