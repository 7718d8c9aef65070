"""Where a training epoch's time goes: waiting for the loader's next batch, or computing.
No Django, no Celery.

Data wait is host time blocked in the loader's next(). Compute is the steps' time on the device:
on CUDA, events recorded around each step on the device's stream and read when the run reads
its losses anyway (once a second), so timing adds no synchronisation; on CPU, host time in the
steps. A host that runs ahead of its GPU blocks in next() only once the GPU has caught up, so
a large data wait means a GPU that waited for images.
"""

import time

import torch

STARVED_SHARE = 0.5  # data wait above this share of the epoch: the log and the page say what to do


class TimeSplit:
    def __init__(self, device: torch.device, *, data_wait_s: float = 0.0, compute_s: float = 0.0) -> None:
        self.cuda = device.type == "cuda"
        self.data_wait_s, self.compute_s = data_wait_s, compute_s
        self._events: list[tuple] = []  # CUDA: (start, end) of steps not yet read
        self._mark = 0.0
        self._step_start = None

    def waiting(self) -> None:
        self._mark = time.perf_counter()

    def fetched(self) -> None:
        self.data_wait_s += time.perf_counter() - self._mark

    def step_began(self) -> None:
        if self.cuda:
            self._step_start = torch.cuda.Event(enable_timing=True)
            self._step_start.record()
        else:
            self._mark = time.perf_counter()

    def step_ended(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((self._step_start, end))
        else:
            self.compute_s += time.perf_counter() - self._mark

    def collect(self) -> None:
        """Add the finished steps' device times (after something has waited for the device)."""
        for start, end in self._events:
            end.synchronize()  # done already when called after a read of the losses: no wait
            self.compute_s += start.elapsed_time(end) / 1000
        self._events.clear()

    def figures(self, seconds: float) -> dict:
        """The epoch's split, for its history entry and metrics; `seconds`: its training time."""
        self.collect()
        return {"data_wait_s": self.data_wait_s, "compute_s": self.compute_s,
                "data_wait_share": min(1.0, self.data_wait_s / seconds) if seconds > 0 else 0.0}


def data_wait_hint(share: float, *, cuda: bool, workers: int) -> str:
    """A sentence for a run that waited on its images most of the epoch; empty otherwise."""
    if share < STARVED_SHARE:
        return ""
    who = "The GPU" if cuda else "Training"
    return (f"{who} waited for images {100 * share:.0f} % of the epoch: more loader processes than {workers} "
            f"(the workers setting, up to one per core) or the decoded-image cache would feed it faster.")
