"""Compute probe: how fast this worker multiplies matrices (FP32 GFLOP/s) on its CPU and each
CUDA GPU. Short rounds, one metric point per device and round, resumable round by round."""

import statistics
import time
from dataclasses import dataclass, field

import torch

from workers.pipeline.reporting import Cancelled, Reporter


@dataclass(frozen=True)
class ProbeConfig:
    rounds: int = 10
    seconds_per_round: float = 1.0
    matrix_size: int = 512


@dataclass
class ProbeResult:
    gflops: dict[str, list[float]] = field(default_factory=dict)  # device -> one figure per round

    def summary(self) -> dict:
        return {
            device: {"median_gflops": round(statistics.median(values), 2), "best_gflops": round(max(values), 2)}
            for device, values in self.gflops.items()
            if values
        }


def _devices() -> list[str]:
    return ["cpu"] + [f"cuda:{index}" for index in range(torch.cuda.device_count())]


def _round(device: str, size: int, seconds: float, reporter: Reporter) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    flops_per_matmul = 2 * size**3
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize(device)
        count += 1
        if reporter.cancelled():
            raise Cancelled()
    return count * flops_per_matmul / elapsed / 1e9


def run_probe(config: ProbeConfig, reporter: Reporter, resume: dict | None = None) -> ProbeResult:
    devices = _devices()
    result = ProbeResult(gflops={device: list((resume or {}).get(device, [])) for device in devices})
    done = min(len(values) for values in result.gflops.values())
    if done:
        reporter.log(f"Resuming after round {done} of {config.rounds}.")
    reporter.stage("measuring")
    reporter.log(f"Measuring {config.matrix_size}×{config.matrix_size} FP32 matmul on {', '.join(devices)}.")
    for round_index in range(done, config.rounds):
        for device in devices:
            gflops = _round(device, config.matrix_size, config.seconds_per_round, reporter)
            result.gflops[device].append(gflops)
            reporter.metric(f"gflops_{device}", gflops, step=round_index + 1)
        reporter.log(
            f"Round {round_index + 1}/{config.rounds}: "
            + ", ".join(f"{device} {values[-1]:.1f} GFLOP/s" for device, values in result.gflops.items())
        )
        reporter.checkpoint(result.gflops)
        reporter.progress((round_index + 1) / config.rounds)
    return result
