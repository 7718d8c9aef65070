"""A training run's checkpoints, written without stalling the device. No Django, no Celery.

    writer = CheckpointWriter(out / "checkpoint.pth", hand_over)
    writer.write(state, summary)   # returns as soon as the copies to host memory are queued
    writer.wait()                  # before the run ends: the last one is on disk and handed over

`write` queues the state's tensors' copies to host memory on the device's stream (pinned memory
on CUDA, so the copies run while the next steps are queued), then a background thread waits for
those copies, serialises the state (torch.save, atomically) and hands the file over
(`hand_over(path, summary)`: to the worker, which keeps it in storage). One write is in flight
at a time: a second waits for the first, which on a run that checkpoints every few minutes it
never has to.

`due` says when a checkpoint is due: `minutes` after the last one (0: only at epoch ends).
"""

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch


def host_copy(value: object) -> object:
    """The same structure, its tensors copied to host memory. From a GPU the copies are queued
    (non-blocking, into pinned memory): read them only after the device has done them."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.device.type == "cpu":
            return value.clone()
        target = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
        return target.copy_(value, non_blocking=True)
    if isinstance(value, dict):
        return {key: host_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(host_copy(item) for item in value)
    return value


def atomic_save(obj: object, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


class CheckpointDue:
    """Every `minutes` of training; 0: never mid-epoch (at epoch ends only)."""

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60
        self.last = time.monotonic()

    def mid_epoch(self) -> bool:
        return self.seconds > 0 and time.monotonic() - self.last >= self.seconds

    def at_epoch_end(self) -> bool:
        return self.seconds == 0 or time.monotonic() - self.last >= self.seconds

    def written(self) -> None:
        self.last = time.monotonic()


class CheckpointWriter:
    def __init__(self, path: Path, hand_over: Callable[[Path, dict], None] | None) -> None:
        self.path, self.hand_over = path, hand_over
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, state: dict, summary: dict, device: torch.device) -> None:
        self.wait()  # one in flight: the file and the hand-over are not shared between two
        copied = host_copy(state)
        ready = None
        if device.type == "cuda":
            ready = torch.cuda.Event()
            ready.record()
        self._thread = threading.Thread(target=self._finish, args=(copied, summary, ready),
                                        name="checkpoint-writer", daemon=True)
        self._thread.start()

    def _finish(self, state: dict, summary: dict, ready) -> None:
        try:
            if ready is not None:
                ready.synchronize()  # the queued copies are done: the host tensors hold the state
            atomic_save(state, self.path)
            if self.hand_over is not None:
                self.hand_over(self.path, summary)
        except BaseException as error:  # noqa: BLE001 - raised in the training thread by wait()
            self._error = error

    def wait(self) -> None:
        """The write in flight, done; its error, raised here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
