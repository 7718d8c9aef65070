"""Training overhead: what Vintner's training pipeline costs over a bare PyTorch loop.

    .venv/bin/python bench/train_overhead.py [--epochs 4] [--images 300] [--rounds 6] [--isolate]

Both paths train the same model (small_cnn at 32 px, batch 64, AdamW, one torch thread) on the
same generated dataset (3 classes, --images train and --images/5 val images per class, PNG files
in a published dataset folder) for the same number of steps, with the same DataLoader settings
(2 worker processes, persistent, shuffled, no pinning: CPU) and AMP off, and validate after
every epoch:

  bare     a hand-written loop: ImageFolder-style dataset (PIL), the same augmentation ops with
           ToDtype+Normalize in the workers, plain AdamW, loss.item() per step, a val pass.
  vintner  workers.pipeline.training.train() reporting through the real
           workers.progress.JobReporter to a running job row in a private stack (SQLite, Redis,
           events batched every 0.1 s), writing a checkpoint after every epoch (checkpoint_minutes=0;
           in the background) that the caller copies into the stack's data folder (and records on
           the job row).
  --isolate adds train() with a reporter that does nothing: the pipeline without the database.

Epoch 1 of each run is warm-up (worker start, allocator, first-call costs) and not counted:
images/s = train images of epochs 2..N / wall time from the end of epoch 1 to the end of epoch N,
validation and checkpoints included. Runs alternate --rounds times (bare first in even rounds,
vintner first in odd ones) and each path's median round counts, never its best: a burst of other
work on the machine lands on both paths alike, and the spread ((largest − smallest) / median of
each path's rounds) shows how much it moved them; the CPU the rest of the machine used is
printed. The last line is one JSON object.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from _harness import Stack, cpu_seconds, machine_busy_seconds, spread

MODEL, SIZE, BATCH, WORKERS = "small_cnn", 32, 64, 2


def make_dataset(root: Path, per_class: int, seed: int = 0) -> Path:
    """3 classes told apart by their dominant colour under noise, as a published dataset folder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    classes, items = ["red", "green", "blue"], []
    for split, count in (("train", per_class), ("val", max(1, per_class // 5))):
        for number, label in enumerate(classes):
            folder = root / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 200, (SIZE, SIZE, 3)).astype(np.float32)
                pixels[..., number] += 45
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
                items.append({"path": f"{split}/{label}/{i:04d}.png", "label": label, "split": split, "width": SIZE,
                              "height": SIZE, "mode": "RGB", "format": "PNG", "thumb": ""})
    (root / "index.json").write_text(json.dumps({"classes": classes, "items": items, "report": {}}))
    return root


# --- bare PyTorch ----------------------------------------------------------------------------------
def run_bare(dataset: Path, epochs: int, lr: float, weight_decay: float, seed: int) -> dict:
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    from workers.pipeline.training import SmallCNN

    index = json.loads((dataset / "index.json").read_text())
    classes = index["classes"]

    class Files(Dataset):
        def __init__(self, split: str, transform) -> None:
            self.items = [(dataset / "images" / item["path"], classes.index(item["label"]))
                          for item in index["items"] if item["split"] == split]
            self.transform = transform

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int):
            path, label = self.items[i]
            with Image.open(path) as image:
                return self.transform(image.convert("RGB")), label

    tail = [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    train_tf = v2.Compose([v2.RandomResizedCrop(SIZE, scale=(0.35, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                           v2.ColorJitter(0.2, 0.2, 0.2), *tail])
    val_tf = v2.Compose([v2.Resize(round(SIZE / 0.875), antialias=True), v2.CenterCrop(SIZE), *tail])
    torch.manual_seed(seed)
    train_set, val_set = Files("train", train_tf), Files("val", val_tf)
    settings = {"num_workers": WORKERS, "persistent_workers": True, "pin_memory": False}
    train_loader = DataLoader(train_set, batch_size=BATCH, shuffle=True,
                              drop_last=len(train_set) % BATCH == 1, **settings)
    val_loader = DataLoader(val_set, batch_size=BATCH, **settings)
    model = SmallCNN(len(classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    criterion = torch.nn.CrossEntropyLoss()
    ends, cpus, train_s, val_s, counted = [], [], [], [], []
    steps = len(train_loader)
    for _ in range(epochs):
        began = time.perf_counter()
        model.train()
        total, seen = 0.0, 0
        for images, labels in train_loader:
            loss = criterion(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
            seen += labels.shape[0]
        counted.append(seen)
        middle = time.perf_counter()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += (model(images).argmax(1) == labels).sum().item()
        ends.append(time.perf_counter())
        cpus.append(cpu_seconds())
        train_s.append(middle - began)
        val_s.append(ends[-1] - middle)
    del train_loader, val_loader  # stops the loader workers
    images = sum(counted[1:])
    return {"img_s": images / (ends[-1] - ends[0]), "cpu_ms_per_img": 1000 * (cpus[-1] - cpus[0]) / images,
            "steps_per_epoch": steps, "train_s": train_s[1:], "val_s": val_s[1:], "val_top1": correct / len(val_set),
            "train_images": len(train_set)}


# --- Vintner -------------------------------------------------------------------------------------
def silent_reporter():
    """Says nothing anywhere: train() alone, without the reporter and its database."""
    from workers.pipeline.reporting import SilentReporter

    class Silent(SilentReporter):  # with the start/close a JobReporter has
        def start(self):
            return self

        def close(self) -> None: ...

    return Silent()


def run_vintner(stack: Stack, dataset: Path, epochs: int, seed: int, job: tuple[int, str] | None) -> dict:
    """train() reporting to the job through the real JobReporter; with job=None, to nothing."""
    from workers.pipeline.training import TrainConfig, train
    from workers.progress import JobReporter

    job_id, owner = job or (0, "")
    stored = stack.data_dir / "checkpoints" / f"job-{job_id}"
    stored.mkdir(parents=True, exist_ok=True)
    out = stack.data_dir / "scratch" / f"job-{job_id}-{time.monotonic_ns()}"
    ends, cpus, store_s, sizes = [], [], [], []
    reporter = JobReporter(job_id, owner).start() if job else silent_reporter()

    def keep(path: Path, summary: dict) -> None:
        """What a caller does: store the file, note it on the job row (through the reporter)."""
        ends.append(time.perf_counter())
        cpus.append(cpu_seconds())
        began = time.perf_counter()
        shutil.copyfile(path, stored / f"epoch-{summary['epoch']}.pth")
        reporter.checkpoint({"file": f"epoch-{summary['epoch']}.pth", **summary})
        store_s.append(time.perf_counter() - began)
        sizes.append(path.stat().st_size)

    config = TrainConfig(architecture=MODEL, epochs=epochs, batch_size=BATCH, input_size=SIZE, workers=WORKERS,
                         augment="standard", pretrained=False, amp=False, seed=seed, checkpoint_minutes=0)
    import threading

    thread = getattr(reporter, "_thread", None)
    main_id = threading.main_thread().native_id
    thread_cpu_before = thread_cpu_seconds(thread.native_id) if thread else 0.0
    main_before, process_before = thread_cpu_seconds(main_id), cpu_seconds()
    try:
        result = train(config, dataset, out, reporter, save_checkpoint=keep, device="cpu")
        reporter_cpu = thread_cpu_seconds(thread.native_id) - thread_cpu_before if thread else 0.0
        others_cpu = cpu_seconds() - process_before - (thread_cpu_seconds(main_id) - main_before)
    finally:
        reporter.close()
    history = result.history
    images = sum(entry["train_images"] for entry in history[1:])
    shutil.rmtree(out, ignore_errors=True)
    return {"img_s": images / (ends[-1] - ends[0]), "cpu_ms_per_img": 1000 * (cpus[-1] - cpus[0]) / images,
            "train_s": [e["train_seconds"] for e in history[1:]],
            "val_s": [e["val_seconds"] for e in history[1:]], "store_s": store_s[1:],
            "other_s": [(b - a) - e["seconds"] for a, b, e in zip(ends, ends[1:], history[1:])],
            "checkpoint_bytes": max(sizes), "val_top1": result.final["val_top1"],
            "reporter_cpu_s": reporter_cpu, "other_threads_cpu_s": others_cpu,
            "run_s": sum(e["seconds"] for e in history)}


def thread_cpu_seconds(tid: int) -> float:
    """User + system CPU time of one thread of this process."""
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_job(project=None) -> tuple[int, str, object]:
    """A running job (as a worker would have claimed it) in a bench project; returns its id,
    its lease owner and the project for the next one."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from webapp.jobs.models import Job, JobState
    from webapp.projects.models import Project
    from webapp.teams.models import Membership, Role, Team

    if project is None:
        user = get_user_model().objects.create_user(username="bench", email="bench@example.com",
                                                    password="bench-pass-1234")
        team = Team.objects.create(name="Bench")
        Membership.objects.create(team=team, user=user, role=Role.OWNER)
        project = Project.objects.create(team=team, name="Bench", created_by=user)
    owner = "bench-worker@localhost:1"
    now = timezone.now()
    job = Job.objects.create(
        project=project, kind="train", created_by=project.created_by, params={}, queue="train",
        state=JobState.RUNNING, worker_host="localhost", attempts=1, started_at=now, enqueued_at=now,
        lease_owner=owner, lease_expires_at=now + timedelta(hours=1),
    )
    connection.close()
    return job.id, owner, project


def events_by_kind(job_id: int) -> dict[str, int]:
    from django.db import connection
    from django.db.models import Count

    from webapp.jobs.models import JobEvent

    counts = dict(JobEvent.objects.filter(job_id=job_id).values_list("kind").annotate(n=Count("id")))
    connection.close()
    return counts


def middle(runs: list[dict]) -> dict | None:
    """The run whose img/s is the median (the lower middle of an even count)."""
    ordered = sorted(runs, key=lambda r: r["img_s"])
    return ordered[(len(ordered) - 1) // 2] if ordered else None


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run, the first one warm-up (default 4)")
    parser.add_argument("--images", type=int, default=300, help="train images per class (default 300)")
    parser.add_argument("--rounds", type=int, default=6, help="bare/vintner pairs, alternating; each path's median "
                                                              "counts (default 6, at least 3)")
    parser.add_argument("--isolate", action="store_true",
                        help="also run train() with a null reporter each round: the pipeline's share without the "
                             "JobReporter and its database (a third more time)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the training process (default 1: with 2 loader workers on 2 cores, "
                             "more threads oversubscribe the cores and OpenMP's waiting makes numbers swing 5x; "
                             "train() itself uses at most cores - loader workers on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the data folder (database, checkpoints)")
    args = parser.parse_args()
    if args.epochs < 2 or args.images < 10 or args.rounds < 3:
        parser.error("--epochs must be at least 2, --images at least 10, --rounds at least 3")

    with Stack(keep=args.keep) as stack:
        import torch

        torch.set_num_threads(args.threads)
        from workers.pipeline.training import defaults_for

        defaults = defaults_for(MODEL)
        dataset = make_dataset(stack.data_dir / "dataset", args.images)
        jobs, project = [], None
        runs: dict[str, list[dict]] = {"bare": [], "vintner": [], "null": []}
        paths = ("bare", "vintner", "null") if args.isolate else ("bare", "vintner")
        cpu_before, machine_before, began = cpu_seconds(), machine_busy_seconds(), time.monotonic()
        for round_ in range(args.rounds):
            for path in (paths if round_ % 2 == 0 else paths[::-1]):
                if path == "bare":
                    runs["bare"].append(run_bare(dataset, args.epochs, defaults["lr"], defaults["weight_decay"],
                                                 args.seed))
                elif path == "vintner":
                    job_id, owner, project = make_job(project)
                    jobs.append(job_id)
                    runs["vintner"].append(run_vintner(stack, dataset, args.epochs, args.seed, (job_id, owner)))
                else:
                    runs["null"].append(run_vintner(stack, dataset, args.epochs, args.seed, None))
            print(f"round {round_ + 1}: " + ", ".join(f"{path} {runs[path][-1]['img_s']:.0f} img/s" for path in paths),
                  flush=True)
        wall = time.monotonic() - began
        own_cpu = cpu_seconds() - cpu_before  # this process; its loader workers are children
        children = os.times().children_user + os.times().children_system
        rest = max(0.0, machine_busy_seconds() - machine_before - own_cpu - children)
        events = events_by_kind(jobs[-1])
        threads = torch.get_num_threads()

    bare, vintner, null = (middle(runs[path]) for path in ("bare", "vintner", "null"))
    speeds = {path: statistics.median([r["img_s"] for r in runs[path]]) for path in paths}
    spreads = {path: spread([r["img_s"] for r in runs[path]]) for path in paths}
    steps = bare["steps_per_epoch"] * (args.epochs - 1)
    ratio = speeds["vintner"] / speeds["bare"]
    print(f"model {MODEL} at {SIZE} px, batch {BATCH}, {bare['train_images']} train images "
          f"({bare['steps_per_epoch']} steps/epoch), {args.epochs} epochs of which 1 warm-up: {steps} steps counted; "
          f"{WORKERS} loader workers, {threads} torch threads, {os.cpu_count()} cores")
    print(f"medians of {args.rounds} alternating rounds (per-epoch figures from each path's median round):")
    print(f"bare:    {speeds['bare']:7.1f} img/s (spread {spreads['bare']:.0%})   per epoch: train "
          f"{mean(bare['train_s']):.2f} s, val {mean(bare['val_s']):.2f} s")
    print(f"vintner: {speeds['vintner']:7.1f} img/s (spread {spreads['vintner']:.0%})   per epoch: train {mean(vintner['train_s']):.2f} s, "
          f"val {mean(vintner['val_s']):.2f} s, the rest {mean(vintner['other_s']):.3f} s (checkpoint of "
          f"{vintner['checkpoint_bytes'] / 2**20:.1f} MiB written, of which the caller's copy "
          f"{mean(vintner['store_s']):.3f} s)")
    if null:
        print(f"  train() with a null reporter (no JobReporter, no database): {speeds['null']:.1f} img/s "
              f"({speeds['null'] / speeds['bare']:.3f}x bare): the pipeline's own share; the rest is the reporter's")
    cpu = {path: statistics.median([r["cpu_ms_per_img"] for r in runs[path]]) for path in ("bare", "vintner")}
    print(f"  CPU of the training process (all its threads, loader workers not included) per image, "
          f"medians over rounds: bare {cpu['bare']:.2f} ms, vintner {cpu['vintner']:.2f} ms "
          f"({cpu['vintner'] / cpu['bare']:.3f}x)")
    print(f"  train-loop time vs bare: {mean(vintner['train_s']) / mean(bare['train_s']):.3f}x; "
          f"val top-1 bare {100 * bare['val_top1']:.0f} %, vintner {100 * vintner['val_top1']:.0f} %")
    print(f"  reporter thread CPU: {vintner['reporter_cpu_s']:.2f} s in {vintner['run_s']:.0f} s of training "
          f"({100 * vintner['reporter_cpu_s'] / vintner['run_s']:.1f}% of a core); all threads but the main one: "
          f"{vintner['other_threads_cpu_s']:.2f} s; "
          "events written for the last job: "
          + ", ".join(f"{n} {kind}" for kind, n in sorted(events.items())))
    print(f"CPU over {wall:.0f} s: bench {100 * own_cpu / wall:.0f}%, its loader workers {100 * children / wall:.0f}%, "
          f"rest of machine {100 * rest / wall:.0f}% (100% = one core)")
    if rest / wall > 0.2:
        print("the rest of the machine was busy: wall-clock numbers are noisy, run again on a quiet machine")
    print(f"goal (ratio >= 0.95): {'met' if ratio >= 0.95 else 'NOT met'}")
    print(json.dumps({"bare_img_s": round(speeds["bare"], 1), "vintner_img_s": round(speeds["vintner"], 1),
                      "ratio": round(ratio, 3), "steps": steps, "model": f"{MODEL}@{SIZE}px", "rounds": args.rounds,
                      "spread": spreads}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
