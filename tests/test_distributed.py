"""Training on several devices of one host (workers/pipeline/distributed.py), here two CPU
processes with the gloo backend: both ranks train their own half of every epoch, gradients are
averaged, rank 0 alone reports, validates and writes; a failing rank stops them all in words."""

import multiprocessing
import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from tests.test_training import SMALL, TRAIN, RecordingReporter, make_dataset
from workers.pipeline.augment import EpochSampler
from workers.pipeline.reporting import JobError
from workers.pipeline.training import TrainingCancelled, build_model, train, validate

TWO = replace(SMALL, gpus=2, epochs=2, batch_size=15)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("colours"))


def test_shards_share_out_each_epoch_once():
    whole = list(EpochSampler(90, seed=3))
    shards = [EpochSampler(90, seed=3, shard=(rank, 2)) for rank in range(2)]
    assert [len(shard) for shard in shards] == [45, 45]
    assert sorted(key for shard in shards for key in shard) == sorted(whole)  # every item once, with its own seed
    for shard in shards:
        shard.set_epoch(1)
    assert list(shards[0]) != list(EpochSampler(90, seed=3, shard=(0, 2)))  # another order each epoch
    # an odd count is padded with the order's start, so every rank takes as many steps
    odd = [list(EpochSampler(7, seed=0, shard=(rank, 2))) for rank in range(2)]
    assert len(odd[0]) == len(odd[1]) == 4 and {i for i, _ in odd[0] + odd[1]} == set(range(7))


def test_two_processes_train_together_and_rank_0_reports(dataset, tmp_path):
    reporter = RecordingReporter()
    result = train(replace(TWO, workers=1), dataset, tmp_path / "out", reporter)  # a loader process each
    assert result.epochs_run == 2 and result.device == "cpu" and result.config["gpus"] == 2
    # each rank takes 45 of the 90 train images a epoch: 3 steps of 15; the epoch counts all 90
    assert [entry["train_images"] for entry in result.history] == [3 * TRAIN] * 2
    assert [step for _, step in reporter.named("train/loss")] == list(range(1, 2 * 3 + 1))
    assert [step for _, step in reporter.named("epoch/val_top1")] == [1, 2]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert "2 CPU processes together" in reporter.text() and "training on cpu" in reporter.text()
    model = build_model("small_cnn", 3)
    model.load_state_dict(torch.load(result.weights, weights_only=True))  # the plain model's keys
    assert reporter.fractions[-1] == 1.0


def test_rank_0_hands_over_checkpoints_and_a_run_resumes_from_one(dataset, tmp_path):
    kept: list[tuple[Path, dict]] = []

    def save(path: Path, summary: dict) -> None:  # the worker's copy, as steps._checkpoint_saver makes it
        copy = tmp_path / f"epoch-{summary['epoch']}.pth"
        shutil.copy(path, copy)
        kept.append((copy, summary))

    first = train(TWO, dataset, tmp_path / "first", RecordingReporter(), save_checkpoint=save)
    assert [summary["epoch"] for _, summary in kept] == [1, 2]
    reporter = RecordingReporter()
    resumed = train(replace(TWO, epochs=3), dataset, tmp_path / "resumed", reporter, resume=kept[0][0])
    assert "resuming after epoch 1" in reporter.text() and resumed.epochs_run == 3
    assert [step for _, step in reporter.named("train/loss")] == list(range(4, 3 * 3 + 1))  # epochs 2 and 3
    assert resumed.history[0] == first.history[0]  # epoch 1 as it was stored


class BreaksOnRank1(nn.Module):
    """A model to fine-tune whose forward fails in the second process only: with an error, or
    killed as the kernel kills a process out of memory."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.fc, self.how = nn.Linear(3, 3), how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if dist.is_initialized() and dist.get_rank() == 1:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("rank 1 broke")
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("how,words", [
    ("raise", r"^Training process 1 of 2 failed, so all of them were stopped: RuntimeError: rank 1 broke$"),
    ("kill", r"^Training process 1 of 2 ended without a word \(signal SIGKILL\); all of them were stopped\.$"),
])
def test_a_failing_rank_stops_them_all_in_words(dataset, tmp_path, how, words):
    with pytest.raises(JobError, match=words) as failed:
        train(TWO, dataset, tmp_path / "out", RecordingReporter(), init=BreaksOnRank1(how))
    assert how == "kill" or "Traceback" in failed.value.detail
    assert not multiprocessing.active_children()  # every rank was stopped
    assert not (tmp_path / "out" / "weights.pth").exists()


def test_a_cancel_stops_every_rank(dataset, tmp_path):
    with pytest.raises(TrainingCancelled) as cancelled:
        train(TWO, dataset, tmp_path / "out", RecordingReporter(cancel_after=0))
    assert cancelled.value.result is None  # no epoch had finished: nothing kept
    assert not multiprocessing.active_children()


def test_a_device_count_a_training_cannot_take_is_refused_by_name():
    with pytest.raises(JobError, match=r"^Training setting gpus is 3, but it must be one of 1, 2, 4, 8\.$"):
        validate(replace(SMALL, gpus=3), classes=3)
