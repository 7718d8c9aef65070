"""How a training run uses its device: precision, math modes, memory layout, loader processes.
No Django, no Celery.

`decide` is pure (what the device can do in, settings out), so every branch is tested on a CPU
host; `capabilities` reads them from torch and `apply` switches torch's global math modes.

- Precision: bf16 autocast where the GPU supports it (same range as fp32: no loss scaling, and
  faster than fp16 with a scaler on Ampere and later), else fp16 with a GradScaler, on CUDA only
  and only with `amp`; fp32 on CPU.
- TF32 matmuls and convolutions on CUDA (Ampere and later run fp32 layers on tensor cores), and
  cuDNN's autotuner (the input shape is fixed for a whole run, so its search pays off at once).
- channels_last and a fused optimizer on CUDA; pinned host memory for the loader's batches.
- Loader processes: the user's number, else one per core but one (the training process needs
  its own), at most MAX_AUTO_WORKERS.
"""

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch

MAX_AUTO_WORKERS = 8  # past this, decoding is rarely what a host is short of, and each costs memory


@dataclass(frozen=True)
class Capabilities:
    kind: str  # "cuda" | "cpu"
    cores: int  # CPU cores this process may use
    bf16: bool = False  # the GPU runs bf16 natively
    name: str = ""  # the GPU's name


@dataclass(frozen=True)
class DeviceSettings:
    precision: str  # "bf16" | "fp16" | "fp32"
    grad_scaler: bool  # fp16 only: bf16 has fp32's range
    tf32: bool
    cudnn_benchmark: bool
    channels_last: bool
    fused_optimizer: bool
    pin_memory: bool
    workers: int  # DataLoader processes
    workers_chosen: bool  # the number came from the host's cores, not the user

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self):
        dtype = self.autocast_dtype
        return torch.autocast("cuda", dtype=dtype) if dtype is not None else nullcontext()

    def describe(self) -> str:
        """For the run's log line: what was chosen, in a few words."""
        parts = [{"bf16": "mixed precision (bf16)", "fp16": "mixed precision (fp16 + grad scaler)",
                  "fp32": "fp32"}[self.precision]]
        parts += [word for on, word in ((self.tf32, "TF32"), (self.cudnn_benchmark, "cuDNN autotune"),
                                        (self.channels_last, "channels_last"), (self.fused_optimizer, "fused optimizer"),
                                        (self.pin_memory, "pinned memory")) if on]
        loaders = f"{self.workers} loader process{'es' if self.workers != 1 else ''}"
        parts.append(loaders + (" (from the host's cores)" if self.workers_chosen else ""))
        return ", ".join(parts)


def auto_workers(cores: int) -> int:
    """Loader processes when the user leaves it unset: a core each, one core kept for training."""
    return max(0, min(cores - 1, MAX_AUTO_WORKERS))


def decide(caps: Capabilities, *, amp: bool, workers: int | None) -> DeviceSettings:
    cuda = caps.kind == "cuda"
    precision = ("bf16" if caps.bf16 else "fp16") if cuda and amp else "fp32"
    return DeviceSettings(
        precision=precision, grad_scaler=precision == "fp16", tf32=cuda, cudnn_benchmark=cuda, channels_last=cuda,
        fused_optimizer=cuda, pin_memory=cuda,
        workers=auto_workers(caps.cores) if workers is None else workers, workers_chosen=workers is None,
    )


def host_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def capabilities(device: torch.device) -> Capabilities:
    if device.type != "cuda":
        return Capabilities(kind="cpu", cores=host_cores())
    return Capabilities(kind="cuda", cores=host_cores(), bf16=torch.cuda.is_bf16_supported(including_emulation=False),
                        name=torch.cuda.get_device_name(device))


def apply(settings: DeviceSettings) -> None:
    """torch's process-wide math modes (the jailed step is the process's only run)."""
    if settings.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark


def utilisation(device: torch.device) -> float | None:
    """The GPU's busy share over the driver's last sample period (0..1), through NVML
    (nvidia-ml-py); None on CPU, or where NVML cannot be read."""
    if device.type != "cuda":
        return None
    try:
        return torch.cuda.utilization(device) / 100
    except Exception:  # no NVML library, or a driver that does not answer: no figure, no failure
        return None
