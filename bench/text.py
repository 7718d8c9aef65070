"""Text classifiers: INT8 speed of a BERT-base-sized model and the accuracy INT8 costs a fine-tuned
small one, through Vintner's own pipelines (workers/pipeline/text/measure.py, quantization.py).

    .venv/bin/python bench/text.py                    # about 5-8 min on 2 cores
    .venv/bin/python bench/text.py --seconds 4 --rounds 5

All in one process; no Redis, database or daphne; nothing is downloaded.

Speed. BertForSequenceClassification with BertConfig's defaults (12 layers, hidden 768, 12 heads,
vocabulary 30522, 2 labels) and random weights, converted with ov.convert_model (a dict
example_input: input_ids, attention_mask, token_type_ids; dynamic batch × tokens) and saved as
an FP32 IR; Vintner's quantize_ir (method "ptq", model_type "transformer", TextFeed: rows
tokenized by a WordPiece tokenizer over a generated 30522-word vocabulary) gives the INT8 IR,
calibrated on --subset generated sentences of about 120 tokens. Then every IR reshaped to
[1, 128], compiled under the latency hint and run synchronously (random token ids, every
position attended), in --rounds alternating rounds (order reversed every other round), each
measurement --seconds a round:

  f32       the FP32 IR with INFERENCE_PRECISION_HINT=f32
  default   the FP32 IR at OpenVINO's default inference precision on this CPU (`default_precision`,
            CPU INFERENCE_PRECISION_HINT: bf16 on CPUs with AVX-512 BF16 or AMX, else f32)
  int8      the INT8 IR at the default precision (what a deployment gets)

  int8_vs_f32_latency      f32 median latency / int8 median latency
  int8_vs_default_latency  default median latency / int8 median latency

Each figure is the median of its rounds' medians, never the best round; `spread` holds each one's
(largest − smallest) / median.

Accuracy. A small BERT (2 layers, hidden 64) fine-tuned here for --epochs on a generated 3-topic
task (sentences of filler words with two words of their topic; the same generator as the tests'
text_builders.topic_rows, copied: benches do not import tests), converted the same way, and
quantize_ir scoring FP32 and INT8 on the validation rows (FP32 inference precision wherever
floating point runs). `accuracy_drop_points` = 100 × (FP32 − INT8) accuracy.

Goals: int8_vs_f32_latency ≥ 2, int8_vs_default_latency ≥ 1.5, accuracy_drop_points ≤ 1.
The last line of output is one JSON object; everything else goes to stderr.
"""

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _harness import cpu_seconds, machine_busy_seconds, spread

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402
import torch  # noqa: E402

from workers.pipeline.quantization import QuantizeConfig, QuantizeData, quantize_ir  # noqa: E402
from workers.pipeline.reporting import Span  # noqa: E402
from workers.pipeline.text.measure import TextFeed  # noqa: E402

GOALS = {"int8_vs_f32_latency": 2.0, "int8_vs_default_latency": 1.5, "accuracy_drop_points": 1.0}
TOKENS = 128
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = {
    "sport": ["match", "goal", "team", "coach", "league", "score", "striker", "season"],
    "weather": ["rain", "sunny", "storm", "cloud", "wind", "forecast", "snow", "humid"],
    "food": ["bread", "cheese", "soup", "recipe", "oven", "spicy", "salad", "dessert"],
}
FILLER = ["the", "a", "today", "was", "very", "and", "then", "we", "saw", "it", "again", "of"]


