"""Text-classifier training on tiny generated BERT/DistilBERT models and topic rows, shaped like a
published text dataset: the model learns the task, everything is reported as image training
reports it, checkpoints resume exactly, cancel keeps the best epoch, heads are fitted to the
dataset's classes, settings the model cannot take are refused in words. CPU only."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.test_training import RecordingReporter, _close
from tests.text_builders import tiny_classifier_folder, topic_rows
from workers.pipeline.reporting import JobError
from workers.pipeline.text.models import labels_of, load_classifier, read_config
from workers.pipeline.text.rows import TextRow, write_text_dataset
from workers.pipeline.text.training import (
    TextTrainConfig, TextTrainingCancelled, _Encoded, _fit_labels, macro_f1, token_lengths, train_text,
)

CLASSES = ["food", "sport", "weather"]
FAST = TextTrainConfig(epochs=4, batch_size=8, lr=2e-3)  # 120 train rows: 15 steps an epoch
TIMING = {"rows_per_s", "train_seconds", "val_seconds", "seconds"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    rows = topic_rows(160)
    return write_text_dataset(tmp_path_factory.mktemp("topics"), classes=CLASSES, report={}, rows=[
        TextRow(text=row["text"], label=row["label"], split="train" if i < 120 else "val", line=i + 2)
        for i, row in enumerate(rows)])


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return tiny_classifier_folder(tmp_path_factory.mktemp("bert"), ["sport", "weather", "food"])


def without_timing(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in entry.items() if key not in TIMING} for entry in history]


def test_fine_tuning_a_tiny_bert_learns_the_topics_and_reports_like_image_training(dataset, bert, tmp_path):
    reporter = RecordingReporter()
    result = train_text(FAST, dataset, tmp_path / "out", reporter, model_folder=bert)

    assert [entry["epoch"] for entry in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.final["val_top1"] >= 0.8 and result.final["val_f1"] >= 0.8  # chance is 1/3
    assert result.final["val_top1"] == max(entry["val_top1"] for entry in result.history)
    assert [sum(row) for row in result.confusion] == [13, 14, 13]  # food, sport, weather among the 40 val rows
    assert (result.start, result.model_type, result.classes, result.max_length) == ("weights", "bert", CLASSES, 64)
    assert result.config["lr"] == 2e-3 and result.config["weight_decay"] == 0.01
    assert result.token_lengths == {"rows": 120, "median": 9, "p95": 9, "longest": 9, "truncated": 0, "max_length": 64}
    json.dumps(result.as_dict())

    # the best epoch as a save_pretrained folder, its id2label the dataset's classes
    names = {path.name for path in result.folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert labels_of(read_config(result.folder)) == CLASSES
    model, tokenizer = load_classifier(result.folder)
    batch = tokenizer(["the striker scored a goal", "rain and storm today"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert model(**batch).logits.argmax(1).tolist() == [CLASSES.index("sport"), CLASSES.index("weather")]
    assert not (tmp_path / "out" / "checkpoint.pth").exists()

    # the image job page's curves: per-step loss and lr, epoch summaries, progress, the log's steps
    steps = 4 * 15
    assert [step for _, step in reporter.named("train/loss")] == list(range(1, steps + 1))
    assert [step for _, step in reporter.named("train/lr")] == list(range(1, steps + 1))
    assert reporter.named("train/lr")[-1][0] == pytest.approx(2e-3 / steps)  # linear to 0
    assert reporter.named("train/rows_per_s") and reporter.named("time/eta_s")
    assert reporter.summaries() == {f"epoch/{name}" for name in
                                    ("train_loss", "train_top1", "val_loss", "val_top1", "val_f1", "lr")}
    assert [value for value, _ in reporter.named("epoch/val_f1")] == [entry["val_f1"] for entry in result.history]
    assert reporter.fractions == sorted(reporter.fractions) and reporter.fractions[-1] == 1.0
    assert reporter.polls >= steps
    text = reporter.text()
    assert "4 epochs of 15 steps" in text and "training on cpu" in text
    assert "0 of 120 rows (0.0 %) are longer than max_length 64" in text
    assert "outputs are reordered to food, sport, weather" in text  # the model named them in another order


def test_from_scratch_resumes_from_a_checkpoint_exactly(dataset, tmp_path):
    """A built-in BERT with a vocabulary learnt from the rows; the checkpoint carries the vocabulary."""
    config = TextTrainConfig(architecture="bert-tiny", epochs=3, batch_size=16, lr=1e-3, warmup_epochs=1)
    saved = []

    def keep(path: Path, summary: dict) -> None:
        saved.append(summary)
        shutil.copy(path, tmp_path / f"epoch{summary['epoch']}.pth")

    reporter = RecordingReporter()
    whole = train_text(config, dataset, tmp_path / "whole", reporter, save_checkpoint=keep)
    assert [s["epoch"] for s in saved] == [1, 2, 3] and set(saved[-1]) == {"epoch", "step", "best_epoch", "best_top1"}
    assert whole.start == "built-in" and "vocabulary of" in reporter.text()

    reporter = RecordingReporter()
    resumed = train_text(config, dataset, tmp_path / "resumed", reporter, resume=tmp_path / "epoch1.pth")
    assert "resuming after epoch 1" in reporter.text()
    assert resumed.history[:1] == whole.history[:1]
    assert _close(without_timing(resumed.history), without_timing(whole.history))
    assert [step for _, step in reporter.named("train/loss")] == list(range(9, 25))
    a, b = (load_classifier(r.folder)[0].state_dict() for r in (whole, resumed))
    assert all(torch.allclose(a[key], b[key], atol=1e-5) for key in a)

    torch.save({"format": 1, "architecture": "small_cnn"}, tmp_path / "image.pth")  # an image run's
    with pytest.raises(JobError, match="not a Vintner text-training checkpoint"):
        train_text(config, dataset, tmp_path / "other", RecordingReporter(), resume=tmp_path / "image.pth")


def test_cancel_keeps_the_best_finished_epoch_and_before_one_keeps_nothing(dataset, bert, tmp_path):
    # an epoch polls 15 times in training and 5 in validation: cancel in epoch 2
    with pytest.raises(TextTrainingCancelled) as caught:
        train_text(FAST, dataset, tmp_path / "a", RecordingReporter(cancel_after=25), model_folder=bert)
    result = caught.value.result
    assert result is not None and result.best_epoch == 1 and result.epochs_run == 1
    assert labels_of(read_config(result.folder)) == CLASSES and (result.folder / "model.safetensors").is_file()
    assert (tmp_path / "a" / "checkpoint.pth").is_file()

    with pytest.raises(TextTrainingCancelled) as caught:
        train_text(FAST, dataset, tmp_path / "b", RecordingReporter(cancel_after=3), model_folder=bert)
    assert caught.value.result is None and not any((tmp_path / "b").iterdir())


def test_the_head_is_replaced_for_another_class_count_and_reordered_by_name(dataset, tmp_path):
    two = tiny_classifier_folder(tmp_path / "two", ["negative", "positive"], model_type="distilbert")
    reporter = RecordingReporter()
    result = train_text(replace(FAST, epochs=1), dataset, tmp_path / "out", reporter, model_folder=two)
    assert "classifier replaced: 2 → 3 classes" in reporter.text()
    assert result.model_type == "distilbert" and labels_of(read_config(result.folder)) == CLASSES

    # same classes in another order: each class keeps its own output row
    model, tokenizer = load_classifier(tiny_classifier_folder(tmp_path / "three", ["weather", "food", "sport"]))
    batch = tokenizer(["a goal", "some soup"], return_tensors="pt", padding=True)
    with torch.no_grad():
        before = model(**batch).logits
        _fit_labels(model, ["weather", "food", "sport"], CLASSES, RecordingReporter())
        after = model(**batch).logits
    assert torch.allclose(after, before[:, [1, 2, 0]])

    # other names of the same count: a fresh head, said in the log
    reporter = RecordingReporter()
    _fit_labels(model, ["a", "b", "c"], CLASSES, reporter)
    assert "are not the dataset's; its classifier starts fresh" in reporter.text()


def test_a_models_config_with_random_weights(dataset, bert, tmp_path):
    reporter = RecordingReporter()
    result = train_text(replace(FAST, weights=False, epochs=1, lr=None, seed=7), dataset, tmp_path / "out", reporter,
                        model_folder=bert)
    assert result.start == "config" and result.config["lr"] == 5e-4
    assert "from its config, random weights" in reporter.text()
    trained = load_classifier(result.folder)[0].state_dict()
    given = load_classifier(bert)[0].state_dict()
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(trained[key], given[key], atol=0.05)


def test_max_length_over_the_models_maximum_is_refused_and_cut_rows_are_counted(dataset, bert, tmp_path):
    with pytest.raises(JobError, match="max_length is 65 tokens, but this model reads at most 64; choose 64 or less"):
        train_text(replace(FAST, max_length=65), dataset, tmp_path / "a", RecordingReporter(), model_folder=bert)
    with pytest.raises(JobError, match="architecture is 'resnet18', but a text model from scratch is one of bert-tiny"):
        train_text(TextTrainConfig(architecture="resnet18"), dataset, tmp_path / "b", RecordingReporter())
    _, tokenizer = load_classifier(bert)
    rows = [TextRow(text=" ".join(["goal"] * n), label="sport", split="train") for n in (2, 6, 20)]
    assert token_lengths(tokenizer, rows, 8) == {"rows": 3, "median": 8, "p95": 22, "longest": 22, "truncated": 1,
                                                 "max_length": 8}


def test_sentence_pairs_are_encoded_as_pairs_and_batches_padded_to_their_longest(bert):
    _, tokenizer = load_classifier(bert)
    rows = [TextRow(text="goal goal", text_pair="rain", label="sport", split="train"),
            TextRow(text="soup", text_pair=None, label="food", split="train")]
    encoded = _Encoded(tokenizer, rows, [1, 0], max_length=16)
    inputs, labels = encoded.batch([0, 1], torch.device("cpu"))
    assert inputs["input_ids"].shape == (2, 6) and labels.tolist() == [1, 0]  # [CLS] goal goal [SEP] rain [SEP]
    assert inputs["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1]
    assert inputs["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]  # [CLS] soup [SEP] [SEP], padded
    assert inputs["input_ids"][1, 4:].tolist() == [tokenizer.pad_token_id] * 2


def test_macro_f1_is_scikit_learns():
    # truth 0,0,1,1,2; predicted 0,1,1,1,0: F1 per class 1/2, 4/5, 0
    confusion = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert macro_f1(confusion) == pytest.approx((1 / 2 + 4 / 5 + 0) / 3)
    assert macro_f1(torch.tensor([[2, 0], [0, 0]])) == 1.0  # an absent, never predicted class does not count
