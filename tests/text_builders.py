"""Tiny text classifiers and text datasets made on the spot: nothing is downloaded.

    folder = tiny_classifier_folder(tmp_path / "bert", ["negative", "positive"])
    rows = topic_rows(60)                       # a generated task a tiny model learns
    write_rows(tmp_path / "rows.csv", rows)     # .csv, .tsv or .jsonl by suffix
"""

import csv
import json
import random
from pathlib import Path

WORDS = {
    "sport": ["match", "goal", "team", "coach", "league", "score", "striker", "season"],
    "weather": ["rain", "sunny", "storm", "cloud", "wind", "forecast", "snow", "humid"],
    "food": ["bread", "cheese", "soup", "recipe", "oven", "spicy", "salad", "dessert"],
}
FILLER = ["the", "a", "today", "was", "very", "and", "then", "we", "saw", "it", "again", "of"]


def vocabulary() -> list[str]:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return special + FILLER + sorted(word for words in WORDS.values() for word in words)


def tiny_classifier_folder(folder: Path, labels: list[str], *, model_type: str = "bert", seed: int = 0,
                           max_positions: int = 64) -> Path:
    """save_pretrained() output of a random tiny BERT or DistilBERT sequence classifier with a
    WordPiece tokenizer over vocabulary(): config.json, model.safetensors, tokenizer files."""
    import torch
    from transformers import (BertConfig, BertForSequenceClassification, BertTokenizerFast, DistilBertConfig,
                              DistilBertForSequenceClassification)

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    id2label = dict(enumerate(labels))
    common = {"vocab_size": len(vocabulary()), "max_position_embeddings": max_positions, "num_labels": len(labels),
              "id2label": id2label, "label2id": {name: i for i, name in id2label.items()}}
    if model_type == "distilbert":
        model = DistilBertForSequenceClassification(DistilBertConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=2,
                                                                     **common))
    else:
        model = BertForSequenceClassification(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                         intermediate_size=64, **common))
    model.save_pretrained(folder)
    tokens = {token: i for i, token in enumerate(vocabulary())}
    BertTokenizerFast(vocab=tokens, do_lower_case=True, model_max_length=max_positions).save_pretrained(folder)
    return folder


def topic_rows(count: int, *, seed: int = 0, classes: tuple[str, ...] = ("sport", "weather", "food")) -> list[dict]:
    """`count` sentences, each mostly filler with two words of its topic: {"text", "label"}."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = classes[i % len(classes)]
        words = rng.sample(FILLER, 5) + rng.sample(WORDS[label], 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    """rows as CSV, TSV (header text,label[,text_pair,split]) or JSON Lines, chosen by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return path
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=fields, delimiter="\t" if path.suffix == ".tsv" else ",")
        writer.writeheader()
        writer.writerows(rows)
    return path
