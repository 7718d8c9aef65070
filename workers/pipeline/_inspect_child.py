"""Child process that loads an uploaded TorchScript or torch.export (.pt2) model, which is code,
under an address-space limit, and writes what it found as JSON. The parent
(`formats.torch_programs._run_child`) gives it a minimal environment, enforces the time limit,
and reads the result file:

    python -m workers.pipeline._inspect_child '{"format": "torchscript", "path": …,
        "input_size": 224, "memory_limit_mb": 8192, "result": …/result.json}'

The result is {"facts": {...}} or {"error": "memory" | "load", "message": …}.
"""

import json
import resource
import sys
from pathlib import Path


def main() -> None:
    request = json.loads(sys.argv[1])
    # Everything is imported before the limit, so that the limit measures the model alone.
    import torch
    import torch.export

    from workers.pipeline.formats import one_line
    from workers.pipeline.formats.torch_programs import CHILD_FACTS

    torch.set_num_threads(1)  # one thread: predictable memory, and no thread pool to reserve it
    _limit_memory(request["memory_limit_mb"])
    try:
        facts = CHILD_FACTS[request["format"]](Path(request["path"]), request["input_size"])
        report = {"facts": facts}
    except MemoryError:
        report = {"error": "memory"}
    except Exception as e:  # the parent turns it into a message for the user
        report = {"error": "load", "message": one_line(e)}
    Path(request["result"]).write_text(json.dumps(report))


def _limit_memory(megabytes: int) -> None:
    """RLIMIT_AS counts address space, and importing torch alone maps about 3 GB of libraries:
    the model may add `megabytes` to what this process holds now."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + megabytes * 2**20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)  # never above what this process was already given
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core dump of a crash: it would hold the model


def _address_space() -> int:
    """This process's address space now (Linux); 0 elsewhere, which makes the limit absolute."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0


if __name__ == "__main__":
    main()
