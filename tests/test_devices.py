"""How a training run uses its device (workers/pipeline/devices.py), where its time goes
(timing.py) and its background checkpoints (checkpoints.py): the decisions for every kind of
device, taken on this CPU host from the capabilities a device would report."""

import threading
from pathlib import Path

import pytest
import torch

from workers.pipeline import devices
from workers.pipeline.checkpoints import CheckpointWriter
from workers.pipeline.devices import Capabilities, decide
from workers.pipeline.timing import TimeSplit, data_wait_hint

HOPPER = Capabilities(kind="cuda", cores=16, bf16=True, name="NVIDIA H200")
TURING = Capabilities(kind="cuda", cores=8, bf16=False, name="Tesla T4")
LAPTOP = Capabilities(kind="cpu", cores=2)


def test_it_trains_in_bf16_without_a_scaler_where_the_gpu_has_bf16():
    chosen = decide(HOPPER, amp=True, workers=None)
    assert (chosen.precision, chosen.grad_scaler, chosen.autocast_dtype) == ("bf16", False, torch.bfloat16)
    assert chosen.tf32 and chosen.cudnn_benchmark and chosen.channels_last and chosen.fused_optimizer and chosen.pin_memory
    assert chosen.workers == 8  # 15 free cores, capped
    assert chosen.describe() == ("mixed precision (bf16), TF32, cuDNN autotune, channels_last, fused optimizer, "
                                 "pinned memory, 8 loader processes (from the host's cores)")


def test_it_falls_back_to_fp16_with_a_grad_scaler_on_older_gpus():
    chosen = decide(TURING, amp=True, workers=3)
    assert (chosen.precision, chosen.grad_scaler, chosen.autocast_dtype) == ("fp16", True, torch.float16)
    assert chosen.workers == 3 and not chosen.workers_chosen
    assert "3 loader processes" in chosen.describe() and "from the host" not in chosen.describe()


def test_without_amp_a_gpu_trains_in_fp32_with_tf32_math():
    chosen = decide(HOPPER, amp=False, workers=0)
    assert (chosen.precision, chosen.grad_scaler, chosen.autocast_dtype) == ("fp32", False, None)
    assert chosen.tf32 and chosen.cudnn_benchmark and chosen.workers == 0


def test_a_cpu_trains_in_fp32_and_keeps_a_core_for_training():
    chosen = decide(LAPTOP, amp=True, workers=None)
    assert (chosen.precision, chosen.grad_scaler) == ("fp32", False)
    assert not (chosen.tf32 or chosen.cudnn_benchmark or chosen.channels_last or chosen.fused_optimizer
                or chosen.pin_memory)
    assert chosen.workers == 1
    assert decide(Capabilities(kind="cpu", cores=1), amp=True, workers=None).workers == 0
    assert chosen.describe() == "fp32, 1 loader process (from the host's cores)"


def test_this_host_reads_as_a_cpu_and_reports_no_utilisation():
    caps = devices.capabilities(torch.device("cpu"))
    assert caps.kind == "cpu" and caps.cores >= 1 and not caps.bf16
    assert devices.utilisation(torch.device("cpu")) is None


def test_the_time_split_counts_loader_waits_and_steps_and_a_starved_epoch_gets_a_hint():
    split = TimeSplit(torch.device("cpu"), data_wait_s=1.0)  # a resumed epoch's earlier part
    split.waiting()
    sum(range(200_000))
    split.fetched()
    split.step_began()
    torch.ones(200, 200) @ torch.ones(200, 200)
    split.step_ended()
    figures = split.figures(seconds=4.0)
    assert figures["data_wait_s"] > 1.0 and figures["compute_s"] > 0
    assert figures["data_wait_share"] == pytest.approx(figures["data_wait_s"] / 4.0)
    assert data_wait_hint(0.2, cuda=True, workers=2) == ""
    assert data_wait_hint(0.7, cuda=True, workers=2).startswith(
        "The GPU waited for images 70 % of the epoch: more loader processes than 2")
    assert data_wait_hint(0.9, cuda=False, workers=1).startswith("Training waited for images 90 %")


def test_the_checkpoint_writer_writes_in_the_background_one_at_a_time(tmp_path):
    release, handed = threading.Event(), []

    def hand_over(path: Path, summary: dict) -> None:
        release.wait(10)
        handed.append((summary["step"], torch.load(path, weights_only=True)["w"].clone()))

    writer = CheckpointWriter(tmp_path / "checkpoint.pth", hand_over)
    weights = torch.zeros(3)
    writer.write({"w": weights}, {"step": 1}, torch.device("cpu"))
    weights += 5  # training goes on at once: the checkpoint holds the copy taken when it was asked for
    assert handed == []  # still in flight
    release.set()
    writer.write({"w": weights}, {"step": 2}, torch.device("cpu"))  # waits for the first
    writer.wait()
    assert [(step, w.tolist()) for step, w in handed] == [(1, [0.0] * 3), (2, [5.0] * 3)]


def test_a_checkpoint_that_cannot_be_handed_over_fails_the_run_at_the_next_wait(tmp_path):
    def hand_over(path: Path, summary: dict) -> None:
        raise OSError("storage is full")

    writer = CheckpointWriter(tmp_path / "checkpoint.pth", hand_over)
    writer.write({"w": torch.zeros(1)}, {"step": 1}, torch.device("cpu"))
    with pytest.raises(OSError, match="storage is full"):
        writer.wait()
    writer.wait()  # reported once
