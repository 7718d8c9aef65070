"""Training on several devices of one host: DistributedDataParallel through torch.distributed.
No Django, no Celery.

    result = train_distributed(config, data, out, reporter)      # config.gpus processes

The calling process (the jailed step's) is the supervisor: it starts one process per device
(from a fork server: CUDA cannot be used in a child forked from a process that used it), relays rank 0's reports to the real reporter and
its checkpoints to `save_checkpoint`, passes a cancel on to rank 0, and when a rank fails stops
them all and raises that rank's error. The ranks meet through a FileStore in a private temporary
folder (no port to choose) and talk over loopback, which the jail's network namespace has: NCCL
on CUDA, gloo on CPU (how the test suite runs it).

Every rank builds the same model and optimizer (and restores the same checkpoint), trains it
wrapped in DistributedDataParallel and reads its own shard of each epoch's one order
(augment.EpochSampler), so that each step's gradients are averaged over all ranks' batches;
an epoch's train loss and top-1 are summed over ranks. Rank 0 alone reports, validates, keeps
the best epoch and writes checkpoints and weights; the other ranks wait for it in the next step's
gradient all-reduce, and are stopped once it has ended.
"""

import io
import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from workers.pipeline.reporting import JobError, Reporter, SilentReporter, one_line, whole_text

# A rank waits in the next step's all-reduce while rank 0 validates and writes a checkpoint.
WAIT = timedelta(hours=2)
POLL_SECONDS = 0.1
PEER_DEATH_SECONDS = 1.0
REPORTS = ("log", "progress", "stage", "metric")  # what rank 0 may say through the supervisor


@dataclass(frozen=True)
class Group:
    """This process's place among the ranks; the hooks `training._Run` calls."""

    rank: int
    world: int
    device: torch.device

    def share(self, run) -> None:
        """Wrap the run's model once it is built, restored and its optimizer made."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        # No buffer broadcast on each forward: rank 0 validates alone, and a forward that
        # broadcast would wait for ranks that are not running one.
        run.model = _Shared(run.model, device_ids=ids, forward_sync_buffers=False)

    def summed(self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """An epoch's train figures over every rank's shard: one all-reduce."""
        totals = torch.stack([loss_sum.double(), correct.double(),
                              torch.tensor(float(seen), dtype=torch.float64, device=loss_sum.device)])
        dist.all_reduce(totals)
        return totals[0], totals[1], int(totals[2].item())

    def follow(self, run) -> None:
        """A rank other than 0: train its shard of every epoch; rank 0 does the rest, and an early
        stop there ends this rank from the supervisor."""
        while run.epoch < run.config.epochs:
            run._train_epoch()
            run.epoch += 1


class _Shared(DistributedDataParallel):
    """DDP whose state is its module's, so checkpoints and weights keep the plain model's keys."""

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


class _Relayed(SilentReporter):
    """Rank 0's reporter: every call goes to the supervisor, which makes it on the real one."""

    def __init__(self, channel, cancel) -> None:
        self.channel, self.cancel = channel, cancel

    def log(self, message: str, *, level: str = "info") -> None:
        self.channel.put(("report", "log", (message,), {"level": level}))

    def progress(self, fraction: float) -> None:
        self.channel.put(("report", "progress", (fraction,), {}))

    def stage(self, name: str) -> None:
        self.channel.put(("report", "stage", (name,), {}))

    def metric(self, name: str, value: float, *, step: int | None = None, summary: bool = False) -> None:
        self.channel.put(("report", "metric", (name, value), {"step": step, "summary": summary}))

    def cancelled(self) -> bool:
        return self.cancel.is_set()


