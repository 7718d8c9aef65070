"""What the jail costs a job: its start, and training speed inside it.

    .venv/bin/python bench/jail.py [--jobs 20] [--rounds 3] [--epochs 2]

- start: `--jobs` trivial steps (workers.pipeline.steps.noop) through `run_jailed`, alternating
  with the same step called in this process and in an unjailed child (VINTNER_JAIL=off: a fresh
  Python with a clean environment, no bubblewrap). `start_overhead_p50_s` is the median jailed
  job's time less the median in-process call's; `bwrap_p50_s` is bubblewrap's own part (jailed less
  unjailed child).
- training: small_cnn on a generated 32 px dataset, `train()` in this process against the same
  `train` step in the jail, alternating, `--rounds` each. Throughput is the median of the
  `train/img_per_s` points the loop reports (process start and imports are not training);
  `train_ratio` is jailed over in-process, medians of the rounds.

Prints one JSON object as its last line.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _harness import spread  # re-executes under .venv first

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import make_dataset  # noqa: E402

from workers.jail import Jail, Limits, jail_problem, run_jailed  # noqa: E402
from workers.pipeline.reporting import Span  # noqa: E402
from workers.pipeline.steps import noop, train  # noqa: E402

LIMITS = Limits(memory_bytes=8 * 2**30, cpu_seconds=3600, wall_seconds=1800, max_processes=1024,
                max_file_bytes=4 * 2**30)


class Recorder:
    """A reporter that keeps the training loop's throughput points and ignores the rest."""

    def __init__(self) -> None:
        self.speeds: list[float] = []
        self.handed: list[str] = []

    def metric(self, name: str, value: float, *, step=None, summary=False) -> None:
        if name == "train/img_per_s":
            self.speeds.append(value)

    def log(self, *args, **kwargs) -> None: ...

    def progress(self, fraction: float) -> None: ...

    def stage(self, name: str) -> None: ...

    def checkpoint(self, state: dict) -> None: ...

    def checkpoint_file(self, path: str, state: dict) -> None:
        self.handed.append(path)  # in process nothing takes it: the loop's own file stays

    def cancelled(self) -> bool:
        return False


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=400)
    args = parser.parse_args()
    if jail_problem():
        sys.exit(f"no jail on this host: {jail_problem()}")
    jailed, unjailed = Jail(limits=LIMITS), Jail(mode="off", limits=LIMITS)
    with tempfile.TemporaryDirectory(prefix="vintner-bench-jail-") as tmp:
        tmp = Path(tmp)
        attempt = iter(range(10**6))

        def jail_run(jail: Jail, step: str, request: dict, reads: list, reporter=None) -> dict:
            folder = tmp / f"attempt-{next(attempt)}"
            work = folder / "work"
            return run_jailed(step, {**request, "work": str(work)}, jail=jail, folder=folder, reads=reads,
                              reporter=reporter or Recorder(), on_checkpoint_file=lambda path, state: path.unlink())

        times: dict[str, list[float]] = {"in_process": [], "jailed": [], "unjailed_child": []}
        for number in range(args.jobs):
            times["in_process"].append(timed(lambda: noop({"echo": number}, Span(Recorder(), 0, 1))))
            times["jailed"].append(timed(lambda: jail_run(jailed, "noop", {"echo": number}, [])))
            times["unjailed_child"].append(timed(lambda: jail_run(unjailed, "noop", {"echo": number}, [])))
        p50 = {name: statistics.median(values) for name, values in times.items()}
        print(f"trivial job, p50 of {args.jobs}: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in p50.items()),
              file=sys.stderr)

        dataset = make_dataset(tmp / "dataset", args.per_class)
        request = {"config": {"architecture": "small_cnn", "epochs": args.epochs, "batch_size": 64, "input_size": 32,
                              "seed": 0, "workers": 2, "pretrained": False, "augment": "light"},
                   "dataset": str(dataset)}
        speeds: dict[str, list[float]] = {"in_process": [], "jailed": []}
        for round_number in range(args.rounds):
            here, work = Recorder(), tmp / f"here-{round_number}"
            work.mkdir()
            train({**request, "work": str(work)}, Span(here, 0, 1))
            speeds["in_process"].append(statistics.median(here.speeds))
            inside = Recorder()
            jail_run(jailed, "train", request, [dataset], inside)
            speeds["jailed"].append(statistics.median(inside.speeds))
            print(f"round {round_number + 1}: in process {speeds['in_process'][-1]:.0f} img/s, "
                  f"jailed {speeds['jailed'][-1]:.0f} img/s", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    print(json.dumps({
        "start_overhead_p50_s": round(p50["jailed"] - p50["in_process"], 4),
        "bwrap_p50_s": round(p50["jailed"] - p50["unjailed_child"], 4),
        "jailed_job_p50_s": round(p50["jailed"], 4),
        "unjailed_child_p50_s": round(p50["unjailed_child"], 4),
        "jobs": args.jobs,
        "train_img_s_jailed": round(medians["jailed"], 1),
        "train_img_s_in_process": round(medians["in_process"], 1),
        "train_ratio": round(medians["jailed"] / medians["in_process"], 3),
        "rounds": args.rounds,
        "spread": {name: spread(v) for name, v in speeds.items()},
    }))


if __name__ == "__main__":
    main()