def say(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


class Quiet:
    """The pipeline's Reporter, saying only warnings (on stderr)."""

    def log(self, message: str, *, level: str = "info") -> None:
        if level == "warning":
            say(f"  warning: {message}")

    def progress(self, fraction: float) -> None: ...

    def stage(self, name: str) -> None: ...

    def metric(self, name: str, value: float, *, step=None, summary: bool = False) -> None: ...

    def checkpoint(self, state: dict) -> None: ...

    def cancelled(self) -> bool:
        return False


def topic_rows(count: int, *, seed: int = 0) -> list[dict]:
    """tests/text_builders.topic_rows: each sentence five filler words and two of its topic."""
    rng, classes, rows = random.Random(seed), list(WORDS), []
    for i in range(count):
        label = classes[i % len(classes)]
        words = rng.sample(FILLER, 5) + rng.sample(WORDS[label], 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def tokenizer_over(words: list[str], folder: Path, max_length: int):
    from transformers import BertTokenizerFast

    vocabulary = {token: i for i, token in enumerate(SPECIAL + words)}
    tokenizer = BertTokenizerFast(vocab=vocabulary, do_lower_case=True, model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer


def to_ir(model, tokenizer, xml: Path) -> Path:
    """ov.convert_model with a dict example_input and dynamic batch × tokens, saved in FP32."""
    example = dict(tokenizer(["the match was very spicy"], return_tensors="pt"))
    with torch.no_grad():
        converted = ov.convert_model(model.eval(), example_input=example,
                                     input=[(name, [-1, -1], ov.Type.i64) for name in example])
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(converted, xml, compress_to_fp16=False)
    return xml


def quantize(xml: Path, tokenizer, calibration: list[dict], validation: list[dict], labels: list[int] | None,
             classes: int | None, out: Path):
    data = QuantizeData(calibration=calibration, validation=validation, labels=labels or [], classes=classes)
    config = QuantizeConfig(method="ptq", subset_size=len(calibration), model_type="transformer")
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is for the JSON line
        result = quantize_ir(source=xml, data=data, spec=None, config=config, out=out,
                             span=Span(Quiet(), 0.0, 1.0), feed=TextFeed(tokenizer, max_length=None, model_max=512))
    return result, time.perf_counter() - started


# --- speed ---------------------------------------------------------------------------------------
def compiled_at(core: ov.Core, xml: Path, precision: str | None) -> ov.CompiledModel:
    model = core.read_model(str(xml))
    model.reshape({port: [1, TOKENS] for port in model.inputs})
    settings = {"PERFORMANCE_HINT": "LATENCY"}
    if precision:
        settings["INFERENCE_PRECISION_HINT"] = precision
    return core.compile_model(model, "CPU", settings)


def latency_round(compiled: ov.CompiledModel, seconds: float) -> float:
    """Median latency (ms) of synchronous inferences back to back for `seconds` (after one not counted)."""
    request = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    for port in compiled.inputs:
        name = port.get_any_name()
        value = (np.ones if "mask" in name else np.zeros)((1, TOKENS), np.int64)
        if name == "input_ids":
            value = rng.integers(5, 30000, (1, TOKENS)).astype(np.int64)
        request.set_tensor(port, ov.Tensor(value))
    request.infer()
    times, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        began = time.perf_counter()
        request.infer()
        times.append(1000 * (time.perf_counter() - began))
    return statistics.median(times)


def speed(folder: Path, args) -> dict:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(num_labels=2)  # BERT-base: 12 layers, hidden 768, 12 heads, vocabulary 30522
    say(f"BERT-base-sized classifier: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"vocabulary {config.vocab_size}, random weights")
    words = sorted({w for ws in WORDS.values() for w in ws} | set(FILLER))
    words += [f"word{i}" for i in range(config.vocab_size - len(SPECIAL) - len(words))]
    tokenizer = tokenizer_over(words, folder / "base", config.max_position_embeddings)
    started = time.perf_counter()
    fp32 = to_ir(BertForSequenceClassification(config), tokenizer, folder / "base" / "model.xml")
    say(f"  converted in {time.perf_counter() - started:.1f} s")
    rng = random.Random(1)
    calibration = [{"text": " ".join(rng.choice(words) for _ in range(TOKENS - 8))} for _ in range(args.subset)]
    result, seconds = quantize(fp32, tokenizer, calibration, [], None, None, folder / "base-int8")
    say(f"  quantized in {seconds:.1f} s: {result.quantized_layers} quantized layers")

    core = ov.Core()
    default = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()  # "bf16" with AVX-512 BF16/AMX
    runs = {"f32": compiled_at(core, fp32, "f32"), "default": compiled_at(core, fp32, None),
            "int8": compiled_at(core, result.folder / "model.xml", None)}
    rounds: dict[str, list[float]] = {name: [] for name in runs}
    say(f"Latency at batch 1 × {TOKENS} tokens, {args.rounds} alternating rounds of {args.seconds:g} s each "
        f"(default precision here: {default}):")
    for index in range(args.rounds):
        order = list(runs) if index % 2 == 0 else list(runs)[::-1]
        for name in order:
            rounds[name].append(latency_round(runs[name], args.seconds))
        say("  round " + str(index + 1) + ": " + ", ".join(f"{name} {rounds[name][-1]:.1f} ms" for name in runs))
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    return {"default_precision": default, "latency_ms": {k: round(v, 2) for k, v in medians.items()},
            "int8_vs_f32_latency": round(medians["f32"] / medians["int8"], 3),
            "int8_vs_default_latency": round(medians["default"] / medians["int8"], 3),
            "spread": {name: spread(values) for name, values in rounds.items()}}


# --- accuracy ------------------------------------------------------------------------------------
def accuracy(folder: Path, args) -> dict:
    from transformers import BertConfig, BertForSequenceClassification

    classes = list(WORDS)
    words = sorted({w for ws in WORDS.values() for w in ws} | set(FILLER))
    tokenizer = tokenizer_over(words, folder / "small", 64)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(SPECIAL) + len(words), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=64, num_labels=len(classes)))
    train, val = topic_rows(args.train_rows, seed=1), topic_rows(args.val_rows, seed=2)
    encoded = tokenizer([row["text"] for row in train], padding=True, return_tensors="pt")
    targets = torch.tensor([classes.index(row["label"]) for row in train])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    started = time.perf_counter()
    model.train()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch))
        for batch in order.split(32):
            loss = model(**{k: v[batch] for k, v in encoded.items()}, labels=targets[batch]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        say(f"  epoch {epoch + 1}: loss {loss.item():.3f}")
    say(f"Fine-tuned a small BERT on {len(train)} generated rows in {time.perf_counter() - started:.1f} s")
    xml = to_ir(model, tokenizer, folder / "small" / "model.xml")
    result, seconds = quantize(xml, tokenizer, [{"text": r["text"]} for r in train[:args.subset]],
                               [{"text": r["text"]} for r in val], [classes.index(r["label"]) for r in val],
                               len(classes), folder / "small-int8")
    drop = 100 * (result.fp32.top1 - result.int8.top1)
    say(f"  FP32 accuracy {100 * result.fp32.top1:.2f} % → INT8 {100 * result.int8.top1:.2f} % on {len(val)} "
        f"validation rows ({drop:+.2f} points; quantized in {seconds:.1f} s)")
    return {"fp32_accuracy": round(result.fp32.top1, 4), "int8_accuracy": round(result.int8.top1, 4),
            "accuracy_drop_points": round(drop, 2), "validation_rows": len(val)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--subset", type=int, default=64, help="calibration rows")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-rows", type=int, default=900)
    parser.add_argument("--val-rows", type=int, default=600)
    args = parser.parse_args()
    busy, own = machine_busy_seconds(), cpu_seconds()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vintner-bench-text-") as scratch:
        figures = speed(Path(scratch), args)
        figures.update(accuracy(Path(scratch), args))
    wall = time.perf_counter() - started
    other = max(0.0, (machine_busy_seconds() - busy) - (cpu_seconds() - own))
    figures["other_cpu_seconds"] = round(other, 1)
    figures["wall_seconds"] = round(wall, 1)
    figures["goals_met"] = {
        "int8_vs_f32_latency": figures["int8_vs_f32_latency"] >= GOALS["int8_vs_f32_latency"],
        "int8_vs_default_latency": figures["int8_vs_default_latency"] >= GOALS["int8_vs_default_latency"],
        "accuracy_drop_points": figures["accuracy_drop_points"] <= GOALS["accuracy_drop_points"],
    }
    say(f"Other processes used {other:.0f} CPU seconds meanwhile ({wall:.0f} s wall).")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