def train_distributed(config, data, out: Path, reporter: Reporter, *, init: nn.Module | None = None,
                      resume: Path | None = None, save_checkpoint=None, device: str | None = None, images=None):
    """`training.train` with `config.gpus` processes, one per CUDA GPU (cuda:0…n-1 of those this
    worker sees) or, without CUDA, per share of the CPU. Its result is rank 0's."""
    world = config.gpus
    cuda = device != "cpu" and torch.cuda.is_available()
    if device is not None and device.startswith("cuda") and not cuda:
        raise JobError(f"Training was asked to run on {device}, but this worker has no usable CUDA GPU.")
    if cuda and torch.cuda.device_count() < world:
        raise JobError(f"This training asks for {world} GPUs, but this worker has {torch.cuda.device_count()}; "
                       f"ask for at most {torch.cuda.device_count()}.")
    backend = "nccl" if cuda else "gloo"
    reporter.log(f"training on {world} {'GPUs' if cuda else 'CPU processes'} together (DistributedDataParallel, "
                 f"{backend}): batch {config.batch_size} on each, {world * config.batch_size} a step")
    # Forked from a fork server that has imported the training code but never touched CUDA: as
    # safe for CUDA as spawning, and the imports are paid once, not once per rank.
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["workers.pipeline.training", "workers.pipeline.distributed"])
    channel, cancel, acks = context.Queue(), context.Event(), context.Queue()
    folder = Path(tempfile.mkdtemp(prefix="ddp-"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # images: the decoded-image cache (imagecache.ImageCache), built once here; each rank maps its files
    job = {"config": config, "data": data, "out": out, "resume": resume, "init": _portable(init), "images": images,
           "saves": save_checkpoint is not None, "cuda": cuda, "threads": max(1, cores // world)}
    ranks = [context.Process(target=_rank_main, name=f"rank-{rank}",
                             args=(rank, world, str(folder / "store"), job, channel, cancel, acks))
             for rank in range(world)]
    try:
        for process in ranks:
            process.start()
        return _supervise(ranks, channel, cancel, acks, reporter, save_checkpoint)
    finally:
        for process in ranks:  # ranks still waiting in a collective for one that has ended
            if process.is_alive():
                process.kill()
        for process in ranks:
            if process.pid is not None:
                process.join()
        channel.close()
        acks.close()
        shutil.rmtree(folder, ignore_errors=True)


def _supervise(ranks, channel, cancel, acks, reporter: Reporter, save_checkpoint):
    from workers.pipeline.training import TrainingCancelled

    world = len(ranks)
    while True:
        if not cancel.is_set() and reporter.cancelled():
            cancel.set()
        try:
            kind, *message = channel.get(timeout=POLL_SECONDS)
        except queue.Empty:
            _raise_if_one_died(ranks)
            if ranks[0].exitcode == 0:
                raise JobError(f"Training process 0 of {world} ended without a result; all of them were stopped.")
            continue
        if kind == "report":
            name, args, kwargs = message
            if name in REPORTS:
                getattr(reporter, name)(*args, **kwargs)
        elif kind == "checkpoint":
            path, summary = message
            save_checkpoint(Path(path), summary)
            acks.put(True)
        elif kind == "result":
            return message[0]
        elif kind == "cancelled":
            raise TrainingCancelled(message[0])
        elif kind == "error":
            rank, said, detail, trace, own = message
            # A rank killed (out of memory) is why the others lost their peer: they see its
            # sockets close a moment before its process has ended.
            deadline = time.monotonic() + PEER_DEATH_SECONDS
            while time.monotonic() < deadline:
                _raise_if_one_died(ranks)
                time.sleep(POLL_SECONDS / 4)
            if own:  # a JobError: its words are for the user as they are
                raise JobError(said, f"{detail}\n\n{trace}" if detail else trace)
            raise JobError(f"Training process {rank} of {world} failed, so all of them were stopped: {said}",
                           f"{detail}\n\n{trace}")


def _raise_if_one_died(ranks) -> None:
    """A rank that ended without a word: killed, since every other ending sends its last words first."""
    for rank, process in enumerate(ranks):
        if process.exitcode not in (None, 0):
            raise JobError(f"Training process {rank} of {len(ranks)} ended without a word "
                           f"({_how(process.exitcode)}); all of them were stopped.")


def _rank_main(rank: int, world: int, store: str, job: dict, channel, cancel, acks) -> None:
    """One rank, in its own process."""
    from workers.pipeline.training import TrainingCancelled, train_on

    try:
        # Its loader processes fork from it, as a one-device training's do: a process the fork
        # server started would start them through the fork server too, importing torch in each.
        multiprocessing.set_start_method("fork", force=True)
        # The jail's network namespace has only loopback, and its hostname resolves nowhere.
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")
        if job["cuda"]:
            device = torch.device("cuda", rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
            torch.set_num_threads(job["threads"])
        dist.init_process_group("nccl" if job["cuda"] else "gloo", store=dist.FileStore(store, world),
                                rank=rank, world_size=world, timeout=WAIT)
        lead = rank == 0
        reporter = _Relayed(channel, cancel) if lead else SilentReporter()
        save = _checkpoint_relay(channel, acks) if lead and job["saves"] else None
        result = train_on(job["config"], job["data"], job["out"], reporter, device, job["images"],
                          init=_module(job["init"]),
                          resume=job["resume"], save_checkpoint=save, group=Group(rank, world, device))
        if lead:
            channel.put(("result", result))
        dist.destroy_process_group()
    except TrainingCancelled as cancelled:
        channel.put(("cancelled", cancelled.result))
    except JobError as error:
        channel.put(("error", rank, str(error), error.underlying(), traceback.format_exc(), True))
    except BaseException as error:  # noqa: BLE001 - every ending is said to the supervisor
        channel.put(("error", rank, f"{type(error).__name__}: {one_line(error)}", whole_text(error),
                     traceback.format_exc(), False))


def _checkpoint_relay(channel, acks):
    """Rank 0's save_checkpoint: the supervisor hands the file over before the loop goes on (the
    next checkpoint replaces it)."""

    def save(path: Path, summary: dict) -> None:
        channel.put(("checkpoint", str(path), summary))
        acks.get()

    return save


def _portable(module: nn.Module | None):
    """The model to fine-tune, fit to send to another process: TorchScript as its saved bytes
    (it does not pickle), any other module as it is."""
    if isinstance(module, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        torch.jit.save(module, buffer)
        return ("torchscript", buffer.getvalue())
    return ("module", module)


def _module(portable) -> nn.Module | None:
    kind, value = portable
    return torch.jit.load(io.BytesIO(value), map_location="cpu") if kind == "torchscript" else value


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"
