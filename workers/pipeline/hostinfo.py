"""What a worker host can do: CPU and its ISA extensions, memory, CUDA GPUs, OpenVINO devices.

Pure code (no Django, no Celery), so it can be run from a shell: `python -m workers.pipeline.hostinfo`.
"""

import json
import os
import platform
import socket

import cpuinfo
import psutil

# The extensions that decide how fast INT8 and FP32 inference runs on a CPU.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "neon",
    "asimddp",
)


def cpu_facts() -> dict:
    info = cpuinfo.get_cpu_info()
    flags = set(info.get("flags", []))
    return {
        "model": info.get("brand_raw") or platform.processor() or "unknown",
        "arch": info.get("arch_string_raw") or platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
    }


def torch_facts() -> dict:
    """torch's version and the CUDA GPUs this process owns: `index` as torch numbers them here,
    `device` as the host does (CUDA_VISIBLE_DEVICES' entry for it: a worker pinned to GPU 3 sees
    it as cuda:0)."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        host_ids = owned_gpus()
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                {
                    "index": index,
                    "device": host_ids[index] if host_ids and index < len(host_ids) else str(index),
                    "name": props.name,
                    "memory_bytes": props.total_memory,
                    "capability": f"{props.major}.{props.minor}",
                }
            )
    return {"version": torch.__version__, "cuda": torch.version.cuda, "cuda_gpus": gpus}


def owned_gpus() -> list[str] | None:
    """The host's GPUs this process may use (CUDA_VISIBLE_DEVICES' entries: numbers or UUIDs);
    None when it is not set, and all of them are visible."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def openvino_facts() -> dict:
    import openvino as ov

    core = ov.Core()
    devices = [
        {"name": device, "full_name": core.get_property(device, "FULL_DEVICE_NAME")}
        for device in core.available_devices
    ]
    return {"version": ov.get_version(), "devices": devices}


def probe_host() -> dict:
    """Everything above, JSON-safe. Slow parts (importing torch) take a few seconds."""
    return {
        "hostname": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pid": os.getpid(),
        "cpu": cpu_facts(),
        "memory_bytes": psutil.virtual_memory().total,
        "torch": torch_facts(),
        "openvino": openvino_facts(),
    }


if __name__ == "__main__":
    print(json.dumps(probe_host(), indent=2))
